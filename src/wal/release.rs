//! The snapshot rules of the WAL, kept once for every writer (the
//! persistence actor in production, the `DurableStorage` façade at boot and
//! in tests):
//!
//! 1. **A marker only after its file.** [`Wal::encode_snapshot_marker`] and
//!    [`Wal::save_snapshot`] take a [`SnapshotMarker`], and only the
//!    snapshot file save (`persist::snapshot_file`, the one implementation
//!    of temporary file, fsync, rename, directory fsync) makes one, once the
//!    file is durable under its name. Code that writes a marker without a
//!    file (WAL tests) says so with [`SnapshotMarker::without_snapshot_file`].
//! 2. **Release only once a restart would use the snapshot.** The segments
//!    before a snapshot are released ([`Wal::release_if_committed`]) only
//!    with a [`SyncPoint`] taken when a sync that has since succeeded
//!    started, and only if that sync covered both the snapshot's marker and
//!    a hard state committing its index. (etcd releases right after the
//!    marker; a crash before the commit reaches the WAL then makes the
//!    restart fall back to an older snapshot whose segments a purge may
//!    already have removed. A marker encoded after a sync started is not
//!    covered by it, however high that sync's commit.)
//!
//! Owns: [`SnapshotMarker`], [`SyncPoint`] and the pending release the
//! [`Wal`] keeps.
//! Guarantees: the rules above; releasing is idempotent and never releases
//! the tail segment (see [`Wal::release_if_committed`]).
//! May not touch: file IO (the WAL does it), snapshot files.
//!
//! [`Wal`]: super::Wal
//! [`Wal::encode_snapshot_marker`]: super::Wal::encode_snapshot_marker
//! [`Wal::save_snapshot`]: super::Wal::save_snapshot
//! [`Wal::release_if_committed`]: super::Wal::release_if_committed

use crate::raftpb::{Snapshot, walpb};

/// A snapshot marker that may be written: its snapshot file is durable (or
/// the writer said explicitly that there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMarker {
    record: walpb::Snapshot,
}

impl SnapshotMarker {
    /// The marker of `snapshot`, whose file the caller has just made durable
    /// under its final name (file and directory synced). Called only by
    /// `persist::snapshot_file`, at the end of that sequence.
    pub(crate) fn for_durable_file(snapshot: &Snapshot) -> SnapshotMarker {
        SnapshotMarker {
            record: walpb::Snapshot {
                index: snapshot.metadata.index,
                term: snapshot.metadata.term,
                conf_state: Some(snapshot.metadata.conf_state.clone()),
            },
        }
    }

    /// A marker with no snapshot file behind it, for tests of the WAL alone
    /// (a restart ignores a marker whose file is missing).
    pub fn without_snapshot_file(record: walpb::Snapshot) -> SnapshotMarker {
        SnapshotMarker { record }
    }

    /// The snapshot's index.
    pub fn index(&self) -> u64 {
        self.record.index
    }

    /// The snapshot's term.
    pub fn term(&self) -> u64 {
        self.record.term
    }

    /// The record as the WAL stores it.
    pub fn record(&self) -> &walpb::Snapshot {
        &self.record
    }
}

/// What a sync of everything encoded so far makes durable: the commit index
/// of the last hard state and the newest snapshot marker not yet released.
/// Taken with [`Wal::sync_point`](super::Wal::sync_point) once every encoded
/// byte is written, just before the sync starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncPoint {
    commit: u64,
    newest_marker: Option<u64>,
}

impl SyncPoint {
    /// The commit index the sync makes durable.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// The newest unreleased snapshot marker the sync makes durable.
    pub fn newest_marker(&self) -> Option<u64> {
        self.newest_marker
    }

    /// The snapshot index whose older segments may be released once the sync
    /// succeeded: the marker's, if the commit covers it.
    pub fn releasable(&self) -> Option<u64> {
        self.newest_marker.filter(|&index| self.commit >= index)
    }
}

/// The newest snapshot marker encoded whose segments are not released yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingRelease {
    newest_marker: Option<u64>,
}

impl PendingRelease {
    /// A marker at `index` was encoded.
    pub(crate) fn marker_encoded(&mut self, index: u64) {
        self.newest_marker = Some(self.newest_marker.map_or(index, |m| m.max(index)));
    }

    /// What a sync started now covers, with the WAL's `commit`.
    pub(crate) fn sync_point(&self, commit: u64) -> SyncPoint {
        SyncPoint {
            commit,
            newest_marker: self.newest_marker,
        }
    }

    /// The index to release to after the sync of `synced` succeeded, if any;
    /// forgets the pending marker it covers (a newer one stays pending).
    pub(crate) fn take_releasable(&mut self, synced: SyncPoint) -> Option<u64> {
        let pending = self.newest_marker?;
        let index = synced.releasable()?;
        if pending <= index {
            self.newest_marker = None;
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_released_only_with_a_commit_covering_it() {
        let mut pending = PendingRelease::default();
        assert_eq!(pending.sync_point(100).releasable(), None, "no marker");
        pending.marker_encoded(50);
        let uncommitted = pending.sync_point(40);
        assert_eq!(pending.take_releasable(uncommitted), None);
        let committed = pending.sync_point(50);
        assert_eq!(pending.take_releasable(committed), Some(50));
        assert_eq!(pending.take_releasable(committed), None, "released once");
    }

    #[test]
    fn a_marker_encoded_after_the_sync_started_is_not_covered_by_it() {
        let mut pending = PendingRelease::default();
        let before_marker = pending.sync_point(100);
        pending.marker_encoded(50);
        assert_eq!(pending.take_releasable(before_marker), None);
        assert_eq!(pending.sync_point(100).releasable(), Some(50));
    }

    #[test]
    fn a_newer_marker_stays_pending_after_an_older_one_is_released() {
        let mut pending = PendingRelease::default();
        pending.marker_encoded(50);
        let first = pending.sync_point(60);
        pending.marker_encoded(80);
        assert_eq!(pending.take_releasable(first), Some(50));
        assert_eq!(pending.sync_point(70).releasable(), None);
        assert_eq!(pending.take_releasable(pending.sync_point(80)), Some(80));
        assert_eq!(pending.sync_point(1000).releasable(), None);
    }
}
