//! The errors of the WAL, each naming the file (or directory) and, for damage
//! inside a segment, the byte offset of the frame.
//!
//! Owns: [`WalError`] and the mapping from the pure decoder's errors.
//! Guarantees: a torn tail is its own variant, so callers can tell the
//! repairable case from corruption without parsing messages.
//! May not touch: anything but error values.

use super::decoder::DecodeError;
use std::path::{Path, PathBuf};

/// Everything that can go wrong creating, reading or writing a WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory being operated on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record's CRC does not continue the CRC chain: corruption.
    #[error("{}: CRC mismatch in the frame at byte {offset}: record says {expected:#010x}, chain gives {actual:#010x}", path.display())]
    CrcMismatch {
        /// The segment file.
        path: PathBuf,
        /// Offset of the frame's length word.
        offset: u64,
        /// The CRC stored in the record.
        expected: u32,
        /// The CRC the chain computes.
        actual: u32,
    },
    /// The last segment ends in a partially written frame;
    /// [`repair`](super::repair::repair) truncates it there.
    #[error("{}: torn write at byte {offset} ({reason}); repairable by truncating there", path.display())]
    TornTail {
        /// The last segment file.
        path: PathBuf,
        /// Offset of the first frame that is not valid.
        offset: u64,
        /// Why it counts as torn.
        reason: String,
    },
    /// No snapshot record with the requested index was found in the
    /// segments read.
    #[error("{}: no snapshot record for index {index} (term {term}) in the segments read", dir.display())]
    SnapshotNotFound {
        /// The WAL directory.
        dir: PathBuf,
        /// The index looked for.
        index: u64,
        /// The term looked for.
        term: u64,
    },
    /// A snapshot record has the requested index but another term.
    #[error("{}: snapshot record at byte {offset} has index {index} with term {found_term}, expected term {expected_term}", path.display())]
    SnapshotMismatch {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record's frame.
        offset: u64,
        /// The snapshot index.
        index: u64,
        /// The term looked for.
        expected_term: u64,
        /// The term in the record.
        found_term: u64,
    },
    /// A metadata record differs from the first one.
    #[error("{}: metadata record at byte {offset} differs from the WAL's first metadata", path.display())]
    MetadataConflict {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record's frame.
        offset: u64,
    },
    /// Damage a torn write cannot explain, or records that break the WAL's
    /// invariants.
    #[error("{}: corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Offset of the offending frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The directory does not hold a usable sequence of segments.
    #[error("{}: {reason}", dir.display())]
    BadDirectory {
        /// The WAL directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `create` found segments already there.
    #[error("{}: a WAL already exists", dir.display())]
    AlreadyExists {
        /// The WAL directory.
        dir: PathBuf,
    },
    /// Another process holds the segment's lock.
    #[error("{}: locked by another process", path.display())]
    Locked {
        /// The segment file.
        path: PathBuf,
    },
    /// An earlier write or sync failed; the WAL refuses to continue, since
    /// the kernel may have dropped the unsynced pages.
    #[error("{}: an earlier write or sync failed; the WAL accepts no more writes", dir.display())]
    Unusable {
        /// The WAL directory.
        dir: PathBuf,
    },
}

impl WalError {
    /// An [`WalError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> WalError {
        WalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The decoder's verdict on the segment at `path`.
    pub fn from_decode(path: &Path, error: DecodeError) -> WalError {
        match error {
            DecodeError::CrcMismatch {
                offset,
                expected,
                actual,
            } => WalError::CrcMismatch {
                path: path.to_path_buf(),
                offset,
                expected,
                actual,
            },
            DecodeError::Corrupt { offset, reason } => WalError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason,
            },
        }
    }

    /// A [`WalError::Corrupt`] for the frame at `offset` of `path`.
    pub fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
        WalError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// The segment file and byte offset the error is about, if it is about
    /// damage inside a segment.
    pub fn location(&self) -> Option<(&Path, u64)> {
        match self {
            WalError::CrcMismatch { path, offset, .. }
            | WalError::TornTail { path, offset, .. }
            | WalError::SnapshotMismatch { path, offset, .. }
            | WalError::MetadataConflict { path, offset }
            | WalError::Corrupt { path, offset, .. } => Some((path, *offset)),
            _ => None,
        }
    }
}
