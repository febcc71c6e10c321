//! The persistence actor's durability contract under a recording fault
//! injector, on both backends: an acknowledgement never precedes the
//! fdatasync that covers it, and a failed fdatasync or write fails its batch
//! and everything after it, is never retried, and is never acknowledged.

mod persist_common;

use persist_common::*;
use ringraft::persist::fault_injection::{Fault, FaultPlan, InjectedErrno, IoEvent};
use ringraft::persist::{BackendKind, PersistError};
use ringraft::wal::{DumpedPayload, dump};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

for_each_backend!(
    acknowledgement_never_precedes_the_covering_fdatasync,
    failed_fdatasync_fails_its_batch_and_everything_after,
    failed_write_fails_its_batch_and_everything_after,
);

fn acknowledgement_never_precedes_the_covering_fdatasync(kind: BackendKind) {
    const PRODUCERS: u64 = 6;
    const READIES_PER_PRODUCER: u64 = 80;
    let dir = scratch_dir();
    // One segment (no cut: a cut syncs through the WAL itself, outside the
    // recorded backend).
    let (actor, data_dir, log) =
        start_recorded(kind, dir.path(), 64 * 1024 * 1024, FaultPlan::default());
    // Ready number of every entry index.
    let ready_of_index = Arc::new(Mutex::new(BTreeMap::new()));
    let next = Arc::new(Mutex::new((1u64, 1u64)));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let sender = actor.sender();
            let watch = actor.watch();
            let next = Arc::clone(&next);
            let ready_of_index = Arc::clone(&ready_of_index);
            std::thread::spawn(move || {
                for i in 0..READIES_PER_PRODUCER {
                    let count = 1 + (producer * 7 + i) % 4;
                    let number = {
                        let mut next = next.lock().unwrap();
                        let (number, first_index) = *next;
                        let mut map = ready_of_index.lock().unwrap();
                        for index in first_index..first_index + count {
                            map.insert(index, number);
                        }
                        sender
                            .submit(ready_with_entries(number, first_index, count))
                            .unwrap();
                        *next = (number + 1, first_index + count);
                        number
                    };
                    if (producer + i) % 3 == 0 {
                        wait_for(&watch, number).unwrap();
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let last_number = next.lock().unwrap().0 - 1;
    wait_for(&actor.watch(), last_number).unwrap();
    drop(actor);
    let events = log.events();

    // Where each Ready's last entry frame starts in the segment.
    let ready_of_index = ready_of_index.lock().unwrap();
    let mut frame_of_ready: BTreeMap<u64, (PathBuf, u64)> = BTreeMap::new();
    dump(&data_dir.wal_dir, |record| {
        if let DumpedPayload::Entry { index, .. } = record.payload {
            let path = data_dir.wal_dir.join(record.segment.file_name());
            frame_of_ready.insert(ready_of_index[&index], (path, record.offset));
        }
    })
    .unwrap();
    assert_eq!(frame_of_ready.len() as u64, last_number);

    for (number, (path, offset)) in &frame_of_ready {
        let written = events
            .iter()
            .position(|e| {
                matches!(e, IoEvent::Write { path: p, file_offset, len, ok: true }
                    if p == path && *file_offset <= *offset && *offset < file_offset + *len as u64)
            })
            .unwrap_or_else(|| panic!("Ready {number}'s frame was written"));
        let acknowledged = events
            .iter()
            .position(|e| matches!(e, IoEvent::Acknowledged { number: n } if n >= number))
            .unwrap_or_else(|| panic!("Ready {number} acknowledged"));
        let sync_started = events[written..acknowledged]
            .iter()
            .position(|e| matches!(e, IoEvent::SyncStarted { path: p } if p == path))
            .map(|i| i + written)
            .unwrap_or_else(|| {
                panic!(
                    "Ready {number}: no fdatasync started between its write and its acknowledgement"
                )
            });
        let sync_finished = events[sync_started..acknowledged]
            .iter()
            .any(|e| matches!(e, IoEvent::SyncFinished { path: p, ok: true } if p == path));
        assert!(
            sync_finished,
            "Ready {number}: acknowledged before its fdatasync finished"
        );
    }
    let syncs = events
        .iter()
        .filter(|e| matches!(e, IoEvent::SyncStarted { .. }))
        .count() as u64;
    assert!(
        syncs < last_number,
        "group commit: {syncs} syncs for {last_number} Readies"
    );
}

/// Submits Readies 1..=`count`, the first `wait_each` of them one at a time
/// (each then gets its own write and sync), the rest back to back.
fn submit_readies(actor: &ringraft::persist::PersistActor, count: u64, wait_each: u64) {
    let sender = actor.sender();
    let mut index = 1;
    for number in 1..=count {
        if sender.submit(ready_with_entries(number, index, 2)).is_err() {
            return;
        }
        index += 2;
        if number <= wait_each {
            let _ = wait_for(&actor.watch(), number);
        }
    }
}

fn failed_fdatasync_fails_its_batch_and_everything_after(kind: BackendKind) {
    let dir = scratch_dir();
    let plan = FaultPlan {
        wal_sync_data: Some(Fault::nth(4, InjectedErrno::Io)),
        ..FaultPlan::default()
    };
    let (actor, _data_dir, log) = start_recorded(kind, dir.path(), 64 * 1024 * 1024, plan);
    // Readies 1..=3 each get their own sync; the 4th sync fails.
    submit_readies(&actor, 200, 3);
    let failure = wait_for(&actor.watch(), 200).expect_err("the actor failed");
    assert!(
        matches!(
            &*failure,
            PersistError::Io {
                operation: "fdatasync of WAL",
                ..
            }
        ),
        "{failure}"
    );
    assert!(
        failure.to_string().contains(".wal"),
        "names the file: {failure}"
    );
    assert_durability_stopped_at_failure(&log.events(), 3);

    // Future requests fail with the same error.
    let sender = actor.sender();
    let refused = sender
        .submit(ready_with_entries(1000, 1000, 1))
        .expect_err("refused");
    assert!(Arc::ptr_eq(&refused, &failure));
    let snapshot_refused = sender
        .save_snapshot(Default::default())
        .expect_err("refused");
    assert!(Arc::ptr_eq(&snapshot_refused, &failure));
    assert!(Arc::ptr_eq(
        &actor.shutdown().expect_err("failed"),
        &failure
    ));
}

fn failed_write_fails_its_batch_and_everything_after(kind: BackendKind) {
    let dir = scratch_dir();
    let plan = FaultPlan {
        wal_write: Some(Fault::nth(3, InjectedErrno::Io)),
        ..FaultPlan::default()
    };
    let (actor, _data_dir, log) = start_recorded(kind, dir.path(), 64 * 1024 * 1024, plan);
    submit_readies(&actor, 100, 2);
    let failure = wait_for(&actor.watch(), 100).expect_err("the actor failed");
    assert!(
        matches!(
            &*failure,
            PersistError::Io {
                operation: "writing WAL",
                ..
            }
        ),
        "{failure}"
    );
    let events = log.events();
    let failed_write = events
        .iter()
        .position(|e| matches!(e, IoEvent::Write { ok: false, .. }))
        .expect("the write failed");
    assert!(
        events[failed_write..].iter().all(|e| !matches!(
            e,
            IoEvent::SyncStarted { .. } | IoEvent::Acknowledged { .. }
        )),
        "nothing synced or acknowledged after the failed write: {events:?}"
    );
    assert_eq!(acknowledged(&events).last(), Some(&2));
    assert!(actor.shutdown().is_err());
}

/// After the failed sync: no other sync (never retried), no write, no
/// acknowledgement; the last acknowledgement is the last Ready synced
/// before it.
fn assert_durability_stopped_at_failure(events: &[IoEvent], last_good: u64) {
    let failed = events
        .iter()
        .position(|e| matches!(e, IoEvent::SyncFinished { ok: false, .. }))
        .expect("a sync failed");
    let after = &events[failed + 1..];
    assert!(
        after.iter().all(|e| !matches!(
            e,
            IoEvent::SyncStarted { .. } | IoEvent::Acknowledged { .. } | IoEvent::Write { .. }
        )),
        "nothing after the failed sync: {after:?}"
    );
    assert_eq!(acknowledged(events).last(), Some(&last_good));
}
