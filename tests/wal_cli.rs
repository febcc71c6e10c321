//! The `ringraft` command line: version output, and `wal verify` / `wal
//! dump` on our data directory layout, on a torn tail (repairable: exit 0
//! with a warning) and on corruption (exit 1 naming file and offset).

mod wal_common;

use ringraft::raftpb::{ConfState, HardState, Snapshot, SnapshotMetadata};
use ringraft::snap::StateFileRef;
use ringraft::snap::state_file::{WritePacing, write_state_file};
use ringraft::storage::{DataDir, DurableStorage};
use ringraft::wal::WalOptions;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use wal_common::{NODE_ID, entry, independent, metadata, scratch_dir, segment_files};

fn ringraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(args)
        .output()
        .expect("run ringraft")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn prints_the_version() {
    // (Without arguments `ringraft` serves; tests/server_bad_input.rs
    // covers that.)
    let expected = format!("ringraft {}", env!("CARGO_PKG_VERSION"));
    let output = ringraft(&["--version"]);
    assert!(output.status.success());
    assert_eq!(text(&output.stdout).lines().next(), Some(expected.as_str()));
}

/// A data directory in our layout with entries 1..=20 and a snapshot at 10.
fn data_dir(root: &Path) -> DataDir {
    data_dir_holding(root, 20, b"kv")
}

/// A data directory in our layout with entries 1..=`last_index` and a
/// snapshot at 10 whose data is `snapshot_data`.
fn data_dir_holding(root: &Path, last_index: u64, snapshot_data: &[u8]) -> DataDir {
    let data_dir = DataDir::ringraft(root);
    let options = WalOptions {
        segment_size_bytes: 1024,
    };
    let mut storage = DurableStorage::create(&data_dir, &metadata(), options).unwrap();
    for index in 1..=last_index {
        let state = HardState {
            term: 5,
            vote: NODE_ID,
            commit: index - 1,
        };
        storage.save(&state, &[entry(5, index)]).unwrap();
        if index == 11 {
            let snapshot = Snapshot {
                data: snapshot_data.to_vec(),
                metadata: SnapshotMetadata {
                    conf_state: ConfState {
                        voters: vec![NODE_ID],
                        ..ConfState::default()
                    },
                    index: 10,
                    term: 5,
                },
            };
            storage.save_snap(&snapshot).unwrap();
        }
    }
    storage.close().unwrap();
    data_dir
}

#[test]
fn verify_and_dump_our_layout() {
    let scratch = scratch_dir();
    let data_dir = data_dir(scratch.path());
    let root = scratch.path().to_str().unwrap();
    let output = ringraft(&["wal", "verify", root]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert_eq!(report["snapshot"]["index"], 10);
    assert_eq!(report["entries"], 10);
    assert_eq!(report["last_index"], 20);
    assert_eq!(report["hard_state"]["commit"], 19);

    let output = ringraft(&["wal", "dump", root]);
    assert!(output.status.success());
    let entries = text(&output.stdout)
        .lines()
        .filter(|l| l.contains("\"type\":\"entry\""))
        .count();
    assert_eq!(entries, 20);
    let segments = segment_files(&data_dir.wal_dir).len();
    let crc_records = text(&output.stdout).matches("\"type\":\"crc\"").count();
    assert_eq!(crc_records, segments);
}

#[test]
fn verify_reports_a_torn_tail_as_repairable() {
    let scratch = scratch_dir();
    let data_dir = data_dir(scratch.path());
    let (_, last) = segment_files(&data_dir.wal_dir).pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let (_, data_end) = independent::frames(&bytes);
    std::fs::write(&last, &bytes[..data_end - 3]).unwrap();
    let output = ringraft(&["wal", "verify", scratch.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert!(report["torn_tail"]["offset"].as_u64().unwrap() < data_end as u64);
    assert!(text(&output.stderr).contains("torn write"));
}

#[test]
fn verify_fails_on_corruption_naming_file_and_offset() {
    let scratch = scratch_dir();
    let data_dir = data_dir(scratch.path());
    let (name, path) = segment_files(&data_dir.wal_dir).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let (records, _) = independent::frames(&bytes);
    let victim = &records[records.len() - 3];
    bytes[victim.record_end() - 1] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let output = ringraft(&["wal", "verify", scratch.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&name.file_name()), "{stderr}");
    assert!(
        stderr.contains(&format!("byte {}", victim.offset)),
        "{stderr}"
    );
    assert!(stderr.contains("CRC mismatch"), "{stderr}");
    let output = ringraft(&["wal", "dump", scratch.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
}

/// Like [`data_dir`] (to entry 12), with the snapshot's state in a state
/// file.
fn data_dir_with_state_file(root: &Path) -> (DataDir, StateFileRef) {
    let snap_dir = DataDir::ringraft(root).snap_dir;
    std::fs::create_dir_all(&snap_dir).unwrap();
    let state = vec![0x5au8; 100_000];
    let reference = write_state_file::<ringraft::snap::SnapError>(
        &snap_dir,
        10,
        WritePacing::unpaced(),
        |out| {
            out.write_all(&state)
                .map_err(|e| ringraft::snap::SnapError::io(Path::new("state"), e))
        },
    )
    .unwrap();
    (
        data_dir_holding(root, 12, &reference.encode_data()),
        reference,
    )
}

#[test]
fn verify_checks_the_state_file_a_snapshot_refers_to() {
    let scratch = scratch_dir();
    let (data_dir, reference) = data_dir_with_state_file(scratch.path());
    let root = scratch.path().to_str().unwrap();
    let output = ringraft(&["wal", "verify", root]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_str(text(&output.stdout).trim()).unwrap();
    assert_eq!(report["snapshot"]["index"], 10);
    assert_eq!(
        report["snapshot"]["state_file"]["name"],
        reference.file_name().as_str()
    );
    assert_eq!(report["snapshot"]["state_file"]["bytes"], 100_000);

    // One byte changed: the CRC no longer matches, and the file is named.
    let path = reference.path(&data_dir.snap_dir);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50_000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let output = ringraft(&["wal", "verify", root]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&reference.file_name()), "{stderr}");
    assert!(stderr.contains("CRC mismatch"), "{stderr}");
}
