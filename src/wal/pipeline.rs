//! The next segment file, prepared in the background before it is needed.
//!
//! Owns: `{n % 2}.tmp` files in the WAL directory, created, locked and
//! preallocated by a helper thread so that a cut only writes a header and
//! renames (etcd's file pipeline).
//! Guarantees: at most one preparation runs at a time; dropping the pipeline
//! waits for it and removes the unused file, so no helper thread outlives
//! the WAL that started it.
//! May not touch: segments that have a `.wal` name.

use super::fs;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Suffix of prepared, not yet named segment files.
pub const PREPARED_SUFFIX: &str = ".tmp";

/// A locked, preallocated, empty file waiting to become a segment.
#[derive(Debug)]
pub(crate) struct PreparedSegment {
    /// Where the file is now.
    pub path: PathBuf,
    /// The open, locked file.
    pub file: File,
}

/// Keeps one prepared segment ready.
#[derive(Debug)]
pub(crate) struct SegmentPipeline {
    dir: PathBuf,
    segment_size_bytes: u64,
    prepared_count: u64,
    pending: Option<JoinHandle<io::Result<PreparedSegment>>>,
}

impl SegmentPipeline {
    /// Starts preparing the first file at once.
    pub fn start(dir: &Path, segment_size_bytes: u64) -> SegmentPipeline {
        let mut pipeline = SegmentPipeline {
            dir: dir.to_path_buf(),
            segment_size_bytes,
            prepared_count: 0,
            pending: None,
        };
        pipeline.spawn_next();
        pipeline
    }

    /// The prepared file (waiting for it if needed); starts the next one.
    pub fn take(&mut self) -> io::Result<PreparedSegment> {
        let prepared = match self.pending.take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("segment preparation thread panicked"))),
            None => prepare(&self.next_path(), self.segment_size_bytes),
        };
        self.spawn_next();
        prepared
    }

    fn next_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}{PREPARED_SUFFIX}", self.prepared_count % 2))
    }

    fn spawn_next(&mut self) {
        let path = self.next_path();
        self.prepared_count += 1;
        let size = self.segment_size_bytes;
        self.pending = Some(std::thread::spawn(move || prepare(&path, size)));
    }
}

impl Drop for SegmentPipeline {
    fn drop(&mut self) {
        if let Some(handle) = self.pending.take()
            && let Ok(Ok(prepared)) = handle.join()
        {
            // Unused; if removing fails, opening the WAL again removes it.
            let _ = std::fs::remove_file(&prepared.path);
        }
    }
}

fn prepare(path: &Path, size_bytes: u64) -> io::Result<PreparedSegment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(fs::SEGMENT_FILE_MODE)
        .open(path)?;
    fs::try_lock_exclusive(&file)?;
    fs::preallocate(&file, size_bytes)?;
    Ok(PreparedSegment {
        path: path.to_path_buf(),
        file,
    })
}
