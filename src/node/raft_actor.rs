//! The raft actor: the tokio task that drives the raft core
//! ([`super::raft_core`], which owns `RawNode`, `MemoryStorage` and the
//! rules of the node's event handling) from channels, a timer and the
//! persistence actor's acknowledgements, and carries out its effects.
//!
//! Owns: the core, the tick timer, the channels from the handle, the peers
//! and the apply actor, the snapshot transfers, the persistence actor's
//! lifetime and the data directory's lock.
//!
//! Guarantees:
//! - the core's rules (its module says them) hold: every event goes to the
//!   core, and its effects are carried out in the order it asks —
//!   persistence through the persistence actor's queue, messages through
//!   the transport (state files through the snapshot transfers), apply
//!   through one ordered channel to the apply actor;
//! - a proposal's registration (where its outcome goes) is held until the
//!   next message to the apply actor (committed entries, a snapshot, a
//!   read) and sent just before it, or at the next tick: it still arrives
//!   before its entry can apply, and one wake of the apply actor carries
//!   both. Woken twice in one pass, tokio hands one of the two tasks to
//!   its other worker, which it wakes for it (measured: one extra thread
//!   wake per write at one client, BENCHMARKS.md stop 36);
//! - the state machine's applied index is passed to raft at every pass of
//!   the loop, and awaited only while the core `waits_for_applied` (for
//!   the same reason: otherwise each applied batch would wake this task
//!   beside the proposer's);
//! - while the core is not `accepting` (too many bytes wait for
//!   persistence) no client request is taken, but ticks and peer messages
//!   still are; client requests are taken `MAX_BATCH` at a time and their
//!   proposals stepped as one `MsgProp`, cut at the uncommitted-entry
//!   limit;
//! - a failed persistence (WAL write or fdatasync, full disk) stops the
//!   node: nothing more is sent or acknowledged, and the failure is
//!   published for the handle before any waiter is dropped, so every
//!   caller, then and later, is told the cause (`NodeError::Storage`);
//! - a graceful shutdown waits (bounded) for the Readies in flight; the
//!   data directory's lock is released only after the persistence actor
//!   stopped.
//!
//! May not touch: files (the persistence actor's), the state machine (the
//! apply actor's). It never blocks: the persistence queue is unbounded and
//! bounded by the core's bytes in flight; the transport does not block.

use super::config::NodeConfig;
use super::envelope::RequestId;
use super::error::NodeError;
use super::mailbox::{
    ApplyMsg, ClientRequest, Control, IndexReply, ProposalReply, Read, SnapshotData, TransferReply,
};
use super::raft_core::{CoreSettings, PeerChange, RaftCore, RaftIo, Sent};
use super::snapshot_transfer::{SnapshotTransfers, TransferEvent};
use super::test_panic::TestPanic;
use crate::persist::{PersistActor, PersistSender, PersistedDoorbell, ReadyToPersist};
use crate::raft::{MemoryStorage, RawNode, Ready};
use crate::raftpb::{Entry, Message, MessageType, Snapshot};
use crate::state_machine::StateMachine;
use crate::storage::DataDirLock;
use crate::transport::{IncomingSnapshot, PeerInbox, Transport};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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

/// What waits for a proposal: its request id and where its outcome goes.
type Proposer<S> = (RequestId, ProposalReply<<S as StateMachine>::Response>);

/// The raft core as the node runs it: callers wait on oneshots.
type NodeRaftCore<S> = RaftCore<Proposer<S>, Read<S>, IndexReply, TransferReply>;

/// The raft actor's state: the core and the channels it is driven by.
pub(crate) struct RaftActor<S: StateMachine> {
    id: u64,
    core: NodeRaftCore<S>,
    persist: Option<PersistActor>,
    sender: PersistSender,
    persisted: PersistedDoorbell,
    transport: Arc<dyn Transport>,
    peers: PeerInbox,
    requests: mpsc::Receiver<ClientRequest<S>>,
    control: mpsc::UnboundedReceiver<Control>,
    apply: mpsc::UnboundedSender<ApplyMsg<S>>,
    /// Proposers not yet registered with the apply actor.
    unannounced: Vec<Proposer<S>>,
    applied: watch::Receiver<u64>,
    apply_task: Option<JoinHandle<Result<(), NodeError>>>,
    /// Raft takes a `MsgProp` whole or not at all, and always takes one
    /// while nothing is uncommitted; a batch is cut at this many payload
    /// bytes so the uncommitted-entry limit holds for gathered proposals.
    max_batch_payload_bytes: u64,
    tick_interval: Duration,
    snapshots: mpsc::UnboundedReceiver<SnapshotData>,
    transfers: SnapshotTransfers,
    transfer_events: mpsc::UnboundedReceiver<TransferEvent>,
    incoming_snapshots: mpsc::UnboundedReceiver<IncomingSnapshot>,
    failure: Arc<OnceLock<NodeError>>,
    test_panic: Option<TestPanic>,
    /// Last, so that it drops after `persist` (whose drop joins the
    /// persistence thread) even when this actor unwinds from a panic.
    data_dir_lock: DataDirLock,
}

/// The core's effects as the actors carry them out: persistence through
/// the persistence actor's queue, messages through the transport (state
/// files through the snapshot transfers), apply through the apply actor's
/// channel.
struct ActorIo<'a, S: StateMachine> {
    id: u64,
    sender: &'a PersistSender,
    apply: &'a mpsc::UnboundedSender<ApplyMsg<S>>,
    unannounced: &'a mut Vec<Proposer<S>>,
    transport: &'a dyn Transport,
    transfers: &'a mut SnapshotTransfers,
}

impl<S: StateMachine> ActorIo<'_, S> {
    /// Sends `message` to the apply actor, registering the proposers held
    /// so far just before it.
    fn send_to_apply_actor(&mut self, message: ApplyMsg<S>) {
        announce(self.apply, self.unannounced);
        // Refused only when the apply actor ended; the callers then see
        // the node as stopped.
        let _ = self.apply.send(message);
    }
}

/// Registers the proposers held in `unannounced` with the apply actor.
fn announce<S: StateMachine>(
    apply: &mpsc::UnboundedSender<ApplyMsg<S>>,
    unannounced: &mut Vec<Proposer<S>>,
) {
    if !unannounced.is_empty() {
        // Refused only when the apply actor ended (see `send_to_apply_actor`).
        let _ = apply.send(ApplyMsg::Register(std::mem::take(unannounced)));
    }
}

impl<S: StateMachine> RaftIo<Proposer<S>, Read<S>> for ActorIo<'_, S> {
    fn persist_ready(&mut self, ready: &Ready) -> Result<usize, NodeError> {
        let to_persist = ReadyToPersist::from_ready(ready);
        let bytes = to_persist.approx_bytes();
        self.sender.submit(to_persist).map_err(NodeError::Storage)?;
        Ok(bytes)
    }

    fn persist_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let index = snapshot.metadata.index;
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
        Ok(())
    }

    fn send(&mut self, message: Message) -> Sent {
        if message.msg_type() == MessageType::MsgSnap {
            self.transfers.send(message);
            return Sent::Queued;
        }
        match self.transport.send(message) {
            Ok(()) => Sent::Queued,
            Err(_) => Sent::Unreachable,
        }
    }

    fn peer_changed(&mut self, change: PeerChange) {
        match change {
            PeerChange::Reachable { node_id, peer_url } => {
                self.transport.add_peer(node_id, &peer_url)
            }
            PeerChange::Removed { node_id } => self.transport.remove_peer(node_id),
        }
    }

    fn proposed(&mut self, proposers: Vec<Proposer<S>>) {
        // Registered with the next message to the apply actor.
        self.unannounced.extend(proposers);
    }

    fn refused(&mut self, proposers: Vec<Proposer<S>>, error: NodeError) {
        for (_, reply) in proposers {
            let _ = reply.send(Err(error.clone()));
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        self.send_to_apply_actor(ApplyMsg::Committed(entries));
    }

    fn restore(&mut self, snapshot: Snapshot) {
        self.send_to_apply_actor(ApplyMsg::Restore(snapshot));
    }

    fn read_at(&mut self, index: u64, read: Read<S>) {
        self.send_to_apply_actor(ApplyMsg::Read { index, read });
    }

    fn read_refused(&mut self, read: Read<S>, error: NodeError) {
        read.fail(error);
    }

    fn reader_gone(&self, read: &Read<S>) -> bool {
        read.is_closed()
    }
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
    pub(crate) fn new(mut parts: RaftActorParts<S>, config: &NodeConfig) -> RaftActor<S> {
        let sender = parts.persist.sender();
        let persisted = parts.persist.take_doorbell();
        let (events, transfer_events) = mpsc::unbounded_channel();
        let (sink, incoming_snapshots) = mpsc::unbounded_channel();
        parts.transport.accept_snapshots(sink);
        let transfers = SnapshotTransfers::new(
            config.node_id,
            parts.snap_dir,
            Arc::clone(&parts.transport),
            events,
        );
        let settings = CoreSettings {
            send_appends_early: config.send_appends_early,
            lease_reads: config.lease_reads,
            max_inflight_bytes: config.max_inflight_bytes,
            snapshot_catchup_entries: config.snapshot_catchup_entries,
        };
        let core = RaftCore::new(
            parts.raw,
            parts.boot_snapshot_index,
            settings,
            boot_sequence(),
            parts.term,
        );
        RaftActor {
            id: config.node_id,
            core,
            persist: Some(parts.persist),
            sender,
            persisted,
            transport: parts.transport,
            peers: parts.peers,
            requests: parts.requests,
            control: parts.control,
            apply: parts.apply,
            unannounced: Vec::new(),
            applied: parts.applied,
            apply_task: Some(parts.apply_task),
            max_batch_payload_bytes: config.max_uncommitted_entries_bytes,
            tick_interval: config.tick_interval,
            snapshots: parts.snapshots,
            transfers,
            transfer_events,
            incoming_snapshots,
            failure: parts.failure,
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
        let RaftActor {
            core,
            persist,
            apply,
            mut unannounced,
            apply_task,
            failure,
            data_dir_lock,
            ..
        } = self;
        // Its waiting reads are dropped, so their callers hear "stopped".
        drop(core);
        // Held proposers are told why the node stopped, with the others.
        announce(&apply, &mut unannounced);
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

    /// Passes the state machine's applied index to raft if it moved.
    fn report_applied(&mut self) {
        if self.applied.has_changed().unwrap_or(false) {
            let applied = *self.applied.borrow_and_update();
            self.core.applied(applied);
        }
    }

    /// The core and the effects it may have, borrowed apart.
    fn split(&mut self) -> (&mut NodeRaftCore<S>, ActorIo<'_, S>) {
        let io = ActorIo {
            id: self.id,
            sender: &self.sender,
            apply: &self.apply,
            unannounced: &mut self.unannounced,
            transport: &*self.transport,
            transfers: &mut self.transfers,
        };
        (&mut self.core, io)
    }

    async fn main_loop(&mut self) -> Result<Exit, NodeError> {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.report_applied();
            {
                let (core, mut io) = self.split();
                core.advance(&mut io)?;
            }
            let accepting = self.core.accepting();
            let waits_for_applied = self.core.waits_for_applied();
            tokio::select! {
                biased;
                persisted = self.persisted.changed() => {
                    let persisted = persisted.map_err(NodeError::Storage)?;
                    let (core, mut io) = self.split();
                    core.persisted(persisted.number, &mut io)?;
                }
                control = self.control.recv() => match control {
                    Some(Control::Status(reply)) => {
                        let _ = reply.send(self.core.status(*self.applied.borrow()));
                    }
                    Some(Control::Shutdown) | None => return Ok(Exit::Graceful),
                    Some(Control::Crash) => return Ok(Exit::Crash),
                    Some(Control::TransferLeader { to, reply }) => self.core.transfer_leader(to, reply),
                },
                Some(snapshot) = self.snapshots.recv() => {
                    let (core, mut io) = self.split();
                    core.make_snapshot(snapshot.index, snapshot.data, &mut io)?;
                }
                Some(event) = self.transfer_events.recv() => match event {
                    TransferEvent::Sent { to, status } => {
                        self.transfers.reported(to, status);
                        self.core.snapshot_reported(to, status);
                    }
                    TransferEvent::Received(message) => self.core.step_received_snapshot(*message),
                },
                Some(incoming) = self.incoming_snapshots.recv() => self.transfers.receive(incoming),
                changed = self.applied.changed(), if waits_for_applied => {
                    // The apply actor ended: it failed (its task says why).
                    changed.map_err(|_| NodeError::Stopped)?;
                    // `changed` marked the value seen: report it now.
                    let applied = *self.applied.borrow_and_update();
                    self.core.applied(applied);
                }
                // The same end, while the applied index is not awaited.
                () = self.apply.closed() => return Err(NodeError::Stopped),
                _ = ticker.tick() => {
                    // Proposers held through a quiet spell reach the apply
                    // actor here (its sweep forgets those who gave up).
                    announce(&self.apply, &mut self.unannounced);
                    // Fresh for the election check a tick may make.
                    self.report_applied();
                    let (core, io) = self.split();
                    core.tick(&io);
                }
                Some(message) = self.peers.recv() => {
                    self.core.step(message);
                    for _ in 1..MAX_BATCH {
                        match self.peers.try_recv() {
                            Ok(message) => self.core.step(message),
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
        while self.core.awaiting_persistence() {
            match tokio::time::timeout_at(deadline, self.persisted.changed()).await {
                Ok(Ok(persisted)) => {
                    let (core, mut io) = self.split();
                    if let Err(error) = core.persisted(persisted.number, &mut io) {
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

    /// Handles one client request; a proposal joins `proposals`, which
    /// are proposed together before any other kind of request (order is
    /// kept) and at the end of the pass.
    fn handle_request(&mut self, request: ClientRequest<S>, proposals: &mut Proposals<S>) {
        match request {
            ClientRequest::Propose { data, id, reply } => {
                TestPanic::fire(self.test_panic, TestPanic::Raft);
                self.queue_proposal(data, proposals);
                proposals.waiters.push((id, reply));
            }
            ClientRequest::Publish { data } => self.queue_proposal(data, proposals),
            ClientRequest::ChangeMembership { changes, reply } => {
                self.propose(std::mem::take(proposals));
                let applied = *self.applied.borrow();
                self.core.change_membership(changes, applied, reply);
            }
            ClientRequest::Read { read, lease } => {
                self.propose(std::mem::take(proposals));
                let (core, mut io) = self.split();
                core.read_index(read, lease, &mut io);
            }
        }
    }

    /// Adds `data` to the batch, proposing the batch first when `data`
    /// would take it past the batch's payload bound.
    fn queue_proposal(&mut self, data: Vec<u8>, proposals: &mut Proposals<S>) {
        let data_bytes = data.len() as u64;
        if proposals.payload_bytes.saturating_add(data_bytes) > self.max_batch_payload_bytes {
            self.propose(std::mem::take(proposals));
        }
        proposals.payload_bytes = proposals.payload_bytes.saturating_add(data_bytes);
        proposals.data.push(data);
    }

    /// Proposes the batch in one raft step and registers its proposers
    /// with the apply actor, or refuses them all.
    fn propose(&mut self, proposals: Proposals<S>) {
        let (core, mut io) = self.split();
        core.propose(proposals.data, proposals.waiters, &mut io);
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
