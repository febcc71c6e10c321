//! The store itself: its state (key histories, revisions, size, lease
//! attachments), its accessors, and the single-operation requests (put,
//! delete range, lease revocation), each one write transaction.

use super::error::MvccError;
use super::history::KeyHistory;
use super::lease_index::LeaseIndex;
use super::ops;
use super::types::{
    Applied, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse,
};
use super::validate;
use super::write::Writer;
use bytes::Bytes;
use std::collections::BTreeMap;

/// An etcd v3.4 multi-version key-value store (see the module
/// documentation for what it guarantees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MvccStore {
    /// Every key that has a stored version, with its versions.
    pub(crate) keys: BTreeMap<Bytes, KeyHistory>,
    /// The revision of the last write transaction (1 when fresh).
    pub(crate) current: i64,
    /// The revision of the last compaction (0: never compacted).
    pub(crate) compacted: i64,
    /// [`MvccStore::size_bytes`], kept up to date by every change.
    pub(crate) size: u64,
    pub(crate) leases: LeaseIndex,
}

impl Default for MvccStore {
    fn default() -> MvccStore {
        MvccStore::new()
    }
}

impl MvccStore {
    /// A fresh store: revision 1, no keys (as a fresh etcd).
    pub fn new() -> MvccStore {
        MvccStore {
            keys: BTreeMap::new(),
            current: 1,
            compacted: 0,
            size: 0,
            leases: LeaseIndex::default(),
        }
    }

    /// The revision of the last write transaction that changed something.
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// The revision of the last compaction, 0 if never compacted.
    pub fn compacted_revision(&self) -> i64 {
        self.compacted
    }

    /// What the quota counts: for every stored version (live, older, and
    /// tombstones not yet compacted away) its key and value bytes plus
    /// [`super::VERSION_OVERHEAD_BYTES`]. Kept up to date incrementally.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// The keys whose current version carries `lease`, in key order.
    pub fn keys_of_lease(&self, lease: i64) -> Vec<Bytes> {
        self.leases.keys_of(lease)
    }

    /// Every (lease, key) attachment of the current versions, by lease then
    /// key (what a lessor rebuilds its key sets from after a restore).
    pub fn leased_keys(&self) -> Vec<(i64, Bytes)> {
        self.leases.all()
    }

    /// Reads a key or a range (see [`RangeRequest`]).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        validate::range(request)?;
        self.range_in_view(request, self.current)
    }

    /// Sets a key. `lease_exists` tells whether a lease id exists (asked
    /// only when the put attaches a lease).
    pub fn put(
        &mut self,
        request: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Applied<PutResponse>, MvccError> {
        validate::put(request)?;
        self.check_put(request, lease_exists)?;
        let mut writer = Writer::new(self);
        match ops::put(&mut writer, request) {
            Ok(response) => Ok(Applied {
                response,
                events: writer.finish(),
            }),
            Err(e) => {
                writer.abort();
                Err(e)
            }
        }
    }

    /// Deletes a key or a range; a deletion that matches nothing changes
    /// nothing (no new revision).
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<Applied<DeleteRangeResponse>, MvccError> {
        validate::delete_range(request)?;
        let mut writer = Writer::new(self);
        let mut response = ops::delete_range(&mut writer, request);
        let events = writer.finish();
        response.revision = self.current;
        Ok(Applied { response, events })
    }

    /// Deletes every key whose current version carries `lease`, in key
    /// order, in one write transaction (etcd's lease revocation and
    /// expiry). Returns the deleted keys' states as `prev_kvs`.
    pub fn revoke_lease(&mut self, lease: i64) -> Applied<DeleteRangeResponse> {
        let keys = self.keys_of_lease(lease);
        let mut writer = Writer::new(self);
        let mut prev_kvs = Vec::with_capacity(keys.len());
        for key in &keys {
            if let Some(prev) = writer.live(key) {
                writer.delete(key);
                prev_kvs.push(prev);
            }
        }
        let events = writer.finish();
        Applied {
            response: DeleteRangeResponse {
                deleted: prev_kvs.len() as i64,
                prev_kvs,
                revision: self.current,
            },
            events,
        }
    }
}
