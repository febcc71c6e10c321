//! etcdctl 3.4 against etcd's KV service over a node running the MVCC
//! store (`ringraft::etcd::store::EtcdStore`), embedded: an in-process
//! node, the client listener serving the KV service, etcdctl in a child
//! process. put, get (with revisions, prefixes, keys-only, limits), del,
//! txn, compaction and the error for a compacted revision, with the
//! output etcd's etcdctl prints for them. `ringraft serve` does not run
//! this store yet; this pins the service and the store before it does.

mod etcd_common;

use etcd_common::embedded::start_embedded;
use etcd_common::ensure_etcd;
use ringraft::etcd::kv_service::KvService;
use ringraft::etcd::pb::etcdserverpb::kv_server::KvServer;
use ringraft::etcd::pb::etcdserverpb::watch_server::WatchServer;
use ringraft::etcd::store::EtcdStore;
use ringraft::etcd::watch_service::WatchService;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs etcdctl with `args` (and `stdin`), returning (success, stdout,
/// stderr). Blocking: called through `spawn_blocking`.
fn etcdctl(endpoint: SocketAddr, args: &[&str], stdin: &str) -> (bool, String, String) {
    ensure_etcd();
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=3s", "--command-timeout=10s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    let output = child.wait_with_output().expect("etcdctl ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn run(endpoint: SocketAddr, args: &[&str], stdin: &str) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdctl(endpoint, &args, &stdin)
    })
    .await
    .expect("etcdctl task")
}

/// Runs etcdctl and expects success with exactly `expected` on stdout.
async fn expect(endpoint: SocketAddr, args: &[&str], expected: &str) {
    let (success, stdout, stderr) = run(endpoint, args, "").await;
    assert!(success, "etcdctl {args:?} failed: {stderr}");
    assert_eq!(stdout, expected, "etcdctl {args:?}");
}

/// Starts `etcdctl watch …` in the background.
fn start_watch(endpoint: SocketAddr, args: &[&str]) -> std::process::Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl watch runs")
}

/// Stops a background watch (after a moment for the last events) and
/// returns what it printed.
async fn stop_watch(mut child: std::process::Child) -> String {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = child.kill();
    let output = child.wait_with_output().expect("watch output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_puts_gets_deletes_txns_and_compacts() {
    let served = start_embedded(0x77, EtcdStore::watch_feed, |node, feed, routes| {
        routes.add_service(KvServer::new(KvService::new(node.clone(), 0x77)));
        routes.add_service(WatchServer::new(WatchService::new(
            node.clone(),
            feed,
            0x77,
        )));
    })
    .await;
    let endpoint = served.endpoint;

    // A watch from revision 2 (the first write of a fresh store), started
    // with the writes: whichever of them it gets from the history and
    // whichever live, it must print each once, in order.
    let live_watch = start_watch(endpoint, &["watch", "fo", "--prefix", "--rev=2"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    expect(endpoint, &["put", "foo", "bar"], "OK\n").await;
    expect(endpoint, &["put", "foo", "baz"], "OK\n").await;
    expect(endpoint, &["put", "fox", "1"], "OK\n").await;
    expect(endpoint, &["get", "foo"], "foo\nbaz\n").await;
    // Revision 2 is the first put (a fresh store is at revision 1).
    expect(endpoint, &["get", "foo", "--rev=2"], "foo\nbar\n").await;
    expect(
        endpoint,
        &["get", "fo", "--prefix", "--keys-only"],
        "foo\n\nfox\n\n",
    )
    .await;
    expect(
        endpoint,
        &["get", "fo", "--prefix", "--limit=1"],
        "foo\nbaz\n",
    )
    .await;
    expect(
        endpoint,
        &["put", "foo", "qux", "--prev-kv"],
        "OK\nfoo\nbaz\n",
    )
    .await;
    let live = stop_watch(live_watch).await;
    assert_eq!(
        live, "PUT\nfoo\nbar\nPUT\nfoo\nbaz\nPUT\nfox\n1\nPUT\nfoo\nqux\n",
        "the live watch"
    );
    // A watch from revision 3 replays the history of foo, with the
    // previous values it asked for.
    let history = start_watch(endpoint, &["watch", "foo", "--rev=3", "--prev-kv"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let replayed = stop_watch(history).await;
    assert_eq!(
        replayed, "PUT\nfoo\nbar\nfoo\nbaz\nPUT\nfoo\nbaz\nfoo\nqux\n",
        "the replayed history"
    );
    let (ok, json, _) = run(endpoint, &["get", "foo", "-w", "json"], "").await;
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["header"]["revision"], 5, "{json}");
    assert_eq!(value["kvs"][0]["version"], 3, "{json}");
    assert_eq!(value["kvs"][0]["create_revision"], 2, "{json}");
    assert_eq!(value["count"], 1, "{json}");

    // A txn: the compare holds, so the success branch runs.
    let (ok, stdout, stderr) = run(
        endpoint,
        &["txn"],
        "value(\"foo\") = \"qux\"\n\nput foo txn\n\nget foo\n\n",
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "SUCCESS\n\nOK\n");
    let (ok, stdout, _) = run(
        endpoint,
        &["txn"],
        "value(\"foo\") = \"nope\"\n\nput foo never\n\nget foo\n\n",
    )
    .await;
    assert!(ok);
    assert_eq!(stdout, "FAILURE\n\nfoo\ntxn\n");

    expect(endpoint, &["del", "fo", "--prefix"], "2\n").await;
    expect(endpoint, &["get", "foo"], "").await;
    expect(endpoint, &["compaction", "4"], "compacted revision 4\n").await;
    let (ok, _, stderr) = run(endpoint, &["get", "foo", "--rev=3"], "").await;
    assert!(!ok);
    assert!(
        stderr.contains("etcdserver: mvcc: required revision has been compacted"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(endpoint, &["get", "foo", "--rev=100"], "").await;
    assert!(!ok);
    assert!(
        stderr.contains("required revision is a future revision"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(endpoint, &["put", "k", "v", "--lease=7"], "").await;
    assert!(!ok);
    assert!(stderr.contains("requested lease not found"), "{stderr}");

    // A watch from a revision ahead of the store (as a client resuming on
    // a member still catching up asks for) gets the events from that
    // revision on, not the live ones before it.
    let (ok, json, _) = run(endpoint, &["get", "foo", "-w", "json"], "").await;
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let now = value["header"]["revision"].as_i64().expect("revision");
    let ahead = format!("--rev={}", now + 3);
    let future_watch = start_watch(endpoint, &["watch", "ahead", "--prefix", &ahead]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 1..=4 {
        expect(endpoint, &["put", &format!("ahead{n}"), "v"], "OK\n").await;
    }
    let from_ahead = stop_watch(future_watch).await;
    assert_eq!(
        from_ahead,
        "PUT\nahead3\nv\nPUT\nahead4\nv\n",
        "a watch from revision {} (the store at {now})",
        now + 3
    );

    let node = served.node.clone();
    served.stop().await;
    node.shutdown().await.expect("shutdown");
}
