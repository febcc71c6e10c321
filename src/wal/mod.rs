//! The write-ahead log: etcd 3.4–3.7 compatible segment files holding every
//! raft entry, hard state and snapshot marker, made durable before raft may
//! act on them.
//!
//! Owns: the on-disk format (framing, CRC-32C chain, record types, segment
//! naming), reading it back, the torn-tail rule and its repair, and the
//! segment lifecycle (preallocate, cut, lock, release, purge) with the
//! snapshot rules every writer follows ([`release`]: a marker only after
//! its snapshot file is durable, a release only once a synced commit covers
//! the snapshot).
//! The format is pure code over byte buffers ([`encoder`], [`decoder`],
//! [`damage`], [`frame`], [`page_chunks`]); file IO lives in [`Wal`]
//! (`writer`), the scan over segment files, [`repair()`], [`verify()`] and
//! [`dump()`], so another IO backend can reuse the format.
//! Guarantees: files written here are readable by etcd's tools and etcd's by
//! this module; an acknowledged (synced) record is never dropped silently.
//! May not touch: snapshot files (`crate::snap`), the raft core.

pub mod damage;
pub mod decoder;
pub mod dump;
pub mod encoder;
pub mod error;
pub mod frame;
pub(crate) mod fs;
pub mod page_chunks;
pub mod payload;
pub(crate) mod pipeline;
pub mod record_type;
pub mod release;
pub mod repair;
pub(crate) mod replay;
pub(crate) mod scan;
pub mod segment_name;
pub(crate) mod tail;
pub mod verify;
pub mod writer;

pub use dump::{DumpEnd, DumpedPayload, DumpedRecord, dump};
pub use error::WalError;
pub use record_type::RecordType;
pub use release::{SnapshotMarker, SyncPoint};
pub use repair::{RepairOutcome, repair};
pub use replay::WalContents;
pub use scan::TornTailReport;
pub use segment_name::SegmentName;
pub use verify::{VerifyReport, valid_snapshot_entries, verify};
pub use writer::{DEFAULT_SEGMENT_SIZE_BYTES, UnwrittenBytes, Wal, WalOptions};
