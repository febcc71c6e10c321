//! Crash consistency: whatever a crash can leave at the end of the last
//! segment (a cut-off file at any byte, garbage, zeroed sectors) opens after
//! repair with exactly the longest valid prefix of records; damage anywhere
//! else (a flipped bit in any record before the last one) makes opening fail
//! with an error naming the file and the frame's offset, and changes
//! nothing.

mod wal_common;

use ringraft::wal::{self, RepairOutcome, WalError, WalOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use wal_common::independent::{self, Record};

/// A sample WAL and what the independent decoder sees in it.
struct Sample {
    _scratch: tempfile::TempDir,
    wal_dir: PathBuf,
    options: WalOptions,
    /// Every segment with its records, oldest first.
    segments: Vec<(PathBuf, Vec<u8>, Vec<Record>)>,
}

impl Sample {
    fn new(segment_size_bytes: u64, entry_count: u64) -> Sample {
        let scratch = wal_common::scratch_dir();
        let wal_dir = scratch.path().join("wal");
        wal_common::write_sample_wal(&wal_dir, segment_size_bytes, entry_count);
        let segments = wal_common::segment_files(&wal_dir)
            .into_iter()
            .map(|(_, path)| {
                let bytes = std::fs::read(&path).unwrap();
                let (records, _) = independent::frames(&bytes);
                (path, bytes, records)
            })
            .collect();
        Sample {
            _scratch: scratch,
            wal_dir,
            options: WalOptions { segment_size_bytes },
            segments,
        }
    }

    fn last(&self) -> &(PathBuf, Vec<u8>, Vec<Record>) {
        self.segments.last().unwrap()
    }

    fn last_data_end(&self) -> usize {
        self.last().2.last().unwrap().frame_end()
    }

    /// A copy of the WAL whose last segment is replaced by `last_bytes`.
    fn case(&self, scratch: &Path, name: &str, last_bytes: &[u8]) -> PathBuf {
        let dir = scratch.join(name);
        wal_common::copy_dir(&self.wal_dir, &dir);
        let last = dir.join(self.last().0.file_name().unwrap());
        std::fs::write(&last, last_bytes).unwrap();
        dir
    }

    /// Opens `dir` with repair and checks it holds the earlier segments'
    /// records plus the first `kept` records of the last segment.
    fn expect_prefix(&self, dir: &Path, kept: usize, what: &str) -> bool {
        let (wal, contents, repaired) = wal_common::open_repairing(dir, self.options)
            .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        let mut records: Vec<Record> = self.segments[..self.segments.len() - 1]
            .iter()
            .flat_map(|(_, _, records)| records.clone())
            .collect();
        records.extend_from_slice(&self.last().2[..kept]);
        let (state, entries) = wal_common::expected_contents(&records);
        assert_eq!(contents.hard_state, state, "{what}: hard state");
        assert_eq!(contents.entries, entries, "{what}: entries");
        drop(wal);
        repaired
    }
}

/// Saves one more entry into the reopened WAL and checks it reads back.
fn append_and_reopen(dir: &Path, options: WalOptions, what: &str) {
    let (mut wal, contents, _) = wal_common::open_repairing(dir, options).unwrap();
    let next = contents.entries.last().map_or(1, |e| e.index + 1);
    let state = ringraft::raftpb::HardState {
        term: 5,
        vote: wal_common::NODE_ID,
        commit: contents.hard_state.commit,
    };
    wal.save(&state, &[wal_common::entry(5, next)]).unwrap();
    wal.close().unwrap();
    let (_, reopened, repaired) = wal_common::open_repairing(dir, options).unwrap();
    assert!(!repaired, "{what}: clean after appending");
    assert_eq!(
        reopened.entries.last().map(|e| e.index),
        Some(next),
        "{what}"
    );
}

fn first_difference(before: &[u8], after: &[u8]) -> usize {
    (0..after.len())
        .find(|&i| before.get(i).copied().unwrap_or(0) != after[i])
        .unwrap_or(after.len())
}

/// Records of `records` whose bytes (length word and record; padding is not
/// checked) lie before `first_changed`.
fn intact_prefix(records: &[Record], first_changed: usize) -> usize {
    records
        .iter()
        .take_while(|r| r.record_end() <= first_changed)
        .count()
}

#[test]
fn truncation_at_every_byte_of_the_last_segment() {
    let sample = Sample::new(1024, 48);
    assert!(sample.segments.len() >= 3);
    let (_, last_bytes, records) = sample.last();
    assert!(
        sample.last_data_end() > 700,
        "the last segment is well filled"
    );
    let scratch = wal_common::scratch_dir();
    for cut in 0..=last_bytes.len() {
        let what = format!("cut at {cut}");
        let dir = sample.case(scratch.path(), &format!("cut-{cut}"), &last_bytes[..cut]);
        let kept = records.iter().take_while(|r| r.frame_end() <= cut).count();
        let boundary = records[..kept].last().map_or(0, |r| r.frame_end());
        let repaired = sample.expect_prefix(&dir, kept, &what);
        if cut == boundary {
            assert!(
                !repaired,
                "{what}: a cut at a frame boundary is a clean end"
            );
        }
        if repaired {
            let broken = sample
                .last()
                .0
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            assert!(dir.join(format!("{broken}.broken")).exists(), "{what}");
        }
        if cut % 41 == 0 {
            append_and_reopen(&dir, sample.options, &what);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn garbage_over_the_tail() {
    let sample = Sample::new(1024, 48);
    let (_, last_bytes, records) = sample.last();
    let data_end = sample.last_data_end();
    let scratch = wal_common::scratch_dir();
    for start in (0..data_end).step_by(3) {
        let what = format!("garbage from {start}");
        let mut bytes = last_bytes.clone();
        let garbage = wal_common::pseudo_random_bytes(start as u64, data_end + 64 - start);
        bytes.resize(bytes.len().max(data_end + 64), 0);
        bytes[start..data_end + 64].copy_from_slice(&garbage);
        let dir = sample.case(scratch.path(), &format!("garbage-{start}"), &bytes);
        let kept = intact_prefix(records, first_difference(last_bytes, &bytes));
        sample.expect_prefix(&dir, kept, &what);
        if start % 59 == 0 {
            append_and_reopen(&dir, sample.options, &what);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn zeroed_sectors_in_the_tail() {
    let sample = Sample::new(4096, 120);
    let (last_path, last_bytes, records) = sample.last();
    let data_end = sample.last_data_end();
    assert!(data_end > 3000);
    let scratch = wal_common::scratch_dir();
    for sector in 0..data_end.div_ceil(512) {
        for through_end in [false, true] {
            let what = format!("sector {sector} zeroed (through the end: {through_end})");
            let mut bytes = last_bytes.clone();
            let end = if through_end {
                bytes.len()
            } else {
                (sector + 1) * 512
            };
            bytes[sector * 512..end].fill(0);
            let dir = sample.case(
                scratch.path(),
                &format!("zero-{sector}-{through_end}"),
                &bytes,
            );
            let kept = intact_prefix(records, first_difference(last_bytes, &bytes));
            sample.expect_prefix(&dir, kept, &what);
            // Whatever followed the valid data is gone, so new frames never
            // sit in front of stale ones.
            let after = std::fs::read(dir.join(last_path.file_name().unwrap())).unwrap();
            let (_, valid_end) = independent::frames(&after);
            assert!(
                after[valid_end..].iter().all(|b| *b == 0),
                "{what}: stale bytes remain"
            );
            append_and_reopen(&dir, sample.options, &what);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn flipped_bit_in_any_earlier_record_is_refused_without_changes() {
    let sample = Sample::new(1024, 48);
    let segment_count = sample.segments.len();
    assert!(
        sample.last().2.len() > 10,
        "the last segment holds records to damage"
    );
    let mut checked = 0;
    for (i, (path, original, records)) in sample.segments.iter().enumerate() {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let is_last = i + 1 == segment_count;
        let candidates = if is_last {
            &records[..records.len() - 1]
        } else {
            &records[..]
        };
        for record in candidates {
            // The length word and the record; padding is not covered by any
            // check (etcd does not check it either) and flipping it loses
            // nothing.
            let bytes = original.iter().enumerate();
            for (byte, &value) in bytes.take(record.record_end()).skip(record.offset) {
                for bit in 0..8 {
                    file.write_all_at(&[value ^ (1 << bit)], byte as u64)
                        .unwrap();
                    let result = wal_common::open_repairing(&sample.wal_dir, sample.options);
                    file.write_all_at(&[value], byte as u64).unwrap();
                    let what = format!("{} byte {byte} bit {bit}", path.display());
                    check_refused(result.map(|_| ()), path, record.offset, &what);
                    checked += 1;
                }
            }
        }
        // Nothing was truncated or repaired.
        for (other, bytes, _) in &sample.segments {
            assert_eq!(
                &std::fs::read(other).unwrap(),
                bytes,
                "{} changed",
                other.display()
            );
        }
        let broken = std::fs::read_dir(&sample.wal_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".broken")
            })
            .count();
        assert_eq!(broken, 0);
    }
    assert!(checked > 10_000);
}

fn check_refused(result: Result<(), WalError>, path: &Path, offset: usize, what: &str) {
    let error = match result {
        Ok(()) => panic!("{what}: opened despite the flipped bit"),
        Err(e) => e,
    };
    assert!(
        matches!(
            error,
            WalError::CrcMismatch { .. }
                | WalError::Corrupt { .. }
                | WalError::MetadataConflict { .. }
        ),
        "{what}: {error}"
    );
    assert_eq!(
        error.location(),
        Some((path, offset as u64)),
        "{what}: {error}"
    );
}

#[test]
fn damaged_last_record_is_a_torn_tail_but_its_damaged_length_word_is_not() {
    let sample = Sample::new(1024, 48);
    let (_, last_bytes, records) = sample.last();
    let last_record = records.last().unwrap();
    let scratch = wal_common::scratch_dir();

    // A flipped data bit in the very last record is indistinguishable from a
    // torn write of garbage: it is repaired, keeping a .broken copy.
    let mut bytes = last_bytes.clone();
    bytes[last_record.record_end() - 1] ^= 0x01;
    let dir = sample.case(scratch.path(), "last-data", &bytes);
    assert!(sample.expect_prefix(&dir, records.len() - 1, "last record data"));

    // A damaged length word in front of an intact record is corruption.
    let mut bytes = last_bytes.clone();
    bytes[last_record.offset + 5] ^= 0x10;
    let dir = sample.case(scratch.path(), "last-length", &bytes);
    let last_path = dir.join(sample.last().0.file_name().unwrap());
    let result = wal_common::open_repairing(&dir, sample.options).map(|_| ());
    check_refused(result, &last_path, last_record.offset, "last length word");
}

#[test]
fn torn_frame_in_an_earlier_segment_is_corruption() {
    let sample = Sample::new(1024, 48);
    let (path, bytes, records) = &sample.segments[1];
    let scratch = wal_common::scratch_dir();
    let dir = scratch.path().join("wal");
    wal_common::copy_dir(&sample.wal_dir, &dir);
    let cut = records.last().unwrap().offset + 5;
    let copy = dir.join(path.file_name().unwrap());
    std::fs::write(&copy, &bytes[..cut]).unwrap();
    let result = wal_common::open_repairing(&dir, sample.options).map(|_| ());
    check_refused(
        result,
        &copy,
        records.last().unwrap().offset,
        "earlier segment cut",
    );
    assert_eq!(wal::repair(&dir).unwrap(), RepairOutcome::NothingToRepair);
}
