//! Helpers shared by the WAL and snapshot tests: scratch directories, sample
//! data, and an independent WAL decoder (bitwise CRC-32C, hand-parsed
//! frames and records) that does not use `ringraft::wal`.

#![allow(dead_code)]

use prost::Message as _;
use ringraft::raftpb::{Entry, HardState, Metadata};
use ringraft::wal::{SegmentName, Wal, WalContents, WalError, WalOptions};
use std::path::{Path, PathBuf};

/// A node id shaped like etcd's (large, random-looking).
pub const NODE_ID: u64 = 0x8e9e_05c5_2164_694d;
/// A cluster id shaped like etcd's.
pub const CLUSTER_ID: u64 = 0xcdf8_1819_4e3a_8c32;

pub fn metadata() -> Metadata {
    Metadata {
        node_id: NODE_ID,
        cluster_id: CLUSTER_ID,
    }
}

/// A temporary directory, on tmpfs when there is one: the crash tests open
/// and repair thousands of WALs, and fsync on tmpfs costs nothing.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Entry `index` of `term` with a payload whose length varies with the
/// index, so frames need every amount of padding.
pub fn entry(term: u64, index: u64) -> Entry {
    let len = (index as usize * 7) % 61 + 1;
    Entry::new(term, index, pseudo_random_bytes(index, len))
}

/// Writes a WAL whose entries 1..=count (term 5) are saved one at a time,
/// each with a hard state committing the entry before it.
pub fn write_sample_wal(dir: &Path, segment_size_bytes: u64, count: u64) {
    let options = WalOptions { segment_size_bytes };
    let mut wal = Wal::create(dir, &metadata(), options).expect("create");
    for index in 1..=count {
        let state = HardState {
            term: 5,
            vote: NODE_ID,
            commit: index - 1,
        };
        wal.save(&state, &[entry(5, index)]).expect("save");
    }
    wal.close().expect("close");
}

/// Opens the WAL (from the beginning) for writing, repairing a torn tail
/// once, as the storage façade does.
pub fn open_repairing(
    dir: &Path,
    options: WalOptions,
) -> Result<(Wal, WalContents, bool), WalError> {
    let at = Default::default();
    match Wal::open(dir, &at, options) {
        Ok((wal, contents)) => Ok((wal, contents, false)),
        Err(WalError::TornTail { .. }) => {
            ringraft::wal::repair(dir)?;
            let (wal, contents) = Wal::open(dir, &at, options)?;
            Ok((wal, contents, true))
        }
        Err(e) => Err(e),
    }
}

/// The segment files of a WAL directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<(SegmentName, PathBuf)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = SegmentName::parse(e.file_name().to_str()?)?;
            Some((name, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// Copies the files (not subdirectories) of `from` into a new `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// The contents a replay of `records` (as the independent decoder saw them)
/// must produce, for a WAL read from the beginning without overwrites.
pub fn expected_contents(records: &[independent::Record]) -> (HardState, Vec<Entry>) {
    let mut state = HardState::default();
    let mut entries = Vec::new();
    for record in records {
        match record.record_type {
            2 => entries.push(Entry::decode(record.data.as_slice()).expect("entry")),
            3 => state = HardState::decode(record.data.as_slice()).expect("state"),
            _ => {}
        }
    }
    (state, entries)
}

/// A WAL decoder written from the format description alone.
pub mod independent {
    /// CRC-32C, bit by bit (reflected polynomial 0x82F63B78), continuing
    /// from a previous checksum as Go's `crc32.Update` does.
    pub fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
        let mut register = !crc;
        for byte in data {
            register ^= u32::from(*byte);
            for _ in 0..8 {
                register = if register & 1 == 1 {
                    (register >> 1) ^ 0x82f6_3b78
                } else {
                    register >> 1
                };
            }
        }
        !register
    }

    /// One frame as found in a segment.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Record {
        /// Offset of the length word.
        pub offset: usize,
        /// Length of the encoded record.
        pub record_len: usize,
        /// Padding after it.
        pub pad: usize,
        pub record_type: i64,
        pub crc: u32,
        pub data: Vec<u8>,
    }

    impl Record {
        /// Offset just past the record's bytes (before padding).
        pub fn record_end(&self) -> usize {
            self.offset + 8 + self.record_len
        }

        /// Offset just past the frame.
        pub fn frame_end(&self) -> usize {
            self.record_end() + self.pad
        }
    }

    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long");
    }

    /// Parses a `walpb.Record` from its protobuf fields.
    fn parse_record(bytes: &[u8]) -> (i64, u32, Vec<u8>) {
        let (mut record_type, mut crc, mut data) = (None, None, Vec::new());
        let mut at = 0;
        while at < bytes.len() {
            let key = varint(bytes, &mut at);
            match key {
                0x08 => record_type = Some(varint(bytes, &mut at) as i64),
                0x10 => crc = Some(varint(bytes, &mut at) as u32),
                0x1a => {
                    let len = varint(bytes, &mut at) as usize;
                    data = bytes[at..at + len].to_vec();
                    at += len;
                }
                other => panic!("unexpected key {other:#x}"),
            }
        }
        (
            record_type.expect("record type"),
            crc.expect("record crc"),
            data,
        )
    }

    /// Every frame of a segment up to the end of file or a zero length word,
    /// checking the framing rules; returns the frames and the data end.
    pub fn frames(bytes: &[u8]) -> (Vec<Record>, usize) {
        let mut records = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            if word == 0 {
                break;
            }
            let record_len = (word & ((1 << 56) - 1)) as usize;
            let top = (word >> 56) as usize;
            let pad = if top == 0 { 0 } else { top & 0x7 };
            assert_eq!(
                (record_len + pad) % 8,
                0,
                "frame at {at} is not 8-byte aligned"
            );
            assert_eq!(top == 0, pad == 0, "frame at {at}: padding flag");
            if top != 0 {
                assert_eq!(top & 0xf8, 0x80, "frame at {at}: top byte {top:#x}");
            }
            let start = at + 8;
            let (record_type, crc, data) = parse_record(&bytes[start..start + record_len]);
            assert!(
                bytes[start + record_len..start + record_len + pad]
                    .iter()
                    .all(|b| *b == 0),
                "frame at {at}: non-zero padding"
            );
            records.push(Record {
                offset: at,
                record_len,
                pad,
                record_type,
                crc,
                data,
            });
            at = start + record_len + pad;
        }
        assert_eq!(at % 8, 0);
        (records, at)
    }

    /// Checks the CRC chain over one segment's records, starting from
    /// `running` (the previous segment's last value); returns the new value.
    pub fn check_chain(records: &[Record], mut running: u32) -> u32 {
        for record in records {
            if record.record_type == 4 {
                assert!(record.data.is_empty());
                assert_eq!(record.crc, running, "crc record at {}", record.offset);
            } else {
                running = crc32c_update(running, &record.data);
                assert_eq!(record.crc, running, "record at {}", record.offset);
            }
        }
        running
    }
}
