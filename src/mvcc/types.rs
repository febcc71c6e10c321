//! The plain request, response and event types of the MVCC store. They
//! mirror etcd's `etcdserverpb` and `mvccpb` messages field for field (the
//! gRPC layer maps them), without protobuf: an empty `range_end` is "no
//! range end", `0` is "unset" for revisions, limits and leases, as in
//! etcd's wire format.

use bytes::Bytes;

/// A key's state at one revision (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The revision of the put that created this generation of the key.
    pub create_revision: i64,
    /// The revision of the last change of the key.
    pub mod_revision: i64,
    /// 1 on creation, +1 per put within the generation.
    pub version: i64,
    /// The value (empty in `keys_only` results).
    pub value: Bytes,
    /// The attached lease, 0 for none.
    pub lease: i64,
}

/// The order of a range result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Key order, unless the target is not the key (then ascending).
    #[default]
    None,
    /// Ascending by the target.
    Ascend,
    /// Descending by the target.
    Descend,
}

/// What a range result is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value (bytewise).
    Value,
}

/// A read (etcd's `RangeRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeRequest {
    /// The first key (or the only one when `range_end` is empty).
    pub key: Bytes,
    /// Empty: only `key`; `[0]`: every key >= `key`; otherwise the
    /// half-open range `[key, range_end)`.
    pub range_end: Bytes,
    /// At most this many keys; 0 (or negative) for no limit.
    pub limit: i64,
    /// Read at this revision; 0 (or negative) for the current one.
    pub revision: i64,
    /// The order.
    pub sort_order: SortOrder,
    /// What the order is by.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Keep keys with `mod_revision >=` this (0: no filter).
    pub min_mod_revision: i64,
    /// Keep keys with `mod_revision <=` this (0: no filter).
    pub max_mod_revision: i64,
    /// Keep keys with `create_revision >=` this (0: no filter).
    pub min_create_revision: i64,
    /// Keep keys with `create_revision <=` this (0: no filter).
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// A read of the single key `key` at the current revision.
    pub fn key(key: impl Into<Bytes>) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            ..RangeRequest::default()
        }
    }

    /// A read of `[key, range_end)` at the current revision.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..RangeRequest::default()
        }
    }
}

/// The answer to a read (etcd's `RangeResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    /// The keys, after filters, sort and limit.
    pub kvs: Vec<KeyValue>,
    /// How many keys the range holds at the read revision (before filters
    /// and limit).
    pub count: i64,
    /// Whether more keys matched than `kvs` holds.
    pub more: bool,
    /// The store's revision (for the response header).
    pub revision: i64,
}

/// A write of one key (etcd's `PutRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutRequest {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// The lease to attach, 0 for none.
    pub lease: i64,
    /// Return the key's previous state.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

impl PutRequest {
    /// A put of `value` at `key` without lease or flags.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }
    }
}

/// The answer to a put (etcd's `PutResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutResponse {
    /// The previous state, if asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
    /// The store's revision after the put.
    pub revision: i64,
}

/// A deletion of a key or a range (etcd's `DeleteRangeRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRangeRequest {
    /// The first key (or the only one when `range_end` is empty).
    pub key: Bytes,
    /// As in [`RangeRequest::range_end`].
    pub range_end: Bytes,
    /// Return the deleted keys' states.
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    /// A deletion of the single key `key`.
    pub fn key(key: impl Into<Bytes>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        }
    }

    /// A deletion of `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..DeleteRangeRequest::default()
        }
    }
}

/// The answer to a deletion (etcd's `DeleteRangeResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRangeResponse {
    /// How many keys were deleted.
    pub deleted: i64,
    /// Their states before, in key order, if asked for.
    pub prev_kvs: Vec<KeyValue>,
    /// The store's revision after the deletion.
    pub revision: i64,
}

/// What a compare looks at, with the operand (etcd's `Compare.target` and
/// `target_union` in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The version.
    Version(i64),
    /// The create revision.
    Create(i64),
    /// The mod revision.
    Mod(i64),
    /// The value (bytewise).
    Value(Bytes),
    /// The lease id.
    Lease(i64),
}

/// How the key's field must relate to the operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    /// Field == operand.
    Equal,
    /// Field > operand.
    Greater,
    /// Field < operand.
    Less,
    /// Field != operand.
    NotEqual,
}

/// One condition of a txn (etcd's `Compare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key (or the first of the range).
    pub key: Bytes,
    /// As in [`RangeRequest::range_end`]: every existing key of the range
    /// must satisfy the compare.
    pub range_end: Bytes,
    /// The field and operand.
    pub target: CompareTarget,
    /// The relation.
    pub result: CompareResult,
}

impl Compare {
    /// A compare of the single key `key`.
    pub fn key(key: impl Into<Bytes>, target: CompareTarget, result: CompareResult) -> Compare {
        Compare {
            key: key.into(),
            range_end: Bytes::new(),
            target,
            result,
        }
    }
}

/// One operation of a txn (etcd's `RequestOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A deletion.
    DeleteRange(DeleteRangeRequest),
    /// A nested txn.
    Txn(TxnRequest),
}

/// The answer to one operation (etcd's `ResponseOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    /// To a read.
    Range(RangeResponse),
    /// To a put.
    Put(PutResponse),
    /// To a deletion.
    DeleteRange(DeleteRangeResponse),
    /// To a nested txn.
    Txn(TxnResponse),
}

/// A transaction (etcd's `TxnRequest`): if every compare holds, the
/// success operations run, otherwise the failure ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnRequest {
    /// The conditions (all must hold).
    pub compare: Vec<Compare>,
    /// Run when they hold.
    pub success: Vec<RequestOp>,
    /// Run when one does not.
    pub failure: Vec<RequestOp>,
}

/// The answer to a txn (etcd's `TxnResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResponse {
    /// Whether the compares held.
    pub succeeded: bool,
    /// One response per operation of the branch taken, in order.
    pub responses: Vec<ResponseOp>,
    /// The store's revision after the txn (for a nested txn: as seen
    /// inside the enclosing txn after it).
    pub revision: i64,
}

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A key was set.
    Put,
    /// A key was deleted.
    Delete,
}

/// One change to one key (etcd's `mvccpb.Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key's new state; for a delete only `key` and `mod_revision`
    /// (the deletion's revision) are set, as in etcd.
    pub kv: KeyValue,
    /// The key's state before the change, if it existed.
    pub prev_kv: Option<KeyValue>,
}

/// A write's answer together with the events it produced, in revision
/// order (what the watch layer publishes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<R> {
    /// The answer to the request.
    pub response: R,
    /// The changes, in (main, sub) revision order; empty if nothing
    /// changed.
    pub events: Vec<Event>,
}
