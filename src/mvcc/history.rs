//! One key's stored versions: the records of its puts and deletions in
//! revision order, and the lookups a read at a revision needs.
//!
//! A record is what etcd keeps in its backend under the revision (main,
//! sub); a deletion is a tombstone record. The list is shared
//! copy-on-write (`Arc`) so that a snapshot view copies one pointer per
//! key, not the versions.

use super::types::KeyValue;
use bytes::Bytes;
use std::sync::Arc;

/// Bytes counted per stored version on top of its key and value (see
/// [`super::MvccStore::size_bytes`]): a rough cost of the revision, the
/// metadata and the index entry.
pub const VERSION_OVERHEAD_BYTES: u64 = 64;

/// One stored version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The main revision (the write transaction).
    pub main: i64,
    /// The position of the change inside its transaction.
    pub sub: i64,
    /// A deletion; then `create_revision`, `version`, `lease` are 0 and
    /// `value` is empty.
    pub tombstone: bool,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Bytes,
}

impl Record {
    /// The key's state this record stands for (a tombstone gives etcd's
    /// delete-event form: only key and mod revision).
    pub fn key_value(&self, key: &Bytes) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.main,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }

    /// What this version counts in [`super::MvccStore::size_bytes`].
    pub fn size(&self, key: &[u8]) -> u64 {
        key.len() as u64 + self.value.len() as u64 + VERSION_OVERHEAD_BYTES
    }
}

/// The versions of one key, oldest first, strictly increasing in
/// revision; never empty while in the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyHistory {
    records: Arc<Vec<Record>>,
}

impl KeyHistory {
    /// Every stored version, oldest first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Mutable access; copies the list first if a snapshot view shares it.
    pub fn records_mut(&mut self) -> &mut Vec<Record> {
        Arc::make_mut(&mut self.records)
    }

    /// The newest version with main revision <= `revision`.
    pub fn at(&self, revision: i64) -> Option<&Record> {
        let newer = self.records.partition_point(|r| r.main <= revision);
        newer.checked_sub(1).map(|i| &self.records[i])
    }

    /// The live version at `revision`: none if the key did not exist then.
    pub fn live_at(&self, revision: i64) -> Option<&Record> {
        self.at(revision).filter(|r| !r.tombstone)
    }

    /// The newest version, whatever its revision.
    pub fn latest(&self) -> Option<&Record> {
        self.records.last()
    }

    /// The index of the first version with main revision >= `revision`.
    pub fn first_from(&self, revision: i64) -> usize {
        self.records.partition_point(|r| r.main < revision)
    }
}

impl KeyHistory {
    /// A history of checked records (restore).
    pub fn from_records(records: Vec<Record>) -> KeyHistory {
        KeyHistory {
            records: Arc::new(records),
        }
    }
}
