//! Boot: turns a data directory (or its absence) into the state a node
//! starts from, as docs/design.md lays out.
//!
//! Owns: choosing between a new cluster, joining one, restarting, and
//! `force_new_cluster`; checking that the data directory belongs to this
//! node and cluster; rebuilding the raft actor's `MemoryStorage` from the
//! newest snapshot and the WAL after it (the state machine restores from
//! the snapshot it holds).
//!
//! Guarantees: nothing acknowledged is lost — a restart rebuilds every
//! entry the WAL holds; `force_new_cluster` keeps every entry of the WAL
//! and makes this node the only voter with configuration changes written
//! (and synced) to the WAL before raft starts; a data directory written for
//! another node or cluster is refused before anything is changed; the data
//! directory is locked before anything in it is read or changed; a new
//! cluster's WAL appears only with its bootstrap entries and HardState
//! synced in it, so a first boot killed at any instant restarts healthy.
//!
//! May not touch: the running actors. Boot happens before they start; the
//! raft actor applies committed entries after the snapshot itself (the raft
//! node starts with `applied` = the snapshot index, so they are replayed).

use crate::raft::raft::decode_conf_change;
use crate::raft::{MemoryStorage, bootstrap_entries};
use crate::raftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Metadata, Snapshot,
};
use crate::storage::{DataDir, DurableStorage, DurableStorageError, Recovered};
use crate::wal::WalOptions;
use prost::Message as _;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// How this node enters its cluster when its data directory has no WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewMember {
    /// Start a new cluster whose initial voters are these ids.
    NewCluster {
        /// The initial voters (including this node).
        voters: Vec<u64>,
    },
    /// Join an existing cluster: learn the membership from the leader.
    Join,
}

/// What boot needs to know.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// This node's id (not 0).
    pub node_id: u64,
    /// The cluster's id (not 0).
    pub cluster_id: u64,
    /// Where the WAL and snapshots live.
    pub data_dir: DataDir,
    /// What to do without a WAL.
    pub new_member: NewMember,
    /// Disaster recovery: restart as the only voter of a new configuration.
    pub force_new_cluster: bool,
    /// WAL settings.
    pub wal_options: WalOptions,
}

/// Why a node could not boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The data directory was written by another node or for another
    /// cluster.
    #[error(
        "data directory {data_dir} belongs to node {found_node_id:#x} of cluster {found_cluster_id:#x}, not node {node_id:#x} of cluster {cluster_id:#x}"
    )]
    IdentityMismatch {
        /// The data directory.
        data_dir: PathBuf,
        /// This node's id.
        node_id: u64,
        /// This node's cluster id.
        cluster_id: u64,
        /// The node id in the WAL metadata.
        found_node_id: u64,
        /// The cluster id in the WAL metadata.
        found_cluster_id: u64,
    },
    /// A new cluster needs voters, and this node among them.
    #[error("new cluster voters {voters:?} must be non-empty and include node {node_id:#x}")]
    BadInitialVoters {
        /// This node's id.
        node_id: u64,
        /// The voters given.
        voters: Vec<u64>,
    },
    /// Node and cluster ids must not be 0.
    #[error("node id and cluster id must not be 0 (got node {node_id}, cluster {cluster_id})")]
    ZeroId {
        /// The node id given.
        node_id: u64,
        /// The cluster id given.
        cluster_id: u64,
    },
    /// `force_new_cluster` needs an existing data directory.
    #[error("force_new_cluster needs an existing WAL in {data_dir}")]
    ForceNewClusterWithoutWal {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The durable storage failed or is corrupt.
    #[error("storage: {0}")]
    Storage(#[from] DurableStorageError),
    /// The state machine could not restore from the newest snapshot.
    #[error("restoring the state machine: {0}")]
    Restore(#[from] super::error::ApplyError),
    /// The recovered log does not fit in the in-memory raft storage.
    #[error("rebuilding the raft log from the WAL: {0}")]
    RaftStorage(#[from] crate::raft::StorageError),
    /// A configuration change entry in the WAL does not decode.
    #[error("configuration change in the WAL: {0}")]
    ConfChange(#[from] crate::raft::RaftError),
}

/// The state a node starts from.
#[derive(Debug)]
pub struct Booted {
    /// The durable storage, for the persistence actor.
    pub storage: DurableStorage,
    /// The raft actor's in-memory log, rebuilt from disk.
    pub memory: MemoryStorage,
    /// The index the state machine will stand at (the snapshot's, 0:
    /// none; the snapshot is `memory.last_snapshot()`): raft replays
    /// committed entries after it.
    pub applied: u64,
    /// Entries read from the WAL after the snapshot.
    pub wal_entries: usize,
    /// Which path boot took.
    pub path: BootPath,
}

/// Which path boot took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPath {
    /// A new WAL for a new cluster.
    NewCluster,
    /// A new WAL for a member joining a cluster.
    Join,
    /// Restarted from an existing WAL.
    Restart,
    /// Restarted as the only voter of a new configuration.
    ForceNewCluster,
}

/// Boots per `config`: creates or opens the storage (locking the data
/// directory first: [`crate::storage::DataDirLock`]) and rebuilds state.
pub fn boot(config: &BootConfig) -> Result<Booted, BootError> {
    if config.node_id == 0 || config.cluster_id == 0 {
        return Err(BootError::ZeroId {
            node_id: config.node_id,
            cluster_id: config.cluster_id,
        });
    }
    if !config
        .data_dir
        .wal_exists()
        .map_err(DurableStorageError::from)?
    {
        if config.force_new_cluster {
            return Err(BootError::ForceNewClusterWithoutWal {
                data_dir: config.data_dir.root.clone(),
            });
        }
        return create(config);
    }
    let (storage, recovered) = DurableStorage::open(&config.data_dir, config.wal_options)?;
    check_identity(config, &recovered.contents.metadata)?;
    let mut booted = restart(storage, recovered)?;
    if config.force_new_cluster {
        force_new_cluster(&mut booted, config.node_id)?;
    }
    Ok(booted)
}

/// A new member's storage. A new cluster's WAL is created holding the
/// bootstrap entries (`raft::bootstrap_entries`) and their HardState
/// (term 1, committed), and raft starts on that log as on any restart:
/// had they been left to raft's first Ready, a crash between the WAL's
/// creation and that Ready's fdatasync would leave a WAL without any
/// member, from which the node restarts and never elects a leader.
fn create(config: &BootConfig) -> Result<Booted, BootError> {
    let (entries, path) = match &config.new_member {
        NewMember::NewCluster { voters } => {
            if voters.is_empty() || !voters.contains(&config.node_id) {
                return Err(BootError::BadInitialVoters {
                    node_id: config.node_id,
                    voters: voters.clone(),
                });
            }
            (bootstrap_entries(voters), BootPath::NewCluster)
        }
        NewMember::Join => (Vec::new(), BootPath::Join),
    };
    let hard_state = match entries.last() {
        Some(last) => HardState {
            term: last.term,
            vote: 0,
            commit: last.index,
        },
        None => HardState::default(),
    };
    let metadata = Metadata {
        node_id: config.node_id,
        cluster_id: config.cluster_id,
    };
    let storage = DurableStorage::create_with_log(
        &config.data_dir,
        &metadata,
        &hard_state,
        &entries,
        config.wal_options,
    )?;
    let mut memory = MemoryStorage::new();
    memory.set_hard_state(hard_state);
    memory.append(&entries)?;
    Ok(Booted {
        storage,
        memory,
        applied: 0,
        wal_entries: 0,
        path,
    })
}

fn check_identity(config: &BootConfig, metadata: &Metadata) -> Result<(), BootError> {
    if metadata.node_id == config.node_id && metadata.cluster_id == config.cluster_id {
        return Ok(());
    }
    Err(BootError::IdentityMismatch {
        data_dir: config.data_dir.root.clone(),
        node_id: config.node_id,
        cluster_id: config.cluster_id,
        found_node_id: metadata.node_id,
        found_cluster_id: metadata.cluster_id,
    })
}

/// Rebuilds MemoryStorage (snapshot, hard state, entries); the state
/// machine restores from the snapshot and raft replays the rest.
fn restart(storage: DurableStorage, recovered: Recovered) -> Result<Booted, BootError> {
    let mut memory = MemoryStorage::new();
    let mut applied = 0;
    if let Some(snapshot) = recovered.snapshot {
        applied = snapshot.metadata.index;
        memory.apply_snapshot(snapshot)?;
    }
    let contents = recovered.contents;
    memory.set_hard_state(contents.hard_state);
    memory.append(&contents.entries)?;
    Ok(Booted {
        storage,
        memory,
        applied,
        wal_entries: contents.entries.len(),
        path: BootPath::Restart,
    })
}

/// Disaster recovery (etcd's `--force-new-cluster`): appends, after the
/// last entry of the WAL, committed configuration changes removing every
/// other member (and adding this node if it is not one), and syncs them to
/// the WAL before raft sees them.
///
/// Every entry the WAL holds is kept and becomes committed, unlike etcd,
/// which drops the entries past the durable commit index: this node applies
/// (and answers) an entry as soon as it is durable locally and known
/// committed, before the HardState carrying that commit index is durable
/// (docs/design.md §5, "Applying before the commit index is durable"), so
/// dropping the tail could drop a write it acknowledged. Keeping an entry
/// that was never committed is what any newly elected leader does with its
/// log.
fn force_new_cluster(booted: &mut Booted, node_id: u64) -> Result<(), BootError> {
    use crate::raft::Storage as _;
    let hard_state = booted.memory.hard_state();
    let last_index = booted.memory.last_index()?;
    let members = members_up_to(&booted.memory, last_index)?;
    let mut changes: Vec<ConfChange> = members
        .iter()
        .filter(|&&id| id != node_id)
        .map(|&id| conf_change(ConfChangeType::ConfChangeRemoveNode, id))
        .collect();
    if !members.contains(&node_id) {
        changes.push(conf_change(ConfChangeType::ConfChangeAddNode, node_id));
    }
    if changes.is_empty() {
        // Already the only member: the log as it is, committed when this
        // node, as leader, commits an entry of its term.
        booted.path = BootPath::ForceNewCluster;
        return Ok(());
    }
    let term = hard_state.term.max(1);
    // The entries' term must not be below the term of the last entry.
    let term = term.max(booted.memory.term(last_index)?);
    let entries: Vec<Entry> = changes
        .iter()
        .zip(last_index + 1..)
        .map(|(cc, index)| Entry {
            entry_type: EntryType::EntryConfChange as i32,
            term,
            index,
            data: cc.encode_to_vec().into(),
        })
        .collect();
    let new_commit = last_index + entries.len() as u64;
    let new_hard_state = HardState {
        term,
        vote: hard_state.vote,
        commit: new_commit,
    };
    booted.memory.append(&entries)?;
    booted.memory.set_hard_state(new_hard_state);
    booted.storage.save(&new_hard_state, &entries)?;
    booted.storage.sync()?;
    booted.path = BootPath::ForceNewCluster;
    Ok(())
}

/// Every member (voter or learner) as of `last`: the snapshot's
/// configuration plus the configuration changes after it up to `last`.
fn members_up_to(memory: &MemoryStorage, last: u64) -> Result<BTreeSet<u64>, BootError> {
    use crate::raft::Storage as _;
    let snapshot: Snapshot = memory.snapshot(0)?;
    let conf_state: &ConfState = &snapshot.metadata.conf_state;
    let mut members: BTreeSet<u64> = conf_state
        .voters
        .iter()
        .chain(&conf_state.learners)
        .chain(&conf_state.voters_outgoing)
        .copied()
        .collect();
    let first_index = memory.first_index()?;
    if last < first_index {
        return Ok(members);
    }
    for entry in memory.entries(first_index, last + 1, crate::raft::NO_LIMIT)? {
        let Some(cc) = decode_conf_change(&entry)? else {
            continue;
        };
        for change in cc.changes {
            match ConfChangeType::try_from(change.change_type) {
                Ok(ConfChangeType::ConfChangeRemoveNode) => {
                    members.remove(&change.node_id);
                }
                Ok(ConfChangeType::ConfChangeUpdateNode) | Err(_) => {}
                Ok(_) => {
                    members.insert(change.node_id);
                }
            }
        }
    }
    Ok(members)
}

fn conf_change(change_type: ConfChangeType, node_id: u64) -> ConfChange {
    ConfChange {
        change_type: change_type as i32,
        node_id,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
