//! The `ringraft` command line: `--version`, and the `wal` tools for
//! inspecting data directories (ours or etcd's). The server and `bench`
//! subcommands arrive with their issues.
//!
//! Exit status: 0 on success, 1 when a WAL or snapshot is corrupt or cannot
//! be read, 2 on bad usage.

use clap::{CommandFactory, Parser, Subcommand};
use ringraft::raftpb::walpb;
use ringraft::snap::Snapshotter;
use ringraft::storage::DataDir;
use ringraft::wal::{self, SegmentName, TornTailReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A raft storage service in the architecture of etcd's server.
#[derive(Parser)]
#[command(name = "ringraft", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect write-ahead logs.
    #[command(subcommand)]
    Wal(WalCommand),
}

#[derive(Subcommand)]
enum WalCommand {
    /// Print every record of a WAL as one JSON object a line.
    Dump {
        /// A WAL directory, or a data directory (`<dir>/wal`, or etcd's
        /// `<dir>/member/wal`).
        path: PathBuf,
    },
    /// Check a data directory: the newest usable snapshot and the WAL from it
    /// on. Exits 1 with the error if anything is corrupt.
    Verify {
        /// A data directory (ours: `wal/` and `snap/`; etcd's: `member/wal/`
        /// and `member/snap/`), or a WAL directory with `snap/` beside it.
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            println!("ringraft {}", env!("CARGO_PKG_VERSION"));
            println!();
            println!("{}", Cli::command().render_usage());
            Ok(())
        }
        Some(Command::Wal(WalCommand::Dump { path })) => dump(&path),
        Some(Command::Wal(WalCommand::Verify { data_dir })) => verify(&data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The WAL and snapshot directories for a path naming either a WAL directory
/// or a data directory.
fn resolve(path: &Path) -> DataDir {
    let holds_segments = wal::segment_name::list_segments(path).is_ok_and(|s| !s.is_empty());
    if !holds_segments {
        return DataDir::detect(path);
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut layout = DataDir::detect(parent);
    layout.wal_dir = path.to_path_buf();
    layout.snap_dir = parent.join("snap");
    layout
}

fn dump(path: &Path) -> Result<(), String> {
    let wal_dir = resolve(path).wal_dir;
    let end = wal::dump(&wal_dir, |record| println!("{}", record.to_json()))
        .map_err(|e| e.to_string())?;
    if let Some(torn) = end.torn_tail {
        warn_torn(&torn);
    }
    Ok(())
}

fn verify(path: &Path) -> Result<(), String> {
    let data_dir = resolve(path);
    let markers = wal::valid_snapshot_entries(&data_dir.wal_dir).map_err(|e| e.to_string())?;
    let snapshotter = Snapshotter::read_only(&data_dir.snap_dir);
    let snapshot = snapshotter
        .load_newest_available_reporting(&markers, |broken| {
            eprintln!("warning: skipping broken snapshot: {broken}");
        })
        .map_err(|e| e.to_string())?;
    let at = snapshot
        .as_ref()
        .map_or_else(walpb::Snapshot::default, |s| walpb::Snapshot {
            index: s.metadata.index,
            term: s.metadata.term,
            conf_state: None,
        });
    let report = wal::verify(&data_dir.wal_dir, &at).map_err(|e| e.to_string())?;
    if let Some(torn) = &report.torn_tail {
        warn_torn(torn);
    }
    let snapshot_json = match &snapshot {
        Some(s) => format!(
            "{{\"index\":{},\"term\":{}}}",
            s.metadata.index, s.metadata.term
        ),
        None => "null".to_string(),
    };
    let hs = report.hard_state;
    println!(
        "{{\"ok\":true,\"wal_dir\":{},\"node_id\":{},\"cluster_id\":{},\"snapshot\":{snapshot_json},\"hard_state\":{{\"term\":{},\"vote\":{},\"commit\":{}}},\"entries\":{},\"last_index\":{},\"segments\":[{}],\"torn_tail\":{}}}",
        wal::dump::json_string(&data_dir.wal_dir.to_string_lossy()),
        report.metadata.node_id,
        report.metadata.cluster_id,
        hs.term,
        hs.vote,
        hs.commit,
        report.entry_count,
        report
            .last_index
            .map_or("null".to_string(), |i| i.to_string()),
        segment_list(&report.segments),
        report
            .torn_tail
            .as_ref()
            .map_or("null".to_string(), torn_json),
    );
    Ok(())
}

fn segment_list(segments: &[SegmentName]) -> String {
    segments
        .iter()
        .map(|s| format!("\"{}\"", s.file_name()))
        .collect::<Vec<_>>()
        .join(",")
}

fn torn_json(torn: &TornTailReport) -> String {
    format!(
        "{{\"path\":{},\"offset\":{},\"reason\":{}}}",
        wal::dump::json_string(&torn.path.to_string_lossy()),
        torn.offset,
        wal::dump::json_string(&torn.reason)
    )
}

fn warn_torn(torn: &TornTailReport) {
    eprintln!(
        "warning: {}: torn write at byte {} ({}); the data before it is intact and opening the WAL repairs it",
        torn.path.display(),
        torn.offset,
        torn.reason
    );
}
