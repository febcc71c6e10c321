//! Snapshot file names: `{term:016x}-{index:016x}.snap`.
//!
//! Owns: naming and parsing.
//! Guarantees: other names are ignored, never misparsed; ordering by
//! (term, index) is the order of the names, oldest first.
//! May not touch: file contents.

/// File suffix of snapshot files.
pub const SNAP_SUFFIX: &str = ".snap";

/// The identity of a snapshot file, as encoded in its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapName {
    /// The term of the snapshot's last entry.
    pub term: u64,
    /// The index of the snapshot's last entry.
    pub index: u64,
}

impl SnapName {
    /// The file name, `{term:016x}-{index:016x}.snap`.
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{SNAP_SUFFIX}", self.term, self.index)
    }

    /// The snapshot a file name stands for, `None` if it is not one.
    pub fn parse(file_name: &str) -> Option<SnapName> {
        let stem = file_name.strip_suffix(SNAP_SUFFIX)?;
        let (term, index) = stem.split_once('-')?;
        if term.len() != 16 || index.len() != 16 {
            return None;
        }
        Some(SnapName {
            term: u64::from_str_radix(term, 16).ok()?,
            index: u64::from_str_radix(index, 16).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = SnapName {
            term: 2,
            index: 0x16,
        };
        assert_eq!(name.file_name(), "0000000000000002-0000000000000016.snap");
        assert_eq!(SnapName::parse(&name.file_name()), Some(name));
        assert_eq!(
            SnapName::parse("0000000000000002-0000000000000016.snap.broken"),
            None
        );
        assert_eq!(SnapName::parse("db"), None);
    }
}
