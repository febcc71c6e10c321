//! The bytes of a snapshot file: `snappb.Snapshot { crc, data }` where
//! `data` is the encoded raft `Snapshot` and `crc` its CRC-32C.
//!
//! Owns: encoding and decoding those bytes.
//! Guarantees: pure; decoding checks emptiness (etcd treats a zero CRC or
//! empty data as empty), the CRC, and that the raft snapshot decodes.
//! May not touch: files.

use crate::raftpb::{Snapshot, snappb};
use prost::Message as _;

/// Why snapshot file bytes were rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapDecodeError {
    /// No data (or a zero CRC, which etcd writes for none).
    Empty,
    /// The stored CRC does not match the data.
    CrcMismatch {
        /// Stored CRC.
        expected: u32,
        /// CRC of the data.
        actual: u32,
    },
    /// The bytes do not decode.
    Undecodable(String),
}

/// The file bytes for `snapshot`.
pub fn encode_snapshot_file(snapshot: &Snapshot) -> Vec<u8> {
    let data = snapshot.encode_to_vec();
    let crc = crc32c::crc32c(&data);
    snappb::Snapshot { crc, data }.encode_to_vec()
}

/// The snapshot in file bytes.
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<Snapshot, SnapDecodeError> {
    if bytes.is_empty() {
        return Err(SnapDecodeError::Empty);
    }
    let file = snappb::Snapshot::decode(bytes)
        .map_err(|e| SnapDecodeError::Undecodable(format!("undecodable snappb.Snapshot: {e}")))?;
    if file.data.is_empty() || file.crc == 0 {
        return Err(SnapDecodeError::Empty);
    }
    let actual = crc32c::crc32c(&file.data);
    if actual != file.crc {
        return Err(SnapDecodeError::CrcMismatch {
            expected: file.crc,
            actual,
        });
    }
    Snapshot::decode(file.data.as_slice())
        .map_err(|e| SnapDecodeError::Undecodable(format!("undecodable raft snapshot: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::{ConfState, SnapshotMetadata};

    fn sample() -> Snapshot {
        Snapshot {
            data: b"state machine".to_vec(),
            metadata: SnapshotMetadata {
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    ..ConfState::default()
                },
                index: 42,
                term: 7,
            },
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode_snapshot_file(&sample());
        assert_eq!(decode_snapshot_file(&bytes), Ok(sample()));
    }

    #[test]
    fn flipped_data_bit_is_a_crc_mismatch() {
        let mut bytes = encode_snapshot_file(&sample());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            decode_snapshot_file(&bytes),
            Err(SnapDecodeError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn empty_file_is_empty() {
        assert_eq!(decode_snapshot_file(&[]), Err(SnapDecodeError::Empty));
    }
}
