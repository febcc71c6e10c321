//! How a buffer is cut into writes at page-aligned file offsets.
//!
//! Owns: the rule that every write but the last of a buffer ends on a
//! 4096-byte page boundary of the file and is at most 128 KiB, as etcd's page
//! writer does, so that a write torn by a crash stops at a sector boundary.
//! Guarantees: pure; the chunks cover the buffer exactly, in order.
//! May not touch: files.

use std::ops::Range;

/// Page size writes are aligned to.
pub const PAGE_BYTES: u64 = 4096;

/// Largest single write (a multiple of [`PAGE_BYTES`]).
pub const WRITE_CHUNK_BYTES: u64 = 128 * 1024;

/// Ranges of a `len`-byte buffer destined for `file_offset`, one per write.
pub fn page_chunks(file_offset: u64, len: usize) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    while start < len {
        let file_position = file_offset + start as u64;
        let chunk_end_in_file = (file_position + WRITE_CHUNK_BYTES) / PAGE_BYTES * PAGE_BYTES;
        let end = (chunk_end_in_file - file_offset).min(len as u64) as usize;
        chunks.push(start..end);
        start = end;
    }
    chunks
}

/// The length of the longest prefix of a buffer destined for `file_offset`
/// that ends on a page boundary.
pub fn full_pages_len(file_offset: u64, len: usize) -> usize {
    let end_in_file = (file_offset + len as u64) / PAGE_BYTES * PAGE_BYTES;
    end_in_file.saturating_sub(file_offset) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_buffer_and_end_on_pages() {
        for (offset, len) in [
            (0u64, 0usize),
            (0, 10),
            (100, 300_000),
            (4096, 8192),
            (5, 4091),
        ] {
            let chunks = page_chunks(offset, len);
            let mut expected_start = 0;
            for (i, chunk) in chunks.iter().enumerate() {
                assert_eq!(chunk.start, expected_start);
                assert!(chunk.end > chunk.start);
                assert!((chunk.len() as u64) <= WRITE_CHUNK_BYTES);
                if i + 1 < chunks.len() {
                    assert_eq!((offset + chunk.end as u64) % PAGE_BYTES, 0);
                }
                expected_start = chunk.end;
            }
            assert_eq!(expected_start, len);
        }
    }

    #[test]
    fn full_pages_prefix() {
        assert_eq!(full_pages_len(0, 5000), 4096);
        assert_eq!(full_pages_len(100, 5000), 3996);
        assert_eq!(full_pages_len(100, 10), 0);
    }
}
