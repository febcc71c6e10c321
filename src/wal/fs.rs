//! The few file-system operations the WAL and the snapshotter need beyond
//! `std`: directory fsync, preallocation, advisory locks, page-chunked writes.
//!
//! Owns: these syscalls and their fallbacks (preallocation falls back to
//! extending the file where `fallocate` is not supported).
//! Guarantees: each function either did all of its work or returns the
//! `io::Error`; nothing is retried (a failed sync must not be retried).
//! May not touch: file formats.

use super::page_chunks::page_chunks;
use rustix::fs::{FallocateFlags, FlockOperation};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt, OpenOptionsExt as _};
use std::path::Path;

/// Permissions of segment files: owner only, as etcd's.
pub const SEGMENT_FILE_MODE: u32 = 0o600;

/// Permissions of WAL and snapshot directories: owner only, as etcd's.
pub const WAL_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with [`WAL_DIR_MODE`].
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(WAL_DIR_MODE)
        .create(dir)
}

/// Creates (or truncates) the file at `path` for writing, owner only
/// ([`SEGMENT_FILE_MODE`]): snapshot and state files, like segments, hold
/// the node's data.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(SEGMENT_FILE_MODE)
        .open(path)
}

/// Makes the directory entries of `dir` (creations, renames, removals)
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `file` at least `size_bytes` long with allocated, zero-filled
/// blocks, so later writes do not change its size.
pub fn preallocate(file: &File, size_bytes: u64) -> io::Result<()> {
    if file.metadata()?.len() >= size_bytes {
        return Ok(());
    }
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, size_bytes) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => file.set_len(size_bytes),
        Err(e) => Err(e.into()),
    }
}

/// Takes an exclusive advisory lock on `file` without waiting; fails with
/// `WouldBlock` when another open file holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<()> {
    rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from)
}

/// Writes `bytes` at `file_offset` in page-aligned chunks.
pub fn write_all_at_in_pages(file: &File, file_offset: u64, bytes: &[u8]) -> io::Result<()> {
    for chunk in page_chunks(file_offset, bytes.len()) {
        file.write_all_at(&bytes[chunk.clone()], file_offset + chunk.start as u64)?;
    }
    Ok(())
}

/// Cuts `file` at `offset` and zero-fills it back to `size_bytes`
/// (preallocated), so no stale bytes follow the valid data.
pub fn zero_from(file: &File, offset: u64, size_bytes: u64) -> io::Result<()> {
    file.set_len(offset)?;
    preallocate(file, size_bytes)
}
