//! The raft actor's event handling with no IO and no runtime in it: what
//! the node does when a client proposes or reads, a peer's message or a
//! tick arrives, persistence acknowledges, the state machine applies, or a
//! snapshot is made — and the order in which it does it. The tokio raft
//! actor (`super::raft_actor`) drives it in production; the simulation
//! (`tests/sim`) drives the same code under its seeded scheduler.
//!
//! Owns: the `RawNode` and its `MemoryStorage`, the Readies in flight
//! ([`super::in_flight`]), the reads waiting for their read index, the
//! membership bookkeeping ([`super::membership`]), leadership transfers
//! waiting to complete.
//!
//! Guarantees (each effect goes out through [`RaftIo`], in this order):
//! - every Ready is handed to persistence without waiting (several may be
//!   in flight); while `max_inflight_bytes` of them wait no new Ready is
//!   handed out ([`RaftCore::accepting`] tells the driver to stop taking
//!   client requests too);
//! - a Ready's committed entries go to apply when it is handed out, after
//!   it was submitted to persistence: raft hands out only entries durable
//!   here, and a snapshot the apply makes is then queued behind the
//!   HardState committing it (docs/design.md §5); committed membership
//!   changes are applied to raft first;
//! - on [`RaftCore::persisted`]`(n)` the entries, snapshot and HardState of
//!   every Ready ≤ n go into `MemoryStorage`, then `on_persisted(n)`, then
//!   their messages go out (a leader's appends at hand-out instead when
//!   `send_appends_early` is set), then their snapshots go to apply. A
//!   Ready that needs no persistence is released as soon as every earlier
//!   one is;
//! - a snapshot of the state machine becomes a raft snapshot with the
//!   configuration as of its index, is queued for persistence, and the log
//!   is compacted keeping `snapshot_catchup_entries`;
//! - a peer's `MsgSnap` is stepped only through
//!   [`RaftCore::step_received_snapshot`], once its state is here.
//!
//! May not touch: files, channels, the clock, the state machine — each is
//! the driver's, reached through [`RaftIo`] (and callers, through
//! [`Reply`]). Nothing in it depends on a runtime.

use super::envelope::RequestId;
use super::error::NodeError;
use super::in_flight::{InFlight, InFlightReadies};
use super::mailbox::{MembershipChange, NodeStatus};
use super::membership::Membership;
pub use super::membership::PeerChange;
use crate::metrics as names;
use crate::raft::{MemoryStorage, RawNode, Ready, SnapshotStatus, StateRole, Storage};
use crate::raftpb::{Entry, EntryType, Message, MessageType, Snapshot};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What became of a message handed to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the peer (or, for a snapshot, its transfer started; raft
    /// hears how it went through [`RaftCore::snapshot_reported`]).
    Queued,
    /// The peer cannot be reached now.
    Unreachable,
    /// A snapshot's transfer already finished, this way.
    Snapshot(SnapshotStatus),
}

/// The effects of the raft core, carried out by its driver. `P` is what
/// waits for a proposal, `R` what waits for a read.
pub trait RaftIo<P, R> {
    /// Queue the Ready's entries, HardState and snapshot for persistence;
    /// returns the bytes it holds (for back-pressure).
    fn persist_ready(&mut self, ready: &Ready) -> Result<usize, NodeError>;
    /// Queue a snapshot made here for saving (behind every queued Ready).
    fn persist_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError>;
    /// Send a message to its peer.
    fn send(&mut self, message: Message) -> Sent;
    /// A member was added or moved (its peer address) or removed.
    fn peer_changed(&mut self, change: PeerChange);
    /// These proposers' entries were appended; answer each when its entry
    /// applies.
    fn proposed(&mut self, proposers: Vec<P>);
    /// These proposers' entries were refused.
    fn refused(&mut self, proposers: Vec<P>, error: NodeError);
    /// Committed entries, in log order: apply them.
    fn apply(&mut self, entries: Vec<Entry>);
    /// A snapshot from the leader is durable here: restore the state
    /// machine from it (before any later entry).
    fn restore(&mut self, snapshot: Snapshot);
    /// Serve `reader` once applied ≥ `index`.
    fn read_at(&mut self, index: u64, reader: R);
    /// Refuse `reader`.
    fn read_refused(&mut self, reader: R, error: NodeError);
    /// Whether the reader gave up (its entry is then dropped).
    fn reader_gone(&self, reader: &R) -> bool;
}

/// Where the outcome of a request the core answers itself goes: a
/// membership change (the index it applied at) or a leadership transfer.
pub trait Reply<T> {
    /// Answers the caller (who may be gone).
    fn answer(self, outcome: Result<T, NodeError>);
    /// Whether the caller gave up (its entry is then dropped).
    fn is_gone(&self) -> bool;
}

/// The settings the core takes from `NodeConfig`.
#[derive(Debug, Clone, Copy)]
pub struct CoreSettings {
    /// `NodeConfig::send_appends_early`.
    pub send_appends_early: bool,
    /// `NodeConfig::lease_reads`.
    pub lease_reads: bool,
    /// `NodeConfig::max_inflight_bytes`.
    pub max_inflight_bytes: usize,
    /// `NodeConfig::snapshot_catchup_entries`.
    pub snapshot_catchup_entries: u64,
}

/// The raft actor's state and rules. `P` waits for a proposal, `R` for a
/// read, `M` for a membership change, `T` for a leadership transfer.
pub struct RaftCore<P, R, M, T> {
    id: u64,
    raw: RawNode<MemoryStorage>,
    settings: CoreSettings,
    in_flight: InFlightReadies,
    acked: u64,
    /// The next request sequence number (read contexts and membership
    /// request ids).
    next_seq: u64,
    pending_reads: HashMap<u64, R>,
    membership: Membership<M>,
    pending_transfers: Vec<(u64, T)>,
    leader: u64,
    /// Where the persisted term is published for the handle.
    term: Arc<AtomicU64>,
    node_label: String,
    /// Per-Ready metric handles, looked up once (a lookup by name hashes
    /// and allocates the label).
    ready_handling: metrics::Histogram,
    committed_total: metrics::Counter,
    failed_total: metrics::Counter,
    /// The index of the last membership change handed out for
    /// application (0: none), for [`RaftCore::waits_for_applied`].
    last_conf_change_index: u64,
    _proposer: std::marker::PhantomData<fn(P)>,
}

impl<P, R, M: Reply<u64>, T: Reply<()>> RaftCore<P, R, M, T> {
    /// A core over `raw`, booted from the snapshot at
    /// `boot_snapshot_index` (0: none). Read contexts and membership
    /// requests are numbered from `first_request_seq`, which must not
    /// repeat one a previous life of this node used (a late answer to an
    /// old request would otherwise answer a new one).
    pub fn new(
        raw: RawNode<MemoryStorage>,
        boot_snapshot_index: u64,
        settings: CoreSettings,
        first_request_seq: u64,
        term: Arc<AtomicU64>,
    ) -> RaftCore<P, R, M, T> {
        let id = raw.raft.id;
        let leader = raw.raft.soft_state().leader_id;
        let conf_state = raw.status().conf_state;
        let node_label = id.to_string();
        record_leadership(&node_label, leader, id);
        let label = names::NODE_LABEL;
        RaftCore {
            id,
            raw,
            settings,
            in_flight: InFlightReadies::new(settings.max_inflight_bytes),
            acked: 0,
            next_seq: first_request_seq,
            pending_reads: HashMap::new(),
            membership: Membership::new(id, boot_snapshot_index, conf_state),
            pending_transfers: Vec::new(),
            leader,
            term,
            ready_handling: metrics::histogram!(names::READY_HANDLING_DURATION_SECONDS, label => node_label.clone()),
            committed_total: metrics::counter!(names::PROPOSALS_COMMITTED_TOTAL, label => node_label.clone()),
            failed_total: metrics::counter!(names::PROPOSALS_FAILED_TOTAL, label => node_label.clone()),
            node_label,
            last_conf_change_index: 0,
            _proposer: std::marker::PhantomData,
        }
    }

    /// The raft core (for status and the simulation's checks).
    pub fn raw(&self) -> &RawNode<MemoryStorage> {
        &self.raw
    }

    /// Whether new client requests may be taken (the bytes in flight are
    /// under the cap).
    pub fn accepting(&self) -> bool {
        self.in_flight.accepting()
    }

    /// Whether a Ready waits for persistence.
    pub fn awaiting_persistence(&self) -> bool {
        self.in_flight.awaiting_persistence()
    }

    /// Whether nothing is in flight and raft has nothing to hand out.
    pub fn idle(&self) -> bool {
        self.in_flight.is_empty() && !self.raw.has_ready()
    }

    /// A clock tick: raft's timers, and forgetting callers that gave up.
    pub fn tick<I: RaftIo<P, R>>(&mut self, io: &I) {
        self.raw.tick();
        self.pending_reads
            .retain(|_, reader| !io.reader_gone(reader));
        self.membership.sweep();
        self.pending_transfers.retain(|(_, reply)| !reply.is_gone());
    }

    /// Steps a peer's message. A MsgSnap is dropped: it is accepted only
    /// through [`RaftCore::step_received_snapshot`].
    pub fn step(&mut self, message: Message) {
        if message.msg_type() == MessageType::MsgSnap {
            tracing::warn!(
                node = self.id,
                from = message.from,
                "MsgSnap outside a snapshot transfer dropped"
            );
            return;
        }
        self.step_received_snapshot(message);
    }

    /// Steps a message whose state (if it is a MsgSnap) is durable here.
    pub fn step_received_snapshot(&mut self, message: Message) {
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(node = self.id, %error, "peer message refused");
        }
    }

    /// A snapshot sent to `to` was delivered or failed.
    pub fn snapshot_reported(&mut self, to: u64, status: SnapshotStatus) {
        self.raw.report_snapshot(to, status);
    }

    /// The state machine applied through `index`.
    pub fn applied(&mut self, index: u64) {
        self.raw.advance_apply(index);
    }

    /// Whether raft needs to hear of the state machine's progress as soon
    /// as it is made ([`RaftCore::applied`]): it holds committed entries or
    /// a membership step back until then, or a membership change handed
    /// out is not known applied (an election refuses to start over one).
    /// Otherwise the driver may report the applied index when it next
    /// handles an event, sparing a wake of its loop per applied batch.
    pub fn waits_for_applied(&self) -> bool {
        self.raw.waits_for_applied() || self.last_conf_change_index > self.raw.raft.raft_log.applied
    }

    /// Proposes `data` in one raft step (one `MsgProp` of many entries,
    /// forwarded as one to the leader), `proposers` in the same order.
    pub fn propose<I: RaftIo<P, R>>(&mut self, data: Vec<Vec<u8>>, proposers: Vec<P>, io: &mut I) {
        if data.is_empty() {
            return;
        }
        match self.raw.propose_many(data) {
            Ok(()) => io.proposed(proposers),
            Err(error) => {
                self.failed_total.increment(proposers.len() as u64);
                io.refused(proposers, NodeError::refused(error, self.leader));
            }
        }
    }

    /// Checks and proposes a membership change, the state machine having
    /// applied through `applied`; `reply` is answered once it applies to
    /// raft here, or at once with why it cannot.
    pub fn change_membership(&mut self, changes: Vec<MembershipChange>, applied: u64, reply: M) {
        // The caller may have seen an earlier change applied before the
        // driver told the core: raft must know, or it would call the
        // change pending.
        self.raw.advance_apply(applied);
        let id = RequestId {
            node_id: self.id,
            seq: self.next_request_seq(),
        };
        if let Err((error, reply)) = self.membership.propose(&mut self.raw, changes, id, reply) {
            reply.answer(Err(error));
        }
    }

    /// Asks raft for a read index for `reader` (from the leader's lease
    /// when `lease`).
    pub fn read_index<I: RaftIo<P, R>>(&mut self, reader: R, lease: bool, io: &mut I) {
        if lease && !self.settings.lease_reads {
            io.read_refused(reader, NodeError::LeaseReadsDisabled);
            return;
        }
        let seq = self.next_request_seq();
        let mut context = self.id.to_be_bytes().to_vec();
        context.extend_from_slice(&seq.to_be_bytes());
        let asked = if lease {
            self.raw.read_index_by_lease(context)
        } else {
            self.raw.read_index(context)
        };
        match asked {
            Ok(()) => {
                self.pending_reads.insert(seq, reader);
            }
            Err(error) => io.read_refused(reader, NodeError::refused(error, self.leader)),
        }
    }

    fn next_request_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Hands leadership to `to`; `reply` is answered once this node sees
    /// `to` lead.
    pub fn transfer_leader(&mut self, to: u64, reply: T) {
        if !self.raw.status().conf_state.voters.contains(&to) {
            reply.answer(Err(NodeError::UnknownMember { node_id: to }));
            return;
        }
        if self.leader == to {
            reply.answer(Ok(()));
            return;
        }
        self.raw.transfer_leader(to);
        self.pending_transfers.push((to, reply));
    }

    /// Persistence acknowledged every Ready numbered up to `number`:
    /// releases them. Returns whether any was released.
    pub fn persisted<I: RaftIo<P, R>>(
        &mut self,
        number: u64,
        io: &mut I,
    ) -> Result<bool, NodeError> {
        self.acked = self.acked.max(number);
        self.release(io)
    }

    /// Turns the state machine's snapshot `data` at `index` into a raft
    /// snapshot, queues it for saving, and compacts the log behind it.
    /// Returns whether one was made (not when a newer snapshot from the
    /// leader arrived meanwhile).
    pub fn make_snapshot<I: RaftIo<P, R>>(
        &mut self,
        index: u64,
        data: Vec<u8>,
        io: &mut I,
    ) -> Result<bool, NodeError> {
        let conf_state = self.membership.conf_state_at(index);
        let store = self.raw.store_mut();
        let snapshot = match store.create_snapshot(index, Some(conf_state), data) {
            Ok(snapshot) => snapshot,
            Err(crate::raft::StorageError::SnapshotOutOfDate { .. }) => return Ok(false),
            Err(error) => return Err(NodeError::RaftLog(error.to_string())),
        };
        io.persist_snapshot(snapshot)?;
        metrics::counter!(names::SNAPSHOT_COUNT, names::NODE_LABEL => self.node_label.clone())
            .increment(1);
        let compact_index = index.saturating_sub(self.settings.snapshot_catchup_entries);
        let store = self.raw.store_mut();
        let first_index = store
            .first_index()
            .map_err(|e| NodeError::RaftLog(e.to_string()))?;
        if compact_index >= first_index {
            store
                .compact(compact_index)
                .map_err(|e| NodeError::RaftLog(e.to_string()))?;
        }
        self.membership.snapshot_made(index);
        Ok(true)
    }

    /// Hands out Readies while the in-flight byte budget allows, releasing
    /// those that need no persistence. Returns whether anything was handed
    /// out or released.
    pub fn advance<I: RaftIo<P, R>>(&mut self, io: &mut I) -> Result<bool, NodeError> {
        let mut moved = false;
        while self.in_flight.accepting() && self.raw.has_ready() {
            self.hand_out(io)?;
            moved = true;
        }
        Ok(moved)
    }

    fn hand_out<I: RaftIo<P, R>>(&mut self, io: &mut I) -> Result<(), NodeError> {
        let started = Instant::now();
        let mut ready = self.raw.ready();
        self.raw.advance_append_async(&ready);
        if let Some(soft_state) = ready.soft_state
            && soft_state.leader_id != self.leader
        {
            self.leader_changed(soft_state.leader_id, soft_state.role);
        }
        if let Some(snapshot) = &ready.snapshot {
            let metadata = &snapshot.metadata;
            self.membership
                .snapshot_installed(metadata.index, metadata.conf_state.clone());
        }
        for read_state in std::mem::take(&mut ready.read_states) {
            self.forward_read(read_state.index, &read_state.request_ctx, io);
        }
        let committed = std::mem::take(&mut ready.committed_entries);
        let mut appends_sent = false;
        if self.settings.send_appends_early && !ready.append_messages.is_empty() {
            let appends = std::mem::take(&mut ready.append_messages);
            self.send_messages(appends, io);
            appends_sent = true;
        }
        let mut flight = InFlight {
            ready,
            submitted: false,
            bytes: 0,
            appends_sent,
        };
        if flight.ready.needs_persistence() {
            flight.bytes = io.persist_ready(&flight.ready)?;
            flight.submitted = true;
        }
        self.in_flight.push(flight);
        // After the submit: see the module's guarantees.
        self.forward_committed(committed, io);
        self.ready_handling.record(started.elapsed());
        // A Ready needing no persistence goes out once every earlier one
        // has.
        self.release(io)?;
        Ok(())
    }

    fn leader_changed(&mut self, leader: u64, role: StateRole) {
        tracing::info!(node = self.id, leader, ?role, "leader changed");
        if leader != 0 {
            metrics::counter!(names::LEADER_CHANGES_SEEN_TOTAL, names::NODE_LABEL => self.node_label.clone())
                .increment(1);
        }
        self.leader = leader;
        record_leadership(&self.node_label, leader, self.id);
        let (answered, waiting) = std::mem::take(&mut self.pending_transfers)
            .into_iter()
            .partition::<Vec<_>, _>(|(to, _)| *to == leader);
        self.pending_transfers = waiting;
        for (_, reply) in answered {
            reply.answer(Ok(()));
        }
    }

    fn forward_read<I: RaftIo<P, R>>(&mut self, index: u64, context: &[u8], io: &mut I) {
        let Some((node, seq)) = context.split_at_checked(8) else {
            return;
        };
        if node != self.id.to_be_bytes() {
            return;
        }
        let Ok(seq) = <[u8; 8]>::try_from(seq) else {
            return;
        };
        if let Some(reader) = self.pending_reads.remove(&u64::from_be_bytes(seq)) {
            io.read_at(index, reader);
        }
    }

    /// Releases, in order, the Readies that are acknowledged (or needed no
    /// persistence): into `MemoryStorage`, `on_persisted`, messages out,
    /// snapshots to apply. Returns whether any was released.
    fn release<I: RaftIo<P, R>>(&mut self, io: &mut I) -> Result<bool, NodeError> {
        let started = Instant::now();
        let released = self.in_flight.take_released(self.acked);
        let Some(last) = released.last() else {
            return Ok(false);
        };
        let last_number = last.ready.number;
        for flight in &released {
            let store = self.raw.store_mut();
            let ready = &flight.ready;
            if let Some(snapshot) = &ready.snapshot {
                store
                    .apply_snapshot(snapshot.clone())
                    .map_err(|e| NodeError::RaftLog(e.to_string()))?;
            }
            store
                .append(&ready.entries)
                .map_err(|e| NodeError::RaftLog(e.to_string()))?;
            if let Some(hard_state) = ready.hard_state {
                store.set_hard_state(hard_state);
                self.term.store(hard_state.term, Ordering::Relaxed);
            }
        }
        self.raw.on_persisted(last_number);
        for flight in released {
            let InFlight {
                ready,
                appends_sent,
                ..
            } = flight;
            if !appends_sent {
                self.send_messages(ready.append_messages, io);
            }
            self.send_messages(ready.messages, io);
            if let Some(snapshot) = ready.snapshot {
                io.restore(snapshot);
            }
            debug_assert!(
                ready.committed_entries.is_empty(),
                "committed entries go to apply when their Ready is handed out"
            );
        }
        self.ready_handling.record(started.elapsed());
        Ok(true)
    }

    /// Applies committed configuration changes to raft and hands the
    /// entries to apply.
    ///
    /// Raft hands out only committed entries that are durable in this
    /// node's WAL, and a snapshot's restore goes out (at its Ready's
    /// release) before any entry after it can be handed out, so apply sees
    /// restores and entries in log order. The commit index that made them
    /// committed may not be durable yet; docs/design.md §3.4 says why
    /// restart and `force_new_cluster` are correct all the same.
    fn forward_committed<I: RaftIo<P, R>>(&mut self, committed: Vec<Entry>, io: &mut I) {
        if committed.is_empty() {
            return;
        }
        for entry in &committed {
            if is_conf_change(entry) {
                self.last_conf_change_index = entry.index;
            }
            for change in self.membership.apply_committed(&mut self.raw, entry) {
                io.peer_changed(change);
            }
        }
        self.committed_total.increment(committed.len() as u64);
        io.apply(committed);
    }

    fn send_messages<I: RaftIo<P, R>>(&mut self, messages: Vec<Message>, io: &mut I) {
        for message in messages {
            let to = message.to;
            let msg_type = message.msg_type();
            match (msg_type, io.send(message)) {
                (_, Sent::Snapshot(status)) => self.raw.report_snapshot(to, status),
                (MessageType::MsgApp, Sent::Unreachable) => self.raw.report_unreachable(to),
                (MessageType::MsgHeartbeat, Sent::Unreachable) => {
                    metrics::counter!(names::HEARTBEAT_SEND_FAILURES_TOTAL, names::NODE_LABEL => self.node_label.clone())
                        .increment(1);
                }
                _ => {}
            }
        }
    }

    /// The node's status; `applied` is the state machine's applied index.
    pub fn status(&self, applied: u64) -> NodeStatus {
        let status = self.raw.status();
        let leader = status.soft_state.leader_id;
        NodeStatus {
            id: self.id,
            leader: (leader != 0).then_some(leader),
            term: status.hard_state.term,
            commit: status.hard_state.commit,
            applied,
            snapshot_index: self.raw.store().snapshot_index(),
            first_index: self.raw.store().first_index().unwrap_or(0),
            role: status.soft_state.role,
            voters: status.conf_state.voters,
            voters_outgoing: status.conf_state.voters_outgoing,
            learners: status.conf_state.learners,
        }
    }
}

/// Publishes whether node `id` knows a leader and is the leader.
fn record_leadership(node_label: &str, leader: u64, id: u64) {
    metrics::gauge!(names::HAS_LEADER, names::NODE_LABEL => node_label.to_string())
        .set(if leader != 0 { 1.0 } else { 0.0 });
    metrics::gauge!(names::IS_LEADER, names::NODE_LABEL => node_label.to_string())
        .set(if leader == id { 1.0 } else { 0.0 });
}

/// Whether `entry` is a membership change (either encoding).
fn is_conf_change(entry: &Entry) -> bool {
    entry.entry_type == EntryType::EntryConfChange as i32
        || entry.entry_type == EntryType::EntryConfChangeV2 as i32
}
