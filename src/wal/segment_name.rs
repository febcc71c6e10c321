//! WAL segment file names: `{seq:016x}-{first_index:016x}.wal`.
//!
//! Owns: naming, parsing, listing a directory's segments in order, and
//! choosing the segments to read from a snapshot index on (etcd's rule: the
//! last segment whose first index is at or below it, and every later one,
//! with no gap in sequence numbers).
//! Guarantees: names not of this form are ignored, never misparsed.
//! May not touch: segment contents.

use super::error::WalError;
use std::path::{Path, PathBuf};

/// File suffix of WAL segments.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The identity of one segment, as encoded in its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    /// Position in the WAL: 0 for the first segment, one more for each cut.
    pub seq: u64,
    /// The index of the first entry expected in the segment (one past the
    /// last entry written before the cut).
    pub first_index: u64,
}

impl SegmentName {
    /// The file name, `{seq:016x}-{first_index:016x}.wal`.
    pub fn file_name(&self) -> String {
        format!(
            "{:016x}-{:016x}{SEGMENT_SUFFIX}",
            self.seq, self.first_index
        )
    }

    /// The segment a file name stands for, `None` if it is not a segment name.
    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let stem = file_name.strip_suffix(SEGMENT_SUFFIX)?;
        let (seq, first_index) = stem.split_once('-')?;
        if seq.len() != 16 || first_index.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(first_index, 16).ok()?,
        })
    }
}

/// The segments in `dir`, ordered by sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentName>, WalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str().and_then(SegmentName::parse) {
            segments.push(name);
        }
    }
    segments.sort();
    Ok(segments)
}

/// The path of `segment` in `dir`.
pub fn segment_path(dir: &Path, segment: &SegmentName) -> PathBuf {
    dir.join(segment.file_name())
}

/// The segments to read for a snapshot at `index`: from the last one whose
/// first index is at or below `index`, to the newest.
pub fn segments_from_index(
    dir: &Path,
    segments: &[SegmentName],
    index: u64,
) -> Result<Vec<SegmentName>, WalError> {
    if segments.is_empty() {
        return Err(WalError::BadDirectory {
            dir: dir.to_path_buf(),
            reason: "no WAL segments".to_string(),
        });
    }
    let Some(start) = segments.iter().rposition(|s| s.first_index <= index) else {
        return Err(WalError::BadDirectory {
            dir: dir.to_path_buf(),
            reason: format!(
                "no segment covers index {index} (the oldest starts at {})",
                segments[0].first_index
            ),
        });
    };
    let selected = segments[start..].to_vec();
    check_contiguous(dir, &selected)?;
    Ok(selected)
}

/// Fails when sequence numbers skip, which means a segment is missing.
pub fn check_contiguous(dir: &Path, segments: &[SegmentName]) -> Result<(), WalError> {
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(WalError::BadDirectory {
                dir: dir.to_path_buf(),
                reason: format!(
                    "segment {} follows {}: a segment is missing",
                    pair[1].file_name(),
                    pair[0].file_name()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = SegmentName {
            seq: 3,
            first_index: 0x1f,
        };
        assert_eq!(name.file_name(), "0000000000000003-000000000000001f.wal");
        assert_eq!(SegmentName::parse(&name.file_name()), Some(name));
    }

    #[test]
    fn other_names_are_not_segments() {
        for name in [
            "0.tmp",
            "0000000000000000-0000000000000000.wal.broken",
            "000000000000000-0000000000000000.wal",
            "000000000000000g-0000000000000000.wal",
        ] {
            assert_eq!(SegmentName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn selection_starts_at_the_segment_covering_the_index() {
        let segments: Vec<_> = [(0, 0), (1, 10), (2, 20)]
            .iter()
            .map(|&(seq, first_index)| SegmentName { seq, first_index })
            .collect();
        let dir = Path::new("/wal");
        let from = |index| segments_from_index(dir, &segments, index).map(|s| s[0].seq);
        assert_eq!(from(0).ok(), Some(0));
        assert_eq!(from(10).ok(), Some(1));
        assert_eq!(from(19).ok(), Some(1));
        assert_eq!(from(25).ok(), Some(2));
    }
}
