//! The segment being appended to: its file, how much of it is written, and
//! the encoded frames not yet written.
//!
//! Owns: the write position of the tail segment and the buffer between the
//! encoder and the file.
//! Guarantees: bytes reach the file in order at their own offsets, in
//! page-aligned chunks; `sync` returns only after `fdatasync` succeeded.
//! May not touch: the CRC chain or record contents (the encoder owns them),
//! other segments.

use super::fs;
use super::page_chunks::{WRITE_CHUNK_BYTES, full_pages_len};
use super::segment_name::SegmentName;
use std::fs::File;
use std::io;
use std::path::PathBuf;

/// The open tail segment.
#[derive(Debug)]
pub(crate) struct TailSegment {
    /// The segment's name.
    pub name: SegmentName,
    /// The segment's path.
    pub path: PathBuf,
    file: File,
    written_bytes: u64,
    pending: Vec<u8>,
}

impl TailSegment {
    /// A tail whose valid data ends at `written_bytes` in `file`.
    pub fn new(name: SegmentName, path: PathBuf, file: File, written_bytes: u64) -> TailSegment {
        TailSegment {
            name,
            path,
            file,
            written_bytes,
            pending: Vec::new(),
        }
    }

    /// Offset where the next frame goes: written plus buffered bytes.
    pub fn offset(&self) -> u64 {
        self.written_bytes + self.pending.len() as u64
    }

    /// The buffer the encoder appends frames to.
    pub fn pending_mut(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Bytes already handed to the file (or to a caller's write).
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// The open segment file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Hands the buffered bytes and their offset to a caller that writes
    /// them itself; they count as written from now on.
    pub fn take_pending(&mut self) -> (u64, Vec<u8>) {
        let offset = self.written_bytes;
        let bytes = std::mem::take(&mut self.pending);
        self.written_bytes += bytes.len() as u64;
        (offset, bytes)
    }

    /// Reuses `buffer`'s capacity for the next frames when nothing is
    /// buffered.
    pub fn reuse_buffer(&mut self, mut buffer: Vec<u8>) {
        if self.pending.is_empty() && buffer.capacity() > self.pending.capacity() {
            buffer.clear();
            self.pending = buffer;
        }
    }

    /// Writes the buffered whole pages once enough have gathered, keeping a
    /// partial last page buffered (etcd's page writer does the same).
    pub fn write_full_pages_if_large(&mut self) -> io::Result<()> {
        if (self.pending.len() as u64) < WRITE_CHUNK_BYTES {
            return Ok(());
        }
        let len = full_pages_len(self.written_bytes, self.pending.len());
        self.write_prefix(len)
    }

    /// Writes every buffered byte.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_prefix(self.pending.len())
    }

    /// Writes every buffered byte and waits for `fdatasync`.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    /// Writes every buffered byte, cuts the file after them (dropping the
    /// preallocated rest) and syncs: the segment is finished.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.set_len(self.written_bytes)?;
        self.file.sync_data()
    }

    fn write_prefix(&mut self, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        fs::write_all_at_in_pages(&self.file, self.written_bytes, &self.pending[..len])?;
        self.written_bytes += len as u64;
        self.pending.drain(..len);
        Ok(())
    }
}
