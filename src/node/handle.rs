//! The embedding API: a cheap, cloneable handle on a running node.
//!
//! Owns: [`NodeHandle`], [`Consistency`], [`NodeStatus`]; the request
//! timeout; waiting for the node's tasks at shutdown.
//!
//! Guarantees: `put` and `delete` answer with the raft index once the entry
//! applied on this node (on a follower, raft forwards the proposal to the
//! leader and the answer still comes from the local apply); a
//! linearizable `get` reflects every write acknowledged before it was
//! called, on any node (ReadIndex); a serializable `get` reads this node's
//! state machine as it is. Every call ends within the request timeout,
//! with a typed error when it must; once the node stopped because of a
//! failure (a full disk, a failed fdatasync), every call fails with that
//! failure (`NodeError::Storage` naming the file and the OS error), not
//! with a bare `Stopped`.
//!
//! Membership calls answer with the change's raft index once it applied
//! here; `transfer_leader` answers once this node sees the new leader.
//!
//! May not touch: raft or the state machine directly; everything goes
//! through the actors' queues.

use super::apply_actor::{ApplyMsg, Query, QueryResult};
use super::bootstrap::BootPath;
use super::error::NodeError;
use super::raft_actor::{ClientRequest, Control, MembershipChange};
use crate::kv::KvCommand;
use crate::raft::StateRole;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How recent a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started (raft
    /// ReadIndex: the leader confirms its leadership, this node waits
    /// until it applied that far).
    Linearizable,
    /// This node's state as it is (may lag the leader).
    Serializable,
}

/// A node's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub id: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The commit index.
    pub commit: u64,
    /// The index the state machine stands at.
    pub applied: u64,
    /// The index of the newest snapshot in the in-memory log (0: none);
    /// entries up to `snapshot_index - snapshot_catchup_entries` are
    /// compacted away.
    pub snapshot_index: u64,
    /// The first index still in the in-memory log (a follower further
    /// behind is caught up by snapshot).
    pub first_index: u64,
    /// This node's role.
    pub role: StateRole,
    /// The voters.
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
}

/// How the node booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootReport {
    /// Which path boot took.
    pub path: BootPath,
    /// The snapshot the state machine was restored from (0: none).
    pub snapshot_index: u64,
    /// Entries read from the WAL after that snapshot (replayed).
    pub wal_entries_replayed: usize,
}

/// What a handle is made of (built by `Node::start`).
pub(crate) struct HandleParts {
    pub(crate) id: u64,
    pub(crate) requests: mpsc::Sender<ClientRequest>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    /// Weak, so that the apply actor ends when the raft actor does.
    pub(crate) apply: mpsc::WeakUnboundedSender<ApplyMsg>,
    pub(crate) applied: watch::Receiver<u64>,
    pub(crate) timeout: Duration,
    pub(crate) task: JoinHandle<Result<(), NodeError>>,
    pub(crate) boot_report: BootReport,
    /// The failure that stopped the node, once one did.
    pub(crate) failure: Arc<OnceLock<NodeError>>,
}

struct Shared {
    id: u64,
    requests: mpsc::Sender<ClientRequest>,
    control: mpsc::UnboundedSender<Control>,
    apply: mpsc::WeakUnboundedSender<ApplyMsg>,
    applied: watch::Receiver<u64>,
    timeout: Duration,
    task: Mutex<Option<JoinHandle<Result<(), NodeError>>>>,
    boot_report: BootReport,
    failure: Arc<OnceLock<NodeError>>,
}

/// A handle on a running node; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Waits for `work` within `timeout`; a node that stopped because of a
/// failure is reported as that failure, not as `Stopped`.
async fn answered<T>(
    timeout: Duration,
    failure: &OnceLock<NodeError>,
    work: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(Err(NodeError::Stopped)) => Err(failure.get().cloned().unwrap_or(NodeError::Stopped)),
        Ok(outcome) => outcome,
        Err(_) => Err(NodeError::Timeout),
    }
}

impl NodeHandle {
    pub(crate) fn new(parts: HandleParts) -> NodeHandle {
        NodeHandle {
            shared: Arc::new(Shared {
                id: parts.id,
                requests: parts.requests,
                control: parts.control,
                apply: parts.apply,
                applied: parts.applied,
                timeout: parts.timeout,
                task: Mutex::new(Some(parts.task)),
                boot_report: parts.boot_report,
                failure: parts.failure,
            }),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// How this node booted (path, snapshot, WAL entries replayed).
    pub fn boot_report(&self) -> BootReport {
        self.shared.boot_report
    }

    /// Sets `key` to `value`; returns the raft index once applied here.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<u64, NodeError> {
        self.propose(KvCommand::put(key, value)).await
    }

    /// Removes `key`; returns the raft index once applied here.
    pub async fn delete(&self, key: &[u8]) -> Result<u64, NodeError> {
        self.propose(KvCommand::delete(key)).await
    }

    async fn propose(&self, command: Vec<u8>) -> Result<u64, NodeError> {
        let (reply, answer) = oneshot::channel();
        let request = ClientRequest::Propose { command, reply };
        answered(
            self.shared.timeout,
            &self.shared.failure,
            self.submit(request, answer),
        )
        .await
    }

    /// Queues `request` for the raft actor and waits for the index it is
    /// answered with.
    async fn submit(
        &self,
        request: ClientRequest,
        answer: oneshot::Receiver<Result<u64, NodeError>>,
    ) -> Result<u64, NodeError> {
        self.shared
            .requests
            .send(request)
            .await
            .map_err(|_| NodeError::Stopped)?;
        answer.await.unwrap_or(Err(NodeError::Stopped))
    }

    /// The value of `key`.
    pub async fn get(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        match self.read(Query::Get(key.to_vec()), consistency).await? {
            QueryResult::Value(value) => Ok(value),
            _ => Err(NodeError::StateMachine(
                "a get answered with something else".to_string(),
            )),
        }
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub async fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
        let query = Query::ScanPrefix {
            prefix: prefix.to_vec(),
            limit,
        };
        match self.read(query, consistency).await? {
            QueryResult::Pairs(pairs) => Ok(pairs),
            _ => Err(NodeError::StateMachine(
                "a scan answered with something else".to_string(),
            )),
        }
    }

    /// The member directory as this node's state machine knows it: node id
    /// → peer address announced when it was added (empty when unknown,
    /// e.g. initial members or in-process nodes).
    pub async fn member_addresses(
        &self,
        consistency: Consistency,
    ) -> Result<BTreeMap<u64, String>, NodeError> {
        match self.read(Query::Members, consistency).await? {
            QueryResult::Members(members) => Ok(members),
            _ => Err(NodeError::StateMachine(
                "a member query answered with something else".to_string(),
            )),
        }
    }

    /// Adds voter `node_id`, reachable by peers at `peer_url` (may be
    /// empty for in-process nodes). Returns the change's index once it
    /// applied here. The new node is then started with
    /// `NewMember::Join`.
    pub async fn add_member(&self, node_id: u64, peer_url: &str) -> Result<u64, NodeError> {
        self.change_membership(MembershipChange::AddVoter {
            node_id,
            peer_url: peer_url.to_string(),
        })
        .await
    }

    /// Adds learner `node_id` (receives the log, does not vote).
    pub async fn add_learner(&self, node_id: u64, peer_url: &str) -> Result<u64, NodeError> {
        self.change_membership(MembershipChange::AddLearner {
            node_id,
            peer_url: peer_url.to_string(),
        })
        .await
    }

    /// Makes learner `node_id` a voter.
    pub async fn promote(&self, node_id: u64) -> Result<u64, NodeError> {
        self.change_membership(MembershipChange::Promote { node_id })
            .await
    }

    /// Removes voter or learner `node_id`.
    pub async fn remove_member(&self, node_id: u64) -> Result<u64, NodeError> {
        self.change_membership(MembershipChange::Remove { node_id })
            .await
    }

    async fn change_membership(&self, change: MembershipChange) -> Result<u64, NodeError> {
        let (reply, answer) = oneshot::channel();
        let request = ClientRequest::ChangeMembership { change, reply };
        let mut applied = self.shared.applied.clone();
        answered(self.shared.timeout, &self.shared.failure, async {
            let index = self.submit(request, answer).await?;
            applied
                .wait_for(|&a| a >= index)
                .await
                .map_err(|_| NodeError::Stopped)?;
            Ok(index)
        })
        .await
    }

    /// Asks the leader to hand leadership to voter `to`; returns once this
    /// node sees `to` as leader (or times out: the transfer may have been
    /// refused, e.g. `to` was too far behind).
    pub async fn transfer_leader(&self, to: u64) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        answered(self.shared.timeout, &self.shared.failure, async {
            self.shared
                .control
                .send(Control::TransferLeader { to, reply })
                .map_err(|_| NodeError::Stopped)?;
            answer.await.unwrap_or(Err(NodeError::Stopped))
        })
        .await
    }

    async fn read(&self, query: Query, consistency: Consistency) -> Result<QueryResult, NodeError> {
        let (reply, answer) = oneshot::channel();
        answered(self.shared.timeout, &self.shared.failure, async {
            match consistency {
                Consistency::Linearizable => self
                    .shared
                    .requests
                    .send(ClientRequest::Read { query, reply })
                    .await
                    .map_err(|_| NodeError::Stopped)?,
                Consistency::Serializable => {
                    let apply = self.shared.apply.upgrade().ok_or(NodeError::Stopped)?;
                    apply
                        .send(ApplyMsg::Read {
                            index: 0,
                            query,
                            reply,
                        })
                        .map_err(|_| NodeError::Stopped)?;
                }
            }
            answer.await.unwrap_or(Err(NodeError::Stopped))
        })
        .await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        let (reply, answer) = oneshot::channel();
        answered(self.shared.timeout, &self.shared.failure, async {
            self.shared
                .control
                .send(Control::Status(reply))
                .map_err(|_| NodeError::Stopped)?;
            answer.await.map_err(|_| NodeError::Stopped)
        })
        .await
    }

    /// The index this node's state machine stands at.
    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Waits until this node applied `index` (within the request timeout).
    pub async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        let mut applied = self.shared.applied.clone();
        answered(self.shared.timeout, &self.shared.failure, async {
            applied
                .wait_for(|&a| a >= index)
                .await
                .map(|_| ())
                .map_err(|_| NodeError::Stopped)
        })
        .await
    }

    /// Stops the node as a crash would, for tests: the raft actor stops at
    /// once without releasing anything in flight (no held message is sent,
    /// no waiting caller is answered, in-memory state is dropped). The
    /// persistence actor still finishes the writes already queued to it,
    /// as a kernel would with writes already issued; whatever was
    /// acknowledged to a caller was durable before.
    pub async fn crash(&self) -> Result<(), NodeError> {
        let _ = self.shared.control.send(Control::Crash);
        self.join().await
    }

    /// Stops the node gracefully: no new requests, the Readies in flight
    /// are made durable and released, then the actors and the persistence
    /// actor stop (the WAL is synced and closed). Returns the failure that
    /// stopped the node, if one did. Later calls (from any clone) return
    /// `Ok` at once.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        // Refused only when the raft actor already ended.
        let _ = self.shared.control.send(Control::Shutdown);
        self.join().await
    }

    async fn join(&self) -> Result<(), NodeError> {
        let task = self.shared.task.lock().await.take();
        match task {
            Some(task) => task.await.unwrap_or(Err(NodeError::Stopped)),
            None => Ok(()),
        }
    }
}
