//! The simulated persistence actor of one node: what `src/persist` does with
//! the Readies and snapshot saves the raft actor hands it, in simulated
//! time, over a [`SimDisk`].
//!
//! Owns: the queue of persistence jobs, the snapshot save in progress (its
//! stage), the fdatasync in flight, and the acknowledgement of Ready
//! numbers.
//!
//! Guarantees (as the real actor): jobs are encoded in order; a snapshot
//! file is written, fsynced, renamed and its directory fsynced before its
//! WAL marker is encoded, and nothing queued behind it is encoded before
//! that; a Ready's entries go in before its hard state; one fdatasync is in
//! flight at a time and covers every byte written when it started; a Ready
//! is acknowledged only once an fdatasync that started after its bytes were
//! written has completed (a Ready that needs no sync: once every earlier
//! Ready is acknowledged). With the `ack-before-fsync` break switch a Ready
//! is acknowledged as soon as it is encoded (the deliberate bug).
//!
//! May not touch: raft or the state machine; it reports acknowledgements
//! and the IO it started, the node schedules and applies them.

use crate::disk::SimDisk;
use crate::rng::SimRng;
use crate::scheduler::IoLane;
use ringraft::raftpb::{Entry, HardState, Snapshot};
use std::collections::VecDeque;

/// What the raft actor hands over.
#[derive(Debug)]
pub enum Job {
    /// A Ready's share of persistence.
    Ready {
        number: u64,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        snapshot: Option<Snapshot>,
        must_sync: bool,
    },
    /// A snapshot the node made of its state machine.
    SaveSnapshot(Snapshot),
}

/// The stage of a snapshot save in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaveStage {
    /// Writing the temporary file.
    WriteTemporary,
    /// fsync of the temporary file.
    SyncFile,
    /// fsync of the directory after the rename.
    SyncDirectory,
}

/// IO latencies of one node's disk, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub fdatasync_min_us: u64,
    pub fdatasync_max_us: u64,
    pub snapshot_step_max_us: u64,
}

/// The persistence actor's state.
#[derive(Debug)]
pub struct Persistence {
    queue: VecDeque<Job>,
    saving: Option<(Job, SaveStage)>,
    /// Encoded Readies waiting for acknowledgement: (number, WAL length
    /// that must be synced first; 0 when no sync is needed).
    encoded: VecDeque<(u64, usize)>,
    sync_in_flight: Option<usize>,
    sync_wanted_len: usize,
    acked: u64,
    ack_before_fsync: bool,
    latency: Latency,
}

/// What a call changed.
#[derive(Debug, Default)]
pub struct Progress {
    /// The highest Ready number now acknowledged, if it moved.
    pub acked: Option<u64>,
    /// IO started: (lane, completes after this many microseconds).
    pub started: Vec<(IoLane, u64)>,
}

impl Persistence {
    /// An idle actor.
    pub fn new(latency: Latency, ack_before_fsync: bool) -> Persistence {
        Persistence {
            queue: VecDeque::new(),
            saving: None,
            encoded: VecDeque::new(),
            sync_in_flight: None,
            sync_wanted_len: 0,
            acked: 0,
            ack_before_fsync,
            latency,
        }
    }

    /// Queues `job`.
    pub fn submit(&mut self, job: Job) {
        self.queue.push_back(job);
    }

    /// Whether a snapshot save is under way (a crash now is a crash in the
    /// middle of a snapshot save).
    pub fn saving_snapshot(&self) -> bool {
        self.saving.is_some()
    }

    /// Whether any work is queued or under way.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty()
            || self.saving.is_some()
            || !self.encoded.is_empty()
            || self.sync_in_flight.is_some()
    }

    /// Does everything that can be done now: encodes queued jobs (up to a
    /// snapshot save), starts an fdatasync if one is needed and none is in
    /// flight, acknowledges what is durable.
    pub fn pump(&mut self, disk: &mut SimDisk, rng: &mut SimRng) -> Progress {
        let mut progress = Progress::default();
        while self.saving.is_none() {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let needs_file = match &job {
                Job::Ready { snapshot, .. } => snapshot.as_ref().is_some_and(|s| !s.is_empty()),
                Job::SaveSnapshot(snapshot) => !snapshot.is_empty(),
            };
            if needs_file {
                self.saving = Some((job, SaveStage::WriteTemporary));
                progress
                    .started
                    .push((IoLane::Snapshot, self.snapshot_step_us(rng)));
            } else {
                self.encode(job, disk);
            }
        }
        if self.sync_in_flight.is_none() && self.sync_wanted_len > disk.synced_len() {
            self.sync_in_flight = Some(disk.written_len());
            let latency = rng.range(self.latency.fdatasync_min_us, self.latency.fdatasync_max_us);
            progress.started.push((IoLane::Sync, latency));
        }
        while let Some(&(number, required_len)) = self.encoded.front() {
            if required_len > disk.synced_len() {
                break;
            }
            self.encoded.pop_front();
            self.acked = number;
            progress.acked = Some(number);
        }
        progress
    }

    /// An IO step on `lane` completed; continues the work.
    pub fn complete(&mut self, lane: IoLane, disk: &mut SimDisk, rng: &mut SimRng) -> Progress {
        let mut started = Vec::new();
        match lane {
            IoLane::Sync => {
                if let Some(target_len) = self.sync_in_flight.take() {
                    disk.complete_sync(target_len);
                }
            }
            IoLane::Snapshot => {
                if self.advance_save(disk) {
                    started.push((IoLane::Snapshot, self.snapshot_step_us(rng)));
                }
            }
        }
        let mut progress = self.pump(disk, rng);
        started.append(&mut progress.started);
        progress.started = started;
        progress
    }

    /// Moves the snapshot save to its next stage; true when another IO
    /// step started.
    fn advance_save(&mut self, disk: &mut SimDisk) -> bool {
        let Some((job, stage)) = self.saving.take() else {
            return false;
        };
        let snapshot = match &job {
            Job::Ready {
                snapshot: Some(snapshot),
                ..
            }
            | Job::SaveSnapshot(snapshot) => snapshot.clone(),
            Job::Ready { snapshot: None, .. } => return false,
        };
        match stage {
            SaveStage::WriteTemporary => {
                self.saving = Some((job, SaveStage::SyncFile));
                true
            }
            SaveStage::SyncFile => {
                disk.rename_snapshot_file(&snapshot);
                self.saving = Some((job, SaveStage::SyncDirectory));
                true
            }
            SaveStage::SyncDirectory => {
                disk.sync_snapshot_dir();
                disk.write_snapshot_marker(&snapshot);
                self.sync_wanted_len = disk.written_len();
                if let Job::Ready { .. } = job {
                    self.encode(job, disk);
                }
                false
            }
        }
    }

    /// Encodes a Ready's entries and hard state (its snapshot, if any, was
    /// saved before).
    fn encode(&mut self, job: Job, disk: &mut SimDisk) {
        let Job::Ready {
            number,
            hard_state,
            entries,
            snapshot,
            must_sync,
        } = job
        else {
            return;
        };
        disk.write_entries_and_state(hard_state, &entries);
        let must_sync = must_sync || snapshot.is_some_and(|s| !s.is_empty());
        let required_len = if must_sync && !self.ack_before_fsync {
            disk.written_len()
        } else {
            0
        };
        if must_sync {
            self.sync_wanted_len = disk.written_len();
        }
        self.encoded.push_back((number, required_len));
    }

    fn snapshot_step_us(&self, rng: &mut SimRng) -> u64 {
        rng.range(50, self.latency.snapshot_step_max_us.max(50))
    }
}
