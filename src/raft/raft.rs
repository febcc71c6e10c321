//! The raft state machine of one node: roles, elections, log replication and
//! commitment, driven only by `tick()` and `step(message)`.
//!
//! Owns: the node's term and vote, its role and leader, the [`RaftLog`], the
//! [`ProgressTracker`] (membership, per-peer progress and votes), election
//! timers and the outgoing message queues.
//!
//! Guarantees (the raft paper's, §5): at most one leader per term (a vote is
//! granted once per term, only to an up-to-date log, and a node counts its own
//! vote only once that vote is durable); a leader commits only entries of its
//! own term by counting replicas, and counts its own log only once persisted;
//! a committed entry is never overwritten. Messages are queued, never sent:
//! `msgs` go out after the Ready that produced them is durable, and
//! `msgs_after_append` are addressed to this node itself and are stepped by
//! `RawNode::on_persisted` once the state they vouch for is durable.
//!
//! May not touch: IO, clocks, threads. Randomness only from the seeded
//! [`Rng`]. Invariant violations inside the core panic with a message, as in
//! etcd; bad peer input is ignored or answered with an error.

use super::confchange::{Changer, conf_state_fault, enters_joint, leaves_joint};
use super::config::{Config, ReadOnlyOption};
use super::log::RaftLog;
use super::progress::{Progress, ProgressState};
use super::quorum::{JointConfig, MajorityConfig, VoteResult};
use super::read_only::{ReadOnly, ReadState, request_context};
use super::storage::Storage;
use super::tracker::{ProgressTracker, TrackerConfig};
use crate::raftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};

/// `context` of a MsgVote sent because of a leader transfer: it may
/// disrupt a leader lease.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// The role a node plays in its current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateRole {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Asks for votes in a term it has started.
    Candidate,
    /// Asks whether it could win, without changing its term (§9.6).
    PreCandidate,
    /// Replicates its log to the others.
    Leader,
}

impl std::fmt::Display for StateRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            StateRole::Follower => "StateFollower",
            StateRole::Candidate => "StateCandidate",
            StateRole::PreCandidate => "StatePreCandidate",
            StateRole::Leader => "StateLeader",
        };
        f.write_str(name)
    }
}

/// The volatile state an application may want to watch: who leads, and
/// this node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftState {
    /// The known leader, 0 if none.
    pub leader_id: u64,
    /// This node's role.
    pub role: StateRole,
}

pub use super::error::{DropReason, RaftError};
pub use super::rng::Rng;

/// Which kind of election a node starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignType {
    /// A pre-vote round (when `pre_vote` is on), then a real election.
    PreElection,
    /// A real election: increment the term and ask for votes.
    Election,
    /// A real election asked for by the leader (leader transfer): may
    /// disrupt leases.
    Transfer,
}

/// The raft state machine of one node.
pub struct Raft<S: Storage> {
    /// This node's id.
    pub id: u64,
    /// The current term.
    pub term: u64,
    /// The node voted for in `term` (0 for none).
    pub vote: u64,
    /// The log.
    pub raft_log: RaftLog<S>,
    /// Membership, per-peer progress and votes.
    pub trk: ProgressTracker,
    /// This node's role.
    pub state: StateRole,
    /// The known leader of `term` (0 if none).
    pub lead: u64,
    /// Messages to other nodes, to be sent once the Ready carrying them is
    /// durable.
    pub msgs: Vec<Message>,
    /// Messages to this node itself (its own vote, a leader's own append
    /// acknowledgement), to be stepped once the Ready is durable.
    pub msgs_after_append: Vec<Message>,
    /// Payload bytes of proposed entries not yet committed (leader only).
    pub uncommitted_size: u64,
    /// The node a leadership transfer goes to (0 for none).
    pub lead_transferee: u64,
    /// The index of the latest configuration change proposed (leader only);
    /// another may be proposed only once it is applied.
    pub pending_conf_index: u64,
    /// Answers to read requests, for the application.
    pub read_states: Vec<ReadState>,
    /// Read requests waiting for leadership confirmation (leader only).
    pub read_only: ReadOnly,
    /// Read requests that arrived before this leader committed an entry of
    /// its term; answered once it has (leader only).
    pending_read_index_messages: Vec<Message>,
    /// Ticks since this node started: the leader's clock for its lease.
    ticks: u64,
    /// Per follower, the latest leader tick at which a heartbeat was sent
    /// that the follower has acknowledged (leader only, lease reads).
    lease_acks: BTreeMap<u64, u64>,
    /// The commit index moved on an acknowledgement and the followers
    /// have not been told yet (leader only): told once per batch of steps,
    /// in [`Raft::announce_commit`], unless an append sent meanwhile
    /// already carried it.
    commit_unannounced: bool,
    /// This node restarted with lease reads on: it may have acknowledged a
    /// leader's heartbeat just before, and forgot that with its election
    /// timer, so it refuses votes for the first election timeout.
    restarted_under_lease: bool,
    /// Leases are honoured (`read_only` LeaseBased or `lease_reads`).
    leases: bool,
    max_msg_size: u64,
    max_uncommitted_size: u64,
    check_quorum: bool,
    pre_vote: bool,
    read_only_option: ReadOnlyOption,
    disable_proposal_forwarding: bool,
    heartbeat_timeout: usize,
    election_timeout: usize,
    randomized_election_timeout: usize,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    rng: Rng,
}

/// The message type answering a vote request of type `request`.
pub fn vote_response_type(request: MessageType) -> MessageType {
    match request {
        MessageType::MsgPreVote => MessageType::MsgPreVoteResp,
        _ => MessageType::MsgVoteResp,
    }
}

/// Whether `msg_type` is only ever generated locally and must not arrive
/// from the network.
pub fn is_local_message(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
    )
}

/// Whether `msg_type` answers a request.
pub fn is_response_message(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgAppResp
            | MessageType::MsgVoteResp
            | MessageType::MsgHeartbeatResp
            | MessageType::MsgUnreachable
            | MessageType::MsgReadIndexResp
            | MessageType::MsgPreVoteResp
    )
}

/// The sum of entry payload sizes, as the uncommitted-size limit counts.
pub fn payload_size(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.data.len() as u64).sum()
}

/// The tracker configuration and progress map described by `conf_state`,
/// every member starting at `next_idx`.
pub fn tracker_from_conf_state(
    conf_state: &ConfState,
    next_idx: u64,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
) -> (TrackerConfig, BTreeMap<u64, Progress>) {
    let incoming: BTreeSet<u64> = conf_state.voters.iter().copied().collect();
    let outgoing: BTreeSet<u64> = conf_state.voters_outgoing.iter().copied().collect();
    let config = TrackerConfig {
        voters: JointConfig::new(MajorityConfig::new(incoming), MajorityConfig::new(outgoing)),
        auto_leave: conf_state.auto_leave,
        learners: conf_state.learners.iter().copied().collect(),
        learners_next: conf_state.learners_next.iter().copied().collect(),
    };
    let mut progress = BTreeMap::new();
    for id in config.voters.ids() {
        progress.insert(
            id,
            Progress::new(next_idx, max_inflight_msgs, max_inflight_bytes),
        );
    }
    for &id in config.learners.iter().chain(config.learners_next.iter()) {
        let mut learner = Progress::new(next_idx, max_inflight_msgs, max_inflight_bytes);
        learner.is_learner = config.learners.contains(&id);
        progress.entry(id).or_insert(learner);
    }
    (config, progress)
}

/// The ConfState describing a tracker configuration.
pub fn conf_state_of(config: &TrackerConfig) -> ConfState {
    ConfState {
        voters: config.voters.incoming().iter().collect(),
        learners: config.learners.iter().copied().collect(),
        voters_outgoing: config.voters.outgoing().iter().collect(),
        learners_next: config.learners_next.iter().copied().collect(),
        auto_leave: config.auto_leave,
    }
}

impl<S: Storage> Raft<S> {
    /// A node over `storage`, restarted from its persisted HardState and
    /// ConfState (both empty for a brand-new node).
    pub fn new(config: &Config, storage: S) -> Result<Raft<S>, RaftError> {
        config.validate()?;
        let initial = storage.initial_state()?;
        let leases = config.read_only == ReadOnlyOption::LeaseBased || config.lease_reads;
        let raft_log =
            RaftLog::with_max_applying_size(storage, config.max_committed_size_per_ready)?;
        let mut raft = Raft {
            id: config.id,
            term: 0,
            vote: 0,
            raft_log,
            trk: ProgressTracker::new(config.max_inflight_msgs, config.max_inflight_bytes),
            state: StateRole::Follower,
            lead: 0,
            msgs: Vec::new(),
            msgs_after_append: Vec::new(),
            uncommitted_size: 0,
            lead_transferee: 0,
            pending_conf_index: 0,
            read_states: Vec::new(),
            read_only: ReadOnly::default(),
            pending_read_index_messages: Vec::new(),
            ticks: 0,
            lease_acks: BTreeMap::new(),
            commit_unannounced: false,
            // A node that ever answered a leader persisted a term first, so
            // an empty HardState means a first start, which promised nothing.
            restarted_under_lease: leases && !initial.hard_state.is_empty(),
            leases,
            max_msg_size: config.max_size_per_msg,
            max_uncommitted_size: config.max_uncommitted_entries_size,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            read_only_option: config.read_only,
            disable_proposal_forwarding: config.disable_proposal_forwarding,
            heartbeat_timeout: config.heartbeat_tick,
            election_timeout: config.election_tick,
            randomized_election_timeout: config.election_tick,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            rng: Rng::new(config.seed ^ config.id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        raft.apply_conf_state(&initial.conf_state);
        if !initial.hard_state.is_empty() {
            raft.load_state(initial.hard_state)?;
        }
        if config.applied > 0 {
            let committed = raft.raft_log.committed;
            if config.applied > committed {
                return Err(RaftError::AppliedBeyondCommitted {
                    applied: config.applied,
                    committed,
                });
            }
            if config.applied > raft.raft_log.applied {
                raft.raft_log.applied_to(config.applied);
            }
        }
        let term = raft.term;
        raft.become_follower(term, 0);
        Ok(raft)
    }

    fn load_state(&mut self, hard_state: HardState) -> Result<(), RaftError> {
        let committed = self.raft_log.committed;
        let last_index = self.raft_log.last_index();
        if hard_state.commit < committed || hard_state.commit > last_index {
            return Err(RaftError::InvalidHardState {
                commit: hard_state.commit,
                committed,
                last_index,
            });
        }
        self.raft_log.committed = hard_state.commit;
        self.term = hard_state.term;
        self.vote = hard_state.vote;
        Ok(())
    }

    /// Replaces the membership with `conf_state`, every member's progress
    /// starting afresh after the last index.
    pub fn apply_conf_state(&mut self, conf_state: &ConfState) {
        let (config, progress) = tracker_from_conf_state(
            conf_state,
            self.raft_log.last_index() + 1,
            self.trk.max_inflight_msgs(),
            self.trk.max_inflight_bytes(),
        );
        self.trk.apply_conf(config, progress);
        if let Some(own) = self.trk.get_mut(self.id) {
            own.matched = self.raft_log.last_index();
        }
    }

    /// The persistent state to save.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// The volatile state: leader and role.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            role: self.state,
        }
    }

    /// The current ConfState.
    pub fn conf_state(&self) -> ConfState {
        conf_state_of(self.trk.config())
    }

    /// The randomized election timeout in force, in ticks.
    pub fn randomized_election_timeout(&self) -> usize {
        self.randomized_election_timeout
    }

    /// Ticks since the last reset of the election timer.
    pub fn election_elapsed(&self) -> usize {
        self.election_elapsed
    }

    /// The configured read mode.
    pub fn read_only_option(&self) -> ReadOnlyOption {
        self.read_only_option
    }

    /// Whether this node may become leader: it is a voter and has no
    /// snapshot still to persist.
    pub fn promotable(&self) -> bool {
        self.trk.get(self.id).is_some_and(|pr| !pr.is_learner)
            && !self.raft_log.has_next_or_in_progress_snapshot()
    }

    /// Whether this node is a learner of its configuration.
    fn is_learner(&self) -> bool {
        self.trk.get(self.id).is_some_and(|pr| pr.is_learner)
    }

    fn past_election_timeout(&self) -> bool {
        self.election_elapsed >= self.randomized_election_timeout
    }

    fn reset_randomized_election_timeout(&mut self) {
        let spread = self.rng.below(self.election_timeout as u64) as usize;
        self.randomized_election_timeout = self.election_timeout + spread;
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.lead = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = 0;
        self.trk.reset_votes();
        let last_index = self.raft_log.last_index();
        let own_id = self.id;
        let max_msgs = self.trk.max_inflight_msgs();
        let max_bytes = self.trk.max_inflight_bytes();
        self.trk.visit(|id, pr| {
            let is_learner = pr.is_learner;
            *pr = Progress::new(last_index + 1, max_msgs, max_bytes);
            pr.is_learner = is_learner;
            if id == own_id {
                pr.matched = last_index;
            }
        });
        self.pending_conf_index = 0;
        self.uncommitted_size = 0;
        self.read_only.clear();
        self.pending_read_index_messages.clear();
        self.lease_acks.clear();
        self.commit_unannounced = false;
    }

    /// Becomes a follower of `lead` (0 if unknown) in `term`.
    pub fn become_follower(&mut self, term: u64, lead: u64) {
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
    }

    /// Becomes a candidate: increments the term and votes for itself.
    pub fn become_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "invalid transition [leader -> candidate] on node {}",
            self.id
        );
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.state = StateRole::Candidate;
    }

    /// Becomes a pre-candidate: keeps term and vote, asks for pre-votes.
    pub fn become_pre_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "invalid transition [leader -> pre-candidate] on node {}",
            self.id
        );
        self.trk.reset_votes();
        self.lead = 0;
        self.state = StateRole::PreCandidate;
    }

    /// Becomes leader of the current term and appends an empty entry so that
    /// entries of earlier terms can commit (§5.4.2).
    pub fn become_leader(&mut self) {
        assert!(
            self.state != StateRole::Follower,
            "invalid transition [follower -> leader] on node {}",
            self.id
        );
        let term = self.term;
        self.reset(term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        if let Some(own) = self.trk.get_mut(self.id) {
            own.become_replicate();
            own.recent_active = true;
        }
        // Conservatively treat every unapplied entry as a possible conf
        // change: no new one until they are applied.
        self.pending_conf_index = self.raft_log.last_index();
        let appended = self.append_entry(vec![Entry::default()]);
        assert!(appended, "empty leader entry refused by the size limit");
        // The empty entry carries no payload, so it never counts against the
        // uncommitted-size limit.
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        match self.state {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.past_election_timeout() {
            self.election_elapsed = 0;
            self.step_local(MessageType::MsgHup);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                self.step_local(MessageType::MsgCheckQuorum);
            }
            if self.state == StateRole::Leader && self.lead_transferee != 0 {
                self.abort_leader_transfer();
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.step_local(MessageType::MsgBeat);
        }
    }

    fn step_local(&mut self, msg_type: MessageType) {
        let message = Message {
            msg_type: msg_type as i32,
            from: self.id,
            ..Default::default()
        };
        // Local messages of these types cannot fail.
        let _ = self.step(message);
    }

    /// Stops a leadership transfer in progress.
    pub fn abort_leader_transfer(&mut self) {
        self.lead_transferee = 0;
    }

    /// Queues `message` for sending, filling in `from` and `term`.
    pub fn send(&mut self, mut message: Message) {
        if message.from == 0 {
            message.from = self.id;
        }
        let msg_type = message.msg_type();
        match msg_type {
            MessageType::MsgVote
            | MessageType::MsgVoteResp
            | MessageType::MsgPreVote
            | MessageType::MsgPreVoteResp => {
                assert!(
                    message.term != 0,
                    "term should be set when sending {msg_type:?}"
                );
            }
            _ => {
                assert!(
                    message.term == 0,
                    "term should not be set when sending {msg_type:?} (was {})",
                    message.term
                );
                // A forwarded proposal or read carries no term: it is
                // handled as a local message by the leader.
                if msg_type != MessageType::MsgProp && msg_type != MessageType::MsgReadIndex {
                    message.term = self.term;
                }
            }
        }
        if message.to == self.id {
            self.msgs_after_append.push(message);
        } else {
            self.msgs.push(message);
        }
    }

    /// Sends an append (or a snapshot) to `to` if its progress allows.
    pub fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends entries (or, if `send_if_empty`, an empty append carrying the
    /// commit index) to `to`, or a snapshot when the entries it needs are
    /// compacted. Returns whether a message was sent.
    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.trk.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev_index = pr.next_idx - 1;
        let next_idx = pr.next_idx;
        let throttled = pr.state == ProgressState::Replicate && pr.inflights.full();
        let prev_term = match self.raft_log.term(prev_index) {
            Ok(term) => term,
            Err(_) => return self.maybe_send_snapshot(to),
        };
        let entries = if throttled {
            Vec::new()
        } else {
            match self.raft_log.entries(next_idx, self.max_msg_size) {
                Ok(entries) => entries,
                Err(_) => return self.maybe_send_snapshot(to),
            }
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let committed = self.raft_log.committed;
        let count = entries.len();
        let bytes = payload_size(&entries);
        self.send(Message {
            msg_type: MessageType::MsgApp as i32,
            to,
            index: prev_index,
            log_term: prev_term,
            entries,
            commit: committed,
            ..Default::default()
        });
        if let Some(pr) = self.trk.get_mut(to) {
            pr.sent_entries(count, bytes);
            pr.sent_commit(committed);
        }
        true
    }

    fn maybe_send_snapshot(&mut self, to: u64) -> bool {
        let Some(pr) = self.trk.get(to) else {
            return false;
        };
        if !pr.recent_active {
            return false;
        }
        let snapshot = match self.raft_log.snapshot() {
            Ok(snapshot) => snapshot,
            // Temporarily unavailable: try again on a later heartbeat.
            Err(_) => return false,
        };
        assert!(
            !snapshot.is_empty(),
            "node {} needs a non-empty snapshot to catch up {to}",
            self.id
        );
        let snapshot_index = snapshot.metadata.index;
        if let Some(pr) = self.trk.get_mut(to) {
            pr.become_snapshot(snapshot_index);
        }
        self.send(Message {
            msg_type: MessageType::MsgSnap as i32,
            to,
            snapshot: Some(snapshot),
            ..Default::default()
        });
        true
    }

    fn peer_ids(&self) -> Vec<u64> {
        self.trk
            .progress()
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Sends appends to every peer whose progress allows.
    pub fn bcast_append(&mut self) {
        for id in self.peer_ids() {
            self.send_append(id);
        }
    }

    /// Tells the followers a commit index that moved since the last
    /// batch of steps, as etcd's broadcast on every move would, but once:
    /// a follower already sent an append carrying it (a proposal's, in the
    /// same batch) is skipped; the others get their pending entries, or an
    /// empty append when the new commit index covers entries they hold.
    /// [`crate::raft::RawNode::ready`] calls it before taking the
    /// messages, so no Ready leaves without the announcement.
    pub fn announce_commit(&mut self) {
        if !std::mem::take(&mut self.commit_unannounced) || self.state != StateRole::Leader {
            return;
        }
        let committed = self.raft_log.committed;
        for id in self.peer_ids() {
            let useful = self
                .trk
                .get(id)
                .is_some_and(|pr| pr.can_bump_commit(committed));
            self.maybe_send_append(id, useful);
        }
    }

    /// Sends a heartbeat to every peer.
    pub fn bcast_heartbeat(&mut self) {
        self.bcast_heartbeat_with_context(Vec::new());
    }

    fn bcast_heartbeat_with_context(&mut self, context: Vec<u8>) {
        for id in self.peer_ids() {
            self.send_heartbeat(id, context.clone());
        }
    }

    fn send_heartbeat(&mut self, to: u64, context: Vec<u8>) {
        // Never tell a follower to commit past what it is known to have:
        // it might not have those entries yet.
        let matched = self.trk.get(to).map_or(0, |pr| pr.matched);
        let commit = matched.min(self.raft_log.committed);
        // `index` carries the leader's clock; the follower echoes it, which
        // tells the leader from when that follower's lease promise runs.
        self.send(Message {
            msg_type: MessageType::MsgHeartbeat as i32,
            to,
            commit,
            context,
            index: self.ticks,
            ..Default::default()
        });
    }

    /// Whether a restarted node still honours the lease of a leader it may
    /// have acknowledged before the restart: during its first election
    /// timeout of ticks.
    fn honours_lease_of_forgotten_leader(&self) -> bool {
        self.restarted_under_lease && self.ticks < self.election_timeout as u64
    }

    /// Whether this leader's lease holds: a quorum of voters acknowledged
    /// heartbeats recent enough that none of them will vote for another
    /// candidate yet. A follower ignores vote requests for `election_tick`
    /// of its ticks after hearing from the leader; with clocks ticking at
    /// the same rate (the lease's assumption), that promise covers at least
    /// `election_tick - 2` of the leader's ticks after it sent the
    /// heartbeat (one tick lost to the follower's tick phase, one to ours).
    /// No lease while a leadership transfer may let the target campaign.
    fn lease_holds(&self) -> bool {
        if self.lead_transferee != 0 {
            return false;
        }
        let now = self.ticks;
        let lease_ticks = self.election_timeout as u64;
        let holds = |sent: u64| {
            now.checked_sub(sent)
                .is_some_and(|age| age + 2 <= lease_ticks)
        };
        let own_id = self.id;
        let result = self.trk.config().voters.vote_result(&|id| {
            if id == own_id {
                return Some(true);
            }
            Some(self.lease_acks.get(&id).is_some_and(|&sent| holds(sent)))
        });
        result == VoteResult::Won
    }

    /// Advances the commit index to what a quorum has; true if it moved.
    pub fn maybe_commit(&mut self) -> bool {
        let quorum_index = self.trk.committed();
        self.raft_log.maybe_commit(quorum_index, self.term)
    }

    /// Appends proposed entries to the leader's log, stamping term and
    /// index; false when the uncommitted size limit refuses them. The
    /// leader acknowledges them to itself once they are durable.
    pub fn append_entry(&mut self, mut entries: Vec<Entry>) -> bool {
        let last_index = self.raft_log.last_index();
        for (offset, entry) in entries.iter_mut().enumerate() {
            entry.term = self.term;
            entry.index = last_index + 1 + offset as u64;
        }
        if !self.increase_uncommitted_size(&entries) {
            return false;
        }
        let last_index = self.raft_log.append(&entries);
        self.send(Message {
            msg_type: MessageType::MsgAppResp as i32,
            to: self.id,
            index: last_index,
            ..Default::default()
        });
        true
    }

    fn increase_uncommitted_size(&mut self, entries: &[Entry]) -> bool {
        let size = payload_size(entries);
        if self.uncommitted_size > 0
            && size > 0
            && self.uncommitted_size.saturating_add(size) > self.max_uncommitted_size
        {
            return false;
        }
        self.uncommitted_size = self.uncommitted_size.saturating_add(size);
        true
    }

    /// Releases the uncommitted-size budget of entries that are committed
    /// and handed out for application.
    pub fn reduce_uncommitted_size(&mut self, size: u64) {
        if self.state != StateRole::Leader {
            return;
        }
        self.uncommitted_size = self.uncommitted_size.saturating_sub(size);
    }

    /// Starts an election of `campaign_type` if this node may lead and has
    /// no configuration change committed but not yet applied.
    pub fn hup(&mut self, campaign_type: CampaignType) {
        if self.state == StateRole::Leader || !self.promotable() {
            return;
        }
        if self.has_unapplied_conf_change() {
            return;
        }
        self.campaign(campaign_type);
    }

    /// Whether a committed configuration change is not yet applied.
    fn has_unapplied_conf_change(&self) -> bool {
        self.has_conf_change_in(self.raft_log.applied, self.raft_log.committed)
    }

    /// Whether committed entries handed out for application and not yet
    /// acknowledged applied hold a configuration change (which the
    /// application will apply with `apply_conf_change`).
    fn has_conf_change_being_applied(&self) -> bool {
        self.has_conf_change_in(self.raft_log.applied, self.raft_log.applying)
    }

    /// Whether entries `(after, up_to]` hold a configuration change. Both
    /// callers ask about entries above the applied index, which compaction
    /// never reaches, so an unreadable range holds none.
    fn has_conf_change_in(&self, after: u64, up_to: u64) -> bool {
        if after >= up_to {
            return false;
        }
        self.raft_log
            .slice(after + 1, up_to + 1, super::NO_LIMIT)
            .is_ok_and(|entries| {
                entries
                    .iter()
                    .any(|e| e.entry_type() != EntryType::EntryNormal)
            })
    }

    /// Campaigns for leadership. The node's own vote is counted only once
    /// its new term and vote are durable (it is queued to itself).
    pub fn campaign(&mut self, campaign_type: CampaignType) {
        if self.term == u64::MAX {
            // No next term to campaign in. Only a peer could have brought
            // the term here (with a forged message); refusing beats
            // wrapping to term 0.
            return;
        }
        let (vote_msg, term) = if campaign_type == CampaignType::PreElection && self.pre_vote {
            self.become_pre_candidate();
            // Pre-votes are asked for the next term, without moving to it.
            (MessageType::MsgPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::MsgVote, self.term)
        };
        let last_index = self.raft_log.last_index();
        let last_term = self.raft_log.last_term();
        let context = if campaign_type == CampaignType::Transfer {
            CAMPAIGN_TRANSFER.to_vec()
        } else {
            Vec::new()
        };
        let voters: Vec<u64> = self.trk.config().voters.ids().into_iter().collect();
        for id in voters {
            if id == self.id {
                self.send(Message {
                    msg_type: vote_response_type(vote_msg) as i32,
                    to: self.id,
                    term,
                    ..Default::default()
                });
                continue;
            }
            self.send(Message {
                msg_type: vote_msg as i32,
                to: id,
                term,
                index: last_index,
                log_term: last_term,
                context: context.clone(),
                ..Default::default()
            });
        }
    }

    fn poll(&mut self, from: u64, granted: bool) -> VoteResult {
        self.trk.record_vote(from, granted);
        self.trk.tally_votes().2
    }

    /// Handles one message: a peer's, or a local one (`term == 0`).
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        let Ok(msg_type) = MessageType::try_from(m.msg_type) else {
            return Err(RaftError::UnknownMessageType {
                value: m.msg_type,
                from: m.from,
            });
        };
        if m.term > self.term {
            if !self.step_higher_term(&m, msg_type) {
                return Ok(());
            }
        } else if m.term < self.term && m.term != 0 {
            self.step_lower_term(&m, msg_type);
            return Ok(());
        }

        match msg_type {
            MessageType::MsgHup => {
                let campaign_type = if self.pre_vote {
                    CampaignType::PreElection
                } else {
                    CampaignType::Election
                };
                self.hup(campaign_type);
                Ok(())
            }
            MessageType::MsgVote | MessageType::MsgPreVote => {
                self.handle_vote_request(&m, msg_type);
                Ok(())
            }
            _ => match self.state {
                StateRole::Leader => self.step_leader(m, msg_type),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m, msg_type),
                StateRole::Follower => self.step_follower(m, msg_type),
            },
        }
    }

    /// A message from a later term. Returns whether to go on handling it.
    fn step_higher_term(&mut self, m: &Message, msg_type: MessageType) -> bool {
        if matches!(msg_type, MessageType::MsgVote | MessageType::MsgPreVote) {
            let force = m.context == CAMPAIGN_TRANSFER;
            let in_lease = self.check_quorum
                && (self.lead != 0 || self.honours_lease_of_forgotten_leader())
                && self.election_elapsed < self.election_timeout;
            if !force && in_lease {
                // We heard from a leader within the minimum election
                // timeout: do not let a partitioned node disrupt it (§4.2.3).
                return false;
            }
        }
        match msg_type {
            // Pre-votes never change our term.
            MessageType::MsgPreVote => {}
            // A granted pre-vote for a future term: we move there only when
            // the pre-election is won.
            MessageType::MsgPreVoteResp if !m.reject => {}
            MessageType::MsgApp | MessageType::MsgHeartbeat | MessageType::MsgSnap => {
                self.become_follower(m.term, m.from);
            }
            _ => self.become_follower(m.term, 0),
        }
        true
    }

    /// A message from an earlier term: ignored, except that a stale leader
    /// or pre-candidate is told about the current term.
    fn step_lower_term(&mut self, m: &Message, msg_type: MessageType) {
        match msg_type {
            MessageType::MsgHeartbeat | MessageType::MsgApp
                if self.check_quorum || self.pre_vote || self.is_learner() =>
            {
                // A leader cut off from the cluster may be unable to win an
                // election at a higher term (pre-vote or check-quorum keeps
                // our term from moving); answering with our term makes it
                // step down instead of being stuck. So must a learner (whose
                // term a vote request raised): it never campaigns, so
                // nothing else would bring the leader's term up to ours, and
                // it would never hear from the leader again.
                self.send(Message {
                    msg_type: MessageType::MsgAppResp as i32,
                    to: m.from,
                    ..Default::default()
                });
            }
            MessageType::MsgPreVote => {
                // Rejecting with our term lets the pre-candidate learn it.
                self.send(Message {
                    msg_type: MessageType::MsgPreVoteResp as i32,
                    to: m.from,
                    term: self.term,
                    reject: true,
                    ..Default::default()
                });
            }
            _ => {}
        }
    }

    fn handle_vote_request(&mut self, m: &Message, msg_type: MessageType) {
        let can_vote = self.vote == m.from
            || (self.vote == 0 && self.lead == 0)
            || (msg_type == MessageType::MsgPreVote && m.term > self.term);
        let response = vote_response_type(msg_type);
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
            // The response carries the requested term (for a pre-vote the
            // future term) so that the candidate counts it.
            self.send(Message {
                msg_type: response as i32,
                to: m.from,
                term: m.term,
                ..Default::default()
            });
            if msg_type == MessageType::MsgVote {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            self.send(Message {
                msg_type: response as i32,
                to: m.from,
                term: self.term,
                reject: true,
                ..Default::default()
            });
        }
    }

    fn step_leader(&mut self, m: Message, msg_type: MessageType) -> Result<(), RaftError> {
        match msg_type {
            MessageType::MsgBeat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::MsgCheckQuorum => {
                if !self.trk.quorum_active() {
                    let term = self.term;
                    self.become_follower(term, 0);
                }
                let own_id = self.id;
                self.trk.visit(|id, pr| {
                    if id != own_id {
                        pr.recent_active = false;
                    }
                });
                return Ok(());
            }
            MessageType::MsgProp => return self.propose_as_leader(m),
            MessageType::MsgReadIndex => {
                self.handle_read_index_as_leader(m);
                return Ok(());
            }
            // Only followers forget their leader.
            MessageType::MsgForgetLeader => return Ok(()),
            _ => {}
        }
        if !self.trk.progress().contains_key(&m.from) {
            return Ok(());
        }
        match msg_type {
            MessageType::MsgAppResp => self.handle_append_response(&m),
            MessageType::MsgHeartbeatResp => self.handle_heartbeat_response(&m),
            MessageType::MsgSnapStatus => self.handle_snapshot_status(&m),
            MessageType::MsgTransferLeader => self.handle_transfer_leader(m.from),
            MessageType::MsgUnreachable => {
                if let Some(pr) = self.trk.get_mut(m.from) {
                    // The MsgApp to it was probably lost: probe again.
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn propose_as_leader(&mut self, m: Message) -> Result<(), RaftError> {
        if m.entries.is_empty() {
            return Err(RaftError::ProposalDropped(DropReason::Empty));
        }
        if !self.trk.config().voters.contains(self.id) {
            // Removed or demoted while leading: handing over, see
            // `maybe_step_down_as_non_voter`.
            return Err(RaftError::ProposalDropped(DropReason::NotInConfiguration));
        }
        if m.from != 0 && m.from != self.id && !self.trk.progress().contains_key(&m.from) {
            return Err(RaftError::ProposalDropped(DropReason::FromNonMember));
        }
        if self.lead_transferee != 0 {
            return Err(RaftError::ProposalDropped(
                DropReason::LeaderTransferInProgress,
            ));
        }
        let pending_conf_index = self.check_conf_change_proposals(&m.entries)?;
        if !self.append_entry(m.entries) {
            return Err(RaftError::ProposalDropped(DropReason::UncommittedSizeLimit));
        }
        if let Some(index) = pending_conf_index {
            self.pending_conf_index = index;
        }
        self.bcast_append();
        Ok(())
    }

    /// Enforces at most one configuration change in flight: refuses one
    /// while another is unapplied, a new change while joint, and an empty
    /// (leave-joint) change while not joint. Returns the index the last
    /// change will get.
    fn check_conf_change_proposals(&self, entries: &[Entry]) -> Result<Option<u64>, RaftError> {
        let mut pending_index = None;
        let last_index = self.raft_log.last_index();
        for (offset, entry) in entries.iter().enumerate() {
            let Some(cc) = decode_conf_change(entry)
                .map_err(|_| RaftError::ProposalDropped(DropReason::MalformedConfChange))?
            else {
                continue;
            };
            let joint = self.trk.config().voters.is_joint();
            let reason =
                if self.pending_conf_index > self.raft_log.applied || pending_index.is_some() {
                    Some(DropReason::ConfChangePending)
                } else if joint && !cc.changes.is_empty() {
                    Some(DropReason::JointConfigNotLeft)
                } else if !joint && cc.changes.is_empty() {
                    Some(DropReason::NotInJointConfig)
                } else {
                    None
                };
            if let Some(reason) = reason {
                return Err(RaftError::ProposalDropped(reason));
            }
            pending_index = Some(last_index + 1 + offset as u64);
        }
        Ok(pending_index)
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log.term_or_zero(self.raft_log.committed) == self.term
    }

    /// A read request at the leader. Answered only once this leader has
    /// committed an entry of its own term: before that its commit index may
    /// lag what earlier leaders acknowledged (also for a single node, whose
    /// commit index may have been persisted lazily before a restart).
    fn handle_read_index_as_leader(&mut self, m: Message) {
        if !self.committed_entry_in_current_term() {
            self.pending_read_index_messages.push(m);
            return;
        }
        // Only when that single voter is this leader: a removed or demoted
        // leader still handing over must confirm with the voter, which may
        // already lead a later term.
        if self.trk.is_singleton() && self.trk.config().voters.contains(self.id) {
            let committed = self.raft_log.committed;
            self.respond_to_read_index(m, committed);
            return;
        }
        self.send_read_index_response(m);
    }

    /// A read of this node's own that the leader may answer from its lease
    /// (`Config::lease_reads`): at once, with the commit index, when this
    /// node leads, committed an entry of its term and its lease holds;
    /// otherwise as any read index request (a heartbeat round, or forwarded
    /// to the leader by a follower).
    pub fn read_index_by_lease(&mut self, context: Vec<u8>) -> Result<(), RaftError> {
        if self.leases
            && self.state == StateRole::Leader
            && self.committed_entry_in_current_term()
            && self.lease_holds()
        {
            self.read_states.push(ReadState {
                index: self.raft_log.committed,
                request_ctx: context,
            });
            return Ok(());
        }
        self.step(Message {
            msg_type: MessageType::MsgReadIndex as i32,
            entries: vec![Entry {
                data: context.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn send_read_index_response(&mut self, m: Message) {
        let committed = self.raft_log.committed;
        match self.read_only_option {
            ReadOnlyOption::Safe => self.confirm_with_heartbeat_round(m, committed),
            ReadOnlyOption::LeaseBased if self.lease_holds() => {
                self.respond_to_read_index(m, committed)
            }
            // Lease not (yet, or no longer) established: confirm
            // leadership with a heartbeat round as the safe mode does.
            ReadOnlyOption::LeaseBased => self.confirm_with_heartbeat_round(m, committed),
        }
    }

    fn confirm_with_heartbeat_round(&mut self, m: Message, committed: u64) {
        let context = request_context(&m);
        self.read_only.add_request(committed, m);
        self.read_only.recv_ack(self.id, &context);
        self.bcast_heartbeat_with_context(context);
    }

    fn respond_to_read_index(&mut self, request: Message, index: u64) {
        if request.from == 0 || request.from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: request_context(&request),
            });
            return;
        }
        self.send(Message {
            msg_type: MessageType::MsgReadIndexResp as i32,
            to: request.from,
            index,
            entries: request.entries,
            ..Default::default()
        });
    }

    fn release_pending_read_index_messages(&mut self) {
        if !self.committed_entry_in_current_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.handle_read_index_as_leader(m);
        }
    }

    fn handle_transfer_leader(&mut self, transferee: u64) {
        let last_index = self.raft_log.last_index();
        let Some(pr) = self.trk.get(transferee) else {
            return;
        };
        if pr.is_learner {
            return;
        }
        let caught_up = pr.matched == last_index;
        if self.lead_transferee != 0 {
            if self.lead_transferee == transferee {
                return;
            }
            self.abort_leader_transfer();
        }
        if transferee == self.id {
            return;
        }
        // The transfer must finish within an election timeout.
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        if caught_up {
            self.send_timeout_now(transferee);
        } else {
            self.send_append(transferee);
        }
    }

    /// Applies a committed configuration change; returns the new ConfState.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState, RaftError> {
        let changer = Changer {
            config: self.trk.config(),
            progress: self.trk.progress(),
            last_index: self.raft_log.last_index(),
            max_inflight_msgs: self.trk.max_inflight_msgs(),
            max_inflight_bytes: self.trk.max_inflight_bytes(),
        };
        let (config, progress) = if leaves_joint(cc) {
            changer.leave_joint()?
        } else if let Some(auto_leave) = enters_joint(cc)? {
            changer.enter_joint(auto_leave, &cc.changes)?
        } else {
            changer.simple(&cc.changes)?
        };
        Ok(self.switch_to_config(config, progress))
    }

    fn switch_to_config(
        &mut self,
        config: TrackerConfig,
        progress: BTreeMap<u64, Progress>,
    ) -> ConfState {
        self.trk.apply_conf(config, progress);
        let conf_state = self.conf_state();
        if self.state != StateRole::Leader {
            return conf_state;
        }
        // A leader removed or demoted steps down; the remaining voters
        // elect a new leader after an election timeout. Until one of them
        // has its whole log, it keeps replicating (and refuses proposals).
        if self.maybe_step_down_as_non_voter() {
            return conf_state;
        }
        if self.maybe_commit() {
            self.bcast_append();
        } else {
            for id in self.peer_ids() {
                self.maybe_send_append(id, false);
            }
        }
        if self.lead_transferee != 0 && !self.trk.config().voters.contains(self.lead_transferee) {
            self.abort_leader_transfer();
        }
        conf_state
    }

    /// A leader that is no longer a voter of its configuration (removed, or
    /// demoted to learner) steps down, but only once a voter has all of its
    /// log; returns whether it did. Stepping down earlier can stall the
    /// group for good: voters that have not yet learned that the change
    /// committed still count this node in their quorum (joint or old
    /// configuration) and need its vote, which it refuses them while its
    /// log is longer than theirs, and as a non-voter it never campaigns
    /// itself. Meanwhile it keeps replicating and refuses proposals.
    fn maybe_step_down_as_non_voter(&mut self) -> bool {
        if self.state != StateRole::Leader || self.trk.config().voters.contains(self.id) {
            return false;
        }
        let last_index = self.raft_log.last_index();
        let own_id = self.id;
        let caught_up =
            self.trk.config().voters.ids().into_iter().any(|id| {
                id != own_id && self.trk.get(id).is_some_and(|pr| pr.matched >= last_index)
            });
        if !caught_up {
            return false;
        }
        let term = self.term;
        self.become_follower(term, 0);
        true
    }

    /// The application applied entries up to `index`. A leader in a joint
    /// configuration that is left automatically proposes leaving it once
    /// the change that entered it is applied.
    pub fn applied_to(&mut self, index: u64) {
        // As etcd's appliedTo: never move back. An acknowledgement of
        // entries handed out before a snapshot that has since been
        // installed (pipelined Readies) arrives below the applied index.
        let index = index.max(self.raft_log.applied);
        self.raft_log.applied_to(index);
        if self.state == StateRole::Leader
            && self.trk.config().auto_leave
            && index >= self.pending_conf_index
        {
            let leave = Entry {
                entry_type: EntryType::EntryConfChangeV2 as i32,
                data: ConfChangeV2::default().encode_to_vec().into(),
                ..Default::default()
            };
            let proposal = Message {
                msg_type: MessageType::MsgProp as i32,
                from: self.id,
                entries: vec![leave],
                ..Default::default()
            };
            // Refused while a transfer is under way or the size limit is
            // hit: retried at the next applied index.
            let _ = self.step(proposal);
        }
    }

    fn handle_append_response(&mut self, m: &Message) {
        let from = m.from;
        let last_index = self.raft_log.last_index();
        let first_index = self.raft_log.first_index();
        if !m.reject && m.index > last_index {
            // A follower cannot hold entries of this term past our log;
            // taking such a claim would make us send from beyond it.
            return;
        }
        if m.reject {
            // Fast backtracking (§5.3): the follower's hint, refined by the
            // term it reported, skips whole terms of our log.
            let next_probe_index = if m.log_term > 0 {
                self.raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0
            } else {
                m.reject_hint
            };
            let Some(pr) = self.trk.get_mut(from) else {
                return;
            };
            pr.recent_active = true;
            if pr.maybe_decr_to(m.index, next_probe_index) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from);
            }
            return;
        }
        let Some(pr) = self.trk.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        let probe_recovered = pr.matched == m.index && pr.state == ProgressState::Probe;
        if !(pr.maybe_update(m.index) || probe_recovered) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= first_index => {
                // Caught up from the log again, whatever snapshot it applied.
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_le(m.index),
            ProgressState::Snapshot => {}
        }
        let matched = pr.matched;
        if self.maybe_commit() {
            self.release_pending_read_index_messages();
            // Several acknowledgements of one batch each move the commit
            // index; one announcement after the batch tells the followers
            // the last of them (see `announce_commit`).
            self.commit_unannounced = true;
        } else if from != self.id
            && self
                .trk
                .get(from)
                .is_some_and(|pr| pr.can_bump_commit(self.raft_log.committed))
        {
            self.send_append(from);
        }
        if from != self.id {
            // Flow control may now allow several messages at once.
            while self.maybe_send_append(from, false) {}
        }
        if from == self.lead_transferee && matched == last_index {
            self.send_timeout_now(from);
        }
        // A removed or demoted leader hands over once a voter caught up.
        self.maybe_step_down_as_non_voter();
    }

    fn handle_heartbeat_response(&mut self, m: &Message) {
        let last_index = self.raft_log.last_index();
        let Some(pr) = self.trk.get_mut(m.from) else {
            return;
        };
        pr.recent_active = true;
        pr.msg_app_flow_paused = false;
        if pr.matched < last_index || pr.state == ProgressState::Probe {
            self.send_append(m.from);
        }
        if m.index <= self.ticks {
            let acked = self.lease_acks.entry(m.from).or_insert(0);
            *acked = (*acked).max(m.index);
        }
        if m.context.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(m.from, &m.context) else {
            return;
        };
        let acks = acks.clone();
        let confirmed = self
            .trk
            .config()
            .voters
            .vote_result(&|id| acks.contains(&id).then_some(true));
        if confirmed != VoteResult::Won {
            return;
        }
        for pending in self.read_only.advance(&m.context) {
            self.respond_to_read_index(pending.request, pending.index);
        }
    }

    fn handle_snapshot_status(&mut self, m: &Message) {
        let Some(pr) = self.trk.get_mut(m.from) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if m.reject {
            pr.pending_snapshot = 0;
        }
        pr.become_probe();
        // Wait for a heartbeat response (or MsgAppResp) before the next
        // append, so a failed snapshot is not retried in a tight loop.
        pr.msg_app_flow_paused = true;
    }

    /// Tells `to` to campaign at once (the end of a leader transfer).
    pub fn send_timeout_now(&mut self, to: u64) {
        self.send(Message {
            msg_type: MessageType::MsgTimeoutNow as i32,
            to,
            ..Default::default()
        });
    }

    fn step_candidate(&mut self, m: Message, msg_type: MessageType) -> Result<(), RaftError> {
        let my_vote_response = if self.state == StateRole::PreCandidate {
            MessageType::MsgPreVoteResp
        } else {
            MessageType::MsgVoteResp
        };
        match msg_type {
            MessageType::MsgProp | MessageType::MsgReadIndex => {
                return Err(RaftError::ProposalDropped(DropReason::Campaigning));
            }
            MessageType::MsgApp => {
                self.become_follower(m.term, m.from);
                self.handle_append_entries(&m);
            }
            MessageType::MsgHeartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(&m);
            }
            MessageType::MsgSnap => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_vote_response => match self.poll(m.from, !m.reject) {
                VoteResult::Won => {
                    if self.state == StateRole::PreCandidate {
                        self.campaign(CampaignType::Election);
                    } else {
                        self.become_leader();
                        self.bcast_append();
                    }
                }
                VoteResult::Lost => {
                    // A pre-candidate's term never moved; a candidate stays
                    // in its term but gives up.
                    let term = self.term;
                    self.become_follower(term, 0);
                }
                VoteResult::Pending => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, mut m: Message, msg_type: MessageType) -> Result<(), RaftError> {
        match msg_type {
            MessageType::MsgProp => {
                if self.lead == 0 {
                    return Err(RaftError::ProposalDropped(DropReason::NoLeader));
                }
                if self.disable_proposal_forwarding {
                    return Err(RaftError::ProposalDropped(DropReason::ForwardingDisabled));
                }
                if m.entries.is_empty() {
                    return Err(RaftError::ProposalDropped(DropReason::Empty));
                }
                m.to = self.lead;
                m.from = self.id;
                self.send(m);
            }
            MessageType::MsgApp => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(&m);
            }
            MessageType::MsgHeartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(&m);
            }
            MessageType::MsgSnap => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageType::MsgReadIndex => {
                if self.lead == 0 {
                    return Err(RaftError::ProposalDropped(DropReason::NoLeader));
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgReadIndexResp => {
                if m.entries.len() != 1 {
                    return Err(RaftError::MalformedReadIndexResponse {
                        from: m.from,
                        entries: m.entries.len(),
                    });
                }
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx: request_context(&m),
                });
            }
            MessageType::MsgTransferLeader if self.lead != 0 => {
                m.to = self.lead;
                m.term = 0;
                self.send(m);
            }
            MessageType::MsgTimeoutNow => self.hup(CampaignType::Transfer),
            // With lease reads, forgetting the leader would let this node
            // vote while the old leader still serves reads on its lease.
            MessageType::MsgForgetLeader if !self.leases => {
                self.lead = 0;
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles a leader's MsgApp: appends if the previous entry matches,
    /// otherwise rejects with a hint for fast backtracking.
    pub fn handle_append_entries(&mut self, m: &Message) {
        let committed = self.raft_log.committed;
        if m.index < committed {
            self.send(Message {
                msg_type: MessageType::MsgAppResp as i32,
                to: m.from,
                index: committed,
                ..Default::default()
            });
            return;
        }
        if self.entries_contradict_committed(m) {
            // A leader never sends entries that conflict with committed
            // ones; ignore a message that does rather than corrupt the log.
            return;
        }
        match self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            Some(last_new_index) => self.send(Message {
                msg_type: MessageType::MsgAppResp as i32,
                to: m.from,
                index: last_new_index,
                ..Default::default()
            }),
            None => {
                let hint_index = m.index.min(self.raft_log.last_index());
                let (hint_index, hint_term) =
                    self.raft_log.find_conflict_by_term(hint_index, m.log_term);
                self.send(Message {
                    msg_type: MessageType::MsgAppResp as i32,
                    to: m.from,
                    index: m.index,
                    reject: true,
                    reject_hint: hint_index,
                    log_term: hint_term,
                    ..Default::default()
                });
            }
        }
    }

    /// Whether `m` carries malformed entries (not contiguous after
    /// `m.index`) or entries that would overwrite committed ones: peer data
    /// that must not reach the log's invariant checks.
    fn entries_contradict_committed(&self, m: &Message) -> bool {
        let contiguous = m
            .entries
            .iter()
            .enumerate()
            .all(|(offset, e)| Some(e.index) == m.index.checked_add(1 + offset as u64));
        if !contiguous {
            return true;
        }
        if !self.raft_log.match_term(m.index, m.log_term) {
            return false;
        }
        let conflict = self.raft_log.find_conflict(&m.entries);
        conflict != 0 && conflict <= self.raft_log.committed
    }

    fn handle_heartbeat(&mut self, m: &Message) {
        // The leader sends at most our match index; cap anyway so a bad
        // peer cannot make us commit entries we do not have.
        let commit = m.commit.min(self.raft_log.last_index());
        self.raft_log.commit_to(commit);
        self.send(Message {
            msg_type: MessageType::MsgHeartbeatResp as i32,
            to: m.from,
            context: m.context.clone(),
            index: m.index,
            ..Default::default()
        });
    }

    fn handle_snapshot(&mut self, m: Message) {
        let from = m.from;
        let Some(snapshot) = m.snapshot else {
            return;
        };
        let meta = &snapshot.metadata;
        if meta.index == u64::MAX || meta.term == 0 || meta.term > m.term {
            // No leader sends these: an index with no successor, or a term
            // the log never had. Ignored rather than restored.
            return;
        }
        let index = if self.restore(snapshot) {
            self.raft_log.last_index()
        } else {
            self.raft_log.committed
        };
        self.send(Message {
            msg_type: MessageType::MsgAppResp as i32,
            to: from,
            index,
            ..Default::default()
        });
    }

    /// Installs a snapshot from the leader. Returns false when it is not
    /// needed (already committed, or our log already has its last entry, in
    /// which case the commit index is fast-forwarded).
    pub fn restore(&mut self, snapshot: Snapshot) -> bool {
        let index = snapshot.metadata.index;
        let term = snapshot.metadata.term;
        if index <= self.raft_log.committed {
            return false;
        }
        if self.state != StateRole::Follower {
            // Defensive: only followers restore snapshots.
            let next_term = self.term.saturating_add(1);
            self.become_follower(next_term, 0);
            return false;
        }
        let conf_state = &snapshot.metadata.conf_state;
        if conf_state_fault(conf_state).is_some() {
            // Only a forged snapshot carries an impossible configuration;
            // installing it would break the tracker's invariants.
            return false;
        }
        let in_config = conf_state
            .voters
            .iter()
            .chain(&conf_state.learners)
            .chain(&conf_state.voters_outgoing)
            .any(|&id| id == self.id);
        if !in_config {
            // A snapshot that does not contain us would make us unable to
            // take part; refuse it (the leader will retry or remove us).
            return false;
        }
        if self.raft_log.match_term(index, term) {
            self.raft_log.commit_to(index);
            return false;
        }
        if self.has_conf_change_being_applied() {
            // A configuration change handed out for application is not yet
            // applied: installing the snapshot's configuration now would
            // have the application apply that change on top of a
            // configuration that already includes it (twice, out of order:
            // a wrong configuration, or a refused change). Refuse; the
            // leader sends the snapshot again later.
            return false;
        }
        let conf_state = conf_state.clone();
        self.raft_log.restore(snapshot);
        self.apply_conf_state(&conf_state);
        true
    }
}

/// The configuration change an entry carries, as a [`ConfChangeV2`], or
/// `None` for a normal entry.
pub fn decode_conf_change(entry: &Entry) -> Result<Option<ConfChangeV2>, RaftError> {
    let malformed = |reason: String| RaftError::MalformedConfChangeEntry {
        index: entry.index,
        reason,
    };
    match EntryType::try_from(entry.entry_type) {
        Ok(EntryType::EntryNormal) => Ok(None),
        Ok(EntryType::EntryConfChange) => {
            let cc =
                ConfChange::decode(entry.data.as_ref()).map_err(|e| malformed(e.to_string()))?;
            Ok(Some(super::confchange::conf_change_as_v2(&cc)))
        }
        Ok(EntryType::EntryConfChangeV2) => ConfChangeV2::decode(entry.data.as_ref())
            .map(Some)
            .map_err(|e| malformed(e.to_string())),
        Err(_) => Err(malformed(format!(
            "unknown entry type {}",
            entry.entry_type
        ))),
    }
}

#[cfg(test)]
mod tests;
