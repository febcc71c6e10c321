//! `ringraft bench`, the real binary: its JSON summary is complete and
//! consistent (counted operations = acknowledged operations = what the
//! state machine applied; p50 ≤ p99 ≤ p99.9 ≤ max; fsyncs seen), in
//! process with 1 and 3 nodes, and over HTTP against a `ringraft serve`
//! process.

mod etcd_common;
// Beside etcd_common's own copy, on purpose: each picks from its own lane.
#[allow(clippy::duplicate_mod)]
mod ports;

use etcd_common::Etcd;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_ringraft");

fn bench(args: &[&str]) -> Value {
    let output: Output = Command::new(BINARY)
        .arg("bench")
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run ringraft bench");
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

/// What every successful write-only run must satisfy.
fn check_consistent(report: &Value) {
    let ops = u(report, "ops");
    assert!(ops > 0, "{report}");
    assert_eq!(u(report, "acknowledged"), ops, "counted = acknowledged");
    assert_eq!(
        u(report, "writes") + u(report, "reads"),
        ops,
        "every counted op is a write or a read"
    );
    assert_eq!(u(report, "errors"), 0, "{report}");
    assert!(f(report, "ops_per_sec") > 0.0);
    let expected_rate = ops as f64 / f(report, "duration_s");
    assert!(
        (f(report, "ops_per_sec") - expected_rate).abs() <= expected_rate * 1e-6,
        "ops_per_sec = ops / duration_s"
    );
    let (p50, p90, p99, p999, max) = (
        f(report, "p50_ms"),
        f(report, "p90_ms"),
        f(report, "p99_ms"),
        f(report, "p999_ms"),
        f(report, "max_ms"),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "percentiles out of order: {report}"
    );
    assert!(u(report, "fsyncs") >= 1, "{report}");
    let per_fsync = f(report, "entries_per_fsync");
    assert!(per_fsync >= 1.0, "{report}");
    assert!(f(report, "fsync_mean_ms") > 0.0, "{report}");
    assert!(f(report, "cpu_us_per_op") > 0.0, "{report}");
}

#[test]
fn embedded_one_node_counts_exactly_the_requested_operations() {
    let report = bench(&[
        "--embedded",
        "--nodes",
        "1",
        "--ops",
        "2000",
        "--clients",
        "4",
    ]);
    check_consistent(&report);
    assert_eq!(u(&report, "ops"), 2000);
    assert_eq!(u(&report, "writes"), 2000);
    // One node, one term: the state machine applied exactly our writes.
    assert_eq!(u(&report, "log_entries"), 2000, "{report}");
    assert_eq!(report["nodes"], 1);
    assert_eq!(report["target"], "embedded");
    assert!(report["messages_per_op"].is_null(), "one node: {report}");
}

#[test]
fn pipelined_client_keeps_several_writes_in_flight() {
    let report = bench(&[
        "--embedded",
        "--nodes",
        "1",
        "--ops",
        "800",
        "--clients",
        "1",
        "--pipeline",
        "8",
    ]);
    check_consistent(&report);
    assert_eq!(u(&report, "ops"), 800);
    assert_eq!(u(&report, "log_entries"), 800, "{report}");
    assert_eq!(u(&report, "pipeline"), 8, "{report}");
    // One client waiting for each answer puts one write in each fsync;
    // only writes in flight together can share one.
    assert!(f(&report, "entries_per_fsync") > 1.0, "{report}");
}

#[test]
fn embedded_three_nodes_for_a_duration_with_reads() {
    let report = bench(&[
        "--embedded",
        "--nodes",
        "3",
        "--duration",
        "1s",
        "--clients",
        "8",
        "--read-ratio",
        "0.2",
    ]);
    check_consistent(&report);
    assert!(u(&report, "reads") > 0, "{report}");
    let duration = f(&report, "duration_s");
    assert!((0.9..10.0).contains(&duration), "{report}");
    // An election during the run would add its own empty entry.
    assert!(
        u(&report, "log_entries") >= u(&report, "writes"),
        "{report}"
    );
    // Every write reaches two followers and is acknowledged by them; a
    // storm of messages (a retry loop) would show here.
    let messages = f(&report, "messages_per_op");
    assert!(messages > 0.0 && messages < 20.0, "{report}");
}

#[test]
fn client_threads_split_the_cpu_between_nodes_and_clients() {
    let report = bench(&[
        "--embedded",
        "--nodes",
        "1",
        "--clients",
        "32",
        "--ops",
        "20000",
        "--client-threads",
        "1",
    ]);
    check_consistent(&report);
    let total = f(&report, "cpu_us_per_op");
    let nodes = f(&report, "node_cpu_us_per_op");
    let clients = f(&report, "client_cpu_us_per_op");
    assert!(nodes > 0.0, "the nodes did work: {report}");
    assert!(clients > 0.0, "the client threads did work: {report}");
    // The thread clocks tick in 10 ms steps; 20,000 ops of a few µs each
    // leave room for a few ticks either way.
    assert!(
        (nodes + clients - total).abs() <= total * 0.05 + 1e-9,
        "nodes + clients = the process: {report}"
    );
    let shared = bench(&["--embedded", "--clients", "4", "--ops", "200"]);
    assert!(
        shared["node_cpu_us_per_op"].is_null() && shared["client_cpu_us_per_op"].is_null(),
        "no split without --client-threads: {shared}"
    );
}

#[test]
fn open_loop_keeps_the_rate() {
    let report = bench(&[
        "--embedded",
        "--duration",
        "2s",
        "--clients",
        "16",
        "--rate",
        "200",
    ]);
    check_consistent(&report);
    let rate = f(&report, "ops_per_sec");
    assert!((120.0..=260.0).contains(&rate), "about 200/s: {report}");
}

#[test]
fn raw_fsync_counts_one_fsync_per_write() {
    let report = bench(&["--raw-fsync", "--ops", "50", "--clients", "1"]);
    check_consistent(&report);
    assert_eq!(u(&report, "fsyncs"), 50);
}

#[test]
fn usage_errors_exit_nonzero_without_running() {
    let output = Command::new(BINARY)
        .args([
            "bench",
            "--target",
            "http://127.0.0.1:1",
            "--backend",
            "std",
        ])
        .output()
        .expect("run ringraft bench");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--backend"));
    let output = Command::new(BINARY)
        .args(["bench", "--duration", "1s"])
        .output()
        .expect("run ringraft bench");
    assert_eq!(output.status.code(), Some(2), "clap: a mode is required");
    let output = Command::new(BINARY)
        .args(["bench", "--target", "http://127.0.0.1:1", "--pipeline", "2"])
        .output()
        .expect("run ringraft bench");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--pipeline"),
        "{output:?}"
    );
}

/// Lane 0 of `ports` (`etcd_common` picks from lane 1).
fn free_port() -> u16 {
    ports::free_port_in_lane(0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn http_target_against_a_server_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (peer, client) = (free_port(), free_port());
    let server = Server(
        Command::new(BINARY)
            .args(["serve", "--id", "1"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-peer", &format!("127.0.0.1:{peer}")])
            .args(["--listen-client", &format!("127.0.0.1:{client}")])
            .args(["--tick-ms", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringraft serve"),
    );
    let target = format!("http://127.0.0.1:{client}");
    // Wait until it answers and has elected itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = Command::new(BINARY)
            .args(["bench", "--target", &target, "--ops", "1", "--clients", "1"])
            .args(["--json", "--quiet"])
            .output()
            .expect("run ringraft bench");
        if probe.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "server never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = server.0.id().to_string();
    let report = bench(&[
        "--target",
        &target,
        "--ops",
        "500",
        "--clients",
        "4",
        "--server-pid",
        &pid,
    ]);
    check_consistent(&report);
    assert_eq!(u(&report, "ops"), 500);
    assert_eq!(u(&report, "log_entries"), 500, "{report}");
    assert_eq!(report["target"], "http");
    assert!(
        report["server_cpu_us_per_op"].as_f64().is_some(),
        "{report}"
    );
}

/// etcd's JSON gateway, when an etcd binary is installed (skipped
/// otherwise: `benches/compare-etcd.sh` installs it, the test suite does
/// not).
#[test]
fn etcd_target_when_etcd_is_installed() {
    let Ok(etcd_binary) = Command::new("sh")
        .args(["-c", "command -v etcd"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    else {
        return;
    };
    if etcd_binary.is_empty() {
        eprintln!("skipped: no etcd on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let target = |client: SocketAddr| format!("etcd://{client}");
    let server = Etcd::start(dir.path(), "bench", Duration::from_secs(20), |client| {
        let probe = Command::new(BINARY)
            .args([
                "bench",
                "--target",
                &target(client),
                "--ops",
                "1",
                "--clients",
                "1",
            ])
            .args(["--json", "--quiet"])
            .output()
            .expect("run ringraft bench");
        if probe.status.success() {
            Ok(())
        } else {
            Err("no answer to a put through the JSON gateway".into())
        }
    });
    let target = target(server.client);
    let pid = server.pid().to_string();
    let report = bench(&[
        "--target",
        &target,
        "--ops",
        "300",
        "--clients",
        "4",
        "--read-ratio",
        "0.3",
        "--server-pid",
        &pid,
    ]);
    check_consistent(&report);
    assert_eq!(u(&report, "ops"), 300);
    // Every put is one revision; reads add none.
    assert_eq!(u(&report, "log_entries"), u(&report, "writes"), "{report}");
    assert!(u(&report, "reads") > 0, "{report}");
    assert_eq!(report["target"], "etcd");
}
