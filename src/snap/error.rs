//! The errors of the snapshotter, each naming the file.
//!
//! Owns: [`SnapError`].
//! Guarantees: a damaged file (empty, CRC mismatch, undecodable) is
//! distinguishable from an IO failure.
//! May not touch: anything but error values.

use std::path::{Path, PathBuf};

/// Everything that can go wrong with snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty or holds no snapshot data.
    #[error("{}: empty snapshot file", path.display())]
    Empty {
        /// The snapshot file.
        path: PathBuf,
    },
    /// The CRC of the data does not match the stored one.
    #[error("{}: CRC mismatch: file says {expected:#010x}, data gives {actual:#010x}", path.display())]
    CrcMismatch {
        /// The snapshot file.
        path: PathBuf,
        /// The CRC stored in the file.
        expected: u32,
        /// The CRC of the data.
        actual: u32,
    },
    /// The file does not decode, or its content disagrees with its name.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl SnapError {
    /// A [`SnapError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> SnapError {
        SnapError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for damage in the file itself (not an IO failure).
    pub fn is_damaged_file(&self) -> bool {
        !matches!(self, SnapError::Io { .. })
    }
}
