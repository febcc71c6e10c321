//! The raft actor: the tokio task that owns the raft core (`RawNode`) and
//! its `MemoryStorage`, and drives them by the protocol of
//! `raft::raw_node` with pipelined persistence.
//!
//! Owns: the `RawNode`, the Readies in flight ([`super::in_flight`]), the
//! tick timer, the reads waiting for their read index, the membership
//! bookkeeping ([`super::membership`]), the persistence actor's lifetime.
//!
//! Guarantees:
//! - every Ready is handed to the persistence actor without waiting
//!   (several may be in flight); while `max_inflight_bytes` of them wait,
//!   the actor takes no client request and hands out no new Ready
//!   (back-pressure), but keeps ticking and stepping peer messages;
//! - on `Persisted{n}` the entries, snapshot and HardState of every Ready
//!   ≤ n go into `MemoryStorage`, then `on_persisted(n)`, then their
//!   messages go out (a leader's appends go out at once instead when
//!   `send_appends_early` is on, the default), then their snapshots go to
//!   the apply actor. A Ready that needs no persistence is not sent to the
//!   persistence actor: it is released as soon as every earlier Ready is;
//! - a Ready's committed entries (durable here already) go to the apply
//!   actor when the Ready is handed out, right after it was submitted, not
//!   when it is released: the HardState carrying their commit index may
//!   become durable later (docs/design.md §5);
//! - committed configuration changes are applied to raft here
//!   (`apply_conf_change`) when their Ready is handed out, before the
//!   entries are forwarded: membership is raft's business and the state machine
//!   only needs the applied index to move;
//! - a proposal is registered with the apply actor (by its
//!   [`RequestId`]) on the same ordered channel as committed entries, so
//!   the registration always arrives before the entry can apply;
//! - a failed persistence (WAL write or fdatasync, full disk) stops the
//!   node: nothing more is sent or acknowledged, and the failure is
//!   published for the handle before any waiter is dropped, so every
//!   caller, then and later, is told the cause (`NodeError::Storage`);
//! - membership requests are checked and proposed, and committed changes
//!   applied to raft, by [`super::membership`]; the caller is answered when
//!   the change is applied to raft here (the handle then waits for the
//!   local apply), and the transport learns each added member's peer
//!   address then;
//! - snapshot data from the apply actor becomes a raft snapshot in
//!   `MemoryStorage` with the configuration as of its index, is saved by
//!   the persistence actor (queued behind every Ready it covers), and the
//!   log is compacted keeping `snapshot_catchup_entries` for slow
//!   followers.
//!
//! May not touch: files (the persistence actor's), the state machine (the
//! apply actor's). It never blocks: the persistence queue is unbounded and
//! bounded here by bytes in flight; the transport does not block.

use super::config::NodeConfig;
use super::envelope::RequestId;
use super::error::NodeError;
use super::in_flight::{InFlight, InFlightReadies};
use super::mailbox::{
    ApplyMsg, ClientRequest, Control, NodeStatus, ProposalReply, Read, SnapshotData,
};
use super::membership::Membership;
use super::snapshot_transfer::{SnapshotTransfers, TransferEvent};
use super::test_panic::TestPanic;
use crate::metrics as names;
use crate::persist::{PersistActor, PersistSender, PersistedWatch, ReadyToPersist};
use crate::raft::{MemoryStorage, RawNode, StateRole};
use crate::raftpb::{Entry, Message, MessageType};
use crate::state_machine::StateMachine;
use crate::storage::DataDirLock;
use crate::transport::{IncomingSnapshot, PeerInbox, Transport};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Graceful,
    Crash,
}

/// Requests taken from one queue before handing out a Ready, so that one
/// Ready (one fsync) carries many of them.
const MAX_BATCH: usize = 256;
/// How long a graceful shutdown waits for in-flight Readies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the raft actor is started with.
pub(crate) struct RaftActorParts<S: StateMachine> {
    /// The raft core over the rebuilt `MemoryStorage`.
    pub(crate) raw: RawNode<MemoryStorage>,
    /// The persistence actor (shut down when the raft actor ends).
    pub(crate) persist: PersistActor,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) peers: PeerInbox,
    pub(crate) requests: mpsc::Receiver<ClientRequest<S>>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) apply: mpsc::UnboundedSender<ApplyMsg<S>>,
    /// The apply actor's applied index.
    pub(crate) applied: watch::Receiver<u64>,
    pub(crate) apply_task: JoinHandle<Result<(), NodeError>>,
    /// Snapshot data from the apply actor.
    pub(crate) snapshots: mpsc::UnboundedReceiver<SnapshotData>,
    /// The snapshot (or 0) the node booted from.
    pub(crate) boot_snapshot_index: u64,
    /// Where the failure that stops the node is published, before anything
    /// is dropped, so that callers learn the cause (not just `Stopped`).
    pub(crate) failure: Arc<OnceLock<NodeError>>,
    /// Where the persisted term is published for the handle.
    pub(crate) term: Arc<AtomicU64>,
    /// The snapshot directory (state files are sent from and received
    /// into it).
    pub(crate) snap_dir: PathBuf,
    /// The data directory's lock: released only once the persistence
    /// actor has stopped, so a next node cannot open the directory while
    /// this one may still write to it.
    pub(crate) data_dir_lock: DataDirLock,
    /// The test-only panic hook (`super::test_panic`).
    pub(crate) test_panic: Option<TestPanic>,
}

/// The raft actor's state.
pub(crate) struct RaftActor<S: StateMachine> {
    id: u64,
    raw: RawNode<MemoryStorage>,
    persist: Option<PersistActor>,
    sender: PersistSender,
    persisted: PersistedWatch,
    acked: u64,
    transport: Arc<dyn Transport>,
    peers: PeerInbox,
    requests: mpsc::Receiver<ClientRequest<S>>,
    control: mpsc::UnboundedReceiver<Control>,
    apply: mpsc::UnboundedSender<ApplyMsg<S>>,
    applied: watch::Receiver<u64>,
    apply_task: Option<JoinHandle<Result<(), NodeError>>>,
    in_flight: InFlightReadies,
    send_appends_early: bool,
    lease_reads: bool,
    /// Raft takes a `MsgProp` whole or not at all, and always takes one
    /// while nothing is uncommitted; a batch is cut at this many payload
    /// bytes so the uncommitted-entry limit holds for gathered proposals.
    max_batch_payload_bytes: u64,
    tick_interval: Duration,
    next_seq: u64,
    pending_reads: HashMap<u64, Read<S>>,
    membership: Membership,
    pending_transfers: Vec<(u64, oneshot::Sender<Result<(), NodeError>>)>,
    snapshots: mpsc::UnboundedReceiver<SnapshotData>,
    snapshot_catchup_entries: u64,
    transfers: SnapshotTransfers,
    transfer_events: mpsc::UnboundedReceiver<TransferEvent>,
    incoming_snapshots: mpsc::UnboundedReceiver<IncomingSnapshot>,
    failure: Arc<OnceLock<NodeError>>,
    term: Arc<AtomicU64>,
    leader: u64,
    node_label: String,
    /// Handles of the per-Ready metrics, looked up once (a lookup by name
    /// hashes and allocates the label).
    ready_handling: metrics::Histogram,
    committed_total: metrics::Counter,
    failed_total: metrics::Counter,
    test_panic: Option<TestPanic>,
    /// Last, so that it drops after `persist` (whose drop joins the
    /// persistence thread) even when this actor unwinds from a panic.
    data_dir_lock: DataDirLock,
}

/// A starting point for request sequence numbers that a previous life of
/// this node did not use: the wall clock in nanoseconds.
pub(crate) fn boot_sequence() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
}

impl<S: StateMachine> RaftActor<S> {
    /// An actor over `parts` with the settings of `config`.
    pub(crate) fn new(parts: RaftActorParts<S>, config: &NodeConfig) -> RaftActor<S> {
        let sender = parts.persist.sender();
        let persisted = parts.persist.watch();
        let leader = parts.raw.raft.soft_state().leader_id;
        let conf_state = parts.raw.status().conf_state;
        let node_label = config.node_id.to_string();
        record_leadership(&node_label, leader, config.node_id);
        let label = names::NODE_LABEL;
        let (events, transfer_events) = mpsc::unbounded_channel();
        let (sink, incoming_snapshots) = mpsc::unbounded_channel();
        parts.transport.accept_snapshots(sink);
        let transfers = SnapshotTransfers::new(
            config.node_id,
            parts.snap_dir,
            Arc::clone(&parts.transport),
            events,
        );
        RaftActor {
            id: config.node_id,
            raw: parts.raw,
            persist: Some(parts.persist),
            sender,
            persisted,
            acked: 0,
            transport: parts.transport,
            peers: parts.peers,
            requests: parts.requests,
            control: parts.control,
            apply: parts.apply,
            applied: parts.applied,
            apply_task: Some(parts.apply_task),
            in_flight: InFlightReadies::new(config.max_inflight_bytes),
            send_appends_early: config.send_appends_early,
            lease_reads: config.lease_reads,
            max_batch_payload_bytes: config.max_uncommitted_entries_bytes,
            tick_interval: config.tick_interval,
            // Distinct from the handle's proposal sequence only by being a
            // different map; reads and membership ids never meet proposals.
            next_seq: boot_sequence(),
            pending_reads: HashMap::new(),
            membership: Membership::new(config.node_id, parts.boot_snapshot_index, conf_state),
            pending_transfers: Vec::new(),
            snapshots: parts.snapshots,
            snapshot_catchup_entries: config.snapshot_catchup_entries,
            transfers,
            transfer_events,
            incoming_snapshots,
            failure: parts.failure,
            term: parts.term,
            leader,
            ready_handling: metrics::histogram!(names::READY_HANDLING_DURATION_SECONDS, label => node_label.clone()),
            committed_total: metrics::counter!(names::PROPOSALS_COMMITTED_TOTAL, label => node_label.clone()),
            failed_total: metrics::counter!(names::PROPOSALS_FAILED_TOTAL, label => node_label.clone()),
            node_label,
            data_dir_lock: parts.data_dir_lock,
            test_panic: parts.test_panic,
        }
    }

    /// Runs until shutdown or a fatal failure; then drains what is in
    /// flight (on shutdown), stops the apply actor and the persistence
    /// actor. Returns the failure that stopped the node, if any.
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        let outcome = self.main_loop().await;
        match &outcome {
            Ok(Exit::Graceful) => self.drain().await,
            Ok(Exit::Crash) => tracing::warn!(node = self.id, "stopping without drain"),
            // The apply actor ended: its task tells why, below.
            Err(NodeError::Stopped) => {}
            Err(error) => {
                tracing::error!(node = self.id, %error, "raft actor stops");
                // Published before the apply actor drops its waiters, which
                // then read it.
                let _ = self.failure.set(error.clone());
            }
        }
        let outcome = outcome.map(|_| ());
        self.pending_reads.clear();
        let RaftActor {
            persist,
            apply,
            apply_task,
            failure,
            data_dir_lock,
            ..
        } = self;
        drop(apply);
        let apply_outcome = match apply_task {
            Some(task) => task
                .await
                .unwrap_or_else(|join| Err(NodeError::task_ended("apply", join))),
            None => Ok(()),
        };
        // "Stopped" from the main loop means the apply actor ended first:
        // its own outcome is the cause.
        let outcome = match (outcome, &apply_outcome) {
            (Err(NodeError::Stopped), Err(cause)) => Err(cause.clone()),
            (outcome, _) => outcome,
        };
        let persist_outcome = match persist {
            Some(persist) => tokio::task::spawn_blocking(move || persist.shutdown())
                .await
                .unwrap_or_else(|_| Err(Arc::new(crate::persist::PersistError::Stopped)))
                .map_err(NodeError::Storage),
            None => Ok(()),
        };
        drop(data_dir_lock);
        let outcome = outcome.and(apply_outcome).and(persist_outcome);
        if let Err(error) = &outcome {
            let _ = failure.set(error.clone());
        }
        outcome
    }

    async fn main_loop(&mut self) -> Result<Exit, NodeError> {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.hand_out_readies()?;
            let accepting = self.in_flight.accepting();
            tokio::select! {
                biased;
                persisted = self.persisted.changed() => {
                    let persisted = persisted.map_err(NodeError::Storage)?;
                    self.acked = self.acked.max(persisted.number);
                    self.release()?;
                }
                control = self.control.recv() => match control {
                    Some(Control::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(Control::Shutdown) | None => return Ok(Exit::Graceful),
                    Some(Control::Crash) => return Ok(Exit::Crash),
                    Some(Control::TransferLeader { to, reply }) => self.transfer_leader(to, reply),
                },
                Some(snapshot) = self.snapshots.recv() => self.make_snapshot(snapshot)?,
                Some(event) = self.transfer_events.recv() => match event {
                    TransferEvent::Sent { to, status } => {
                        self.transfers.reported(to, status);
                        self.raw.report_snapshot(to, status);
                    }
                    TransferEvent::Received(message) => self.step_snapshot(*message),
                },
                Some(incoming) = self.incoming_snapshots.recv() => self.transfers.receive(incoming),
                changed = self.applied.changed() => {
                    // The apply actor ended: it failed (its task says why).
                    changed.map_err(|_| NodeError::Stopped)?;
                    let applied = *self.applied.borrow_and_update();
                    self.raw.advance_apply(applied);
                }
                _ = ticker.tick() => {
                    self.raw.tick();
                    self.pending_reads.retain(|_, read| !read.is_closed());
                    self.membership.sweep();
                    self.pending_transfers.retain(|(_, reply)| !reply.is_closed());
                }
                Some(message) = self.peers.recv() => {
                    self.step(message);
                    for _ in 1..MAX_BATCH {
                        match self.peers.try_recv() {
                            Ok(message) => self.step(message),
                            Err(_) => break,
                        }
                    }
                }
                Some(request) = self.requests.recv(), if accepting => {
                    let mut proposals = Proposals::default();
                    self.handle_request(request, &mut proposals);
                    for _ in 1..MAX_BATCH {
                        match self.requests.try_recv() {
                            Ok(request) => self.handle_request(request, &mut proposals),
                            Err(_) => break,
                        }
                    }
                    self.propose(proposals);
                }
            }
        }
    }

    /// Waits (bounded) for the Readies in flight to be acknowledged and
    /// releases them.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.in_flight.awaiting_persistence() {
            match tokio::time::timeout_at(deadline, self.persisted.changed()).await {
                Ok(Ok(persisted)) => {
                    self.acked = self.acked.max(persisted.number);
                    if let Err(error) = self.release() {
                        tracing::warn!(node = self.id, %error, "while draining");
                        return;
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(node = self.id, %error, "persistence failed while draining");
                    return;
                }
                Err(_) => {
                    tracing::warn!(node = self.id, "in-flight Readies not acknowledged in time");
                    return;
                }
            }
        }
    }

    /// Steps a peer's message. A MsgSnap is accepted only through the
    /// snapshot transfer (its state file must be here first).
    fn step(&mut self, message: Message) {
        if message.msg_type() == MessageType::MsgSnap {
            tracing::warn!(
                node = self.id,
                from = message.from,
                "MsgSnap outside a snapshot transfer dropped"
            );
            return;
        }
        self.step_snapshot(message);
    }

    /// Steps a message whose state file (if it is a MsgSnap) is durable.
    fn step_snapshot(&mut self, message: Message) {
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(node = self.id, %error, "peer message refused");
        }
    }

    fn next_request_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Handles one client request; a proposal joins `proposals`, which
    /// are proposed together before any other kind of request (order is
    /// kept) and at the end of the pass.
    fn handle_request(&mut self, request: ClientRequest<S>, proposals: &mut Proposals<S>) {
        match request {
            ClientRequest::Propose { data, id, reply } => {
                TestPanic::fire(self.test_panic, TestPanic::Raft);
                let data_bytes = data.len() as u64;
                if proposals.payload_bytes.saturating_add(data_bytes) > self.max_batch_payload_bytes
                {
                    self.propose(std::mem::take(proposals));
                }
                proposals.payload_bytes = proposals.payload_bytes.saturating_add(data_bytes);
                proposals.data.push(data);
                proposals.waiters.push((id, reply));
            }
            ClientRequest::ChangeMembership { changes, reply } => {
                self.propose(std::mem::take(proposals));
                // The caller may have seen an earlier change applied (the
                // apply actor published it) before this actor read the
                // watch: raft must know, or it would call the change pending.
                let applied = *self.applied.borrow();
                self.raw.advance_apply(applied);
                let id = RequestId {
                    node_id: self.id,
                    seq: self.next_request_seq(),
                };
                if let Err((error, reply)) =
                    self.membership.propose(&mut self.raw, changes, id, reply)
                {
                    let _ = reply.send(Err(error));
                }
            }
            ClientRequest::Read { read, lease } => {
                self.propose(std::mem::take(proposals));
                self.read_index(read, lease);
            }
        }
    }

    /// Proposes the batch in one raft step (one `MsgProp` of many
    /// entries, forwarded as one to the leader) and registers its
    /// proposers with the apply actor, or refuses them all.
    fn propose(&mut self, proposals: Proposals<S>) {
        if proposals.data.is_empty() {
            return;
        }
        match self.raw.propose_many(proposals.data) {
            Ok(()) => {
                // Refused only when the apply actor ended; the callers
                // then see the node as stopped.
                let _ = self.apply.send(ApplyMsg::Register(proposals.waiters));
            }
            Err(error) => {
                self.failed_total.increment(proposals.waiters.len() as u64);
                let error = NodeError::refused(error, self.leader);
                for (_, reply) in proposals.waiters {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn read_index(&mut self, read: Read<S>, lease: bool) {
        if lease && !self.lease_reads {
            read.fail(NodeError::LeaseReadsDisabled);
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
                self.pending_reads.insert(seq, read);
            }
            Err(error) => read.fail(NodeError::refused(error, self.leader)),
        }
    }

    fn transfer_leader(&mut self, to: u64, reply: oneshot::Sender<Result<(), NodeError>>) {
        if !self.raw.status().conf_state.voters.contains(&to) {
            let _ = reply.send(Err(NodeError::UnknownMember { node_id: to }));
            return;
        }
        if self.leader == to {
            let _ = reply.send(Ok(()));
            return;
        }
        self.raw.transfer_leader(to);
        self.pending_transfers.push((to, reply));
    }

    /// Turns the apply actor's snapshot data into a raft snapshot, has it
    /// saved, and compacts the log behind it.
    fn make_snapshot(&mut self, snapshot: SnapshotData) -> Result<(), NodeError> {
        let SnapshotData { index, data } = snapshot;
        let conf_state = self.membership.conf_state_at(index);
        let store = self.raw.store_mut();
        let snapshot = match store.create_snapshot(index, Some(conf_state), data) {
            Ok(snapshot) => snapshot,
            // A newer snapshot arrived from the leader meanwhile.
            Err(crate::raft::StorageError::SnapshotOutOfDate { .. }) => return Ok(()),
            Err(error) => return Err(NodeError::RaftLog(error.to_string())),
        };
        let ticket = self
            .sender
            .save_snapshot(snapshot)
            .map_err(NodeError::Storage)?;
        let node = self.id;
        // A failed save also fails the persistence actor, which stops the
        // node through the persisted watch; this only says which save.
        tokio::spawn(async move {
            match ticket.wait().await {
                Ok(()) => tracing::info!(node, index, "snapshot saved"),
                Err(error) => tracing::error!(node, index, %error, "snapshot save failed"),
            }
        });
        metrics::counter!(names::SNAPSHOT_COUNT, names::NODE_LABEL => self.node_label.clone())
            .increment(1);
        let compact_index = index.saturating_sub(self.snapshot_catchup_entries);
        let store = self.raw.store_mut();
        let first_index = crate::raft::Storage::first_index(&*store)
            .map_err(|e| NodeError::RaftLog(e.to_string()))?;
        if compact_index >= first_index {
            store
                .compact(compact_index)
                .map_err(|e| NodeError::RaftLog(e.to_string()))?;
        }
        self.membership.snapshot_made(index);
        Ok(())
    }

    /// Hands out Readies while the in-flight byte budget allows.
    fn hand_out_readies(&mut self) -> Result<(), NodeError> {
        while self.in_flight.accepting() && self.raw.has_ready() {
            let started = Instant::now();
            let mut ready = self.raw.ready();
            self.raw.advance_append_async(&ready);
            if let Some(soft_state) = ready.soft_state {
                if soft_state.leader_id != self.leader {
                    self.leader_changed(soft_state.leader_id, soft_state.role);
                }
            }
            if let Some(snapshot) = &ready.snapshot {
                let metadata = &snapshot.metadata;
                self.membership
                    .snapshot_installed(metadata.index, metadata.conf_state.clone());
            }
            for read_state in std::mem::take(&mut ready.read_states) {
                self.forward_read(read_state.index, &read_state.request_ctx);
            }
            let committed = std::mem::take(&mut ready.committed_entries);
            let mut appends_sent = false;
            if self.send_appends_early && !ready.append_messages.is_empty() {
                let appends = std::mem::take(&mut ready.append_messages);
                self.send_messages(appends);
                appends_sent = true;
            }
            let mut flight = InFlight {
                ready,
                submitted: false,
                bytes: 0,
                appends_sent,
            };
            if flight.ready.needs_persistence() {
                let to_persist = ReadyToPersist::from_ready(&flight.ready);
                flight.bytes = to_persist.approx_bytes();
                self.sender.submit(to_persist).map_err(NodeError::Storage)?;
                flight.submitted = true;
            }
            self.in_flight.push(flight);
            // Committed entries are durable here already (raft hands out
            // only stable ones): they apply now, not once this Ready's
            // commit index is durable — one persistence round trip per
            // write instead of two. After the submit, so that a snapshot
            // the apply makes is queued behind the HardState committing it
            // (docs/design.md §5, "Applying before the commit index is
            // durable").
            self.forward_committed(committed);
            self.ready_handling.record(started.elapsed());
            // A Ready needing no persistence goes out once every earlier
            // Ready has.
            self.release()?;
        }
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
            let _ = reply.send(Ok(()));
        }
    }

    fn forward_read(&mut self, index: u64, context: &[u8]) {
        let Some((node, seq)) = context.split_at_checked(8) else {
            return;
        };
        if node != self.id.to_be_bytes() {
            return;
        }
        let Ok(seq) = <[u8; 8]>::try_from(seq) else {
            return;
        };
        if let Some(read) = self.pending_reads.remove(&u64::from_be_bytes(seq)) {
            let _ = self.apply.send(ApplyMsg::Read { index, read });
        }
    }

    /// Releases, in order, the Readies that are acknowledged (or needed no
    /// persistence): into `MemoryStorage`, `on_persisted`, messages out,
    /// committed entries to the apply actor.
    fn release(&mut self) -> Result<(), NodeError> {
        let started = Instant::now();
        let released = self.in_flight.take_released(self.acked);
        let Some(last) = released.last() else {
            return Ok(());
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
                self.send_messages(ready.append_messages);
            }
            self.send_messages(ready.messages);
            if let Some(snapshot) = ready.snapshot {
                let _ = self.apply.send(ApplyMsg::Restore(snapshot));
            }
            debug_assert!(
                ready.committed_entries.is_empty(),
                "committed entries go to the apply actor when their Ready is handed out"
            );
        }
        self.ready_handling.record(started.elapsed());
        Ok(())
    }

    /// Applies committed configuration changes to raft and hands the
    /// entries to the apply actor.
    ///
    /// Raft hands out only committed entries that are durable in this
    /// node's WAL, and a snapshot's restore is sent (at its Ready's
    /// release) before any entry after it can be handed out, so the apply
    /// actor sees restores and entries in log order. The commit index that
    /// made them committed may not be durable yet; docs/design.md §3.4 says
    /// why restart and `force_new_cluster` are correct all the same.
    fn forward_committed(&mut self, committed: Vec<Entry>) {
        if committed.is_empty() {
            return;
        }
        for entry in &committed {
            self.membership
                .apply_committed(&mut self.raw, &*self.transport, entry);
        }
        self.committed_total.increment(committed.len() as u64);
        let _ = self.apply.send(ApplyMsg::Committed(committed));
    }

    fn send_messages(&mut self, messages: Vec<Message>) {
        for message in messages {
            let to = message.to;
            let msg_type = message.msg_type();
            if msg_type == MessageType::MsgSnap {
                // Raft hears how it went once the follower confirmed.
                self.transfers.send(message);
                continue;
            }
            let sent = self.transport.send(message);
            match (msg_type, sent) {
                (MessageType::MsgApp, Err(_)) => self.raw.report_unreachable(to),
                (MessageType::MsgHeartbeat, Err(_)) => {
                    metrics::counter!(names::HEARTBEAT_SEND_FAILURES_TOTAL, names::NODE_LABEL => self.node_label.clone())
                        .increment(1);
                }
                _ => {}
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let status = self.raw.status();
        let leader = status.soft_state.leader_id;
        NodeStatus {
            id: self.id,
            leader: (leader != 0).then_some(leader),
            term: status.hard_state.term,
            commit: status.hard_state.commit,
            applied: *self.applied.borrow(),
            snapshot_index: self.raw.store().snapshot_index(),
            first_index: crate::raft::Storage::first_index(self.raw.store()).unwrap_or(0),
            role: status.soft_state.role,
            voters: status.conf_state.voters,
            voters_outgoing: status.conf_state.voters_outgoing,
            learners: status.conf_state.learners,
        }
    }
}

/// Client proposals gathered in one pass of the loop.
struct Proposals<S: StateMachine> {
    data: Vec<Vec<u8>>,
    payload_bytes: u64,
    waiters: Vec<(RequestId, ProposalReply<S::Response>)>,
}

impl<S: StateMachine> Default for Proposals<S> {
    fn default() -> Self {
        Proposals {
            data: Vec::new(),
            payload_bytes: 0,
            waiters: Vec::new(),
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
