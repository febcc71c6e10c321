//! Compaction: forgetting history at and below a revision. For each key the
//! newest version at or below it stays (unless it is a tombstone: then the
//! key's older generation goes entirely), and every newer version stays;
//! reads below the compacted revision fail from then on.

use super::MvccStore;
use super::error::MvccError;
use super::history::KeyHistory;

impl MvccStore {
    /// Compacts at `revision`; returns the store's current revision (for
    /// the response header). A revision at or below the compacted one is
    /// `Compacted`, above the current one `FutureRevision` (etcd's order of
    /// checks).
    pub fn compact(&mut self, revision: i64) -> Result<i64, MvccError> {
        if revision <= self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        if revision > self.current {
            return Err(MvccError::FutureRevision);
        }
        let mut freed = 0;
        self.keys.retain(|key, history| {
            freed += compact_key(key, history, revision);
            !history.records().is_empty()
        });
        self.size -= freed;
        self.compacted = revision;
        Ok(self.current)
    }
}

/// Drops the versions of one key that compaction at `revision` forgets;
/// returns their size. Leaves a shared history untouched when nothing of it
/// goes (no copy for a snapshot view's sake).
fn compact_key(key: &[u8], history: &mut KeyHistory, revision: i64) -> u64 {
    let records = history.records();
    let at_or_below = records.partition_point(|r| r.main <= revision);
    let Some(newest_old) = at_or_below.checked_sub(1) else {
        return 0;
    };
    let drop = newest_old + usize::from(records[newest_old].tombstone);
    if drop == 0 {
        return 0;
    }
    history
        .records_mut()
        .drain(..drop)
        .map(|r| r.size(key))
        .sum()
}
