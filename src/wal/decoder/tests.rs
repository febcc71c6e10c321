//! Decoder behaviour on hand-built segments: clean ends, torn tails,
//! corruption, and the crc-record rule.

use super::*;
use crate::wal::encoder::Encoder;

fn segment(records: &[(RecordType, &[u8])]) -> (Vec<u8>, Vec<u64>) {
    let mut encoder = Encoder::new(0);
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for (record_type, data) in records {
        offsets.push(out.len() as u64);
        encoder.encode(*record_type, data, &mut out);
    }
    (out, offsets)
}

fn sample() -> (Vec<u8>, Vec<u64>) {
    segment(&[
        (RecordType::Crc, b""),
        (RecordType::Metadata, b"\x08\x01\x10\x02"),
        (RecordType::Entry, b"first entry payload"),
        (RecordType::Entry, b"second entry payload, a bit longer"),
    ])
}

fn decode_all(bytes: &[u8], role: SegmentRole) -> (Vec<u64>, Result<Decoded, DecodeError>) {
    let mut decoder = SegmentDecoder::new(bytes, Chain::Continues(0), role);
    let mut offsets = Vec::new();
    loop {
        match decoder.next_record() {
            Ok(Decoded::Record(record)) => offsets.push(record.offset),
            other => return (offsets, other),
        }
    }
}

#[test]
fn clean_end_at_end_of_file() {
    let (bytes, offsets) = sample();
    let (seen, end) = decode_all(&bytes, SegmentRole::Last);
    assert_eq!(seen, offsets);
    assert_eq!(
        end,
        Ok(Decoded::End {
            data_end: bytes.len() as u64
        })
    );
}

#[test]
fn clean_end_at_preallocated_zeros() {
    let (mut bytes, offsets) = sample();
    let data_end = bytes.len() as u64;
    bytes.resize(8192, 0);
    let (seen, end) = decode_all(&bytes, SegmentRole::Earlier);
    assert_eq!(seen, offsets);
    assert_eq!(end, Ok(Decoded::End { data_end }));
}

#[test]
fn verdict_repeats_after_the_end() {
    let (bytes, _) = sample();
    let mut decoder = SegmentDecoder::new(
        &bytes[..bytes.len() - 3],
        Chain::Continues(0),
        SegmentRole::Last,
    );
    while let Ok(Decoded::Record(_)) = decoder.next_record() {}
    let first = decoder.next_record();
    assert!(matches!(first, Ok(Decoded::TornTail { .. })));
    assert_eq!(decoder.next_record(), first);
}

#[test]
fn cut_off_last_frame_is_torn_only_in_the_last_segment() {
    let (bytes, offsets) = sample();
    let cut = &bytes[..bytes.len() - 5];
    let (seen, end) = decode_all(cut, SegmentRole::Last);
    assert_eq!(seen, offsets[..3]);
    assert!(matches!(end, Ok(Decoded::TornTail { offset, .. }) if offset == offsets[3]));
    let (_, end) = decode_all(cut, SegmentRole::Earlier);
    assert!(matches!(end, Err(DecodeError::Corrupt { offset, .. }) if offset == offsets[3]));
}

#[test]
fn flipped_data_bit_before_the_last_frame_is_a_crc_mismatch() {
    let (mut bytes, offsets) = sample();
    let in_third_data = offsets[2] as usize + 8 + 12;
    bytes[in_third_data] ^= 0x04;
    let (seen, end) = decode_all(&bytes, SegmentRole::Last);
    assert_eq!(seen, offsets[..2]);
    assert!(matches!(end, Err(DecodeError::CrcMismatch { offset, .. }) if offset == offsets[2]));
}

#[test]
fn damaged_length_word_is_corruption_not_a_torn_tail() {
    let (mut bytes, offsets) = sample();
    // Bit 44 makes the frame run far past the end of the file.
    bytes[offsets[2] as usize + 5] ^= 0x10;
    let (_, end) = decode_all(&bytes, SegmentRole::Last);
    assert!(matches!(end, Err(DecodeError::Corrupt { offset, .. }) if offset == offsets[2]));
}

#[test]
fn zero_word_before_data_in_its_sector_is_corruption() {
    let (mut bytes, offsets) = sample();
    let at = offsets[3] as usize;
    bytes[at..at + 8].fill(0);
    let (_, end) = decode_all(&bytes, SegmentRole::Last);
    assert!(matches!(end, Err(DecodeError::Corrupt { offset, .. }) if offset == offsets[3]));
}

#[test]
fn crc_record_must_continue_a_running_chain() {
    let (bytes, _) = sample();
    let mut decoder = SegmentDecoder::new(&bytes, Chain::Continues(1234), SegmentRole::Earlier);
    assert!(matches!(
        decoder.next_record(),
        Err(DecodeError::CrcMismatch { offset: 0, .. })
    ));
    let mut fresh = SegmentDecoder::new(&bytes, Chain::StartsHere, SegmentRole::Earlier);
    assert!(matches!(fresh.next_record(), Ok(Decoded::Record(_))));
}

#[test]
fn only_a_crc_record_can_start_a_chain() {
    let (bytes, offsets) = sample();
    let from_metadata = &bytes[offsets[1] as usize..];
    let mut decoder = SegmentDecoder::new(from_metadata, Chain::StartsHere, SegmentRole::Earlier);
    assert!(matches!(
        decoder.next_record(),
        Err(DecodeError::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn garbage_after_the_last_frame_is_torn() {
    let (mut bytes, offsets) = sample();
    let data_end = bytes.len() as u64;
    bytes.extend_from_slice(&[0x5a; 40]);
    let (seen, end) = decode_all(&bytes, SegmentRole::Last);
    assert_eq!(seen, offsets);
    assert!(matches!(end, Ok(Decoded::TornTail { offset, .. }) if offset == data_end));
}
