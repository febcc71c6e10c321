//! Read-only checks of a WAL: `verify` (everything from a snapshot on) and
//! `valid_snapshot_entries` (the snapshot markers a snapshot file may match).
//!
//! Owns: reading without locks or writes, so a WAL in use can be checked.
//! Guarantees: the same decoding and replay rules as opening for writing; a
//! torn tail is reported, not an error (it is repairable); corruption is the
//! error, naming file and offset.
//! May not touch: any file (read only).

use super::error::WalError;
use super::payload;
use super::record_type::RecordType;
use super::replay::{Replay, check_segment_header};
use super::scan::{TornTailReport, scan_segments};
use super::segment_name::{SegmentName, check_contiguous, list_segments, segments_from_index};
use crate::raftpb::{HardState, Metadata, walpb};
use std::path::Path;

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Who wrote the WAL.
    pub metadata: Metadata,
    /// The last hard state.
    pub hard_state: HardState,
    /// Number of entries after the snapshot.
    pub entry_count: usize,
    /// Index of the last entry after the snapshot, if any.
    pub last_index: Option<u64>,
    /// The segments read.
    pub segments: Vec<SegmentName>,
    /// A torn tail (repairable), if the last segment ends in one.
    pub torn_tail: Option<TornTailReport>,
}

/// Checks the WAL in `dir` from the snapshot marker `at` on, read-only, and
/// returns its hard state.
pub fn verify(dir: &Path, at: &walpb::Snapshot) -> Result<VerifyReport, WalError> {
    let all = list_segments(dir)?;
    let segments = segments_from_index(dir, &all, at.index)?;
    let mut replay = Replay::new(at);
    let end = scan_segments(dir, &segments, |place, record| replay.apply(place, record))?;
    let replayed = replay.finish(dir)?;
    let entries = &replayed.contents.entries;
    Ok(VerifyReport {
        metadata: replayed.contents.metadata,
        hard_state: replayed.contents.hard_state,
        entry_count: entries.len(),
        last_index: entries.last().map(|e| e.index),
        segments,
        torn_tail: end.torn,
    })
}

/// The snapshot markers in every segment of `dir` whose index is at or below
/// the last hard state's commit index: the snapshots a node may restart from.
pub fn valid_snapshot_entries(dir: &Path) -> Result<Vec<walpb::Snapshot>, WalError> {
    let segments = list_segments(dir)?;
    check_contiguous(dir, &segments)?;
    let mut markers = Vec::new();
    let mut hard_state = HardState::default();
    scan_segments(dir, &segments, |place, record| {
        let corrupt = |reason: String| WalError::corrupt(place.path, record.offset, reason);
        check_segment_header(place.position_in_segment, record.record_type).map_err(corrupt)?;
        match record.record_type {
            RecordType::Snapshot => {
                markers.push(payload::decode_snapshot_marker(&record.record.data).map_err(corrupt)?)
            }
            RecordType::State => {
                hard_state = payload::decode_hard_state(&record.record.data).map_err(corrupt)?
            }
            _ => {}
        }
        Ok(())
    })?;
    markers.retain(|marker| marker.index <= hard_state.commit);
    Ok(markers)
}
