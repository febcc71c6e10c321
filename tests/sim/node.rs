//! One simulated node: the real raft core, apply machinery (the node's
//! `Applier` over the run's state machine) and WAL encoding, driven the way
//! `src/node` drives them, over a simulated disk and network. Generic over
//! the state machine ([`SimMachine`]).
//!
//! Owns: the node's `RawNode` and `MemoryStorage`, its `Applier` (the state
//! machine, applied index and member directory), its
//! persistence actor ([`Persistence`]) and disk, the Readies handed out and
//! not yet released, the configuration history (for snapshots), and the
//! clients waiting on it (proposals by request id, reads by read index).
//!
//! Guarantees: the raft actor's order (`src/node/raft_actor.rs`): every
//! Ready is handed to persistence without waiting (pipelining); a Ready is
//! released only once persistence acknowledged it (or it needed none) and
//! every earlier one was released: its entries, snapshot and hard state go
//! into `MemoryStorage`, then `on_persisted`, then its messages go out (a
//! failed send is reported to raft as the transport reports it), then its
//! snapshot restores the state machine. Its committed entries apply when
//! it is handed out (right after it is submitted), membership changes to
//! raft first: they are durable here already. The apply actor's rules
//! (`src/node/apply_actor.rs`): entries apply in order through the real
//! `Applier` (membership changes update its member directory from the
//! change's context), a proposer is answered with the outcome the applier
//! gives for its request id once its entry applied here, a linearizable
//! read is served once applied ≥ its read index, and every `snapshot_count`
//! applied entries, or after the applier reports a member added, the
//! applier's framed snapshot is taken, saved (file, then WAL marker) and
//! the log compacted keeping `catchup_entries`. Proposals are framed as
//! `NodeHandle::propose` frames them (`envelope::proposal_header`, then the
//! machine's `encode_command`), membership changes carry
//! `envelope::member_context`. Boot (`src/node/bootstrap.rs`): a restart
//! rebuilds everything from the disk alone, restoring the applier from the
//! snapshot. The apply actor runs synchronously here (one of the
//! interleavings the real node allows).
//!
//! The break switches deliberately violate one rule each, to show the
//! checks catch it: `AckBeforeFsync` (persistence acknowledges before
//! fdatasync) and `ReadBeforeApply` (a linearizable read is answered as
//! soon as its read index is known, from a state machine that may not have
//! applied that far).
//!
//! May not touch: other nodes, the clock, or the network's rules.

use crate::checks::Checker;
use crate::disk::{Recovered, SimDisk};
use crate::machine::SimMachine;
use crate::network::Network;
use crate::persistence::{Job, Latency, Persistence, Progress};
use crate::rng::SimRng;
use crate::scheduler::{Event, IoLane, Scheduler};
use crate::stats::Stats;
use ringraft::node::applier::Applier;
use ringraft::node::conf_history::ConfHistory;
use ringraft::node::envelope::{self, RequestId};
use ringraft::raft::raft::decode_conf_change;
use ringraft::raft::{Config, MemoryStorage, RawNode, Ready, SnapshotStatus, StateRole, Storage};
use ringraft::raftpb::{ConfChange, ConfChangeType, Entry, Message, MessageType, Snapshot};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A deliberately broken safety rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakMode {
    /// Nothing broken.
    None,
    /// Persistence acknowledges a Ready before its fdatasync.
    AckBeforeFsync,
    /// Linearizable reads are served before applying up to the read index.
    ReadBeforeApply,
}

/// The settings of every node of a run.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub snapshot_count: u64,
    pub catchup_entries: u64,
    pub latency: Latency,
    pub break_mode: BreakMode,
    pub raft_seed: u64,
    /// A leader sends its appends when a Ready is handed out, before its
    /// own fdatasync (`NodeConfig::send_appends_early`, the default).
    pub send_appends_early: bool,
}

/// A client's operation, as the node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub client: usize,
    pub op: u64,
}

/// What a node tells a client.
#[derive(Debug)]
pub enum Answer<S: SimMachine> {
    /// The write applied at this index; the state machine's response.
    Written(u64, S::Response),
    /// Refused at once: it did not happen.
    Refused,
    /// A read's result.
    Value(S::QueryResult),
}

/// An answer to a client.
#[derive(Debug)]
pub struct Reply<S: SimMachine> {
    pub waiter: Waiter,
    pub answer: Answer<S>,
    /// Who answered, at which applied index (for traces).
    pub node: u64,
    pub applied_index: u64,
}

/// Everything outside the node that it acts on.
pub struct Env<'a, S: SimMachine> {
    pub rng: &'a mut SimRng,
    pub sched: &'a mut Scheduler,
    pub net: &'a mut Network,
    pub check: &'a mut Checker<S>,
    pub stats: &'a mut Stats,
    pub replies: &'a mut Vec<Reply<S>>,
    /// Request sequence numbers, unique over the run (the real node starts
    /// them from the wall clock at boot for the same purpose).
    pub next_seq: &'a mut u64,
}

impl<S: SimMachine> Env<'_, S> {
    fn seq(&mut self) -> u64 {
        *self.next_seq += 1;
        *self.next_seq
    }
}

/// A Ready handed out and not yet released.
struct InFlight {
    ready: Ready,
    submitted: bool,
}

/// A membership change the cluster asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    AddVoter(u64),
    AddLearner(u64),
    Promote(u64),
    Remove(u64),
}

/// One running node.
pub struct SimNode<S: SimMachine> {
    pub id: u64,
    pub incarnation: u64,
    pub raw: RawNode<MemoryStorage>,
    pub applier: Applier<S>,
    pub disk: SimDisk,
    persistence: Persistence,
    in_flight: VecDeque<InFlight>,
    acked: u64,
    conf_history: ConfHistory,
    last_snapshot_index: u64,
    /// A new member was added since the last snapshot.
    member_added: bool,
    settings: NodeSettings,
    proposals: BTreeMap<RequestId, Waiter>,
    /// Membership changes this node proposed, by request id.
    membership_proposals: BTreeSet<RequestId>,
    reads_without_index: BTreeMap<u64, (S::Query, Waiter)>,
    reads_waiting_apply: Vec<(u64, S::Query, Waiter)>,
    /// This node applied its own removal.
    pub removed: bool,
}

impl<S: SimMachine> SimNode<S> {
    /// A brand-new member with state machine `genesis`: a fresh disk;
    /// `voters` for a new cluster's bootstrap, none for a node joining an
    /// existing cluster.
    pub fn create(
        id: u64,
        voters: Option<&[u64]>,
        genesis: S,
        settings: NodeSettings,
        incarnation: u64,
    ) -> Result<SimNode<S>, String> {
        let disk = SimDisk::create(id);
        let raw = RawNode::new(
            &raft_config(id, 0, &settings, incarnation),
            MemoryStorage::new(),
        )
        .map_err(|e| format!("node {id}: RawNode::new: {e}"))?;
        let applier = Applier::new(genesis);
        let mut node = SimNode::assemble(id, raw, applier, disk, 0, settings, incarnation);
        if let Some(voters) = voters {
            node.raw
                .bootstrap(voters)
                .map_err(|e| format!("node {id}: bootstrap: {e}"))?;
        }
        Ok(node)
    }

    /// A restart from what `disk` kept, the state machine starting from
    /// `genesis` (then restored from the snapshot, if any).
    pub fn restart(
        id: u64,
        mut disk: SimDisk,
        genesis: S,
        settings: NodeSettings,
        incarnation: u64,
    ) -> Result<(SimNode<S>, bool), String> {
        let Recovered {
            snapshot,
            hard_state,
            entries,
            repaired_torn_tail,
        } = disk.recover()?;
        let mut memory = MemoryStorage::new();
        let mut applier = Applier::new(genesis);
        let mut applied = 0;
        if let Some(snapshot) = snapshot {
            applied = snapshot.metadata.index;
            applier
                .restore(applied, &mut snapshot.data.as_slice())
                .map_err(|e| format!("node {id}: snapshot data: {e}"))?;
            memory
                .apply_snapshot(snapshot)
                .map_err(|e| format!("node {id}: snapshot into MemoryStorage: {e}"))?;
        }
        memory.set_hard_state(hard_state);
        memory
            .append(&entries)
            .map_err(|e| format!("node {id}: WAL entries into MemoryStorage: {e}"))?;
        let raw = RawNode::new(&raft_config(id, applied, &settings, incarnation), memory)
            .map_err(|e| format!("node {id}: RawNode::new after restart: {e}"))?;
        let node = SimNode::assemble(id, raw, applier, disk, applied, settings, incarnation);
        Ok((node, repaired_torn_tail))
    }

    fn assemble(
        id: u64,
        raw: RawNode<MemoryStorage>,
        applier: Applier<S>,
        disk: SimDisk,
        boot_snapshot_index: u64,
        settings: NodeSettings,
        incarnation: u64,
    ) -> SimNode<S> {
        let conf_state = raw.status().conf_state;
        SimNode {
            id,
            incarnation,
            raw,
            last_snapshot_index: applier.applied_index(),
            member_added: false,
            applier,
            disk,
            persistence: Persistence::new(
                settings.latency,
                settings.break_mode == BreakMode::AckBeforeFsync,
            ),
            in_flight: VecDeque::new(),
            acked: 0,
            conf_history: ConfHistory::new(boot_snapshot_index, conf_state),
            settings,
            proposals: BTreeMap::new(),
            membership_proposals: BTreeSet::new(),
            reads_without_index: BTreeMap::new(),
            reads_waiting_apply: Vec::new(),
            removed: false,
        }
    }

    /// Whether a snapshot save is under way.
    pub fn saving_snapshot(&self) -> bool {
        self.persistence.saving_snapshot()
    }

    /// Whether nothing is in flight: no Ready unreleased, no IO queued.
    pub fn quiet(&self) -> bool {
        self.in_flight.is_empty() && !self.persistence.busy() && !self.raw.has_ready()
    }

    /// Lets the node do whatever it can without an outside event (after a
    /// restart: apply the committed entries its log holds).
    pub fn kick(&mut self, env: &mut Env<'_, S>) {
        self.drive(env);
    }

    /// The clock ticked.
    pub fn tick(&mut self, env: &mut Env<'_, S>) {
        self.raw.tick();
        self.drive(env);
    }

    /// A message from a peer arrived.
    pub fn step(&mut self, message: Message, env: &mut Env<'_, S>) {
        // Refused messages (from non-members, stale) are dropped, as the
        // raft actor does.
        let _ = self.raw.step(message);
        self.drive(env);
    }

    /// An IO step of the persistence actor completed.
    pub fn io_completed(&mut self, lane: IoLane, env: &mut Env<'_, S>) {
        if lane == IoLane::Sync {
            env.stats.fdatasyncs += 1;
        }
        let progress = self.persistence.complete(lane, &mut self.disk, env.rng);
        self.note_progress(progress, env);
        self.drive(env);
    }

    /// A client proposes `command`, framed as `NodeHandle::propose`
    /// frames it.
    pub fn propose(&mut self, command: &S::Command, waiter: Waiter, env: &mut Env<'_, S>) {
        let id = RequestId {
            node_id: self.id,
            seq: env.seq(),
        };
        let mut data = envelope::proposal_header(id, 64);
        S::encode_command(command, &mut data);
        match self.raw.propose(data) {
            Ok(()) => {
                self.proposals.insert(id, waiter);
            }
            Err(_) => env.replies.push(Reply {
                node: self.id,
                applied_index: self.applier.applied_index(),
                waiter,
                answer: Answer::Refused,
            }),
        }
        self.drive(env);
    }

    /// A client asks for a linearizable read (ReadIndex).
    pub fn read(&mut self, query: S::Query, waiter: Waiter, env: &mut Env<'_, S>) {
        let seq = env.seq();
        let mut context = self.id.to_be_bytes().to_vec();
        context.extend_from_slice(&seq.to_be_bytes());
        match self.raw.read_index(context) {
            Ok(()) => {
                self.reads_without_index.insert(seq, (query, waiter));
            }
            Err(_) => env.replies.push(Reply {
                node: self.id,
                applied_index: self.applier.applied_index(),
                waiter,
                answer: Answer::Refused,
            }),
        }
        self.drive(env);
    }

    /// A serializable read: this node's state machine as it stands.
    pub fn local_read(&self, query: S::Query) -> (u64, S::QueryResult) {
        (self.applier.applied_index(), self.applier.query(query))
    }

    /// Asks this node (a leader, normally) for a membership change, checked
    /// as the raft actor checks it.
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
        env: &mut Env<'_, S>,
    ) -> Result<(), String> {
        let conf = self.raw.status().conf_state;
        let member = |id: u64| conf.voters.contains(&id) || conf.learners.contains(&id);
        // As `membership::propose`: only additions announce an address.
        let (change_type, node_id, peers) = match change {
            MembershipChange::AddVoter(id) if !member(id) => (
                ConfChangeType::ConfChangeAddNode,
                id,
                vec![(id, peer_url(id))],
            ),
            MembershipChange::AddLearner(id) if !member(id) => (
                ConfChangeType::ConfChangeAddLearnerNode,
                id,
                vec![(id, peer_url(id))],
            ),
            MembershipChange::Promote(id) if conf.learners.contains(&id) => {
                (ConfChangeType::ConfChangeAddNode, id, Vec::new())
            }
            MembershipChange::Remove(id) if member(id) && conf.voters != [id] => {
                (ConfChangeType::ConfChangeRemoveNode, id, Vec::new())
            }
            _ => return Err(format!("{change:?} does not fit {conf:?}")),
        };
        let raft = &self.raw.raft;
        if raft.state == StateRole::Leader && raft.pending_conf_index > raft.raft_log.applied {
            return Err("another membership change is still being applied".to_string());
        }
        let id = RequestId {
            node_id: self.id,
            seq: env.seq(),
        };
        let cc = ConfChange {
            change_type: change_type as i32,
            node_id,
            context: envelope::member_context(&peers, id),
            ..Default::default()
        };
        let proposed = self
            .raw
            .propose_conf_change_v1(&cc)
            .map_err(|e| e.to_string());
        if proposed.is_ok() {
            self.membership_proposals.insert(id);
        }
        self.drive(env);
        proposed
    }

    /// Asks this node to hand leadership to `to`.
    pub fn transfer_leader(&mut self, to: u64, env: &mut Env<'_, S>) {
        if self.raw.status().conf_state.voters.contains(&to) && self.raw.raft.lead != to {
            self.raw.transfer_leader(to);
        }
        self.drive(env);
    }

    /// Runs the raft actor's loop until nothing more can happen without an
    /// outside event.
    fn drive(&mut self, env: &mut Env<'_, S>) {
        loop {
            let mut moved = false;
            while self.raw.has_ready() {
                self.hand_out(env);
                moved = true;
            }
            let progress = self.persistence.pump(&mut self.disk, env.rng);
            self.note_progress(progress, env);
            moved |= self.release(env);
            if !moved {
                break;
            }
        }
        if self.raw.raft.state == StateRole::Leader {
            env.check.leader(self.raw.raft.term, self.id);
        }
    }

    fn note_progress(&mut self, progress: Progress, env: &mut Env<'_, S>) {
        if let Some(number) = progress.acked {
            self.acked = self.acked.max(number);
        }
        for (lane, delay_us) in progress.started {
            env.sched.after(
                delay_us,
                Event::PersistStep {
                    node: self.id,
                    incarnation: self.incarnation,
                    lane,
                },
            );
        }
    }

    fn hand_out(&mut self, env: &mut Env<'_, S>) {
        let mut ready = self.raw.ready();
        self.raw.advance_append_async(&ready);
        if let Some(snapshot) = &ready.snapshot {
            self.conf_history.reset(
                snapshot.metadata.index,
                snapshot.metadata.conf_state.clone(),
            );
        }
        for read_state in std::mem::take(&mut ready.read_states) {
            self.forward_read(read_state.index, &read_state.request_ctx, env);
        }
        let submitted = ready.needs_persistence();
        if submitted {
            self.persistence.submit(Job::Ready {
                number: ready.number,
                hard_state: ready.hard_state,
                entries: ready.entries.clone(),
                snapshot: ready.snapshot.clone(),
                must_sync: ready.must_sync,
            });
        }
        if self.settings.send_appends_early {
            let appends = std::mem::take(&mut ready.append_messages);
            self.send(appends, env);
        }
        // Applied at hand-out, after the submit, as the raft actor does
        // (`forward_committed`): the entries are durable here already.
        let committed = std::mem::take(&mut ready.committed_entries);
        self.in_flight.push_back(InFlight { ready, submitted });
        if !committed.is_empty() {
            for entry in &committed {
                self.apply_conf_change_to_raft(entry, env);
            }
            self.apply_batch(committed, env);
        }
    }

    fn forward_read(&mut self, index: u64, context: &[u8], env: &mut Env<'_, S>) {
        let Some((node, seq)) = context.split_at_checked(8) else {
            return;
        };
        let Ok(seq) = <[u8; 8]>::try_from(seq) else {
            return;
        };
        if node != self.id.to_be_bytes() {
            return;
        }
        let Some((query, waiter)) = self.reads_without_index.remove(&u64::from_be_bytes(seq))
        else {
            return;
        };
        if self.settings.break_mode == BreakMode::ReadBeforeApply
            || index <= self.applier.applied_index()
        {
            env.replies.push(Reply {
                node: self.id,
                applied_index: self.applier.applied_index(),
                waiter,
                answer: Answer::Value(self.applier.query(query)),
            });
        } else {
            self.reads_waiting_apply.push((index, query, waiter));
        }
    }

    /// Releases the acknowledged Readies in order; true if any was.
    fn release(&mut self, env: &mut Env<'_, S>) -> bool {
        let mut released = Vec::new();
        while let Some(front) = self.in_flight.front() {
            if front.submitted && front.ready.number > self.acked {
                break;
            }
            let Some(flight) = self.in_flight.pop_front() else {
                break;
            };
            let store = self.raw.store_mut();
            if let Some(snapshot) = &flight.ready.snapshot
                && let Err(e) = store.apply_snapshot(snapshot.clone())
            {
                env.check.violation(format!(
                    "node {}: snapshot into MemoryStorage: {e}",
                    self.id
                ));
            }
            if let Err(e) = store.append(&flight.ready.entries) {
                env.check
                    .violation(format!("node {}: entries into MemoryStorage: {e}", self.id));
            }
            if let Some(hard_state) = flight.ready.hard_state {
                store.set_hard_state(hard_state);
            }
            released.push(flight);
        }
        let Some(last) = released.last() else {
            return false;
        };
        self.raw.on_persisted(last.ready.number);
        for flight in released {
            let ready = flight.ready;
            self.send(ready.append_messages, env);
            self.send(ready.messages, env);
            if let Some(snapshot) = ready.snapshot {
                self.restore(snapshot, env);
            }
        }
        true
    }

    fn send(&mut self, messages: Vec<Message>, env: &mut Env<'_, S>) {
        for message in messages {
            let to = message.to;
            let msg_type = message.msg_type();
            let sent = env.net.send(message, env.rng, env.sched);
            match (msg_type, sent) {
                (MessageType::MsgSnap, true) => {
                    self.raw.report_snapshot(to, SnapshotStatus::Finish)
                }
                (MessageType::MsgSnap, false) => {
                    self.raw.report_snapshot(to, SnapshotStatus::Failure)
                }
                (MessageType::MsgApp, false) => self.raw.report_unreachable(to),
                _ => {}
            }
        }
    }

    fn restore(&mut self, snapshot: Snapshot, env: &mut Env<'_, S>) {
        let index = snapshot.metadata.index;
        if index <= self.applier.applied_index() {
            return;
        }
        match self.applier.restore(index, &mut snapshot.data.as_slice()) {
            Ok(()) => {
                env.stats.snapshots_installed += 1;
                env.check.state(self.id, &self.applier);
                self.last_snapshot_index = index;
                self.raw.advance_apply(index);
                self.serve_reads(env);
            }
            Err(e) => env
                .check
                .violation(format!("node {}: snapshot from the leader: {e}", self.id)),
        }
    }

    fn apply_conf_change_to_raft(&mut self, entry: &Entry, env: &mut Env<'_, S>) {
        let Ok(Some(cc)) = decode_conf_change(entry) else {
            return;
        };
        match self.raw.apply_conf_change(&cc) {
            Ok(conf_state) => {
                if let Some(id) = envelope::member_request_id(&cc.context)
                    && self.membership_proposals.remove(&id)
                {
                    env.stats.membership_changes_applied += 1;
                }
                let member =
                    conf_state.voters.contains(&self.id) || conf_state.learners.contains(&self.id);
                if !member && cc.changes.iter().any(|c| c.node_id == self.id) {
                    self.removed = true;
                }
                self.conf_history.record(entry.index, conf_state);
            }
            Err(e) => env.check.violation(format!(
                "node {}: committed membership change at {} refused: {e}",
                self.id, entry.index
            )),
        }
    }

    /// The apply actor's `apply_batch`: the entries through the real
    /// `Applier`, then the proposers waiting here answered with their
    /// outcomes, reads served, and a snapshot taken when due.
    fn apply_batch(&mut self, entries: Vec<Entry>, env: &mut Env<'_, S>) {
        for entry in &entries {
            env.check.applied(self.id, entry);
        }
        let batch = match self.applier.apply(entries) {
            Ok(batch) => batch,
            Err(e) => {
                env.check.violation(format!("node {}: apply: {e}", self.id));
                return;
            }
        };
        self.member_added |= batch.member_added;
        env.check.state(self.id, &self.applier);
        self.raw.advance_apply(self.applier.applied_index());
        for (id, index, outcome) in batch.outcomes {
            let Some(waiter) = self.proposals.remove(&id) else {
                continue;
            };
            match outcome {
                Ok(response) => {
                    env.check.acknowledged_write(self.id, index, id, &response);
                    env.replies.push(Reply {
                        node: self.id,
                        applied_index: self.applier.applied_index(),
                        waiter,
                        answer: Answer::Written(index, response),
                    });
                }
                Err(e) => env.check.violation(format!(
                    "node {}: proposal {id:?} applied at {index} answered with an error: {e}",
                    self.id
                )),
            }
        }
        self.serve_reads(env);
        self.maybe_snapshot(env);
    }

    fn serve_reads(&mut self, env: &mut Env<'_, S>) {
        let applied = self.applier.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_waiting_apply)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.reads_waiting_apply = waiting;
        for (_, query, waiter) in ready {
            env.replies.push(Reply {
                node: self.id,
                applied_index: applied,
                waiter,
                answer: Answer::Value(self.applier.query(query)),
            });
        }
    }

    /// Every `snapshot_count` applied entries, and right after the applier
    /// reported a member added: snapshot, save, compact (the apply actor's
    /// `maybe_snapshot` and the raft actor's `make_snapshot`). The second trigger matters: a
    /// leader sends a member that needs compacted entries its latest
    /// snapshot, and raft refuses one whose configuration does not hold the
    /// recipient (etcd's rule); without it, leader and new member exchange
    /// MsgSnap and MsgAppResp as fast as the network carries them until the
    /// next periodic snapshot (for ever if the cluster needs the new
    /// member's vote to commit). This simulation found that in `src/node`.
    fn maybe_snapshot(&mut self, env: &mut Env<'_, S>) {
        let applied = self.applier.applied_index();
        let since_last = applied - self.last_snapshot_index;
        if since_last < self.settings.snapshot_count && !(self.member_added && since_last > 0) {
            return;
        }
        self.member_added = false;
        self.last_snapshot_index = applied;
        let data = match self.applier.snapshot().into_bytes() {
            Ok(data) => data,
            Err(e) => {
                env.check
                    .violation(format!("node {}: snapshot at {applied}: {e}", self.id));
                return;
            }
        };
        let conf_state = self.conf_history.at(applied);
        let store = self.raw.store_mut();
        let snapshot = match store.create_snapshot(applied, Some(conf_state), data) {
            Ok(snapshot) => snapshot,
            Err(ringraft::raft::StorageError::SnapshotOutOfDate { .. }) => return,
            Err(e) => {
                env.check
                    .violation(format!("node {}: create_snapshot({applied}): {e}", self.id));
                return;
            }
        };
        self.persistence.submit(Job::SaveSnapshot(snapshot));
        env.stats.snapshots_saved += 1;
        let compact_index = applied.saturating_sub(self.settings.catchup_entries);
        let store = self.raw.store_mut();
        if let Ok(first_index) = store.first_index()
            && compact_index >= first_index
            && let Err(e) = store.compact(compact_index)
        {
            env.check
                .violation(format!("node {}: compact({compact_index}): {e}", self.id));
        }
        self.conf_history.prune_through(applied);
    }
}

/// The raft settings of the real node (`NodeConfig::raft_config`): pre-vote
/// and check-quorum on.
fn raft_config(id: u64, applied: u64, settings: &NodeSettings, incarnation: u64) -> Config {
    let mut config = Config::new(id);
    config.election_tick = settings.election_tick;
    config.heartbeat_tick = settings.heartbeat_tick;
    config.applied = applied;
    config.pre_vote = true;
    config.check_quorum = true;
    config.seed = settings.raft_seed ^ id.rotate_left(17) ^ incarnation.rotate_left(40);
    config
}

/// How every peer address of the simulation starts.
pub const PEER_URL_PREFIX: &str = "sim://node-";

/// The peer address a member is added with.
pub fn peer_url(id: u64) -> String {
    format!("{PEER_URL_PREFIX}{id}")
}
