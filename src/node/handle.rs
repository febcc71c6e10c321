//! The embedding API: a cheap, cloneable handle on a running node.
//!
//! Owns: [`NodeHandle`], [`BootReport`]; encoding a proposal (on the
//! caller's task); the request timeout; waiting for the node's tasks at
//! shutdown.
//!
//! Guarantees: `propose` answers with the state machine's response once
//! the entry applied on this node (on a follower, raft forwards the
//! proposal to the leader and the answer still comes from the local
//! apply); a linearizable read reflects every write acknowledged before it
//! was called, on any node (ReadIndex); a lease read too, under the lease's
//! clock assumption (`NodeConfig::lease_reads`); a serializable read reads
//! this node's state machine as it is. Every call ends within the request
//! timeout, with a typed error when it must; once the node stopped because
//! of a failure (a full disk, a failed fdatasync, the state machine's
//! error, a panic in one of its actors), every call fails with that
//! failure, not with a bare `Stopped`, [`NodeHandle::failure`] names it, and
//! [`NodeHandle::stopped`] resolves with it (a program embedding the node
//! waits on it to stop too, as `ringraft serve` does).
//!
//! Membership calls answer with the change's raft index once it applied
//! here; a call made while an earlier change is still being applied on the
//! leader waits for it (retrying within the request timeout), then fails
//! with the retryable `MembershipChangePending`. `transfer_leader` answers
//! once this node sees the new leader.
//!
//! May not touch: raft or the state machine directly; everything goes
//! through the actors' queues.

use super::bootstrap::BootPath;
use super::envelope::{self, RequestId};
use super::error::NodeError;
use super::mailbox::{
    ApplyMsg, ClientRequest, Consistency, Control, MembershipChange, NodeStatus, Read, ReadReply,
};
use crate::kv::{KvCommand, KvQuery, KvQueryResult, KvStore};
use crate::state_machine::StateMachine;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long a membership call waits before asking again while an earlier
/// change is still being applied.
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(20);

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
pub(crate) struct HandleParts<S: StateMachine> {
    pub(crate) id: u64,
    pub(crate) requests: mpsc::Sender<ClientRequest<S>>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    /// Weak, so that the apply actor ends when the raft actor does.
    pub(crate) apply: mpsc::WeakUnboundedSender<ApplyMsg<S>>,
    pub(crate) applied: watch::Receiver<u64>,
    /// The raft term as of the last persisted HardState.
    pub(crate) term: Arc<AtomicU64>,
    pub(crate) timeout: Duration,
    pub(crate) task: JoinHandle<Result<(), NodeError>>,
    pub(crate) boot_report: BootReport,
    /// The failure that stopped the node, once one did.
    pub(crate) failure: Arc<OnceLock<NodeError>>,
    /// How the node ended, once it did.
    pub(crate) stopped: watch::Receiver<Option<Result<(), NodeError>>>,
}

struct Shared<S: StateMachine> {
    id: u64,
    requests: mpsc::Sender<ClientRequest<S>>,
    control: mpsc::UnboundedSender<Control>,
    apply: mpsc::WeakUnboundedSender<ApplyMsg<S>>,
    /// The sequence of this node's next proposal.
    next_seq: AtomicU64,
    applied: watch::Receiver<u64>,
    term: Arc<AtomicU64>,
    timeout: Duration,
    task: Mutex<Option<JoinHandle<Result<(), NodeError>>>>,
    boot_report: BootReport,
    failure: Arc<OnceLock<NodeError>>,
    stopped: watch::Receiver<Option<Result<(), NodeError>>>,
}

/// A handle on a running node over state machine `S`; cheap to clone,
/// `Send + Sync`.
pub struct NodeHandle<S: StateMachine> {
    shared: Arc<Shared<S>>,
}

impl<S: StateMachine> Clone for NodeHandle<S> {
    fn clone(&self) -> NodeHandle<S> {
        NodeHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: StateMachine> std::fmt::Debug for NodeHandle<S> {
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

impl<S: StateMachine> NodeHandle<S> {
    pub(crate) fn new(parts: HandleParts<S>) -> NodeHandle<S> {
        NodeHandle {
            shared: Arc::new(Shared {
                id: parts.id,
                requests: parts.requests,
                control: parts.control,
                apply: parts.apply,
                next_seq: AtomicU64::new(super::raft_actor::boot_sequence()),
                applied: parts.applied,
                term: parts.term,
                timeout: parts.timeout,
                task: Mutex::new(Some(parts.task)),
                boot_report: parts.boot_report,
                failure: parts.failure,
                stopped: parts.stopped,
            }),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The request timeout: every call answers within it, with
    /// [`NodeError::Timeout`] at the latest.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// How this node booted (path, snapshot, WAL entries replayed).
    pub fn boot_report(&self) -> BootReport {
        self.shared.boot_report
    }

    /// Proposes `command`; returns the state machine's response once the
    /// entry applied here. `Timeout` does not mean it failed: it may
    /// still apply.
    pub async fn propose(&self, command: S::Command) -> Result<S::Response, NodeError> {
        self.propose_encoded(64, |data| S::encode_command(&command, data))
            .await
    }

    /// Proposes the command that `encode` appends (about `capacity`
    /// bytes) to the proposal header.
    async fn propose_encoded(
        &self,
        capacity: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<S::Response, NodeError> {
        let id = RequestId {
            node_id: self.shared.id,
            seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        let mut data = envelope::proposal_header(id, capacity);
        encode(&mut data);
        let (reply, answer) = oneshot::channel();
        let request = ClientRequest::Propose { data, id, reply };
        answered(self.shared.timeout, &self.shared.failure, async {
            self.submit(request).await?;
            answer.await.unwrap_or(Err(NodeError::Stopped))
        })
        .await
    }

    /// Queues `request` for the raft actor.
    async fn submit(&self, request: ClientRequest<S>) -> Result<(), NodeError> {
        self.shared
            .requests
            .send(request)
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Answers `query` with the state machine as `consistency` asks.
    pub async fn read(
        &self,
        query: S::Query,
        consistency: Consistency,
    ) -> Result<S::QueryResult, NodeError> {
        self.read_node(|reply| Read::State { query, reply }, consistency)
            .await
    }

    /// The member directory as this node knows it: node id → peer address
    /// announced when it was added (empty when unknown, e.g. initial
    /// members or in-process nodes).
    pub async fn member_addresses(
        &self,
        consistency: Consistency,
    ) -> Result<BTreeMap<u64, String>, NodeError> {
        self.read_node(Read::Members, consistency).await
    }

    /// The client URLs members published ([`NodeHandle::publish_client_url`]):
    /// node id → client URL. A member that never published is absent.
    pub async fn member_client_urls(
        &self,
        consistency: Consistency,
    ) -> Result<BTreeMap<u64, String>, NodeError> {
        self.read_node(Read::ClientUrls, consistency).await
    }

    /// Publishes this node's client URL through the log, for every
    /// member's directory (as etcd's members publish their attributes).
    /// Returns once queued, not once applied: a proposal made while there
    /// is no leader is dropped, so the caller reads
    /// [`NodeHandle::member_client_urls`] back and publishes again until
    /// it shows.
    pub async fn publish_client_url(&self, client_url: &str) -> Result<(), NodeError> {
        let data = envelope::attributes_record(&envelope::MemberAttributes {
            node_id: self.shared.id,
            client_url: client_url.to_string(),
        });
        answered(self.shared.timeout, &self.shared.failure, async {
            self.submit(ClientRequest::Publish { data }).await
        })
        .await
    }

    /// A point-in-time view of the state machine as `consistency` asks,
    /// to be written out (with [`crate::WriteSnapshot::write_snapshot`],
    /// on a blocking thread) as a backup: the state alone, in the format
    /// [`StateMachine::restore`] reads, without the node's own framing.
    pub async fn backup(&self, consistency: Consistency) -> Result<S::Snapshot, NodeError> {
        self.read_node(Read::Backup, consistency).await
    }

    /// Sends the read `make` builds around its reply channel, as
    /// `consistency` asks, and waits for the answer within the timeout.
    async fn read_node<T>(
        &self,
        make: impl FnOnce(ReadReply<T>) -> Read<S>,
        consistency: Consistency,
    ) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        answered(self.shared.timeout, &self.shared.failure, async {
            self.send_read(make(reply), consistency).await?;
            answer.await.unwrap_or(Err(NodeError::Stopped))
        })
        .await
    }

    async fn send_read(&self, read: Read<S>, consistency: Consistency) -> Result<(), NodeError> {
        let lease = match consistency {
            Consistency::Serializable => {
                let apply = self.shared.apply.upgrade().ok_or(NodeError::Stopped)?;
                return apply
                    .send(ApplyMsg::Read { index: 0, read })
                    .map_err(|_| NodeError::Stopped);
            }
            Consistency::Linearizable => false,
            Consistency::Lease => true,
        };
        self.submit(ClientRequest::Read { read, lease }).await
    }

    /// Adds voter `node_id`, reachable by peers at `peer_url` (may be
    /// empty for in-process nodes). Returns the change's index once it
    /// applied here. The new node is then started with
    /// `NewMember::Join`.
    pub async fn add_member(&self, node_id: u64, peer_url: &str) -> Result<u64, NodeError> {
        self.change_membership(vec![MembershipChange::AddVoter {
            node_id,
            peer_url: peer_url.to_string(),
        }])
        .await
    }

    /// Adds learner `node_id` (receives the log, does not vote).
    pub async fn add_learner(&self, node_id: u64, peer_url: &str) -> Result<u64, NodeError> {
        self.change_membership(vec![MembershipChange::AddLearner {
            node_id,
            peer_url: peer_url.to_string(),
        }])
        .await
    }

    /// Makes learner `node_id` a voter.
    pub async fn promote(&self, node_id: u64) -> Result<u64, NodeError> {
        self.change_membership(vec![MembershipChange::Promote { node_id }])
            .await
    }

    /// Removes voter or learner `node_id`.
    pub async fn remove_member(&self, node_id: u64) -> Result<u64, NodeError> {
        self.change_membership(vec![MembershipChange::Remove { node_id }])
            .await
    }

    /// Announces that member `node_id` is now reachable by peers at
    /// `peer_url` (etcd's member update): every member's transport and
    /// member directory take the new address as the change applies.
    pub async fn update_peer_url(&self, node_id: u64, peer_url: &str) -> Result<u64, NodeError> {
        self.change_membership(vec![MembershipChange::UpdatePeerUrl {
            node_id,
            peer_url: peer_url.to_string(),
        }])
        .await
    }

    /// Applies `changes` together: one change as a simple configuration
    /// change, several through a joint configuration (joint consensus,
    /// left automatically). Returns the index of the entry that completed
    /// the change once it applied here (for a joint change, the one that
    /// left the joint configuration).
    pub async fn change_membership(
        &self,
        changes: Vec<MembershipChange>,
    ) -> Result<u64, NodeError> {
        let deadline = tokio::time::Instant::now() + self.shared.timeout;
        let mut applied = self.shared.applied.clone();
        answered(self.shared.timeout, &self.shared.failure, async {
            let index = loop {
                let (reply, answer) = oneshot::channel();
                let changes = changes.clone();
                self.submit(ClientRequest::ChangeMembership { changes, reply })
                    .await?;
                match answer.await.unwrap_or(Err(NodeError::Stopped)) {
                    Err(NodeError::MembershipChangePending)
                        if tokio::time::Instant::now() + MEMBERSHIP_RETRY < deadline =>
                    {
                        tokio::time::sleep(MEMBERSHIP_RETRY).await;
                    }
                    outcome => break outcome?,
                }
            };
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

    /// The raft term this node last persisted (its HardState's), read
    /// without asking the raft actor: what a response header reports, on
    /// every request, without a round trip.
    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Relaxed)
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

    /// The failure that stopped this node (a storage failure, a panic in
    /// one of its actors, the state machine's error), once one did; `None`
    /// while it runs and after a requested stop.
    pub fn failure(&self) -> Option<NodeError> {
        self.shared.failure.get().cloned()
    }

    /// Resolves once the node has stopped (its actors ended, the WAL
    /// closed, the data directory unlocked), with why: `Ok` for a stop
    /// asked for ([`shutdown`](Self::shutdown), [`crash`](Self::crash)),
    /// the failure otherwise. A program embedding the node waits on it to
    /// stop too, as `ringraft serve` does, rather than keep serving
    /// errors. Any number of callers may wait.
    pub async fn stopped(&self) -> Result<(), NodeError> {
        let mut stopped = self.shared.stopped.clone();
        match stopped.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(NodeError::Stopped)),
            // The watching task was dropped with its runtime.
            Err(_) => Err(self.failure().unwrap_or(NodeError::Stopped)),
        }
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

/// Conveniences for the built-in key-value store.
impl NodeHandle<KvStore> {
    /// Sets `key` to `value`; returns the raft index once applied here.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<u64, NodeError> {
        // Encoded straight from the slices: the bytes of
        // `KvCommand::put(key, value)` without copying key and value twice.
        let capacity = key.len() + value.len() + 16;
        let proposed =
            self.propose_encoded(capacity, |data| crate::kv::encode_put(key, value, data));
        Ok(proposed.await?.index)
    }

    /// Removes `key`; returns the raft index once applied here.
    pub async fn delete(&self, key: &[u8]) -> Result<u64, NodeError> {
        Ok(self.propose(KvCommand::delete(key)).await?.index)
    }

    /// The value of `key`.
    pub async fn get(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        match self.read(KvQuery::Get(key.to_vec()), consistency).await? {
            KvQueryResult::Value(value) => Ok(value),
            KvQueryResult::Pairs(_) => {
                unreachable!("the key-value store answers a get with a value")
            }
        }
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub async fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, NodeError> {
        let page = self
            .scan_page(prefix, &[], limit, usize::MAX, consistency)
            .await?;
        Ok(page.pairs)
    }

    /// One page of the pairs whose key starts with `prefix`, from the
    /// first at or after `start`: at most `limit` pairs and `max_bytes` of
    /// keys and values (at least one pair); `next` continues the scan
    /// (see [`KvStore::scan`]).
    pub async fn scan_page(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
        max_bytes: usize,
        consistency: Consistency,
    ) -> Result<crate::kv::ScanPage, NodeError> {
        let query = KvQuery::ScanPrefix {
            prefix: prefix.to_vec(),
            start: start.to_vec(),
            limit,
            max_bytes,
        };
        match self.read(query, consistency).await? {
            KvQueryResult::Pairs(page) => Ok(page),
            KvQueryResult::Value(_) => {
                unreachable!("the key-value store answers a scan with pairs")
            }
        }
    }
}
