//! Describing every record of a WAL, for `ringraft wal dump`.
//!
//! Owns: the per-record description ([`DumpedRecord`]) and its one-line JSON
//! form.
//! Guarantees: read-only; records are described in file order from the
//! oldest segment present, including entries later overwritten; a payload
//! that does not decode is described as such rather than stopping the dump;
//! frame damage stops it with the error (a torn tail is reported in the
//! result).
//! May not touch: any file (read only).

use super::error::WalError;
use super::payload;
use super::record_type::RecordType;
use super::scan::{TornTailReport, scan_segments};
use super::segment_name::{SegmentName, check_contiguous, list_segments};
use crate::raftpb::{EntryType, HardState};
use std::fmt::Write as _;
use std::path::Path;

/// One record as `wal dump` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedRecord {
    /// The segment holding it.
    pub segment: SegmentName,
    /// Offset of its frame in the segment.
    pub offset: u64,
    /// Its type.
    pub record_type: RecordType,
    /// Its CRC field.
    pub crc: u32,
    /// Its payload.
    pub payload: DumpedPayload,
}

/// The decoded payload of a [`DumpedRecord`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpedPayload {
    /// A crc record: no payload.
    Crc,
    /// Who wrote the WAL.
    Metadata {
        /// The member's node id.
        node_id: u64,
        /// The cluster id.
        cluster_id: u64,
    },
    /// A raft entry.
    Entry {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
        /// Its type name (`EntryNormal`, `EntryConfChange`, ...).
        entry_type: &'static str,
        /// Length of its data.
        data_bytes: usize,
    },
    /// A hard state.
    State(HardState),
    /// A snapshot marker.
    Snapshot {
        /// The snapshot index.
        index: u64,
        /// The snapshot term.
        term: u64,
    },
    /// A payload that does not decode.
    Undecodable(String),
}

impl DumpedRecord {
    /// The record as one JSON object on one line.
    pub fn to_json(&self) -> String {
        let mut out = format!(
            "{{\"segment\":\"{}\",\"offset\":{},\"type\":\"{}\",\"crc\":{}",
            self.segment.file_name(),
            self.offset,
            self.record_type.name(),
            self.crc
        );
        // Writing to a String cannot fail.
        let _ = match &self.payload {
            DumpedPayload::Crc => Ok(()),
            DumpedPayload::Metadata {
                node_id,
                cluster_id,
            } => write!(out, ",\"node_id\":{node_id},\"cluster_id\":{cluster_id}"),
            DumpedPayload::Entry {
                index,
                term,
                entry_type,
                data_bytes,
            } => write!(
                out,
                ",\"index\":{index},\"term\":{term},\"entry_type\":\"{entry_type}\",\"data_bytes\":{data_bytes}"
            ),
            DumpedPayload::State(state) => write!(
                out,
                ",\"term\":{},\"vote\":{},\"commit\":{}",
                state.term, state.vote, state.commit
            ),
            DumpedPayload::Snapshot { index, term } => {
                write!(out, ",\"index\":{index},\"term\":{term}")
            }
            DumpedPayload::Undecodable(why) => write!(out, ",\"error\":{}", json_string(why)),
        };
        out.push('}');
        out
    }
}

/// What the dump ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpEnd {
    /// Number of records described.
    pub record_count: usize,
    /// A torn tail at the end of the last segment, if any.
    pub torn_tail: Option<TornTailReport>,
}

/// Calls `visit` with every record of the WAL in `dir`, oldest first.
pub fn dump(dir: &Path, mut visit: impl FnMut(&DumpedRecord)) -> Result<DumpEnd, WalError> {
    let segments = list_segments(dir)?;
    check_contiguous(dir, &segments)?;
    let mut record_count = 0;
    let end = scan_segments(dir, &segments, |place, record| {
        visit(&DumpedRecord {
            segment: place.segment,
            offset: record.offset,
            record_type: record.record_type,
            crc: record.record.crc,
            payload: describe(record.record_type, &record.record.data),
        });
        record_count += 1;
        Ok(())
    })?;
    Ok(DumpEnd {
        record_count,
        torn_tail: end.torn,
    })
}

fn describe(record_type: RecordType, data: &[u8]) -> DumpedPayload {
    let described = match record_type {
        RecordType::Crc => Ok(DumpedPayload::Crc),
        RecordType::Metadata => payload::decode_metadata(data).map(|m| DumpedPayload::Metadata {
            node_id: m.node_id,
            cluster_id: m.cluster_id,
        }),
        RecordType::Entry => payload::decode_entry(data).map(|e| DumpedPayload::Entry {
            index: e.index,
            term: e.term,
            entry_type: entry_type_name(e.entry_type),
            data_bytes: e.data.len(),
        }),
        RecordType::State => payload::decode_hard_state(data).map(DumpedPayload::State),
        RecordType::Snapshot => {
            payload::decode_snapshot_marker(data).map(|s| DumpedPayload::Snapshot {
                index: s.index,
                term: s.term,
            })
        }
    };
    described.unwrap_or_else(DumpedPayload::Undecodable)
}

fn entry_type_name(entry_type: i32) -> &'static str {
    match EntryType::try_from(entry_type) {
        Ok(EntryType::EntryNormal) => "EntryNormal",
        Ok(EntryType::EntryConfChange) => "EntryConfChange",
        Ok(EntryType::EntryConfChangeV2) => "EntryConfChangeV2",
        Err(_) => "unknown",
    }
}

/// A JSON string literal for `text`.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
