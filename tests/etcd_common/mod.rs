//! etcd 3.4 and etcdctl for the tests that compare ringraft with etcd or
//! drive ringraft with etcd's own client: installing them (Debian's
//! etcd-server and etcd-client, through `scripts/install-etcd.sh`),
//! running etcdctl, and a single-node etcd on loopback killed on drop.
#![allow(dead_code)]

pub mod embedded;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Installs etcd and etcdctl through the project's script when either is
/// missing, once per test binary.
pub fn ensure_etcd() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let found = Command::new("etcd").arg("--version").output().is_ok()
            && Command::new("etcdctl").arg("version").output().is_ok();
        if !found {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-etcd.sh");
            let status = Command::new(script).status().expect("install-etcd.sh runs");
            assert!(status.success(), "scripts/install-etcd.sh failed");
        }
    });
}

/// The output of one etcdctl command.
pub struct Etcdctl {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// etcdctl (v3 API) against `endpoints`, with bounded dial and command
/// timeouts, not yet run.
pub fn etcdctl_command(endpoints: &[SocketAddr], args: &[&str]) -> Command {
    ensure_etcd();
    let endpoints: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        // host:port, not http://host:port: etcdctl 3.4 sends the latter as
        // the HTTP/2 :authority of some calls, which the server refuses
        // as malformed (README, etcd API).
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=3s", "--command-timeout=10s"])
        .args(args);
    command
}

/// Runs etcdctl against `endpoints` and returns what it printed.
pub fn etcdctl(endpoints: &[SocketAddr], args: &[&str]) -> Etcdctl {
    let output = etcdctl_command(endpoints, args)
        .output()
        .expect("etcdctl runs (scripts/install-etcd.sh installs Debian's etcd-client)");
    Etcdctl {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs etcdctl against `endpoints` and returns its stdout, failing the
/// test (with what it printed) if it failed.
pub fn etcdctl_ok(endpoints: &[SocketAddr], args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    assert!(
        out.success,
        "etcdctl {args:?} failed: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

// A copy per including module, on purpose: each picks from its own lane.
#[allow(clippy::duplicate_mod)]
#[path = "../ports/mod.rs"]
mod ports;

/// Lane 1 of `ports`: binaries that start ringraft servers too pick theirs
/// from lane 0 (`server_common`, the bench tests).
fn free_port() -> u16 {
    ports::free_port_in_lane(1)
}

/// A single-node etcd on loopback, killed on drop.
pub struct Etcd {
    child: Child,
    /// Where clients connect.
    pub client: SocketAddr,
}

impl Etcd {
    /// Starts etcd as member `name` with its data in `<dir>/etcd`, and
    /// waits up to `deadline` for `ready(client)` to answer `Ok` (its
    /// `Err` is shown when the deadline passes). The caller makes sure
    /// etcd is installed ([`ensure_etcd`]).
    pub fn start(
        dir: &Path,
        name: &str,
        deadline: Duration,
        mut ready: impl FnMut(SocketAddr) -> Result<(), String>,
    ) -> Etcd {
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let client_url = format!("http://{client}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new("etcd")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        let etcd = Etcd { child, client };
        let deadline = Instant::now() + deadline;
        loop {
            match ready(client) {
                Ok(()) => return etcd,
                Err(reason) => assert!(
                    Instant::now() < deadline,
                    "etcd never became ready: {reason}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
