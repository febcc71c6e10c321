//! Snapshot files: `{term:016x}-{index:016x}.snap`, each holding a
//! `snappb.Snapshot` whose `data` is the encoded raft snapshot and whose `crc`
//! is the CRC-32C of that data (etcd's format).
//!
//! Owns: the file format ([`codec`], pure), file names ([`snap_name`]), the
//! state files the snapshots refer to ([`state_file`]), and
//! the [`Snapshotter`]: cleaning unfinished saves, choosing the newest
//! snapshot the WAL vouches for, setting aside broken files, purging old
//! ones.
//! Guarantees: a snapshot file appears complete under its name or not at
//! all; a file that fails its CRC or decode is never returned.
//! May not touch: WAL segments (the caller passes the WAL's snapshot
//! markers), the raft core. Writing a `.snap` file is
//! `persist::snapshot_file`'s (the one save sequence, through an IO
//! backend, which also hands out the WAL marker).

pub mod codec;
pub mod error;
pub mod snap_name;
pub mod snapshotter;
pub mod state_file;

pub use error::SnapError;
pub use snap_name::SnapName;
pub use snapshotter::Snapshotter;
pub use state_file::{StateFileReader, StateFileReceiver, StateFileRef};
