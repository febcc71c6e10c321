//! Replaying a WAL's records from a snapshot on into the state raft needs:
//! metadata, the last hard state, and the entries after the snapshot.
//!
//! Owns: the reading rules of etcd's `ReadAll`. Entries at or before the
//! snapshot index are skipped, but drop every entry kept after the snapshot
//! so far (they were written earlier and overwritten: etcd keeps them, and
//! then returns a stale suffix); a later entry whose index was already seen
//! replaces the tail from that index (raft log truncation); the last hard
//! state wins; metadata must never change; the snapshot record with the
//! requested index must be present with the requested term. Plus invariant
//! checks etcd leaves out, which also catch a flipped record-type bit (the
//! CRC covers only `data`): each segment starts with a crc then a metadata
//! record; entry indexes leave no gap; entry terms and hard-state terms never
//! decrease; no entry rewrites a committed index; no hard state commits
//! beyond the last index written.
//! Guarantees: every violation is an error naming the file and the record's
//! offset.
//! May not touch: files or the CRC chain (the scan has checked it).

use super::decoder::DecodedRecord;
use super::error::WalError;
use super::payload;
use super::record_type::RecordType;
use super::scan::RecordPlace;
use crate::raftpb::{Entry, HardState, Metadata, walpb};
use std::path::Path;

/// What a WAL holds from a snapshot on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalContents {
    /// Who wrote the WAL.
    pub metadata: Metadata,
    /// The last hard state saved (empty if none).
    pub hard_state: HardState,
    /// The entries after the snapshot, in index order.
    pub entries: Vec<Entry>,
}

/// The state of a replay in progress.
#[derive(Debug)]
pub(crate) struct Replay {
    start: walpb::Snapshot,
    metadata_bytes: Option<Vec<u8>>,
    hard_state: HardState,
    entries: Vec<Entry>,
    last_entry_index: u64,
    snapshot_matched: bool,
}

/// A finished replay.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The contents.
    pub contents: WalContents,
    /// The metadata record's bytes, for writing into new segments.
    pub metadata_bytes: Vec<u8>,
    /// The index of the last entry (or snapshot) record seen.
    pub last_entry_index: u64,
}

impl Replay {
    /// A replay from the snapshot `start` (index 0 for the beginning).
    pub fn new(start: &walpb::Snapshot) -> Replay {
        Replay {
            start: start.clone(),
            metadata_bytes: None,
            hard_state: HardState::default(),
            entries: Vec::new(),
            last_entry_index: 0,
            snapshot_matched: false,
        }
    }

    /// Applies one record.
    pub fn apply(
        &mut self,
        place: &RecordPlace<'_>,
        record: &DecodedRecord,
    ) -> Result<(), WalError> {
        let corrupt = |reason: String| WalError::corrupt(place.path, record.offset, reason);
        check_segment_header(place.position_in_segment, record.record_type).map_err(corrupt)?;
        let data = &record.record.data;
        match record.record_type {
            RecordType::Crc => Ok(()),
            RecordType::Metadata => self.apply_metadata(place.path, record.offset, data),
            RecordType::Entry => {
                let entry = payload::decode_entry(data).map_err(corrupt)?;
                self.apply_entry(entry).map_err(corrupt)
            }
            RecordType::State => {
                let state = payload::decode_hard_state(data).map_err(corrupt)?;
                self.apply_hard_state(state).map_err(corrupt)
            }
            RecordType::Snapshot => {
                let marker = payload::decode_snapshot_marker(data).map_err(corrupt)?;
                self.apply_snapshot_marker(place.path, record.offset, &marker)
            }
        }
    }

    /// The replayed contents; fails if the snapshot record was not found.
    pub fn finish(self, dir: &Path) -> Result<Replayed, WalError> {
        if !self.snapshot_matched {
            return Err(WalError::SnapshotNotFound {
                dir: dir.to_path_buf(),
                index: self.start.index,
                term: self.start.term,
            });
        }
        if let Some(first) = self.entries.first()
            && first.term < self.start.term
        {
            return Err(WalError::BadDirectory {
                dir: dir.to_path_buf(),
                reason: format!(
                    "entry {} has term {} below the term {} of the snapshot before it",
                    first.index, first.term, self.start.term
                ),
            });
        }
        let Some(metadata_bytes) = self.metadata_bytes else {
            return Err(WalError::BadDirectory {
                dir: dir.to_path_buf(),
                reason: "no metadata record in the segments read".to_string(),
            });
        };
        let metadata =
            payload::decode_metadata(&metadata_bytes).map_err(|reason| WalError::BadDirectory {
                dir: dir.to_path_buf(),
                reason,
            })?;
        Ok(Replayed {
            contents: WalContents {
                metadata,
                hard_state: self.hard_state,
                entries: self.entries,
            },
            metadata_bytes,
            last_entry_index: self.last_entry_index,
        })
    }

    fn apply_metadata(&mut self, path: &Path, offset: u64, data: &[u8]) -> Result<(), WalError> {
        match &self.metadata_bytes {
            Some(first) if first.as_slice() != data => Err(WalError::MetadataConflict {
                path: path.to_path_buf(),
                offset,
            }),
            Some(_) => Ok(()),
            None => {
                payload::decode_metadata(data).map_err(|r| WalError::corrupt(path, offset, r))?;
                self.metadata_bytes = Some(data.to_vec());
                Ok(())
            }
        }
    }

    fn apply_entry(&mut self, entry: Entry) -> Result<(), String> {
        self.last_entry_index = entry.index;
        if entry.index <= self.start.index {
            // Written after every entry kept so far (all of them above the
            // snapshot index): raft truncated its log below them and
            // appended from here, so they are a superseded suffix. Keeping
            // them (etcd's ReadAll does) returns stale entries after the
            // snapshot, with terms below the snapshot's.
            self.entries.clear();
            return Ok(());
        }
        let kept = (entry.index - self.start.index - 1) as usize;
        if kept > self.entries.len() {
            return Err(format!(
                "entry {} leaves a gap after index {}",
                entry.index,
                self.start.index + self.entries.len() as u64
            ));
        }
        if entry.index <= self.hard_state.commit {
            return Err(format!(
                "entry {} rewrites a committed index (commit is {})",
                entry.index, self.hard_state.commit
            ));
        }
        self.entries.truncate(kept);
        // The first entry after the snapshot may have a term below the
        // snapshot's only as part of a suffix that a later record at or
        // below the snapshot index overwrites; `finish` checks that one did.
        let previous_term = self.entries.last().map_or(0, |e| e.term);
        if entry.term < previous_term {
            return Err(format!(
                "entry {} has term {} below the term {} before it",
                entry.index, entry.term, previous_term
            ));
        }
        self.entries.push(entry);
        Ok(())
    }

    fn apply_hard_state(&mut self, state: HardState) -> Result<(), String> {
        if state.term < self.hard_state.term {
            return Err(format!(
                "hard state term {} is below the earlier term {}",
                state.term, self.hard_state.term
            ));
        }
        let known_index = self.last_entry_index.max(self.start.index);
        if state.commit > known_index {
            return Err(format!(
                "hard state commits index {} beyond the last index {known_index} written",
                state.commit
            ));
        }
        self.hard_state = state;
        Ok(())
    }

    fn apply_snapshot_marker(
        &mut self,
        path: &Path,
        offset: u64,
        marker: &walpb::Snapshot,
    ) -> Result<(), WalError> {
        self.last_entry_index = self.last_entry_index.max(marker.index);
        if marker.index != self.start.index {
            return Ok(());
        }
        if marker.term != self.start.term {
            return Err(WalError::SnapshotMismatch {
                path: path.to_path_buf(),
                offset,
                index: marker.index,
                expected_term: self.start.term,
                found_term: marker.term,
            });
        }
        self.snapshot_matched = true;
        Ok(())
    }
}

/// Every segment opens with a crc record, then a metadata record, and
/// neither type appears after that header.
pub(crate) fn check_segment_header(
    position_in_segment: usize,
    record_type: RecordType,
) -> Result<(), String> {
    let expected = match position_in_segment {
        0 => Some(RecordType::Crc),
        1 => Some(RecordType::Metadata),
        _ => None,
    };
    match expected {
        Some(expected) if expected != record_type => Err(format!(
            "record {position_in_segment} of the segment is {}, expected {}",
            record_type.name(),
            expected.name()
        )),
        None if matches!(record_type, RecordType::Crc | RecordType::Metadata) => Err(format!(
            "{} record after the segment header",
            record_type.name()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::release::SnapshotMarker;
    use super::super::writer::{Wal, WalOptions};
    use crate::raftpb::{ConfState, Entry, HardState, Metadata, walpb};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8, term as u8].into(),
            ..Default::default()
        }
    }

    /// Found by the deterministic simulation (tests/sim, seed 62): a
    /// follower held an uncommitted suffix of term 1, a leader of term 2
    /// overwrote it from index 3, the node applied and snapshotted index 3,
    /// crashed, and could not restart: the replay from the snapshot kept the
    /// stale entry 4 of term 1 (written before the overwrite) and refused it
    /// as going back in term.
    #[test]
    fn an_overwrite_at_or_below_the_snapshot_drops_the_stale_suffix() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let wal_dir = dir.path().join("wal");
        let metadata = Metadata {
            node_id: 1,
            cluster_id: 2,
        };
        let mut wal = Wal::create(&wal_dir, &metadata, WalOptions::default()).expect("create");
        let first_leader = HardState {
            term: 1,
            vote: 1,
            commit: 2,
        };
        let entries: Vec<Entry> = (1..=5).map(|index| entry(index, 1)).collect();
        wal.save(&first_leader, &entries).expect("save term 1");
        let second_leader = HardState {
            term: 2,
            vote: 2,
            commit: 3,
        };
        wal.save(&second_leader, &[entry(3, 2)])
            .expect("overwrite from 3");
        let marker = walpb::Snapshot {
            index: 3,
            term: 2,
            conf_state: Some(ConfState::default()),
        };
        wal.save_snapshot(&SnapshotMarker::without_snapshot_file(marker.clone()))
            .expect("snapshot marker");
        wal.save(&second_leader, &[entry(4, 2)]).expect("append 4");
        wal.close().expect("close");

        let (_wal, contents) =
            Wal::open(&wal_dir, &marker, WalOptions::default()).expect("open at the snapshot");
        assert_eq!(contents.entries, vec![entry(4, 2)]);
        assert_eq!(contents.hard_state, second_leader);
    }
}
