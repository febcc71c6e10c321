//! The apply actor: the tokio task that drives the apply core
//! ([`super::apply_core`]: the [`Applier`] and so the user's state machine,
//! the proposers and reads waiting on it, the snapshot cadence) from the
//! raft actor's channel, and writes snapshots.
//!
//! Owns: the core, the published applied index (a `watch` the raft actor
//! turns into `advance_apply`), the snapshot being written, and restoring
//! from a snapshot's state file.
//!
//! Guarantees: the core's rules hold (entries apply in the order the raft
//! actor sent them, each once; the applied index is published before a
//! proposer is answered; a read with read index `i` is served only once
//! `applied ≥ i`); a snapshot replaces the state machine before any entry
//! after it applies. A failure of the state machine, or a gap in the
//! entries, stops the actor and fails every waiter with it, rather than
//! serving a wrong state.
//!
//! When the core says a snapshot is due, it takes a point-in-time snapshot
//! and writes it on a blocking thread (one at a time, at low priority)
//! while applying goes on; the framed data goes to the raft actor, which
//! records it in `MemoryStorage`, has the persistence actor save it, and
//! compacts. A snapshot right after a member is added is the core's rule:
//! without it, the leader would offer a new member an older snapshot that
//! does not name it, again and again, until the next periodic one (found
//! by the simulation, `tests/sim`).
//!
//! May not touch: raft, the WAL, the network.

use super::applier::Applier;
use super::apply_core::{ApplyCore, ApplyIo};
use super::background;
use super::error::{ApplyError, NodeError};
use super::mailbox::{ApplyMsg, ProposalReply, Read, SnapshotData};
use super::snapshot_files;
use super::snapshot_policy::SnapshotPolicy;
use super::test_panic::TestPanic;
use crate::metrics as names;
use crate::raftpb::{Entry, Snapshot};
use crate::state_machine::StateMachine;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Sweep answered-elsewhere waiters (timed-out callers) this often.
const SWEEP_EVERY_MESSAGES: u64 = 1024;
/// The name of the thread that writes a snapshot's state file.
const SNAPSHOT_WRITER_THREAD: &str = "ringraft-snap-write";
/// An apply batch slower than this counts as slow (etcd's threshold).
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The apply actor's metric handles, looked up once: a lookup by name
/// hashes the name and labels and allocates the label, which per entry
/// batch (and formerly per proposal) showed in profiles. Handles come from
/// the recorder installed when the node starts.
struct ApplyMetrics {
    apply_duration: metrics::Histogram,
    slow_apply: metrics::Counter,
    applied: metrics::Counter,
    pending: metrics::Gauge,
    snapshot_create: metrics::Histogram,
    snapshot_apply: metrics::Histogram,
}

impl ApplyMetrics {
    fn new(node_id: u64) -> ApplyMetrics {
        let node = node_id.to_string();
        let label = [(names::NODE_LABEL, node)];
        ApplyMetrics {
            apply_duration: metrics::histogram!(names::APPLY_DURATION_SECONDS, &label),
            slow_apply: metrics::counter!(names::SLOW_APPLY_TOTAL, &label),
            applied: metrics::counter!(names::PROPOSALS_APPLIED_TOTAL, &label),
            pending: metrics::gauge!(names::PROPOSALS_PENDING, &label),
            snapshot_create: metrics::histogram!(names::SNAPSHOT_CREATE_DURATION_SECONDS, &label),
            snapshot_apply: metrics::histogram!(names::SNAPSHOT_APPLY_DURATION_SECONDS, &label),
        }
    }
}

/// Where the apply actor's output goes besides its callers.
pub(crate) struct ApplyOutputs {
    /// The applied index, published after every batch.
    pub(crate) applied: watch::Sender<u64>,
    /// Snapshot data for the raft actor.
    pub(crate) snapshots: mpsc::UnboundedSender<SnapshotData>,
}

/// A snapshot being written on a blocking thread.
type SnapshotWrite = JoinHandle<Result<SnapshotData, ApplyError>>;

/// The apply core as the node runs it: callers wait on oneshots.
type NodeApplyCore<S> = ApplyCore<S, ProposalReply<<S as StateMachine>::Response>, Read<S>>;

/// The apply actor's state: the core and what drives it.
pub(crate) struct ApplyActor<S: StateMachine> {
    metrics: ApplyMetrics,
    core: NodeApplyCore<S>,
    inbox: mpsc::UnboundedReceiver<ApplyMsg<S>>,
    outputs: ApplyOutputs,
    messages_seen: u64,
    /// The snapshot being written, if one is.
    writing: Option<SnapshotWrite>,
    /// Where state files are written and restored from.
    snap_dir: PathBuf,
    /// How fast state files are written.
    pacing: crate::snap::state_file::WritePacing,
    /// The test-only panic hook (`super::test_panic`).
    test_panic: Option<TestPanic>,
}

/// The core's effects as the actor carries them out: the applied index
/// into its `watch`, answers into the callers' oneshots.
struct ActorApplyIo<'a> {
    applied: &'a watch::Sender<u64>,
}

impl<S: StateMachine> ApplyIo<S, ProposalReply<S::Response>, Read<S>> for ActorApplyIo<'_> {
    fn applied(&mut self, applier: &Applier<S>) {
        self.applied.send_replace(applier.applied_index());
    }

    fn answer(
        &mut self,
        reply: ProposalReply<S::Response>,
        _: u64,
        outcome: Result<S::Response, NodeError>,
    ) {
        let _ = reply.send(outcome);
    }

    fn serve(&mut self, read: Read<S>, applier: &Applier<S>) {
        match read {
            Read::State { query, reply } => {
                if !reply.is_closed() {
                    let _ = reply.send(Ok(applier.query(query)));
                }
            }
            Read::Members(reply) => {
                let _ = reply.send(Ok(applier.members().clone()));
            }
            Read::ClientUrls(reply) => {
                let _ = reply.send(Ok(applier.client_urls().clone()));
            }
            Read::Backup(reply) => {
                if !reply.is_closed() {
                    let _ = reply.send(Ok(applier.state_view()));
                }
            }
        }
    }

    fn fail_proposer(&mut self, reply: ProposalReply<S::Response>, error: NodeError) {
        let _ = reply.send(Err(error));
    }

    fn fail_reader(&mut self, read: Read<S>, error: NodeError) {
        read.fail(error);
    }

    fn proposer_gone(&self, reply: &ProposalReply<S::Response>) -> bool {
        reply.is_closed()
    }

    fn reader_gone(&self, read: &Read<S>) -> bool {
        read.is_closed()
    }
}

/// Where the apply actor keeps snapshots, and whether it needs a fresh one.
pub(crate) struct SnapshotSettings {
    /// Snapshot every this many applied entries at least (0: never).
    pub(crate) count: u64,
    /// The size of the state of the snapshot boot restored (0: none).
    pub(crate) state_bytes: u64,
    /// The snapshot directory.
    pub(crate) dir: PathBuf,
    /// Take one as soon as anything is applied.
    pub(crate) soon: bool,
    /// How fast state files are written.
    pub(crate) pacing: crate::snap::state_file::WritePacing,
}

impl<S: StateMachine> ApplyActor<S> {
    /// An actor of node `node_id` over `applier` (as boot left it, at its
    /// last snapshot) reading `inbox`.
    pub(crate) fn new(
        node_id: u64,
        applier: Applier<S>,
        inbox: mpsc::UnboundedReceiver<ApplyMsg<S>>,
        outputs: ApplyOutputs,
        snapshots: SnapshotSettings,
    ) -> ApplyActor<S> {
        outputs.applied.send_replace(applier.applied_index());
        ApplyActor {
            metrics: ApplyMetrics::new(node_id),
            core: ApplyCore::new(
                applier,
                SnapshotPolicy::new(snapshots.count, snapshots.state_bytes),
                snapshots.soon,
            ),
            inbox,
            outputs,
            messages_seen: 0,
            writing: None,
            snap_dir: snapshots.dir,
            pacing: snapshots.pacing,
            test_panic: None,
        }
    }

    /// Arms the test-only panic hook (`super::test_panic`).
    pub(crate) fn with_test_panic(mut self, hook: Option<TestPanic>) -> ApplyActor<S> {
        self.test_panic = hook;
        self
    }

    /// The core and its effects, borrowed apart.
    fn split(&mut self) -> (&mut NodeApplyCore<S>, ActorApplyIo<'_>) {
        let io = ActorApplyIo {
            applied: &self.outputs.applied,
        };
        (&mut self.core, io)
    }

    /// Runs until the raft actor hangs up (shutdown) or applying fails.
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        loop {
            let message = tokio::select! {
                message = self.inbox.recv() => message,
                written = snapshot_write(&mut self.writing), if self.writing.is_some() => {
                    self.writing = None;
                    if let Err(error) = self.snapshot_written(written) {
                        return self.stop(error.into()).await;
                    }
                    continue;
                }
            };
            let Some(message) = message else { break };
            if let Err(error) = self.handle(message).await {
                return self.stop(error).await;
            }
            self.messages_seen += 1;
            if self.messages_seen % SWEEP_EVERY_MESSAGES == 0 {
                let (core, io) = self.split();
                core.sweep(&io);
            }
        }
        let (core, mut io) = self.split();
        core.fail_all(&NodeError::Stopped, &mut io);
        self.end_snapshot_write().await;
        Ok(())
    }

    async fn stop(mut self, error: NodeError) -> Result<(), NodeError> {
        tracing::error!(%error, "apply actor stops");
        let (core, mut io) = self.split();
        core.fail_all(&error, &mut io);
        self.end_snapshot_write().await;
        Err(error)
    }

    /// Waits for a state file still being written, and drops it: the raft
    /// actor is gone and will not record it. The node holds its data
    /// directory until this actor ends, so no writer outlives the lock (a
    /// node started next on the directory, or whoever removes it, would
    /// race with it).
    async fn end_snapshot_write(&mut self) {
        if let Some(writing) = self.writing.take() {
            let _ = writing.await;
        }
    }

    async fn handle(&mut self, message: ApplyMsg<S>) -> Result<(), NodeError> {
        match message {
            ApplyMsg::Register(waiters) => self.core.register(waiters),
            ApplyMsg::Committed(entries) => self.apply_batch(entries)?,
            ApplyMsg::Restore(snapshot) => self.restore(snapshot).await?,
            ApplyMsg::Read { index, read } => {
                let (core, mut io) = self.split();
                core.read(index, read, &mut io);
            }
        }
        Ok(())
    }

    /// Restores from a snapshot the node installed, streaming its state
    /// file; reads and proposals wait meanwhile. The restore blocks this
    /// task (the state machine is not `Sync`): on a multi-threaded runtime
    /// the worker is handed over to the rest first.
    async fn restore(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let index = snapshot.metadata.index;
        if !self.core.needs_restore(index) {
            return Ok(());
        }
        // A local snapshot still being written is older: let it finish
        // first, so that it cannot reach the raft actor after this one.
        if let Some(writing) = self.writing.take() {
            let written = writing.await;
            self.snapshot_written(written)?;
        }
        let started = Instant::now();
        let (applier, snap_dir) = (self.core.applier_mut(), &self.snap_dir);
        let mut restore = || snapshot_files::restore(applier, snap_dir, &snapshot);
        let multi_threaded = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        if multi_threaded {
            tokio::task::block_in_place(restore)?;
        } else {
            restore()?;
        }
        self.metrics.snapshot_apply.record(started.elapsed());
        tracing::info!(
            index,
            took_ms = started.elapsed().as_millis() as u64,
            "state machine restored from a snapshot"
        );
        let (core, mut io) = self.split();
        core.restored(index, snapshot_files::state_bytes(&snapshot), &mut io);
        Ok(())
    }

    fn apply_batch(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let started = Instant::now();
        let applied_before = self.core.applier().applied_index();
        if entries.iter().any(|e| {
            e.entry_type == crate::raftpb::EntryType::EntryNormal as i32 && !e.data.is_empty()
        }) {
            TestPanic::fire(self.test_panic, TestPanic::Apply);
        }
        let (core, mut io) = self.split();
        core.apply(entries, &mut io)?;
        let elapsed = started.elapsed();
        self.metrics.apply_duration.record(elapsed);
        if elapsed > SLOW_APPLY {
            self.metrics.slow_apply.increment(1);
        }
        self.metrics
            .applied
            .increment(self.core.applier().applied_index() - applied_before);
        self.metrics
            .pending
            .set(self.core.waiting_proposers() as f64);
        self.maybe_snapshot();
        Ok(())
    }

    /// Starts writing a snapshot when one is due (unless one is being
    /// written).
    fn maybe_snapshot(&mut self) {
        if self.writing.is_some() {
            return;
        }
        let Some(index) = self.core.snapshot_due() else {
            return;
        };
        let job = self.core.applier().snapshot();
        let started = Instant::now();
        let created = self.metrics.snapshot_create.clone();
        let (snap_dir, pacing) = (self.snap_dir.clone(), self.pacing);
        self.writing = Some(tokio::task::spawn_blocking(move || {
            // Behind the commit path: see `background`.
            let written = background::run_at_low_priority(SNAPSHOT_WRITER_THREAD, || {
                snapshot_files::write(&snap_dir, pacing, job)
            })
            .map_err(|error| ApplyError::SnapshotWrite {
                index,
                source: std::sync::Arc::new(error),
            })??;
            created.record(started.elapsed());
            Ok(written)
        }));
    }

    fn snapshot_written(
        &mut self,
        written: Result<Result<SnapshotData, ApplyError>, tokio::task::JoinError>,
    ) -> Result<(), ApplyError> {
        match written {
            Ok(Ok(snapshot)) => {
                self.core.snapshot_written(snapshot.state_bytes);
                // Refused only when the raft actor ended; then nothing matters.
                let _ = self.outputs.snapshots.send(snapshot);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(join) => Err(ApplyError::SnapshotWrite {
                index: self.core.last_snapshot_index(),
                source: std::sync::Arc::new(std::io::Error::other(join.to_string())),
            }),
        }
    }
}

/// The outcome of the snapshot being written; never ready when none is.
async fn snapshot_write(
    writing: &mut Option<SnapshotWrite>,
) -> Result<Result<SnapshotData, ApplyError>, tokio::task::JoinError> {
    match writing {
        Some(write) => write.await,
        None => std::future::pending().await,
    }
}
