//! Property tests of the segment decoder on arbitrary and mutated bytes: it
//! returns records or a verdict, never panics, never loops, and never
//! returns a record that was not written.

use proptest::prelude::*;
use ringraft::wal::RecordType;
use ringraft::wal::decoder::{Chain, Decoded, SegmentDecoder, SegmentRole};
use ringraft::wal::encoder::Encoder;

fn role(last: bool) -> SegmentRole {
    if last {
        SegmentRole::Last
    } else {
        SegmentRole::Earlier
    }
}

fn chain(starts_here: bool, crc: u32) -> Chain {
    if starts_here {
        Chain::StartsHere
    } else {
        Chain::Continues(crc)
    }
}

/// Decodes until the verdict; returns the records' offsets and data.
fn decode(bytes: &[u8], chain: Chain, role: SegmentRole) -> Vec<(u64, Vec<u8>)> {
    let mut decoder = SegmentDecoder::new(bytes, chain, role);
    let mut records = Vec::new();
    // Every frame takes at least 16 bytes.
    for _ in 0..=bytes.len() / 16 + 1 {
        match decoder.next_record() {
            Ok(Decoded::Record(record)) => {
                assert!(record.offset < bytes.len() as u64);
                records.push((record.offset, record.record.data));
            }
            verdict => {
                assert_eq!(decoder.next_record(), verdict, "the verdict repeats");
                return records;
            }
        }
    }
    panic!("the decoder did not stop within the bytes it was given");
}

fn valid_segment(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
    let mut encoder = Encoder::new(0);
    let mut bytes = Vec::new();
    let mut records = Vec::new();
    encoder.encode(RecordType::Crc, &[], &mut bytes);
    records.push((0, Vec::new()));
    for payload in payloads {
        records.push((bytes.len() as u64, payload.clone()));
        encoder.encode(RecordType::Entry, payload, &mut bytes);
    }
    (bytes, records)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_or_loop(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        last in any::<bool>(),
        starts_here in any::<bool>(),
        crc in any::<u32>(),
    ) {
        decode(&bytes, chain(starts_here, crc), role(last));
    }

    #[test]
    fn framed_garbage_never_panics(
        records in proptest::collection::vec(
            (0u64..300, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..20,
        ),
        last in any::<bool>(),
    ) {
        // Plausible length words in front of arbitrary bodies reach deeper
        // into record decoding than uniformly random bytes do.
        let mut bytes = Vec::new();
        for (len, top, body) in records {
            bytes.extend_from_slice(&(len | (u64::from(top & 0x87) << 56)).to_le_bytes());
            bytes.extend_from_slice(&body);
        }
        decode(&bytes, Chain::Continues(0), role(last));
    }

    #[test]
    fn mutated_segments_only_yield_written_records(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..60), 1..12),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        last in any::<bool>(),
    ) {
        let (mut bytes, written) = valid_segment(&payloads);
        for (at, value) in mutations {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        for record in decode(&bytes, Chain::Continues(0), role(last)) {
            prop_assert!(written.contains(&record), "record at {} was never written", record.0);
        }
    }
}
