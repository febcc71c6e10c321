//! The `ringraft` command line. For now it only reports its version; the
//! server, `wal` and `bench` subcommands arrive with their issues.

fn main() {
    println!("ringraft {}", env!("CARGO_PKG_VERSION"));
}
