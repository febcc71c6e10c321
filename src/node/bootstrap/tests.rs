//! Boot paths on real data directories: new cluster, join, restart with and
//! without a snapshot, identity checks, force_new_cluster.

use super::*;
use crate::kv::KvCommand;
use crate::raft::Storage as _;
use crate::raftpb::SnapshotMetadata;

const OPTIONS: WalOptions = WalOptions {
    segment_size_bytes: 256 * 1024,
};

fn config(root: &std::path::Path, node_id: u64, new_member: NewMember) -> BootConfig {
    BootConfig {
        node_id,
        cluster_id: 7,
        data_dir: DataDir::ringraft(root),
        new_member,
        force_new_cluster: false,
        wal_options: OPTIONS,
    }
}

fn new_cluster(voters: &[u64]) -> NewMember {
    NewMember::NewCluster {
        voters: voters.to_vec(),
    }
}

fn add_node_entry(index: u64, node_id: u64) -> Entry {
    Entry {
        entry_type: EntryType::EntryConfChange as i32,
        term: 1,
        index,
        data: conf_change(ConfChangeType::ConfChangeAddNode, node_id)
            .encode_to_vec()
            .into(),
    }
}

fn put_entry(index: u64, term: u64, key: &[u8]) -> Entry {
    Entry::new(term, index, KvCommand::put(key, b"v").encode_to_vec())
}

/// A data directory of node 1 in cluster 7 holding a bootstrapped 3-node
/// log (1..=3), puts at 4 and 5, HardState commit `commit`.
fn written_data_dir(root: &std::path::Path, commit: u64) {
    let mut entries: Vec<Entry> = (1..=3).map(|i| add_node_entry(i, i)).collect();
    entries.push(put_entry(4, 2, b"a"));
    entries.push(put_entry(5, 2, b"b"));
    data_dir_with(root, &entries, commit);
}

/// A data directory of node 1 in cluster 7 whose WAL holds `entries` and
/// HardState term 2, vote 1, commit `commit`. The first three entries are
/// the bootstrap entries of voters 1, 2, 3, which boot wrote already.
fn data_dir_with(root: &std::path::Path, entries: &[Entry], commit: u64) {
    let booted = boot(&config(root, 1, new_cluster(&[1, 2, 3]))).expect("create");
    assert_eq!(entries_from(&booted.memory, 1), entries[..3]);
    let mut storage = booted.storage;
    let hard_state = HardState {
        term: 2,
        vote: 1,
        commit,
    };
    storage.save(&hard_state, &entries[3..]).expect("save");
    storage.close().expect("close");
}

/// Boots node 1 of `root` with `force_new_cluster`.
fn force_boot(root: &std::path::Path) -> Booted {
    let mut forced = config(root, 1, new_cluster(&[1, 2, 3]));
    forced.force_new_cluster = true;
    boot(&forced).expect("force")
}

/// The entries of `memory` from `first` to its last.
fn entries_from(memory: &MemoryStorage, first: u64) -> Vec<Entry> {
    let end = memory.last_index().expect("last") + 1;
    memory
        .entries(first, end, crate::raft::NO_LIMIT)
        .expect("entries")
}

#[test]
fn new_cluster_creates_the_wal_with_the_bootstrap_entries_in_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let booted = boot(&config(dir.path(), 1, new_cluster(&[1, 2, 3]))).expect("boot");
    assert_eq!(booted.path, BootPath::NewCluster);
    assert_eq!(booted.applied, 0);
    let expected: Vec<Entry> = (1..=3).map(|i| add_node_entry(i, i)).collect();
    let committed = HardState {
        term: 1,
        vote: 0,
        commit: 3,
    };
    assert_eq!(entries_from(&booted.memory, 1), expected);
    assert_eq!(booted.memory.hard_state(), committed);
    assert_eq!(DataDir::ringraft(dir.path()).wal_exists().ok(), Some(true));
    // Dropped without closing, as a crash right after boot: the entries
    // were in the WAL (synced) before it appeared.
    drop(booted);
    let again = boot(&config(dir.path(), 1, new_cluster(&[1, 2, 3]))).expect("restart");
    assert_eq!(again.path, BootPath::Restart, "never bootstrap twice");
    assert_eq!(entries_from(&again.memory, 1), expected);
    assert_eq!(again.memory.hard_state(), committed);
}

#[test]
fn a_second_boot_on_a_data_directory_in_use_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = boot(&config(dir.path(), 1, new_cluster(&[1]))).expect("boot");
    let second = boot(&config(dir.path(), 1, new_cluster(&[1])));
    let error = second.expect_err("the directory is locked by the first");
    assert!(
        matches!(
            &error,
            BootError::Storage(DurableStorageError::DataDir(
                crate::storage::DataDirError::InUse { .. }
            ))
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
    drop(first);
    boot(&config(dir.path(), 1, new_cluster(&[1]))).expect("free once the first is gone");
}

#[test]
fn a_wal_directory_that_cannot_be_listed_is_an_error_not_a_new_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the WAL directory belongs: listing it fails (ENOTDIR),
    // which must not read as "no WAL yet".
    std::fs::write(dir.path().join("wal"), b"not a directory").expect("write");
    let error = boot(&config(dir.path(), 1, new_cluster(&[1]))).expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().join("wal").display().to_string()),
        "{message}"
    );
    assert!(
        !DataDir::ringraft(dir.path()).snap_dir.exists(),
        "nothing created"
    );
}

#[test]
fn a_layout_that_cannot_be_told_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `member` a symlink to itself: stat of member/wal fails with ELOOP,
    // neither "etcd's layout" nor "ours".
    std::os::unix::fs::symlink("member", dir.path().join("member")).expect("symlink");
    let error = DataDir::detect(dir.path()).expect_err("ELOOP is an error");
    let message = error.to_string();
    assert!(message.contains("member"), "{message}");
    assert!(message.contains("stat"), "{message}");
}

#[test]
fn joining_member_starts_empty_without_bootstrap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let booted = boot(&config(dir.path(), 4, NewMember::Join)).expect("boot");
    assert_eq!(booted.path, BootPath::Join);
    assert!(
        booted.memory.hard_state().is_empty(),
        "a joining member starts empty"
    );
    assert_eq!(booted.memory.last_index(), Ok(0));
}

#[test]
fn bad_initial_voters_and_zero_ids_are_refused_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = boot(&config(dir.path(), 4, new_cluster(&[1, 2, 3])));
    assert!(matches!(
        result,
        Err(BootError::BadInitialVoters { node_id: 4, .. })
    ));
    let mut zero = config(dir.path(), 0, new_cluster(&[1]));
    assert!(matches!(boot(&zero), Err(BootError::ZeroId { .. })));
    zero.node_id = 1;
    zero.cluster_id = 0;
    assert!(matches!(boot(&zero), Err(BootError::ZeroId { .. })));
    assert_eq!(DataDir::ringraft(dir.path()).wal_exists().ok(), Some(false));
}

#[test]
fn another_nodes_or_clusters_data_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_data_dir(dir.path(), 5);
    let other_node = boot(&config(dir.path(), 2, new_cluster(&[1, 2, 3])));
    let error = other_node.expect_err("node 2 must not use node 1's data");
    assert!(matches!(
        error,
        BootError::IdentityMismatch {
            node_id: 2,
            found_node_id: 1,
            ..
        }
    ));
    assert!(error.to_string().contains("belongs to node 0x1"), "{error}");
    let mut other_cluster = config(dir.path(), 1, new_cluster(&[1, 2, 3]));
    other_cluster.cluster_id = 8;
    assert!(matches!(
        boot(&other_cluster),
        Err(BootError::IdentityMismatch {
            cluster_id: 8,
            found_cluster_id: 7,
            ..
        })
    ));
    // Refused without damage: the owner still boots.
    boot(&config(dir.path(), 1, new_cluster(&[1, 2, 3]))).expect("owner boots");
}

#[test]
fn restart_rebuilds_memory_storage_from_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_data_dir(dir.path(), 5);
    let booted = boot(&config(dir.path(), 1, new_cluster(&[1, 2, 3]))).expect("boot");
    assert_eq!(booted.path, BootPath::Restart);
    assert_eq!(booted.wal_entries, 5);
    assert_eq!(booted.applied, 0, "no snapshot: raft replays everything");
    assert_eq!(booted.memory.last_index(), Ok(5));
    assert_eq!(booted.memory.term(5), Ok(2));
    assert_eq!(
        booted.memory.hard_state(),
        HardState {
            term: 2,
            vote: 1,
            commit: 5
        }
    );
}

#[test]
fn restart_from_snapshot_reads_only_the_wal_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_data_dir(dir.path(), 5);
    {
        let (mut storage, _) =
            DurableStorage::open(&DataDir::ringraft(dir.path()), OPTIONS).expect("open");
        let snapshot = Snapshot {
            data: b"the state machine's bytes".to_vec(),
            metadata: SnapshotMetadata {
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    ..Default::default()
                },
                index: 4,
                term: 2,
            },
        };
        storage.save_snap(&snapshot).expect("save snapshot");
        storage.close().expect("close");
    }
    let booted = boot(&config(dir.path(), 1, new_cluster(&[1, 2, 3]))).expect("boot");
    assert_eq!(booted.applied, 4);
    let snapshot = booted.memory.last_snapshot();
    assert_eq!(snapshot.metadata.index, 4);
    assert_eq!(snapshot.data, b"the state machine's bytes");
    assert_eq!(booted.wal_entries, 1, "only entry 5 after the snapshot");
    assert_eq!(booted.memory.first_index(), Ok(5));
    assert_eq!(booted.memory.last_index(), Ok(5));
}

#[test]
fn force_new_cluster_keeps_every_wal_entry_and_leaves_one_voter() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Entry 5 is durable but its commit is not: this node may have applied
    // and answered it (it applies before the commit index is durable), so
    // it must survive.
    written_data_dir(dir.path(), 4);
    let booted = force_boot(dir.path());
    assert_eq!(booted.path, BootPath::ForceNewCluster);
    let entries = entries_from(&booted.memory, 1);
    let indexes: Vec<u64> = entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        entries[3].data,
        KvCommand::put(b"a", b"v").encode_to_vec(),
        "committed put kept"
    );
    assert_eq!(
        entries[4].data,
        KvCommand::put(b"b", b"v").encode_to_vec(),
        "put past the durable commit kept"
    );
    let removals: Vec<ChangeSummary> = entries[5..].iter().map(summary).collect();
    assert_eq!(
        removals,
        vec![
            (ConfChangeType::ConfChangeRemoveNode, 2),
            (ConfChangeType::ConfChangeRemoveNode, 3)
        ]
    );
    assert!(entries[5].term >= entries[4].term, "terms never go down");
    assert_eq!(booted.memory.hard_state().commit, 7);
    booted.storage.close().expect("close");

    // The change is durable: a normal restart sees the same log.
    let again = boot(&config(dir.path(), 1, new_cluster(&[1, 2, 3]))).expect("restart");
    assert_eq!(again.memory.last_index(), Ok(7));
    assert_eq!(again.memory.hard_state().commit, 7);
    let last = again
        .memory
        .entries(7, 8, crate::raft::NO_LIMIT)
        .expect("entry");
    assert_eq!(summary(&last[0]), (ConfChangeType::ConfChangeRemoveNode, 3));
}

#[test]
fn force_new_cluster_counts_membership_changes_past_the_durable_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries: Vec<Entry> = (1..=3).map(|i| add_node_entry(i, i)).collect();
    // Index 4 removes member 3; only index 3 is durably committed.
    let mut removal = add_node_entry(4, 3);
    removal.data = conf_change(ConfChangeType::ConfChangeRemoveNode, 3)
        .encode_to_vec()
        .into();
    removal.term = 2;
    entries.push(removal);
    data_dir_with(dir.path(), &entries, 3);

    let booted = force_boot(dir.path());
    let removals: Vec<ChangeSummary> = entries_from(&booted.memory, 5)
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        removals,
        vec![(ConfChangeType::ConfChangeRemoveNode, 2)],
        "member 3 was already removed at index 4"
    );
    assert_eq!(booted.memory.hard_state().commit, 5);
}

type ChangeSummary = (ConfChangeType, u64);

fn summary(entry: &Entry) -> ChangeSummary {
    let cc = decode_conf_change(entry)
        .expect("decodes")
        .expect("a conf change");
    let change = &cc.changes[0];
    (
        ConfChangeType::try_from(change.change_type).expect("type"),
        change.node_id,
    )
}

#[test]
fn force_new_cluster_without_wal_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut forced = config(dir.path(), 1, new_cluster(&[1]));
    forced.force_new_cluster = true;
    assert!(matches!(
        boot(&forced),
        Err(BootError::ForceNewClusterWithoutWal { .. })
    ));
}
