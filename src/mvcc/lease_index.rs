//! Which keys carry which lease, as of the store's current revision: what
//! the lessor needs to delete a lease's keys on revoke or expiry, and to
//! rebuild its attachments after a restore. The store keeps it up to date
//! on every write; a key's older versions do not count.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Lease id to the keys whose current version carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LeaseIndex {
    keys: BTreeMap<i64, BTreeSet<Bytes>>,
}

impl LeaseIndex {
    /// `key` now carries `lease` (0: no lease, nothing to record).
    pub fn attach(&mut self, lease: i64, key: &Bytes) {
        if lease != 0 {
            self.keys.entry(lease).or_default().insert(key.clone());
        }
    }

    /// `key` no longer carries `lease`.
    pub fn detach(&mut self, lease: i64, key: &[u8]) {
        if let Some(keys) = self.keys.get_mut(&lease) {
            keys.remove(key);
            if keys.is_empty() {
                self.keys.remove(&lease);
            }
        }
    }

    /// The keys carrying `lease`, in key order.
    pub fn keys_of(&self, lease: i64) -> Vec<Bytes> {
        self.keys
            .get(&lease)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every (lease, key) pair, by lease then key.
    pub fn all(&self) -> Vec<(i64, Bytes)> {
        self.keys
            .iter()
            .flat_map(|(lease, keys)| keys.iter().map(move |k| (*lease, k.clone())))
            .collect()
    }
}
