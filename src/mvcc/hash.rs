//! Checksums of the store's content, for etcd's Maintenance `HashKV` and
//! `Hash`: operators compare them across members (`etcdctl endpoint
//! hashkv` with every member's endpoint) to check that all hold the same
//! key-value history.
//!
//! Owns: which bytes are hashed, in which order (below, field by field,
//! so that another implementation can reproduce the numbers).
//! Guarantees: a hash is a function of the replicated state alone — the
//! stored versions, the current and compacted revisions, and the lease
//! ids and TTLs the caller passes — walked in a fixed order (the key map
//! is ordered; the leases are sorted here), so members that applied the
//! same log answer the same number, whether their store was applied entry
//! by entry or restored from a snapshot. The numbers are ringraft's own:
//! etcd hashes its backend's bytes, which differ, so a ringraft hash is
//! comparable only with another ringraft hash. May not touch: the store
//! (a hash only reads), leases beyond the (id, TTL) pairs it is given.
//!
//! Cost: one pass over every stored version up to the revision hashed,
//! values included, on the thread that holds the store.
//!
//! # The hash function
//!
//! CRC-32C (Castagnoli: polynomial 0x1EDC6F41 reflected, initial value
//! and final xor 0xFFFFFFFF; `crc32c("123456789") = 0xE3069283`, as the
//! `crc32c` crate computes it) of the byte string described below, as one
//! stream. All integers are little-endian; `i64` two's complement.
//!
//! # HashKV at revision R
//!
//! R = 0 (or below) means the current revision. R above the current
//! revision is refused ([`MvccError::FutureRevision`]); R at or below the
//! compacted revision of a compacted store is refused
//! ([`MvccError::Compacted`]), as etcd does.
//!
//! The bytes: one record per stored version whose main revision is at
//! most R, ordered by key (bytewise), then by revision (main, sub)
//! ascending. A stored version is what the store keeps: every put and
//! every deletion (tombstone), minus what compaction forgot (for each key
//! the newest version at or below the compacted revision stays, unless
//! it is a tombstone). An empty store hashes the empty string: 0.
//!
//! | size | field | meaning |
//! | --- | --- | --- |
//! | 8 | key length | u64 |
//! | key length | key | |
//! | 8 | mod revision (main) | i64, the write that made this version |
//! | 8 | sub | i64, its position in that write (0, 1, 2…) |
//! | 1 | flags | bit 0: tombstone; other bits 0 |
//! | 8 | create revision | i64 (0 for a tombstone) |
//! | 8 | version | i64 (0 for a tombstone) |
//! | 8 | lease | i64, 0 for none (0 for a tombstone) |
//! | 8 | value length | u64 (0 for a tombstone) |
//! | value length | value | |
//!
//! The compacted revision is not hashed: it is answered beside the hash
//! (`compact_revision`). Compaction changes the hash of the revisions
//! above it (versions at or below it go), so two HashKV answers compare
//! only when their `compact_revision` is equal, as in etcd; a HashKV at R
//! equals the HashKV of a store that applied only the writes up to R and
//! the same compactions.
//!
//! # Hash (the whole state)
//!
//! The bytes of HashKV at the current revision, followed by:
//!
//! | size | field | meaning |
//! | --- | --- | --- |
//! | 8 | current revision | i64 |
//! | 8 | compacted revision | i64, 0 if never compacted |
//! | 8 | lease count | u64 |
//! | 16 × count | leases | per lease, by id ascending: id i64, granted TTL i64 (seconds) |

use super::MvccStore;
use super::error::MvccError;
use super::format::record_fields;
use super::history::Record;

/// What a HashKV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// The CRC-32C of the versions up to `revision` (module documentation).
    pub hash: u32,
    /// The revision hashed up to (the current one when 0 was asked).
    pub revision: i64,
    /// The store's current revision.
    pub current_revision: i64,
    /// The store's compacted revision, 0 if never compacted.
    pub compact_revision: i64,
}

impl MvccStore {
    /// The HashKV of the versions with main revision <= `revision` (0 or
    /// below: the current one). See the module documentation.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, MvccError> {
        if revision > self.current {
            return Err(MvccError::FutureRevision);
        }
        if self.compacted > 0 && revision > 0 && revision <= self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        let revision = if revision <= 0 {
            self.current
        } else {
            revision
        };
        Ok(KvHash {
            hash: self.crc_of_versions(revision),
            revision,
            current_revision: self.current,
            compact_revision: self.compacted,
        })
    }

    /// The Hash of the whole state: the versions, the current and
    /// compacted revisions and `leases`, (id, granted TTL in seconds)
    /// pairs in any order. See the module documentation.
    pub fn hash_state(&self, leases: &[(i64, i64)]) -> u32 {
        let mut crc = self.crc_of_versions(self.current);
        crc = crc32c::crc32c_append(crc, &self.current.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &self.compacted.to_le_bytes());
        let mut leases = leases.to_vec();
        leases.sort_unstable();
        crc = crc32c::crc32c_append(crc, &(leases.len() as u64).to_le_bytes());
        for (id, ttl) in leases {
            crc = crc32c::crc32c_append(crc, &id.to_le_bytes());
            crc = crc32c::crc32c_append(crc, &ttl.to_le_bytes());
        }
        crc
    }

    /// The CRC-32C of the records of every version with main revision <=
    /// `revision`, by key then revision.
    fn crc_of_versions(&self, revision: i64) -> u32 {
        let mut crc = 0;
        for (key, history) in &self.keys {
            for record in history.records().iter().take_while(|r| r.main <= revision) {
                crc = append_record(crc, key, record);
            }
        }
        crc
    }
}

/// Appends one version's record (the table in the module documentation)
/// to `crc`.
fn append_record(crc: u32, key: &[u8], record: &Record) -> u32 {
    let fixed = record_fields(record);
    let mut crc = crc32c::crc32c_append(crc, &(key.len() as u64).to_le_bytes());
    crc = crc32c::crc32c_append(crc, key);
    crc = crc32c::crc32c_append(crc, &fixed);
    crc = crc32c::crc32c_append(crc, &(record.value.len() as u64).to_le_bytes());
    crc32c::crc32c_append(crc, &record.value)
}
