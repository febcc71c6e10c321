//! The persistence actor's metrics, on both backends: after persisting some
//! Readies and a snapshot, every metric of the persistence path declared
//! in `ringraft::metrics` has moved, under the `node` label the config
//! names.
//!
//! The actor records from its own OS thread, which a thread-local recorder
//! would not see, so this binary installs one global `DebuggingRecorder`
//! (and holds nothing but these tests). The tests take turns under one
//! lock, and each drains the recorder (a snapshot resets what it reads)
//! before it starts, so each sees only its own backend's values.

mod persist_common;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use persist_common::*;
use prost::Message as _;
use ringraft::metrics::{
    ENTRIES_PER_FSYNC, NODE_LABEL, PERSIST_QUEUE_DEPTH, READIES_PER_FSYNC,
    SNAPSHOT_SAVE_DURATION_SECONDS, WAL_FSYNC_DURATION_SECONDS, WAL_SEGMENTS,
    WAL_WRITE_BYTES_TOTAL, WAL_WRITE_DURATION_SECONDS, describe_all,
};
use ringraft::persist::{BackendKind, PersistActor, PersistConfig};
use ringraft::raftpb::{ConfState, Snapshot, SnapshotMetadata};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

for_each_backend!(persisting_readies_moves_every_persist_metric);

/// A value the actor never sets the queue depth gauge to.
const UNSET_GAUGE: f64 = -1.0;

/// The node id the actor is configured with, and so its `node` label.
const NODE: &str = "42";

/// What one snapshot of the recorder holds under [`NODE`]'s label, by kind
/// and name.
struct Recorded {
    values: HashMap<(MetricKind, String), (bool, DebugValue)>,
}

impl Recorded {
    fn take(snapshotter: &Snapshotter) -> Recorded {
        let values = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, _, _, _)| {
                key.key()
                    .labels()
                    .any(|label| label.key() == NODE_LABEL && label.value() == NODE)
            })
            .map(
                |(key, _unit, description, value): (CompositeKey, _, _, _)| {
                    let name = key.key().name().to_string();
                    ((key.kind(), name), (description.is_some(), value))
                },
            )
            .collect();
        Recorded { values }
    }

    fn get(&self, kind: MetricKind, name: &str) -> &DebugValue {
        let (described, value) = self
            .values
            .get(&(kind, name.to_string()))
            .unwrap_or_else(|| panic!("{name} ({kind:?}) was never recorded"));
        assert!(*described, "{name} has no description");
        value
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        match self.get(MetricKind::Histogram, name) {
            DebugValue::Histogram(samples) => samples.iter().map(|s| s.0).collect(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    fn counter(&self, name: &str) -> u64 {
        match self.get(MetricKind::Counter, name) {
            DebugValue::Counter(value) => *value,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str) -> f64 {
        match self.get(MetricKind::Gauge, name) {
            DebugValue::Gauge(value) => value.0,
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }
}

/// The binary's recorder, installed (and described) on first use.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        describe_all();
        snapshotter
    })
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        data: vec![0x3c; 2000],
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1],
                ..ConfState::default()
            },
            index,
            term,
        },
    }
}

fn persisting_readies_moves_every_persist_metric(kind: BackendKind) {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let snapshotter = snapshotter();
    // Drain what an earlier test left; mark the gauge as not set.
    drop(snapshotter.snapshot());
    metrics::gauge!(PERSIST_QUEUE_DEPTH, NODE_LABEL => NODE).set(UNSET_GAUGE);

    const READIES: u64 = 40;
    let dir = scratch_dir();
    // Tiny segments, so the run also cuts (and preallocates) a few.
    let (wal, snap_files, data_dir) = create_storage(dir.path(), 4096);
    let config = PersistConfig {
        node_id: NODE.parse().expect("a node id"),
        ..config_for(kind)
    };
    let actor = PersistActor::start(wal, snap_files, config).expect("start actor");
    assert_eq!(actor.backend(), kind);
    let sender = actor.sender();
    let mut index = 1;
    let mut entry_bytes = 0u64;
    let mut entries = 0u64;
    for number in 1..=READIES {
        let count = 1 + number % 3;
        let ready = ready_with_entries(number, index, count);
        entry_bytes += ready
            .entries
            .iter()
            .map(|e| e.encoded_len() as u64)
            .sum::<u64>();
        entries += count;
        sender.submit(ready).expect("submit");
        // Some one at a time, the rest back to back (group commit).
        if number <= READIES / 2 {
            wait_for(&actor.watch(), number).expect("persisted");
        }
        index += count;
    }
    wait_for(&actor.watch(), READIES).expect("persisted");
    sender
        .save_snapshot(snapshot(index / 2, 1))
        .expect("queued")
        .wait_blocking()
        .expect("snapshot saved");
    // Joining the actor's thread: everything it recorded is in.
    actor.shutdown().expect("clean shutdown");
    let segments = ringraft::wal::segment_name::list_segments(&data_dir.wal_dir)
        .expect("segments")
        .len();
    assert!(segments > 2, "{kind:?}: the run cut segments ({segments})");

    let recorded = Recorded::take(snapshotter);
    let fsyncs = recorded.histogram(WAL_FSYNC_DURATION_SECONDS);
    assert!(!fsyncs.is_empty(), "{kind:?}: no fsync duration recorded");
    assert!(fsyncs.iter().all(|s| *s >= 0.0));
    let writes = recorded.histogram(WAL_WRITE_DURATION_SECONDS);
    assert!(!writes.is_empty(), "{kind:?}: no write duration recorded");
    let written = recorded.counter(WAL_WRITE_BYTES_TOTAL);
    assert!(
        written >= entry_bytes,
        "{kind:?}: {written} bytes written for {entry_bytes} bytes of entries"
    );
    let readies_per_fsync = recorded.histogram(READIES_PER_FSYNC);
    assert!(!readies_per_fsync.is_empty(), "{kind:?}: readies per fsync");
    assert!(
        readies_per_fsync.iter().sum::<f64>() >= READIES as f64,
        "{kind:?}: every Ready counted in some fsync: {readies_per_fsync:?}"
    );
    let entries_per_fsync = recorded.histogram(ENTRIES_PER_FSYNC);
    assert!(!entries_per_fsync.is_empty(), "{kind:?}: entries per fsync");
    assert!(
        entries_per_fsync.iter().sum::<f64>() >= entries as f64,
        "{kind:?}: every entry counted in some fsync: {entries_per_fsync:?}"
    );
    let depth = recorded.gauge(PERSIST_QUEUE_DEPTH);
    assert!(
        depth >= 0.0 && depth < READIES as f64,
        "{kind:?}: queue depth gauge set by the actor: {depth}"
    );
    let snapshot_saves = recorded.histogram(SNAPSHOT_SAVE_DURATION_SECONDS);
    assert_eq!(snapshot_saves.len(), 1, "{kind:?}: one snapshot save timed");
    // Set at start, after every cut and after the purge: the last value is
    // what the directory holds.
    let segment_gauge = recorded.gauge(WAL_SEGMENTS);
    assert_eq!(
        segment_gauge, segments as f64,
        "{kind:?}: WAL segment gauge"
    );
}
