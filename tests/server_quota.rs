//! The space quota and paged prefix scans against a real `ringraft serve`
//! process, over HTTP as a user sees them.
//!
//! - With `--quota-backend-bytes 1048576`, concurrent writers fill the
//!   state until puts are refused with 507 "quota exceeded"; the state
//!   never passes the quota (admission counts the puts in flight); the
//!   NOSPACE alarm shows in `/v1/status` and `/metrics`; every put is then
//!   refused, reads and deletes work; deletes alone do not clear the
//!   alarm (the MVCC store keeps tombstones and history, as etcd does); a
//!   compaction once the live keys are under 90% of the quota clears it,
//!   and puts succeed again;
//!   every acknowledged write is readable, also after a restart (which
//!   restores the same state size from the snapshot and the WAL).
//! - A prefix scan over more than the 4 MiB byte cap, followed through its
//!   `Ringraft-Next-Start` header, returns every key exactly once, in
//!   order, with its value, keys of any bytes included.

mod server_common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ringraft::kv::pair_bytes;
use server_common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const QUOTA_BYTES: u64 = 1 << 20;
const VALUE_BYTES: usize = 40 * 1024;
const WRITERS: usize = 4;

fn value(key: &str) -> Vec<u8> {
    let mut value = format!("{key}=").into_bytes();
    let fill = key.bytes().fold(0u8, u8::wrapping_add);
    value.resize(VALUE_BYTES, fill);
    value
}

/// Compacts the store at its current revision through etcd's gRPC API.
fn compact_now(client: SocketAddr) {
    use ringraft::etcd::pb::etcdserverpb::{CompactionRequest, RangeRequest, kv_client::KvClient};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut kv = KvClient::connect(format!("http://{client}"))
            .await
            .expect("gRPC connects");
        let range = RangeRequest {
            key: b"a".to_vec().into(),
            ..RangeRequest::default()
        };
        let revision = kv
            .range(range)
            .await
            .expect("range")
            .into_inner()
            .header
            .expect("a header")
            .revision;
        kv.compact(CompactionRequest {
            revision,
            physical: true,
        })
        .await
        .expect("compaction");
    });
}

/// `(alarms, state_bytes, quota_bytes)` of a node's status.
fn quota_status(client: SocketAddr) -> (Vec<String>, u64, u64) {
    let status = status(client).expect("status answers");
    let alarms = status["alarms"]
        .as_array()
        .unwrap_or_else(|| panic!("no alarms in {status}"))
        .iter()
        .map(|alarm| alarm.as_str().unwrap_or_default().to_string())
        .collect();
    let number = |field: &str| {
        status[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    };
    (alarms, number("state_bytes"), number("quota_bytes"))
}

/// The value of the series `name{node="1"}` in a scrape of `/metrics`.
fn metric(client: SocketAddr, name: &str) -> f64 {
    let response = http(client, "GET", "/metrics", b"").expect("metrics");
    assert_eq!(response.status, 200);
    let prefix = format!("{name}{{node=\"1\"}} ");
    response
        .text()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{}", response.text()))
}

/// What the quota counts for `pairs`.
fn counted(pairs: &BTreeMap<String, Vec<u8>>) -> u64 {
    pairs
        .iter()
        .map(|(key, value)| pair_bytes(key.len(), value.len()))
        .sum()
}

fn put(client: SocketAddr, key: &str, value: &[u8]) -> server_common::Response {
    http(client, "PUT", &format!("/v1/kv/{key}"), value).expect("the server answers")
}

fn assert_quota_refusal(response: &server_common::Response, what: &str) {
    assert_eq!(response.status, 507, "{what}: {}", response.text());
    let error = response.error();
    assert!(
        error.starts_with("quota exceeded"),
        "{what}: the refusal says so: {error}"
    );
    // Not the disk-failure 507, which names a file and an OS error.
    assert!(!error.contains("os error"), "{what}: {error}");
}

#[test]
fn a_full_quota_refuses_writes_keeps_reads_and_deletes_and_clears_after_deletes() {
    let mut cluster = ProcCluster::start_with(
        &[1],
        &[
            "--quota-backend-bytes",
            &QUOTA_BYTES.to_string(),
            "--snapshot-count",
            "7",
        ],
    );
    let client = cluster.proc(1).client;
    wait_healthy(client);
    let (alarms, state, quota) = quota_status(client);
    assert_eq!((alarms.len(), state, quota), (0, 0, QUOTA_BYTES));

    // Concurrent writers until each is refused: all refusals must be the
    // quota's, and admission must count the puts in flight.
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let acknowledged = Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                for n in 0.. {
                    let key = format!("w{writer}-{n:03}");
                    let response = put(client, &key, &value(&key));
                    match response.status {
                        200 => {
                            let mut acknowledged = acknowledged.lock().expect("lock");
                            acknowledged.insert(key.clone(), value(&key));
                        }
                        _ => {
                            assert_quota_refusal(&response, &key);
                            return n;
                        }
                    }
                    assert!(n < 100, "writer {writer} was never refused");
                }
                unreachable!("the loop returns")
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    let mut acknowledged = Arc::try_unwrap(acknowledged)
        .expect("writers done")
        .into_inner()
        .expect("lock");
    let written = counted(&acknowledged);
    // A refusal means the state, the other writers' puts in flight (up to
    // three, possibly counted twice for a moment after they applied) and
    // this put would not fit.
    let pair = pair_bytes("w0-000".len(), VALUE_BYTES);
    assert!(
        written + pair * WRITERS as u64 > QUOTA_BYTES,
        "refused while there was room: {} pairs ({written} bytes)",
        acknowledged.len()
    );

    let (alarms, state, _) = quota_status(client);
    assert_eq!(alarms, ["NOSPACE"], "alarm in status");
    assert_eq!(
        state, written,
        "the state counts exactly what was acknowledged"
    );
    assert!(state <= QUOTA_BYTES, "the state passed the quota: {state}");
    assert_eq!(metric(client, "ringraft_server_alarm_nospace"), 1.0);
    assert_eq!(
        metric(client, "ringraft_server_quota_backend_bytes"),
        QUOTA_BYTES as f64
    );
    assert_eq!(
        metric(client, "ringraft_server_state_size_bytes"),
        state as f64
    );

    // While the alarm holds, even a tiny put is refused; reads work.
    assert_quota_refusal(&put(client, "tiny", b"x"), "tiny put under the alarm");
    for (key, expected) in &acknowledged {
        let read = http(client, "GET", &format!("/v1/kv/{key}"), b"").expect("read");
        assert_eq!(read.status, 200, "{key}: {}", read.text());
        assert!(read.body == *expected, "{key} has its value");
    }
    let scan = http(client, "GET", "/v1/kv?prefix=w&limit=3", b"").expect("scan");
    assert_eq!(scan.status, 200, "{}", scan.text());

    // Deletes work, but in the MVCC store a delete adds a tombstone and the
    // deleted versions stay until a compaction (as in etcd): the alarm
    // holds however many keys are deleted. Keys are deleted until what is
    // live is at 90% of the quota; a compaction at the current revision
    // then drops the history, and the alarm clears.
    let resume = QUOTA_BYTES - QUOTA_BYTES / 10;
    let mut deleted = Vec::new();
    while counted(&acknowledged) > resume {
        let key = acknowledged
            .keys()
            .next()
            .cloned()
            .expect("a key to delete");
        let response = http(client, "DELETE", &format!("/v1/kv/{key}"), b"").expect("delete");
        assert_eq!(response.status, 200, "{}", response.text());
        acknowledged.remove(&key);
        deleted.push(key);
        let (alarms, state, _) = quota_status(client);
        assert_eq!(alarms, ["NOSPACE"], "cleared by a delete at {state} bytes");
        assert!(state > resume, "deletes alone shrank the state to {state}");
    }
    compact_now(client);
    let (alarms, state, _) = quota_status(client);
    assert_eq!(
        state,
        counted(&acknowledged),
        "after the compaction only live keys count"
    );
    assert!(alarms.is_empty(), "still raised at {state} bytes");
    assert!(!deleted.is_empty());
    assert_eq!(metric(client, "ringraft_server_alarm_nospace"), 0.0);

    // Writes are admitted again.
    let key = "again";
    let response = put(client, key, &value(key));
    assert_eq!(response.status, 200, "{}", response.text());
    acknowledged.insert(key.to_string(), value(key));

    // Nothing acknowledged was lost, nothing deleted came back; the same
    // after a restart, with the same state size.
    let check = |acknowledged: &BTreeMap<String, Vec<u8>>| {
        for (key, expected) in acknowledged {
            let read = http(client, "GET", &format!("/v1/kv/{key}"), b"").expect("read");
            assert_eq!(read.status, 200, "{key}: {}", read.text());
            assert!(read.body == *expected, "{key} has its value");
        }
        for key in &deleted {
            let read = http(client, "GET", &format!("/v1/kv/{key}"), b"").expect("read");
            assert_eq!(read.status, 404, "{key} was deleted");
        }
    };
    check(&acknowledged);
    let (_, before_restart, _) = quota_status(client);
    assert_eq!(before_restart, counted(&acknowledged));
    let stopped = cluster.procs.get_mut(&1).expect("node 1").terminate();
    assert!(stopped.is_some_and(|status| status.success()));
    // Every 7 entries a snapshot: the restart restores one, then replays.
    let snapshots = std::fs::read_dir(cluster.proc(1).dir.join("snap"))
        .expect("snap directory")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.file_name().to_string_lossy().ends_with(".snap"))
        })
        .count();
    assert!(snapshots > 0, "no snapshot to restore from");
    cluster.restart(1);
    wait_healthy(client);
    let (alarms, after_restart, _) = quota_status(client);
    assert_eq!(after_restart, before_restart, "restored state size");
    assert!(alarms.is_empty());
    check(&acknowledged);
}

/// Every page of `GET /v1/kv?prefix=…&limit=…`, following the
/// continuation header: `(pairs, bytes of keys and values)` per page.
fn scan_pages(client: SocketAddr, prefix: &str, limit: usize) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut pages = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let mut path = format!("/v1/kv?prefix={prefix}&limit={limit}");
        if let Some(start) = &start {
            path.push_str(&format!("&start={start}"));
        }
        let response = http(client, "GET", &path, b"").expect("scan");
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = response
            .json()
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not an array"))
            .iter()
            .map(|pair| {
                let decode = |field: &str| {
                    BASE64
                        .decode(pair[field].as_str().expect("base64 string"))
                        .expect("base64")
                };
                (decode("key"), decode("value"))
            })
            .collect();
        assert!(pages.len() < 1000, "the scan does not end");
        pages.push(pairs);
        start = response.headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("ringraft-next-start")
                .then(|| value.trim().to_string())
        });
        if start.is_none() {
            return pages;
        }
    }
}

#[test]
fn a_scan_past_the_byte_cap_continues_through_its_header_over_every_key_once() {
    const CAP: usize = 4 * 1024 * 1024;
    let mut cluster = ProcCluster::start(&[1]);
    let client = cluster.proc(1).client;
    wait_healthy(client);
    let _ = cluster.leader();

    // Ten values of 1 MB among small ones, and keys of awkward bytes (the
    // continuation must carry them): 0xFF, a slash, a plus, a space, `%`.
    let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut write = |path_key: &str, key: Vec<u8>, value: Vec<u8>| {
        let response = http(client, "PUT", &format!("/v1/kv/{path_key}"), &value).expect("put");
        assert_eq!(response.status, 200, "{path_key}: {}", response.text());
        expected.insert(key, value);
    };
    for n in 0..10u8 {
        write(
            &format!("s%2Fbig{n}"),
            format!("s/big{n}").into_bytes(),
            vec![n; 1_000_000],
        );
    }
    for n in 0..40u8 {
        write(
            &format!("s%2Fsmall{n:02}"),
            format!("s/small{n:02}").into_bytes(),
            vec![n; 100],
        );
    }
    for (path_key, key) in [
        ("s%2F%FF%FE", b"s/\xff\xfe".to_vec()),
        ("s%2Fa+b", b"s/a+b".to_vec()),
        ("s%2Fa%20b", b"s/a b".to_vec()),
        ("s%2F%25", b"s/%".to_vec()),
    ] {
        write(path_key, key, b"awkward".to_vec());
    }
    write("t-outside", b"t-outside".to_vec(), b"not under s/".to_vec());
    expected.remove(b"t-outside".as_slice());

    // By bytes: limit far above the count, so the cap cuts the pages.
    let pages = scan_pages(client, "s%2F", 10_000);
    assert!(pages.len() >= 3, "{} pages for 10 MB", pages.len());
    for page in &pages {
        let bytes: usize = page.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(!page.is_empty(), "an empty page");
        assert!(
            page.len() == 1 || bytes <= CAP,
            "a page of {bytes} bytes over the cap"
        );
    }
    let all: Vec<(Vec<u8>, Vec<u8>)> = pages.into_iter().flatten().collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = expected.clone().into_iter().collect();
    assert_eq!(all.len(), want.len(), "every key once");
    assert!(all == want, "every key once, in order, with its value");

    // By count, over the small keys only.
    let pages = scan_pages(client, "s%2Fsmall", 7);
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [7, 7, 7, 7, 7, 5]
    );
    let keys: Vec<Vec<u8>> = pages.into_iter().flatten().map(|(k, _)| k).collect();
    let want: Vec<Vec<u8>> = (0..40u8)
        .map(|n| format!("s/small{n:02}").into_bytes())
        .collect();
    assert_eq!(keys, want);

    // A last page carries no continuation.
    let response = http(client, "GET", "/v1/kv?prefix=t", b"").expect("scan");
    assert!(
        !response
            .headers
            .to_ascii_lowercase()
            .contains("ringraft-next-start"),
        "{}",
        response.headers
    );
}
