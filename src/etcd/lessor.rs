//! The lessor: the task that expires leases whose TTL ran out.
//!
//! Owns: deciding when to propose a `LeaseExpire`. Guarantees: only the
//! leader proposes (a follower's task only looks at its role), every
//! [`CHECK_INTERVAL`], one expiry per lease past this member's deadline,
//! naming the renewal index the deadline came from, so that the store
//! ignores it if a renewal was applied in between (see `super::store`).
//! A lease is therefore revoked no earlier than its TTL after the last
//! renewal this member applied, and about [`CHECK_INTERVAL`] plus a
//! commit later. A failed proposal (no leader, a timeout) is logged and
//! tried again at the next check, since the deadline stays until an
//! expiry or revocation applies.
//!
//! There is no grace period for a new leader: it already holds deadlines
//! set as it applied every renewal (every member sets them), and a
//! renewal committed before its expiry wins by the index check, so
//! expiring at once is as safe as on the old leader. May not touch: the
//! store's rules (an expiry is an ordinary command).

use super::leases::LeaseDeadlines;
use super::store::{EtcdCommand, EtcdResponse, EtcdStore, LeaseExpire, Operation};
use crate::node::NodeHandle;
use crate::raft::StateRole;
use std::time::{Duration, Instant};

/// How often the leader looks for expired leases (etcd checks every
/// 500 ms too).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Starts the lessor of `node`, whose store sets `deadlines`; it ends when
/// the node stops.
pub fn spawn(
    node: NodeHandle<EtcdStore>,
    deadlines: LeaseDeadlines,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = node.stopped() => return,
            }
            let expired = deadlines.expired(Instant::now());
            if expired.is_empty() {
                continue;
            }
            let leads = matches!(node.status().await, Ok(s) if s.role == StateRole::Leader);
            if !leads {
                continue;
            }
            for (id, renewed_at_index) in expired {
                expire(&node, id, renewed_at_index).await;
            }
        }
    })
}

async fn expire(node: &NodeHandle<EtcdStore>, id: i64, renewed_at_index: u64) {
    let command = EtcdCommand {
        operation: Some(Operation::LeaseExpire(LeaseExpire {
            id,
            renewed_at_index,
        })),
    };
    match node.propose(command).await {
        Ok(applied) => match applied.outcome {
            Ok(EtcdResponse::LeaseRevoked(revoked)) => {
                tracing::info!(
                    node = node.id(),
                    lease = id,
                    keys = revoked.deleted,
                    "lease expired"
                );
            }
            Ok(_) => {
                tracing::debug!(
                    node = node.id(),
                    lease = id,
                    "lease renewed before its expiry"
                );
            }
            Err(reason) => {
                tracing::warn!(node = node.id(), lease = id, %reason, "lease expiry refused");
            }
        },
        Err(reason) => {
            tracing::warn!(node = node.id(), lease = id, %reason, "lease expiry failed; retrying at the next check");
        }
    }
}
