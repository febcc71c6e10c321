//! The WAL segment decoder over arbitrary bytes: decoding must end (every
//! record consumes bytes), never panic, and no length word may make it
//! allocate what it claims. Every decoded record's payload is also decoded
//! by the payload decoder its type names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringraft::wal::RecordType;
use ringraft::wal::decoder::{Chain, Decoded, SegmentDecoder, SegmentRole};
use ringraft::wal::payload;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the segment is read; the rest is the segment.
    let Some((&mode, segment)) = data.split_first() else {
        return;
    };
    let chain = if mode & 1 == 0 {
        Chain::StartsHere
    } else {
        Chain::Continues(0)
    };
    let role = if mode & 2 == 0 {
        SegmentRole::Last
    } else {
        SegmentRole::Earlier
    };
    if mode & 4 != 0 {
        // The CRC chain stops most mutated frames before their payload:
        // feed the payload decoders directly too.
        let _ = payload::decode_entry(segment);
        let _ = payload::decode_hard_state(segment);
        let _ = payload::decode_metadata(segment);
        let _ = payload::decode_snapshot_marker(segment);
    }
    let mut decoder = SegmentDecoder::new(segment, chain, role);
    let mut last_end = 0u64;
    // Each record takes at least 16 bytes, so this bounds a correct decoder.
    for _ in 0..=segment.len() / 16 + 1 {
        match decoder.next_record() {
            Ok(Decoded::Record(record)) => {
                assert!(record.offset >= last_end, "records go backwards");
                assert!(decoder.valid_end() <= segment.len() as u64);
                last_end = decoder.valid_end();
                let data = record.record.data.as_slice();
                let _ = match record.record_type {
                    RecordType::Entry => payload::decode_entry(data).map(drop),
                    RecordType::State => payload::decode_hard_state(data).map(drop),
                    RecordType::Metadata => payload::decode_metadata(data).map(drop),
                    RecordType::Snapshot => payload::decode_snapshot_marker(data).map(drop),
                    RecordType::Crc => Ok(()),
                };
            }
            Ok(Decoded::End { data_end }) => {
                assert!(data_end <= segment.len() as u64);
                // After the end the verdict repeats.
                assert_eq!(decoder.next_record(), Ok(Decoded::End { data_end }));
                return;
            }
            Ok(Decoded::TornTail { offset, .. }) => {
                assert!(offset <= segment.len() as u64);
                return;
            }
            Err(_) => return,
        }
    }
    panic!("decoder did not finish a {}-byte segment", segment.len());
});
