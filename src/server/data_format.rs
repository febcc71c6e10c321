//! Which state machine's commands a `ringraft serve` data directory holds:
//! the `FORMAT` marker file, checked before the node replays anything.
//!
//! Owns: the marker's name and contents ([`FORMAT_FILE_NAME`],
//! [`CURRENT_FORMAT`]) and [`check_or_mark`].
//!
//! Guarantees: the node never replays a WAL whose commands another state
//! machine wrote. A directory with a WAL and no marker was written before
//! the marker existed (by the plain key-value `serve`, whose commands the
//! MVCC store cannot read, or by the first MVCC `serve`); nothing here can
//! tell those apart, so it is refused, with what to do, rather than its
//! commands being skipped as undecodable or misread. A marker with other
//! contents is refused likewise. A new directory gets the marker before
//! the node creates its WAL, durably (written, fsynced, renamed into
//! place, directory fsynced): a crash at any instant leaves either no
//! marker and no WAL (a fresh directory again) or the marker.
//!
//! May not touch: the WAL and snapshot files (it only asks whether a WAL
//! exists), the directory lock (the node takes it afterwards).

use crate::storage::DataDir;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The marker's file name in the data directory.
pub const FORMAT_FILE_NAME: &str = "FORMAT";

/// What the marker of a directory this `serve` writes holds (one line).
pub const CURRENT_FORMAT: &str = "ringraft serve: etcd MVCC store, version 1";

/// Why a data directory cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DataFormatError {
    /// A WAL and no marker.
    #[error(
        "data directory {dir} has a WAL but no {FORMAT_FILE_NAME} file: it was written by an \
         earlier ringraft serve (the plain key-value store's format, or the MVCC store's before \
         the marker existed), whose commands this version does not replay and cannot tell \
         apart; there is no migration: start with an empty --data-dir"
    )]
    Unmarked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A marker naming another format.
    #[error("{path} says {found:?}; this ringraft serve writes and reads {CURRENT_FORMAT:?}")]
    OtherFormat {
        /// The marker file.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// The layout cannot be told.
    #[error(transparent)]
    Layout(#[from] crate::storage::DataDirError),
    /// The WAL directory cannot be listed.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// The file system failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataFormatError {
    let path = path.to_path_buf();
    move |source| DataFormatError::Io { op, path, source }
}

/// Checks the marker of the existing directory `root`, or writes it when
/// the directory holds no WAL yet.
pub fn check_or_mark(root: &Path) -> Result<(), DataFormatError> {
    let path = root.join(FORMAT_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.lines().next().unwrap_or("").to_string();
            if found == CURRENT_FORMAT {
                Ok(())
            } else {
                Err(DataFormatError::OtherFormat { path, found })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if wal_exists(root)? {
                return Err(DataFormatError::Unmarked {
                    dir: root.to_path_buf(),
                });
            }
            write_marker(root, &path)
        }
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

fn wal_exists(root: &Path) -> Result<bool, DataFormatError> {
    Ok(DataDir::detect(root)?.wal_exists()?)
}

fn write_marker(root: &Path, path: &Path) -> Result<(), DataFormatError> {
    let temporary = root.join(format!("{FORMAT_FILE_NAME}.tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(io_error("create", &temporary))?;
    file.write_all(format!("{CURRENT_FORMAT}\n").as_bytes())
        .map_err(io_error("write", &temporary))?;
    file.sync_all().map_err(io_error("fsync", &temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error("rename", &temporary))?;
    crate::wal::fs::sync_dir(root).map_err(io_error("fsync", root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_marked_and_then_accepted() {
        let root = tempfile::tempdir().expect("tempdir");
        check_or_mark(root.path()).expect("a new directory");
        let text = std::fs::read_to_string(root.path().join(FORMAT_FILE_NAME)).expect("marker");
        assert_eq!(text, format!("{CURRENT_FORMAT}\n"));
        assert!(!root.path().join("FORMAT.tmp").exists());
        check_or_mark(root.path()).expect("its own marker");
    }

    #[test]
    fn a_wal_without_a_marker_is_refused_and_left_unmarked() {
        let root = tempfile::tempdir().expect("tempdir");
        let wal = root.path().join("wal");
        std::fs::create_dir(&wal).expect("wal dir");
        std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"old").expect("seg");
        let error = check_or_mark(root.path()).expect_err("an unmarked WAL");
        assert!(matches!(&error, DataFormatError::Unmarked { dir } if dir == root.path()));
        assert!(error.to_string().contains("no migration"), "{error}");
        assert!(!root.path().join(FORMAT_FILE_NAME).exists());
    }

    #[test]
    fn an_empty_wal_directory_is_a_new_directory() {
        // The node creates the WAL directory and then its first segment; a
        // crash between the two leaves no WAL to misread.
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("wal")).expect("wal dir");
        check_or_mark(root.path()).expect("no segment, no WAL");
    }

    #[test]
    fn another_format_is_refused_with_what_the_marker_says() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join(FORMAT_FILE_NAME);
        std::fs::write(&path, "some other store, version 7\n").expect("marker");
        let error = check_or_mark(root.path()).expect_err("another format");
        assert!(
            matches!(&error, DataFormatError::OtherFormat { found, .. } if found == "some other store, version 7"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("marker"),
            "some other store, version 7\n",
            "the marker is left alone"
        );
    }
}
