//! A node that stops by itself ends `ringraft serve`: a panic in the raft
//! or the apply actor (made by the test-only `RINGRAFT_TEST_PANIC` hook)
//! makes the process exit non-zero with a log line naming the cause,
//! rather than answering errors forever; a restart on the same data
//! directory (without the hook) serves again, with the writes acknowledged
//! before.

mod server_common;

use server_common::{BINARY, DEADLINE, free_port, http, put_retrying, wait_healthy, wait_value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

struct Ports {
    peer: SocketAddr,
    client: SocketAddr,
}

fn spawn(dir: &Path, log: &Path, ports: &Ports, panic_hook: Option<&str>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .args(["--id", "1"])
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen-peer", &ports.peer.to_string()])
        .args(["--listen-client", &ports.client.to_string()])
        .args(["--initial-cluster", &format!("1={}", ports.peer)])
        .args(["--tick-ms", "10", "--election-ticks", "10"])
        .env("RUST_LOG", "info")
        .env_remove("RINGRAFT_TEST_PANIC")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(actor) = panic_hook {
        command.env("RINGRAFT_TEST_PANIC", actor);
    }
    command.spawn().expect("spawn ringraft serve")
}

/// The exit status once `child` exits by itself (killed at the deadline).
fn wait_exit(child: &mut Child) -> ExitStatus {
    server_common::exit_within_deadline(child)
        .unwrap_or_else(|| panic!("the process did not exit within {DEADLINE:?}"))
}

fn panicking_actor_ends_the_process(actor: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let log = root.path().join("node.log");
    let ports = Ports {
        peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
        client: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    let mut child = spawn(&dir, &log, &ports, Some(actor));
    wait_healthy(ports.client);
    // The write makes the actor panic; its answer (an error, or none) does
    // not matter, the process exiting does.
    let _ = http(ports.client, "PUT", "/v1/kv/boom", b"x");
    let status = wait_exit(&mut child);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "exit status {status:?}\n{text}");
    assert!(
        text.contains(&format!("the {actor} actor panicked")),
        "a log line names the cause\n{text}"
    );
    assert!(
        http(ports.client, "GET", "/health", b"").is_err(),
        "nothing answers once the process is gone"
    );

    // The data directory is unlocked and intact: a restart serves.
    let mut restarted = spawn(&dir, &log, &ports, None);
    wait_healthy(ports.client);
    put_retrying(&[ports.client], "after", b"restart");
    wait_value(ports.client, "after", b"restart");
    let _ = restarted.kill();
    let _ = restarted.wait();
}

#[test]
fn a_panic_in_the_apply_actor_ends_serve_with_a_failure() {
    panicking_actor_ends_the_process("apply");
}

#[test]
fn a_panic_in_the_raft_actor_ends_serve_with_a_failure() {
    panicking_actor_ends_the_process("raft");
}
