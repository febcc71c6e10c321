//! Disk faults under a running node, injected below the persistence actor
//! (`persist::fault_injection` through `PersistConfig::fault_injection`),
//! on both backends where a single node runs:
//!
//! - `ENOSPC` on a WAL write (a short write that tears the record it cut),
//!   on the `fallocate` of the next segment, and on a snapshot file write,
//!   each while writers run: every write acknowledged before the fault is
//!   there after a restart on the same data directory; every request after
//!   it fails with `NodeError::Storage` naming `ENOSPC` and the file (507
//!   through HTTP); nothing is acknowledged after the failed operation; the
//!   restarted node takes writes again.
//! - `EIO` on the WAL's fdatasync: the node stops (status and `/health`
//!   say why), no acknowledgement follows the failed sync, the sync is
//!   never retried; the bytes written after the last good sync are then
//!   zeroed (as a kernel that dropped the dirty pages would leave them) and
//!   the restart still has every acknowledged write.
//! - A 3-node cluster whose leader's disk fails: the other two elect a new
//!   leader and keep serving; the failed node, restarted without the
//!   fault, catches up.

mod node_common;
mod persist_common;

use node_common::{Cluster, DEADLINE, retryable};
use persist_common::{scratch_dir, uring_works};
use ringraft::KvStore;
use ringraft::http::{HttpState, router};
use ringraft::node::{Consistency, NodeConfig, NodeError, NodeHandle};
use ringraft::persist::fault_injection::{
    Fault, FaultInjection, FaultPlan, FaultTrigger, InjectedErrno, IoEvent, IoLog,
};
use ringraft::persist::{BackendChoice, BackendKind, PersistError};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{Instant, sleep};

/// Concurrent writers, so that group commit batches several Readies.
const WRITERS: usize = 4;
/// Writes acknowledged before the fault is armed.
const ACKED_BEFORE_FAULT: u64 = 300;
/// Bytes of each value.
const VALUE_LEN: usize = 200;
/// A writer that never sees the fault gives up after this many writes.
const MAX_WRITES_PER_WRITER: usize = 50_000;

/// Generates `mod $name { fn std(); fn uring(); }` running `$name(kind)`
/// on a two-thread tokio runtime.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn std() {
                    super::run(ringraft::persist::BackendKind::Std, super::$name);
                }
                #[test]
                fn uring() {
                    super::run(ringraft::persist::BackendKind::Uring, super::$name);
                }
            }
        )*
    };
}

for_each_backend!(
    enospc_on_a_wal_write_loses_nothing_acknowledged,
    enospc_on_fallocate_of_the_next_segment_loses_nothing_acknowledged,
    enospc_during_a_snapshot_save_loses_nothing_acknowledged,
    eio_on_fdatasync_stops_the_node_and_restart_recovers_from_the_wal,
);

fn run<F: Future<Output = ()>>(kind: BackendKind, test: impl FnOnce(BackendKind) -> F) {
    if kind == BackendKind::Uring && !uring_works() {
        eprintln!("skipped: io_uring unavailable");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test(kind));
}

fn backend_choice(kind: BackendKind) -> BackendChoice {
    match kind {
        BackendKind::Std => BackendChoice::Std,
        BackendKind::Uring => BackendChoice::Uring,
    }
}

/// A one-node cluster on tmpfs (`/dev/shm` when there is one).
fn single_node_cluster() -> Cluster {
    let mut cluster = Cluster {
        network: ringraft::node::InProcessNetwork::new(),
        dirs: BTreeMap::new(),
        voters: vec![1],
        nodes: BTreeMap::new(),
        tweak: |_| {},
        initial_state: std::sync::Arc::new(ringraft::KvStore::new),
    };
    cluster.dirs.insert(1, scratch_dir());
    cluster
}

fn data_dir(cluster: &Cluster, id: u64) -> PathBuf {
    cluster.dirs[&id].path().to_path_buf()
}

/// Starts `id` on `kind` with WAL segments of `segment_size_bytes`, a
/// snapshot every `snapshot_count` entries and, if given, the fault plan.
fn start(
    cluster: &mut Cluster,
    id: u64,
    kind: Option<BackendKind>,
    segment_size_bytes: u64,
    snapshot_count: u64,
    injection: Option<FaultInjection>,
) {
    cluster.start_with(id, |config: &mut NodeConfig| {
        if let Some(kind) = kind {
            config.persist.backend = backend_choice(kind);
        }
        config.wal_options.segment_size_bytes = segment_size_bytes;
        config.snapshot_count = snapshot_count;
        config.snapshot_catchup_entries = 50;
        config.persist.fault_injection = injection;
    });
}

fn key(writer: usize, i: usize) -> Vec<u8> {
    format!("w{writer}-{i:06}").into_bytes()
}

/// The value written under `key`: recognisable, `VALUE_LEN` bytes.
fn value(key: &[u8]) -> Vec<u8> {
    let mut value = key.to_vec();
    value.resize(VALUE_LEN, b'.');
    value
}

/// What one writer saw.
struct Written {
    acked: Vec<Vec<u8>>,
    failure: NodeError,
}

/// Writes distinct keys one after another until a non-retryable error.
async fn write_until_failure(
    node: NodeHandle<KvStore>,
    writer: usize,
    acked_total: Arc<AtomicU64>,
) -> Written {
    let mut acked = Vec::new();
    for i in 0..MAX_WRITES_PER_WRITER {
        let key = key(writer, i);
        match node.put(&key, &value(&key)).await {
            Ok(_) => {
                acked.push(key);
                acked_total.fetch_add(1, Ordering::SeqCst);
            }
            // Not acknowledged: may or may not be there after the restart.
            Err(error) if retryable(&error) => sleep(Duration::from_millis(5)).await,
            Err(failure) => return Written { acked, failure },
        }
    }
    panic!("writer {writer}: {MAX_WRITES_PER_WRITER} writes and no failure");
}

/// Runs the writers, arms `trigger` once `ACKED_BEFORE_FAULT` writes were
/// acknowledged, and returns what each saw.
async fn write_through_fault(node: &NodeHandle<KvStore>, trigger: &FaultTrigger) -> Vec<Written> {
    let acked_total = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            tokio::spawn(write_until_failure(
                node.clone(),
                writer,
                Arc::clone(&acked_total),
            ))
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while acked_total.load(Ordering::SeqCst) < ACKED_BEFORE_FAULT {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged",
            acked_total.load(Ordering::SeqCst)
        );
        sleep(Duration::from_millis(2)).await;
    }
    trigger.arm();
    let mut outcomes = Vec::new();
    for writer in writers {
        let written = tokio::time::timeout(DEADLINE, writer)
            .await
            .expect("the writers stop within the deadline: the node must not hang")
            .expect("writer task");
        outcomes.push(written);
    }
    outcomes
}

/// The persistence failure inside `error`, which must be `Storage`.
fn storage_failure(error: &NodeError) -> Arc<PersistError> {
    match error {
        NodeError::Storage(failure) => Arc::clone(failure),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

/// Every writer failed with the same storage failure, whose errno is
/// `errno` and whose message names a file containing `path_fragment`.
fn assert_one_storage_failure(
    written: &[Written],
    errno: InjectedErrno,
    path_fragment: &str,
) -> Arc<PersistError> {
    let failure = storage_failure(&written[0].failure);
    for w in written {
        assert!(
            Arc::ptr_eq(&storage_failure(&w.failure), &failure),
            "one failure for all: {} vs {failure}",
            w.failure
        );
    }
    let os_error = failure.os_error().expect("an OS error at the root");
    assert_eq!(
        os_error.raw_os_error(),
        errno.to_io_error().raw_os_error(),
        "{failure}"
    );
    assert_eq!(failure.is_disk_full(), errno == InjectedErrno::NoSpace);
    let message = NodeError::Storage(Arc::clone(&failure)).to_string();
    assert!(message.contains(path_fragment), "names the file: {message}");
    let cause = if errno == InjectedErrno::NoSpace {
        "No space left on device"
    } else {
        "Input/output error"
    };
    assert!(message.contains(cause), "names the cause: {message}");
    failure
}

/// After the failure every request fails with it: writes, reads, status.
async fn assert_node_refuses_everything(node: &NodeHandle<KvStore>, failure: &Arc<PersistError>) {
    let refused = node.put(b"after-fault", b"x").await.expect_err("refused");
    assert!(
        Arc::ptr_eq(&storage_failure(&refused), failure),
        "{refused}"
    );
    let refused = node
        .get(b"after-fault", Consistency::Linearizable)
        .await
        .expect_err("refused");
    assert!(
        Arc::ptr_eq(&storage_failure(&refused), failure),
        "{refused}"
    );
    let refused = node.status().await.expect_err("stopped");
    assert!(
        Arc::ptr_eq(&storage_failure(&refused), failure),
        "{refused}"
    );
    // The handle says why, and an embedding program waiting for the node
    // to stop learns it too.
    let reported = node.failure().expect("the handle reports the failure");
    assert!(
        Arc::ptr_eq(&storage_failure(&reported), failure),
        "{reported}"
    );
    let stopped = tokio::time::timeout(DEADLINE, node.stopped())
        .await
        .expect("stopped() resolves once the node has stopped")
        .expect_err("with the failure");
    assert!(
        Arc::ptr_eq(&storage_failure(&stopped), failure),
        "{stopped}"
    );
}

/// Through HTTP: a write answers 507 with the cause, `/health` 503 with it.
async fn assert_http_reports(node: &NodeHandle<KvStore>, cause: &str) {
    let addr = serve(node.clone()).await;
    let (status, body) = http(addr, "PUT", "/v1/kv/after-fault", b"x").await;
    assert_eq!(status, 507, "{body}");
    let error = serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("storage failed, the node has stopped") && error.contains(cause),
        "a clear message: {error}"
    );
    let (status, body) = http(addr, "GET", "/v1/kv/w0-000000", b"").await;
    assert_eq!(status, 507, "reads too: {body}");
    let (status, body) = http(addr, "GET", "/health", b"").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(cause), "{body}");
}

/// No acknowledgement after the last failed operation of the log.
fn assert_nothing_acknowledged_after_failure(events: &[IoEvent]) {
    let failed = events
        .iter()
        .rposition(|e| {
            matches!(
                e,
                IoEvent::Write { ok: false, .. }
                    | IoEvent::SyncFinished { ok: false, .. }
                    | IoEvent::Preallocated { ok: false, .. }
            )
        })
        .expect("an operation failed");
    let after = &events[failed + 1..];
    assert!(
        after
            .iter()
            .all(|e| !matches!(e, IoEvent::Acknowledged { .. })),
        "acknowledged after the failure: {after:?}"
    );
    assert!(
        events[..failed]
            .iter()
            .any(|e| matches!(e, IoEvent::Acknowledged { .. })),
        "acknowledgements before it"
    );
}

/// The failed node's handle: its shutdown reports the failure.
async fn remove_failed(cluster: &mut Cluster, id: u64, failure: &Arc<PersistError>) {
    cluster.network.remove(id);
    let node = cluster.nodes.remove(&id).expect("running");
    let stopped = node.shutdown().await.expect_err("the node failed");
    assert!(
        Arc::ptr_eq(&storage_failure(&stopped), failure),
        "{stopped}"
    );
}

/// Restarts `id` without faults and checks that it takes writes and has
/// every acknowledged one.
async fn restart_and_check(
    cluster: &mut Cluster,
    id: u64,
    kind: Option<BackendKind>,
    segment_size_bytes: u64,
    written: &[Written],
) {
    start(cluster, id, kind, segment_size_bytes, 1_000_000, None);
    let node = cluster.node(id).clone();
    assert_eq!(node.boot_report().path, ringraft::node::BootPath::Restart);
    node_common::put(&node, b"after-restart", b"works").await;
    let mut checked = 0;
    for w in written {
        for key in &w.acked {
            let found = node
                .get(key, Consistency::Serializable)
                .await
                .expect("read");
            assert_eq!(
                found.as_deref(),
                Some(value(key).as_slice()),
                "acknowledged {} lost",
                String::from_utf8_lossy(key)
            );
            checked += 1;
        }
    }
    assert!(checked as u64 >= ACKED_BEFORE_FAULT);
}

/// A single node that ran writers into an injected fault, and what the
/// fault left: the recorded IO, what each writer saw, the one failure.
struct Faulted {
    cluster: Cluster,
    log: IoLog,
    written: Vec<Written>,
    failure: Arc<PersistError>,
}

/// The part every single-node fault shares: start a node with `plan`
/// (armed by the trigger it is given), write through the fault, and check
/// that every writer got the same storage failure naming `errno` and a
/// path containing `path_fragment`, that the node refuses everything
/// after it, and that HTTP answers 507 with the cause.
async fn run_into_fault(
    kind: BackendKind,
    segment_size_bytes: u64,
    snapshot_count: u64,
    errno: InjectedErrno,
    path_fragment: &str,
    plan: impl FnOnce(&FaultTrigger) -> FaultPlan,
) -> Faulted {
    let mut cluster = single_node_cluster();
    let trigger = FaultTrigger::new();
    let log = IoLog::default();
    let injection = FaultInjection {
        plan: plan(&trigger),
        log: log.clone(),
    };
    start(
        &mut cluster,
        1,
        Some(kind),
        segment_size_bytes,
        snapshot_count,
        Some(injection),
    );
    let node = cluster.node(1).clone();
    let written = write_through_fault(&node, &trigger).await;
    let failure = assert_one_storage_failure(&written, errno, path_fragment);
    assert_node_refuses_everything(&node, &failure).await;
    let cause = match errno {
        InjectedErrno::NoSpace => "No space left on device",
        InjectedErrno::Io => "Input/output error",
    };
    assert_http_reports(&node, cause).await;
    Faulted {
        cluster,
        log,
        written,
        failure,
    }
}

fn assert_failed_operation(failure: &PersistError, expected: &str) {
    assert!(
        matches!(failure, PersistError::Io { operation, .. } if *operation == expected),
        "{failure}"
    );
}

/// Whether `dir` holds a file whose name ends with `suffix`.
fn has_file_ending(dir: &Path, suffix: &str) -> bool {
    std::fs::read_dir(dir).expect("read dir").any(|e| {
        e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(suffix)
    })
}

async fn enospc_on_a_wal_write_loses_nothing_acknowledged(kind: BackendKind) {
    const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
    // A short write: 100 bytes of the batch reach the file, tearing the
    // record they cut; restart must repair that tail.
    let Faulted {
        mut cluster,
        log,
        written,
        failure,
    } = run_into_fault(
        kind,
        SEGMENT_BYTES,
        1_000_000,
        InjectedErrno::NoSpace,
        ".wal",
        |trigger| FaultPlan {
            wal_write: Some(Fault::while_armed(trigger, InjectedErrno::NoSpace).after_writing(100)),
            ..FaultPlan::default()
        },
    )
    .await;
    assert_failed_operation(&failure, "writing WAL");
    assert_nothing_acknowledged_after_failure(&log.events());
    remove_failed(&mut cluster, 1, &failure).await;
    let wal_dir = data_dir(&cluster, 1).join("wal");
    restart_and_check(&mut cluster, 1, Some(kind), SEGMENT_BYTES, &written).await;
    // The short write tore a record: the restart repaired the tail,
    // keeping a copy of what it cut.
    assert!(
        has_file_ending(&wal_dir, ringraft::wal::repair::BROKEN_SUFFIX),
        "the torn tail was repaired"
    );
    cluster.shutdown().await;
}

async fn enospc_on_fallocate_of_the_next_segment_loses_nothing_acknowledged(kind: BackendKind) {
    // Small segments: a cut (and a preparation) every few hundred writes.
    const SEGMENT_BYTES: u64 = 64 * 1024;
    let Faulted {
        mut cluster,
        log,
        written,
        failure,
    } = run_into_fault(
        kind,
        SEGMENT_BYTES,
        1_000_000,
        InjectedErrno::NoSpace,
        ".tmp",
        |trigger| FaultPlan {
            fallocate: Some(Fault::while_armed(trigger, InjectedErrno::NoSpace)),
            ..FaultPlan::default()
        },
    )
    .await;
    assert!(
        failure.to_string().contains("preparing WAL segment"),
        "{failure}"
    );
    let events = log.events();
    // The helper's attempt and the cut's retry both failed.
    let failed_preallocations = events
        .iter()
        .filter(|e| matches!(e, IoEvent::Preallocated { ok: false, .. }))
        .count();
    assert!(failed_preallocations >= 2, "{failed_preallocations}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, IoEvent::Preallocated { ok: true, .. })),
        "segments were prepared before the fault"
    );
    assert_nothing_acknowledged_after_failure(&events);
    remove_failed(&mut cluster, 1, &failure).await;
    restart_and_check(&mut cluster, 1, Some(kind), SEGMENT_BYTES, &written).await;
    cluster.shutdown().await;
}

async fn enospc_during_a_snapshot_save_loses_nothing_acknowledged(kind: BackendKind) {
    const SEGMENT_BYTES: u64 = 256 * 1024;
    // A short write of the snapshot file: a torn `.snap.tmp` stays behind.
    // A snapshot every 100 entries: several succeed before the fault.
    let Faulted {
        mut cluster,
        log,
        written,
        failure,
    } = run_into_fault(
        kind,
        SEGMENT_BYTES,
        100,
        InjectedErrno::NoSpace,
        ".snap",
        |trigger| FaultPlan {
            snapshot_write: Some(
                Fault::while_armed(trigger, InjectedErrno::NoSpace).after_writing(64),
            ),
            ..FaultPlan::default()
        },
    )
    .await;
    assert_failed_operation(&failure, "writing snapshot file");
    let events = log.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, IoEvent::Renamed { ok: true, .. })),
        "snapshots were saved before the fault"
    );
    assert_nothing_acknowledged_after_failure(&events);
    let snap_dir = data_dir(&cluster, 1).join("snap");
    remove_failed(&mut cluster, 1, &failure).await;
    assert!(
        has_file_ending(&snap_dir, ".tmp"),
        "the torn snapshot file is left behind for the restart to remove"
    );
    restart_and_check(&mut cluster, 1, Some(kind), SEGMENT_BYTES, &written).await;
    cluster.shutdown().await;
}

async fn eio_on_fdatasync_stops_the_node_and_restart_recovers_from_the_wal(kind: BackendKind) {
    // One segment for the whole run: every WAL sync is the actor's, so the
    // log shows exactly which bytes a successful sync covered.
    const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
    let Faulted {
        mut cluster,
        log,
        written,
        failure,
    } = run_into_fault(
        kind,
        SEGMENT_BYTES,
        1_000_000,
        InjectedErrno::Io,
        ".wal",
        |trigger| FaultPlan {
            wal_sync_data: Some(Fault::while_armed(trigger, InjectedErrno::Io)),
            ..FaultPlan::default()
        },
    )
    .await;
    assert_failed_operation(&failure, "fdatasync of WAL");
    let events = log.events();
    let failed_sync = events
        .iter()
        .position(|e| matches!(e, IoEvent::SyncFinished { ok: false, .. }))
        .expect("a sync failed");
    assert!(
        events[failed_sync + 1..].iter().all(|e| !matches!(
            e,
            IoEvent::Acknowledged { .. } | IoEvent::SyncStarted { .. } | IoEvent::Write { .. }
        )),
        "after the failed sync: no acknowledgement, no retried sync, no write: {:?}",
        &events[failed_sync + 1..]
    );
    assert_nothing_acknowledged_after_failure(&events);
    remove_failed(&mut cluster, 1, &failure).await;

    // The kernel may have dropped the dirty pages of a failed sync: zero
    // every byte written after the last sync that succeeded.
    let zeroed_bytes = drop_unsynced_writes(&events);
    assert!(zeroed_bytes > 0, "the failed batch was written");
    restart_and_check(&mut cluster, 1, Some(kind), SEGMENT_BYTES, &written).await;
    cluster.shutdown().await;
}

/// Zeroes, in place, what every WAL write after the start of the last
/// successful fdatasync put in the file; returns how many bytes.
fn drop_unsynced_writes(events: &[IoEvent]) -> u64 {
    let last_good_sync = events
        .iter()
        .rposition(|e| matches!(e, IoEvent::SyncFinished { ok: true, .. }))
        .expect("a sync succeeded");
    let started = events[..last_good_sync]
        .iter()
        .rposition(|e| matches!(e, IoEvent::SyncStarted { .. }))
        .expect("its start");
    let mut zeroed = 0;
    for event in &events[started..] {
        if let IoEvent::Write {
            path,
            file_offset,
            len,
            ..
        } = event
        {
            assert!(
                path.extension().is_some_and(|e| e == "wal"),
                "a WAL write: {}",
                path.display()
            );
            zero_range(path, *file_offset, *len);
            zeroed += *len as u64;
        }
    }
    zeroed
}

fn zero_range(path: &Path, file_offset: u64, len: usize) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    file.write_all_at(&vec![0u8; len], file_offset)
        .expect("zero");
    file.sync_data().expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_disk_failure_in_a_three_node_cluster_others_serve_and_it_catches_up() {
    const SEGMENT_BYTES: u64 = 256 * 1024;
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let first = cluster.leader().await;
    node_common::put(cluster.node(first), b"before", b"1").await;
    // Node 3 gets a disk that fails on command, then the leadership.
    const VICTIM: u64 = 3;
    cluster.stop(VICTIM).await;
    let trigger = FaultTrigger::new();
    let log = IoLog::default();
    let plan = FaultPlan {
        wal_sync_data: Some(Fault::while_armed(&trigger, InjectedErrno::Io)),
        wal_write: Some(Fault::while_armed(&trigger, InjectedErrno::NoSpace)),
        ..FaultPlan::default()
    };
    let injection = FaultInjection {
        plan,
        log: log.clone(),
    };
    start(
        &mut cluster,
        VICTIM,
        None,
        SEGMENT_BYTES,
        1_000_000,
        Some(injection),
    );
    let _ = cluster.leader().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let leader = cluster.leader().await;
        if leader == VICTIM {
            break;
        }
        let _ = cluster.node(leader).transfer_leader(VICTIM).await;
        assert!(Instant::now() < deadline, "node {VICTIM} never led");
    }

    // Writers on the healthy nodes (their proposals go to the leader).
    let acked: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [1u64, 2]
        .into_iter()
        .map(|id| {
            let node = cluster.node(id).clone();
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("n{id}-{i:06}").into_bytes();
                    i += 1;
                    match node.put(&key, &value(&key)).await {
                        Ok(_) => acked.lock().expect("lock").push(key),
                        Err(error) if retryable(&error) => sleep(Duration::from_millis(10)).await,
                        Err(error) => panic!("node {id}: {error}"),
                    }
                }
            })
        })
        .collect();
    let acked_count = || acked.lock().expect("lock").len();
    while acked_count() < 200 {
        assert!(Instant::now() < deadline + DEADLINE, "writes stall");
        sleep(Duration::from_millis(5)).await;
    }
    trigger.arm();
    // The victim stops; the others elect a leader and keep acknowledging.
    let victim = cluster.node(VICTIM).clone();
    let failure = loop {
        match victim.status().await {
            Err(NodeError::Storage(failure)) => break failure,
            Ok(_) => sleep(Duration::from_millis(5)).await,
            Err(other) => panic!("unexpected: {other}"),
        }
    };
    let at_failure = acked_count();
    let deadline = Instant::now() + DEADLINE;
    while acked_count() < at_failure + 200 {
        assert!(
            Instant::now() < deadline,
            "the two healthy nodes stopped serving at {} acknowledged writes",
            acked_count()
        );
        sleep(Duration::from_millis(5)).await;
    }
    assert_nothing_acknowledged_after_failure(&log.events());
    remove_failed(&mut cluster, VICTIM, &failure).await;
    let new_leader = cluster.node(1).status().await.expect("status").leader;
    assert!(
        matches!(new_leader, Some(1 | 2)),
        "a healthy node leads: {new_leader:?}"
    );

    // Restarted without the fault, the victim catches up.
    start(&mut cluster, VICTIM, None, SEGMENT_BYTES, 1_000_000, None);
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer");
    }
    let last = node_common::put(cluster.node(1), b"last", b"1").await;
    node_common::wait_applied(cluster.node(VICTIM), last).await;
    let acked = acked.lock().expect("lock").clone();
    for id in [1, 2, VICTIM] {
        let node = cluster.node(id);
        for key in &acked {
            let found = node
                .get(key, Consistency::Serializable)
                .await
                .expect("read");
            assert_eq!(
                found.as_deref(),
                Some(value(key).as_slice()),
                "node {id} lacks acknowledged {}",
                String::from_utf8_lossy(key)
            );
        }
    }
    cluster.shutdown().await;
}

/// Serves the HTTP API of `node` on an ephemeral loopback port.
async fn serve(node: NodeHandle<KvStore>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(HttpState::new(node))).await;
    });
    addr
}

/// One HTTP/1.1 request (`Connection: close`); the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
