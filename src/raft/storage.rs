//! The raft core's view of stable (already persisted) log state, and the
//! in-memory implementation the raft actor owns.
//!
//! Owns: the [`Storage`] trait the raft log reads through, [`MemoryStorage`]
//! and the typed [`StorageError`].
//!
//! Guarantees: `MemoryStorage` keeps a dummy entry at position 0 whose index
//! and term are those of the last compacted entry (or snapshot), so the term
//! of the entry just before the first available one is always known. Reads
//! below it fail with [`StorageError::Compacted`]; entries are contiguous.
//!
//! May not touch: files. Durability is the WAL's job; this storage is rebuilt
//! from the WAL and snapshot on restart.

use super::NO_LIMIT;
use crate::raftpb::{ConfState, Entry, HardState, Snapshot};
use prost::Message as _;

/// Why a storage read or update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index is at or below the compaction point.
    #[error(
        "requested index is unavailable due to compaction (first available index {first_index})"
    )]
    Compacted {
        /// The first index still available.
        first_index: u64,
    },
    /// The requested entries are not in storage (yet).
    #[error("requested entry at index {index} is unavailable (last index {last_index})")]
    Unavailable {
        /// The first requested index that is missing.
        index: u64,
        /// The last index storage holds.
        last_index: u64,
    },
    /// A snapshot older than (or as old as) the current one was offered.
    #[error("snapshot at index {requested} is out of date (storage has snapshot at {current})")]
    SnapshotOutOfDate {
        /// The index of the offered snapshot.
        requested: u64,
        /// The index of the snapshot storage already has.
        current: u64,
    },
    /// The snapshot is being produced; ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Appending would leave a hole in the log.
    #[error(
        "appending entries starting at index {first_appended} would leave a gap after last index {last_index}"
    )]
    LogGap {
        /// The index of the first entry offered.
        first_appended: u64,
        /// The last index storage holds.
        last_index: u64,
    },
    /// A range past the end of the log was asked for.
    #[error("range [{low}, {high}) is out of bounds (last index {last_index})")]
    OutOfBounds {
        /// The start of the range.
        low: u64,
        /// The (exclusive) end of the range.
        high: u64,
        /// The last index storage holds.
        last_index: u64,
    },
    /// Entries passed in are not contiguous or not increasing.
    #[error("entries are not contiguous: index {found} follows {previous}")]
    NotContiguous {
        /// The index before the break.
        previous: u64,
        /// The index found after it.
        found: u64,
    },
}

/// The persisted state raft starts from: its HardState and membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    /// Term, vote and commit as last persisted.
    pub hard_state: HardState,
    /// Membership as of the latest snapshot (the raft layer applies later
    /// configuration entries itself).
    pub conf_state: ConfState,
}

/// Read access to the stable part of the raft log, as etcd's raft `Storage`.
///
/// Implementations return [`StorageError::Compacted`] for indexes at or below
/// the compaction point and [`StorageError::Unavailable`] for indexes not yet
/// stored. They must not block: the raft core calls them while handling a
/// message.
pub trait Storage {
    /// The HardState and ConfState to start from.
    fn initial_state(&self) -> Result<RaftState, StorageError>;

    /// Entries in `[low, high)`, limited to about `max_size` encoded bytes
    /// but always at least one entry when the range is not empty.
    fn entries(&self, low: u64, high: u64, max_size: u64) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`, which may be the compaction point
    /// (`first_index() - 1`).
    fn term(&self, index: u64) -> Result<u64, StorageError>;

    /// The index of the first entry that can be read with `entries`.
    fn first_index(&self) -> Result<u64, StorageError>;

    /// The index of the last entry in storage.
    fn last_index(&self) -> Result<u64, StorageError>;

    /// The most recent snapshot. `request_index` is the index the caller
    /// needs covered; an implementation still building one may answer
    /// [`StorageError::SnapshotTemporarilyUnavailable`].
    fn snapshot(&self, request_index: u64) -> Result<Snapshot, StorageError>;
}

/// The encoded size of an entry, as the size limits count it.
pub fn entry_size(entry: &Entry) -> u64 {
    entry.encoded_len() as u64
}

/// The total encoded size of `entries`.
pub fn entries_size(entries: &[Entry]) -> u64 {
    entries.iter().map(entry_size).sum()
}

/// Shortens `entries` to the longest prefix of at most `max_size` encoded
/// bytes, but never below one entry: a single entry larger than the limit
/// still goes through, or replication of it would stall for ever.
pub fn limit_size(entries: &mut Vec<Entry>, max_size: u64) {
    let keep = limited_len(entries, max_size);
    entries.truncate(keep);
}

/// How many leading entries of `entries` fit in `max_size` (at least one).
pub fn limited_len(entries: &[Entry], max_size: u64) -> usize {
    if entries.is_empty() || max_size == NO_LIMIT {
        return entries.len();
    }
    let mut size = entry_size(&entries[0]);
    let mut keep = 1;
    while keep < entries.len() {
        size = size.saturating_add(entry_size(&entries[keep]));
        if size > max_size {
            break;
        }
        keep += 1;
    }
    keep
}

/// A [`Storage`] held in memory, owned by the raft actor.
///
/// `entries[0]` is a dummy entry holding the index and term of the last
/// compacted entry; real entries follow it contiguously.
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new()
    }
}

impl MemoryStorage {
    /// An empty storage: no snapshot, only the dummy entry at index 0.
    pub fn new() -> MemoryStorage {
        MemoryStorage {
            hard_state: HardState::default(),
            snapshot: Snapshot::default(),
            entries: vec![Entry::default()],
        }
    }

    /// A storage whose initial membership is `voters`, as a new cluster's
    /// first boot uses (the ConfState lives in the empty snapshot).
    pub fn new_with_conf_state(conf_state: ConfState) -> MemoryStorage {
        let mut storage = MemoryStorage::new();
        storage.snapshot.metadata.conf_state = conf_state;
        storage
    }

    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }

    /// The HardState last set.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Records the HardState (the caller has made it durable first).
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Records the commit index alone.
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Replaces the whole contents with `snapshot`. An older snapshot than
    /// the one held is refused with [`StorageError::SnapshotOutOfDate`].
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let current = self.snapshot.metadata.index;
        let requested = snapshot.metadata.index;
        if current >= requested {
            return Err(StorageError::SnapshotOutOfDate { requested, current });
        }
        self.entries = vec![Entry {
            term: snapshot.metadata.term,
            index: requested,
            ..Default::default()
        }];
        self.snapshot = snapshot;
        Ok(())
    }

    /// The newest snapshot's index (0: none), without copying its data.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.metadata.index
    }

    /// The newest snapshot (index 0 and no data: none), without copying
    /// its data (`Storage::snapshot` hands out a copy).
    pub fn last_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Makes a snapshot at `index` (which must be in the log) holding `data`,
    /// with `conf_state` when given (otherwise the previous one). Does not
    /// compact: call [`MemoryStorage::compact`] separately so that lagging
    /// followers can still be sent entries.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<Snapshot, StorageError> {
        let current = self.snapshot.metadata.index;
        if index <= current {
            return Err(StorageError::SnapshotOutOfDate {
                requested: index,
                current,
            });
        }
        let last_index = self.last();
        if index > last_index {
            return Err(StorageError::Unavailable { index, last_index });
        }
        let position = (index - self.offset()) as usize;
        self.snapshot.metadata.index = index;
        self.snapshot.metadata.term = self.entries[position].term;
        if let Some(conf_state) = conf_state {
            self.snapshot.metadata.conf_state = conf_state;
        }
        self.snapshot.data = data;
        Ok(self.snapshot.clone())
    }

    /// Discards entries up to and including `compact_index`, which becomes
    /// the new dummy entry. The caller must not compact past what it has
    /// applied.
    pub fn compact(&mut self, compact_index: u64) -> Result<(), StorageError> {
        let offset = self.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted {
                first_index: offset + 1,
            });
        }
        let last_index = self.last();
        if compact_index > last_index {
            return Err(StorageError::Unavailable {
                index: compact_index,
                last_index,
            });
        }
        let position = (compact_index - offset) as usize;
        let dummy = Entry {
            term: self.entries[position].term,
            index: compact_index,
            ..Default::default()
        };
        self.entries.drain(..position);
        self.entries[0] = dummy;
        Ok(())
    }

    /// Appends persisted entries. Entries at or below the compaction point
    /// are skipped; an entry that overlaps the log replaces it and everything
    /// after it (a leader overwrote a conflicting suffix); a gap after the
    /// last index is refused.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first_new) = entries.first() else {
            return Ok(());
        };
        check_contiguous(entries)?;
        let first_index = self.offset() + 1;
        let last_new = first_new.index + entries.len() as u64 - 1;
        if last_new < first_index {
            return Ok(());
        }
        let skip = first_index.saturating_sub(first_new.index) as usize;
        let entries = &entries[skip..];
        let position = (entries[0].index - self.offset()) as usize;
        if position > self.entries.len() {
            return Err(StorageError::LogGap {
                first_appended: entries[0].index,
                last_index: self.last(),
            });
        }
        self.entries.truncate(position);
        self.entries.extend_from_slice(entries);
        Ok(())
    }
}

fn check_contiguous(entries: &[Entry]) -> Result<(), StorageError> {
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return Err(StorageError::NotContiguous {
                previous: pair[0].index,
                found: pair[1].index,
            });
        }
    }
    Ok(())
}

impl Storage for MemoryStorage {
    fn initial_state(&self) -> Result<RaftState, StorageError> {
        Ok(RaftState {
            hard_state: self.hard_state,
            conf_state: self.snapshot.metadata.conf_state.clone(),
        })
    }

    fn entries(&self, low: u64, high: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        let offset = self.offset();
        if low <= offset {
            return Err(StorageError::Compacted {
                first_index: offset + 1,
            });
        }
        let last_index = self.last();
        if high > last_index + 1 || low > high {
            return Err(StorageError::OutOfBounds {
                low,
                high,
                last_index,
            });
        }
        if self.entries.len() == 1 {
            return Err(StorageError::Unavailable {
                index: low,
                last_index,
            });
        }
        let range = &self.entries[(low - offset) as usize..(high - offset) as usize];
        let keep = limited_len(range, max_size);
        Ok(range[..keep].to_vec())
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let offset = self.offset();
        if index < offset {
            return Err(StorageError::Compacted {
                first_index: offset + 1,
            });
        }
        let position = (index - offset) as usize;
        match self.entries.get(position) {
            Some(entry) => Ok(entry.term),
            None => Err(StorageError::Unavailable {
                index,
                last_index: self.last(),
            }),
        }
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests;
