//! Settings of a node.
//!
//! Owns: [`NodeConfig`] and how it maps onto boot, raft and persistence
//! settings.
//! Guarantees: plain data; the defaults are etcd's where etcd has one
//! (100 ms tick, election 10 ticks, heartbeat 1 tick, pre-vote and
//! check-quorum on).
//! May not touch: anything at run time.

use super::bootstrap::{BootConfig, BootError, NewMember};
use crate::persist::PersistConfig;
use crate::raft::Config;
use crate::storage::{DataDir, DurableStorageError};
use crate::wal::WalOptions;
use std::path::PathBuf;
use std::time::Duration;

/// Default cap on the bytes of Readies handed to the persistence actor and
/// not yet acknowledged.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 16 * 1024 * 1024;

/// Everything a node is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (not 0).
    pub node_id: u64,
    /// The cluster's id (not 0).
    pub cluster_id: u64,
    /// The data directory (etcd's layout is detected).
    pub data_dir: PathBuf,
    /// What to do when the data directory has no WAL.
    pub new_member: NewMember,
    /// Disaster recovery: restart as the only voter.
    pub force_new_cluster: bool,
    /// WAL settings.
    pub wal_options: WalOptions,
    /// Persistence actor settings (`queue_capacity` is ignored: the raft
    /// actor must never block on the queue, and bounds what it has in
    /// flight by `max_inflight_bytes` instead). Tests inject disk faults
    /// through `persist.fault_injection` (test-only; `None` by default).
    pub persist: PersistConfig,
    /// Duration of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before campaigning.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// How long `put`, `delete` and `get` wait before failing with
    /// `Timeout`.
    pub request_timeout: Duration,
    /// Back-pressure: while this many bytes of Readies wait for the
    /// persistence actor, the raft actor takes no new client requests and
    /// hands out no new Ready.
    pub max_inflight_bytes: usize,
    /// A leader sends its appends when it hands a Ready to persistence,
    /// before its own fsync (Raft thesis §10.2.1; etcd's leader does the
    /// same): followers write in parallel with the leader. The leader still
    /// counts its own log toward commit only once its fsync is done. On by
    /// default; off sends them after the leader's fsync.
    pub send_appends_early: bool,
    /// Capacity of the client request queue (callers wait when it is full).
    pub request_queue_capacity: usize,
    /// Snapshot the state machine every this many applied entries (0:
    /// never); etcd's `--snapshot-count`. Once the last state file passes
    /// 8 MiB a snapshot also waits for as many bytes of entries as the
    /// state, up to 64 MiB of entries or 10× this count
    /// (`snapshot_policy`).
    pub snapshot_count: u64,
    /// Entries kept in memory behind a snapshot, so that a slightly lagging
    /// follower gets entries rather than a whole snapshot.
    pub snapshot_catchup_entries: u64,
    /// State files are written at most this fast (0: as fast as the disk
    /// takes them), fdatasynced every MiB, so that saving a snapshot of a
    /// large state does not queue the WAL's fdatasyncs behind hundreds of
    /// MiB; default 128 MiB/s.
    pub snapshot_write_bytes_per_second: u64,
    /// Allow `Consistency::Lease` reads (off by default). Set it alike on
    /// every member: it also makes a follower honour a leader's lease after
    /// it restarts (it refuses votes for an election timeout) and ignore
    /// requests to forget its leader.
    ///
    /// The lease's assumption is bounded clock drift: a follower that
    /// heard from the leader refuses to vote for `election_tick` of its own
    /// ticks, and the leader answers from its lease only while a quorum
    /// acknowledged a heartbeat it sent less than `election_tick - 2` of
    /// its ticks ago. If the clocks of two members run apart by more than
    /// that margin within an election timeout (a paused VM, a stalled
    /// process whose ticks then catch up late), a deposed leader may serve
    /// a stale read. `Linearizable` reads make no such assumption.
    pub lease_reads: bool,
    /// A leader refuses new proposals (`ProposalDropped`, reason
    /// "uncommitted size limit reached"; HTTP 503 with `Retry-After`) while
    /// this many bytes of entry payloads it appended are not yet committed,
    /// so a leader cut off from its quorum, or flooded with forwarded
    /// proposals, does not grow its log without bound. One proposal is
    /// always accepted when nothing is uncommitted, however large.
    pub max_uncommitted_entries_bytes: u64,
}

/// Default `max_uncommitted_entries_bytes`: 64 MiB, four times the Readies
/// the raft actor lets wait for persistence (`DEFAULT_MAX_INFLIGHT_BYTES`),
/// far above what a healthy quorum leaves uncommitted at full speed (a few
/// milliseconds of writes).
pub const DEFAULT_MAX_UNCOMMITTED_ENTRIES_BYTES: u64 = 64 * 1024 * 1024;

/// Default `snapshot_count`: etcd 3.6's (3.5 and older used 100,000). It
/// bounds the entries held in memory (`MemoryStorage` keeps those since the
/// last snapshot plus `snapshot_catchup_entries`); what it costs in
/// throughput when the state is large is measured in BENCHMARKS.md ("Snapshot
/// defaults").
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 10_000;
/// Default `snapshot_catchup_entries` (etcd's): a follower this far behind
/// catches up from the log, further behind by a snapshot.
pub const DEFAULT_SNAPSHOT_CATCHUP_ENTRIES: u64 = 5_000;

impl NodeConfig {
    /// A config with the defaults for node `node_id` of `cluster_id` in
    /// `data_dir`, starting a new cluster of `voters` if there is no WAL.
    pub fn new(node_id: u64, cluster_id: u64, data_dir: PathBuf, voters: &[u64]) -> NodeConfig {
        NodeConfig {
            node_id,
            cluster_id,
            data_dir,
            new_member: NewMember::NewCluster {
                voters: voters.to_vec(),
            },
            force_new_cluster: false,
            wal_options: WalOptions::default(),
            persist: PersistConfig::default(),
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 1,
            request_timeout: Duration::from_secs(5),
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            send_appends_early: true,
            request_queue_capacity: 4096,
            snapshot_count: DEFAULT_SNAPSHOT_COUNT,
            snapshot_catchup_entries: DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
            snapshot_write_bytes_per_second:
                crate::snap::state_file::DEFAULT_WRITE_BYTES_PER_SECOND,
            lease_reads: false,
            max_uncommitted_entries_bytes: DEFAULT_MAX_UNCOMMITTED_ENTRIES_BYTES,
        }
    }

    /// The boot settings; fails when the data directory's layout cannot
    /// be told (see [`DataDir::detect`]).
    pub fn boot_config(&self) -> Result<BootConfig, BootError> {
        let data_dir = DataDir::detect(&self.data_dir).map_err(DurableStorageError::from)?;
        Ok(BootConfig {
            node_id: self.node_id,
            cluster_id: self.cluster_id,
            data_dir,
            new_member: self.new_member.clone(),
            force_new_cluster: self.force_new_cluster,
            wal_options: self.wal_options,
        })
    }

    /// The raft settings for a node whose state machine stands at
    /// `applied`.
    pub fn raft_config(&self, applied: u64) -> Config {
        let mut config = Config::new(self.node_id);
        config.election_tick = self.election_tick;
        config.heartbeat_tick = self.heartbeat_tick;
        config.applied = applied;
        config.pre_vote = true;
        config.check_quorum = true;
        config.lease_reads = self.lease_reads;
        config.max_uncommitted_entries_size = self.max_uncommitted_entries_bytes;
        config.seed = self.node_id ^ self.cluster_id.rotate_left(17);
        config
    }
}
