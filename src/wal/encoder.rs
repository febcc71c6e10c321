//! Encoding WAL records into frames in memory, carrying the running CRC.
//!
//! Owns: the byte layout of a framed `walpb.Record` and the CRC-32C chain
//! across records (each record's `crc` is the running checksum after adding
//! its `data`; a crc record adds nothing and so carries the running value).
//! Guarantees: pure; the bytes are exactly what etcd's encoder writes (record
//! fields in field order, `data` omitted when empty, zero padding), every frame
//! starts and ends 8-byte aligned in the output buffer.
//! May not touch: files or syscalls. The caller decides where and when the
//! bytes are written, so any IO backend can sit under it.

use super::frame::{FRAME_ALIGNMENT_BYTES, FrameSize};
use super::record_type::RecordType;
use prost::encoding::{encode_varint, encoded_len_varint};

/// Protobuf keys of `walpb.Record`: field 1 varint, field 2 varint, field 3
/// length-delimited.
pub(crate) const RECORD_TYPE_KEY: u8 = 0x08;
pub(crate) const RECORD_CRC_KEY: u8 = 0x10;
pub(crate) const RECORD_DATA_KEY: u8 = 0x1a;

/// Frames records and keeps the running CRC-32C of a WAL.
#[derive(Clone, Debug)]
pub struct Encoder {
    running_crc: u32,
}

impl Encoder {
    /// An encoder whose chain continues from `running_crc` (0 for a new WAL,
    /// the decoder's last value when appending to an existing one).
    pub fn new(running_crc: u32) -> Encoder {
        Encoder { running_crc }
    }

    /// The running CRC after every record encoded so far.
    pub fn running_crc(&self) -> u32 {
        self.running_crc
    }

    /// Appends one frame holding a record of `record_type` with `data` to
    /// `out`, which must end on a frame boundary.
    pub fn encode(&mut self, record_type: RecordType, data: &[u8], out: &mut Vec<u8>) {
        assert_eq!(
            out.len() % FRAME_ALIGNMENT_BYTES,
            0,
            "frames must start 8-byte aligned"
        );
        assert!(
            record_type != RecordType::Crc || data.is_empty(),
            "a crc record carries no data"
        );
        self.running_crc = crc32c::crc32c_append(self.running_crc, data);
        let record_bytes = encoded_record_len(record_type, self.running_crc, data);
        let size = FrameSize::for_record(record_bytes);
        out.reserve(size.total_bytes());
        out.extend_from_slice(&size.length_word().to_le_bytes());
        let record_start = out.len();
        out.push(RECORD_TYPE_KEY);
        encode_varint(record_type.as_i64() as u64, out);
        out.push(RECORD_CRC_KEY);
        encode_varint(u64::from(self.running_crc), out);
        if !data.is_empty() {
            out.push(RECORD_DATA_KEY);
            encode_varint(data.len() as u64, out);
            out.extend_from_slice(data);
        }
        debug_assert_eq!(out.len() - record_start, record_bytes);
        out.resize(out.len() + size.pad_bytes, 0);
    }
}

fn encoded_record_len(record_type: RecordType, crc: u32, data: &[u8]) -> usize {
    let mut len = 1 + encoded_len_varint(record_type.as_i64() as u64);
    len += 1 + encoded_len_varint(u64::from(crc));
    if !data.is_empty() {
        len += 1 + encoded_len_varint(data.len() as u64) + data.len();
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::walpb;
    use prost::Message as _;

    #[test]
    fn frames_match_prost_encoding_of_the_record() {
        let mut encoder = Encoder::new(0);
        let mut out = Vec::new();
        for data_len in [0usize, 1, 5, 6, 7, 8, 200] {
            let data = vec![0xabu8; data_len];
            let record_type = if data_len == 0 {
                RecordType::Crc
            } else {
                RecordType::Entry
            };
            let start = out.len();
            encoder.encode(record_type, &data, &mut out);
            let expected = walpb::Record {
                record_type: record_type.as_i64(),
                crc: encoder.running_crc(),
                data,
            }
            .encode_to_vec();
            let size = FrameSize::for_record(expected.len());
            assert_eq!(out.len() - start, size.total_bytes());
            assert_eq!(&out[start..start + 8], &size.length_word().to_le_bytes());
            assert_eq!(&out[start + 8..start + 8 + expected.len()], &expected[..]);
            assert!(out[start + 8 + expected.len()..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn crc_chains_over_data() {
        let mut encoder = Encoder::new(7);
        let mut out = Vec::new();
        encoder.encode(RecordType::Entry, b"abc", &mut out);
        assert_eq!(encoder.running_crc(), crc32c::crc32c_append(7, b"abc"));
        encoder.encode(RecordType::Crc, &[], &mut out);
        assert_eq!(encoder.running_crc(), crc32c::crc32c_append(7, b"abc"));
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }
}
