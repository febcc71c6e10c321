//! The frame around each WAL record: an 8-byte little-endian length word,
//! the encoded `walpb.Record`, and zero padding to an 8-byte boundary.
//!
//! Owns: the length word's encoding. The lower 56 bits hold the record
//! length; when padding is needed the top byte is `0x80 | pad`.
//! Guarantees: [`FrameSize::from_length_word`] accepts exactly the words that
//! [`FrameSize::length_word`] produces (etcd writes only those), so a damaged
//! top byte is never mistaken for a frame.
//! May not touch: record contents, CRCs, files.

/// Bytes of the length word in front of every record.
pub const LENGTH_WORD_BYTES: usize = 8;

/// Frames start and end on multiples of this many bytes.
pub const FRAME_ALIGNMENT_BYTES: usize = 8;

const RECORD_BYTES_MASK: u64 = (1 << 56) - 1;
const PADDED_FLAG: u64 = 0x80;

/// The size of one frame: its record and the padding after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSize {
    /// Length of the encoded `walpb.Record`.
    pub record_bytes: usize,
    /// Zero bytes after the record that align the frame to 8 bytes (0..=7).
    pub pad_bytes: usize,
}

impl FrameSize {
    /// The frame for a record of `record_bytes` bytes.
    pub fn for_record(record_bytes: usize) -> FrameSize {
        let pad_bytes =
            (FRAME_ALIGNMENT_BYTES - record_bytes % FRAME_ALIGNMENT_BYTES) % FRAME_ALIGNMENT_BYTES;
        FrameSize {
            record_bytes,
            pad_bytes,
        }
    }

    /// Length word, record and padding together.
    pub fn total_bytes(&self) -> usize {
        LENGTH_WORD_BYTES + self.record_bytes + self.pad_bytes
    }

    /// The length word etcd writes for this frame.
    pub fn length_word(&self) -> u64 {
        let mut word = self.record_bytes as u64;
        if self.pad_bytes != 0 {
            word |= (PADDED_FLAG | self.pad_bytes as u64) << 56;
        }
        word
    }

    /// The frame a length word describes, or `None` when the word is zero or
    /// not in the canonical form a writer produces.
    pub fn from_length_word(word: u64) -> Option<FrameSize> {
        let record_bytes = usize::try_from(word & RECORD_BYTES_MASK).ok()?;
        if record_bytes == 0 {
            return None;
        }
        let size = FrameSize::for_record(record_bytes);
        (size.length_word() == word).then_some(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpadded_record_has_plain_length() {
        let size = FrameSize::for_record(16);
        assert_eq!(size.pad_bytes, 0);
        assert_eq!(size.length_word(), 16);
        assert_eq!(size.total_bytes(), 24);
    }

    #[test]
    fn padded_record_sets_top_byte() {
        let size = FrameSize::for_record(13);
        assert_eq!(size.pad_bytes, 3);
        assert_eq!(size.length_word(), (0x83u64 << 56) | 13);
        assert_eq!(size.total_bytes(), 24);
    }

    #[test]
    fn canonical_words_round_trip() {
        for record_bytes in 1..100 {
            let size = FrameSize::for_record(record_bytes);
            assert_eq!(FrameSize::from_length_word(size.length_word()), Some(size));
        }
    }

    #[test]
    fn non_canonical_words_are_rejected() {
        assert_eq!(FrameSize::from_length_word(0), None);
        // Padding flag without padding, wrong pad count, stray top bits.
        assert_eq!(FrameSize::from_length_word((0x80u64 << 56) | 16), None);
        assert_eq!(FrameSize::from_length_word((0x82u64 << 56) | 13), None);
        assert_eq!(FrameSize::from_length_word((0x03u64 << 56) | 13), None);
        assert_eq!(FrameSize::from_length_word((0x01u64 << 56) | 16), None);
    }
}
