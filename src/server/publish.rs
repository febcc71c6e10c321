//! A member publishes its client URL through the log, as etcd's members
//! publish their attributes, so that every member can answer etcd's
//! `MemberList` with every member's client URLs (`etcdctl --cluster`, and
//! clients that sync their endpoints from the member list, need them).
//!
//! Owns: the publishing task of one `ringraft serve` process.
//! Guarantees: the task ends once this node's applied member directory
//! shows the URL, or when the node stops; until then it publishes again
//! after each [`RETRY`] (a proposal made while there is no leader is
//! dropped, so only reading the outcome back says it took). Publishing the
//! same URL twice is harmless: the record only sets it.
//! May not touch: how the record is applied (the node's applier).

use crate::etcd::EtcdStore;
use crate::node::{Consistency, NodeError, NodeHandle};
use std::time::Duration;

/// How long to wait for a published record to show before publishing
/// again.
pub const RETRY: Duration = Duration::from_secs(1);

/// Spawns the task publishing `client_url` for `node`.
pub fn spawn(node: NodeHandle<EtcdStore>, client_url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { publish_until_shown(&node, &client_url).await })
}

async fn publish_until_shown(node: &NodeHandle<EtcdStore>, client_url: &str) {
    loop {
        match node.member_client_urls(Consistency::Serializable).await {
            Ok(urls) if urls.get(&node.id()).map(String::as_str) == Some(client_url) => {
                tracing::info!(client_url, "client URL published");
                return;
            }
            Ok(_) => {}
            Err(NodeError::Stopped) => return,
            Err(error) if node.failure().is_some() => {
                tracing::debug!(%error, "node stopped; client URL not published");
                return;
            }
            Err(error) => tracing::debug!(%error, "member client URLs unreadable; retrying"),
        }
        match node.publish_client_url(client_url).await {
            Ok(()) => {}
            Err(NodeError::Stopped) => return,
            Err(error) => tracing::debug!(%error, "client URL not queued; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}
