//! [`Snapshotter`]: the directory of snapshot files.
//!
//! Owns: opening the snapshot directory (removing every `*.tmp` a save or
//! transfer left unfinished), listing snapshots newest first, loading the
//! newest one that a WAL snapshot marker vouches for, renaming files that
//! fail their checks to `<name>.broken`, and purging all but the newest
//! `max_snap_files`.
//! Guarantees: a read-only snapshotter never writes, renames or removes.
//! Loading returns only a snapshot whose CRC, decoding and name all agree
//! with a marker.
//! May not touch: WAL segments; the choice of markers is the caller's
//! (normally `wal::valid_snapshot_entries`); saving a snapshot file (one
//! implementation, `persist::snapshot_file`, run by the persistence actor
//! and by everyone else on the std backend; its temporary files end in
//! [`TEMPORARY_SUFFIX`], the suffix cleaned here).

use super::codec::{SnapDecodeError, decode_snapshot_file};
use super::error::SnapError;
use super::snap_name::SnapName;
use super::state_file::{TEMPORARY_SUFFIX, purge_state_files};
use crate::raftpb::{Snapshot, walpb};
use crate::wal::fs::{create_private_dir, sync_dir};
use std::path::{Path, PathBuf};

/// Suffix given to snapshot files that failed their checks.
pub const BROKEN_SUFFIX: &str = ".broken";

/// The snapshot files of one directory.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    dir: PathBuf,
    read_only: bool,
}

impl Snapshotter {
    /// A snapshotter over `dir`, created if missing (owner only, as the
    /// WAL's; snapshot files are created 0600); removes files left by a
    /// save that did not finish.
    pub fn new(dir: &Path) -> Result<Snapshotter, SnapError> {
        create_private_dir(dir).map_err(|e| SnapError::io(dir, e))?;
        for entry in std::fs::read_dir(dir).map_err(|e| SnapError::io(dir, e))? {
            let entry = entry.map_err(|e| SnapError::io(dir, e))?;
            let name = entry.file_name();
            // Every temporary file here is ours: a `.snap` or a state file
            // whose save or transfer did not finish.
            if name.to_string_lossy().ends_with(TEMPORARY_SUFFIX) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| SnapError::io(&path, e))?;
            }
        }
        Ok(Snapshotter {
            dir: dir.to_path_buf(),
            read_only: false,
        })
    }

    /// A snapshotter that only reads `dir` (which may be missing: then it
    /// holds no snapshots); broken files are skipped, not renamed.
    pub fn read_only(dir: &Path) -> Snapshotter {
        Snapshotter {
            dir: dir.to_path_buf(),
            read_only: true,
        }
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshots in the directory, newest first.
    pub fn names(&self) -> Result<Vec<SnapName>, SnapError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if self.read_only && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(SnapError::io(&self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SnapError::io(&self.dir, e))?;
            if let Some(name) = entry.file_name().to_str().and_then(SnapName::parse) {
                names.push(name);
            }
        }
        names.sort_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// Loads and checks one snapshot file.
    pub fn load(&self, name: SnapName) -> Result<Snapshot, SnapError> {
        let path = self.dir.join(name.file_name());
        let bytes = std::fs::read(&path).map_err(|e| SnapError::io(&path, e))?;
        let snapshot = decode_snapshot_file(&bytes).map_err(|e| damaged(&path, e))?;
        let content = (snapshot.metadata.term, snapshot.metadata.index);
        if content != (name.term, name.index) {
            return Err(SnapError::Corrupt {
                path,
                reason: format!(
                    "holds term {} index {}, unlike its name",
                    content.0, content.1
                ),
            });
        }
        Ok(snapshot)
    }

    /// The newest snapshot whose (term, index) matches one of the WAL's
    /// snapshot `markers`, or `None`. A matching file that fails its checks
    /// is renamed `<name>.broken` (unless read-only) and the next older one
    /// is tried.
    pub fn load_newest_available(
        &self,
        markers: &[walpb::Snapshot],
    ) -> Result<Option<Snapshot>, SnapError> {
        self.load_newest_available_reporting(markers, |_| {})
    }

    /// [`load_newest_available`](Self::load_newest_available), calling
    /// `on_broken` for every file that failed its checks.
    pub fn load_newest_available_reporting(
        &self,
        markers: &[walpb::Snapshot],
        mut on_broken: impl FnMut(&SnapError),
    ) -> Result<Option<Snapshot>, SnapError> {
        for name in self.names()? {
            let vouched = markers
                .iter()
                .any(|m| m.term == name.term && m.index == name.index);
            if !vouched {
                continue;
            }
            match self.load(name) {
                Ok(snapshot) => return Ok(Some(snapshot)),
                Err(e) if e.is_damaged_file() => {
                    on_broken(&e);
                    self.set_aside(name)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Removes the oldest snapshot files beyond the newest `max_snap_files`,
    /// and the state files older than the oldest snapshot kept; returns the
    /// removed paths.
    pub fn purge(&self, max_snap_files: usize) -> Result<Vec<PathBuf>, SnapError> {
        assert!(!self.read_only, "purging through a read-only snapshotter");
        let mut removed = Vec::new();
        let names = self.names()?;
        for name in names.iter().skip(max_snap_files) {
            let path = self.dir.join(name.file_name());
            std::fs::remove_file(&path).map_err(|e| SnapError::io(&path, e))?;
            removed.push(path);
        }
        if let Some(oldest_kept) = names.iter().take(max_snap_files).next_back() {
            removed.extend(purge_state_files(&self.dir, oldest_kept.index)?);
        }
        if !removed.is_empty() {
            sync_dir(&self.dir).map_err(|e| SnapError::io(&self.dir, e))?;
        }
        Ok(removed)
    }

    fn set_aside(&self, name: SnapName) -> Result<(), SnapError> {
        if self.read_only {
            return Ok(());
        }
        let path = self.dir.join(name.file_name());
        let broken = self
            .dir
            .join(format!("{}{BROKEN_SUFFIX}", name.file_name()));
        std::fs::rename(&path, &broken).map_err(|e| SnapError::io(&path, e))?;
        sync_dir(&self.dir).map_err(|e| SnapError::io(&self.dir, e))
    }
}

fn damaged(path: &Path, error: SnapDecodeError) -> SnapError {
    let path = path.to_path_buf();
    match error {
        SnapDecodeError::Empty => SnapError::Empty { path },
        SnapDecodeError::CrcMismatch { expected, actual } => SnapError::CrcMismatch {
            path,
            expected,
            actual,
        },
        SnapDecodeError::Undecodable(reason) => SnapError::Corrupt { path, reason },
    }
}
