//! An MVCC key-value store with etcd v3.4's semantics (its `mvcc` package
//! and the KV part of its apply layer), as plain Rust types: the engine
//! behind ringraft's etcd v3 API. The gRPC layer maps etcd's protobuf
//! messages onto the types re-exported here one to one and wraps the store in a
//! `StateMachine`.
//!
//! Owns: every key's stored versions (puts and tombstones, by revision
//! main.sub), the store's current and compacted revision, the lease ids
//! keys carry (ids only; the leases themselves are the lessor's, asked
//! through a `lease_exists` callback), the store's size for the quota, and
//! the snapshot format below.
//!
//! Guarantees:
//! - **revisions**: a fresh store is at revision 1 with no key. Each write
//!   (put, delete range, txn, lease revocation) that changes something is
//!   one transaction with the next main revision; its changes get
//!   sub-revisions 0, 1, 2… A write that changes nothing (a read-only
//!   txn, a deletion matching no key) keeps the revision.
//! - **keys**: `create_revision` is the put that began the key's current
//!   generation, `version` counts puts within it (1 on creation); a
//!   deletion ends the generation (a tombstone, visible to reads at older
//!   revisions) and a later put begins a new one.
//! - **reads** at any revision from the compacted one to the current one
//!   see the store as it was then; `count` is the number of keys in the
//!   range, `more` whether the limit cut the result; the steps follow
//!   etcd's apply order (fetch, filter, sort, limit). Sorting is stable,
//!   ties in key order (etcd's Go sort leaves ties unspecified).
//! - **txns** are atomic: an error leaves the store unchanged, a success
//!   applies every operation of the branch taken under one revision; the
//!   same key may not be written twice (across nested txns too). Compares
//!   of nested txns are decided before anything runs, against the store as
//!   it was before the txn (etcd's `compareToPath`).
//! - **events**: every write returns its changes in revision order, and
//!   [`MvccStore::events_since`] replays the same events from the stored
//!   versions (with the previous state of each key), as long as the start
//!   revision is above the compacted one.
//! - **determinism**: the same requests in the same order give the same
//!   state, responses, events and snapshot bytes on every member: ordered
//!   maps only, no clock, no randomness.
//! - **size**: [`MvccStore::size_bytes`] is the sum over stored versions
//!   of key bytes + value bytes + [`VERSION_OVERHEAD_BYTES`] (64), updated
//!   on every write and compaction.
//! - **snapshots**: [`MvccStore::snapshot`] is a cheap owned view (one
//!   pointer per key, histories shared copy-on-write, values never
//!   copied) that may be written on another thread while the store goes
//!   on; [`MvccStore::restore`] of what it wrote gives an equal store
//!   (`==`), and refuses anything else with a [`SnapshotError`] naming the
//!   offset and record, without panicking.
//! - **hashes**: [`MvccStore::hash_kv`] and [`MvccStore::hash_state`]
//!   (etcd's HashKV and Hash) are CRC-32Cs of the stored versions in key
//!   then revision order (and, for the state, the revisions and the lease
//!   ids and TTLs), equal on members that applied the same log, restored
//!   or not; exactly what is hashed is documented in `hash.rs`.
//!
//! Differences from etcd, on purpose: a watch replay
//! ([`MvccStore::events_since`]) refuses a start revision equal to the
//! compacted one (etcd accepts it but has dropped any deletion made at
//! that revision, so the replay could miss it); the distinct-keys check
//! of txns treats a deletion with `range_end = [0]` as covering every key
//! from its start (etcd's interval check reads `[0]` literally);
//! compaction at 0 on a never-compacted store is `Compacted` (etcd starts
//! its compacted revision at -1 and accepts it as a no-op); a nested txn's
//! response carries the revision the enclosing txn sees after it (etcd
//! leaves it 0). Kept from etcd although surprising: without a sort order
//! the limit is pushed down before sorting by a non-key target (so
//! `sort_target = Version, limit = 2` sorts the first 3 keys only).
//!
//! May not touch: raft, files, the network, clocks; protobuf types; lease
//! expiry (the lessor decides it and calls [`MvccStore::revoke_lease`]).
//!
//! # Snapshot format (version 1)
//!
//! All integers little-endian; `i64` two's complement.
//!
//! | offset | size | field | meaning |
//! | --- | --- | --- | --- |
//! | 0 | 8 | magic | `RRMVCC\r\n` |
//! | 8 | 4 | format version | u32, 1 |
//! | 12 | … | frames | a header frame, the version frames, an end frame |
//!
//! Then nothing: the end frame is followed by the end of the input
//! ([`MvccStore::restore`] refuses anything after it). A container that
//! appends its own sections (the etcd store's lease section) reads the
//! MVCC part with [`MvccStore::restore_prefix`], which stops after the end
//! frame.
//!
//! Every frame:
//!
//! | size | field | meaning |
//! | --- | --- | --- |
//! | 1 | tag | 1 header, 2 version record, 3 end |
//! | 4 | body length | u32, at most 64 MiB |
//! | 4 | checksum | CRC-32C (Castagnoli) of the tag, the body length's 4 bytes and the body |
//! | body length | body | by tag, below |
//!
//! Header body (16 bytes): `current_revision` i64 (>= 1), then
//! `compacted_revision` i64 (0 = never compacted, at most the current).
//!
//! Version record body, one per stored version, ordered by key (bytewise)
//! then by revision:
//!
//! | size | field | meaning |
//! | --- | --- | --- |
//! | 4 | key length | u32 |
//! | key length | key | non-empty |
//! | 8 | main | i64, revision of the write (2..=current) |
//! | 8 | sub | i64, position of the change in its write |
//! | 1 | flags | bit 0: tombstone; other bits 0 |
//! | 8 | create revision | i64 (0 for a tombstone) |
//! | 8 | version | i64 (0 for a tombstone) |
//! | 8 | lease | i64, 0 for none (0 for a tombstone) |
//! | 4 | value length | u32 (0 for a tombstone) |
//! | value length | value | |
//!
//! End body (16 bytes): the number of version records u64, then the
//! number of distinct keys u64.
//!
//! `restore` checks, besides checksums and lengths, the store's
//! invariants (listed in `restore_check.rs`): key order, per-key revision
//! order and generation rules, at most one version per key at or below
//! the compacted revision (and it live), every revision above the
//! compacted one present with sub-revisions 0, 1, 2…

mod compact;
mod compare;
mod error;
mod format;
mod hash;
mod history;
mod lease_index;
mod ops;
mod range;
mod restore;
mod restore_check;
mod snapshot;
mod span;
mod store;
mod txn;
mod types;
mod validate;
mod versions;
mod watch;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hash;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_snapshot;

pub use error::{MvccError, SnapshotError};
pub use hash::KvHash;
pub use history::VERSION_OVERHEAD_BYTES;
pub use restore::RESTORE_BUFFER_BYTES;
pub use snapshot::MvccSnapshot;
pub use store::MvccStore;
pub use types::{
    Applied, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
pub use validate::{
    DEFAULT_MAX_TXN_OPS, delete_range as validate_delete_range, put as validate_put,
    range as validate_range, txn as validate_txn,
};
pub use versions::StoredVersion;
