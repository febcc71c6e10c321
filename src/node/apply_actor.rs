//! The apply actor: feeds committed entries to the state machine (through
//! the [`Applier`]) in log order, completes the callers waiting for their
//! proposals, serves reads once the state machine is recent enough, and
//! takes snapshots.
//!
//! Owns: the [`Applier`] (and so the user's state machine), the proposals
//! waiting to apply (by [`RequestId`]), the reads waiting for an applied
//! index, the published applied index (a `watch` the raft actor turns into
//! `advance_apply`), and when to snapshot.
//!
//! Guarantees: entries apply in the order the raft actor sent them, each
//! once; a proposal's caller is answered with its response only after the
//! entry applied here, and only after the applied index was published; a
//! read with read index `i` is served only once `applied ≥ i`; a snapshot
//! replaces the state machine before any entry after it applies. A failure
//! of the state machine, or a gap in the entries, stops the actor and
//! fails every waiter with it, rather than serving a wrong state.
//!
//! Every `snapshot_count` applied entries it takes a point-in-time
//! snapshot and writes it on a blocking thread (one at a time) while
//! applying goes on; the framed data goes to the raft actor, which records
//! it in `MemoryStorage`, has the persistence actor save it, and compacts.
//! It also snapshots right after a member is added: a new member whose log
//! must start from a snapshot can only accept one whose configuration
//! names it, and raft sends the newest; without this, the leader would
//! offer an older snapshot that the new member refuses, again and again,
//! until the next periodic one (found by the simulation, `tests/sim`).
//!
//! May not touch: raft, files, the network.

use super::applier::Applier;
use super::background;
use super::envelope::RequestId;
use super::error::{ApplyError, NodeError};
use super::mailbox::{ApplyMsg, ProposalReply, Read, SnapshotData};
use super::snapshot_files;
use super::test_panic::TestPanic;
use crate::metrics as names;
use crate::raftpb::{Entry, Snapshot};
use crate::state_machine::StateMachine;
use std::collections::{BTreeMap, HashMap};
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

/// The apply actor's state.
pub(crate) struct ApplyActor<S: StateMachine> {
    metrics: ApplyMetrics,
    applier: Applier<S>,
    inbox: mpsc::UnboundedReceiver<ApplyMsg<S>>,
    outputs: ApplyOutputs,
    waiters: HashMap<RequestId, ProposalReply<S::Response>>,
    reads: BTreeMap<(u64, u64), Read<S>>,
    read_seq: u64,
    messages_seen: u64,
    /// Snapshot every this many applied entries (0: never).
    snapshot_count: u64,
    last_snapshot_index: u64,
    /// A member was added since the last snapshot.
    member_added: bool,
    /// The snapshot being written, if one is.
    writing: Option<SnapshotWrite>,
    /// Where state files are written and restored from.
    snap_dir: PathBuf,
    /// Take a snapshot at the first chance (the node booted from one whose
    /// state is inline, which peers cannot be sent).
    snapshot_soon: bool,
    /// How fast state files are written.
    pacing: crate::snap::state_file::WritePacing,
    /// The test-only panic hook (`super::test_panic`).
    test_panic: Option<TestPanic>,
}

/// Where the apply actor keeps snapshots, and whether it needs a fresh one.
pub(crate) struct SnapshotSettings {
    /// Snapshot every this many applied entries (0: never).
    pub(crate) count: u64,
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
        let last_snapshot_index = applier.applied_index();
        ApplyActor {
            metrics: ApplyMetrics::new(node_id),
            applier,
            inbox,
            outputs,
            waiters: HashMap::new(),
            reads: BTreeMap::new(),
            read_seq: 0,
            messages_seen: 0,
            snapshot_count: snapshots.count,
            last_snapshot_index,
            member_added: false,
            writing: None,
            snap_dir: snapshots.dir,
            snapshot_soon: snapshots.soon,
            pacing: snapshots.pacing,
            test_panic: None,
        }
    }

    /// Arms the test-only panic hook (`super::test_panic`).
    pub(crate) fn with_test_panic(mut self, hook: Option<TestPanic>) -> ApplyActor<S> {
        self.test_panic = hook;
        self
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
                self.waiters.retain(|_, reply| !reply.is_closed());
                self.reads.retain(|_, read| !read.is_closed());
            }
        }
        self.fail_all(&NodeError::Stopped);
        self.end_snapshot_write().await;
        Ok(())
    }

    async fn stop(mut self, error: NodeError) -> Result<(), NodeError> {
        tracing::error!(%error, "apply actor stops");
        self.fail_all(&error);
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
            ApplyMsg::Register(waiters) => self.waiters.extend(waiters),
            ApplyMsg::Committed(entries) => self.apply_batch(entries)?,
            ApplyMsg::Restore(snapshot) => self.restore(snapshot).await?,
            ApplyMsg::Read { index, read } => {
                if index <= self.applier.applied_index() {
                    self.serve(read);
                } else {
                    self.read_seq += 1;
                    self.reads.insert((index, self.read_seq), read);
                }
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
        if index <= self.applier.applied_index() {
            return Ok(());
        }
        // A local snapshot still being written is older: let it finish
        // first, so that it cannot reach the raft actor after this one.
        if let Some(writing) = self.writing.take() {
            let written = writing.await;
            self.snapshot_written(written)?;
        }
        let started = Instant::now();
        let (applier, snap_dir) = (&mut self.applier, &self.snap_dir);
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
        self.last_snapshot_index = index;
        self.outputs.applied.send_replace(index);
        self.serve_reads();
        Ok(())
    }

    fn apply_batch(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let started = Instant::now();
        let applied_before = self.applier.applied_index();
        if entries.iter().any(|e| {
            e.entry_type == crate::raftpb::EntryType::EntryNormal as i32 && !e.data.is_empty()
        }) {
            TestPanic::fire(self.test_panic, TestPanic::Apply);
        }
        let batch = self.applier.apply(entries)?;
        self.member_added |= batch.member_added;
        // Published before anyone is answered: a caller that got its answer
        // sees `applied_index() >= index`.
        self.outputs
            .applied
            .send_replace(self.applier.applied_index());
        for (id, _, outcome) in batch.outcomes {
            if let Some(reply) = self.waiters.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
        self.serve_reads();
        let elapsed = started.elapsed();
        self.metrics.apply_duration.record(elapsed);
        if elapsed > SLOW_APPLY {
            self.metrics.slow_apply.increment(1);
        }
        self.metrics
            .applied
            .increment(self.applier.applied_index() - applied_before);
        self.metrics.pending.set(self.waiters.len() as f64);
        self.maybe_snapshot();
        Ok(())
    }

    /// Every `snapshot_count` applied entries, and after a member was
    /// added, starts writing a snapshot (unless one is being written).
    fn maybe_snapshot(&mut self) {
        let applied = self.applier.applied_index();
        let since_last = applied - self.last_snapshot_index;
        let due = since_last >= self.snapshot_count
            || ((self.member_added || self.snapshot_soon) && since_last > 0);
        if self.snapshot_count == 0 || !due || self.writing.is_some() {
            return;
        }
        self.member_added = false;
        self.snapshot_soon = false;
        self.last_snapshot_index = applied;
        let job = self.applier.snapshot();
        let started = Instant::now();
        let created = self.metrics.snapshot_create.clone();
        let (snap_dir, pacing) = (self.snap_dir.clone(), self.pacing);
        let index = applied;
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
                // Refused only when the raft actor ended; then nothing matters.
                let _ = self.outputs.snapshots.send(snapshot);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(join) => Err(ApplyError::SnapshotWrite {
                index: self.last_snapshot_index,
                source: std::sync::Arc::new(std::io::Error::other(join.to_string())),
            }),
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.applier.applied_index();
        while let Some(entry) = self.reads.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let read = entry.remove();
            self.serve(read);
        }
    }

    fn serve(&self, read: Read<S>) {
        match read {
            Read::State { query, reply } => {
                if !reply.is_closed() {
                    let _ = reply.send(Ok(self.applier.query(query)));
                }
            }
            Read::Members(reply) => {
                let _ = reply.send(Ok(self.applier.members().clone()));
            }
            Read::Backup(reply) => {
                if !reply.is_closed() {
                    let _ = reply.send(Ok(self.applier.state_view()));
                }
            }
        }
    }

    fn fail_all(&mut self, error: &NodeError) {
        for (_, reply) in self.waiters.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, read) in std::mem::take(&mut self.reads) {
            read.fail(error.clone());
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
