//! Snapshot files: the one save sequence (`persist::snapshot_file`, here on
//! the std backend, with and without injected failures) goes temporary
//! file, fsync, rename, directory fsync and hands out the WAL marker only at
//! the end, and a save cut short leaves only a `*.tmp` that reopening
//! removes; the newest valid snapshot the WAL vouches for is chosen;
//! a corrupt one is renamed `.broken` and the older one used; one without a
//! WAL marker (or beyond the WAL's commit index) is ignored; the storage
//! façade saves in the safe order and recovers from it.

mod wal_common;

use ringraft::persist::fault_injection::{
    Fault, FaultPlan, FaultyIo, InjectedErrno, IoEvent, IoLog,
};
use ringraft::persist::snapshot_file::save_snapshot_file_blocking;
use ringraft::persist::std_backend::StdIo;
use ringraft::raftpb::{ConfState, HardState, Snapshot, SnapshotMetadata, walpb};
use ringraft::snap::{SnapName, Snapshotter};
use ringraft::storage::{DataDir, DurableStorage};
use ringraft::wal::{self, WalOptions};
use std::path::{Path, PathBuf};
use wal_common::{NODE_ID, entry, metadata, scratch_dir};

fn snapshot(term: u64, index: u64) -> Snapshot {
    Snapshot {
        data: format!("state machine at {index}").into_bytes(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![NODE_ID],
                ..ConfState::default()
            },
            index,
            term,
        },
    }
}

fn marker(term: u64, index: u64) -> walpb::Snapshot {
    walpb::Snapshot {
        index,
        term,
        conf_state: None,
    }
}

fn three_snapshots(dir: &Path) -> Snapshotter {
    let snapshotter = Snapshotter::new(dir).unwrap();
    let backend = StdIo::new().unwrap();
    for (term, index) in [(5, 10), (5, 20), (6, 30)] {
        save_snapshot_file_blocking(&backend, dir, &snapshot(term, index)).unwrap();
    }
    snapshotter
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_save_goes_tmp_fsync_rename_dir_fsync_and_only_then_makes_the_marker() {
    let scratch = scratch_dir();
    let dir = scratch.path();
    let log = IoLog::default();
    let backend = FaultyIo::new(StdIo::new().unwrap(), log.clone(), FaultPlan::default());
    let marker = save_snapshot_file_blocking(&backend, dir, &snapshot(5, 20)).unwrap();
    assert_eq!((marker.term(), marker.index()), (5, 20));
    assert_eq!(
        marker.record().conf_state,
        Some(snapshot(5, 20).metadata.conf_state)
    );
    let name = SnapName { term: 5, index: 20 }.file_name();
    let (final_path, writing) = (dir.join(&name), dir.join(format!("{name}.tmp")));
    assert_eq!(
        log.events(),
        vec![
            IoEvent::Write {
                path: writing.clone(),
                file_offset: 0,
                len: std::fs::metadata(&final_path).unwrap().len() as usize,
                ok: true,
            },
            IoEvent::SyncStarted {
                path: writing.clone()
            },
            IoEvent::SyncFinished {
                path: writing.clone(),
                ok: true
            },
            IoEvent::Renamed {
                from: writing,
                to: final_path,
                ok: true
            },
            IoEvent::SyncStarted {
                path: dir.to_path_buf()
            },
            IoEvent::SyncFinished {
                path: dir.to_path_buf(),
                ok: true
            },
        ]
    );
    assert_eq!(file_names(dir), [name]);
}

#[test]
fn a_save_cut_short_leaves_only_a_tmp_file_that_reopening_removes() {
    let name = SnapName { term: 7, index: 50 }.file_name();
    let failures = [
        (
            "short write",
            FaultPlan {
                snapshot_write: Some(Fault::nth(1, InjectedErrno::NoSpace).after_writing(64)),
                ..FaultPlan::default()
            },
            "writing snapshot file",
        ),
        (
            "failed fsync of the file",
            FaultPlan {
                snapshot_sync: Some(Fault::nth(1, InjectedErrno::Io)),
                ..FaultPlan::default()
            },
            "fsync of snapshot file",
        ),
    ];
    for (what, plan, operation) in failures {
        let scratch = scratch_dir();
        let dir = scratch.path();
        let snapshotter = three_snapshots(dir);
        let backend = FaultyIo::new(StdIo::new().unwrap(), IoLog::default(), plan);
        let error = save_snapshot_file_blocking(&backend, dir, &snapshot(7, 50))
            .expect_err(what)
            .to_string();
        assert!(error.contains(operation), "{what}: {error}");
        // No marker was made, and the only trace is the temporary file.
        let leftover = dir.join(format!("{name}.tmp"));
        assert!(leftover.exists(), "{what}");
        assert!(!dir.join(&name).exists(), "{what}");
        assert_eq!(snapshotter.names().unwrap().len(), 3, "{what}");
        // The next open (a restart) removes it.
        let reopened = Snapshotter::new(dir).unwrap();
        assert!(!leftover.exists(), "{what}");
        assert!(
            file_names(dir).iter().all(|n| !n.ends_with(".tmp")),
            "{what}"
        );
        assert_eq!(reopened.names().unwrap().len(), 3, "{what}");
    }
}

#[test]
fn a_save_whose_directory_fsync_fails_makes_no_marker() {
    let scratch = scratch_dir();
    let dir = scratch.path();
    three_snapshots(dir);
    // The second sync of a save is the directory's.
    let plan = FaultPlan {
        snapshot_sync: Some(Fault::nth(2, InjectedErrno::Io)),
        ..FaultPlan::default()
    };
    let backend = FaultyIo::new(StdIo::new().unwrap(), IoLog::default(), plan);
    let error = save_snapshot_file_blocking(&backend, dir, &snapshot(7, 50)).unwrap_err();
    assert!(
        error.to_string().contains("fsync of snapshot directory"),
        "{error}"
    );
    // The rename may or may not survive a crash now; without a marker no
    // restart uses the file either way.
    let reopened = Snapshotter::new(dir).unwrap();
    let loaded = reopened
        .load_newest_available(&markers(&ALL_MARKERS))
        .unwrap();
    assert_eq!(loaded, Some(snapshot(6, 30)));
}

const ALL_MARKERS: [(u64, u64); 3] = [(5, 10), (5, 20), (6, 30)];

fn markers(pairs: &[(u64, u64)]) -> Vec<walpb::Snapshot> {
    pairs.iter().map(|&(t, i)| marker(t, i)).collect()
}

fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn newest_valid_snapshot_is_chosen() {
    let scratch = scratch_dir();
    let snapshotter = three_snapshots(scratch.path());
    let loaded = snapshotter
        .load_newest_available(&markers(&ALL_MARKERS))
        .unwrap();
    assert_eq!(loaded, Some(snapshot(6, 30)));
    let names: Vec<_> = snapshotter.names().unwrap();
    assert_eq!(names[0], SnapName { term: 6, index: 30 });
}

#[test]
fn corrupt_snapshot_is_set_aside_and_the_older_one_used() {
    let scratch = scratch_dir();
    let snapshotter = three_snapshots(scratch.path());
    let newest = scratch
        .path()
        .join(SnapName { term: 6, index: 30 }.file_name());
    damage(&newest);
    let mut broken = Vec::new();
    let loaded = snapshotter
        .load_newest_available_reporting(&markers(&ALL_MARKERS), |e| broken.push(e.to_string()))
        .unwrap();
    assert_eq!(loaded, Some(snapshot(5, 20)));
    assert_eq!(broken.len(), 1);
    assert!(broken[0].contains("CRC mismatch"), "{}", broken[0]);
    assert!(!newest.exists());
    assert!(
        scratch
            .path()
            .join(format!(
                "{}.broken",
                SnapName { term: 6, index: 30 }.file_name()
            ))
            .exists()
    );
    assert_eq!(snapshotter.names().unwrap().len(), 2);
}

#[test]
fn read_only_snapshotter_skips_but_keeps_broken_files() {
    let scratch = scratch_dir();
    three_snapshots(scratch.path());
    let newest = scratch
        .path()
        .join(SnapName { term: 6, index: 30 }.file_name());
    damage(&newest);
    let loaded = Snapshotter::read_only(scratch.path())
        .load_newest_available(&markers(&ALL_MARKERS))
        .unwrap();
    assert_eq!(loaded, Some(snapshot(5, 20)));
    assert!(newest.exists());
    let missing = Snapshotter::read_only(&scratch.path().join("missing"));
    assert_eq!(missing.load_newest_available(&[]).unwrap(), None);
}

#[test]
fn snapshot_without_a_wal_marker_is_ignored() {
    let scratch = scratch_dir();
    let snapshotter = three_snapshots(scratch.path());
    let loaded = snapshotter
        .load_newest_available(&markers(&[(5, 10), (5, 20)]))
        .unwrap();
    assert_eq!(loaded, Some(snapshot(5, 20)));
    assert!(
        scratch
            .path()
            .join(SnapName { term: 6, index: 30 }.file_name())
            .exists()
    );
    // Same index, other term: not vouched for either.
    let loaded = snapshotter
        .load_newest_available(&markers(&[(4, 30)]))
        .unwrap();
    assert_eq!(loaded, None);
}

#[test]
fn files_whose_content_disagrees_or_is_empty_are_broken() {
    let scratch = scratch_dir();
    let snapshotter = three_snapshots(scratch.path());
    let dir = scratch.path();
    std::fs::copy(
        dir.join(SnapName { term: 5, index: 10 }.file_name()),
        dir.join(SnapName { term: 6, index: 40 }.file_name()),
    )
    .unwrap();
    std::fs::write(dir.join(SnapName { term: 6, index: 30 }.file_name()), b"").unwrap();
    let loaded = snapshotter
        .load_newest_available(&markers(&[(5, 20), (6, 30), (6, 40)]))
        .unwrap();
    assert_eq!(loaded, Some(snapshot(5, 20)));
    assert_eq!(snapshotter.names().unwrap().len(), 2);
}

#[test]
fn purge_keeps_the_newest_and_unfinished_saves_are_cleaned() {
    let scratch = scratch_dir();
    let snapshotter = three_snapshots(scratch.path());
    let removed = snapshotter.purge(2).unwrap();
    assert_eq!(
        removed,
        [scratch
            .path()
            .join(SnapName { term: 5, index: 10 }.file_name())]
    );
    let leftovers: Vec<PathBuf> = [
        "0000000000000007-0000000000000050.snap.tmp",
        "0000000000000050.snap.db.local.tmp",
    ]
    .iter()
    .map(|name| scratch.path().join(name))
    .collect();
    for leftover in &leftovers {
        std::fs::write(leftover, b"half written").unwrap();
    }
    let reopened = Snapshotter::new(scratch.path()).unwrap();
    assert!(leftovers.iter().all(|leftover| !leftover.exists()));
    assert_eq!(reopened.names().unwrap().len(), 2);
}

#[test]
fn storage_saves_in_order_and_recovers_the_newest_committed_snapshot() {
    let scratch = scratch_dir();
    let data_dir = DataDir::ringraft(scratch.path());
    let options = WalOptions {
        segment_size_bytes: 1024,
    };
    let mut storage = DurableStorage::create(&data_dir, &metadata(), options).unwrap();
    for index in 1..=40 {
        let state = HardState {
            term: 5,
            vote: NODE_ID,
            commit: (index - 1).min(25),
        };
        storage.save(&state, &[entry(5, index)]).unwrap();
    }
    storage.save_snap(&snapshot(5, 20)).unwrap();
    // The file is durable before the marker, and the marker is in the WAL.
    assert!(
        data_dir
            .snap_dir
            .join(SnapName { term: 5, index: 20 }.file_name())
            .exists()
    );
    let all_markers = wal::valid_snapshot_entries(&data_dir.wal_dir).unwrap();
    assert_eq!(all_markers.last().map(|m| m.index), Some(20));
    // A snapshot beyond the commit index (25) is not one to restart from.
    storage.save_snap(&snapshot(5, 30)).unwrap();
    storage.purge(1, 5).unwrap();
    storage.close().unwrap();

    let (_, recovered) = DurableStorage::open(&data_dir, options).unwrap();
    assert_eq!(recovered.snapshot, Some(snapshot(5, 20)));
    let indexes: Vec<u64> = recovered.contents.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (21..=40).collect::<Vec<_>>());
    assert_eq!(recovered.contents.hard_state.commit, 25);
}

#[test]
fn snapshot_files_are_private_like_the_wal() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = scratch_dir();
    let data_dir = DataDir::ringraft(&scratch.path().join("data"));
    let options = WalOptions::default();
    let mut storage = DurableStorage::create(&data_dir, &metadata(), options).unwrap();
    storage
        .save(
            &HardState {
                term: 5,
                vote: NODE_ID,
                commit: 3,
            },
            &[entry(5, 1), entry(5, 2), entry(5, 3)],
        )
        .unwrap();
    storage.save_snap(&snapshot(5, 3)).unwrap();
    storage.close().unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir.root), 0o700, "data directory");
    assert_eq!(mode(&data_dir.snap_dir), 0o700, "snapshot directory");
    assert_eq!(mode(&data_dir.wal_dir), 0o700, "WAL directory");
    let snap_file = data_dir
        .snap_dir
        .join(SnapName { term: 5, index: 3 }.file_name());
    assert_eq!(mode(&snap_file), 0o600, "snapshot file");
}

#[test]
fn segments_are_released_only_once_the_snapshot_is_committed() {
    let scratch = scratch_dir();
    let data_dir = DataDir::ringraft(scratch.path());
    let options = WalOptions {
        segment_size_bytes: 1024,
    };
    let mut storage = DurableStorage::create(&data_dir, &metadata(), options).unwrap();
    let state = |commit| HardState {
        term: 5,
        vote: NODE_ID,
        commit,
    };
    for index in 1..=60 {
        storage
            .save(&state((index - 1).min(30)), &[entry(5, index)])
            .unwrap();
    }
    let all = storage_locked(&storage);
    storage.save_snap(&snapshot(5, 20)).unwrap();
    let after_20 = storage_locked(&storage);
    assert!(after_20 < all, "snapshot 20 is committed: released at once");
    storage.save_snap(&snapshot(5, 55)).unwrap();
    assert_eq!(
        storage_locked(&storage),
        after_20,
        "55 is not committed yet"
    );
    storage.save(&state(55), &[]).unwrap();
    assert!(
        storage_locked(&storage) < after_20,
        "released once committed"
    );
}

fn storage_locked(storage: &DurableStorage) -> usize {
    storage.wal().locked_segments().len()
}
