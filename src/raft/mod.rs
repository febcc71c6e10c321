//! The raft consensus core: pure and deterministic, no IO, no clock, no
//! threads. Time enters only through `tick()`, randomness only through a
//! seeded RNG.
//!
//! Owns: the in-memory raft log ([`storage`], [`unstable`], [`log`]) and the
//! leader's replication bookkeeping ([`quorum`], [`progress`], [`tracker`]).
//! May not touch: files, sockets, clocks or async runtimes.

pub mod log;
pub mod progress;
pub mod quorum;
pub mod storage;
pub mod tracker;
pub mod unstable;

pub use log::RaftLog;
pub use storage::{MemoryStorage, RaftState, Storage, StorageError};
pub use unstable::Unstable;

/// The `max_size` that means "no limit" for every size-bounded read.
pub const NO_LIMIT: u64 = u64::MAX;
