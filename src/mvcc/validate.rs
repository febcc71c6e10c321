//! The checks etcd makes on a request's shape before it is proposed
//! (`v3rpc/key.go`): no state involved, so the gRPC layer can run them
//! before raft, and the store runs them again on apply (every member
//! alike). Includes the txn rule that no key is written twice.

use super::error::MvccError;
use super::span::KeySpan;
use super::types::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use std::collections::BTreeSet;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

fn key_given(key: &[u8]) -> Result<(), MvccError> {
    if key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// A read needs a key.
pub fn range(request: &RangeRequest) -> Result<(), MvccError> {
    key_given(&request.key)
}

/// A put needs a key, and no value with `ignore_value` nor lease with
/// `ignore_lease`.
pub fn put(request: &PutRequest) -> Result<(), MvccError> {
    key_given(&request.key)?;
    if request.ignore_value && !request.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// A deletion needs a key.
pub fn delete_range(request: &DeleteRangeRequest) -> Result<(), MvccError> {
    key_given(&request.key)
}

/// Every check of a txn, in etcd's order: at most `max_ops` compares and
/// operations per branch (nested txns share what is left), keys given,
/// put flags consistent; then no key written twice in either branch.
pub fn txn(request: &TxnRequest, max_ops: usize) -> Result<(), MvccError> {
    shape(request, max_ops)?;
    distinct_writes(&request.success)?;
    distinct_writes(&request.failure)?;
    Ok(())
}

fn shape(request: &TxnRequest, max_ops: usize) -> Result<(), MvccError> {
    let ops = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if ops > max_ops {
        return Err(MvccError::TooManyOps);
    }
    for compare in &request.compare {
        key_given(&compare.key)?;
    }
    for op in request.success.iter().chain(&request.failure) {
        match op {
            RequestOp::Range(r) => range(r)?,
            RequestOp::Put(p) => put(p)?,
            RequestOp::DeleteRange(d) => delete_range(d)?,
            RequestOp::Txn(t) => shape(t, max_ops - ops)?,
        }
    }
    Ok(())
}

fn distinct_writes(ops: &[RequestOp]) -> Result<(), MvccError> {
    writes(ops).map(|_| ())
}

/// The keys a branch puts and the intervals it deletes, refusing a key put
/// twice or put inside a deleted interval (etcd's `checkIntervals`). A
/// nested txn counts with both its branches, except that the same key put
/// in its success and its failure branch is fine (only one runs).
/// Overlapping deletions are allowed, as in etcd.
fn writes(ops: &[RequestOp]) -> Result<(BTreeSet<&[u8]>, Vec<KeySpan<'_>>), MvccError> {
    let mut dels: Vec<KeySpan<'_>> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(KeySpan::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    let deleted = |dels: &[KeySpan<'_>], key: &[u8]| dels.iter().any(|d| d.contains(key));
    for op in ops {
        let RequestOp::Txn(nested) = op else {
            continue;
        };
        let (puts_then, dels_then) = writes(&nested.success)?;
        let (puts_else, dels_else) = writes(&nested.failure)?;
        for &key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        for &key in &puts_else {
            let clash = puts.contains(key) && !puts_then.contains(key);
            if clash || deleted(&dels, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else {
            continue;
        };
        if !puts.insert(&p.key[..]) || deleted(&dels, &p.key) {
            return Err(MvccError::DuplicateKey);
        }
    }
    Ok((puts, dels))
}
