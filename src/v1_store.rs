//! What the HTTP `/v1` key-value endpoints need from a node's state
//! machine, so that one HTTP layer serves the plain [`KvStore`] (embedded
//! users, tests) and the MVCC store behind etcd's API (`ringraft serve`).
//!
//! Owns: the [`V1Store`] trait and its implementation for [`KvStore`]
//! (the implementation for the MVCC store is `crate::etcd::v1_store`).
//! Guarantees (every implementation): a put or delete answers once the
//! command applied on this node, with its raft index; a get and a scan
//! read at the asked consistency; a scan page follows
//! [`KvStore::scan`]'s rules (at least one pair, `next` is the first key
//! left out). May not touch: HTTP (status codes, encodings), raft.

use crate::kv::{KvStore, ScanPage};
use crate::node::{Consistency, NodeError, NodeHandle};
use crate::state_machine::StateMachine;
use bytes::Bytes;
use std::future::Future;

/// Why a `/v1` operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum V1Error {
    /// The node could not do it.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The store refused the command (applied as a failure on every
    /// member alike; nothing changed).
    #[error("the store refused the command: {0}")]
    Refused(String),
}

/// A state machine the `/v1` key-value endpoints can serve.
pub trait V1Store: StateMachine + Sized {
    /// Sets `key` to `value`; the raft index once applied here.
    fn put(
        node: &NodeHandle<Self>,
        key: &[u8],
        value: Bytes,
    ) -> impl Future<Output = Result<u64, V1Error>> + Send;

    /// Removes `key` (nothing to remove is fine); the raft index once
    /// applied here.
    fn delete(
        node: &NodeHandle<Self>,
        key: &[u8],
    ) -> impl Future<Output = Result<u64, V1Error>> + Send;

    /// The value of `key`.
    fn get(
        node: &NodeHandle<Self>,
        key: &[u8],
        consistency: Consistency,
    ) -> impl Future<Output = Result<Option<Bytes>, V1Error>> + Send;

    /// One page of the pairs under `prefix` from the first key at or after
    /// `start`: at most `limit` pairs and `max_bytes` of keys and values
    /// (at least one pair).
    fn scan_page(
        node: &NodeHandle<Self>,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
        max_bytes: usize,
        consistency: Consistency,
    ) -> impl Future<Output = Result<ScanPage, V1Error>> + Send;
}

impl V1Store for KvStore {
    async fn put(node: &NodeHandle<KvStore>, key: &[u8], value: Bytes) -> Result<u64, V1Error> {
        Ok(node.put(key, &value).await?)
    }

    async fn delete(node: &NodeHandle<KvStore>, key: &[u8]) -> Result<u64, V1Error> {
        Ok(node.delete(key).await?)
    }

    async fn get(
        node: &NodeHandle<KvStore>,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Bytes>, V1Error> {
        Ok(node.get(key, consistency).await?.map(Bytes::from))
    }

    async fn scan_page(
        node: &NodeHandle<KvStore>,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
        max_bytes: usize,
        consistency: Consistency,
    ) -> Result<ScanPage, V1Error> {
        Ok(node
            .scan_page(prefix, start, limit, max_bytes, consistency)
            .await?)
    }
}
