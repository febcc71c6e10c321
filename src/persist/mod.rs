//! The persistence actor: makes raft Readies and snapshots durable with as
//! few fdatasyncs as possible (group commit) and acknowledges them by Ready
//! number.
//!
//! Owns: the actor's thread and its IO backends (io_uring through
//! tokio-uring, plain `pwrite` + `fdatasync`, and a fault injector for
//! tests), the request queue, the acknowledgement channel, recording
//! the persistence path's metrics (declared in `crate::metrics`, labelled
//! with [`PersistConfig::node_id`]), and the one implementation of saving a
//! snapshot file ([`snapshot_file`], which the `DurableStorage` façade and
//! tests run too, on the std backend).
//! Guarantees: a Ready is acknowledged only after an fdatasync that covers
//! it (or when it needed none), in number order; the first failed write or
//! sync stops the actor for good and fails every pending and future
//! request with that error; shutdown finishes what was queued.
//! May not touch: the raft core and its `MemoryStorage` (the raft actor
//! applies acknowledgements), file formats (`wal`, `snap`).
//!
//! Use: open or create the WAL and the snapshotter (see `crate::storage`
//! for recovery), then [`PersistActor::start`]; hand each Ready to
//! [`PersistSender::submit`] as [`ReadyToPersist::from_ready`]; await
//! [`PersistedWatch::changed`] and call `on_persisted` with the number.

mod actor;
pub mod backend;
pub mod config;
pub mod error;
pub mod fault_injection;
pub mod handle;
pub mod progress;
pub mod request;
mod snap_purger;
pub mod snapshot_file;
pub mod std_backend;
pub mod uring_backend;
mod wal_gauge;

pub use backend::{BackendKind, IoBackend};
pub use config::{BackendChoice, DEFAULT_MAX_BATCH_BYTES, PersistConfig};
pub use error::{PersistError, SharedPersistError};
pub use handle::{PersistActor, PersistSender, SnapshotTicket};
pub use progress::{PersistProgress, Persisted, PersistedDoorbell, PersistedWatch};
pub use request::ReadyToPersist;
