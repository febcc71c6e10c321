//! Leases: the replicated table of granted leases ([`LeaseTable`]) and each
//! member's own clock of when they expire ([`LeaseDeadlines`]).
//!
//! Owns: which leases exist, their granted TTL and the raft index of
//! their last grant or renewal (replicated, part of the store's state and
//! snapshot), and the per-member deadlines. Guarantees:
//! - the table changes only when a command applies, by the command and
//!   its raft index alone (no clock), so every member holds the same
//!   table;
//! - the deadlines are not replicated and never decide an outcome: a
//!   member sets a lease's deadline to now + TTL when it applies the
//!   lease's grant or renewal, and drops it when it applies its
//!   revocation or expiry. Only the leader reads them, to propose an
//!   expiry (`super::lessor`), and the expiry names the renewal it saw
//!   (`renewed_at_index`), so a renewal committed before it wins on every
//!   member alike. Since every member sets its deadlines as it applies
//!   renewals, a new leader already has them: the remaining TTLs survive
//!   a change of leader without etcd's checkpoints;
//! - after a snapshot restore (or a restart, which restores), every lease
//!   gets now + its full TTL: a restart extends a lease, never shortens
//!   it (etcd does the same when a member becomes leader).
//!
//! May not touch: keys (the MVCC store's lease index says which keys a
//! lease carries), raft.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The shortest TTL granted: a shorter request gets this one, as etcd
/// raises a TTL below its minimum (1.5 × its default election timeout,
/// rounded up to whole seconds).
pub const MIN_TTL_SECONDS: i64 = 2;

/// The longest TTL granted (etcd's `MaxLeaseTTL`); a longer request is
/// refused with "etcdserver: too large lease TTL".
pub const MAX_TTL_SECONDS: i64 = 9_000_000_000;

/// The TTL granted for a request of `requested` seconds (etcd's rule: a
/// TTL below the minimum is raised to it), or `None` when it is too
/// large.
pub fn granted_ttl(requested: i64) -> Option<i64> {
    (requested <= MAX_TTL_SECONDS).then(|| requested.max(MIN_TTL_SECONDS))
}

/// One granted lease, as every member records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The TTL granted, in seconds.
    pub granted_ttl_seconds: i64,
    /// The raft index of the grant or of the last renewal.
    pub last_renew_index: u64,
}

/// The replicated leases: id to record, ordered (snapshots and listings
/// are deterministic).
pub type LeaseTable = BTreeMap<i64, LeaseRecord>;

/// When a lease expires on this member, and the renewal that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant the lease expires unless renewed.
    pub at: Instant,
    /// The raft index of the grant or renewal that set it.
    pub renewed_at_index: u64,
}

/// This member's lease deadlines, shared between the store (which sets
/// them as it applies) and the lessor and the lease service (which read
/// them); cheap to clone. Take it with `EtcdStore::lease_deadlines` before
/// the store moves into the node.
#[derive(Debug, Clone, Default)]
pub struct LeaseDeadlines(Arc<Mutex<HashMap<i64, Deadline>>>);

impl LeaseDeadlines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Deadline>> {
        // A panic while holding the lock leaves a map that is still
        // consistent (every operation is one insert or remove).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lease `id` was granted or renewed at raft index `index`: it expires
    /// `ttl_seconds` from now.
    pub(crate) fn renewed(&self, id: i64, ttl_seconds: i64, index: u64) {
        let at = Instant::now() + Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0));
        self.lock().insert(
            id,
            Deadline {
                at,
                renewed_at_index: index,
            },
        );
    }

    /// Lease `id` is gone.
    pub(crate) fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// Every lease of `table` expires its full TTL from now (after a
    /// restore); deadlines of leases not in it are dropped.
    pub(crate) fn reset(&self, table: &LeaseTable) {
        let mut deadlines = self.lock();
        deadlines.clear();
        let now = Instant::now();
        for (&id, record) in table {
            let ttl = Duration::from_secs(u64::try_from(record.granted_ttl_seconds).unwrap_or(0));
            deadlines.insert(
                id,
                Deadline {
                    at: now + ttl,
                    renewed_at_index: record.last_renew_index,
                },
            );
        }
    }

    /// The deadline of lease `id`, if this member knows the lease.
    pub fn get(&self, id: i64) -> Option<Deadline> {
        self.lock().get(&id).copied()
    }

    /// The leases whose deadline is at or before `now`, as (id,
    /// renewed_at_index), by id.
    pub fn expired(&self, now: Instant) -> Vec<(i64, u64)> {
        let mut expired: Vec<(i64, u64)> = self
            .lock()
            .iter()
            .filter(|(_, deadline)| deadline.at <= now)
            .map(|(&id, deadline)| (id, deadline.renewed_at_index))
            .collect();
        expired.sort_unstable();
        expired
    }

    /// The whole seconds left of lease `id` at `now` (0 once past its
    /// deadline, truncated as etcd reports them), if this member knows the
    /// lease.
    pub fn remaining_seconds(&self, id: i64, now: Instant) -> Option<i64> {
        self.get(id).map(|deadline| {
            i64::try_from(deadline.at.saturating_duration_since(now).as_secs()).unwrap_or(i64::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_follow_etcds_rules() {
        assert_eq!(granted_ttl(0), Some(MIN_TTL_SECONDS));
        assert_eq!(granted_ttl(-5), Some(MIN_TTL_SECONDS));
        assert_eq!(granted_ttl(1), Some(MIN_TTL_SECONDS));
        assert_eq!(granted_ttl(60), Some(60));
        assert_eq!(granted_ttl(MAX_TTL_SECONDS), Some(MAX_TTL_SECONDS));
        assert_eq!(granted_ttl(MAX_TTL_SECONDS + 1), None);
    }

    #[test]
    fn deadlines_expire_renew_and_reset() {
        let deadlines = LeaseDeadlines::default();
        deadlines.renewed(1, 10, 5);
        deadlines.renewed(2, 100, 6);
        let now = Instant::now();
        assert_eq!(deadlines.expired(now), Vec::new());
        let later = now + Duration::from_secs(50);
        assert_eq!(deadlines.expired(later), vec![(1, 5)]);
        assert_eq!(deadlines.remaining_seconds(1, later), Some(0));
        let left = deadlines.remaining_seconds(2, now).expect("known");
        assert!((99..=100).contains(&left), "{left}");
        deadlines.remove(1);
        assert_eq!(deadlines.get(1), None);
        let mut table = LeaseTable::new();
        table.insert(
            3,
            LeaseRecord {
                granted_ttl_seconds: 7,
                last_renew_index: 9,
            },
        );
        deadlines.reset(&table);
        assert_eq!(deadlines.get(2), None, "not in the restored table");
        assert_eq!(deadlines.get(3).map(|d| d.renewed_at_index), Some(9));
    }
}
