//! The write operations inside a write transaction (standalone or in a
//! txn): what a put and a delete range do once the request passed its
//! checks, and their responses (revision as the transaction sees it after
//! the operation, as etcd's sub-responses carry it).

use super::error::MvccError;
use super::span::KeySpan;
use super::types::{DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse};
use super::write::Writer;
use bytes::Bytes;

/// Applies a put. Fails only with `KeyNotFound` for `ignore_value` /
/// `ignore_lease` on a missing key (the caller aborts the transaction).
pub(crate) fn put(writer: &mut Writer<'_>, request: &PutRequest) -> Result<PutResponse, MvccError> {
    let prev = writer.live(&request.key);
    let needs_prev = request.ignore_value || request.ignore_lease;
    let existing = match (&prev, needs_prev) {
        (None, true) => return Err(MvccError::KeyNotFound),
        (prev, _) => prev.as_ref(),
    };
    let value = match existing {
        Some(p) if request.ignore_value => p.value.clone(),
        _ => request.value.clone(),
    };
    let lease = match existing {
        Some(p) if request.ignore_lease => p.lease,
        _ => request.lease,
    };
    writer.put(&request.key, value, lease);
    Ok(PutResponse {
        prev_kv: prev.filter(|_| request.prev_kv),
        revision: writer.view_revision(),
    })
}

/// Applies a deletion of every live key of the range, in key order.
pub(crate) fn delete_range(
    writer: &mut Writer<'_>,
    request: &DeleteRangeRequest,
) -> DeleteRangeResponse {
    let span = KeySpan::new(&request.key, &request.range_end);
    let keys: Vec<Bytes> = span
        .entries(&writer.store().keys)
        .filter(|(_, history)| history.latest().is_some_and(|r| !r.tombstone))
        .map(|(key, _)| key.clone())
        .collect();
    let mut prev_kvs = Vec::new();
    for key in &keys {
        match writer.live(key) {
            Some(prev) if request.prev_kv => prev_kvs.push(prev),
            _ => {}
        }
        writer.delete(key);
    }
    DeleteRangeResponse {
        deleted: keys.len() as i64,
        prev_kvs,
        revision: writer.view_revision(),
    }
}
