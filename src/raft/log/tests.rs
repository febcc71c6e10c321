//! RaftLog rules: conflicts at every position, appends, commit, the applying
//! budget, slices across storage and unstable with size limits, snapshots.

use super::*;
use crate::raft::storage::{MemoryStorage, entry_size};
use crate::raftpb::SnapshotMetadata;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// Entries with the given terms, starting at index `first`.
fn entries_from(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| entry(first + i as u64, term))
        .collect()
}

fn snap(index: u64, term: u64) -> Snapshot {
    Snapshot {
        metadata: SnapshotMetadata {
            index,
            term,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn ids(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

/// A log whose storage holds `stored` (starting at index 1) and whose
/// unstable tail holds nothing.
fn log_with_stored(stored: &[Entry]) -> RaftLog<MemoryStorage> {
    let mut storage = MemoryStorage::new();
    storage.append(stored).expect("append");
    RaftLog::new(storage).expect("log")
}

/// A log with entries 1..=3 of terms 1, 2, 3 appended (unstable).
fn log_123() -> RaftLog<MemoryStorage> {
    let mut log = RaftLog::new(MemoryStorage::new()).expect("log");
    log.append(&entries_from(1, &[1, 2, 3]));
    log
}

#[test]
fn new_log_starts_after_storage() {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(100, 5)).expect("snapshot");
    storage.append(&entries_from(101, &[5, 5])).expect("append");
    let log = RaftLog::new(storage).expect("log");
    assert_eq!(log.first_index(), 101);
    assert_eq!(log.last_index(), 102);
    assert_eq!(log.committed, 100);
    assert_eq!(log.applied, 100);
    assert_eq!(log.applying, 100);
    assert_eq!(log.unstable.offset, 103);
}

#[test]
fn find_conflict_at_every_position() {
    let log = log_123();
    let cases: Vec<(Vec<Entry>, u64)> = vec![
        (vec![], 0),
        // All match.
        (entries_from(1, &[1, 2, 3]), 0),
        (entries_from(2, &[2, 3]), 0),
        (entries_from(3, &[3]), 0),
        // Match, then new entries.
        (entries_from(1, &[1, 2, 3, 4, 4]), 4),
        (entries_from(2, &[2, 3, 4, 4]), 4),
        (entries_from(3, &[3, 4, 4]), 4),
        (entries_from(4, &[4, 4]), 4),
        // Conflicts with existing entries.
        (entries_from(1, &[4, 4]), 1),
        (entries_from(2, &[1, 4, 4]), 2),
        (entries_from(3, &[1, 2, 4, 4]), 3),
    ];
    for (i, (entries, want)) in cases.into_iter().enumerate() {
        assert_eq!(log.find_conflict(&entries), want, "case {i}");
    }
}

#[test]
fn find_conflict_by_term_skips_whole_terms() {
    // Log: index 1..=10 with terms 2,2,2,3,3,3,5,5,5,5 after a snapshot at 0.
    let log = log_with_stored(&entries_from(1, &[2, 2, 2, 3, 3, 3, 5, 5, 5, 5]));
    let cases = [
        // (index, term) -> (index, term)
        ((10, 5), (10, 5)),
        ((10, 4), (6, 3)),
        ((10, 3), (6, 3)),
        ((10, 2), (3, 2)),
        ((10, 1), (0, 0)),
        ((5, 3), (5, 3)),
        ((5, 2), (3, 2)),
        ((1, 1), (0, 0)),
        // Past the last index our term is unknown: the index itself.
        ((12, 5), (12, 0)),
    ];
    for ((index, term), want) in cases {
        assert_eq!(
            log.find_conflict_by_term(index, term),
            want,
            "({index}, {term})"
        );
    }
}

#[test]
fn find_conflict_by_term_stops_at_compaction() {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(4, 2)).expect("snapshot");
    storage
        .append(&entries_from(5, &[3, 3, 5]))
        .expect("append");
    let log = RaftLog::new(storage).expect("log");
    assert_eq!(log.find_conflict_by_term(7, 4), (6, 3));
    assert_eq!(log.find_conflict_by_term(7, 2), (4, 2));
    // Below the compaction point the term is unknown.
    assert_eq!(log.find_conflict_by_term(7, 1), (3, 0));
}

#[test]
fn is_up_to_date_compares_term_then_index() {
    let log = log_123();
    let cases = [
        // Greater term wins whatever the index.
        (2, 4, true),
        (3, 4, true),
        (4, 4, true),
        // Smaller term loses.
        (2, 2, false),
        (3, 2, false),
        (4, 2, false),
        // Equal term: longer or equal log wins.
        (2, 3, false),
        (3, 3, true),
        (4, 3, true),
    ];
    for (last_index, term, want) in cases {
        assert_eq!(
            log.is_up_to_date(last_index, term),
            want,
            "({last_index}, {term})"
        );
    }
}

#[test]
fn append_returns_last_index_and_truncates() {
    // (entries to append, last index, resulting log, unstable offset)
    type Case = (Vec<Entry>, u64, Vec<(u64, u64)>, u64);
    let cases: Vec<Case> = vec![
        (vec![], 2, vec![(1, 1), (2, 2)], 3),
        (entries_from(3, &[2]), 3, vec![(1, 1), (2, 2), (3, 2)], 3),
        // Conflicts with index 1: replaces everything.
        (entries_from(1, &[2]), 1, vec![(1, 2)], 1),
        // Conflicts with index 2.
        (entries_from(2, &[3, 3]), 3, vec![(1, 1), (2, 3), (3, 3)], 2),
    ];
    for (i, (append, want_last, want_entries, want_offset)) in cases.into_iter().enumerate() {
        let mut log = log_with_stored(&entries_from(1, &[1, 2]));
        assert_eq!(log.append(&append), want_last, "case {i}");
        assert_eq!(ids(&log.all_entries()), want_entries, "case {i}");
        assert_eq!(log.unstable.offset, want_offset, "case {i}");
    }
}

#[test]
#[should_panic(expected = "truncate committed")]
fn append_below_commit_panics() {
    let mut log = log_123();
    log.commit_to(2);
    log.append(&entries_from(2, &[4]));
}

#[test]
fn maybe_append_mismatched_previous_entry_is_refused() {
    let mut log = log_123();
    log.commit_to(1);
    assert_eq!(log.maybe_append(3, 2, 3, &entries_from(4, &[4])), None);
    assert_eq!(log.maybe_append(4, 4, 3, &entries_from(5, &[4])), None);
    assert_eq!(log.committed, 1, "commit unchanged on refusal");
    assert_eq!(log.last_index(), 3);
}

#[test]
fn maybe_append_matching_appends_and_commits() {
    let cases: Vec<(u64, u64, u64, Vec<Entry>, u64, u64)> = vec![
        // (prev index, prev term, leader commit, entries, want last new, want commit)
        (3, 3, 3, vec![], 3, 3),
        (3, 3, 4, vec![], 3, 3), // commit capped at last new index
        (3, 3, 2, vec![], 3, 2),
        (3, 3, 0, vec![], 3, 1), // never lowers commit
        (3, 3, 3, entries_from(4, &[4]), 4, 3),
        (3, 3, 4, entries_from(4, &[4]), 4, 4),
        (3, 3, 5, entries_from(4, &[4]), 4, 4),
        (3, 3, 5, entries_from(4, &[4, 4]), 5, 5),
        (2, 2, 3, entries_from(3, &[4]), 3, 3), // conflict at 3
        (1, 1, 3, entries_from(2, &[4, 4]), 3, 3), // conflict at 2
    ];
    for (i, (prev_index, prev_term, commit, entries, want_last, want_commit)) in
        cases.into_iter().enumerate()
    {
        let mut log = log_123();
        log.commit_to(1);
        assert_eq!(
            log.maybe_append(prev_index, prev_term, commit, &entries),
            Some(want_last),
            "case {i}"
        );
        assert_eq!(log.committed, want_commit, "case {i}");
        for e in &entries {
            assert!(
                log.match_term(e.index, e.term),
                "case {i}: entry {}",
                e.index
            );
        }
    }
}

#[test]
fn maybe_append_of_already_present_entries_does_not_truncate() {
    let mut log = log_123();
    log.maybe_append(0, 0, 0, &entries_from(1, &[1, 2]));
    assert_eq!(log.last_index(), 3, "a stale MsgApp must not drop entry 3");
}

#[test]
#[should_panic(expected = "conflicts with committed")]
fn maybe_append_conflicting_with_committed_panics() {
    let mut log = log_123();
    log.commit_to(2);
    log.maybe_append(0, 0, 3, &entries_from(1, &[4]));
}

#[test]
fn commit_to_never_decreases() {
    let mut log = log_123();
    log.commit_to(3);
    log.commit_to(2);
    assert_eq!(log.committed, 3);
}

#[test]
#[should_panic(expected = "out of range")]
fn commit_to_past_last_index_panics() {
    let mut log = log_123();
    log.commit_to(4);
}

#[test]
fn maybe_commit_only_entries_of_the_given_term() {
    let mut log = log_123();
    assert!(!log.maybe_commit(2, 3), "entry 2 has term 2");
    assert_eq!(log.committed, 0);
    assert!(log.maybe_commit(3, 3));
    assert_eq!(log.committed, 3);
    assert!(!log.maybe_commit(3, 3), "already committed");
    assert!(!log.maybe_commit(2, 2), "below commit");
}

#[test]
fn term_across_storage_unstable_and_bounds() {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(3, 3)).expect("snapshot");
    storage.append(&entries_from(4, &[4, 4])).expect("append");
    let mut log = RaftLog::new(storage).expect("log");
    log.append(&entries_from(6, &[5]));
    assert_eq!(log.term(2), Err(StorageError::Compacted { first_index: 4 }));
    assert_eq!(log.term(3), Ok(3), "compaction point term is known");
    assert_eq!(log.term(4), Ok(4));
    assert_eq!(log.term(6), Ok(5));
    assert_eq!(
        log.term(7),
        Err(StorageError::Unavailable {
            index: 7,
            last_index: 6
        })
    );
    assert_eq!(log.last_term(), 5);
}

#[test]
fn term_with_unstable_snapshot() {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(100, 1)).expect("snapshot");
    let mut log = RaftLog::new(storage).expect("log");
    log.restore(snap(105, 2));
    assert_eq!(
        log.term(100),
        Err(StorageError::Compacted { first_index: 106 })
    );
    assert_eq!(
        log.term(104),
        Err(StorageError::Compacted { first_index: 106 })
    );
    assert_eq!(log.term(105), Ok(2));
    assert_eq!(
        log.term(106),
        Err(StorageError::Unavailable {
            index: 106,
            last_index: 105
        })
    );
}

#[test]
fn restore_sets_indexes_from_snapshot() {
    let mut log = RaftLog::new(MemoryStorage::new()).expect("log");
    log.restore(snap(100, 7));
    assert_eq!(log.committed, 100);
    assert_eq!(log.first_index(), 101);
    assert_eq!(log.last_index(), 100);
    assert_eq!(log.last_term(), 7);
    assert_eq!(log.unstable.offset, 101);
    assert_eq!(log.snapshot().expect("snapshot").metadata.index, 100);
}

#[test]
fn snapshot_prefers_unstable() {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(10, 1)).expect("snapshot");
    let mut log = RaftLog::new(storage).expect("log");
    assert_eq!(log.snapshot().expect("snapshot").metadata.index, 10);
    log.restore(snap(20, 2));
    assert_eq!(log.snapshot().expect("snapshot").metadata.index, 20);
}

#[test]
fn stable_to_moves_entries_out_of_unstable() {
    let mut log = log_123();
    log.stable_to(2, 2);
    assert_eq!(log.unstable.offset, 3);
    assert_eq!(ids(log.unstable_entries()), vec![(3, 3)]);
    // A stale acknowledgement is ignored.
    log.stable_to(3, 2);
    assert_eq!(log.unstable.offset, 3);
    // Past the last index: ignored.
    log.stable_to(4, 3);
    assert_eq!(log.unstable.offset, 3);
}

#[test]
fn stable_to_with_snapshot_in_storage() {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(5, 2)).expect("snapshot");
    let mut log = RaftLog::new(storage).expect("log");
    log.append(&entries_from(6, &[2, 3]));
    // Acknowledging the snapshot index itself is ignored: it is stable.
    log.stable_to(5, 2);
    assert_eq!(log.unstable.offset, 6);
    log.stable_to(6, 2);
    assert_eq!(log.unstable.offset, 7);
    log.stable_to(7, 2);
    assert_eq!(log.unstable.offset, 7, "stale term for entry 7");
}

#[test]
fn next_unstable_entries_and_accept() {
    let mut log = log_with_stored(&entries_from(1, &[1, 1]));
    assert!(!log.has_next_unstable_entries());
    log.append(&entries_from(3, &[2, 2]));
    assert_eq!(ids(log.next_unstable_entries()), vec![(3, 2), (4, 2)]);
    log.accept_unstable();
    assert!(log.next_unstable_entries().is_empty());
    assert!(log.has_next_or_in_progress_unstable_entries());
    log.append(&entries_from(5, &[2]));
    assert_eq!(ids(log.next_unstable_entries()), vec![(5, 2)]);
    log.stable_to(5, 2);
    assert!(!log.has_next_or_in_progress_unstable_entries());
}

#[test]
fn next_unstable_snapshot_handed_out_once() {
    let mut log = RaftLog::new(MemoryStorage::new()).expect("log");
    log.restore(snap(10, 1));
    assert!(log.has_next_unstable_snapshot());
    log.accept_unstable();
    assert!(!log.has_next_unstable_snapshot());
    assert!(log.has_next_or_in_progress_snapshot());
    log.stable_snap_to(10);
    assert!(!log.has_next_or_in_progress_snapshot());
}

/// A log with a snapshot at 3, stored entries 4..=5, unstable 6, committed 5,
/// applied 3.
fn log_for_apply(max_applying_size: u64) -> RaftLog<MemoryStorage> {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(3, 1)).expect("snapshot");
    storage.append(&entries_from(4, &[1, 1])).expect("append");
    let mut log = RaftLog::with_max_applying_size(storage, max_applying_size).expect("log");
    log.append(&entries_from(6, &[1]));
    log.commit_to(5);
    log
}

#[test]
fn next_committed_entries_only_durable_unless_allowed() {
    let mut log = log_for_apply(NO_LIMIT);
    log.commit_to(6);
    let stable = log.next_committed_entries(false).expect("entries");
    assert_eq!(ids(&stable), vec![(4, 1), (5, 1)]);
    let all = log.next_committed_entries(true).expect("entries");
    assert_eq!(ids(&all), vec![(4, 1), (5, 1), (6, 1)]);
    assert!(log.has_next_committed_entries(false));
}

#[test]
fn next_committed_entries_after_applied() {
    let mut log = log_for_apply(NO_LIMIT);
    log.applied_to(4);
    assert_eq!(
        ids(&log.next_committed_entries(true).expect("entries")),
        vec![(5, 1)]
    );
    log.applied_to(5);
    assert!(
        log.next_committed_entries(true)
            .expect("entries")
            .is_empty()
    );
    assert!(!log.has_next_committed_entries(true));
}

#[test]
fn next_committed_entries_skip_those_being_applied() {
    let one = entry_size(&entry(4, 1));
    let mut log = log_for_apply(NO_LIMIT);
    log.accept_applying(5, one * 2, false);
    assert!(!log.has_next_committed_entries(true));
    log.commit_to(6);
    assert_eq!(
        ids(&log.next_committed_entries(true).expect("entries")),
        vec![(6, 1)],
        "entries 4 and 5 are being applied and are not handed out again"
    );
    assert!(!log.has_next_committed_entries(false), "6 is not durable");
}

#[test]
fn next_committed_entries_wait_for_pending_snapshot() {
    let mut log = log_for_apply(NO_LIMIT);
    log.unstable.snapshot = Some(snap(3, 1));
    assert!(
        log.next_committed_entries(true)
            .expect("entries")
            .is_empty()
    );
    assert!(!log.has_next_committed_entries(true));
}

#[test]
fn next_committed_entries_respect_the_byte_budget() {
    let one = entry_size(&entry(4, 1));
    let mut log = log_for_apply(one);
    let first = log.next_committed_entries(true).expect("entries");
    assert_eq!(ids(&first), vec![(4, 1)]);
    log.accept_applying(4, one, true);
    // Budget spent: paused until the application catches up.
    assert!(!log.has_next_committed_entries(true));
    assert!(
        log.next_committed_entries(true)
            .expect("entries")
            .is_empty()
    );
    log.applied_to(4);
    assert_eq!(
        ids(&log.next_committed_entries(true).expect("entries")),
        vec![(5, 1)]
    );
}

#[test]
fn accept_applying_pauses_when_batch_was_cut_short() {
    let one = entry_size(&entry(4, 1));
    let mut log = log_for_apply(one * 10);
    // The caller applied only entry 4 of 4..=5 (as if cut by a size limit).
    log.accept_applying(4, one, true);
    assert!(!log.has_next_committed_entries(true));
    log.applied_to(4);
    assert!(log.has_next_committed_entries(true));
}

#[test]
fn applied_to_releases_budget_of_applied_batches_only() {
    let one = entry_size(&entry(4, 1));
    let mut log = log_for_apply(one * 2);
    log.accept_applying(4, one, true);
    log.applied_to(4);
    log.accept_applying(5, one, true);
    assert!(log.has_next_committed_entries(true) || log.committed == 5);
    log.commit_to(6);
    // 5 is still outstanding (one entry's worth): one more fits.
    assert_eq!(
        ids(&log.next_committed_entries(true).expect("entries")),
        vec![(6, 1)]
    );
    log.applied_to(5);
    assert_eq!(log.applied, 5);
    assert_eq!(log.applying, 5);
}

#[test]
#[should_panic(expected = "applied index")]
fn applied_to_beyond_commit_panics() {
    let mut log = log_for_apply(NO_LIMIT);
    log.applied_to(6);
}

#[test]
#[should_panic(expected = "applied index")]
fn applied_to_backwards_panics() {
    let mut log = log_for_apply(NO_LIMIT);
    log.applied_to(5);
    log.applied_to(4);
}

/// Storage holds 1..=5 after compaction at 2 (entries 3..=5), unstable 6..=8.
fn log_for_slice() -> RaftLog<MemoryStorage> {
    let mut storage = MemoryStorage::new();
    storage.apply_snapshot(snap(2, 1)).expect("snapshot");
    storage
        .append(&entries_from(3, &[1, 2, 3]))
        .expect("append");
    let mut log = RaftLog::new(storage).expect("log");
    log.append(&entries_from(6, &[4, 5, 6]));
    log
}

#[test]
fn slice_across_storage_and_unstable() {
    let log = log_for_slice();
    let cases = [
        ((3, 4), vec![3]),
        ((3, 6), vec![3, 4, 5]),
        ((4, 7), vec![4, 5, 6]),
        ((3, 9), vec![3, 4, 5, 6, 7, 8]),
        ((6, 9), vec![6, 7, 8]),
        ((7, 8), vec![7]),
        ((5, 5), vec![]),
        ((9, 9), vec![]),
    ];
    for ((low, high), want) in cases {
        let got = log.slice(low, high, NO_LIMIT).expect("slice");
        let indexes: Vec<u64> = got.iter().map(|e| e.index).collect();
        assert_eq!(indexes, want, "[{low}, {high})");
    }
}

#[test]
fn slice_below_first_index_is_compacted() {
    let log = log_for_slice();
    assert_eq!(
        log.slice(2, 4, NO_LIMIT),
        Err(StorageError::Compacted { first_index: 3 })
    );
    assert_eq!(
        log.slice(1, 2, NO_LIMIT),
        Err(StorageError::Compacted { first_index: 3 })
    );
}

#[test]
fn slice_past_last_index_is_out_of_bounds() {
    let log = log_for_slice();
    assert_eq!(
        log.slice(3, 10, NO_LIMIT),
        Err(StorageError::OutOfBounds {
            low: 3,
            high: 10,
            last_index: 8
        })
    );
    assert_eq!(
        log.slice(5, 4, NO_LIMIT),
        Err(StorageError::OutOfBounds {
            low: 5,
            high: 4,
            last_index: 8
        })
    );
}

#[test]
fn slice_with_size_limits_across_the_boundary() {
    let log = log_for_slice();
    let one = entry_size(&entry(3, 1));
    let indexes = |low, high, max| -> Vec<u64> {
        log.slice(low, high, max)
            .expect("slice")
            .iter()
            .map(|e| e.index)
            .collect()
    };
    // Zero budget still returns one entry, from storage or unstable.
    assert_eq!(indexes(3, 9, 0), vec![3]);
    assert_eq!(indexes(6, 9, 0), vec![6]);
    // Budget ending exactly at the storage/unstable boundary.
    assert_eq!(indexes(4, 9, one * 2), vec![4, 5]);
    // Budget reaching one entry into unstable.
    assert_eq!(indexes(4, 9, one * 3), vec![4, 5, 6]);
    // Budget of two and a half entries: two.
    assert_eq!(indexes(4, 9, one * 2 + one / 2), vec![4, 5]);
    // Budget cut inside storage.
    assert_eq!(indexes(3, 9, one), vec![3]);
    // Budget cut inside unstable.
    assert_eq!(indexes(6, 9, one * 2), vec![6, 7]);
    assert_eq!(indexes(3, 9, NO_LIMIT), vec![3, 4, 5, 6, 7, 8]);
}

#[test]
fn entries_from_index_to_end() {
    let log = log_for_slice();
    let got = log.entries(7, NO_LIMIT).expect("entries");
    assert_eq!(ids(&got), vec![(7, 5), (8, 6)]);
    assert!(log.entries(9, NO_LIMIT).expect("entries").is_empty());
    assert_eq!(
        log.entries(1, NO_LIMIT),
        Err(StorageError::Compacted { first_index: 3 })
    );
}

#[test]
fn compaction_of_storage_is_seen_by_the_log() {
    let mut log = log_with_stored(&entries_from(1, &[1, 1, 1, 1, 1]));
    log.commit_to(5);
    log.applied_to(5);
    log.store_mut().compact(3).expect("compact");
    assert_eq!(log.first_index(), 4);
    assert_eq!(log.last_index(), 5);
    assert_eq!(log.term(3), Ok(1));
    assert!(log.term(2).is_err());
    assert_eq!(ids(&log.all_entries()), vec![(4, 1), (5, 1)]);
    // Appending after compaction still works.
    assert_eq!(log.append(&entries_from(6, &[2])), 6);
}

#[test]
fn unstable_entries_move_to_storage_after_persisting() {
    let mut log = RaftLog::new(MemoryStorage::new()).expect("log");
    log.append(&entries_from(1, &[1, 1, 2]));
    let handed_out = log.next_unstable_entries().to_vec();
    log.accept_unstable();
    // The raft actor appends to storage, then reports durability.
    log.store_mut().append(&handed_out).expect("append");
    log.stable_to(3, 2);
    assert!(log.unstable_entries().is_empty());
    assert_eq!(log.last_index(), 3);
    assert_eq!(ids(&log.all_entries()), vec![(1, 1), (2, 1), (3, 2)]);
}
