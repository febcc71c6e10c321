//! One simulated node: the raft actor's own event handling
//! (`ringraft::node::raft_core`, the code `src/node` runs), the real apply
//! machinery (the node's `Applier` over the run's state machine) and WAL
//! encoding, over a simulated disk and network. Generic over the state
//! machine ([`SimMachine`]).
//!
//! Owns: the node's [`RaftCore`] (its `RawNode`, `MemoryStorage`, Readies
//! in flight, membership bookkeeping and configuration history), its
//! `Applier` (the state machine, applied index and member directory), its
//! persistence actor ([`Persistence`]) and disk, its mailbox of client
//! requests not taken yet, what the core handed the apply side and it has
//! not taken yet, and the clients waiting on it (proposals by request id,
//! reads by read index).
//!
//! Guarantees: the raft actor's order is the core's own (its module says
//! it); this module only carries out the core's effects — Readies and
//! snapshot saves into the simulated persistence actor, messages into the
//! simulated network (a snapshot's transfer finishes when it is handed
//! over), apply work into an ordered inbox — and drives it: every event
//! goes to the core, then the core hands out Readies, persistence runs,
//! acknowledged Readies are released and the inbox is applied, until
//! nothing moves. Client proposals and reads wait in the mailbox and are
//! taken only while the core is accepting, a pass's worth at a time with
//! consecutive proposals stepped as one `MsgProp`, as the raft actor takes
//! its request channel: runs with a tight in-flight budget exercise that
//! back-pressure. Membership changes are checked and proposed by the
//! core's code (directly: the raft actor takes them from the same channel,
//! behind the proposals before them). The apply side plays the apply actor
//! (`src/node/apply_actor.rs`): entries apply in order through the real
//! `Applier`, a proposer is answered with the outcome the applier gives
//! for its request id once its entry applied here, a linearizable read is
//! served once applied ≥ its read index, and every `snapshot_count`
//! applied entries, or after the applier reports a member added, the
//! applier's framed snapshot goes to the core (which makes the raft
//! snapshot, queues its save and compacts). Proposals are framed as
//! `NodeHandle::propose` frames them. Boot (`src/node/bootstrap.rs`): a
//! restart rebuilds everything from the disk alone, restoring the applier
//! from the snapshot. The apply side runs right after the core's step (one
//! of the interleavings the real node allows).
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
use ringraft::StateMachine;
use ringraft::node::applier::Applier;
use ringraft::node::apply_core::{ApplyCore, ApplyIo};
use ringraft::node::envelope::{self, RequestId};
use ringraft::node::raft_core::{
    CoreSettings, PeerChange, RaftCore, RaftIo, Reply as CoreReply, Sent,
};
use ringraft::node::snapshot_policy::SnapshotPolicy;
use ringraft::node::{MembershipChange as NodeChange, NodeError};
use ringraft::persist::request::ReadyToPersist;
use ringraft::raft::{Config, MemoryStorage, RawNode, Ready, SnapshotStatus, StateRole};
use ringraft::raftpb::{Entry, Message, MessageType, Snapshot};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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
    /// The bytes of Readies in flight past which client requests wait
    /// (`NodeConfig::max_inflight_bytes`; back-pressure).
    pub max_inflight_bytes: usize,
}

/// Client requests the raft actor takes per pass (its `MAX_BATCH`).
const REQUESTS_PER_PASS: usize = 256;

/// A client request waiting in the node's mailbox, taken only while the
/// core is accepting (as the raft actor takes its request channel).
enum ClientWork<S: SimMachine> {
    Propose {
        data: Vec<u8>,
        id: RequestId,
        waiter: Waiter,
    },
    Read {
        query: S::Query,
        waiter: Waiter,
    },
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

/// What waits for a proposal: its request id and the client.
type Proposer = (RequestId, Waiter);
/// What waits for a linearizable read: the query and the client.
type Reader<S> = (<S as StateMachine>::Query, Waiter);

/// Where the core answers a membership change or a leadership transfer:
/// a slot the node reads after each step (one thread, no runtime).
struct Slot<T>(Rc<RefCell<Option<Result<T, NodeError>>>>);

impl<T> Slot<T> {
    /// A slot and the handle the core answers through.
    fn new() -> (Slot<T>, Slot<T>) {
        let shared = Rc::new(RefCell::new(None));
        (Slot(Rc::clone(&shared)), Slot(shared))
    }

    fn take(&self) -> Option<Result<T, NodeError>> {
        self.0.borrow_mut().take()
    }
}

impl<T> CoreReply<T> for Slot<T> {
    fn answer(self, outcome: Result<T, NodeError>) {
        *self.0.borrow_mut() = Some(outcome);
    }

    fn is_gone(&self) -> bool {
        // The other handle is the waiter's; gone once it was dropped.
        Rc::strong_count(&self.0) < 2
    }
}

/// The raft core as the simulation runs it.
type SimRaftCore<S> = RaftCore<Proposer, Reader<S>, Slot<u64>, Slot<()>>;

/// What the raft core hands the apply side, in order (the apply actor's
/// inbox in `src/node`).
enum ApplyWork<S: SimMachine> {
    Register(Vec<Proposer>),
    Committed(Vec<Entry>),
    Restore(Snapshot),
    Read {
        index: u64,
        query: S::Query,
        waiter: Waiter,
    },
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
    /// The raft actor's event handling, the code `src/node` runs.
    core: SimRaftCore<S>,
    /// The apply actor's rules, the code `src/node` runs.
    apply: ApplyCore<S, Proposer, Reader<S>>,
    pub disk: SimDisk,
    persistence: Persistence,
    acked: u64,
    /// What the core handed the apply side and it has not taken yet.
    inbox: VecDeque<ApplyWork<S>>,
    /// Client requests not taken yet (lost with the node on a crash, as
    /// the real mailbox is).
    mailbox: VecDeque<ClientWork<S>>,
    settings: NodeSettings,
    /// Membership changes this node proposed, answered once applied.
    membership_replies: Vec<Slot<u64>>,
    /// This node was a member of the configuration at some point.
    was_member: bool,
    /// This node applied its own removal.
    pub removed: bool,
}

/// The core's effects in the simulation: persistence jobs for the
/// simulated persistence actor, messages into the simulated network,
/// everything for apply into the node's inbox (taken after the core's
/// step, as the apply actor would).
struct SimIo<'n, 'e, 'a, S: SimMachine> {
    id: u64,
    applied_index: u64,
    persistence: &'n mut Persistence,
    inbox: &'n mut VecDeque<ApplyWork<S>>,
    env: &'e mut Env<'a, S>,
}

impl<S: SimMachine> SimIo<'_, '_, '_, S> {
    fn refuse(&mut self, waiter: Waiter) {
        self.env.replies.push(Reply {
            node: self.id,
            applied_index: self.applied_index,
            waiter,
            answer: Answer::Refused,
        });
    }
}

impl<S: SimMachine> RaftIo<Proposer, Reader<S>> for SimIo<'_, '_, '_, S> {
    fn persist_ready(&mut self, ready: &Ready) -> Result<usize, NodeError> {
        let to_persist = ReadyToPersist::from_ready(ready);
        let bytes = to_persist.approx_bytes();
        let ReadyToPersist {
            number,
            hard_state,
            entries,
            snapshot,
            must_sync,
        } = to_persist;
        self.persistence.submit(Job::Ready {
            number,
            hard_state,
            entries,
            snapshot,
            must_sync,
        });
        Ok(bytes)
    }

    fn persist_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        self.persistence.submit(Job::SaveSnapshot(snapshot));
        self.env.stats.snapshots_saved += 1;
        Ok(())
    }

    fn send(&mut self, message: Message) -> Sent {
        let is_snapshot = message.msg_type() == MessageType::MsgSnap;
        // The network carries a snapshot's state inline: its transfer is
        // over when the message is handed over.
        match (
            is_snapshot,
            self.env.net.send(message, self.env.rng, self.env.sched),
        ) {
            (true, true) => Sent::Snapshot(SnapshotStatus::Finish),
            (true, false) => Sent::Snapshot(SnapshotStatus::Failure),
            (false, true) => Sent::Queued,
            (false, false) => Sent::Unreachable,
        }
    }

    // The simulated network routes by node id.
    fn peer_changed(&mut self, _: PeerChange) {}

    fn proposed(&mut self, proposers: Vec<Proposer>) {
        self.inbox.push_back(ApplyWork::Register(proposers));
    }

    fn refused(&mut self, proposers: Vec<Proposer>, _: NodeError) {
        for (_, waiter) in proposers {
            self.refuse(waiter);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        self.inbox.push_back(ApplyWork::Committed(entries));
    }

    fn restore(&mut self, snapshot: Snapshot) {
        self.inbox.push_back(ApplyWork::Restore(snapshot));
    }

    fn read_at(&mut self, index: u64, (query, waiter): Reader<S>) {
        self.inbox.push_back(ApplyWork::Read {
            index,
            query,
            waiter,
        });
    }

    fn read_refused(&mut self, (_, waiter): Reader<S>, _: NodeError) {
        self.refuse(waiter);
    }

    fn reader_gone(&self, _: &Reader<S>) -> bool {
        false
    }
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
        let mut raw = RawNode::new(
            &raft_config(id, 0, &settings, incarnation),
            MemoryStorage::new(),
        )
        .map_err(|e| format!("node {id}: RawNode::new: {e}"))?;
        if let Some(voters) = voters {
            raw.bootstrap(voters)
                .map_err(|e| format!("node {id}: bootstrap: {e}"))?;
        }
        let applier = Applier::new(genesis);
        Ok(SimNode::assemble(
            id,
            raw,
            applier,
            disk,
            0,
            settings,
            incarnation,
        ))
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
        let core_settings = CoreSettings {
            send_appends_early: settings.send_appends_early,
            lease_reads: false,
            max_inflight_bytes: settings.max_inflight_bytes,
            snapshot_catchup_entries: settings.catchup_entries,
        };
        // Request numbers of an earlier incarnation are never reused.
        let first_request_seq = incarnation << 32;
        let core = RaftCore::new(
            raw,
            boot_snapshot_index,
            core_settings,
            first_request_seq,
            Arc::new(AtomicU64::new(0)),
        );
        let mut node = SimNode {
            id,
            incarnation,
            core,
            apply: ApplyCore::new(
                applier,
                SnapshotPolicy::new(settings.snapshot_count, 0),
                false,
            ),
            disk,
            persistence: Persistence::new(
                settings.latency,
                settings.break_mode == BreakMode::AckBeforeFsync,
            ),
            acked: 0,
            inbox: VecDeque::new(),
            mailbox: VecDeque::new(),
            settings,
            membership_replies: Vec::new(),
            was_member: false,
            removed: false,
        };
        node.note_membership();
        node
    }

    /// The raft core.
    pub fn raw(&self) -> &RawNode<MemoryStorage> {
        self.core.raw()
    }

    /// The applier (the state machine as applied here).
    pub fn applier(&self) -> &Applier<S> {
        self.apply.applier()
    }

    /// Whether a snapshot save is under way.
    pub fn saving_snapshot(&self) -> bool {
        self.persistence.saving_snapshot()
    }

    /// Whether nothing is in flight: no Ready unreleased, no IO queued,
    /// nothing waiting to apply.
    pub fn quiet(&self) -> bool {
        self.core.idle() && !self.persistence.busy() && self.inbox.is_empty()
    }

    /// Lets the node do whatever it can without an outside event (after a
    /// restart: apply the committed entries its log holds).
    pub fn kick(&mut self, env: &mut Env<'_, S>) {
        self.drive(env);
    }

    /// The clock ticked.
    pub fn tick(&mut self, env: &mut Env<'_, S>) {
        let (core, io) = self.split(env);
        core.tick(&io);
        self.drive(env);
    }

    /// A message from a peer arrived. A snapshot's state travels in its
    /// message here, so a MsgSnap has arrived whole.
    pub fn step(&mut self, message: Message, env: &mut Env<'_, S>) {
        if message.msg_type() == MessageType::MsgSnap {
            self.core.step_received_snapshot(message);
        } else {
            self.core.step(message);
        }
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
        self.mailbox
            .push_back(ClientWork::Propose { data, id, waiter });
        self.drive(env);
    }

    /// A client asks for a linearizable read (ReadIndex).
    pub fn read(&mut self, query: S::Query, waiter: Waiter, env: &mut Env<'_, S>) {
        self.mailbox.push_back(ClientWork::Read { query, waiter });
        self.drive(env);
    }

    /// Takes waiting client requests as the raft actor does: only while
    /// the core is accepting (the bytes of Readies in flight are under
    /// the budget), up to a pass's worth at a time, consecutive proposals
    /// stepped as one `MsgProp`. Returns whether any was taken.
    fn take_requests(&mut self, env: &mut Env<'_, S>) -> bool {
        if self.mailbox.is_empty() {
            return false;
        }
        if !self.core.accepting() {
            env.stats.requests_held += 1;
            return false;
        }
        let mut data = Vec::new();
        let mut proposers = Vec::new();
        for _ in 0..REQUESTS_PER_PASS {
            let Some(work) = self.mailbox.pop_front() else {
                break;
            };
            let (core, mut io) = self.split(env);
            match work {
                ClientWork::Propose {
                    data: bytes,
                    id,
                    waiter,
                } => {
                    data.push(bytes);
                    proposers.push((id, waiter));
                }
                ClientWork::Read { query, waiter } => {
                    // Proposals taken before a read go first, in order.
                    core.propose(
                        std::mem::take(&mut data),
                        std::mem::take(&mut proposers),
                        &mut io,
                    );
                    core.read_index((query, waiter), false, &mut io);
                }
            }
        }
        let (core, mut io) = self.split(env);
        core.propose(data, proposers, &mut io);
        true
    }

    /// A serializable read: this node's state machine as it stands.
    pub fn local_read(&self, query: S::Query) -> (u64, S::QueryResult) {
        let applier = self.apply.applier();
        (applier.applied_index(), applier.query(query))
    }

    /// Asks this node (a leader, normally) for a membership change, checked
    /// and proposed by the raft actor's code.
    pub fn propose_membership(
        &mut self,
        change: MembershipChange,
        env: &mut Env<'_, S>,
    ) -> Result<(), String> {
        let change = match change {
            MembershipChange::AddVoter(node_id) => NodeChange::AddVoter {
                node_id,
                peer_url: peer_url(node_id),
            },
            MembershipChange::AddLearner(node_id) => NodeChange::AddLearner {
                node_id,
                peer_url: peer_url(node_id),
            },
            MembershipChange::Promote(node_id) => NodeChange::Promote { node_id },
            MembershipChange::Remove(node_id) => NodeChange::Remove { node_id },
        };
        let (answer, reply) = Slot::new();
        let applied = self.apply.applier().applied_index();
        self.core.change_membership(vec![change], applied, reply);
        let proposed = match answer.take() {
            Some(Err(error)) => Err(error.to_string()),
            Some(Ok(_)) => Err("answered before it was proposed".to_string()),
            None => {
                self.membership_replies.push(answer);
                Ok(())
            }
        };
        self.drive(env);
        proposed
    }

    /// Asks this node to hand leadership to `to`.
    pub fn transfer_leader(&mut self, to: u64, env: &mut Env<'_, S>) {
        // Nobody waits for the answer here: the cluster watches leaders.
        let (_, reply) = Slot::new();
        self.core.transfer_leader(to, reply);
        self.drive(env);
    }

    /// The core and its effects, borrowed apart from the node's other
    /// parts.
    fn split<'n, 'e, 'a>(
        &'n mut self,
        env: &'e mut Env<'a, S>,
    ) -> (&'n mut SimRaftCore<S>, SimIo<'n, 'e, 'a, S>) {
        let io = SimIo {
            id: self.id,
            applied_index: self.apply.applier().applied_index(),
            persistence: &mut self.persistence,
            inbox: &mut self.inbox,
            env,
        };
        (&mut self.core, io)
    }

    /// Runs the raft actor's loop, the persistence actor and the apply
    /// actor until nothing more can happen without an outside event.
    fn drive(&mut self, env: &mut Env<'_, S>) {
        loop {
            let took = self.take_requests(env);
            let (core, mut io) = self.split(env);
            let mut moved = took;
            moved |= match core.advance(&mut io) {
                Ok(moved) => moved,
                Err(e) => {
                    env.check
                        .violation(format!("node {}: handing out a Ready: {e}", self.id));
                    false
                }
            };
            let progress = self.persistence.pump(&mut self.disk, env.rng);
            self.note_progress(progress, env);
            let acked = self.acked;
            let (core, mut io) = self.split(env);
            match core.persisted(acked, &mut io) {
                Ok(released) => moved |= released,
                Err(e) => env
                    .check
                    .violation(format!("node {}: releasing Readies: {e}", self.id)),
            }
            moved |= self.run_apply(env);
            if !moved {
                break;
            }
        }
        self.note_membership();
        self.note_membership_replies(env);
        let raft = &self.core.raw().raft;
        if raft.state == StateRole::Leader {
            env.check.leader(raft.term, self.id);
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

    /// Whether this node was a member and no longer is: it applied its
    /// own removal.
    fn note_membership(&mut self) {
        let conf = self.core.raw().status().conf_state;
        let member = conf.voters.contains(&self.id) || conf.learners.contains(&self.id);
        if member {
            self.was_member = true;
        } else if self.was_member {
            self.removed = true;
        }
    }

    fn note_membership_replies(&mut self, env: &mut Env<'_, S>) {
        self.membership_replies
            .retain(|answer| match answer.take() {
                Some(Ok(_)) => {
                    env.stats.membership_changes_applied += 1;
                    false
                }
                Some(Err(_)) => false,
                None => true,
            });
    }

    /// The apply actor: takes what the core handed it, in order. Returns
    /// whether it took anything.
    fn run_apply(&mut self, env: &mut Env<'_, S>) -> bool {
        let mut moved = false;
        while let Some(work) = self.inbox.pop_front() {
            moved = true;
            match work {
                ApplyWork::Register(proposers) => self
                    .apply
                    .register(proposers.into_iter().map(|p| (p.0, p)).collect()),
                ApplyWork::Committed(entries) => self.apply_batch(entries, env),
                ApplyWork::Restore(snapshot) => self.restore(snapshot, env),
                ApplyWork::Read {
                    index,
                    query,
                    waiter,
                } => {
                    // The deliberate bug: serve at once, whatever applied.
                    let index = match self.settings.break_mode {
                        BreakMode::ReadBeforeApply => 0,
                        _ => index,
                    };
                    let mut io = SimApplyIo::new(self.id, &self.apply, env);
                    self.apply.read(index, (query, waiter), &mut io);
                }
            }
        }
        moved
    }

    fn restore(&mut self, snapshot: Snapshot, env: &mut Env<'_, S>) {
        let index = snapshot.metadata.index;
        if !self.apply.needs_restore(index) {
            return;
        }
        let restored = self
            .apply
            .applier_mut()
            .restore(index, &mut snapshot.data.as_slice());
        match restored {
            Ok(()) => {
                env.stats.snapshots_installed += 1;
                let mut io = SimApplyIo::new(self.id, &self.apply, env);
                self.apply
                    .restored(index, snapshot.data.len() as u64, &mut io);
                self.core.applied(index);
            }
            Err(e) => env
                .check
                .violation(format!("node {}: snapshot from the leader: {e}", self.id)),
        }
    }

    /// The apply actor's `apply_batch`: the entries through the apply
    /// core (the real `Applier`; proposers answered, reads served), then
    /// a snapshot when one is due, made by the raft core.
    fn apply_batch(&mut self, entries: Vec<Entry>, env: &mut Env<'_, S>) {
        for entry in &entries {
            env.check.applied(self.id, entry);
        }
        let mut io = SimApplyIo::new(self.id, &self.apply, env);
        if let Err(e) = self.apply.apply(entries, &mut io) {
            env.check.violation(format!("node {}: apply: {e}", self.id));
            return;
        }
        self.core.applied(self.apply.applier().applied_index());
        self.maybe_snapshot(env);
    }

    /// The apply actor's `maybe_snapshot`, taken synchronously here; the
    /// raft core makes the raft snapshot, queues its save and compacts.
    fn maybe_snapshot(&mut self, env: &mut Env<'_, S>) {
        let Some(applied) = self.apply.snapshot_due() else {
            return;
        };
        let data = match self.apply.applier().snapshot().into_bytes() {
            Ok(data) => data,
            Err(e) => {
                env.check
                    .violation(format!("node {}: snapshot at {applied}: {e}", self.id));
                return;
            }
        };
        self.apply.snapshot_written(data.len() as u64);
        let (core, mut io) = self.split(env);
        if let Err(e) = core.make_snapshot(applied, data, &mut io) {
            env.check
                .violation(format!("node {}: snapshot at {applied}: {e}", self.id));
        }
    }
}

/// The apply core's effects in the simulation: the checker hears every
/// state and acknowledged write, clients get their replies.
struct SimApplyIo<'e, 'a, S: SimMachine> {
    id: u64,
    applied_index: u64,
    env: &'e mut Env<'a, S>,
}

impl<'e, 'a, S: SimMachine> SimApplyIo<'e, 'a, S> {
    fn new(
        id: u64,
        apply: &ApplyCore<S, Proposer, Reader<S>>,
        env: &'e mut Env<'a, S>,
    ) -> SimApplyIo<'e, 'a, S> {
        SimApplyIo {
            id,
            applied_index: apply.applier().applied_index(),
            env,
        }
    }

    fn reply(&mut self, waiter: Waiter, answer: Answer<S>) {
        self.env.replies.push(Reply {
            node: self.id,
            applied_index: self.applied_index,
            waiter,
            answer,
        });
    }
}

impl<S: SimMachine> ApplyIo<S, Proposer, Reader<S>> for SimApplyIo<'_, '_, S> {
    fn applied(&mut self, applier: &Applier<S>) {
        self.applied_index = applier.applied_index();
        self.env.check.state(self.id, applier);
    }

    fn answer(
        &mut self,
        (id, waiter): Proposer,
        index: u64,
        outcome: Result<S::Response, NodeError>,
    ) {
        match outcome {
            Ok(response) => {
                self.env
                    .check
                    .acknowledged_write(self.id, index, id, &response);
                self.reply(waiter, Answer::Written(index, response));
            }
            Err(e) => self.env.check.violation(format!(
                "node {}: proposal {id:?} applied at {index} answered with an error: {e}",
                self.id
            )),
        }
    }

    fn serve(&mut self, (query, waiter): Reader<S>, applier: &Applier<S>) {
        self.applied_index = applier.applied_index();
        self.reply(waiter, Answer::Value(applier.query(query)));
    }

    fn fail_proposer(&mut self, (_, waiter): Proposer, _: NodeError) {
        self.reply(waiter, Answer::Refused);
    }

    fn fail_reader(&mut self, (_, waiter): Reader<S>, _: NodeError) {
        self.reply(waiter, Answer::Refused);
    }

    fn proposer_gone(&self, _: &Proposer) -> bool {
        false
    }

    fn reader_gone(&self, _: &Reader<S>) -> bool {
        false
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
