//! The persistence actor's loop: group commit of Readies and snapshot saves
//! into the WAL, then acknowledgements.
//!
//! Owns: the open [`Wal`] and [`Snapshotter`] while the actor runs, the
//! order of IO, the acknowledgement of Ready numbers, the release and purge
//! of files a snapshot made unnecessary.
//! Guarantees:
//! - While idle it blocks on the queue. When work arrives it drains what is
//!   queued up to the byte cap, encodes every record into one buffer, issues
//!   one write (in page-aligned chunks) and one fdatasync, and then
//!   acknowledges the highest Ready number the batch holds.
//! - While that fdatasync is under way it already drains, encodes and writes
//!   the next batch (a two-stage pipeline); the next fdatasync starts only
//!   after the previous one succeeded, and a Ready is acknowledged only after
//!   an fdatasync that started after its bytes were written.
//! - When nothing is queued as a write or a sync starts, there is nothing
//!   to overlap: it runs on this thread (`IoBackend::write_all_at_now`,
//!   `IoBackend::sync_data_now`), sparing the hand-off to the kernel's
//!   io_uring worker (or the std backend's helper thread) and back, which a
//!   lone writer feels as latency.
//! - A batch that needs no sync (commit-only hard states) is acknowledged
//!   without one, but never before an earlier Ready.
//! - A snapshot's file is durable before its WAL marker is even encoded
//!   (`snapshot_file` hands out the marker); older segments are released
//!   only once a sync that covered both the marker and a hard state
//!   committing the snapshot's index succeeded. Both rules are the WAL's
//!   (`wal::release`), shared with the `DurableStorage` façade.
//! - The first failed write or sync stops the actor: nothing more is
//!   acknowledged, the failure is published, every queued request fails with
//!   it, and the WAL refuses further writes (no sync is ever retried).
//! - Shutdown finishes what was queued before it, syncs, closes the WAL.
//!
//! Segment cuts go through the WAL's own cut (its next segment is
//! preallocated by the WAL's helper thread ahead of time, off this thread:
//! through io_uring `fallocate` with the uring backend, the plain syscall
//! with std) right after the batch that filled the tail is written; the
//! cut's sync of the finished segment covers that batch.
//! May not touch: the raft core or `MemoryStorage` (the raft actor applies
//! acknowledgements), file formats (the WAL and snapshot modules own them).

use super::backend::{BackendKind, IoBackend, SyncInFlight};
use super::config::PersistConfig;
use super::error::{PersistError, SharedPersistError};
use super::progress::ProgressSender;
use super::request::{PersistRequest, ReadyToPersist, SnapshotReply};
use super::snap_purger::SnapPurger;
use super::snapshot_file::save_snapshot_file;
use super::wal_gauge::record_wal_segments;
use crate::metrics::{
    ENTRIES_PER_FSYNC, NODE_LABEL, PERSIST_QUEUE_DEPTH, READIES_PER_FSYNC,
    SNAPSHOT_SAVE_DURATION_SECONDS, WAL_FSYNC_DURATION_SECONDS, WAL_WRITE_BYTES_TOTAL,
    WAL_WRITE_DURATION_SECONDS,
};
use crate::raftpb::Snapshot;
use crate::snap::Snapshotter;
use crate::wal::writer::Preallocation;
use crate::wal::{SegmentName, SyncPoint, Wal};
use crossbeam_channel::{Receiver, TryRecvError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What one batch holds, acknowledged together.
#[derive(Debug, Default)]
struct Covered {
    highest_number: Option<u64>,
    readies: u64,
    entries: u64,
    snapshot_replies: Vec<SnapshotReply>,
    needs_sync: bool,
}

/// A batch of at most this many entries, with nothing queued behind it,
/// is acknowledged through the doorbell (`super::progress`).
const IDLE_BATCH_ENTRIES: u64 = 4;

/// A batch written and waiting for its fdatasync.
struct InFlight {
    sync: SyncInFlight,
    covered: Covered,
    started: Instant,
    /// The commit index and snapshot marker the sync covers.
    synced: SyncPoint,
    path: PathBuf,
}

/// Handles of the actor's metrics, resolved once: a lookup by name hashes
/// and allocates the node label, which per batch is measurable.
struct ActorMetrics {
    queue_depth: metrics::Gauge,
    snapshot_save_duration: metrics::Histogram,
    write_duration: metrics::Histogram,
    write_bytes: metrics::Counter,
    fsync_duration: metrics::Histogram,
    readies_per_fsync: metrics::Histogram,
    entries_per_fsync: metrics::Histogram,
}

impl ActorMetrics {
    fn new(node_id: u64) -> ActorMetrics {
        let node = node_id.to_string();
        ActorMetrics {
            queue_depth: metrics::gauge!(PERSIST_QUEUE_DEPTH, NODE_LABEL => node.clone()),
            snapshot_save_duration: metrics::histogram!(SNAPSHOT_SAVE_DURATION_SECONDS, NODE_LABEL => node.clone()),
            write_duration: metrics::histogram!(WAL_WRITE_DURATION_SECONDS, NODE_LABEL => node.clone()),
            write_bytes: metrics::counter!(WAL_WRITE_BYTES_TOTAL, NODE_LABEL => node.clone()),
            fsync_duration: metrics::histogram!(WAL_FSYNC_DURATION_SECONDS, NODE_LABEL => node.clone()),
            readies_per_fsync: metrics::histogram!(READIES_PER_FSYNC, NODE_LABEL => node.clone()),
            entries_per_fsync: metrics::histogram!(ENTRIES_PER_FSYNC, NODE_LABEL => node),
        }
    }
}

/// The actor's state on its thread.
pub(crate) struct Actor<B: IoBackend> {
    wal: Wal,
    snapshotter: Snapshotter,
    /// Removes old snapshot and state files off this thread.
    snap_purger: SnapPurger,
    config: PersistConfig,
    backend: B,
    requests: Receiver<PersistRequest>,
    progress: ProgressSender,
    tail: Option<(SegmentName, B::Handle)>,
    last_number: u64,
    metrics: ActorMetrics,
}

impl<B: IoBackend> Actor<B> {
    /// The actor over `wal`, which from now on preallocates its next
    /// segments the backend's way (io_uring `fallocate` for the uring
    /// backend).
    pub(crate) fn new(
        mut wal: Wal,
        snapshotter: Snapshotter,
        snap_purger: SnapPurger,
        config: PersistConfig,
        backend: B,
        requests: Receiver<PersistRequest>,
        progress: ProgressSender,
    ) -> Actor<B> {
        wal.set_preallocation(match backend.kind() {
            BackendKind::Uring => Preallocation::Uring,
            BackendKind::Std => Preallocation::Syscall,
        });
        if let Some(fault) = backend.preallocation_fault() {
            wal.set_preallocation_fault(Some(fault));
        }
        Actor {
            metrics: ActorMetrics::new(config.node_id),
            wal,
            snapshotter,
            snap_purger,
            config,
            backend,
            requests,
            progress,
            tail: None,
            last_number: 0,
        }
    }

    /// Runs until shutdown (every sender gone, or a shutdown request) or
    /// the first failure, which it publishes and returns.
    pub(crate) async fn run(mut self) -> Result<(), SharedPersistError> {
        if let Err(error) = self.run_until_stopped().await {
            return Err(self.fail(error));
        }
        // Everything is synced; closing syncs once more through the WAL
        // itself, which is cheap with nothing dirty.
        self.snap_purger.finish();
        let Actor { wal, .. } = self;
        wal.close().map_err(|e| Arc::new(PersistError::from(e)))
    }

    async fn run_until_stopped(&mut self) -> Result<(), PersistError> {
        let mut in_flight: Option<InFlight> = None;
        loop {
            let Some(first) = self.next_request(in_flight.is_some()) else {
                if let Some(previous) = in_flight.take() {
                    self.complete(previous).await?;
                }
                continue;
            };
            let (batch, shutdown) = self.gather(first);
            let covered = self.encode(batch).await?;
            if covered.needs_sync {
                // Written while the previous sync is under way; synced after.
                let here = self.requests.is_empty();
                self.write_unwritten(here).await?;
                if let Some(previous) = in_flight.take() {
                    self.complete(previous).await?;
                }
                if self.wal.cut_if_full()? {
                    record_wal_segments(self.wal.dir(), self.config.node_id);
                    // The cut synced the finished segment, this batch too.
                    let synced = self.wal.sync_point();
                    self.acknowledge_synced(covered, synced)?;
                } else {
                    // Nothing queued to write meanwhile: sync here and
                    // acknowledge at once.
                    let here = self.requests.is_empty();
                    let sync = self.begin_sync(covered, here).await?;
                    if here {
                        self.complete(sync).await?;
                    } else {
                        in_flight = Some(sync);
                    }
                }
            } else {
                if let Some(previous) = in_flight.take() {
                    self.complete(previous).await?;
                }
                self.acknowledge(covered);
            }
            if shutdown {
                if let Some(previous) = in_flight.take() {
                    self.complete(previous).await?;
                }
                return self.finish().await;
            }
        }
    }

    /// Blocks for the next request while nothing is in flight; only looks
    /// (`None`: nothing queued) while a sync is under way. A closed queue
    /// (every sender gone) reads as a shutdown request.
    fn next_request(&self, sync_in_flight: bool) -> Option<PersistRequest> {
        if sync_in_flight {
            match self.requests.try_recv() {
                Ok(request) => Some(request),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(PersistRequest::Shutdown),
            }
        } else {
            Some(self.requests.recv().unwrap_or(PersistRequest::Shutdown))
        }
    }

    /// `first` and whatever is queued behind it, up to the byte cap or a
    /// shutdown request (which ends the batch and is reported).
    fn gather(&self, first: PersistRequest) -> (Vec<PersistRequest>, bool) {
        self.metrics.queue_depth.set(self.requests.len() as f64);
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        let mut next = Some(first);
        while let Some(request) = next {
            if matches!(request, PersistRequest::Shutdown) {
                return (batch, true);
            }
            batch_bytes += request.approx_bytes();
            batch.push(request);
            if batch_bytes >= self.config.max_batch_bytes {
                break;
            }
            next = self.requests.try_recv().ok();
        }
        (batch, false)
    }

    /// Encodes a batch into the WAL's buffer (saving snapshot files first).
    async fn encode(&mut self, batch: Vec<PersistRequest>) -> Result<Covered, PersistError> {
        let mut covered = Covered::default();
        for request in batch {
            match request {
                PersistRequest::Ready(ready) => self.encode_ready(ready, &mut covered).await?,
                PersistRequest::SaveSnapshot { snapshot, reply } => {
                    if !snapshot.is_empty() {
                        self.save_snapshot(&snapshot).await?;
                        covered.needs_sync = true;
                    }
                    covered.snapshot_replies.push(reply);
                }
                PersistRequest::Shutdown => {}
            }
        }
        Ok(covered)
    }

    async fn encode_ready(
        &mut self,
        ready: ReadyToPersist,
        covered: &mut Covered,
    ) -> Result<(), PersistError> {
        if ready.number <= self.last_number {
            return Err(PersistError::ReadyOutOfOrder {
                previous: self.last_number,
                number: ready.number,
            });
        }
        self.last_number = ready.number;
        if let Some(snapshot) = &ready.snapshot
            && !snapshot.is_empty()
        {
            // etcd's order for a Ready: the snapshot, then its entries.
            self.save_snapshot(snapshot).await?;
            covered.needs_sync = true;
        }
        let hard_state = ready.hard_state.unwrap_or_default();
        let wal_wants_sync = self.wal.encode_save(&hard_state, &ready.entries)?;
        covered.needs_sync |= wal_wants_sync || ready.must_sync;
        covered.readies += 1;
        covered.entries += ready.entries.len() as u64;
        covered.highest_number = Some(ready.number);
        Ok(())
    }

    /// The snapshot file (durable), then its WAL marker into the buffer.
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), PersistError> {
        let started = Instant::now();
        let marker = save_snapshot_file(&self.backend, self.snapshotter.dir(), snapshot).await?;
        self.metrics
            .snapshot_save_duration
            .record(started.elapsed().as_secs_f64());
        self.wal.encode_snapshot_marker(&marker)?;
        Ok(())
    }

    /// The backend's handle on the tail segment, adopted anew after a cut.
    fn tail_handle(&mut self) -> Result<B::Handle, PersistError> {
        let segment = self.wal.tail_segment();
        if let Some((name, handle)) = &self.tail
            && *name == segment
        {
            return Ok(handle.clone());
        }
        let handle = self
            .backend
            .adopt(self.wal.tail_file(), self.wal.tail_path())
            .map_err(|e| PersistError::io("opening WAL segment", self.wal.tail_path(), e))?;
        self.tail = Some((segment, handle.clone()));
        Ok(handle)
    }

    /// Writes every encoded, unwritten byte: one buffer, one write; with
    /// `here` (nothing is queued behind it) on this thread
    /// (`IoBackend::write_all_at_now`).
    async fn write_unwritten(&mut self, here: bool) -> Result<(), PersistError> {
        if !self.wal.has_unwritten() {
            return Ok(());
        }
        let handle = self.tail_handle()?;
        let unwritten = self.wal.take_unwritten()?;
        let len = unwritten.bytes.len();
        let started = Instant::now();
        let (result, buffer) = if here {
            self.backend
                .write_all_at_now(
                    &handle,
                    self.wal.tail_file(),
                    unwritten.file_offset,
                    unwritten.bytes,
                )
                .await
        } else {
            self.backend
                .write_all_at(&handle, unwritten.file_offset, unwritten.bytes)
                .await
        };
        result.map_err(|e| PersistError::io("writing WAL", self.wal.tail_path(), e))?;
        self.metrics
            .write_duration
            .record(started.elapsed().as_secs_f64());
        self.metrics.write_bytes.increment(len as u64);
        self.wal.reuse_buffer(buffer);
        Ok(())
    }

    /// Starts the fdatasync of what is written; with `here` (nothing is
    /// queued to overlap with it) it runs on this thread and is done when
    /// this returns (`IoBackend::sync_data_now`).
    async fn begin_sync(&mut self, covered: Covered, here: bool) -> Result<InFlight, PersistError> {
        debug_assert!(
            !self.wal.has_unwritten(),
            "a sync covers only what was written before it started"
        );
        let handle = self.tail_handle()?;
        let synced = self.wal.sync_point();
        let started = Instant::now();
        let sync = if here {
            let result = self
                .backend
                .sync_data_now(&handle, self.wal.tail_file())
                .await;
            SyncInFlight::new(std::future::ready(result))
        } else {
            self.backend.begin_sync_data(&handle).await
        };
        Ok(InFlight {
            sync,
            covered,
            started,
            synced,
            path: self.wal.tail_path().to_path_buf(),
        })
    }

    /// Waits for an in-flight sync and acknowledges what it covers.
    async fn complete(&mut self, in_flight: InFlight) -> Result<(), PersistError> {
        let result = in_flight.sync.wait().await;
        let fsync_duration = in_flight.started.elapsed();
        self.metrics
            .fsync_duration
            .record(fsync_duration.as_secs_f64());
        if fsync_duration > self.config.slow_fsync_warning {
            tracing::warn!(
                path = %in_flight.path.display(),
                took_ms = fsync_duration.as_millis() as u64,
                "slow fdatasync of the WAL"
            );
        }
        result.map_err(|e| PersistError::io("fdatasync of WAL", &in_flight.path, e))?;
        self.acknowledge_synced(in_flight.covered, in_flight.synced)
    }

    fn acknowledge_synced(
        &mut self,
        covered: Covered,
        synced: SyncPoint,
    ) -> Result<(), PersistError> {
        self.metrics
            .readies_per_fsync
            .record(covered.readies as f64);
        self.metrics
            .entries_per_fsync
            .record(covered.entries as f64);
        // Release (and purge) first, so that a snapshot save's reply means
        // its cleanup is done too; rare, and cheap when nothing is pending.
        self.release_if_committed(synced)?;
        self.acknowledge(covered);
        Ok(())
    }

    /// Publishes the highest Ready number of `covered` and answers its
    /// snapshot saves.
    fn acknowledge(&mut self, covered: Covered) {
        if let Some(number) = covered.highest_number {
            self.backend.acknowledged(number);
            // A small batch with nothing queued behind it: the node is
            // lightly loaded, and the doorbell wakes it fastest
            // (`progress`). With many clients, a batch empties the queue
            // too (they all wait for it), but carries many entries.
            let idle = covered.entries <= IDLE_BATCH_ENTRIES && self.requests.is_empty();
            self.progress.persisted(number, idle);
        }
        for reply in covered.snapshot_replies {
            // The requester may have stopped waiting; nothing to do then.
            let _ = reply.send(Ok(()));
        }
    }

    /// Releases the segments before the newest saved snapshot if the sync
    /// of `synced` covered its marker and a commit of its index (the WAL's
    /// rule), then purges old files as configured.
    fn release_if_committed(&mut self, synced: SyncPoint) -> Result<(), PersistError> {
        if self.wal.release_if_committed(synced).is_none() {
            return Ok(());
        }
        if let Some(max_wal_files) = self.config.max_wal_files {
            self.wal.purge(max_wal_files)?;
            record_wal_segments(self.wal.dir(), self.config.node_id);
        }
        if let Some(max_snap_files) = self.config.max_snap_files {
            self.snap_purger.purge(max_snap_files);
        }
        Ok(())
    }

    /// Writes and syncs what commit-only Readies left buffered.
    async fn finish(&mut self) -> Result<(), PersistError> {
        if self.wal.has_unwritten() {
            self.write_unwritten(false).await?;
            let in_flight = self.begin_sync(Covered::default(), false).await?;
            self.complete(in_flight).await?;
        }
        Ok(())
    }

    /// Stops for good after `error`: the WAL refuses further writes, the
    /// failure is published, every queued request fails with it.
    fn fail(&mut self, error: PersistError) -> SharedPersistError {
        self.wal.mark_failed();
        let shared = Arc::new(error);
        self.progress.failed(&shared);
        while let Ok(request) = self.requests.try_recv() {
            if let PersistRequest::SaveSnapshot { reply, .. } = request {
                let _ = reply.send(Err(Arc::clone(&shared)));
            }
        }
        shared
    }
}
