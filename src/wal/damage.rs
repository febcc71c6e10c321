//! Telling a torn write at the tail of the last segment from corruption.
//!
//! Owns: the rules, applied to the first frame of the last segment that fails
//! its checks. The model: the writer appends page-aligned chunks and syncs;
//! a crash can leave any subset of the unsynced 512-byte sectors unwritten
//! (still zero, since segments are preallocated and repair zeroes the rest),
//! or garbage past the old end of the file. So the frame is a torn write when
//! its length word is cut off, runs past the end of the file or is not a word
//! a writer produces; or when a whole sector under it is zero; or when it is
//! the last frame and nothing valid follows it. But a frame whose bytes hold
//! an intact, chain-verified record of a different length than its length
//! word says has a damaged length word: that is corruption, never torn, since
//! a torn write cannot damage an 8-byte aligned word inside a sector. A zero
//! length word ends the data only if the rest of its sector is zero too and
//! it does not hide an intact record (a one-bit flip of a length word).
//! Guarantees: pure, never panics on any input, looks at most one frame
//! ahead.
//! May not touch: files; it only classifies, the decoder decides.

use super::decoder::{Chain, FrameFailure, SECTOR_BYTES, check_record, natural_record_len};
use super::frame::{FrameSize, LENGTH_WORD_BYTES};
use super::record_type::RecordType;
use crate::raftpb::walpb;
use prost::Message as _;

/// True when the sector holding the zero length word at `at` has non-zero
/// bytes after the word: a lost sector would be zero from `at` on.
pub(crate) fn sector_has_data_after_zero_word(bytes: &[u8], at: usize) -> bool {
    let sector_end = (at / SECTOR_BYTES + 1) * SECTOR_BYTES;
    let from = (at + LENGTH_WORD_BYTES).min(bytes.len());
    let to = sector_end.min(bytes.len()).max(from);
    bytes[from..to].iter().any(|b| *b != 0)
}

/// True when the zero length word at `at` is followed by an intact record
/// whose own length word has a single bit set: one flipped bit would explain
/// the zero, so the data after it may have been acknowledged.
pub(crate) fn zero_word_hides_intact_record(bytes: &[u8], at: usize, chain: Chain) -> bool {
    let start = at + LENGTH_WORD_BYTES;
    let Some(record_bytes) = bytes.get(start..).and_then(natural_record_len) else {
        return false;
    };
    FrameSize::for_record(record_bytes)
        .length_word()
        .count_ones()
        == 1
        && check_record(&bytes[start..start + record_bytes], chain).is_ok()
}

/// The length of an intact record right after the failed frame's length word
/// when that length differs from what the word claims (a damaged length
/// word), or `None`.
pub(crate) fn intact_record_under_damaged_word(
    bytes: &[u8],
    at: usize,
    failure: &FrameFailure,
    chain: Chain,
) -> Option<usize> {
    let claimed = match failure {
        FrameFailure::PartialLengthWord => return None,
        FrameFailure::NonCanonicalLengthWord(_) => None,
        FrameFailure::PastEnd(size) | FrameFailure::BadRecord(size, _) => Some(size.record_bytes),
    };
    let start = at + LENGTH_WORD_BYTES;
    let record_bytes = natural_record_len(bytes.get(start..)?)?;
    if Some(record_bytes) == claimed {
        return None;
    }
    check_record(&bytes[start..start + record_bytes], chain).ok()?;
    Some(record_bytes)
}

/// Why a torn write explains the failed frame at `at`, or `None` when it
/// cannot (then the frame is corrupt).
pub(crate) fn torn_write_explains(
    bytes: &[u8],
    at: usize,
    failure: &FrameFailure,
) -> Option<&'static str> {
    match failure {
        FrameFailure::PartialLengthWord | FrameFailure::PastEnd(_) => {
            Some("the file ends inside the frame")
        }
        FrameFailure::NonCanonicalLengthWord(_) => Some("garbage where a frame should start"),
        FrameFailure::BadRecord(size, _) => {
            if has_lost_sector(bytes, at, size) {
                Some("a 512-byte sector under it was never written")
            } else if !frame_follows(bytes, at + size.total_bytes()) {
                Some("it is the last frame and nothing valid follows")
            } else {
                None
            }
        }
    }
}

/// True when some sector under the record of the frame at `at` is zero from
/// the frame's start (or the sector's start) to the sector's end: a sector the
/// crash kept from being written.
fn has_lost_sector(bytes: &[u8], at: usize, size: &FrameSize) -> bool {
    let record_start = at + LENGTH_WORD_BYTES;
    let record_end = (record_start + size.record_bytes).min(bytes.len());
    let mut sector_start = record_start / SECTOR_BYTES * SECTOR_BYTES;
    while sector_start < record_end {
        let from = sector_start.max(at);
        let to = (sector_start + SECTOR_BYTES).min(bytes.len());
        if bytes[from..to].iter().all(|b| *b == 0) {
            return true;
        }
        sector_start += SECTOR_BYTES;
    }
    false
}

/// True when a well-formed frame (canonical length word, complete, decodable
/// record of a known type) starts at `at`. Its CRC is not checked: the chain
/// through the failed frame before it is broken.
fn frame_follows(bytes: &[u8], at: usize) -> bool {
    let Some(word_bytes) = bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk::<LENGTH_WORD_BYTES>())
    else {
        return false;
    };
    let Some(size) = FrameSize::from_length_word(u64::from_le_bytes(*word_bytes)) else {
        return false;
    };
    let record_start = at + LENGTH_WORD_BYTES;
    let Some(record_bytes) = bytes.get(record_start..record_start + size.record_bytes) else {
        return false;
    };
    if at + size.total_bytes() > bytes.len() {
        return false;
    }
    walpb::Record::decode(record_bytes)
        .is_ok_and(|record| RecordType::from_i64(record.record_type).is_some())
}
