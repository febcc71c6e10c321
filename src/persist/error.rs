//! The errors of the persistence actor, each naming what failed and where.
//!
//! Owns: [`PersistError`] and [`SharedPersistError`], the form in which one
//! failure is handed to every pending and future request.
//! Guarantees: an IO failure names the operation and the file, and keeps
//! the operating system's error ([`PersistError::os_error`]), so a caller
//! tells a full disk from a failed device.
//! May not touch: anything but error values.

use crate::snap::SnapError;
use crate::wal::WalError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One failure of the actor, shared by everyone it fails.
pub type SharedPersistError = Arc<PersistError>;

/// Everything that stops the persistence actor or refuses a request.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A WAL operation done by the WAL itself failed (opening a segment
    /// cut, purging, or a refusal after an earlier failure).
    #[error("persistence: {0}")]
    Wal(#[from] WalError),
    /// A snapshot file operation done by the snapshotter failed (purging).
    #[error("persistence: {0}")]
    Snap(#[from] SnapError),
    /// A write or sync issued by the actor's IO backend failed. Fatal: the
    /// sync is never retried, since the kernel may have dropped the dirty
    /// pages.
    #[error("persistence: {operation} of {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The raft actor handed over Readies whose numbers do not increase: a
    /// bug upstream that would make acknowledgements meaningless.
    #[error("persistence: Ready {number} submitted after Ready {previous}; numbers must increase")]
    ReadyOutOfOrder {
        /// The highest number seen before.
        previous: u64,
        /// The offending number.
        number: u64,
    },
    /// io_uring was asked for but does not work on this machine.
    #[error("persistence: io_uring is unavailable: {0}")]
    UringUnavailable(#[source] io::Error),
    /// The actor's thread or runtime could not be started, or panicked.
    #[error("persistence: actor thread: {0}")]
    Thread(String),
    /// The actor has stopped (shut down) and takes no more requests.
    #[error("persistence: the actor has stopped")]
    Stopped,
}

impl PersistError {
    /// The operating system's error at the root of this failure, if it is
    /// an IO failure: its kind is `StorageFull` for `ENOSPC`, and
    /// `raw_os_error` gives the errno.
    pub fn os_error(&self) -> Option<&io::Error> {
        let mut found = None;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = cause {
            if let Some(io_error) = error.downcast_ref::<io::Error>() {
                found = Some(io_error);
            }
            cause = error.source();
        }
        found
    }

    /// Whether the file system was full (`ENOSPC`): the node then loses
    /// nothing and serves again once restarted with space freed.
    pub fn is_disk_full(&self) -> bool {
        self.os_error()
            .is_some_and(|e| e.kind() == io::ErrorKind::StorageFull)
    }

    /// A [`PersistError::Io`].
    pub fn io(operation: &'static str, path: &Path, source: io::Error) -> PersistError {
        PersistError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}
