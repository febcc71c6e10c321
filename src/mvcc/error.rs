//! The errors of the MVCC store: [`MvccError`] for requests (each message
//! is etcd's own, since etcdctl prints it) and [`SnapshotError`] for a
//! snapshot that does not restore.
//!
//! The two are separate on purpose: a request error is a response that
//! every member computes alike and maps one-to-one to a gRPC status, while
//! a restore error is fatal to the member (the node stops on it).

/// Why a request was refused. Messages are etcd v3.4's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccError {
    /// A read or compaction at a revision at or below the compacted one
    /// (below it for reads).
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The store's compacted revision (what a watch reports as
        /// `compact_revision`).
        compact_revision: i64,
    },
    /// A read or compaction at a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A write attaches a lease the caller says does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease grant with an id that is taken. The store does not keep
    /// leases; the etcd layer's lessor refuses with it, beside
    /// [`MvccError::LeaseNotFound`], so that both map to etcd's statuses
    /// in one place.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A txn writes the same key twice (two puts, or a put inside a
    /// deleted range), also across nested txns.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A request or a compare with an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A txn with more compares or operations (on one level) than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
}

/// Why a snapshot does not restore. Every variant names where the problem
/// is: the byte offset of the frame, and the record's position (0-based
/// count of version records before it).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading failed.
    #[error("reading the MVCC snapshot at byte {offset}: {source}")]
    Io {
        /// Bytes read before the failure.
        offset: u64,
        /// The reader's error.
        source: std::io::Error,
    },
    /// The stream ended inside the magic, a frame or before the end frame.
    #[error("MVCC snapshot truncated at byte {offset} (reading {reading})")]
    Truncated {
        /// Bytes read when the stream ended.
        offset: u64,
        /// What was being read.
        reading: &'static str,
    },
    /// The stream does not start with the magic.
    #[error("not an MVCC snapshot: magic {found:02x?} at byte 0")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The format version is not one this build reads.
    #[error("MVCC snapshot format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A frame's checksum does not match its bytes.
    #[error(
        "MVCC snapshot frame at byte {offset} fails its checksum (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum {
        /// The frame's offset.
        offset: u64,
        /// The checksum in the frame.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// A frame is well formed but its content breaks a rule of the format
    /// or of the store's invariants.
    #[error("MVCC snapshot frame at byte {offset} (record {record}): {reason}")]
    Invalid {
        /// The frame's offset.
        offset: u64,
        /// The position of the version record (or of the record that
        /// would come next, for header and end frames).
        record: u64,
        /// What is wrong.
        reason: String,
    },
    /// Bytes follow the end frame.
    #[error("MVCC snapshot has data after its end frame at byte {offset}")]
    TrailingData {
        /// The offset of the first extra byte.
        offset: u64,
    },
}
