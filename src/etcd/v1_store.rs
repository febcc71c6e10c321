//! The HTTP `/v1` key-value API over the MVCC store, so that
//! `ringraft serve` keeps one store for both of its APIs: a `/v1` put is
//! etcd's Put, a delete its DeleteRange of one key, a get and a scan its
//! Range (a scan of the prefix's range, from `start`).
//!
//! Owns: the [`V1Store`] implementation for [`EtcdStore`] and the prefix
//! arithmetic it needs. Guarantees: what `/v1` promises (see
//! `crate::v1_store`): a write is one MVCC revision, visible to etcd's
//! clients at once, and a write by etcd's clients is visible to `/v1`;
//! a page holds at most `limit` pairs and `max_bytes` of keys and values,
//! at least one pair, and `next` is the first key it left out.
//! May not touch: HTTP, the store's rules.

use super::pb::etcdserverpb as pb;
use super::store::{
    EtcdApplied, EtcdCommand, EtcdCommandError, EtcdQuery, EtcdQueryResult, EtcdStore, Operation,
};
use crate::kv::ScanPage;
use crate::mvcc::{self, RangeRequest};
use crate::node::{Consistency, NodeError, NodeHandle};
use crate::v1_store::{V1Error, V1Store};
use bytes::Bytes;

/// The end of the range of keys starting with `prefix`, etcd's way: the
/// prefix with its last byte below 0xFF incremented and what follows
/// dropped; `[0]` (no end) when every byte is 0xFF or the prefix is empty.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

async fn propose(node: &NodeHandle<EtcdStore>, operation: Operation) -> Result<u64, V1Error> {
    let command = EtcdCommand {
        operation: Some(operation),
    };
    let EtcdApplied { index, outcome } = node.propose(command).await?;
    match outcome {
        Ok(_) => Ok(index),
        Err(EtcdCommandError::Mvcc(error)) => Err(V1Error::Refused(error.to_string())),
        Err(EtcdCommandError::Invalid(message)) => Err(V1Error::Refused(message)),
    }
}

async fn range(
    node: &NodeHandle<EtcdStore>,
    request: RangeRequest,
    consistency: Consistency,
) -> Result<mvcc::RangeResponse, V1Error> {
    match node.read(EtcdQuery::Range(request), consistency).await? {
        EtcdQueryResult::Range(Ok(answer)) => Ok(answer),
        EtcdQueryResult::Range(Err(error)) => Err(V1Error::Refused(error.to_string())),
        _ => Err(V1Error::Node(NodeError::RaftLog(
            "the store answered a range with another kind".into(),
        ))),
    }
}

/// Cuts `kvs` (in key order, possibly one more than `limit`) into a page.
fn page_of(kvs: Vec<mvcc::KeyValue>, limit: usize, max_bytes: usize) -> ScanPage {
    let mut pairs = Vec::with_capacity(kvs.len().min(limit));
    let mut bytes = 0usize;
    let mut next = None;
    for kv in kvs {
        let size = kv.key.len().saturating_add(kv.value.len());
        let full = pairs.len() >= limit || (!pairs.is_empty() && bytes + size > max_bytes);
        if full {
            next = Some(kv.key.to_vec());
            break;
        }
        bytes = bytes.saturating_add(size);
        pairs.push((kv.key.to_vec(), kv.value.to_vec()));
    }
    ScanPage { pairs, next }
}

impl V1Store for EtcdStore {
    async fn put(node: &NodeHandle<EtcdStore>, key: &[u8], value: Bytes) -> Result<u64, V1Error> {
        let put = pb::PutRequest {
            key: Bytes::copy_from_slice(key),
            value,
            ..pb::PutRequest::default()
        };
        propose(node, Operation::Put(put)).await
    }

    async fn delete(node: &NodeHandle<EtcdStore>, key: &[u8]) -> Result<u64, V1Error> {
        let delete = pb::DeleteRangeRequest {
            key: Bytes::copy_from_slice(key),
            ..pb::DeleteRangeRequest::default()
        };
        propose(node, Operation::DeleteRange(delete)).await
    }

    async fn get(
        node: &NodeHandle<EtcdStore>,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Bytes>, V1Error> {
        let request = RangeRequest::key(Bytes::copy_from_slice(key));
        let answer = range(node, request, consistency).await?;
        Ok(answer.kvs.into_iter().next().map(|kv| kv.value))
    }

    async fn scan_page(
        node: &NodeHandle<EtcdStore>,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
        max_bytes: usize,
        consistency: Consistency,
    ) -> Result<ScanPage, V1Error> {
        let limit = limit.max(1);
        let first = if start > prefix { start } else { prefix };
        // An empty first key would read as "this key only"; no key is
        // empty, so b"\0" starts at the first key there is.
        let first = if first.is_empty() { &[0u8][..] } else { first };
        let mut request = RangeRequest::range(
            Bytes::copy_from_slice(first),
            Bytes::from(prefix_range_end(prefix)),
        );
        // One more than the page, to know where the next one starts.
        request.limit = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let answer = range(node, request, consistency).await?;
        Ok(page_of(answer.kvs, limit, max_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_ends_are_etcds() {
        assert_eq!(prefix_range_end(b"abc"), b"abd");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }

    fn kv(key: &str, value_len: usize) -> mvcc::KeyValue {
        mvcc::KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from(vec![b'v'; value_len]),
            ..mvcc::KeyValue::default()
        }
    }

    #[test]
    fn pages_are_cut_by_limit_and_bytes_and_name_the_next_key() {
        let page = page_of(vec![kv("a", 1), kv("b", 1), kv("c", 1)], 2, 1000);
        assert_eq!(page.pairs.len(), 2);
        assert_eq!(page.next.as_deref(), Some(&b"c"[..]));
        let page = page_of(vec![kv("a", 10), kv("b", 10)], 5, 15);
        assert_eq!(page.pairs.len(), 1);
        assert_eq!(page.next.as_deref(), Some(&b"b"[..]));
        // A first pair larger than the cap comes alone.
        let page = page_of(vec![kv("a", 100), kv("b", 1)], 5, 10);
        assert_eq!(page.pairs.len(), 1);
        assert_eq!(page.next.as_deref(), Some(&b"b"[..]));
        let page = page_of(vec![kv("a", 1)], 5, 10);
        assert_eq!(page.next, None);
    }
}
