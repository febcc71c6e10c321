//! Segment lifecycle: cutting across several segments and reading back,
//! reading from a snapshot in a later segment, release + purge keeping what
//! the last snapshot needs, buffering of commit-only saves, log overwrites,
//! and exclusive locking.

mod wal_common;

use ringraft::raftpb::{Entry, HardState, walpb};
use ringraft::wal::{self, SegmentName, SnapshotMarker, Wal, WalError, WalOptions};
use std::path::Path;
use wal_common::{NODE_ID, entry, independent, metadata, scratch_dir, segment_files};

const SMALL: WalOptions = WalOptions {
    segment_size_bytes: 1024,
};

fn state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: NODE_ID,
        commit,
    }
}

/// Saves entries 1..=count of term 5 in batches of 1 to 4, committing all
/// but the last batch.
fn save_batches(wal: &mut Wal, count: u64) {
    let mut next = 1;
    let mut batch = 1;
    while next <= count {
        let last = (next + batch - 1).min(count);
        let entries: Vec<Entry> = (next..=last).map(|i| entry(5, i)).collect();
        wal.save(&state(5, next - 1), &entries).unwrap();
        next = last + 1;
        batch = batch % 4 + 1;
    }
}

fn all_entries(count: u64) -> Vec<Entry> {
    (1..=count).map(|i| entry(5, i)).collect()
}

#[test]
fn cuts_across_segments_and_reads_back() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    save_batches(&mut wal, 200);
    let tail = wal.tail_segment();
    wal.close().unwrap();

    let segments = segment_files(&dir);
    assert!(segments.len() >= 10, "{} segments", segments.len());
    assert_eq!(segments.last().unwrap().0, tail);
    let mut last_index = 0;
    for (i, (name, path)) in segments.iter().enumerate() {
        assert_eq!(name.seq, i as u64);
        if i > 0 {
            assert_eq!(name.first_index, last_index + 1, "{}", path.display());
        }
        let bytes = std::fs::read(path).unwrap();
        let (records, _) = independent::frames(&bytes);
        let (_, entries) = wal_common::expected_contents(&records);
        if let Some(last) = entries.last() {
            last_index = last.index;
        }
    }
    // Besides segments, only the prepared next segment (`N.tmp`) is left.
    let others: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| SegmentName::parse(name).is_none())
        .collect();
    assert!(
        others.len() <= 1 && others.iter().all(|n| n.ends_with(".tmp")),
        "{others:?}"
    );

    let (wal, contents) = Wal::open(&dir, &walpb::Snapshot::default(), SMALL).unwrap();
    assert_eq!(contents.entries, all_entries(200));
    assert_eq!(contents.metadata, metadata());
    assert_eq!(wal.last_entry_index(), 200);
    let locked: Vec<SegmentName> = wal.locked_segments();
    assert_eq!(locked.len(), segments.len());
}

#[test]
fn reopened_wal_keeps_cutting() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    save_batches(&mut wal, 50);
    wal.close().unwrap();
    let (mut wal, contents) = Wal::open(&dir, &walpb::Snapshot::default(), SMALL).unwrap();
    assert_eq!(contents.entries.len(), 50);
    for index in 51..=120 {
        wal.save(&state(5, index - 1), &[entry(5, index)]).unwrap();
    }
    wal.close().unwrap();
    let (_, contents) = Wal::open(&dir, &walpb::Snapshot::default(), SMALL).unwrap();
    assert_eq!(contents.entries, all_entries(120));
}

fn marker(index: u64) -> walpb::Snapshot {
    walpb::Snapshot {
        index,
        term: 5,
        conf_state: None,
    }
}

/// A marker to write: these tests keep no snapshot files.
fn fileless(index: u64) -> SnapshotMarker {
    SnapshotMarker::without_snapshot_file(marker(index))
}

#[test]
fn opening_at_a_snapshot_reads_from_the_segment_covering_it() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    save_batches(&mut wal, 150);
    wal.save(&state(5, 150), &[]).unwrap();
    wal.save_snapshot(&fileless(120)).unwrap();
    for index in 151..=200 {
        wal.save(&state(5, index - 1), &[entry(5, index)]).unwrap();
    }
    wal.close().unwrap();

    let (_, contents) = Wal::open(&dir, &marker(120), SMALL).unwrap();
    assert_eq!(contents.entries, all_entries(200)[120..]);
    let report = wal::verify(&dir, &marker(120)).unwrap();
    let first_read = report.segments[0];
    assert!(first_read.first_index <= 120);
    assert!(first_read.seq > 0, "earlier segments are skipped");
    assert!(matches!(
        Wal::open(&dir, &marker(121), SMALL),
        Err(WalError::SnapshotNotFound { index: 121, .. })
    ));
}

#[test]
fn release_and_purge_keep_the_segments_from_the_last_snapshot_on() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    save_batches(&mut wal, 150);
    wal.save(&state(5, 150), &[]).unwrap();
    let before = segment_files(&dir).len();

    assert!(wal.purge(1).unwrap().is_empty(), "nothing is released yet");
    wal.save_snapshot(&fileless(150)).unwrap();
    assert_eq!(wal.release_if_committed(wal.sync_point()), Some(150));
    let kept_from = wal.locked_segments()[0];
    assert!(kept_from.first_index < 150);
    assert!(wal.purge(1000).unwrap().is_empty(), "under the limit");
    let removed = wal.purge(1).unwrap();
    assert_eq!(removed.len() as u64, kept_from.seq);
    let remaining = segment_files(&dir);
    assert_eq!(remaining.len(), before - removed.len());
    assert_eq!(remaining[0].0, kept_from);
    for index in 151..=170 {
        wal.save(&state(5, index - 1), &[entry(5, index)]).unwrap();
    }
    wal.close().unwrap();

    let (_, contents) = Wal::open(&dir, &marker(150), SMALL).unwrap();
    assert_eq!(contents.entries, all_entries(170)[150..]);
    assert!(matches!(
        Wal::open(&dir, &walpb::Snapshot::default(), SMALL),
        Err(WalError::BadDirectory { .. })
    ));
    // The purged WAL still dumps and reports its snapshot marker.
    let markers = wal::valid_snapshot_entries(&dir).unwrap();
    assert_eq!(markers.last().map(|m| m.index), Some(150));
}

#[test]
fn release_needs_a_sync_covering_the_marker_and_a_commit_of_its_index() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    save_batches(&mut wal, 150);
    let all = wal.locked_segments().len();
    assert!(all > 3);

    // A synced marker that no commit covers yet: nothing is released.
    wal.save_snapshot(&fileless(150)).unwrap();
    let uncommitted = wal.sync_point();
    assert!(uncommitted.commit() < 150);
    assert_eq!(wal.release_if_committed(uncommitted), None);
    assert_eq!(wal.locked_segments().len(), all);
    // The commit arrives buffered (commit-only); a point taken when the
    // sync of it starts releases once that sync succeeded.
    wal.save(&state(5, 150), &[]).unwrap();
    assert_eq!(wal.release_if_committed(uncommitted), None);
    wal.sync().unwrap();
    assert_eq!(wal.release_if_committed(wal.sync_point()), Some(150));
    let after_150 = wal.locked_segments().len();
    assert!(after_150 < all);
    assert_eq!(wal.release_if_committed(wal.sync_point()), None, "once");

    // A marker encoded after a sync started is not covered by that sync,
    // however high its commit.
    for index in 151..=200 {
        wal.save(&state(5, index - 1), &[entry(5, index)]).unwrap();
    }
    wal.save(&state(5, 200), &[]).unwrap();
    wal.sync().unwrap();
    let before_marker = wal.sync_point();
    assert_eq!(before_marker.newest_marker(), None);
    let locked = wal.locked_segments();
    wal.encode_snapshot_marker(&fileless(190)).unwrap();
    assert_eq!(wal.release_if_committed(before_marker), None);
    assert_eq!(wal.locked_segments(), locked);
    wal.sync().unwrap();
    assert_eq!(wal.release_if_committed(wal.sync_point()), Some(190));
    assert!(wal.locked_segments().len() < locked.len());
}

#[test]
fn purge_stops_at_a_segment_another_process_has_locked() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    save_batches(&mut wal, 150);
    wal.save(&state(5, 150), &[]).unwrap();
    wal.save_snapshot(&fileless(150)).unwrap();
    assert_eq!(wal.release_if_committed(wal.sync_point()), Some(150));
    let segments = segment_files(&dir);
    let held = std::fs::File::open(&segments[2].1).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let removed = wal.purge(1).unwrap();
    assert_eq!(removed.len(), 2, "stops at the locked third segment");
    assert!(segments[2].1.exists());
}

#[test]
fn commit_only_save_is_buffered_until_a_sync() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), WalOptions::default()).unwrap();
    wal.save(&state(5, 0), &[entry(5, 1), entry(5, 2)]).unwrap();
    let path = segment_files(&dir)[0].1.clone();
    let on_disk = |path: &Path| {
        let (records, _) = independent::frames(&std::fs::read(path).unwrap());
        wal_common::expected_contents(&records).0
    };
    assert_eq!(on_disk(&path), state(5, 0));
    wal.save(&state(5, 2), &[]).unwrap();
    assert_eq!(
        on_disk(&path),
        state(5, 0),
        "a commit-only change is not synced"
    );
    wal.save(&state(6, 2), &[]).unwrap();
    assert_eq!(on_disk(&path), state(6, 2), "a new term is synced");
}

#[test]
fn later_entries_replace_the_tail() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let mut wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    let first: Vec<Entry> = (1..=10).map(|i| entry(5, i)).collect();
    wal.save(&state(5, 7), &first).unwrap();
    let replacement: Vec<Entry> = (8..=9).map(|i| entry(6, i)).collect();
    wal.save(&state(6, 7), &replacement).unwrap();
    wal.close().unwrap();
    let (_, contents) = Wal::open(&dir, &walpb::Snapshot::default(), SMALL).unwrap();
    let expected: Vec<Entry> = first[..7].iter().cloned().chain(replacement).collect();
    assert_eq!(contents.entries, expected);
}

#[test]
fn a_wal_has_one_writer() {
    let scratch = scratch_dir();
    let dir = scratch.path().join("wal");
    let wal = Wal::create(&dir, &metadata(), SMALL).unwrap();
    assert!(matches!(
        Wal::open(&dir, &walpb::Snapshot::default(), SMALL),
        Err(WalError::Locked { .. })
    ));
    assert!(matches!(
        Wal::create(&dir, &metadata(), SMALL),
        Err(WalError::AlreadyExists { .. })
    ));
    // Read-only checks work while it is open.
    assert!(wal::verify(&dir, &walpb::Snapshot::default()).is_ok());
    drop(wal);
    assert!(Wal::open(&dir, &walpb::Snapshot::default(), SMALL).is_ok());
}
