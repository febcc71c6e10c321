//! `ringraft bench --target grpc://…`, the real binary, against a real
//! etcd 3.4 (installed by `scripts/install-etcd.sh` when missing) over
//! its native v3 gRPC API: puts counted exactly (etcd's revision moved by
//! the number of counted writes), serializable and linearizable ranges
//! answered with no failure, etcd's fsync counters read from its
//! `/metrics`; and an endpoint where nothing listens refused with the
//! endpoint named, not a panic.

mod etcd_common;
// Beside etcd_common's own copy, on purpose: each picks from its own lane.
#[allow(clippy::duplicate_mod)]
mod ports;

use etcd_common::{Etcd, ensure_etcd};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_ringraft");

/// Lane 0 of `ports` (`etcd_common` picks from lane 1).
fn free_port() -> u16 {
    ports::free_port_in_lane(0)
}

/// A single-node etcd, ready once one put is acknowledged over gRPC.
fn start_etcd(dir: &Path) -> Etcd {
    ensure_etcd();
    Etcd::start(dir, "bench", Duration::from_secs(30), |client| {
        let probe = run_bench(&["--target", &target(client), "--ops", "1", "--clients", "1"]);
        if probe.status.success() {
            Ok(())
        } else {
            Err(format!(
                "no answer over gRPC: {}",
                String::from_utf8_lossy(&probe.stderr)
            ))
        }
    })
}

fn target(client: SocketAddr) -> String {
    format!("grpc://{client}")
}

fn run_bench(args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("bench")
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run ringraft bench")
}

fn bench(args: &[&str]) -> Value {
    let output = run_bench(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ringraft bench {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn u(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned number in {report}"))
}

fn f(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {report}"))
}

/// What every successful run must satisfy.
fn check_consistent(report: &Value) {
    let ops = u(report, "ops");
    assert!(ops > 0, "{report}");
    assert_eq!(u(report, "acknowledged"), ops, "counted = acknowledged");
    assert_eq!(u(report, "writes") + u(report, "reads"), ops, "{report}");
    assert_eq!(u(report, "errors"), 0, "{report}");
    assert!(report["first_error"].is_null(), "{report}");
    assert_eq!(report["target"], "grpc");
    let (p50, p99, max) = (
        f(report, "p50_ms"),
        f(report, "p99_ms"),
        f(report, "max_ms"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
}

#[test]
fn grpc_target_drives_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(dir.path());
    let target = target(etcd.client);
    let pid = etcd.pid().to_string();

    // Writes only, for a duration, 4 clients (4 HTTP/2 connections).
    let writes = bench(&[
        "--target",
        &target,
        "--duration",
        "1s",
        "--clients",
        "4",
        "--server-pid",
        &pid,
    ]);
    check_consistent(&writes);
    assert!(u(&writes, "writes") > 0, "{writes}");
    assert_eq!(u(&writes, "reads"), 0, "{writes}");
    // Every put is one revision, and no put failed (a failed one might
    // still have been applied): the revision moved by exactly the counted
    // writes.
    assert_eq!(
        u(&writes, "log_entries"),
        u(&writes, "writes"),
        "revision delta = counted puts: {writes}"
    );
    // etcd's /metrics on the same port: its WAL fsyncs, and at least one
    // committed entry per fsync.
    assert!(u(&writes, "fsyncs") >= 1, "{writes}");
    assert!(f(&writes, "entries_per_fsync") >= 1.0, "{writes}");
    assert!(f(&writes, "fsync_mean_ms") > 0.0, "{writes}");
    assert!(f(&writes, "server_cpu_us_per_op") > 0.0, "{writes}");
    assert_eq!(
        writes["endpoints"],
        serde_json::json!([etcd.client.to_string()])
    );

    // Serializable reads only: answered, and nothing written.
    let reads = bench(&[
        "--target",
        &target,
        "--duration",
        "1s",
        "--clients",
        "4",
        "--read-ratio",
        "1",
        "--read-consistency",
        "serializable",
    ]);
    check_consistent(&reads);
    assert!(u(&reads, "reads") > 0, "{reads}");
    assert_eq!(u(&reads, "writes"), 0, "{reads}");
    assert_eq!(
        u(&reads, "log_entries"),
        0,
        "reads add no revision: {reads}"
    );
    assert_eq!(reads["read_consistency"], "serializable");

    // Linearizable reads among writes, an exact number of operations.
    let mixed = bench(&[
        "--target",
        &target,
        "--ops",
        "400",
        "--clients",
        "8",
        "--read-ratio",
        "0.5",
    ]);
    check_consistent(&mixed);
    assert_eq!(u(&mixed, "ops"), 400, "{mixed}");
    assert!(u(&mixed, "reads") > 0 && u(&mixed, "writes") > 0, "{mixed}");
    assert_eq!(u(&mixed, "log_entries"), u(&mixed, "writes"), "{mixed}");
    assert_eq!(mixed["read_consistency"], "linearizable");

    // Pipelined: 2 connections, 4 writes in flight on each (HTTP/2
    // streams); every write is answered and counted once.
    let pipelined = bench(&[
        "--target",
        &target,
        "--ops",
        "400",
        "--clients",
        "2",
        "--pipeline",
        "4",
    ]);
    check_consistent(&pipelined);
    assert_eq!(u(&pipelined, "ops"), 400, "{pipelined}");
    assert_eq!(u(&pipelined, "log_entries"), 400, "{pipelined}");
    assert_eq!(u(&pipelined, "pipeline"), 4, "{pipelined}");
}

#[test]
fn nothing_listening_is_a_clear_endpoint_error() {
    let port = free_port();
    let output = run_bench(&[
        "--target",
        &format!("grpc://127.0.0.1:{port}"),
        "--ops",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("cannot connect"),
        "names the endpoint and the reason: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty(), "no report");
}

#[test]
fn a_server_that_is_not_grpc_is_refused_before_the_run() {
    // An HTTP/1.1-only listener that answers every request with 404: the
    // HTTP/2 handshake (or the range) fails, and the run never starts.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let output = run_bench(&[
        "--target",
        &format!("grpc://127.0.0.1:{port}"),
        "--ops",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}"))
            && stderr.contains("not an etcd v3 gRPC endpoint"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
