//! The raft consensus core: pure and deterministic, no IO, no clock, no
//! threads. Time enters only through `tick()`, randomness only through a
//! seeded RNG.
//!
//! Owns: the in-memory raft log ([`storage`], [`unstable`], [`log`]), the
//! leader's replication bookkeeping ([`quorum`], [`progress`], [`tracker`]),
//! the state machine ([`raft`]) and the application's handle on it
//! ([`raw_node`]).
//! May not touch: files, sockets, clocks or async runtimes.

pub mod confchange;
pub mod config;
pub mod error;
pub mod log;
pub mod progress;
pub mod quorum;
#[allow(clippy::module_inception)]
pub mod raft;
pub mod raw_node;
pub mod read_only;
pub mod rng;
pub mod storage;
pub mod tracker;
pub mod unstable;

pub use config::{Config, ConfigError, ReadOnlyOption};
pub use log::RaftLog;
pub use raft::{DropReason, Raft, RaftError, SoftState, StateRole};
pub use raw_node::{RawNode, Ready, SnapshotStatus, Status, bootstrap_entries};
pub use storage::{MemoryStorage, RaftState, Storage, StorageError};
pub use unstable::Unstable;

/// The `max_size` that means "no limit" for every size-bounded read.
pub const NO_LIMIT: u64 = u64::MAX;
