//! When the apply side takes a snapshot: the cadence rule, as plain data
//! the apply core consults after each batch.
//!
//! A snapshot rewrites the whole state, so its cost grows with the state,
//! while what it buys (a log that can be compacted, a short WAL replay)
//! grows with the entries applied since the last one. Counting entries
//! alone (etcd's `--snapshot-count`) is right for a small state and wrong
//! for a large one: a 2 GiB state under 256-byte writes would be rewritten
//! every 2.5 MiB of log, ~800 bytes written per byte the clients wrote.
//!
//! Owns: the rule and what it counts (entries and entry bytes since the
//! last snapshot, the size of the last state file).
//! Guarantees, for a policy with `count > 0`:
//! - no snapshot before `count` entries applied since the last one;
//! - while the last state file is under [`LARGE_STATE_BYTES`], a snapshot
//!   is due every `count` entries, exactly as etcd's rule;
//! - for a larger state, a snapshot also waits until the entry bytes
//!   applied since reach the state file's size (so snapshots write at most
//!   about as many bytes as the clients did), but never beyond
//!   [`LOG_BYTES_HELD_MAX`] of entry bytes or
//!   [`COUNT_MULTIPLE_MAX`] × `count` entries — the log held in memory
//!   and replayed at boot stays bounded however large the state grows.
//!
//! `count == 0` means never (the node's setting for "no snapshots").
//! May not touch: the applier, files, the raft log — the core's and the
//! driver's.

/// A state file below this size is cheap to rewrite: the entry count alone
/// decides.
pub const LARGE_STATE_BYTES: u64 = 8 * 1024 * 1024;
/// However large the state, a snapshot is due once this many entry bytes
/// applied since the last one (and `count` entries).
pub const LOG_BYTES_HELD_MAX: u64 = 64 * 1024 * 1024;
/// However large the state, a snapshot is due after this many times
/// `count` entries (10 × etcd 3.6's 10,000 is etcd 3.5's 100,000).
pub const COUNT_MULTIPLE_MAX: u64 = 10;

/// The snapshot cadence and what it has counted since the last snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    /// Entries between snapshots at least (0: never snapshot).
    count: u64,
    /// Size of the last state file written or restored (0: unknown).
    state_bytes: u64,
    /// Entry payload bytes applied since the last snapshot.
    log_bytes_since: u64,
}

impl SnapshotPolicy {
    /// A policy snapshotting every `count` entries at least, whose last
    /// snapshot's state took `state_bytes` (0 when unknown or none).
    pub fn new(count: u64, state_bytes: u64) -> SnapshotPolicy {
        SnapshotPolicy {
            count,
            state_bytes,
            log_bytes_since: 0,
        }
    }

    /// Entries carrying `payload_bytes` applied.
    pub fn applied(&mut self, payload_bytes: u64) {
        self.log_bytes_since = self.log_bytes_since.saturating_add(payload_bytes);
    }

    /// Whether `entries_since` applied entries since the last snapshot
    /// make one due.
    pub fn due(&self, entries_since: u64) -> bool {
        if self.count == 0 || entries_since < self.count {
            return false;
        }
        if self.state_bytes < LARGE_STATE_BYTES {
            return true;
        }
        let bytes_wanted = self.state_bytes.min(LOG_BYTES_HELD_MAX);
        self.log_bytes_since >= bytes_wanted
            || entries_since >= self.count.saturating_mul(COUNT_MULTIPLE_MAX)
    }

    /// A snapshot was taken or restored: count from zero again.
    pub fn reset(&mut self) {
        self.log_bytes_since = 0;
    }

    /// The snapshot just taken (or restored) has a state of `state_bytes`.
    pub fn state_written(&mut self, state_bytes: u64) {
        self.state_bytes = state_bytes;
    }

    /// Whether snapshots are taken at all.
    pub fn enabled(&self) -> bool {
        self.count > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// Applies entries of `entry_bytes` each until a snapshot is due;
    /// the number applied (None: not within `limit`).
    fn entries_until_due(policy: &mut SnapshotPolicy, entry_bytes: u64, limit: u64) -> Option<u64> {
        for applied in 1..=limit {
            policy.applied(entry_bytes);
            if policy.due(applied) {
                return Some(applied);
            }
        }
        None
    }

    #[test]
    fn a_small_state_snapshots_every_count_entries_whatever_their_size() {
        for entry_bytes in [0, 1, 256, 4096, 1 << 20] {
            let mut policy = SnapshotPolicy::new(10_000, LARGE_STATE_BYTES - 1);
            assert_eq!(
                entries_until_due(&mut policy, entry_bytes, 1 << 20),
                Some(10_000)
            );
        }
        let mut unknown = SnapshotPolicy::new(100, 0);
        assert_eq!(entries_until_due(&mut unknown, 10, 1000), Some(100));
    }

    #[test]
    fn count_zero_never_snapshots() {
        let mut policy = SnapshotPolicy::new(0, 0);
        assert!(!policy.enabled());
        assert_eq!(entries_until_due(&mut policy, 4096, 1_000_000), None);
    }

    #[test]
    fn a_large_state_waits_for_as_many_log_bytes_as_the_state() {
        // 32 MiB of state, 256-byte entries: 131,072 entries hold 32 MiB,
        // beyond 10 × 10,000, so the count multiple ends the wait.
        let mut policy = SnapshotPolicy::new(10_000, 32 * MIB);
        assert_eq!(entries_until_due(&mut policy, 256, 1 << 20), Some(100_000));
        // 16 MiB of state, 4 KiB entries: 4,096 entries hold 16 MiB, but
        // never before the count.
        let mut policy = SnapshotPolicy::new(10_000, 16 * MIB);
        assert_eq!(entries_until_due(&mut policy, 4096, 1 << 20), Some(10_000));
        // 16 MiB of state, 1 KiB entries: 16,384 entries.
        let mut policy = SnapshotPolicy::new(10_000, 16 * MIB);
        assert_eq!(entries_until_due(&mut policy, 1024, 1 << 20), Some(16_384));
    }

    #[test]
    fn the_log_held_stays_bounded_however_large_the_state() {
        // A 2 GiB state under 4 KiB writes: due after 64 MiB of log.
        let mut policy = SnapshotPolicy::new(10_000, 2048 * MIB);
        assert_eq!(
            entries_until_due(&mut policy, 4096, 1 << 20),
            Some(LOG_BYTES_HELD_MAX / 4096)
        );
        // A growing state: each snapshot's state is larger, the wait stops
        // growing at the cap.
        let mut policy = SnapshotPolicy::new(10_000, 0);
        let mut state_bytes = 0;
        let mut waits = Vec::new();
        for _ in 0..40 {
            let wait = entries_until_due(&mut policy, 4096, 1 << 24).expect("due");
            state_bytes += wait * 4096;
            policy.reset();
            policy.state_written(state_bytes);
            waits.push(wait);
        }
        let longest = *waits.iter().max().expect("waits");
        assert!(longest <= LOG_BYTES_HELD_MAX / 4096, "{waits:?}");
        assert_eq!(
            waits.last(),
            Some(&(LOG_BYTES_HELD_MAX / 4096)),
            "{waits:?}"
        );
    }

    #[test]
    fn reset_counts_bytes_from_zero_again() {
        let mut policy = SnapshotPolicy::new(10, 16 * MIB);
        policy.applied(16 * MIB);
        assert!(policy.due(10));
        policy.reset();
        assert!(!policy.due(10));
        assert!(policy.due(100), "the count multiple still applies");
    }
}
