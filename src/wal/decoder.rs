//! Decoding one WAL segment's bytes into records, and deciding where its
//! valid data ends.
//!
//! Owns: frame parsing, record decoding, the CRC-32C chain check (including
//! the crc-record rule: a crc record must carry the running value, except in
//! the first segment read after skipped or purged ones, where it starts the
//! chain), and the three ways a segment
//! can end: cleanly (end of file at a frame boundary, or a zero length word
//! before preallocated zeros), with a torn tail, or with corruption.
//! Guarantees: pure and total over any byte slice: never panics, never loops
//! (every record consumes at least 16 bytes, and after the end the decoder only
//! repeats its verdict). Torn tails are reported only for the last segment and
//! only as [`damage`] allows; everything else that fails a
//! check is a [`DecodeError`] naming the frame's byte offset.
//! May not touch: files, paths, or the meaning of records (entries, states).

use super::damage;
use super::encoder::{RECORD_CRC_KEY, RECORD_DATA_KEY, RECORD_TYPE_KEY};
use super::frame::{FrameSize, LENGTH_WORD_BYTES};
use super::record_type::RecordType;
use crate::raftpb::walpb;
use prost::Message as _;

/// Size of the sectors a disk writes atomically, for torn-write detection.
pub const SECTOR_BYTES: usize = 512;

/// Whether a segment is the WAL's last one: only the last segment can end in
/// a torn write, because earlier ones were complete and synced before the
/// next one was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentRole {
    /// A segment followed by another one.
    Earlier,
    /// The newest segment, the one that was being appended to.
    Last,
}

/// Where the CRC chain stands when decoding of a segment begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Reading starts at this segment after others were skipped or purged:
    /// the segment's crc record is taken as given (etcd's rule).
    StartsHere,
    /// The chain's value so far: the segment's crc record must carry exactly
    /// it (0 for the WAL's first segment).
    Continues(u32),
}

/// One record and where its frame starts in the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Byte offset of the frame's length word in the segment.
    pub offset: u64,
    /// The record's type.
    pub record_type: RecordType,
    /// The record, its CRC already checked against the chain.
    pub record: walpb::Record,
}

/// What the decoder found next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record.
    Record(DecodedRecord),
    /// The data ends cleanly at `data_end`: end of file, or a zero length word
    /// (preallocated space). Appending continues there.
    End {
        /// Offset just past the last valid frame.
        data_end: u64,
    },
    /// The last segment ends in a partially written frame at `offset`; the
    /// valid data is everything before it.
    TornTail {
        /// Offset of the first frame that is not valid.
        offset: u64,
        /// Why the frame counts as torn.
        reason: String,
    },
}

/// A segment that is damaged in a way a torn write cannot explain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A record's CRC does not continue the chain.
    #[error(
        "CRC mismatch in the frame at byte {offset}: record says {expected:#010x}, chain gives {actual:#010x}"
    )]
    CrcMismatch {
        /// Offset of the frame's length word.
        offset: u64,
        /// The CRC stored in the record.
        expected: u32,
        /// The CRC the chain computes.
        actual: u32,
    },
    /// A frame that cannot be parsed or decoded.
    #[error("corrupt frame at byte {offset}: {reason}")]
    Corrupt {
        /// Offset of the frame's length word.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Why a frame failed, before deciding whether it is torn or corrupt.
#[derive(Clone, Debug)]
pub(crate) enum FrameFailure {
    /// Fewer than 8 bytes left for the length word.
    PartialLengthWord,
    /// A length word no writer produces.
    NonCanonicalLengthWord(u64),
    /// The frame runs past the end of the segment.
    PastEnd(FrameSize),
    /// The frame is complete but its record is bad.
    BadRecord(FrameSize, RecordFailure),
}

/// Why a complete record failed.
#[derive(Clone, Debug)]
pub(crate) enum RecordFailure {
    Undecodable(String),
    CrcMismatch { expected: u32, actual: u32 },
}

impl FrameFailure {
    fn describe(&self) -> String {
        match self {
            FrameFailure::PartialLengthWord => "the length word is cut off".to_string(),
            FrameFailure::NonCanonicalLengthWord(word) => {
                format!("length word {word:#018x} is not one a writer produces")
            }
            FrameFailure::PastEnd(size) => format!(
                "the {}-byte frame runs past the end of the segment",
                size.total_bytes()
            ),
            FrameFailure::BadRecord(_, RecordFailure::Undecodable(why)) => why.clone(),
            FrameFailure::BadRecord(_, RecordFailure::CrcMismatch { .. }) => {
                "CRC mismatch".to_string()
            }
        }
    }

    fn into_error(self, offset: u64) -> DecodeError {
        match self {
            FrameFailure::BadRecord(_, RecordFailure::CrcMismatch { expected, actual }) => {
                DecodeError::CrcMismatch {
                    offset,
                    expected,
                    actual,
                }
            }
            other => DecodeError::Corrupt {
                offset,
                reason: other.describe(),
            },
        }
    }
}

/// Decodes the frames of one segment in order.
pub struct SegmentDecoder<'a> {
    bytes: &'a [u8],
    offset: usize,
    running_crc: u32,
    chain_known: bool,
    role: SegmentRole,
    verdict: Option<Result<Decoded, DecodeError>>,
}

impl<'a> SegmentDecoder<'a> {
    /// A decoder over a whole segment file.
    pub fn new(bytes: &'a [u8], chain: Chain, role: SegmentRole) -> SegmentDecoder<'a> {
        let (running_crc, chain_known) = match chain {
            Chain::StartsHere => (0, false),
            Chain::Continues(crc) => (crc, true),
        };
        SegmentDecoder {
            bytes,
            offset: 0,
            running_crc,
            chain_known,
            role,
            verdict: None,
        }
    }

    /// The running CRC after the records decoded so far.
    pub fn running_crc(&self) -> u32 {
        self.running_crc
    }

    /// Offset just past the last valid frame decoded so far.
    pub fn valid_end(&self) -> u64 {
        self.offset as u64
    }

    /// The next record, or how the segment ends. After the end (or an error)
    /// every call returns the same verdict.
    pub fn next_record(&mut self) -> Result<Decoded, DecodeError> {
        if let Some(verdict) = &self.verdict {
            return verdict.clone();
        }
        let step = self.step();
        if !matches!(step, Ok(Decoded::Record(_))) {
            self.verdict = Some(step.clone());
        }
        step
    }

    fn step(&mut self) -> Result<Decoded, DecodeError> {
        let at = self.offset;
        let rest = &self.bytes[at..];
        if rest.is_empty() {
            return Ok(Decoded::End {
                data_end: at as u64,
            });
        }
        let Some(word_bytes) = rest.first_chunk::<LENGTH_WORD_BYTES>() else {
            if rest.iter().all(|b| *b == 0) {
                // Zeros up to the end of the file, like preallocated space.
                return Ok(Decoded::End {
                    data_end: at as u64,
                });
            }
            return self.failed(FrameFailure::PartialLengthWord);
        };
        let word = u64::from_le_bytes(*word_bytes);
        if word == 0 {
            return self.at_zero_length_word();
        }
        let Some(size) = FrameSize::from_length_word(word) else {
            return self.failed(FrameFailure::NonCanonicalLengthWord(word));
        };
        if size.total_bytes() > rest.len() {
            return self.failed(FrameFailure::PastEnd(size));
        }
        let record_bytes = &rest[LENGTH_WORD_BYTES..LENGTH_WORD_BYTES + size.record_bytes];
        match check_record(record_bytes, self.chain()) {
            Ok((record_type, record, running_crc)) => {
                self.running_crc = running_crc;
                self.chain_known = true;
                self.offset += size.total_bytes();
                Ok(Decoded::Record(DecodedRecord {
                    offset: at as u64,
                    record_type,
                    record,
                }))
            }
            Err(why) => self.failed(FrameFailure::BadRecord(size, why)),
        }
    }

    /// A zero length word ends the data (what follows is preallocated space),
    /// unless it is a damaged word in front of data.
    fn at_zero_length_word(&self) -> Result<Decoded, DecodeError> {
        let at = self.offset;
        if damage::sector_has_data_after_zero_word(self.bytes, at) {
            return Err(DecodeError::Corrupt {
                offset: at as u64,
                reason: "zero length word followed by data in the same 512-byte sector".to_string(),
            });
        }
        if damage::zero_word_hides_intact_record(self.bytes, at, self.chain()) {
            return Err(DecodeError::Corrupt {
                offset: at as u64,
                reason: "zero length word in front of an intact record (a damaged length word)"
                    .to_string(),
            });
        }
        Ok(Decoded::End {
            data_end: at as u64,
        })
    }

    fn chain(&self) -> Chain {
        if self.chain_known {
            Chain::Continues(self.running_crc)
        } else {
            Chain::StartsHere
        }
    }

    /// Decides whether a failed frame is a torn tail or corruption.
    fn failed(&self, failure: FrameFailure) -> Result<Decoded, DecodeError> {
        let at = self.offset;
        if self.role == SegmentRole::Earlier {
            return Err(failure.into_error(at as u64));
        }
        if let Some(intact_bytes) =
            damage::intact_record_under_damaged_word(self.bytes, at, &failure, self.chain())
        {
            return Err(DecodeError::Corrupt {
                offset: at as u64,
                reason: format!(
                    "damaged length word: {} (an intact {intact_bytes}-byte record follows)",
                    failure.describe()
                ),
            });
        }
        match damage::torn_write_explains(self.bytes, at, &failure) {
            Some(reason) => Ok(Decoded::TornTail {
                offset: at as u64,
                reason: format!("{}; {reason}", failure.describe()),
            }),
            None => Err(failure.into_error(at as u64)),
        }
    }
}

/// Decodes a complete record and checks it against the chain; returns the
/// record and the running CRC after it.
pub(crate) fn check_record(
    record_bytes: &[u8],
    chain: Chain,
) -> Result<(RecordType, walpb::Record, u32), RecordFailure> {
    // Writers emit exactly type, crc and (optional) data; anything after
    // them means the frame's length is wrong, even if protobuf would skip it.
    if natural_record_len(record_bytes) != Some(record_bytes.len()) {
        return Err(RecordFailure::Undecodable(
            "record fields do not fill the frame".to_string(),
        ));
    }
    let record = walpb::Record::decode(record_bytes)
        .map_err(|e| RecordFailure::Undecodable(format!("undecodable record: {e}")))?;
    let Some(record_type) = RecordType::from_i64(record.record_type) else {
        return Err(RecordFailure::Undecodable(format!(
            "unknown record type {}",
            record.record_type
        )));
    };
    if record_type == RecordType::Crc {
        if !record.data.is_empty() {
            return Err(RecordFailure::Undecodable(
                "crc record carrying data".to_string(),
            ));
        }
        if let Chain::Continues(running_crc) = chain
            && record.crc != running_crc
        {
            return Err(RecordFailure::CrcMismatch {
                expected: record.crc,
                actual: running_crc,
            });
        }
        let crc = record.crc;
        return Ok((record_type, record, crc));
    }
    let running_crc = match chain {
        Chain::Continues(crc) => crc,
        // Only a crc record can start a chain.
        Chain::StartsHere => {
            return Err(RecordFailure::Undecodable(format!(
                "segment starts with a {} record, not a crc record",
                record_type.name()
            )));
        }
    };
    let actual = crc32c::crc32c_append(running_crc, &record.data);
    if actual != record.crc {
        return Err(RecordFailure::CrcMismatch {
            expected: record.crc,
            actual,
        });
    }
    Ok((record_type, record, actual))
}

/// The length of the `walpb.Record` at the start of `bytes` judged by its own
/// fields (type, crc, optional data, in the order every writer emits them),
/// independent of any length word; `None` if they do not parse.
pub(crate) fn natural_record_len(bytes: &[u8]) -> Option<usize> {
    let mut rest = bytes;
    expect_key(&mut rest, RECORD_TYPE_KEY)?;
    prost::encoding::decode_varint(&mut rest).ok()?;
    expect_key(&mut rest, RECORD_CRC_KEY)?;
    let crc = prost::encoding::decode_varint(&mut rest).ok()?;
    u32::try_from(crc).ok()?;
    if rest.first() == Some(&RECORD_DATA_KEY) {
        rest = &rest[1..];
        let data_len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
        rest = rest.get(data_len..)?;
    }
    Some(bytes.len() - rest.len())
}

fn expect_key(rest: &mut &[u8], key: u8) -> Option<()> {
    let (first, tail) = rest.split_first()?;
    if *first != key {
        return None;
    }
    *rest = tail;
    Some(())
}

#[cfg(test)]
mod tests;
