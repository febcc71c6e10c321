//! The etcd store's snapshot: the MVCC snapshot (format of `crate::mvcc`)
//! followed by a lease section holding the [`LeaseTable`].
//!
//! Owns: the lease section's format, writing it and reading it back.
//! Guarantees: what [`write_lease_section`] wrote reads back equal; a
//! truncated, corrupt or out-of-order section is a [`LeaseSectionError`]
//! naming the byte offset, never a panic, and nothing is allocated from a
//! count read off the input before its records arrive. May not touch: the
//! MVCC format (read with `MvccStore::restore_prefix`, which stops after
//! its end frame).
//!
//! # Lease section (after the MVCC snapshot's end frame)
//!
//! All integers little-endian.
//!
//! | size | field | meaning |
//! | --- | --- | --- |
//! | 8 | magic | `RRLEASE\n` |
//! | 8 | count | u64, number of lease records |
//! | 24 × count | records | below, by id, strictly increasing |
//! | 4 | checksum | CRC-32C (Castagnoli) of the magic, the count and the records |
//!
//! Then nothing: bytes after the checksum are an error.
//!
//! Lease record (24 bytes):
//!
//! | size | field | meaning |
//! | --- | --- | --- |
//! | 8 | id | i64, not 0 |
//! | 8 | granted TTL | i64, seconds, at least 1 |
//! | 8 | last renewal index | u64, raft index of the grant or last renewal |
//!
//! A snapshot that ends right after the MVCC end frame (no section at
//! all) restores with no lease: snapshots written before leases existed
//! look like that, and they cannot hold a leased key (a put with a lease
//! always failed then). A key carrying a lease the section does not hold
//! is refused by the store's restore.

use super::leases::{LeaseRecord, LeaseTable};
use std::io::{BufRead, ErrorKind, Write};

/// The first 8 bytes of the lease section.
pub const LEASE_MAGIC: [u8; 8] = *b"RRLEASE\n";

const RECORD_BYTES: usize = 24;

/// Why a lease section does not read back.
#[derive(Debug, thiserror::Error)]
pub enum LeaseSectionError {
    /// Reading failed.
    #[error("reading the snapshot's lease section at byte {offset}: {source}")]
    Io {
        /// Offset in the snapshot.
        offset: u64,
        /// The reader's error.
        source: std::io::Error,
    },
    /// The input ended inside the section.
    #[error("snapshot's lease section truncated at byte {offset} (reading {reading})")]
    Truncated {
        /// Offset in the snapshot.
        offset: u64,
        /// What was being read.
        reading: &'static str,
    },
    /// The content breaks a rule of the format.
    #[error("snapshot's lease section at byte {offset}: {reason}")]
    Invalid {
        /// Offset in the snapshot.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Writes the section of `leases`.
pub fn write_lease_section(leases: &LeaseTable, out: &mut dyn Write) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + 8 + RECORD_BYTES * leases.len() + 4);
    bytes.extend_from_slice(&LEASE_MAGIC);
    bytes.extend_from_slice(&(leases.len() as u64).to_le_bytes());
    for (id, record) in leases {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&record.granted_ttl_seconds.to_le_bytes());
        bytes.extend_from_slice(&record.last_renew_index.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&bytes)
}

/// Reads the section from `input`, which is at byte `offset` of the
/// snapshot (for error messages), to the end of the input. An input that
/// is already at its end is an empty table (see the module doc).
pub fn read_lease_section(
    input: &mut dyn BufRead,
    offset: u64,
) -> Result<LeaseTable, LeaseSectionError> {
    let mut reader = Reader {
        input,
        offset,
        crc: 0,
    };
    let at_end = reader
        .input
        .fill_buf()
        .map_err(|source| LeaseSectionError::Io { offset, source })?
        .is_empty();
    if at_end {
        return Ok(LeaseTable::new());
    }
    let mut magic = [0u8; 8];
    reader.read(&mut magic, "the magic")?;
    if magic != LEASE_MAGIC {
        return Err(LeaseSectionError::Invalid {
            offset,
            reason: format!("magic {magic:02x?} is not the lease section's"),
        });
    }
    let mut count = [0u8; 8];
    reader.read(&mut count, "the count")?;
    let count = u64::from_le_bytes(count);
    let mut leases = LeaseTable::new();
    let mut previous: Option<i64> = None;
    for _ in 0..count {
        let record_offset = reader.offset;
        let mut record = [0u8; RECORD_BYTES];
        reader.read(&mut record, "a lease record")?;
        let field = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&record[at..at + 8]);
            bytes
        };
        let id = i64::from_le_bytes(field(0));
        let ttl = i64::from_le_bytes(field(8));
        let index = u64::from_le_bytes(field(16));
        let invalid = |reason: String| LeaseSectionError::Invalid {
            offset: record_offset,
            reason,
        };
        if id == 0 {
            return Err(invalid("lease id 0".into()));
        }
        if previous.is_some_and(|p| p >= id) {
            return Err(invalid(format!("lease {id} out of order")));
        }
        if ttl < 1 {
            return Err(invalid(format!("lease {id} has TTL {ttl}")));
        }
        previous = Some(id);
        leases.insert(
            id,
            LeaseRecord {
                granted_ttl_seconds: ttl,
                last_renew_index: index,
            },
        );
    }
    let computed = reader.crc;
    let mut stored = [0u8; 4];
    reader.read(&mut stored, "the checksum")?;
    let stored = u32::from_le_bytes(stored);
    if stored != computed {
        return Err(LeaseSectionError::Invalid {
            offset: reader.offset - 4,
            reason: format!("checksum {stored:#010x} stored, {computed:#010x} computed"),
        });
    }
    let mut byte = [0u8; 1];
    loop {
        return match reader.input.read(&mut byte) {
            Ok(0) => Ok(leases),
            Ok(_) => Err(LeaseSectionError::Invalid {
                offset: reader.offset,
                reason: "data after the lease section".into(),
            }),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => Err(LeaseSectionError::Io {
                offset: reader.offset,
                source,
            }),
        };
    }
}

struct Reader<'r> {
    input: &'r mut dyn BufRead,
    offset: u64,
    crc: u32,
}

impl Reader<'_> {
    fn read(&mut self, buf: &mut [u8], reading: &'static str) -> Result<(), LeaseSectionError> {
        self.input.read_exact(buf).map_err(|source| {
            if source.kind() == ErrorKind::UnexpectedEof {
                LeaseSectionError::Truncated {
                    offset: self.offset,
                    reading,
                }
            } else {
                LeaseSectionError::Io {
                    offset: self.offset,
                    source,
                }
            }
        })?;
        self.offset += buf.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> LeaseTable {
        [(-4, 30, 2), (7, 5, 11), (1 << 40, 9_000_000_000, 12)]
            .into_iter()
            .map(|(id, ttl, index)| {
                (
                    id,
                    LeaseRecord {
                        granted_ttl_seconds: ttl,
                        last_renew_index: index,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_section_reads_back_equal_and_an_absent_one_is_empty() {
        let mut bytes = Vec::new();
        write_lease_section(&table(), &mut bytes).expect("written");
        assert_eq!(bytes.len(), 8 + 8 + 3 * RECORD_BYTES + 4);
        let read = read_lease_section(&mut bytes.as_slice(), 100).expect("reads");
        assert_eq!(read, table());
        let read = read_lease_section(&mut [].as_slice(), 100).expect("reads");
        assert!(read.is_empty());
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let mut bytes = Vec::new();
        write_lease_section(&table(), &mut bytes).expect("written");
        for len in 1..bytes.len() {
            let result = read_lease_section(&mut &bytes[..len], 0);
            assert!(result.is_err(), "truncated to {len} bytes");
        }
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x10;
            let result = read_lease_section(&mut corrupt.as_slice(), 0);
            assert!(result.is_err(), "byte {at} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_lease_section(&mut longer.as_slice(), 0),
            Err(LeaseSectionError::Invalid { .. })
        ));
    }

    #[test]
    fn a_huge_count_is_truncation_not_an_allocation() {
        let mut bytes = LEASE_MAGIC.to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            read_lease_section(&mut bytes.as_slice(), 0),
            Err(LeaseSectionError::Truncated { .. })
        ));
    }
}
