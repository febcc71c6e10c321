//! Reading a run of segment files in order and decoding them as one CRC
//! chain.
//!
//! Owns: the loop over files (each read whole), the chain carried from one
//! segment to the next, and which segment counts as the last.
//! Guarantees: visits every valid record in order with its file and position
//! in its segment; stops at the first error, which names the file and offset;
//! a torn tail (possible only in the last segment) ends the scan and is
//! reported in [`ScanEnd`], not as an error.
//! May not touch: record meaning (callers interpret records) or file
//! contents (read only).

use super::decoder::{Chain, Decoded, DecodedRecord, SegmentDecoder, SegmentRole};
use super::error::WalError;
use super::segment_name::{SegmentName, segment_path};
use std::path::{Path, PathBuf};

/// A torn tail found by a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTailReport {
    /// The last segment file.
    pub path: PathBuf,
    /// Offset of the first frame that is not valid.
    pub offset: u64,
    /// Why it counts as torn.
    pub reason: String,
}

/// Where a scan stopped in the last segment.
#[derive(Clone, Debug)]
pub(crate) struct ScanEnd {
    /// The last segment scanned.
    pub last: SegmentName,
    /// Offset just past its last valid frame.
    pub data_end: u64,
    /// The running CRC after the last valid record.
    pub running_crc: u32,
    /// Length of the last segment file.
    pub file_len: u64,
    /// Number of valid records in the last segment.
    pub last_record_count: usize,
    /// Whether non-zero bytes follow `data_end` in the last segment.
    pub stale_bytes_after_end: bool,
    /// The torn tail, if the last segment ends in one.
    pub torn: Option<TornTailReport>,
}

/// Where a visited record is.
pub(crate) struct RecordPlace<'a> {
    /// The segment.
    pub segment: SegmentName,
    /// The segment file.
    pub path: &'a Path,
    /// 0 for a segment's first record, 1 for its second, and so on.
    pub position_in_segment: usize,
}

/// Decodes `segments` of `dir` in order (they must be contiguous), calling
/// `visit` for each valid record.
pub(crate) fn scan_segments(
    dir: &Path,
    segments: &[SegmentName],
    mut visit: impl FnMut(&RecordPlace<'_>, &DecodedRecord) -> Result<(), WalError>,
) -> Result<ScanEnd, WalError> {
    let Some((last, earlier)) = segments.split_last() else {
        return Err(WalError::BadDirectory {
            dir: dir.to_path_buf(),
            reason: "no WAL segments".to_string(),
        });
    };
    let mut chain = first_chain(&segments[0]);
    for segment in earlier {
        let path = segment_path(dir, segment);
        let bytes = std::fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        let role = SegmentRole::Earlier;
        let end = decode_segment(*segment, &path, &bytes, chain, role, &mut visit)?;
        chain = Chain::Continues(end.running_crc);
    }
    let path = segment_path(dir, last);
    let bytes = std::fs::read(&path).map_err(|e| WalError::io(&path, e))?;
    let role = SegmentRole::Last;
    let end = decode_segment(*last, &path, &bytes, chain, role, &mut visit)?;
    let torn = match end.stop {
        Decoded::TornTail { offset, reason } => Some(TornTailReport {
            path: path.clone(),
            offset,
            reason,
        }),
        _ => None,
    };
    Ok(ScanEnd {
        last: *last,
        data_end: end.valid_end,
        running_crc: end.running_crc,
        file_len: bytes.len() as u64,
        last_record_count: end.record_count,
        stale_bytes_after_end: bytes[end.valid_end as usize..].iter().any(|b| *b != 0),
        torn,
    })
}

/// How the chain starts at the first segment read: the WAL's first segment
/// must carry 0; a later one (older ones skipped or purged) sets the chain.
pub(crate) fn first_chain(segment: &SegmentName) -> Chain {
    if segment.seq == 0 {
        Chain::Continues(0)
    } else {
        Chain::StartsHere
    }
}

struct SegmentEnd {
    stop: Decoded,
    running_crc: u32,
    valid_end: u64,
    record_count: usize,
}

fn decode_segment(
    segment: SegmentName,
    path: &Path,
    bytes: &[u8],
    chain: Chain,
    role: SegmentRole,
    visit: &mut impl FnMut(&RecordPlace<'_>, &DecodedRecord) -> Result<(), WalError>,
) -> Result<SegmentEnd, WalError> {
    let mut decoder = SegmentDecoder::new(bytes, chain, role);
    let mut position_in_segment = 0;
    loop {
        match decoder.next_record() {
            Ok(Decoded::Record(record)) => {
                let place = RecordPlace {
                    segment,
                    path,
                    position_in_segment,
                };
                visit(&place, &record)?;
                position_in_segment += 1;
            }
            Ok(stop) => {
                return Ok(SegmentEnd {
                    stop,
                    running_crc: decoder.running_crc(),
                    valid_end: decoder.valid_end(),
                    record_count: position_in_segment,
                });
            }
            Err(e) => return Err(WalError::from_decode(path, e)),
        }
    }
}
