//! Unstable log rules: indexes, terms, in-progress tracking, stable_to with
//! stale acknowledgements, and truncate-and-append at every position.

use super::*;
use crate::raftpb::SnapshotMetadata;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
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

fn unstable(entries: Vec<Entry>, offset: u64, snapshot: Option<Snapshot>) -> Unstable {
    Unstable {
        snapshot,
        entries,
        offset,
        snapshot_in_progress: false,
        offset_in_progress: offset,
    }
}

fn ids(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn first_index_only_with_snapshot() {
    assert_eq!(
        unstable(vec![entry(5, 1)], 5, None).maybe_first_index(),
        None
    );
    assert_eq!(unstable(vec![], 0, None).maybe_first_index(), None);
    assert_eq!(
        unstable(vec![entry(5, 1)], 5, Some(snap(4, 1))).maybe_first_index(),
        Some(5)
    );
    assert_eq!(
        unstable(vec![], 5, Some(snap(4, 1))).maybe_first_index(),
        Some(5)
    );
}

#[test]
fn last_index_from_entries_then_snapshot() {
    assert_eq!(
        unstable(vec![entry(5, 1)], 5, None).maybe_last_index(),
        Some(5)
    );
    assert_eq!(
        unstable(vec![entry(5, 1)], 5, Some(snap(4, 1))).maybe_last_index(),
        Some(5)
    );
    assert_eq!(
        unstable(vec![], 5, Some(snap(4, 1))).maybe_last_index(),
        Some(4)
    );
    assert_eq!(unstable(vec![], 0, None).maybe_last_index(), None);
}

#[test]
fn term_of_entries_and_snapshot() {
    let cases: Vec<(Unstable, u64, Option<u64>)> = vec![
        (unstable(vec![entry(5, 1)], 5, None), 5, Some(1)),
        (unstable(vec![entry(5, 1)], 5, None), 6, None),
        (unstable(vec![entry(5, 1)], 5, None), 4, None),
        (unstable(vec![entry(5, 1)], 5, Some(snap(4, 1))), 5, Some(1)),
        (unstable(vec![entry(5, 1)], 5, Some(snap(4, 1))), 6, None),
        (unstable(vec![entry(5, 1)], 5, Some(snap(4, 1))), 4, Some(1)),
        (unstable(vec![entry(5, 1)], 5, Some(snap(4, 1))), 3, None),
        (unstable(vec![], 5, Some(snap(4, 1))), 5, None),
        (unstable(vec![], 5, Some(snap(4, 1))), 4, Some(1)),
        (unstable(vec![], 0, None), 5, None),
    ];
    for (i, (u, index, want)) in cases.into_iter().enumerate() {
        assert_eq!(u.maybe_term(index), want, "case {i}");
    }
}

#[test]
fn restore_replaces_everything() {
    let mut u = unstable(vec![entry(5, 1)], 5, Some(snap(4, 1)));
    u.offset_in_progress = 6;
    u.snapshot_in_progress = true;
    u.restore(snap(6, 2));
    assert_eq!(u.offset, 7);
    assert_eq!(u.offset_in_progress, 7);
    assert!(u.entries.is_empty());
    assert_eq!(u.snapshot, Some(snap(6, 2)));
    assert!(!u.snapshot_in_progress);
}

#[test]
fn next_entries_skips_those_in_progress() {
    let mut u = unstable(vec![entry(5, 1), entry(6, 1)], 5, None);
    assert_eq!(ids(u.next_entries()), vec![(5, 1), (6, 1)]);
    u.offset_in_progress = 6;
    assert_eq!(ids(u.next_entries()), vec![(6, 1)]);
    u.offset_in_progress = 7;
    assert!(u.next_entries().is_empty());
}

#[test]
fn next_snapshot_only_when_not_in_progress() {
    let mut u = unstable(vec![], 5, Some(snap(4, 1)));
    assert_eq!(u.next_snapshot(), Some(&snap(4, 1)));
    u.snapshot_in_progress = true;
    assert_eq!(u.next_snapshot(), None);
    assert_eq!(unstable(vec![], 0, None).next_snapshot(), None);
}

#[test]
fn accept_in_progress_marks_entries_and_snapshot() {
    let mut u = unstable(vec![entry(5, 1), entry(6, 1)], 5, Some(snap(4, 1)));
    u.accept_in_progress();
    assert_eq!(u.offset_in_progress, 7);
    assert!(u.snapshot_in_progress);
    assert!(u.next_entries().is_empty());
    assert!(u.next_snapshot().is_none());
    // Idempotent, and harmless with nothing held.
    u.accept_in_progress();
    assert_eq!(u.offset_in_progress, 7);
    let mut empty = unstable(vec![], 3, None);
    empty.accept_in_progress();
    assert_eq!(empty.offset_in_progress, 3);
    assert!(!empty.snapshot_in_progress);
}

#[test]
fn stable_to_drops_durable_prefix() {
    let mut u = unstable(vec![entry(5, 1), entry(6, 1), entry(7, 1)], 5, None);
    u.offset_in_progress = 8;
    u.stable_to(6, 1);
    assert_eq!(u.offset, 7);
    assert_eq!(u.offset_in_progress, 8);
    assert_eq!(ids(&u.entries), vec![(7, 1)]);
}

#[test]
fn stable_to_raises_offset_in_progress_when_behind() {
    let mut u = unstable(vec![entry(5, 1), entry(6, 1)], 5, None);
    u.stable_to(5, 1);
    assert_eq!(u.offset, 6);
    assert_eq!(u.offset_in_progress, 6);
}

#[test]
fn stable_to_with_stale_term_is_ignored() {
    // Entry 6 was persisted at term 1 but has since been replaced at term 2.
    let mut u = unstable(vec![entry(5, 1), entry(6, 2)], 5, None);
    u.stable_to(6, 1);
    assert_eq!(u.offset, 5);
    assert_eq!(u.entries.len(), 2);
}

#[test]
fn stable_to_past_last_or_below_offset_is_ignored() {
    let mut u = unstable(vec![entry(5, 1)], 5, None);
    u.stable_to(6, 1);
    assert_eq!(u.entries.len(), 1);
    u.stable_to(4, 1);
    assert_eq!(u.entries.len(), 1);
    let mut empty = unstable(vec![], 0, None);
    empty.stable_to(5, 1);
    assert_eq!(empty.offset, 0);
}

#[test]
fn stable_to_with_snapshot_present() {
    // Acknowledging an entry after the snapshot works.
    let mut u = unstable(vec![entry(5, 1)], 5, Some(snap(4, 1)));
    u.stable_to(5, 1);
    assert_eq!(u.offset, 6);
    assert!(u.entries.is_empty());
    assert!(
        u.snapshot.is_some(),
        "the snapshot is acknowledged separately"
    );

    // The snapshot's own index is not an entry: ignored.
    let mut u = unstable(vec![entry(5, 2)], 5, Some(snap(4, 2)));
    u.stable_to(4, 2);
    assert_eq!(u.offset, 5);
    assert_eq!(u.entries.len(), 1);

    // Stale term after a snapshot: ignored.
    let mut u = unstable(vec![entry(5, 2)], 5, Some(snap(4, 1)));
    u.stable_to(5, 1);
    assert_eq!(u.entries.len(), 1);
}

#[test]
fn stable_snap_to_matches_index_only() {
    let mut u = unstable(vec![], 5, Some(snap(4, 1)));
    u.snapshot_in_progress = true;
    u.stable_snap_to(3);
    assert!(u.snapshot.is_some());
    u.stable_snap_to(4);
    assert!(u.snapshot.is_none());
    assert!(!u.snapshot_in_progress);
}

#[test]
fn truncate_and_append_directly_after() {
    let mut u = unstable(vec![entry(5, 1)], 5, None);
    u.offset_in_progress = 6;
    u.truncate_and_append(&[entry(6, 1), entry(7, 1)]);
    assert_eq!(u.offset, 5);
    assert_eq!(u.offset_in_progress, 6);
    assert_eq!(ids(&u.entries), vec![(5, 1), (6, 1), (7, 1)]);
}

#[test]
fn truncate_and_append_replaces_all_at_offset() {
    let mut u = unstable(vec![entry(5, 1)], 5, None);
    u.offset_in_progress = 6;
    u.truncate_and_append(&[entry(5, 2), entry(6, 2)]);
    assert_eq!(u.offset, 5);
    assert_eq!(
        u.offset_in_progress, 5,
        "replaced entries must be sent again"
    );
    assert_eq!(ids(&u.entries), vec![(5, 2), (6, 2)]);
}

#[test]
fn truncate_and_append_below_offset_moves_offset_back() {
    let mut u = unstable(vec![entry(5, 1)], 5, None);
    u.offset_in_progress = 6;
    u.truncate_and_append(&[entry(4, 2), entry(5, 2), entry(6, 2)]);
    assert_eq!(u.offset, 4);
    assert_eq!(u.offset_in_progress, 4);
    assert_eq!(ids(&u.entries), vec![(4, 2), (5, 2), (6, 2)]);
}

#[test]
fn truncate_and_append_in_the_middle() {
    let mut u = unstable(vec![entry(5, 1), entry(6, 1), entry(7, 1)], 5, None);
    u.offset_in_progress = 8;
    u.truncate_and_append(&[entry(6, 2)]);
    assert_eq!(ids(&u.entries), vec![(5, 1), (6, 2)]);
    assert_eq!(u.offset_in_progress, 6, "entry 6 is new and must be sent");

    let mut u = unstable(vec![entry(5, 1), entry(6, 1), entry(7, 1)], 5, None);
    u.offset_in_progress = 6;
    u.truncate_and_append(&[entry(7, 2), entry(8, 2)]);
    assert_eq!(ids(&u.entries), vec![(5, 1), (6, 1), (7, 2), (8, 2)]);
    assert_eq!(u.offset_in_progress, 6, "in-progress mark is not raised");
}

#[test]
#[should_panic(expected = "gap")]
fn truncate_and_append_with_gap_panics() {
    let mut u = unstable(vec![entry(5, 1)], 5, None);
    u.truncate_and_append(&[entry(7, 1)]);
}

#[test]
fn slice_within_bounds() {
    let u = unstable(vec![entry(5, 1), entry(6, 1), entry(7, 2)], 5, None);
    assert_eq!(ids(u.slice(6, 8)), vec![(6, 1), (7, 2)]);
    assert!(u.slice(5, 5).is_empty());
}

#[test]
#[should_panic(expected = "out of bounds")]
fn slice_out_of_bounds_panics() {
    let u = unstable(vec![entry(5, 1)], 5, None);
    let _ = u.slice(5, 7);
}

#[test]
fn stable_to_releases_memory_of_a_drained_buffer() {
    let mut u = Unstable::new(1);
    let many: Vec<Entry> = (1..=1000).map(|i| entry(i, 1)).collect();
    u.truncate_and_append(&many);
    let before = u.entries.capacity();
    u.stable_to(999, 1);
    assert_eq!(ids(&u.entries), vec![(1000, 1)]);
    assert!(u.entries.capacity() < before);
}
