//! Settings of the persistence actor.
//!
//! Owns: [`PersistConfig`] and the choice of IO backend ([`BackendChoice`]).
//! Guarantees: plain data; the defaults are what a node uses (no fault
//! injection).
//! May not touch: anything at run time (the actor reads these once).

use super::fault_injection::FaultInjection;

/// Which IO backend the actor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring when a probe at start shows it works, plain syscalls
    /// otherwise (with a log line saying so).
    #[default]
    Auto,
    /// io_uring (a tokio-uring runtime); starting fails where it is not
    /// available.
    Uring,
    /// `pwrite` + `fdatasync` on the actor's thread.
    Std,
}

/// Default cap on the bytes of one group-commit batch.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Settings of the persistence actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistConfig {
    /// The IO backend.
    pub backend: BackendChoice,
    /// Stop draining the queue into one batch (one write, one fdatasync)
    /// once its entries and snapshots reach this many bytes; a batch always
    /// takes at least one request.
    pub max_batch_bytes: usize,
    /// Capacity of the request queue; `None` is unbounded, so that the raft
    /// actor (a tokio task) never blocks on it and bounds what it has in
    /// flight itself.
    pub queue_capacity: Option<usize>,
    /// After a snapshot save, keep at most this many released WAL segments
    /// (etcd's `--max-wals`); `None` never purges.
    pub max_wal_files: Option<usize>,
    /// After a snapshot save, keep at most this many snapshot files (etcd's
    /// `--max-snapshots`); `None` never purges.
    pub max_snap_files: Option<usize>,
    /// A WAL fdatasync slower than this is logged as a warning (etcd warns
    /// above 1 s).
    pub slow_fsync_warning: std::time::Duration,
    /// The node this actor persists for: only the `node` label of its
    /// metrics (`crate::metrics`). A node sets it to its own id; 0 when the
    /// actor runs on its own (tests, benches).
    pub node_id: u64,
    /// Test-only: wrap the chosen backend in the fault injector
    /// ([`FaultyIo`](super::fault_injection::FaultyIo)), which records
    /// every operation into the injection's log and fails those its plan
    /// names. `None` (the default, and what every real node has) costs
    /// nothing but one branch when the actor starts.
    pub fault_injection: Option<FaultInjection>,
}

impl Default for PersistConfig {
    fn default() -> PersistConfig {
        PersistConfig {
            backend: BackendChoice::Auto,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            queue_capacity: None,
            max_wal_files: Some(5),
            max_snap_files: Some(5),
            slow_fsync_warning: std::time::Duration::from_secs(1),
            node_id: 0,
            fault_injection: None,
        }
    }
}
