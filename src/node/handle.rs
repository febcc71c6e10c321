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
//! with a typed error when it must.
//!
//! May not touch: raft or the state machine directly; everything goes
//! through the actors' queues.
//! TODO (later slices): `add_member`, `add_learner`, `promote`,
//! `remove_member`, `transfer_leader`.

use super::apply_actor::{ApplyMsg, Query, QueryResult};
use super::error::NodeError;
use super::raft_actor::{ClientRequest, Control};
use crate::kv::KvCommand;
use crate::raft::StateRole;
use std::future::Future;
use std::sync::Arc;
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
    /// This node's role.
    pub role: StateRole,
    /// The voters.
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
}

struct Shared {
    id: u64,
    requests: mpsc::Sender<ClientRequest>,
    control: mpsc::UnboundedSender<Control>,
    /// Weak, so that the apply actor ends when the raft actor does.
    apply: mpsc::WeakUnboundedSender<ApplyMsg>,
    applied: watch::Receiver<u64>,
    timeout: Duration,
    task: Mutex<Option<JoinHandle<Result<(), NodeError>>>>,
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

/// Waits for `reply` within `timeout`.
async fn answered<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(NodeError::Timeout))
}

impl NodeHandle {
    pub(crate) fn new(
        id: u64,
        requests: mpsc::Sender<ClientRequest>,
        control: mpsc::UnboundedSender<Control>,
        apply: mpsc::WeakUnboundedSender<ApplyMsg>,
        applied: watch::Receiver<u64>,
        timeout: Duration,
        task: JoinHandle<Result<(), NodeError>>,
    ) -> NodeHandle {
        NodeHandle {
            shared: Arc::new(Shared {
                id,
                requests,
                control,
                apply,
                applied,
                timeout,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.shared.id
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
        answered(self.shared.timeout, async {
            self.shared
                .requests
                .send(request)
                .await
                .map_err(|_| NodeError::Stopped)?;
            answer.await.unwrap_or(Err(NodeError::Stopped))
        })
        .await
    }

    /// The value of `key`.
    pub async fn get(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        match self.read(Query::Get(key.to_vec()), consistency).await? {
            QueryResult::Value(value) => Ok(value),
            QueryResult::Pairs(_) => Err(NodeError::StateMachine(
                "a get answered with pairs".to_string(),
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
            QueryResult::Value(_) => Err(NodeError::StateMachine(
                "a scan answered with a value".to_string(),
            )),
        }
    }

    async fn read(&self, query: Query, consistency: Consistency) -> Result<QueryResult, NodeError> {
        let (reply, answer) = oneshot::channel();
        answered(self.shared.timeout, async {
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
        self.shared
            .control
            .send(Control::Status(reply))
            .map_err(|_| NodeError::Stopped)?;
        answered(self.shared.timeout, async {
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
        answered(self.shared.timeout, async {
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
