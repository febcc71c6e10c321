//! Compatibility with real etcd: the fixture written by etcd 3.4.23
//! (`scripts/gen-etcd-fixture.sh`) reads back through `ringraft wal dump`,
//! `ringraft wal verify` and the library with the values etcd wrote; a WAL
//! written by ringraft (alone, and appended to etcd's) passes an independent
//! decoder's framing and CRC checks.

mod wal_common;

use prost::Message as _;
use ringraft::raftpb::{Entry, EntryType, HardState, Metadata, walpb};
use ringraft::snap::Snapshotter;
use ringraft::storage::{DataDir, DataDirLayout, DurableStorage};
use ringraft::wal::{self, WalOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use wal_common::independent;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/etcd-3.4");
/// Values etcd 3.4.23 derived for the fixture's member and cluster (from
/// the member name, peer URL and cluster token the script uses).
const ETCD_NODE_ID: u64 = 9_545_540_562_787_795_192;
const ETCD_CLUSTER_ID: u64 = 8_627_744_439_774_912_636;
/// Entries etcd wrote: 1 the bootstrap conf change (term 1), 2 the new
/// leader's empty entry, 3 member attributes, 4 cluster version, 5..=29 the
/// 25 puts, 30 the delete.
const ETCD_LAST_INDEX: u64 = 30;

fn ringraft(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(args)
        .output()
        .expect("run ringraft");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect()
}

fn u64_field(record: &Value, name: &str) -> u64 {
    record[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {record}"))
}

#[test]
fn dump_reads_every_record_etcd_wrote() {
    let (ok, stdout, stderr) = ringraft(&["wal", "dump", FIXTURE]);
    assert!(ok, "{stderr}");
    let records = json_lines(&stdout);
    assert_eq!(records.len(), 65);
    let count = |kind: &str| records.iter().filter(|r| r["type"] == kind).count();
    assert_eq!(
        [
            count("crc"),
            count("metadata"),
            count("snapshot"),
            count("entry"),
            count("state")
        ],
        [1, 1, 3, 30, 30]
    );
    assert_eq!(records[0]["type"], "crc");
    assert_eq!(u64_field(&records[0], "crc"), 0);
    assert_eq!(u64_field(&records[1], "node_id"), ETCD_NODE_ID);
    assert_eq!(u64_field(&records[1], "cluster_id"), ETCD_CLUSTER_ID);

    let entries: Vec<_> = records.iter().filter(|r| r["type"] == "entry").collect();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(u64_field(entry, "index"), i as u64 + 1);
        assert_eq!(u64_field(entry, "term"), if i == 0 { 1 } else { 2 });
    }
    assert_eq!(entries[0]["entry_type"], "EntryConfChange");
    assert_eq!(u64_field(entries[1], "data_bytes"), 0);

    let snapshots: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "snapshot")
        .map(|r| (u64_field(r, "index"), u64_field(r, "term")))
        .collect();
    assert_eq!(snapshots, [(0, 0), (11, 2), (22, 2)]);

    let last_state = records.iter().rev().find(|r| r["type"] == "state").unwrap();
    assert_eq!(
        [
            u64_field(last_state, "term"),
            u64_field(last_state, "vote"),
            u64_field(last_state, "commit")
        ],
        [2, ETCD_NODE_ID, ETCD_LAST_INDEX]
    );
}

#[test]
fn dump_accepts_the_wal_directory_itself() {
    let wal_dir = format!("{FIXTURE}/member/wal");
    let (ok, stdout, _) = ringraft(&["wal", "dump", &wal_dir]);
    assert!(ok);
    assert_eq!(stdout.lines().count(), 65);
}

#[test]
fn verify_starts_from_the_newest_snapshot() {
    let (ok, stdout, stderr) = ringraft(&["wal", "verify", FIXTURE]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    assert_eq!(report["ok"], true);
    assert_eq!(u64_field(&report["snapshot"], "index"), 22);
    assert_eq!(u64_field(&report["snapshot"], "term"), 2);
    assert_eq!(u64_field(&report["hard_state"], "commit"), ETCD_LAST_INDEX);
    assert_eq!(u64_field(&report["hard_state"], "vote"), ETCD_NODE_ID);
    assert_eq!(u64_field(&report, "entries"), 8);
    assert_eq!(u64_field(&report, "last_index"), ETCD_LAST_INDEX);
    assert_eq!(report["torn_tail"], Value::Null);
}

#[test]
fn library_reads_the_fixture() {
    let data_dir = DataDir::detect(Path::new(FIXTURE)).expect("layout");
    assert_eq!(data_dir.layout, DataDirLayout::Etcd);
    let markers = wal::valid_snapshot_entries(&data_dir.wal_dir).expect("markers");
    let marker_ids: Vec<_> = markers.iter().map(|m| (m.index, m.term)).collect();
    assert_eq!(marker_ids, [(0, 0), (11, 2), (22, 2)]);

    let snapshot = Snapshotter::read_only(&data_dir.snap_dir)
        .load_newest_available(&markers)
        .expect("load")
        .expect("a snapshot");
    assert_eq!((snapshot.metadata.index, snapshot.metadata.term), (22, 2));
    assert_eq!(snapshot.metadata.conf_state.voters, [ETCD_NODE_ID]);
    // etcd 3.4 snapshots hold the v2 store as JSON.
    assert_eq!(snapshot.data.first(), Some(&b'{'));

    let from_start = wal::verify(&data_dir.wal_dir, &walpb::Snapshot::default()).expect("verify");
    assert_eq!(from_start.entry_count as u64, ETCD_LAST_INDEX);
    assert_eq!(
        from_start.metadata,
        Metadata {
            node_id: ETCD_NODE_ID,
            cluster_id: ETCD_CLUSTER_ID
        }
    );
    let at_eleven = walpb::Snapshot {
        index: 11,
        term: 2,
        conf_state: None,
    };
    let from_eleven = wal::verify(&data_dir.wal_dir, &at_eleven).expect("verify at 11");
    assert_eq!(from_eleven.entry_count, 19);
    let wrong_term = walpb::Snapshot {
        index: 11,
        term: 3,
        conf_state: None,
    };
    assert!(matches!(
        wal::verify(&data_dir.wal_dir, &wrong_term),
        Err(wal::WalError::SnapshotMismatch { index: 11, .. })
    ));
}

/// Checks every segment of `wal_dir` with the independent decoder: framing,
/// padding, the CRC chain across segments, segment headers and names.
/// Returns the records of every segment.
fn check_independently(wal_dir: &Path) -> Vec<(PathBuf, Vec<independent::Record>)> {
    let segments = wal_common::segment_files(wal_dir);
    let mut running = 0;
    let mut last_entry_index = 0;
    let mut all = Vec::new();
    for (i, (name, path)) in segments.iter().enumerate() {
        assert_eq!(name.seq, i as u64, "sequence numbers");
        let bytes = std::fs::read(path).unwrap();
        let (records, data_end) = independent::frames(&bytes);
        let header: Vec<i64> = records.iter().take(3).map(|r| r.record_type).collect();
        if i == 0 {
            assert_eq!(name.first_index, 0);
            assert_eq!(header, [4, 1, 5], "first segment: crc, metadata, snapshot");
            let empty = walpb::Snapshot::decode(records[2].data.as_slice()).unwrap();
            assert_eq!((empty.index, empty.term), (0, 0));
        } else {
            assert_eq!(name.first_index, last_entry_index + 1, "{}", path.display());
            assert_eq!(header, [4, 1, 3], "later segment: crc, metadata, state");
        }
        running = independent::check_chain(&records, running);
        let is_last = i + 1 == segments.len();
        if !is_last {
            assert_eq!(bytes.len(), data_end, "finished segments end at their data");
        }
        assert!(
            bytes[data_end..].iter().all(|b| *b == 0),
            "zeros after the data"
        );
        for record in records.iter().filter(|r| r.record_type == 2) {
            last_entry_index = Entry::decode(record.data.as_slice()).unwrap().index;
        }
        all.push((path.clone(), records));
    }
    all
}

#[test]
fn wal_written_by_ringraft_passes_the_independent_decoder() {
    let scratch = wal_common::scratch_dir();
    let wal_dir = scratch.path().join("wal");
    wal_common::write_sample_wal(&wal_dir, 2048, 120);

    let segments = check_independently(&wal_dir);
    assert!(segments.len() >= 3, "the sample spans several segments");
    let last = std::fs::metadata(&segments.last().unwrap().0).unwrap();
    assert_eq!(last.len(), 2048, "the tail stays preallocated");

    let records: Vec<_> = segments.into_iter().flat_map(|(_, r)| r).collect();
    let entries: Vec<Entry> = records
        .iter()
        .filter(|r| r.record_type == 2)
        .map(|r| Entry::decode(r.data.as_slice()).unwrap())
        .collect();
    let expected: Vec<Entry> = (1..=120).map(|i| wal_common::entry(5, i)).collect();
    assert_eq!(entries, expected);
    let paddings: std::collections::BTreeSet<_> = records.iter().map(|r| r.pad).collect();
    assert_eq!(
        paddings.len(),
        8,
        "every padding 0..=7 occurs: {paddings:?}"
    );
}

#[test]
fn appending_to_an_etcd_wal_continues_its_chain() {
    let scratch = wal_common::scratch_dir();
    let root = scratch.path();
    wal_common::copy_dir(
        &Path::new(FIXTURE).join("member/wal"),
        &root.join("member/wal"),
    );
    wal_common::copy_dir(
        &Path::new(FIXTURE).join("member/snap"),
        &root.join("member/snap"),
    );
    let data_dir = DataDir::detect(root).expect("layout");
    let (mut storage, recovered) =
        DurableStorage::open(&data_dir, WalOptions::default()).expect("open etcd data dir");
    assert_eq!(
        recovered.snapshot.map(|s| s.metadata.index),
        Some(22),
        "newest snapshot"
    );
    let indexes: Vec<_> = recovered.contents.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (23..=30).collect::<Vec<_>>());
    assert_eq!(recovered.contents.hard_state.commit, ETCD_LAST_INDEX);
    assert_eq!(recovered.repair, None);

    let more: Vec<Entry> = (31..=40).map(|i| wal_common::entry(2, i)).collect();
    let state = HardState {
        term: 2,
        vote: ETCD_NODE_ID,
        commit: 35,
    };
    storage.save(&state, &more).expect("save");
    storage.close().expect("close");

    let segments = check_independently(&data_dir.wal_dir);
    let records = &segments[0].1;
    assert_eq!(records.len(), 65 + 11);
    let (hard_state, entries) = wal_common::expected_contents(records);
    assert_eq!(hard_state, state);
    assert_eq!(entries.last().map(|e| e.index), Some(40));
    assert_eq!(
        entries[0].entry_type,
        EntryType::EntryConfChange as i32,
        "etcd's first entry is untouched"
    );

    let (_, reopened) = DurableStorage::open(&data_dir, WalOptions::default()).expect("reopen");
    assert_eq!(reopened.contents.entries.len(), 18);
}
