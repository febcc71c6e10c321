//! The durable storage of one node, as etcd's server sees it: a WAL and a
//! snapshot directory under one data directory.
//!
//! Owns: the data directory layout (ours: `<data-dir>/wal` and
//! `<data-dir>/snap`; etcd's: `<data-dir>/member/wal` and
//! `<data-dir>/member/snap`, read and written alike), recovery at boot (load
//! the newest snapshot a WAL marker vouches for, open the WAL at it, repair a
//! torn tail once), and synchronous saving for boot and tests (after boot
//! the node saves through the persistence actor:
//! [`DurableStorage::into_parts`]).
//! Guarantees: a WAL marker never exists without its snapshot file, and
//! segments are released only once the snapshot is one a restart would use
//! (its marker and a commit of its index durable). Neither rule is
//! restated here: [`DurableStorage::save_snap`] runs the one snapshot file
//! save (`persist::snapshot_file`, on the std backend), which alone hands
//! out the marker the WAL takes, and the release is the WAL's
//! (`wal::release`), exactly as the persistence actor runs them.
//! The data directory is locked (`LOCK`, [`DataDirLock`]) before anything
//! in it is read or changed, and stays locked while the storage, or the
//! lock handed out by [`DurableStorage::into_parts`], lives.
//! May not touch: the raft core's in-memory `raft::storage::MemoryStorage`
//! (a different thing: it is rebuilt from what [`DurableStorage::open`] returns),
//! file formats (owned by `wal` and `snap`).

use crate::persist::PersistError;
use crate::persist::snapshot_file::save_snapshot_file_blocking;
use crate::persist::std_backend::StdIo;
use crate::raftpb::{Entry, HardState, Metadata, Snapshot, walpb};
use crate::snap::{SnapError, Snapshotter};
use crate::wal::{RepairOutcome, Wal, WalContents, WalError, WalOptions, repair};
use std::path::{Path, PathBuf};

mod data_dir_lock;

pub use data_dir_lock::{DataDirError, DataDirLock, LOCK_FILE_NAME, create_data_dir};

/// Which directory layout a data directory uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirLayout {
    /// `<data-dir>/wal` and `<data-dir>/snap`.
    Ringraft,
    /// `<data-dir>/member/wal` and `<data-dir>/member/snap`, as etcd lays
    /// them out.
    Etcd,
}

/// Where a node's WAL and snapshots live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    /// The data directory.
    pub root: PathBuf,
    /// Its layout.
    pub layout: DataDirLayout,
    /// The WAL directory.
    pub wal_dir: PathBuf,
    /// The snapshot directory.
    pub snap_dir: PathBuf,
}

impl DataDir {
    /// Our layout under `root`.
    pub fn ringraft(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
            layout: DataDirLayout::Ringraft,
            wal_dir: root.join("wal"),
            snap_dir: root.join("snap"),
        }
    }

    /// etcd's layout under `root`.
    pub fn etcd(root: &Path) -> DataDir {
        let member = root.join("member");
        DataDir {
            root: root.to_path_buf(),
            layout: DataDirLayout::Etcd,
            wal_dir: member.join("wal"),
            snap_dir: member.join("snap"),
        }
    }

    /// etcd's layout if `root/member/wal` is a directory, ours if it does
    /// not exist. Any other answer of the file system (a permission, an IO
    /// error) is an error: guessing would open the wrong layout, or none.
    pub fn detect(root: &Path) -> Result<DataDir, DataDirError> {
        let etcd_wal = root.join("member").join("wal");
        match std::fs::metadata(&etcd_wal) {
            Ok(meta) if meta.is_dir() => Ok(DataDir::etcd(root)),
            Ok(_) => Err(DataDirError::NotADirectory { path: etcd_wal }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(DataDir::ringraft(root))
            }
            Err(e) => Err(DataDirError::io("stat", &etcd_wal, e)),
        }
    }

    /// True when the WAL directory holds segments; false when it is
    /// missing. A directory that cannot be listed is an error naming it,
    /// never "no WAL" (which would start a new member over old data).
    pub fn wal_exists(&self) -> Result<bool, WalError> {
        match crate::wal::segment_name::list_segments(&self.wal_dir) {
            Ok(segments) => Ok(!segments.is_empty()),
            Err(WalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Errors of the storage façade.
#[derive(Debug, thiserror::Error)]
pub enum DurableStorageError {
    /// From the WAL.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// From the snapshot files.
    #[error(transparent)]
    Snap(#[from] SnapError),
    /// From saving a snapshot file.
    #[error(transparent)]
    SnapshotSave(#[from] PersistError),
    /// The data directory is in use or unusable.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
}

/// What a node restarts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The newest usable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Metadata, hard state and entries after the snapshot.
    pub contents: WalContents,
    /// The torn-tail repair done while opening, if one was needed.
    pub repair: Option<RepairOutcome>,
}

/// A node's WAL and snapshotter, used together, with the lock of their
/// data directory.
#[derive(Debug)]
pub struct DurableStorage {
    wal: Wal,
    snapshotter: Snapshotter,
    lock: DataDirLock,
}

impl DurableStorage {
    /// Creates the storage of a new member in `data_dir` (locked first).
    pub fn create(
        data_dir: &DataDir,
        metadata: &Metadata,
        options: WalOptions,
    ) -> Result<DurableStorage, DurableStorageError> {
        DurableStorage::create_with_log(data_dir, metadata, &HardState::default(), &[], options)
    }

    /// Creates the storage of a new member in `data_dir` (locked first)
    /// whose WAL starts with `entries` and `hard_state` (a new cluster's
    /// bootstrap entries): the WAL appears with them, synced, or not at
    /// all, so a crash at any instant of a first boot leaves either no WAL
    /// (the next boot starts over) or one a restart reads whole.
    pub fn create_with_log(
        data_dir: &DataDir,
        metadata: &Metadata,
        hard_state: &HardState,
        entries: &[Entry],
        options: WalOptions,
    ) -> Result<DurableStorage, DurableStorageError> {
        let lock = DataDirLock::acquire(&data_dir.root)?;
        let snapshotter = Snapshotter::new(&data_dir.snap_dir)?;
        let wal = Wal::create_with_log(&data_dir.wal_dir, metadata, hard_state, entries, options)?;
        Ok(DurableStorage {
            wal,
            snapshotter,
            lock,
        })
    }

    /// Opens existing storage: the newest snapshot the WAL vouches for (at or
    /// below its commit index), then the WAL from that snapshot on. A torn
    /// tail is repaired once (keeping a `.broken` copy); corruption is an
    /// error. The data directory is locked before anything in it is read
    /// or changed.
    pub fn open(
        data_dir: &DataDir,
        options: WalOptions,
    ) -> Result<(DurableStorage, Recovered), DurableStorageError> {
        let lock = DataDirLock::acquire(&data_dir.root)?;
        let snapshotter = Snapshotter::new(&data_dir.snap_dir)?;
        let markers = crate::wal::valid_snapshot_entries(&data_dir.wal_dir)?;
        let snapshot = snapshotter.load_newest_available(&markers)?;
        let at = snapshot
            .as_ref()
            .map_or_else(walpb::Snapshot::default, |s| walpb::Snapshot {
                index: s.metadata.index,
                term: s.metadata.term,
                conf_state: Some(s.metadata.conf_state.clone()),
            });
        let (wal, contents, repair) = open_wal_repairing_once(&data_dir.wal_dir, &at, options)?;
        let recovered = Recovered {
            snapshot,
            contents,
            repair,
        };
        let storage = DurableStorage {
            wal,
            snapshotter,
            lock,
        };
        Ok((storage, recovered))
    }

    /// Saves entries and the hard state (syncing when raft requires it).
    pub fn save(
        &mut self,
        hard_state: &HardState,
        entries: &[Entry],
    ) -> Result<(), DurableStorageError> {
        self.wal.save(hard_state, entries)?;
        self.release_if_committed()
    }

    /// Saves a snapshot in the safe order: the snapshot file (durable), then
    /// the WAL marker (synced), then releases the segments before it, as
    /// soon as a durable hard state commits its index. An empty snapshot is
    /// ignored.
    pub fn save_snap(&mut self, snapshot: &Snapshot) -> Result<(), DurableStorageError> {
        if snapshot.is_empty() {
            return Ok(());
        }
        let dir = self.snapshotter.dir();
        let backend =
            StdIo::new().map_err(|e| PersistError::io("starting the fsync thread", dir, e))?;
        let marker = save_snapshot_file_blocking(&backend, dir, snapshot)?;
        self.wal.save_snapshot(&marker)?;
        self.release_if_committed()
    }

    /// Releases the segments before the pending snapshot once the WAL's hard
    /// state commits it (the WAL's rule), syncing first: the commit may
    /// still be buffered (a commit-only save), and only a synced one counts.
    fn release_if_committed(&mut self) -> Result<(), DurableStorageError> {
        let point = self.wal.sync_point();
        if point.releasable().is_none() {
            return Ok(());
        }
        self.wal.sync()?;
        self.wal.release_if_committed(point);
        Ok(())
    }

    /// Writes everything buffered and syncs the WAL.
    pub fn sync(&mut self) -> Result<(), DurableStorageError> {
        Ok(self.wal.sync()?)
    }

    /// Removes released WAL segments beyond `max_wal_files` and snapshot
    /// files beyond the newest `max_snap_files`; returns the removed paths.
    pub fn purge(
        &mut self,
        max_wal_files: usize,
        max_snap_files: usize,
    ) -> Result<Vec<PathBuf>, DurableStorageError> {
        let mut removed = self.wal.purge(max_wal_files)?;
        removed.extend(self.snapshotter.purge(max_snap_files)?);
        Ok(removed)
    }

    /// Syncs and closes.
    pub fn close(self) -> Result<(), DurableStorageError> {
        Ok(self.wal.close()?)
    }

    /// The WAL.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The snapshotter.
    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snapshotter
    }

    /// The WAL and the snapshotter, to hand to the persistence actor after
    /// boot (which then runs the same save path on its own IO backend), and
    /// the data directory's lock, to hold until the node has stopped.
    pub fn into_parts(self) -> (Wal, Snapshotter, DataDirLock) {
        (self.wal, self.snapshotter, self.lock)
    }
}

fn open_wal_repairing_once(
    wal_dir: &Path,
    at: &walpb::Snapshot,
    options: WalOptions,
) -> Result<(Wal, WalContents, Option<RepairOutcome>), WalError> {
    match Wal::open(wal_dir, at, options) {
        Ok((wal, contents)) => Ok((wal, contents, None)),
        Err(WalError::TornTail { .. }) => {
            let outcome = repair(wal_dir)?;
            let (wal, contents) = Wal::open(wal_dir, at, options)?;
            Ok((wal, contents, Some(outcome)))
        }
        Err(e) => Err(e),
    }
}
