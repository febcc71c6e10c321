//! The data directory's owner: an exclusive `flock` on `<data-dir>/LOCK`,
//! and creating a data directory durably.
//!
//! Owns: the `LOCK` file and its lock; creating a missing data directory
//! (owner only, 0700, as etcd's) and fsyncing the directories above it so
//! that it survives a power cut; [`DataDirError`].
//! Guarantees: while a [`DataDirLock`] lives, no other process, and no other
//! `DataDirLock` in this one, holds the lock of the same directory (`flock`
//! locks belong to an open file description, so a second open in the same
//! process is refused too); the kernel releases it when the holder exits,
//! however it exits, so a `kill -9` never leaves a stale lock behind.
//! Taking the lock does not wait: a directory in use is
//! [`DataDirError::InUse`], naming it.
//! May not touch: anything else in the directory (the WAL's and the
//! snapshotter's files).

use crate::wal::fs::{create_private_dir, sync_dir, try_lock_exclusive};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The name of the lock file in a data directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Permissions of the lock file: owner only, like every file of the node.
const LOCK_FILE_MODE: u32 = 0o600;

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process (or another node in this one) holds the lock.
    #[error(
        "data directory {} is in use by another ringraft process ({LOCK_FILE_NAME} held)",
        dir.display()
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// The path exists but is not a directory.
    #[error("data directory {} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file-system operation on the data directory failed.
    #[error("data directory: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("stat", "list", "create", "lock", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl DataDirError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> DataDirError {
        DataDirError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The exclusive lock on a data directory, held as long as this value
/// lives.
#[derive(Debug)]
pub struct DataDirLock {
    dir: PathBuf,
    /// Holds the `flock`; closing it releases the lock.
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` if missing (see [`create_data_dir`]) and locks it,
    /// without waiting: a directory another holder has locked is
    /// [`DataDirError::InUse`].
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        create_data_dir(dir)?;
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LOCK_FILE_MODE)
            .open(&path)
            .map_err(|e| DataDirError::io("open", &path, e))?;
        match try_lock_exclusive(&file) {
            Ok(()) => Ok(DataDirLock {
                dir: dir.to_path_buf(),
                _file: file,
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(DataDirError::InUse {
                dir: dir.to_path_buf(),
            }),
            Err(e) => Err(DataDirError::io("lock", &path, e)),
        }
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates the data directory `dir` (and missing parents) owner-only, and
/// fsyncs the directory above each one created, so that a power cut right
/// after boot cannot take the directory, and with it the new WAL, back.
/// An existing directory is left as it is.
pub fn create_data_dir(dir: &Path) -> Result<(), DataDirError> {
    // The missing directories, deepest first.
    let mut missing = Vec::new();
    let mut probe = Some(dir);
    while let Some(path) = probe.filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(DataDirError::NotADirectory {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(path),
            Err(e) => return Err(DataDirError::io("stat", path, e)),
        }
        probe = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    create_private_dir(dir).map_err(|e| DataDirError::io("create", dir, e))?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent).map_err(|e| DataDirError::io("fsync", parent, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_drops() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        let first = DataDirLock::acquire(&dir).expect("first lock");
        let second = DataDirLock::acquire(&dir).expect_err("the directory is locked");
        assert!(
            matches!(&second, DataDirError::InUse { dir: d } if d == &dir),
            "{second:?}"
        );
        let message = second.to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(
            message.contains("in use by another ringraft process"),
            "{message}"
        );
        drop(first);
        DataDirLock::acquire(&dir).expect("free again once the holder is gone");
    }

    #[test]
    fn a_new_data_directory_is_private_and_has_its_parents_created() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("b");
        let lock = DataDirLock::acquire(&dir).expect("lock");
        assert_eq!(lock.dir(), dir);
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let lock_mode = std::fs::metadata(dir.join(LOCK_FILE_NAME))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(lock_mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_an_error_naming_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("data");
        std::fs::write(&path, b"not a directory").expect("write");
        let error = DataDirLock::acquire(&path).expect_err("a file is no data directory");
        assert!(
            matches!(&error, DataDirError::NotADirectory { path: p } if p == &path),
            "{error:?}"
        );
    }
}
