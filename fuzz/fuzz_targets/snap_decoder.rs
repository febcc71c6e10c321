//! The `.snap` file decoder over arbitrary bytes: no panic, no allocation
//! from a length field alone. Because the file's CRC stops almost every
//! mutated input, the input is also tried as the CRC-protected `data` of a
//! well-formed file (so the raft `Snapshot` decoder behind the CRC is
//! reached), and whatever decodes must re-encode to a file that decodes to
//! the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use ringraft::raftpb::snappb;
use ringraft::snap::codec::{decode_snapshot_file, encode_snapshot_file};

fuzz_target!(|data: &[u8]| {
    check(data);
    let wrapped = snappb::Snapshot {
        crc: crc32c::crc32c(data),
        data: data.to_vec(),
    }
    .encode_to_vec();
    check(&wrapped);
});

fn check(file: &[u8]) {
    if let Ok(snapshot) = decode_snapshot_file(file) {
        if snapshot.encoded_len() == 0 {
            // All defaults: its file would be the "empty" file by etcd's rule.
            return;
        }
        let again = decode_snapshot_file(&encode_snapshot_file(&snapshot))
            .expect("a re-encoded snapshot decodes");
        assert_eq!(again, snapshot, "snapshot changed in a round trip");
    }
}
