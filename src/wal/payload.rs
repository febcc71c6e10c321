//! Decoding the payload inside a record (`data`) and checking it is what a
//! writer produces.
//!
//! Owns: payload decoding for each record type, with the check that the
//! payload re-encodes to the same bytes. The CRC covers `data` but not the
//! record's type, so a flipped type bit can make an entry parse as a hard
//! state; byte-exact re-encoding (plus the range checks here) catches most of
//! those.
//! Guarantees: pure; errors are short descriptions for the caller to place.
//! May not touch: files, the CRC chain, ordering rules across records.

use crate::raftpb::{Entry, EntryType, HardState, Metadata, walpb};
use prost::Message;

/// Decodes an entry record's payload.
pub fn decode_entry(data: &[u8]) -> Result<Entry, String> {
    let entry = decode_exact::<Entry>(data, "entry")?;
    if EntryType::try_from(entry.entry_type).is_err() {
        return Err(format!("entry has unknown type {}", entry.entry_type));
    }
    Ok(entry)
}

/// Decodes a state record's payload.
pub fn decode_hard_state(data: &[u8]) -> Result<HardState, String> {
    decode_exact::<HardState>(data, "hard state")
}

/// Decodes a metadata record's payload.
pub fn decode_metadata(data: &[u8]) -> Result<Metadata, String> {
    decode_exact::<Metadata>(data, "metadata")
}

/// Decodes a snapshot record's payload.
pub fn decode_snapshot_marker(data: &[u8]) -> Result<walpb::Snapshot, String> {
    if data.is_empty() {
        // A writer always marshals index and term.
        return Err("empty snapshot record".to_string());
    }
    walpb::Snapshot::decode(data).map_err(|e| format!("undecodable snapshot record: {e}"))
}

fn decode_exact<M: Message + Default>(data: &[u8], what: &str) -> Result<M, String> {
    let message = M::decode(data).map_err(|e| format!("undecodable {what}: {e}"))?;
    let reencoded = message.encode_to_vec();
    // etcd marshals a non-nil empty `data` of an entry as `22 00`; prost
    // leaves an empty field out.
    let empty_bytes_field = data.len() == reencoded.len() + 2 && data.ends_with(&[0x22, 0x00]);
    if reencoded != data && !(empty_bytes_field && data.starts_with(&reencoded)) {
        return Err(format!("{what} is not encoded as a writer encodes it"));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_states_round_trip() {
        let entry = Entry::new(3, 9, b"x".to_vec());
        assert_eq!(decode_entry(&entry.encode_to_vec()), Ok(entry));
        let state = HardState {
            term: 3,
            vote: 1,
            commit: 9,
        };
        assert_eq!(decode_hard_state(&state.encode_to_vec()), Ok(state));
    }

    #[test]
    fn an_entry_is_not_a_hard_state() {
        let entry = Entry::new(3, 9, b"payload".to_vec());
        assert!(decode_hard_state(&entry.encode_to_vec()).is_err());
        let state = HardState {
            term: 3,
            vote: 1,
            commit: 9,
        };
        assert!(decode_metadata(&state.encode_to_vec()).is_err());
    }

    #[test]
    fn etcd_empty_data_field_is_accepted() {
        let entry = Entry::new(3, 9, Vec::new());
        let mut bytes = entry.encode_to_vec();
        bytes.extend_from_slice(&[0x22, 0x00]);
        assert_eq!(decode_entry(&bytes), Ok(entry));
    }
}
