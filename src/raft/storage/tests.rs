//! MemoryStorage rules, case by case (the edge cases of etcd's storage tests).

use super::*;
use crate::raftpb::SnapshotMetadata;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// A storage compacted at index 3 (term 3) holding entries 4 and 5.
fn storage_3_to_5() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    storage.entries = vec![entry(3, 3), entry(4, 4), entry(5, 5)];
    storage
}

fn indexes_and_terms(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn new_storage_has_only_the_dummy_entry() {
    let storage = MemoryStorage::new();
    assert_eq!(storage.first_index(), Ok(1));
    assert_eq!(storage.last_index(), Ok(0));
    assert_eq!(storage.term(0), Ok(0));
    assert_eq!(
        storage.term(1),
        Err(StorageError::Unavailable {
            index: 1,
            last_index: 0
        })
    );
}

#[test]
fn term_below_compaction_point_is_compacted() {
    let storage = storage_3_to_5();
    assert_eq!(
        storage.term(2),
        Err(StorageError::Compacted { first_index: 4 })
    );
}

#[test]
fn term_of_compaction_point_is_known() {
    assert_eq!(storage_3_to_5().term(3), Ok(3));
}

#[test]
fn term_of_stored_entries() {
    let storage = storage_3_to_5();
    assert_eq!(storage.term(4), Ok(4));
    assert_eq!(storage.term(5), Ok(5));
}

#[test]
fn term_past_last_index_is_unavailable() {
    assert_eq!(
        storage_3_to_5().term(6),
        Err(StorageError::Unavailable {
            index: 6,
            last_index: 5
        })
    );
}

#[test]
fn entries_at_or_below_compaction_point_are_compacted() {
    let storage = storage_3_to_5();
    assert_eq!(
        storage.entries(2, 6, NO_LIMIT),
        Err(StorageError::Compacted { first_index: 4 })
    );
    assert_eq!(
        storage.entries(3, 4, NO_LIMIT),
        Err(StorageError::Compacted { first_index: 4 })
    );
}

#[test]
fn entries_returns_the_requested_range() {
    let storage = storage_3_to_5();
    let got = storage.entries(4, 5, NO_LIMIT).expect("entries");
    assert_eq!(indexes_and_terms(&got), vec![(4, 4)]);
    let got = storage.entries(4, 6, NO_LIMIT).expect("entries");
    assert_eq!(indexes_and_terms(&got), vec![(4, 4), (5, 5)]);
}

#[test]
fn entries_of_an_empty_range_is_empty() {
    let storage = storage_3_to_5();
    assert_eq!(storage.entries(5, 5, NO_LIMIT), Ok(vec![]));
}

#[test]
fn entries_past_the_end_are_out_of_bounds() {
    assert_eq!(
        storage_3_to_5().entries(4, 7, NO_LIMIT),
        Err(StorageError::OutOfBounds {
            low: 4,
            high: 7,
            last_index: 5
        })
    );
}

#[test]
fn entries_with_only_the_dummy_is_unavailable() {
    let mut storage = MemoryStorage::new();
    storage.entries = vec![entry(3, 3)];
    assert_eq!(
        storage.entries(4, 4, NO_LIMIT),
        Err(StorageError::Unavailable {
            index: 4,
            last_index: 3
        })
    );
}

#[test]
fn entries_respect_max_size() {
    let mut storage = MemoryStorage::new();
    storage.entries = vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 6)];
    let one = entry_size(&entry(4, 4));
    // Exactly two entries fit.
    let got = storage.entries(4, 7, one * 2).expect("entries");
    assert_eq!(indexes_and_terms(&got), vec![(4, 4), (5, 5)]);
    // Two and a half: still two.
    let got = storage.entries(4, 7, one * 2 + one / 2).expect("entries");
    assert_eq!(got.len(), 2);
    // Exactly three.
    let got = storage.entries(4, 7, one * 3).expect("entries");
    assert_eq!(got.len(), 3);
}

#[test]
fn entries_return_at_least_one_entry_even_with_zero_max_size() {
    let storage = storage_3_to_5();
    let got = storage.entries(4, 6, 0).expect("entries");
    assert_eq!(indexes_and_terms(&got), vec![(4, 4)]);
}

#[test]
fn first_and_last_index_follow_compaction() {
    let mut storage = storage_3_to_5();
    assert_eq!(storage.first_index(), Ok(4));
    assert_eq!(storage.last_index(), Ok(5));
    storage.compact(4).expect("compact");
    assert_eq!(storage.first_index(), Ok(5));
    assert_eq!(storage.last_index(), Ok(5));
}

#[test]
fn last_index_grows_with_append() {
    let mut storage = storage_3_to_5();
    storage.append(&[entry(6, 5)]).expect("append");
    assert_eq!(storage.last_index(), Ok(6));
}

#[test]
fn compact_at_or_below_offset_is_compacted() {
    let mut storage = storage_3_to_5();
    assert_eq!(
        storage.compact(2),
        Err(StorageError::Compacted { first_index: 4 })
    );
    assert_eq!(
        storage.compact(3),
        Err(StorageError::Compacted { first_index: 4 })
    );
    assert_eq!(storage.entries.len(), 3, "nothing was dropped");
}

#[test]
fn compact_keeps_term_of_compaction_point() {
    let mut storage = storage_3_to_5();
    storage.compact(4).expect("compact");
    assert_eq!(storage.entries[0].index, 4);
    assert_eq!(storage.entries[0].term, 4);
    assert_eq!(storage.entries.len(), 2);
    assert_eq!(storage.term(4), Ok(4));
}

#[test]
fn compact_everything() {
    let mut storage = storage_3_to_5();
    storage.compact(5).expect("compact");
    assert_eq!(indexes_and_terms(&storage.entries), vec![(5, 5)]);
    assert_eq!(storage.first_index(), Ok(6));
    assert_eq!(storage.last_index(), Ok(5));
}

#[test]
fn compact_past_last_index_is_refused() {
    let mut storage = storage_3_to_5();
    assert_eq!(
        storage.compact(6),
        Err(StorageError::Unavailable {
            index: 6,
            last_index: 5
        })
    );
}

#[test]
fn create_snapshot_takes_term_of_index_and_conf_state() {
    let mut storage = storage_3_to_5();
    let conf_state = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let snap = storage
        .create_snapshot(4, Some(conf_state.clone()), b"data".to_vec())
        .expect("snapshot");
    assert_eq!(snap.metadata.index, 4);
    assert_eq!(snap.metadata.term, 4);
    assert_eq!(snap.metadata.conf_state, conf_state);
    assert_eq!(snap.data, b"data");
    assert_eq!(storage.snapshot(0), Ok(snap));
    // Creating a snapshot does not compact.
    assert_eq!(storage.first_index(), Ok(4));
}

#[test]
fn create_snapshot_without_conf_state_keeps_the_previous_one() {
    let conf_state = ConfState {
        voters: vec![7],
        ..Default::default()
    };
    let mut storage = MemoryStorage::new_with_conf_state(conf_state.clone());
    storage.append(&[entry(1, 1), entry(2, 1)]).expect("append");
    let snap = storage.create_snapshot(2, None, vec![]).expect("snapshot");
    assert_eq!(snap.metadata.conf_state, conf_state);
}

#[test]
fn create_snapshot_at_or_below_current_is_out_of_date() {
    let mut storage = storage_3_to_5();
    storage.create_snapshot(5, None, vec![]).expect("snapshot");
    assert_eq!(
        storage.create_snapshot(5, None, vec![]),
        Err(StorageError::SnapshotOutOfDate {
            requested: 5,
            current: 5
        })
    );
    assert_eq!(
        storage.create_snapshot(4, None, vec![]),
        Err(StorageError::SnapshotOutOfDate {
            requested: 4,
            current: 5
        })
    );
}

#[test]
fn create_snapshot_past_last_index_is_refused() {
    let mut storage = storage_3_to_5();
    assert_eq!(
        storage.create_snapshot(6, None, vec![]),
        Err(StorageError::Unavailable {
            index: 6,
            last_index: 5
        })
    );
}

#[test]
fn append_overwriting_with_same_entries_changes_nothing() {
    let mut storage = storage_3_to_5();
    storage
        .append(&[entry(3, 3), entry(4, 4), entry(5, 5)])
        .expect("append");
    assert_eq!(
        indexes_and_terms(&storage.entries),
        vec![(3, 3), (4, 4), (5, 5)]
    );
}

#[test]
fn append_truncates_a_conflicting_suffix() {
    let mut storage = storage_3_to_5();
    storage.append(&[entry(4, 6), entry(5, 6)]).expect("append");
    assert_eq!(
        indexes_and_terms(&storage.entries),
        vec![(3, 3), (4, 6), (5, 6)]
    );
    let mut storage = storage_3_to_5();
    storage.append(&[entry(5, 6)]).expect("append");
    assert_eq!(
        indexes_and_terms(&storage.entries),
        vec![(3, 3), (4, 4), (5, 6)]
    );
}

#[test]
fn append_replacing_and_extending() {
    let mut storage = storage_3_to_5();
    storage
        .append(&[entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 5)])
        .expect("append");
    assert_eq!(
        indexes_and_terms(&storage.entries),
        vec![(3, 3), (4, 4), (5, 5), (6, 5)]
    );
}

#[test]
fn append_skips_compacted_entries() {
    let mut storage = storage_3_to_5();
    storage
        .append(&[entry(2, 3), entry(3, 3), entry(4, 5)])
        .expect("append");
    assert_eq!(indexes_and_terms(&storage.entries), vec![(3, 3), (4, 5)]);
}

#[test]
fn append_entirely_compacted_is_a_no_op() {
    let mut storage = storage_3_to_5();
    storage.append(&[entry(1, 1), entry(2, 2)]).expect("append");
    assert_eq!(
        indexes_and_terms(&storage.entries),
        vec![(3, 3), (4, 4), (5, 5)]
    );
}

#[test]
fn append_right_after_last_index() {
    let mut storage = storage_3_to_5();
    storage.append(&[entry(6, 5)]).expect("append");
    assert_eq!(
        indexes_and_terms(&storage.entries),
        vec![(3, 3), (4, 4), (5, 5), (6, 5)]
    );
}

#[test]
fn append_with_a_gap_is_refused_and_changes_nothing() {
    let mut storage = storage_3_to_5();
    assert_eq!(
        storage.append(&[entry(7, 5)]),
        Err(StorageError::LogGap {
            first_appended: 7,
            last_index: 5
        })
    );
    assert_eq!(storage.last_index(), Ok(5));
}

#[test]
fn append_of_non_contiguous_entries_is_refused() {
    let mut storage = storage_3_to_5();
    assert_eq!(
        storage.append(&[entry(6, 5), entry(8, 5)]),
        Err(StorageError::NotContiguous {
            previous: 6,
            found: 8
        })
    );
    assert_eq!(storage.last_index(), Ok(5));
}

#[test]
fn append_empty_is_a_no_op() {
    let mut storage = storage_3_to_5();
    storage.append(&[]).expect("append");
    assert_eq!(storage.last_index(), Ok(5));
}

#[test]
fn apply_snapshot_resets_the_log() {
    let mut storage = storage_3_to_5();
    let snap = Snapshot {
        data: b"state".to_vec(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1, 2],
                ..Default::default()
            },
            index: 10,
            term: 4,
        },
    };
    storage.apply_snapshot(snap.clone()).expect("apply");
    assert_eq!(storage.first_index(), Ok(11));
    assert_eq!(storage.last_index(), Ok(10));
    assert_eq!(storage.term(10), Ok(4));
    assert_eq!(storage.snapshot(0), Ok(snap));
    assert_eq!(
        storage.initial_state().expect("state").conf_state.voters,
        vec![1, 2]
    );
}

#[test]
fn apply_older_or_same_snapshot_is_out_of_date() {
    let mut storage = MemoryStorage::new();
    let at = |index| Snapshot {
        metadata: SnapshotMetadata {
            index,
            term: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    storage.apply_snapshot(at(4)).expect("apply");
    assert_eq!(
        storage.apply_snapshot(at(4)),
        Err(StorageError::SnapshotOutOfDate {
            requested: 4,
            current: 4
        })
    );
    assert_eq!(
        storage.apply_snapshot(at(3)),
        Err(StorageError::SnapshotOutOfDate {
            requested: 3,
            current: 4
        })
    );
}

#[test]
fn initial_state_returns_hard_state() {
    let mut storage = MemoryStorage::new();
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 0,
    };
    storage.set_hard_state(hs);
    storage.set_commit(5);
    let state = storage.initial_state().expect("state");
    assert_eq!(
        state.hard_state,
        HardState {
            term: 2,
            vote: 1,
            commit: 5
        }
    );
}

#[test]
fn limit_size_keeps_at_least_one_entry() {
    let mut entries = vec![entry(1, 1), entry(2, 1), entry(3, 1)];
    limit_size(&mut entries, 0);
    assert_eq!(entries.len(), 1);
    let mut entries = vec![entry(1, 1), entry(2, 1), entry(3, 1)];
    limit_size(&mut entries, NO_LIMIT);
    assert_eq!(entries.len(), 3);
    let mut empty: Vec<Entry> = vec![];
    limit_size(&mut empty, 0);
    assert!(empty.is_empty());
}
