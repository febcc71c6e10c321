//! The raft log as the consensus core sees it: stable storage plus the
//! unstable tail, with the commit, applying and applied marks.
//!
//! Owns: a [`Storage`] (the raft actor's `MemoryStorage`), the [`Unstable`]
//! tail, and the indexes `committed ≥ applying ≥ applied`.
//!
//! Guarantees: `applied ≤ applying ≤ committed ≤ last_index()`; a committed
//! entry is never truncated (an attempt is an invariant violation and
//! panics, as in etcd); committed entries are handed out for application once
//! each, in order, at most `max_applying_size` bytes outstanding.
//!
//! May not touch: IO. Persisting unstable entries is the caller's job; it
//! reports durability back through `stable_to` / `stable_snap_to`.

use super::NO_LIMIT;
use super::storage::{Storage, StorageError, entries_size, entry_size, limited_len};
use super::unstable::Unstable;
use crate::raftpb::{Entry, Snapshot};
use std::collections::VecDeque;

/// Storage + unstable entries + commit/apply bookkeeping.
#[derive(Debug)]
pub struct RaftLog<S: Storage> {
    store: S,
    /// Entries and snapshot not yet persisted.
    pub unstable: Unstable,
    /// The highest index known to be committed.
    pub committed: u64,
    /// The highest index handed out for application (≥ `applied`).
    pub applying: u64,
    /// The highest index the application has applied.
    pub applied: u64,
    max_applying_size: u64,
    /// Batches handed out for application and not yet applied:
    /// (last index of the batch, encoded bytes).
    applying_batches: VecDeque<(u64, u64)>,
    applying_size: u64,
    applying_paused: bool,
}

impl<S: Storage> RaftLog<S> {
    /// A log over `store` with no limit on entries outstanding for
    /// application.
    pub fn new(store: S) -> Result<RaftLog<S>, StorageError> {
        RaftLog::with_max_applying_size(store, NO_LIMIT)
    }

    /// A log over `store` that hands out at most `max_applying_size` bytes
    /// of committed entries before the application reports them applied.
    pub fn with_max_applying_size(
        store: S,
        max_applying_size: u64,
    ) -> Result<RaftLog<S>, StorageError> {
        let first_index = store.first_index()?;
        let last_index = store.last_index()?;
        let compacted = first_index - 1;
        Ok(RaftLog {
            store,
            unstable: Unstable::new(last_index + 1),
            committed: compacted,
            applying: compacted,
            applied: compacted,
            max_applying_size,
            applying_batches: VecDeque::new(),
            applying_size: 0,
            applying_paused: false,
        })
    }

    /// The stable storage.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stable storage, for the raft actor to append persisted entries.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The first index with an entry (one past the snapshot or compaction).
    pub fn first_index(&self) -> u64 {
        match self.unstable.maybe_first_index() {
            Some(index) => index,
            None => self.store_index(self.store.first_index()),
        }
    }

    /// The index of the last entry (or of the snapshot when there is none).
    pub fn last_index(&self) -> u64 {
        match self.unstable.maybe_last_index() {
            Some(index) => index,
            None => self.store_index(self.store.last_index()),
        }
    }

    fn store_index(&self, index: Result<u64, StorageError>) -> u64 {
        match index {
            Ok(index) => index,
            Err(error) => panic!("raft log storage failed to report an index: {error}"),
        }
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> u64 {
        let last_index = self.last_index();
        match self.term(last_index) {
            Ok(term) => term,
            Err(error) => panic!("term of last index {last_index} unknown: {error}"),
        }
    }

    /// The term of the entry at `index`, which may be the compaction point.
    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        if let Some(term) = self.unstable.maybe_term(index) {
            return Ok(term);
        }
        let first_index = self.first_index();
        // `index` may be a peer's number: compare without adding to it.
        if index < first_index.saturating_sub(1) {
            return Err(StorageError::Compacted { first_index });
        }
        let last_index = self.last_index();
        if index > last_index {
            return Err(StorageError::Unavailable { index, last_index });
        }
        self.store.term(index)
    }

    /// The term at `index`, or 0 when it is compacted or not in the log.
    pub fn term_or_zero(&self, index: u64) -> u64 {
        self.term(index).unwrap_or(0)
    }

    /// Whether the entry at `index` has `term`.
    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|ours| ours == term)
    }

    /// Whether a log ending at (`last_index`, `term`) is at least as
    /// up-to-date as ours (the raft vote restriction, §5.4.1).
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        let our_term = self.last_term();
        term > our_term || (term == our_term && last_index >= self.last_index())
    }

    /// The index of the first entry of `entries` that is not in our log with
    /// the same term, or 0 when all of them match. `entries` must be
    /// contiguous.
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// The last index ≤ `index` whose term is ≤ `term`, with that term: the
    /// probe point a leader should try after a rejection, skipping whole
    /// terms at once. Returns (index, 0) where our term is unknown there.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index;
        loop {
            match self.term(index) {
                Err(_) => return (index, 0),
                Ok(our_term) if our_term <= term => return (index, our_term),
                Ok(_) => {}
            }
            if index == 0 {
                return (0, 0);
            }
            index -= 1;
        }
    }

    /// Appends the entries of a leader's MsgApp whose previous entry is
    /// (`index`, `log_term`), truncating any conflicting suffix, and advances
    /// the commit index to min(`committed`, last new index). Returns the last
    /// new index, or `None` when the previous entry does not match.
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new_index = index + entries.len() as u64;
        let conflict_index = self.find_conflict(entries);
        if conflict_index != 0 {
            assert!(
                conflict_index > self.committed,
                "entry {conflict_index} conflicts with committed entry (committed {})",
                self.committed
            );
            let start = (conflict_index - (index + 1)) as usize;
            assert!(
                start < entries.len(),
                "conflict index {conflict_index} outside appended range after {index}"
            );
            self.append(&entries[start..]);
        }
        self.commit_to(committed.min(last_new_index));
        Some(last_new_index)
    }

    /// Appends `entries` to the unstable tail, truncating what they overlap.
    /// Returns the new last index. Truncating a committed entry panics.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        let after = first.index - 1;
        assert!(
            after >= self.committed,
            "appending after {after} would truncate committed entries (committed {})",
            self.committed
        );
        self.unstable.truncate_and_append(entries);
        self.last_index()
    }

    /// All unstable entries.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    /// Unstable entries not yet handed out in a Ready.
    pub fn next_unstable_entries(&self) -> &[Entry] {
        self.unstable.next_entries()
    }

    /// Whether there are unstable entries not yet handed out.
    pub fn has_next_unstable_entries(&self) -> bool {
        !self.unstable.next_entries().is_empty()
    }

    /// Whether unstable entries exist that are not yet durable (handed out
    /// or not).
    pub fn has_next_or_in_progress_unstable_entries(&self) -> bool {
        !self.unstable.entries.is_empty()
    }

    /// The unstable snapshot if it has not been handed out in a Ready.
    pub fn next_unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.next_snapshot()
    }

    /// Whether a snapshot awaits handing out.
    pub fn has_next_unstable_snapshot(&self) -> bool {
        self.unstable.next_snapshot().is_some()
    }

    /// Whether a snapshot is not yet durable (handed out or not).
    pub fn has_next_or_in_progress_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some()
    }

    /// Marks all unstable entries and snapshot as handed out for persistence.
    pub fn accept_unstable(&mut self) {
        self.unstable.accept_in_progress();
    }

    /// Entries up to (`index`, `term`) are durable.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    /// The snapshot at `index` is durable.
    pub fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
    }

    /// The highest index that may be handed out for application: the commit
    /// index, capped to what is durable unless `allow_unstable`.
    pub fn max_appliable_index(&self, allow_unstable: bool) -> u64 {
        if allow_unstable {
            self.committed
        } else {
            self.committed.min(self.unstable.offset - 1)
        }
    }

    /// Committed entries not yet handed out for application, at most about
    /// the remaining application byte budget (at least one entry). Empty while
    /// application is paused on that budget or a snapshot is not yet durable.
    pub fn next_committed_entries(&self, allow_unstable: bool) -> Result<Vec<Entry>, StorageError> {
        if self.applying_paused || self.has_next_or_in_progress_snapshot() {
            return Ok(Vec::new());
        }
        let low = self.applying + 1;
        let high = self.max_appliable_index(allow_unstable) + 1;
        if low >= high {
            return Ok(Vec::new());
        }
        let budget = self.max_applying_size.saturating_sub(self.applying_size);
        self.slice(low, high, budget)
    }

    /// Whether [`RaftLog::next_committed_entries`] would return anything.
    pub fn has_next_committed_entries(&self, allow_unstable: bool) -> bool {
        !self.applying_paused
            && !self.has_next_or_in_progress_snapshot()
            && self.applying < self.max_appliable_index(allow_unstable)
    }

    /// Whether handing out committed entries waits for the application to
    /// report progress ([`RaftLog::applied_to`]): the byte budget is spent,
    /// or the last batch was cut short by it.
    pub fn applying_paused(&self) -> bool {
        self.applying_paused
    }

    /// Records that committed entries up to `index` (of `size` bytes) were
    /// handed out for application. Pauses handing out more when the byte
    /// budget is spent or the batch had to be cut short by it.
    pub fn accept_applying(&mut self, index: u64, size: u64, allow_unstable: bool) {
        assert!(
            index <= self.committed,
            "applying index {index} beyond committed {}",
            self.committed
        );
        self.applying = index;
        self.applying_size = self.applying_size.saturating_add(size);
        self.applying_batches.push_back((index, size));
        self.applying_paused = self.applying_size >= self.max_applying_size
            || index < self.max_appliable_index(allow_unstable);
    }

    /// The application has applied everything up to `index`.
    pub fn applied_to(&mut self, index: u64) {
        assert!(
            index <= self.committed && index >= self.applied,
            "applied index {index} out of range [{}, {}]",
            self.applied,
            self.committed
        );
        self.applied = index;
        self.applying = self.applying.max(index);
        while let Some(&(batch_last, size)) = self.applying_batches.front() {
            if batch_last > index {
                break;
            }
            self.applying_size = self.applying_size.saturating_sub(size);
            self.applying_batches.pop_front();
        }
        self.applying_paused = false;
    }

    /// Raises the commit index to `to` (never lowers it). Committing past
    /// the last index is an invariant violation.
    pub fn commit_to(&mut self, to: u64) {
        if to > self.committed {
            let last_index = self.last_index();
            assert!(
                to <= last_index,
                "commit index {to} is out of range (last index {last_index})"
            );
            self.committed = to;
        }
    }

    /// Commits up to `max_index` if that entry has `term` (a leader commits
    /// only entries of its own term by counting replicas, §5.4.2).
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        if max_index > self.committed && self.term_or_zero(max_index) == term {
            self.commit_to(max_index);
            return true;
        }
        false
    }

    /// The newest snapshot: the unstable one, else the storage's.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        match &self.unstable.snapshot {
            Some(snapshot) => Ok(snapshot.clone()),
            None => self.store.snapshot(self.applied),
        }
    }

    /// Entries from `index` to the end, at most about `max_size` bytes.
    pub fn entries(&self, index: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        let last_index = self.last_index();
        if index > last_index {
            return Ok(Vec::new());
        }
        self.slice(index, last_index + 1, max_size)
    }

    /// Every entry in the log (for tests and diagnostics).
    pub fn all_entries(&self) -> Vec<Entry> {
        let first_index = self.first_index();
        match self.entries(first_index, NO_LIMIT) {
            Ok(entries) => entries,
            Err(error) => panic!("reading the whole log from {first_index} failed: {error}"),
        }
    }

    /// Replaces the log with `snapshot` received from a leader.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.committed = snapshot.metadata.index;
        self.unstable.restore(snapshot);
    }

    /// Entries in `[low, high)` across storage and the unstable tail, at most
    /// about `max_size` encoded bytes but at least one entry. A range below
    /// the first index is [`StorageError::Compacted`]; past the last index,
    /// [`StorageError::OutOfBounds`].
    pub fn slice(&self, low: u64, high: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        self.check_bounds(low, high)?;
        if low == high {
            return Ok(Vec::new());
        }
        let unstable_offset = self.unstable.offset;
        if low >= unstable_offset {
            let tail = self.unstable.slice(low, high);
            return Ok(tail[..limited_len(tail, max_size)].to_vec());
        }
        let cut = high.min(unstable_offset);
        let mut entries = match self.store.entries(low, cut, max_size) {
            Ok(entries) => entries,
            Err(StorageError::Compacted { first_index }) => {
                return Err(StorageError::Compacted { first_index });
            }
            Err(error) => {
                panic!("storage lost entries [{low}, {cut}) it reported having: {error}")
            }
        };
        if high <= unstable_offset || (entries.len() as u64) < cut - low {
            // All from storage, or storage already hit the size limit.
            return Ok(entries);
        }
        let stored_size = entries_size(&entries);
        if stored_size >= max_size {
            return Ok(entries);
        }
        let tail = self.unstable.slice(unstable_offset, high);
        let remaining = max_size - stored_size;
        let mut keep = limited_len(tail, remaining);
        // `limited_len` always keeps one entry; here the stored part already
        // satisfies "at least one", so drop a lone entry that does not fit.
        if keep == 1 && remaining != NO_LIMIT && entry_size(&tail[0]) > remaining {
            keep = 0;
        }
        entries.extend_from_slice(&tail[..keep]);
        Ok(entries)
    }

    fn check_bounds(&self, low: u64, high: u64) -> Result<(), StorageError> {
        let last_index = self.last_index();
        if low > high || high > last_index + 1 {
            return Err(StorageError::OutOfBounds {
                low,
                high,
                last_index,
            });
        }
        let first_index = self.first_index();
        if low < first_index {
            return Err(StorageError::Compacted { first_index });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
