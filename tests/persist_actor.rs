//! The persistence actor end to end, on both backends: group commit from
//! many producers, commit-only Readies, snapshots in the safe order (and
//! their release only after a synced commit), shutdown, and the backend
//! choice.

mod persist_common;

use persist_common::*;
use ringraft::persist::fault_injection::{FaultPlan, IoEvent};
use ringraft::persist::uring_backend::probe_uring;
use ringraft::persist::{
    BackendChoice, BackendKind, PersistActor, PersistConfig, PersistError, ReadyToPersist,
};
use ringraft::raftpb::{ConfState, HardState, Snapshot, SnapshotMetadata};
use ringraft::storage::DurableStorage;
use ringraft::wal::WalOptions;
use std::sync::{Arc, Mutex};

for_each_backend!(
    many_producers_are_acknowledged_in_order_and_readable_after_drop,
    commit_only_ready_is_acknowledged_without_fdatasync,
    shutdown_finishes_queued_readies,
    snapshot_save_goes_file_then_marker_then_release,
    segments_are_released_only_once_a_synced_commit_covers_the_snapshot,
    ready_with_snapshot_is_recovered_from_disk,
    out_of_order_ready_numbers_stop_the_actor,
);

/// Numbering and sending under one lock: Readies reach the queue in number
/// order, their entries continue the log.
struct Sequencer {
    next_number: u64,
    next_index: u64,
}

fn many_producers_are_acknowledged_in_order_and_readable_after_drop(kind: BackendKind) {
    const PRODUCERS: u64 = 8;
    const READIES_PER_PRODUCER: u64 = 60;
    let dir = scratch_dir();
    // Small segments, so the run cuts several.
    let (actor, data_dir, log) = start_recorded(kind, dir.path(), 16 * 1024, FaultPlan::default());
    let sequencer = Arc::new(Mutex::new(Sequencer {
        next_number: 1,
        next_index: 1,
    }));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let sender = actor.sender();
            let watch = actor.watch();
            let sequencer = Arc::clone(&sequencer);
            std::thread::spawn(move || {
                for i in 0..READIES_PER_PRODUCER {
                    let count = 1 + (producer + i) % 3;
                    let number = {
                        let mut s = sequencer.lock().unwrap();
                        let ready = ready_with_entries(s.next_number, s.next_index, count);
                        sender.submit(ready).expect("submit");
                        s.next_index += count;
                        s.next_number += 1;
                        s.next_number - 1
                    };
                    // Half the producers wait for each acknowledgement (closed
                    // loop), half keep sending.
                    if producer % 2 == 0 {
                        let persisted = wait_for(&watch, number).expect("acknowledged");
                        assert!(persisted.number >= number);
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().expect("producer");
    }
    let (last_number, last_index) = {
        let s = sequencer.lock().unwrap();
        (s.next_number - 1, s.next_index - 1)
    };
    assert_eq!(last_number, PRODUCERS * READIES_PER_PRODUCER);
    wait_for(&actor.watch(), last_number).expect("all acknowledged");
    drop(actor);

    let acks = acknowledged(&log.events());
    assert!(
        acks.windows(2).all(|w| w[0] < w[1]),
        "acknowledgements in order: {acks:?}"
    );
    assert_eq!(acks.last(), Some(&last_number));
    assert!(
        (acks.len() as u64) < last_number,
        "group commit: fewer acknowledgements than Readies"
    );

    let contents = read_back(&data_dir);
    assert_eq!(contents.entries.len() as u64, last_index);
    for (i, entry) in contents.entries.iter().enumerate() {
        assert_eq!(entry.index, i as u64 + 1);
        assert_eq!(entry.data.len(), 64);
    }
    let segments = ringraft::wal::segment_name::list_segments(&data_dir.wal_dir).unwrap();
    assert!(segments.len() > 1, "the run cut segments");
}

fn commit_only_ready_is_acknowledged_without_fdatasync(kind: BackendKind) {
    let dir = scratch_dir();
    let (actor, data_dir, log) =
        start_recorded(kind, dir.path(), 1024 * 1024, FaultPlan::default());
    let sender = actor.sender();
    sender.submit(ready_with_entries(1, 1, 3)).unwrap();
    wait_for(&actor.watch(), 1).unwrap();
    let before = log.events().len();
    sender
        .submit(ReadyToPersist {
            number: 2,
            hard_state: Some(HardState {
                term: 1,
                vote: 1,
                commit: 3,
            }),
            must_sync: false,
            ..ReadyToPersist::default()
        })
        .unwrap();
    wait_for(&actor.watch(), 2).unwrap();
    let after = log.events()[before..].to_vec();
    assert_eq!(after, vec![IoEvent::Acknowledged { number: 2 }]);
    actor.shutdown().expect("clean shutdown");
    // Shutdown wrote and synced the buffered commit.
    assert_eq!(read_back(&data_dir).hard_state.commit, 3);
}

fn shutdown_finishes_queued_readies(kind: BackendKind) {
    let dir = scratch_dir();
    let (actor, data_dir) = start(kind, dir.path(), 1024 * 1024);
    let sender = actor.sender();
    let watch = actor.watch();
    let mut index = 1;
    for number in 1..=500 {
        sender.submit(ready_with_entries(number, index, 2)).unwrap();
        index += 2;
    }
    actor.shutdown().expect("clean shutdown");
    assert_eq!(watch.latest().map(|p| p.number).ok(), Some(500));
    assert_eq!(read_back(&data_dir).entries.len(), 1000);
    // Refused afterwards.
    let refused = sender.submit(ready_with_entries(501, index, 1));
    assert!(matches!(
        refused.as_ref().map_err(|e| &**e),
        Err(PersistError::Stopped)
    ));
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        data: vec![0x5a; 3000],
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

fn snapshot_save_goes_file_then_marker_then_release(kind: BackendKind) {
    let dir = scratch_dir();
    // Tiny segments: the entries below fill several, which the snapshot
    // then makes removable.
    let (actor, data_dir, log) = start_recorded(kind, dir.path(), 2048, FaultPlan::default());
    let sender = actor.sender();
    let mut index = 1;
    for number in 1..=60 {
        // One batch each: a segment is cut after the batch that fills it.
        sender.submit(ready_with_entries(number, index, 4)).unwrap();
        wait_for(&actor.watch(), number).unwrap();
        index += 4;
    }
    let segments_before = ringraft::wal::segment_name::list_segments(&data_dir.wal_dir)
        .unwrap()
        .len();
    assert!(segments_before > 6);
    // Commit everything, then snapshot at 200.
    sender
        .submit(ReadyToPersist {
            number: 61,
            hard_state: Some(HardState {
                term: 1,
                vote: 1,
                commit: 240,
            }),
            must_sync: false,
            ..ReadyToPersist::default()
        })
        .unwrap();
    let events_before = log.events().len();
    sender
        .save_snapshot(snapshot(200, 1))
        .unwrap()
        .wait_blocking()
        .expect("snapshot saved");
    let events = log.events()[events_before..].to_vec();
    let snap_synced = events
        .iter()
        .position(|e| {
            matches!(e, IoEvent::SyncFinished { path, ok: true }
                if path.to_string_lossy().ends_with(".snap.tmp"))
        })
        .expect("snapshot file synced");
    let marker_written = events
        .iter()
        .position(|e| {
            matches!(e, IoEvent::Write { path, .. }
                if path.extension().is_some_and(|x| x == "wal"))
        })
        .expect("marker written");
    assert!(
        snap_synced < marker_written,
        "file before marker: {events:?}"
    );
    // The rest of the safe order, every step through the backend: rename
    // into place, then fsync of the directory, then the marker.
    let renamed = events
        .iter()
        .position(|e| {
            matches!(e, IoEvent::Renamed { to, ok: true, .. }
                if to.extension().is_some_and(|x| x == "snap"))
        })
        .expect("snapshot file renamed");
    let dir_synced = events
        .iter()
        .position(
            |e| matches!(e, IoEvent::SyncFinished { path, ok: true } if *path == data_dir.snap_dir),
        )
        .expect("snapshot directory synced");
    assert!(
        snap_synced < renamed && renamed < dir_synced && dir_synced < marker_written,
        "fsync, rename, directory fsync, marker: {events:?}"
    );
    assert!(
        data_dir
            .snap_dir
            .join(format!("{:016x}-{:016x}.snap", 1, 200))
            .exists()
    );
    let segments_after = ringraft::wal::segment_name::list_segments(&data_dir.wal_dir)
        .unwrap()
        .len();
    assert!(
        segments_after < segments_before,
        "released segments purged: {segments_before} -> {segments_after}"
    );
    actor.shutdown().expect("clean shutdown");

    let (storage, recovered) =
        DurableStorage::open(&data_dir, WalOptions::default()).expect("storage opens");
    assert_eq!(recovered.snapshot.map(|s| s.metadata.index), Some(200));
    assert_eq!(
        recovered.contents.entries.first().map(|e| e.index),
        Some(201)
    );
    assert_eq!(
        recovered.contents.entries.last().map(|e| e.index),
        Some(240)
    );
    drop(storage);
}

fn wal_segment_count(data_dir: &ringraft::storage::DataDir) -> usize {
    ringraft::wal::segment_name::list_segments(&data_dir.wal_dir)
        .unwrap()
        .len()
}

fn segments_are_released_only_once_a_synced_commit_covers_the_snapshot(kind: BackendKind) {
    let dir = scratch_dir();
    // Tiny segments, purged down to the default 5 once released.
    let (actor, data_dir, _log) = start_recorded(kind, dir.path(), 2048, FaultPlan::default());
    let sender = actor.sender();
    let mut index = 1;
    for number in 1..=60 {
        sender.submit(ready_with_entries(number, index, 4)).unwrap();
        wait_for(&actor.watch(), number).unwrap();
        index += 4;
    }
    let segments_before = wal_segment_count(&data_dir);
    assert!(segments_before > 6);
    // Entries up to 240, commit 236 synced: a snapshot at 240 is durable
    // (file and marker) but not committed.
    sender
        .save_snapshot(snapshot(240, 1))
        .unwrap()
        .wait_blocking()
        .expect("snapshot saved");
    assert_eq!(
        wal_segment_count(&data_dir),
        segments_before,
        "not committed"
    );
    // A commit of 240 that is acknowledged without a sync does not count.
    sender
        .submit(ReadyToPersist {
            number: 61,
            hard_state: Some(HardState {
                term: 1,
                vote: 1,
                commit: 240,
            }),
            must_sync: false,
            ..ReadyToPersist::default()
        })
        .unwrap();
    wait_for(&actor.watch(), 61).unwrap();
    assert_eq!(
        wal_segment_count(&data_dir),
        segments_before,
        "commit not synced yet"
    );
    // The next synced batch carries it: released and purged before that
    // batch is acknowledged.
    sender.submit(ready_with_entries(62, 241, 4)).unwrap();
    wait_for(&actor.watch(), 62).unwrap();
    let segments_after = wal_segment_count(&data_dir);
    assert!(
        segments_after < segments_before,
        "released once a synced commit covers 240: {segments_before} -> {segments_after}"
    );
    actor.shutdown().expect("clean shutdown");
    let (_storage, recovered) =
        DurableStorage::open(&data_dir, WalOptions::default()).expect("storage opens");
    assert_eq!(recovered.snapshot.map(|s| s.metadata.index), Some(240));
    let indexes: Vec<u64> = recovered.contents.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![241, 242, 243, 244]);
}

fn ready_with_snapshot_is_recovered_from_disk(kind: BackendKind) {
    let dir = scratch_dir();
    let (actor, data_dir) = start(kind, dir.path(), 1024 * 1024);
    let sender = actor.sender();
    // A follower installing a snapshot from its leader, then appending.
    sender
        .submit(ReadyToPersist {
            number: 1,
            hard_state: Some(HardState {
                term: 3,
                vote: 0,
                commit: 50,
            }),
            snapshot: Some(snapshot(50, 3)),
            must_sync: true,
            ..ReadyToPersist::default()
        })
        .unwrap();
    let mut ready = ready_with_entries(2, 51, 5);
    for entry in &mut ready.entries {
        entry.term = 3;
    }
    ready.hard_state = Some(HardState {
        term: 3,
        vote: 0,
        commit: 50,
    });
    sender.submit(ready).unwrap();
    wait_for(&actor.watch(), 2).unwrap();
    actor.shutdown().expect("clean shutdown");

    let (_storage, recovered) =
        DurableStorage::open(&data_dir, WalOptions::default()).expect("storage opens");
    assert_eq!(recovered.snapshot.map(|s| s.metadata.index), Some(50));
    let indexes: Vec<u64> = recovered.contents.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![51, 52, 53, 54, 55]);
    assert_eq!(recovered.contents.hard_state.term, 3);
}

fn out_of_order_ready_numbers_stop_the_actor(kind: BackendKind) {
    let dir = scratch_dir();
    let (actor, _data_dir) = start(kind, dir.path(), 1024 * 1024);
    let sender = actor.sender();
    sender.submit(ready_with_entries(2, 1, 1)).unwrap();
    wait_for(&actor.watch(), 2).unwrap();
    sender.submit(ready_with_entries(1, 2, 1)).unwrap();
    let failure = wait_for(&actor.watch(), 3).expect_err("fails");
    assert!(matches!(
        *failure,
        PersistError::ReadyOutOfOrder {
            previous: 2,
            number: 1
        }
    ));
    assert!(actor.shutdown().is_err());
}

#[test]
fn auto_backend_uses_uring_where_it_works() {
    let dir = scratch_dir();
    let (wal, snapshotter, _data_dir) = create_storage(dir.path(), 1024 * 1024);
    let config = PersistConfig {
        backend: BackendChoice::Auto,
        ..PersistConfig::default()
    };
    let actor = PersistActor::start(wal, snapshotter, config).expect("starts");
    let expected = if probe_uring().is_ok() {
        BackendKind::Uring
    } else {
        BackendKind::Std
    };
    assert_eq!(actor.backend(), expected);
    actor.shutdown().expect("clean shutdown");
}
