//! The tail of the raft log that is not yet durable.
//!
//! Owns: entries (and at most one incoming snapshot) that the raft core has
//! accepted but the persistence actor has not yet acknowledged, plus the
//! bookkeeping of which of them have already been handed out in a Ready
//! ("in progress") so that pipelined Readies never carry the same entry twice.
//!
//! Guarantees: `entries[i].index == offset + i`; when a snapshot is present,
//! `offset == snapshot.index + 1`; `offset <= offset_in_progress <=
//! offset + entries.len()`. An acknowledgement for an entry that has since
//! been replaced by a different term is ignored (`stable_to` with a stale
//! term), so a late acknowledgement never marks unsaved entries durable.
//!
//! May not touch: stable storage. Moving entries into `MemoryStorage` is the
//! raft actor's job once the WAL has them.

use crate::raftpb::{Entry, Snapshot};

/// Entries and a snapshot not yet persisted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unstable {
    /// An incoming snapshot not yet persisted.
    pub snapshot: Option<Snapshot>,
    /// Entries not yet persisted; `entries[i]` has index `offset + i`.
    pub entries: Vec<Entry>,
    /// The index of `entries[0]` (or where it would be).
    pub offset: u64,
    /// Whether the snapshot has been handed out for persistence.
    pub snapshot_in_progress: bool,
    /// Entries below this index have been handed out for persistence.
    pub offset_in_progress: u64,
}

impl Unstable {
    /// An empty unstable log whose first entry will have index `offset`.
    pub fn new(offset: u64) -> Unstable {
        Unstable {
            offset,
            offset_in_progress: offset,
            ..Default::default()
        }
    }

    /// The first log index if a snapshot is pending (snapshot index + 1).
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    /// The last log index held here: the last entry's, else the snapshot's.
    pub fn maybe_last_index(&self) -> Option<u64> {
        if let Some(last) = self.entries.last() {
            return Some(last.index);
        }
        self.snapshot.as_ref().map(|s| s.metadata.index)
    }

    /// The term of `index` if this unstable log knows it.
    pub fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.metadata.index == index)
                .map(|s| s.metadata.term);
        }
        let position = (index - self.offset) as usize;
        self.entries.get(position).map(|e| e.term)
    }

    /// Whether entry `index` is held here with `term`: an acknowledgement
    /// of it is not stale. An index below `offset` is only the snapshot's,
    /// which `stable_snap_to` handles.
    pub fn holds_entry(&self, index: u64, term: u64) -> bool {
        index >= self.offset && self.maybe_term(index) == Some(term)
    }

    /// Entries not yet handed out for persistence.
    pub fn next_entries(&self) -> &[Entry] {
        let handed_out = (self.offset_in_progress - self.offset) as usize;
        &self.entries[handed_out..]
    }

    /// The snapshot if it has not yet been handed out for persistence.
    pub fn next_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot
            .as_ref()
            .filter(|_| !self.snapshot_in_progress)
    }

    /// Marks everything currently held as handed out (a Ready carried it).
    pub fn accept_in_progress(&mut self) {
        if let Some(last) = self.entries.last() {
            self.offset_in_progress = last.index + 1;
        }
        if self.snapshot.is_some() {
            self.snapshot_in_progress = true;
        }
    }

    /// Entries up to `index` of `term` are durable: drop them. Ignored when
    /// the entry at `index` is not ours any more (replaced by another term,
    /// or covered by a snapshot), since the acknowledgement is then stale.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if !self.holds_entry(index, term) {
            return;
        }
        let durable = (index + 1 - self.offset) as usize;
        self.entries.drain(..durable);
        self.offset = index + 1;
        self.offset_in_progress = self.offset_in_progress.max(self.offset);
        self.shrink_entries();
    }

    /// Releases the memory of a backing buffer that has become mostly empty
    /// after many `stable_to` calls.
    fn shrink_entries(&mut self) {
        const MIN_CAPACITY_TO_SHRINK: usize = 64;
        let capacity = self.entries.capacity();
        if capacity >= MIN_CAPACITY_TO_SHRINK && self.entries.len() < capacity / 4 {
            self.entries.shrink_to(capacity / 2);
        }
    }

    /// The snapshot at `index` is durable: drop it.
    pub fn stable_snap_to(&mut self, index: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    /// Replaces everything with `snapshot` (received from a leader).
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.metadata.index + 1;
        self.offset_in_progress = self.offset;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }

    /// Appends `entries`, first truncating whatever they overlap. The caller
    /// (the raft log) guarantees they are contiguous and do not start past
    /// `offset + entries.len()`.
    pub fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let from_index = first.index;
        let end = self.offset + self.entries.len() as u64;
        assert!(
            from_index <= end,
            "unstable append at {from_index} would leave a gap after {}",
            end.saturating_sub(1)
        );
        if from_index <= self.offset {
            // Replaces everything held, possibly reaching below `offset`
            // into stable storage (the raft log has checked the commit rule).
            self.offset = from_index;
            self.offset_in_progress = from_index;
            self.entries.clear();
        } else {
            self.entries.truncate((from_index - self.offset) as usize);
            self.offset_in_progress = self.offset_in_progress.min(from_index);
        }
        self.entries.extend_from_slice(entries);
    }

    /// Entries in `[low, high)`, which must lie within what is held.
    pub fn slice(&self, low: u64, high: u64) -> &[Entry] {
        let end = self.offset + self.entries.len() as u64;
        assert!(
            self.offset <= low && low <= high && high <= end,
            "unstable slice [{low}, {high}) out of bounds [{}, {end})",
            self.offset
        );
        &self.entries[(low - self.offset) as usize..(high - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests;
