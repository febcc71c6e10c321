//! `ringraft restore`: a new member's data directory from a backup that
//! etcd's Maintenance `Snapshot` call streamed (`etcdctl snapshot save`),
//! as etcd's `snapshot restore` makes one.
//!
//! Owns: checking the backup, building the directory and putting it in
//! place. The directory is built by the node's own code, not by writing
//! files here: a node boots a new cluster (the initial members of
//! `--initial-cluster`) in a staging directory with the backup's state as
//! its state machine, applies the bootstrap entries, saves a snapshot of
//! that state through its persistence actor (the rule "snapshot file
//! durable → WAL marker" stays in one place), and shuts down gracefully.
//!
//! Guarantees: a backup whose hash does not match is refused before
//! anything is created; an existing non-empty data directory is refused
//! and left untouched; the data directory appears only complete (staged
//! beside it, fsynced, renamed, its parent fsynced), so a restore killed at
//! any instant leaves no data directory, and a new run replaces the stale
//! staging directory. Every member of the new cluster restores the same
//! backup, each with its own `--id` and the same `--initial-cluster` and
//! `--cluster-token`, then starts `ringraft serve` with them. May not touch:
//! the node's boot and snapshot rules.

use super::config::ServeConfig;
use super::data_format;
use crate::etcd::EtcdStore;
use crate::etcd::backup::{BackupError, check_backup};
use crate::node::{Node, NodeError};
use crate::state_machine::StateMachine;
use crate::transport::InProcessNetwork;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest the staging node may take to save its first snapshot: this,
/// plus a second for every [`BYTES_PER_EXTRA_SECOND`] of backup (a slow
/// disk still finishes; a stuck node does not hang the command forever).
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(60);
/// Backup bytes that add a second to [`SNAPSHOT_DEADLINE`].
const BYTES_PER_EXTRA_SECOND: u64 = 20 * 1024 * 1024;

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The raft index of the snapshot holding the state.
    pub snapshot_index: u64,
    /// The store's revision, as in the backup.
    pub revision: i64,
}

/// Why a restore failed (nothing was put in place).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The flags do not describe a new member.
    #[error("{0}")]
    Usage(String),
    /// The backup is unreadable or damaged.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The backup's state does not restore.
    #[error("restoring the state of backup {path}: {reason}")]
    State {
        /// The backup.
        path: PathBuf,
        /// The store's error.
        reason: String,
    },
    /// The data directory exists and holds something.
    #[error(
        "data directory {0} exists and is not empty: a restore makes a new one (remove it, or choose another --data-dir)"
    )]
    DataDirNotEmpty(PathBuf),
    /// The file system failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The staging directory cannot be made.
    #[error("the staging directory: {0}")]
    DataDir(#[from] crate::storage::DataDirError),
    /// The staging directory cannot be marked.
    #[error(transparent)]
    Format(#[from] data_format::DataFormatError),
    /// The staging node failed.
    #[error("the staging node: {0}")]
    Node(#[from] NodeError),
    /// The staging node did not save its snapshot in time.
    #[error("the staging node saved no snapshot within {0:?}")]
    NoSnapshot(Duration),
}

/// Restores the backup at `backup` into `config.data_dir`, for member
/// `config.node_id` of a new cluster of `config.initial_cluster`.
pub async fn restore(config: &ServeConfig, backup: &Path) -> Result<Restored, RestoreError> {
    if config.join || config.force_new_cluster {
        return Err(RestoreError::Usage(
            "a restore starts a new cluster: --join and --force-new-cluster do not apply".into(),
        ));
    }
    config
        .validate()
        .map_err(|e| RestoreError::Usage(e.to_string()))?;
    let state_len = check_backup(backup)?;
    refuse_non_empty(&config.data_dir)?;
    let mut store = EtcdStore::new();
    let file = std::fs::File::open(backup).map_err(|source| RestoreError::Io {
        op: "open",
        path: backup.to_path_buf(),
        source,
    })?;
    store
        .restore(&mut file.take(state_len))
        .map_err(|e| RestoreError::State {
            path: backup.to_path_buf(),
            reason: e.to_string(),
        })?;
    let revision = store.applied_revision().get();

    let staging = staging_dir(&config.data_dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io_error("remove", &staging))?;
    }
    crate::storage::create_data_dir(&staging)?;
    data_format::check_or_mark(&staging)?;
    let deadline = SNAPSHOT_DEADLINE + Duration::from_secs(state_len / BYTES_PER_EXTRA_SECOND);
    let snapshot_index = save_first_snapshot(config, &staging, store, deadline).await?;
    put_in_place(&staging, &config.data_dir)?;
    Ok(Restored {
        data_dir: config.data_dir.clone(),
        snapshot_index,
        revision,
    })
}

/// Boots the staging node, waits until it saved a snapshot of the state
/// at the last bootstrap entry, and shuts it down. Returns the index.
async fn save_first_snapshot(
    config: &ServeConfig,
    staging: &Path,
    store: EtcdStore,
    patience: Duration,
) -> Result<u64, RestoreError> {
    let mut node_config = config.node_config();
    node_config.data_dir = staging.to_path_buf();
    // Nothing else writes to this disk for the node: no pacing.
    node_config.snapshot_write_bytes_per_second = 0;
    // Alone, it must not campaign: its term would only grow.
    node_config.election_tick = 1_000_000;
    node_config.heartbeat_tick = 1;
    node_config.snapshot_count = node_config.snapshot_count.max(1);
    let network = InProcessNetwork::new();
    let (transport, inbox) = network.endpoint(config.node_id);
    let node =
        tokio::task::spawn_blocking(move || Node::start(node_config, store, transport, inbox))
            .await
            .map_err(|_| NodeError::Stopped)??;
    let members = config.initial_cluster.len() as u64;
    let deadline = Instant::now() + patience;
    let index = loop {
        let status = node.status().await?;
        if status.applied >= members && status.snapshot_index >= status.applied {
            break status.snapshot_index;
        }
        if Instant::now() > deadline {
            let _ = node.shutdown().await;
            return Err(RestoreError::NoSnapshot(patience));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Graceful: the snapshot's save is made durable before it returns.
    node.shutdown().await?;
    Ok(index)
}

/// `<data_dir>.restoring`, beside it on the same file system.
fn staging_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".restoring");
    PathBuf::from(name)
}

fn refuse_non_empty(data_dir: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(RestoreError::DataDirNotEmpty(data_dir.to_path_buf())),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RestoreError::Io {
            op: "read",
            path: data_dir.to_path_buf(),
            source,
        }),
    }
}

/// Renames the finished staging directory to `data_dir` (an empty one
/// there is replaced) and syncs the parent.
fn put_in_place(staging: &Path, data_dir: &Path) -> Result<(), RestoreError> {
    crate::wal::fs::sync_dir(staging).map_err(io_error("sync", staging))?;
    if data_dir.exists() {
        std::fs::remove_dir(data_dir).map_err(io_error("replace the empty", data_dir))?;
    }
    std::fs::rename(staging, data_dir).map_err(io_error("rename into place", data_dir))?;
    let parent = match data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    crate::wal::fs::sync_dir(parent).map_err(io_error("sync", parent))
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| RestoreError::Io { op, path, source }
}
