//! The stored versions in revision order, as etcd's backend holds them
//! (key = revision, value = the version): the content etcd's `HashKV`
//! hashes. ringraft's own HashKV (`hash.rs`) hashes the same versions, in
//! key order.

use super::MvccStore;
use super::types::KeyValue;

/// One stored version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// The main revision (the write transaction).
    pub main: i64,
    /// The position of the change in its transaction.
    pub sub: i64,
    /// A deletion (etcd marks the backend key with `t`).
    pub tombstone: bool,
    /// The version; for a tombstone only `key` and `mod_revision` are set
    /// (etcd stores only the key there).
    pub kv: KeyValue,
}

impl MvccStore {
    /// Every stored version with main revision <= `max_revision`, in
    /// (main, sub) order: the versions kept by compaction at or below the
    /// compacted revision, then the whole history above it.
    pub fn stored_versions(&self, max_revision: i64) -> Vec<StoredVersion> {
        let mut versions: Vec<StoredVersion> = self
            .keys
            .iter()
            .flat_map(|(key, history)| {
                history
                    .records()
                    .iter()
                    .take_while(move |r| r.main <= max_revision)
                    .map(move |r| StoredVersion {
                        main: r.main,
                        sub: r.sub,
                        tombstone: r.tombstone,
                        kv: r.key_value(key),
                    })
            })
            .collect();
        versions.sort_by_key(|v| (v.main, v.sub));
        versions
    }
}
