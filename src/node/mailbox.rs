//! What the node's parts say to each other: the messages between the
//! handle, the raft actor and the apply actor, and the public values that
//! travel with them.
//!
//! Owns: [`ClientRequest`], [`Control`], [`ApplyMsg`], [`SnapshotData`],
//! the reply aliases, and the public [`MembershipChange`], [`NodeStatus`]
//! and [`Consistency`].
//! Guarantees: plain data; every request carries the channel its answer
//! goes to.
//! May not touch: behaviour (the actors own it).

use super::error::NodeError;
use crate::raft::StateRole;
use crate::raftpb::{Entry, Snapshot};
use crate::state_machine::StateMachine;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// How recent a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started (raft
    /// ReadIndex: the leader confirms its leadership with a heartbeat
    /// round, this node waits until it applied that far).
    Linearizable,
    /// Like `Linearizable`, but the leader answers from its lease, without
    /// a heartbeat round. Needs `NodeConfig::lease_reads` on every member
    /// and assumes bounded clock drift (see `NodeConfig::lease_reads`); on
    /// a follower, or while the lease is not established, it is a
    /// `Linearizable` read.
    Lease,
    /// This node's state as it is (may lag the leader).
    Serializable,
}

/// A change of membership a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter reachable by peers at `peer_url` (may be empty for
    /// in-process nodes).
    AddVoter {
        /// The new member.
        node_id: u64,
        /// Its peer address.
        peer_url: String,
    },
    /// Add a learner (receives the log, does not vote).
    AddLearner {
        /// The new member.
        node_id: u64,
        /// Its peer address.
        peer_url: String,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner.
        node_id: u64,
    },
    /// Remove a voter or learner.
    Remove {
        /// The member.
        node_id: u64,
    },
    /// Announce that a voter or learner is now reachable by peers at
    /// `peer_url` (its configuration does not change).
    UpdatePeerUrl {
        /// The member.
        node_id: u64,
        /// Its new peer address.
        peer_url: String,
    },
}

impl MembershipChange {
    /// The member the change is about.
    pub fn node_id(&self) -> u64 {
        match self {
            MembershipChange::AddVoter { node_id, .. }
            | MembershipChange::AddLearner { node_id, .. }
            | MembershipChange::Promote { node_id }
            | MembershipChange::Remove { node_id }
            | MembershipChange::UpdatePeerUrl { node_id, .. } => *node_id,
        }
    }
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
    /// The voters (the incoming ones during a joint change).
    pub voters: Vec<u64>,
    /// The outgoing voters during a joint change (empty otherwise).
    pub voters_outgoing: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
}

/// Where a proposal's outcome goes.
pub(crate) type ProposalReply<R> = oneshot::Sender<Result<R, NodeError>>;
/// Where a membership change's outcome goes: the index it applied at.
pub(crate) type IndexReply = oneshot::Sender<Result<u64, NodeError>>;
/// Where a read's answer goes.
pub(crate) type ReadReply<R> = oneshot::Sender<Result<R, NodeError>>;
/// Where a leadership transfer's outcome goes.
pub(crate) type TransferReply = oneshot::Sender<Result<(), NodeError>>;

/// The raft core answers membership changes and transfers through the
/// callers' oneshots.
impl<T> super::raft_core::Reply<T> for oneshot::Sender<Result<T, NodeError>> {
    fn answer(self, outcome: Result<T, NodeError>) {
        let _ = self.send(outcome);
    }

    fn is_gone(&self) -> bool {
        self.is_closed()
    }
}

/// A read of the node: the state machine's, or the node's own member
/// directory.
pub(crate) enum Read<S: StateMachine> {
    /// A query of the state machine.
    State {
        query: S::Query,
        reply: ReadReply<S::QueryResult>,
    },
    /// The member directory: node id → peer address.
    Members(ReadReply<BTreeMap<u64, String>>),
    /// The members' published client URLs: node id → client URL.
    ClientUrls(ReadReply<BTreeMap<u64, String>>),
    /// A point-in-time view of the state machine, for a backup.
    Backup(ReadReply<S::Snapshot>),
}

impl<S: StateMachine> Read<S> {
    /// The caller gave up.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Read::State { reply, .. } => reply.is_closed(),
            Read::Members(reply) | Read::ClientUrls(reply) => reply.is_closed(),
            Read::Backup(reply) => reply.is_closed(),
        }
    }

    /// Answers the caller with `error`.
    pub(crate) fn fail(self, error: NodeError) {
        match self {
            Read::State { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Read::Members(reply) | Read::ClientUrls(reply) => {
                let _ = reply.send(Err(error));
            }
            Read::Backup(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// A client request that goes through raft.
pub(crate) enum ClientRequest<S: StateMachine> {
    /// Propose entry data (framed by `envelope`, carrying `id`); answered
    /// when it applies locally.
    Propose {
        data: Vec<u8>,
        /// The request id inside the data.
        id: super::envelope::RequestId,
        reply: ProposalReply<S::Response>,
    },
    /// Propose entry data nobody waits for (a member's attributes
    /// record); the caller reads the outcome back.
    Publish { data: Vec<u8> },
    /// A read through ReadIndex (with a lease when `lease` is set).
    Read {
        read: Read<S>,
        /// Answer from the leader's lease when it holds.
        lease: bool,
    },
    /// Change the membership; answered with the change's index once raft
    /// applied it here (a joint change: once the joint configuration was
    /// left).
    ChangeMembership {
        /// The changes (several: a joint change).
        changes: Vec<MembershipChange>,
        reply: IndexReply,
    },
}

/// Requests served regardless of back-pressure.
#[derive(Debug)]
pub(crate) enum Control {
    /// Report the node's status.
    Status(oneshot::Sender<NodeStatus>),
    /// Stop taking requests, finish what is in flight, stop.
    Shutdown,
    /// Stop at once, as a crash would: release nothing more (no message
    /// held for an unacknowledged Ready is sent, no waiter is answered).
    Crash,
    /// Hand leadership to `to`; answered once this node sees `to` lead.
    TransferLeader { to: u64, reply: TransferReply },
}

/// What the raft actor (and, for local reads, the handle) sends the apply
/// actor.
pub(crate) enum ApplyMsg<S: StateMachine> {
    /// Answer each `reply` when the entry carrying its id applies.
    Register(Vec<(super::envelope::RequestId, ProposalReply<S::Response>)>),
    /// Committed entries, in order.
    Committed(Vec<Entry>),
    /// A snapshot the node installed: restore the state machine from it.
    Restore(Snapshot),
    /// Serve `read` once applied ≥ `index` (0: at once, a serializable
    /// read).
    Read { index: u64, read: Read<S> },
}

/// The state machine's snapshot data at `index`, for the raft actor to
/// make a raft snapshot of.
#[derive(Debug)]
pub(crate) struct SnapshotData {
    /// The applied index the data stands at.
    pub(crate) index: u64,
    /// The framed snapshot (`applier::SnapshotJob::write`).
    pub(crate) data: Vec<u8>,
    /// The size of the state as written (its state file's length).
    pub(crate) state_bytes: u64,
}
