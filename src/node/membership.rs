//! Membership as the raft actor handles it: checking a requested change
//! against the current configuration, proposing it, applying committed
//! changes to raft, saying what the transport must learn of members, and
//! remembering the configuration at each index for snapshots.
//!
//! Owns: the membership callers waiting for their change, and the
//! configuration history (the configuration after each applied change,
//! pruned below the latest snapshot).
//!
//! Guarantees:
//! - a request is checked before it is proposed: an id of 0, a member
//!   added twice, promoting a voter, an unknown member, removing the last
//!   voter, a node named twice in one joint change are refused
//!   ([`NodeError::InvalidMembership`] / [`NodeError::UnknownMember`]);
//! - while an earlier change is not yet applied on the leader (or a joint
//!   configuration is not yet left) the request is refused with the
//!   retryable [`NodeError::MembershipChangePending`], never turned into
//!   an empty entry the caller would wait on until it times out;
//! - one change is proposed as etcd does (`ConfChange`); several at once
//!   as one joint change (`ConfChangeV2`, auto leave), answered once the
//!   joint configuration was left;
//! - a caller is answered with the index of the entry that completed its
//!   change, once raft applied it here.
//!
//! May not touch: the member directory (the applier's), files, the state
//! machine.

use super::conf_history::ConfHistory;
use super::envelope::{self, RequestId};
use super::error::NodeError;
use super::mailbox::MembershipChange;
use super::raft_core::Reply;
use crate::raft::raft::decode_conf_change;
use crate::raft::{MemoryStorage, RawNode, StateRole};
use crate::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry,
};
use std::collections::{BTreeSet, HashMap};

/// What the transport must learn from an applied membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// A member was added, or moved, and is reachable at `peer_url`.
    Reachable {
        /// The member.
        node_id: u64,
        /// Where peers reach it.
        peer_url: String,
    },
    /// A member was removed.
    Removed {
        /// The member.
        node_id: u64,
    },
}

/// The raft actor's membership bookkeeping.
pub(crate) struct Membership<M> {
    node_id: u64,
    /// Callers waiting for their change to apply.
    pending: HashMap<RequestId, M>,
    /// Callers of a joint change that entered: answered when it is left.
    awaiting_leave: Vec<M>,
    /// The configuration after each applied change (and at the latest
    /// snapshot), to give a snapshot the configuration as of its index.
    history: ConfHistory,
}

impl<M: Reply<u64>> Membership<M> {
    /// Bookkeeping for node `node_id` whose configuration at
    /// `snapshot_index` is `conf_state`.
    pub(crate) fn new(node_id: u64, snapshot_index: u64, conf_state: ConfState) -> Membership<M> {
        Membership {
            node_id,
            pending: HashMap::new(),
            awaiting_leave: Vec::new(),
            history: ConfHistory::new(snapshot_index, conf_state),
        }
    }

    /// Checks `changes` against the current configuration and proposes
    /// them as request `id`; the caller `reply` is answered when they
    /// apply. Raft must know the applied index (`advance_apply`) first.
    pub(crate) fn propose(
        &mut self,
        raw: &mut RawNode<MemoryStorage>,
        changes: Vec<MembershipChange>,
        id: RequestId,
        reply: M,
    ) -> Result<(), (NodeError, M)> {
        match check_and_propose(raw, &changes, id) {
            Ok(()) => {
                self.pending.insert(id, reply);
                Ok(())
            }
            Err(error) => Err((error, reply)),
        }
    }

    /// Applies the committed entry to raft if it is a membership change
    /// and answers its caller; returns what the transport must learn.
    pub(crate) fn apply_committed(
        &mut self,
        raw: &mut RawNode<MemoryStorage>,
        entry: &Entry,
    ) -> Vec<PeerChange> {
        let cc = match decode_conf_change(entry) {
            Ok(None) => return Vec::new(),
            Ok(Some(cc)) => cc,
            // Refused alike on every member (raft refuses malformed
            // changes when proposed, so this is another writer's entry).
            Err(error) => {
                tracing::error!(node = self.node_id, index = entry.index, %error, "membership change does not decode");
                return Vec::new();
            }
        };
        let waiter =
            envelope::member_request_id(&cc.context).and_then(|id| self.pending.remove(&id));
        match raw.apply_conf_change(&cc) {
            Ok(conf_state) => {
                tracing::info!(
                    node = self.node_id,
                    index = entry.index,
                    ?conf_state,
                    "membership changed"
                );
                let peer_changes = self.peer_changes(&cc);
                let joint = !conf_state.voters_outgoing.is_empty();
                self.history.record(entry.index, conf_state);
                match waiter {
                    Some(reply) if joint => self.awaiting_leave.push(reply),
                    Some(reply) => {
                        reply.answer(Ok(entry.index));
                    }
                    None => {}
                }
                if !joint {
                    for reply in self.awaiting_leave.drain(..) {
                        reply.answer(Ok(entry.index));
                    }
                }
                peer_changes
            }
            Err(error) => {
                tracing::error!(node = self.node_id, index = entry.index, %error, "membership change refused");
                if let Some(reply) = waiter {
                    reply.answer(Err(NodeError::InvalidMembership {
                        reason: error.to_string(),
                    }));
                }
                Vec::new()
            }
        }
    }

    /// Where added or moved members are, and which left (this node's own
    /// changes are not the transport's business).
    fn peer_changes(&self, cc: &ConfChangeV2) -> Vec<PeerChange> {
        let mut peer_changes = Vec::new();
        for change in &cc.changes {
            let node_id = change.node_id;
            match ConfChangeType::try_from(change.change_type) {
                Ok(
                    ConfChangeType::ConfChangeAddNode
                    | ConfChangeType::ConfChangeAddLearnerNode
                    | ConfChangeType::ConfChangeUpdateNode,
                ) if node_id != self.node_id => {
                    let peer_url = envelope::member_peer_url(&cc.context, node_id);
                    if !peer_url.is_empty() {
                        peer_changes.push(PeerChange::Reachable { node_id, peer_url });
                    }
                }
                Ok(ConfChangeType::ConfChangeRemoveNode) if node_id != self.node_id => {
                    peer_changes.push(PeerChange::Removed { node_id });
                }
                _ => {}
            }
        }
        peer_changes
    }

    /// The configuration as of `index` (after every change at or below it).
    pub(crate) fn conf_state_at(&self, index: u64) -> ConfState {
        self.history.at(index)
    }

    /// A snapshot at `index` was made: history below it is not needed.
    pub(crate) fn snapshot_made(&mut self, index: u64) {
        self.history.prune_through(index);
    }

    /// A snapshot from the leader replaced the log: its configuration is
    /// the only one known.
    pub(crate) fn snapshot_installed(&mut self, index: u64, conf_state: ConfState) {
        self.history.reset(index, conf_state);
    }

    /// Forgets callers that gave up.
    pub(crate) fn sweep(&mut self) {
        self.pending.retain(|_, reply| !reply.is_gone());
        self.awaiting_leave.retain(|reply| !reply.is_gone());
    }
}

/// Checks `changes` and proposes them.
fn check_and_propose(
    raw: &mut RawNode<MemoryStorage>,
    changes: &[MembershipChange],
    id: RequestId,
) -> Result<(), NodeError> {
    let conf = raw.status().conf_state;
    let invalid = |reason: String| NodeError::InvalidMembership { reason };
    if changes.is_empty() {
        return Err(invalid("no change requested".to_string()));
    }
    let raft = &raw.raft;
    // A leader would turn a second change into an empty entry, and the
    // caller would only time out.
    if raft.state == StateRole::Leader && raft.pending_conf_index > raft.raft_log.applied {
        return Err(NodeError::MembershipChangePending);
    }
    if !conf.voters_outgoing.is_empty() {
        return Err(NodeError::MembershipChangePending);
    }
    let mut named = BTreeSet::new();
    let mut voters: BTreeSet<u64> = conf.voters.iter().copied().collect();
    let mut singles = Vec::with_capacity(changes.len());
    let mut peers = Vec::new();
    for change in changes {
        let node_id = change.node_id();
        if node_id == 0 {
            return Err(invalid("node id 0 is reserved".to_string()));
        }
        if !named.insert(node_id) {
            return Err(invalid(format!("node {node_id:#x} is named twice")));
        }
        let change_type = check_one(&conf, change)?;
        match change {
            MembershipChange::AddVoter { peer_url, .. }
            | MembershipChange::AddLearner { peer_url, .. }
            | MembershipChange::UpdatePeerUrl { peer_url, .. } => {
                peers.push((node_id, peer_url.clone()));
            }
            MembershipChange::Promote { .. } | MembershipChange::Remove { .. } => {}
        }
        match change_type {
            ConfChangeType::ConfChangeAddNode => voters.insert(node_id),
            ConfChangeType::ConfChangeRemoveNode | ConfChangeType::ConfChangeAddLearnerNode => {
                voters.remove(&node_id)
            }
            ConfChangeType::ConfChangeUpdateNode => false,
        };
        singles.push(ConfChangeSingle {
            change_type: change_type as i32,
            node_id,
        });
    }
    if voters.is_empty() {
        return Err(invalid("the change would leave no voter".to_string()));
    }
    let context = envelope::member_context(&peers, id);
    let proposed = match singles.as_slice() {
        [single] => raw.propose_conf_change_v1(&ConfChange {
            change_type: single.change_type,
            node_id: single.node_id,
            context,
            ..Default::default()
        }),
        _ => raw.propose_conf_change(&ConfChangeV2 {
            transition: ConfChangeTransition::ConfChangeTransitionAuto as i32,
            changes: singles,
            context,
        }),
    };
    proposed.map_err(|error| NodeError::refused(error, raw.raft.soft_state().leader_id))
}

/// Checks one change against `conf`; returns its raft type.
fn check_one(conf: &ConfState, change: &MembershipChange) -> Result<ConfChangeType, NodeError> {
    let is_voter = |id: u64| conf.voters.contains(&id);
    let is_learner = |id: u64| conf.learners.contains(&id);
    let invalid = |reason: String| Err(NodeError::InvalidMembership { reason });
    match *change {
        MembershipChange::AddVoter { node_id, .. }
        | MembershipChange::AddLearner { node_id, .. }
            if is_voter(node_id) || is_learner(node_id) =>
        {
            invalid(format!("node {node_id:#x} is already a member"))
        }
        MembershipChange::AddVoter { .. } => Ok(ConfChangeType::ConfChangeAddNode),
        MembershipChange::AddLearner { .. } => Ok(ConfChangeType::ConfChangeAddLearnerNode),
        MembershipChange::Promote { node_id } if is_voter(node_id) => {
            invalid(format!("node {node_id:#x} is already a voter"))
        }
        MembershipChange::Promote { node_id } if !is_learner(node_id) => {
            Err(NodeError::UnknownMember { node_id })
        }
        MembershipChange::Promote { .. } => Ok(ConfChangeType::ConfChangeAddNode),
        MembershipChange::Remove { node_id } if !is_voter(node_id) && !is_learner(node_id) => {
            Err(NodeError::UnknownMember { node_id })
        }
        MembershipChange::Remove { node_id } if conf.voters == [node_id] => {
            invalid(format!("node {node_id:#x} is the last voter"))
        }
        MembershipChange::Remove { .. } => Ok(ConfChangeType::ConfChangeRemoveNode),
        MembershipChange::UpdatePeerUrl { node_id, .. }
            if !is_voter(node_id) && !is_learner(node_id) =>
        {
            Err(NodeError::UnknownMember { node_id })
        }
        MembershipChange::UpdatePeerUrl { ref peer_url, .. } if peer_url.is_empty() => {
            invalid("an update needs the member's new peer address".to_string())
        }
        MembershipChange::UpdatePeerUrl { .. } => Ok(ConfChangeType::ConfChangeUpdateNode),
    }
}
