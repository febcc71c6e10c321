//! Repairing a torn tail: truncating the last segment at its last valid
//! frame.
//!
//! Owns: the repair procedure. It decodes the last segment on its own (as
//! etcd's repair does); if it ends in a torn write, it copies the segment to
//! `<name>.broken`, zeroes everything from the torn frame on (keeping the
//! file's length, so it stays preallocated) and syncs.
//! Guarantees: only a torn tail is repaired; corruption is returned as the
//! error and nothing is changed. The `.broken` copy is durable before the
//! segment is modified.
//! May not touch: any segment but the last; anything before the torn frame.

use super::decoder::{Decoded, SegmentDecoder, SegmentRole};
use super::error::WalError;
use super::fs;
use super::scan::first_chain;
use super::segment_name::{list_segments, segment_path};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of the copy of a segment kept by [`repair`].
pub const BROKEN_SUFFIX: &str = ".broken";

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The last segment ends cleanly; nothing changed.
    NothingToRepair,
    /// The last segment was cut at `offset`.
    Truncated {
        /// The repaired segment.
        path: PathBuf,
        /// Where its valid data now ends.
        offset: u64,
        /// The copy of the segment as it was.
        broken_copy: PathBuf,
    },
}

/// Repairs a torn tail of the WAL in `dir`.
pub fn repair(dir: &Path) -> Result<RepairOutcome, WalError> {
    let segments = list_segments(dir)?;
    let Some(last) = segments.last() else {
        return Err(WalError::BadDirectory {
            dir: dir.to_path_buf(),
            reason: "no WAL segments".to_string(),
        });
    };
    let path = segment_path(dir, last);
    let bytes = std::fs::read(&path).map_err(|e| WalError::io(&path, e))?;
    let mut decoder = SegmentDecoder::new(&bytes, first_chain(last), SegmentRole::Last);
    let torn_offset = loop {
        match decoder.next_record() {
            Ok(Decoded::Record(_)) => continue,
            Ok(Decoded::End { .. }) => return Ok(RepairOutcome::NothingToRepair),
            Ok(Decoded::TornTail { offset, .. }) => break offset,
            Err(e) => return Err(WalError::from_decode(&path, e)),
        }
    };
    let broken_copy = broken_copy_path(&path);
    keep_copy(&path, &broken_copy).map_err(|e| WalError::io(&broken_copy, e))?;
    cut_at(&path, torn_offset, bytes.len() as u64).map_err(|e| WalError::io(&path, e))?;
    fs::sync_dir(dir).map_err(|e| WalError::io(dir, e))?;
    Ok(RepairOutcome::Truncated {
        path,
        offset: torn_offset,
        broken_copy,
    })
}

fn broken_copy_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(BROKEN_SUFFIX);
    PathBuf::from(name)
}

fn keep_copy(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::copy(from, to)?;
    File::open(to)?.sync_all()
}

fn cut_at(path: &Path, offset: u64, file_len: u64) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    fs::try_lock_exclusive(&file)?;
    fs::zero_from(&file, offset, file_len)?;
    file.sync_all()
}
