//! The leader's view of how far one follower's log has been replicated.
//!
//! Owns: [`Progress`] (match/next indexes and the replication state machine
//! `Probe` → `Replicate` / `Snapshot`), [`ProgressState`] and [`Inflights`]
//! (the bounded window of append messages sent but not yet acknowledged).
//!
//! Guarantees: `matched` never decreases, `next_idx` never falls below
//! `matched + 1` through [`Progress::maybe_decr_to`], stale or duplicated
//! responses are recognised and ignored, and the inflight window never
//! exceeds its message count (adding to a full window is a caller bug and
//! panics).
//!
//! May not touch: the log, messages, clocks or any IO. Everything here is
//! pure data updated by the raft core when it sends or receives messages.

use std::collections::VecDeque;
use std::fmt;

/// The replication state of a follower, as seen by the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressState {
    /// The leader does not know the follower's last index yet and sends at
    /// most one append per heartbeat interval to find it.
    #[default]
    Probe,
    /// The follower is known to be caught up to `matched`; appends are
    /// streamed optimistically, bounded by the [`Inflights`] window.
    Replicate,
    /// The follower needs a snapshot; no appends are sent until it applied.
    Snapshot,
}

/// Formats as `StateProbe`, `StateReplicate` or `StateSnapshot`.
impl fmt::Display for ProgressState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgressState::Probe => "StateProbe",
            ProgressState::Replicate => "StateReplicate",
            ProgressState::Snapshot => "StateSnapshot",
        })
    }
}

/// One append message in flight: its last entry index and payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InflightAppend {
    last_index: u64,
    bytes: u64,
}

/// A bounded FIFO window of append messages sent to a follower and not yet
/// acknowledged, limited both by message count and (optionally) by bytes.
///
/// The backing ring buffer grows lazily, up to `max_inflight_msgs` slots, so
/// idle followers cost no allocation. Messages must be added in increasing
/// order of their last index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflights {
    window: VecDeque<InflightAppend>,
    bytes: u64,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
}

impl Inflights {
    /// Creates an empty window holding at most `max_inflight_msgs` messages
    /// and `max_inflight_bytes` payload bytes (`0` means no byte limit).
    /// A window with a capacity of 0 is always full.
    pub fn new(max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            window: VecDeque::new(),
            bytes: 0,
            max_inflight_msgs,
            max_inflight_bytes,
        }
    }

    /// Records an append whose last entry is `last_index`, carrying `bytes`
    /// of payload. A single message may overshoot the byte budget; the window
    /// is then [`full`](Self::full) until enough is freed.
    ///
    /// # Panics
    ///
    /// If the window is already full: the caller must check
    /// [`full`](Self::full) first. In debug builds, also if `last_index` is
    /// not greater than the newest index in flight (entries must be sent in
    /// log order).
    pub fn add(&mut self, last_index: u64, bytes: u64) {
        assert!(
            !self.full(),
            "cannot add index {last_index} to a full inflights window ({} msgs, {} bytes)",
            self.window.len(),
            self.bytes
        );
        if let Some(newest) = self.window.back() {
            debug_assert!(
                last_index > newest.last_index,
                "inflights must be added in increasing order: {last_index} after {}",
                newest.last_index
            );
        }
        if self.window.len() == self.window.capacity() {
            // Grow geometrically, but never beyond the configured window.
            let additional = self
                .window
                .len()
                .max(1)
                .min(self.max_inflight_msgs - self.window.len());
            self.window.reserve_exact(additional);
        }
        self.window.push_back(InflightAppend { last_index, bytes });
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Frees every in-flight message whose last index is `<= index`, i.e.
    /// everything the follower acknowledged by accepting up to `index`.
    pub fn free_le(&mut self, index: u64) {
        while let Some(oldest) = self.window.front() {
            if oldest.last_index > index {
                break;
            }
            self.bytes = self.bytes.saturating_sub(oldest.bytes);
            self.window.pop_front();
        }
    }

    /// Whether no more messages may be sent: the message count reached the
    /// capacity, or a byte limit is set and the bytes in flight reached it.
    pub fn full(&self) -> bool {
        self.window.len() >= self.max_inflight_msgs
            || (self.max_inflight_bytes != 0 && self.bytes >= self.max_inflight_bytes)
    }

    /// The number of messages in flight.
    pub fn count(&self) -> usize {
        self.window.len()
    }

    /// The total payload bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Forgets every in-flight message (keeps the limits).
    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }
}

/// The leader's record of one follower (or learner): how much of the log it
/// holds, what to send next, and whether sending is currently paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The highest log index known to be replicated on the follower.
    pub matched: u64,
    /// The index of the next entry to send to the follower.
    pub next_idx: u64,
    /// The highest commit index sent to the follower.
    pub sent_commit: u64,
    /// The replication state.
    pub state: ProgressState,
    /// In [`ProgressState::Snapshot`], the index of the snapshot being sent;
    /// 0 otherwise.
    pub pending_snapshot: u64,
    /// Whether the follower was heard from recently (reset by check-quorum).
    pub recent_active: bool,
    /// Whether sending appends is paused: in Probe, one append is already
    /// outstanding; in Replicate, the inflight window is full.
    pub msg_app_flow_paused: bool,
    /// The appends sent but not yet acknowledged (used in Replicate).
    pub inflights: Inflights,
    /// Whether this member is a learner (replicated to, but never votes).
    pub is_learner: bool,
}

impl Progress {
    /// A fresh progress in [`ProgressState::Probe`] with `matched = 0`,
    /// `recent_active = false`, not a learner, and an inflight window of the
    /// given limits (`max_inflight_bytes == 0` means no byte limit).
    pub fn new(next_idx: u64, max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            matched: 0,
            next_idx,
            sent_commit: 0,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            msg_app_flow_paused: false,
            inflights: Inflights::new(max_inflight_msgs, max_inflight_bytes),
            is_learner: false,
        }
    }

    /// Enters `state` with a clean slate: unpaused, no pending snapshot and
    /// no inflight messages. Indexes are left untouched.
    pub fn reset_state(&mut self, state: ProgressState) {
        self.msg_app_flow_paused = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    /// Switches to [`ProgressState::Probe`]. Coming from Snapshot, the
    /// follower is assumed to have applied the pending snapshot, so probing
    /// starts after it: `next_idx = max(matched + 1, pending_snapshot + 1)`.
    /// Otherwise `next_idx = matched + 1`. `sent_commit` is capped at
    /// `next_idx - 1`, as the follower may not hold anything beyond it.
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending_snapshot = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = (self.matched + 1).max(pending_snapshot + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
        self.cap_sent_commit();
    }

    /// Switches to [`ProgressState::Replicate`], streaming from
    /// `next_idx = matched + 1`.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    /// Switches to [`ProgressState::Snapshot`] while the snapshot at
    /// `snapshot_index` is sent. The snapshot carries its index as committed,
    /// so `sent_commit` becomes `snapshot_index`.
    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
        self.next_idx = snapshot_index + 1;
        self.sent_commit = snapshot_index;
    }

    /// Records that an append carrying `entries` entries and `bytes` payload
    /// bytes was just sent, starting at `next_idx`.
    ///
    /// Rule: in Replicate, a non-empty append advances `next_idx` by
    /// `entries` and records `(next_idx - 1, bytes)` in the inflight window;
    /// sending is then paused exactly when the window is full. In Probe, a
    /// non-empty append pauses sending until the follower answers (one probe
    /// at a time). Empty appends (commit/heartbeat-like) change nothing in
    /// Probe.
    ///
    /// # Panics
    ///
    /// In Snapshot state, where nothing may be appended (the progress is
    /// always [paused](Self::is_paused)); also if the window is full, see
    /// [`Inflights::add`].
    pub fn sent_entries(&mut self, entries: usize, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next_idx += entries as u64;
                    self.inflights.add(self.next_idx - 1, bytes);
                }
                self.msg_app_flow_paused = self.inflights.full();
            }
            ProgressState::Probe => {
                if entries > 0 {
                    self.msg_app_flow_paused = true;
                }
            }
            ProgressState::Snapshot => {
                panic!(
                    "sent_entries in StateSnapshot: appends must not be sent while a snapshot is pending"
                )
            }
        }
    }

    /// Records that commit index `commit` was sent to the follower.
    pub fn sent_commit(&mut self, commit: u64) {
        self.sent_commit = commit;
    }

    /// Whether an (otherwise empty) append telling the follower about commit
    /// index `index` would be useful.
    ///
    /// Rule: `index > sent_commit` (the follower has not been told this
    /// commit index yet) and `next_idx - 1 > sent_commit` (the follower has
    /// been sent entries above the commit index it knows, so a higher commit
    /// index lets it apply something). A leader should send an empty append
    /// only to announce a higher commit index covering entries the follower
    /// has.
    pub fn can_bump_commit(&self, index: u64) -> bool {
        index > self.sent_commit && self.next_idx.saturating_sub(1) > self.sent_commit
    }

    /// Handles an acknowledgement of index `n` from the follower. Raises
    /// `matched` (and unpauses) if `n` is new, and makes sure
    /// `next_idx > n`. Returns whether `matched` increased; `false` means the
    /// acknowledgement was stale or a duplicate.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = n > self.matched;
        if updated {
            self.matched = n;
            self.msg_app_flow_paused = false;
        }
        self.next_idx = self.next_idx.max(n + 1);
        updated
    }

    /// Handles the follower's rejection of an append whose preceding entry
    /// was at index `rejected`; `match_hint` is the follower's guess of the
    /// last index where both logs may agree. Returns `false` (and changes
    /// nothing) when the rejection is stale.
    ///
    /// In Replicate, a rejection at or below `matched` is stale; otherwise
    /// sending restarts at `matched + 1`. In Probe and Snapshot, only a
    /// rejection of the latest probe (`rejected == next_idx - 1`) counts; it
    /// moves `next_idx` to `max(min(rejected, match_hint + 1), matched + 1)`
    /// and unpauses so the next probe can go out. `sent_commit` is capped at
    /// the new `next_idx - 1`.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            self.cap_sent_commit();
            return true;
        }
        if self.next_idx.saturating_sub(1) != rejected {
            return false;
        }
        self.next_idx = rejected
            .min(match_hint.saturating_add(1))
            .max(self.matched + 1);
        self.cap_sent_commit();
        self.msg_app_flow_paused = false;
        true
    }

    /// Whether sending appends to this follower is paused: in Probe while a
    /// probe is outstanding, in Replicate while the inflight window is full,
    /// and always in Snapshot.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe | ProgressState::Replicate => self.msg_app_flow_paused,
            ProgressState::Snapshot => true,
        }
    }

    fn cap_sent_commit(&mut self) {
        self.sent_commit = self.sent_commit.min(self.next_idx.saturating_sub(1));
    }
}

/// Formats as `StateReplicate match=5 next=6`, followed by ` learner`,
/// ` paused`, ` pending_snap=N` (Snapshot state) and ` inflight=N` (when
/// non-zero), in that order, each only when it applies.
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} match={} next={}",
            self.state, self.matched, self.next_idx
        )?;
        if self.is_learner {
            f.write_str(" learner")?;
        }
        if self.is_paused() {
            f.write_str(" paused")?;
        }
        if self.state == ProgressState::Snapshot {
            write!(f, " pending_snap={}", self.pending_snapshot)?;
        }
        let inflight = self.inflights.count();
        if inflight > 0 {
            write!(f, " inflight={inflight}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicating(matched: u64, next_idx: u64, max_msgs: usize) -> Progress {
        let mut progress = Progress::new(next_idx, max_msgs, 0);
        progress.matched = matched;
        progress.state = ProgressState::Replicate;
        progress
    }

    fn probing(matched: u64, next_idx: u64) -> Progress {
        let mut progress = Progress::new(next_idx, 256, 0);
        progress.matched = matched;
        progress
    }

    // ---- Inflights ----

    #[test]
    fn inflights_add_until_full() {
        let mut inflights = Inflights::new(3, 0);
        assert!(!inflights.full());
        inflights.add(1, 10);
        inflights.add(2, 10);
        assert!(!inflights.full());
        inflights.add(3, 10);
        assert!(inflights.full());
        assert_eq!(inflights.count(), 3);
        assert_eq!(inflights.bytes(), 30);
    }

    #[test]
    fn inflights_grow_lazily() {
        let mut inflights = Inflights::new(1000, 0);
        assert_eq!(inflights.window.capacity(), 0);
        inflights.add(1, 1);
        assert!(inflights.window.capacity() < 1000);
        for index in 2..=1000 {
            inflights.add(index, 1);
        }
        assert!(inflights.full());
    }

    #[test]
    fn inflights_free_le_frees_prefix() {
        let mut inflights = Inflights::new(10, 0);
        for index in [2, 4, 6, 8] {
            inflights.add(index, index);
        }
        inflights.free_le(1);
        assert_eq!(inflights.count(), 4);
        inflights.free_le(5);
        assert_eq!(inflights.count(), 2);
        assert_eq!(inflights.bytes(), 6 + 8);
        inflights.free_le(8);
        assert_eq!(inflights.count(), 0);
        assert_eq!(inflights.bytes(), 0);
        // Freeing an empty window is a no-op.
        inflights.free_le(100);
        assert_eq!(inflights.count(), 0);
    }

    #[test]
    fn inflights_wrap_around_the_ring() {
        let mut inflights = Inflights::new(4, 0);
        for index in 1..=4 {
            inflights.add(index, 1);
        }
        assert!(inflights.full());
        // Repeatedly free the oldest and add a new one, so the ring's start
        // moves around the buffer several times.
        for index in 5..=20 {
            inflights.free_le(index - 4);
            assert!(!inflights.full());
            inflights.add(index, 1);
            assert!(inflights.full());
            assert_eq!(inflights.count(), 4);
        }
        assert!(inflights.window.capacity() <= 4);
        inflights.free_le(18);
        assert_eq!(inflights.count(), 2);
        let remaining: Vec<u64> = inflights.window.iter().map(|a| a.last_index).collect();
        assert_eq!(remaining, vec![19, 20]);
    }

    #[test]
    fn inflights_byte_limit() {
        let mut inflights = Inflights::new(10, 100);
        inflights.add(1, 40);
        inflights.add(2, 40);
        assert!(!inflights.full());
        // One message may overshoot the budget; the window is then full.
        inflights.add(3, 50);
        assert_eq!(inflights.bytes(), 130);
        assert!(inflights.full());
        inflights.free_le(1);
        assert_eq!(inflights.bytes(), 90);
        assert!(!inflights.full());
        inflights.add(4, 10);
        assert!(inflights.full(), "exactly at the budget counts as full");
    }

    #[test]
    fn inflights_zero_byte_limit_means_unlimited() {
        let mut inflights = Inflights::new(2, 0);
        inflights.add(1, u64::MAX / 2);
        assert!(!inflights.full());
        inflights.add(2, u64::MAX / 2);
        assert!(inflights.full());
    }

    #[test]
    fn inflights_reset_clears_everything() {
        let mut inflights = Inflights::new(2, 0);
        inflights.add(1, 5);
        inflights.add(2, 5);
        inflights.reset();
        assert_eq!(inflights.count(), 0);
        assert_eq!(inflights.bytes(), 0);
        assert!(!inflights.full());
        inflights.add(1, 5);
        assert_eq!(inflights.count(), 1);
    }

    #[test]
    #[should_panic(expected = "full inflights")]
    fn inflights_add_when_full_panics() {
        let mut inflights = Inflights::new(1, 0);
        inflights.add(1, 1);
        inflights.add(2, 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "increasing order")]
    fn inflights_add_out_of_order_panics() {
        let mut inflights = Inflights::new(4, 0);
        inflights.add(5, 1);
        inflights.add(5, 1);
    }

    // ---- Progress ----

    #[test]
    fn new_progress_is_probing_from_next() {
        let progress = Progress::new(7, 16, 0);
        assert_eq!(progress.state, ProgressState::Probe);
        assert_eq!(progress.matched, 0);
        assert_eq!(progress.next_idx, 7);
        assert!(!progress.is_paused());
        assert!(!progress.recent_active);
    }

    #[test]
    fn maybe_update_raises_match_and_next() {
        let mut progress = probing(3, 5);
        progress.msg_app_flow_paused = true;
        assert!(progress.maybe_update(4));
        assert_eq!(progress.matched, 4);
        assert_eq!(progress.next_idx, 5);
        assert!(!progress.msg_app_flow_paused);
        assert!(progress.maybe_update(9));
        assert_eq!((progress.matched, progress.next_idx), (9, 10));
    }

    #[test]
    fn maybe_update_ignores_stale_ack() {
        let mut progress = probing(5, 8);
        progress.msg_app_flow_paused = true;
        assert!(!progress.maybe_update(5));
        assert!(!progress.maybe_update(2));
        assert_eq!((progress.matched, progress.next_idx), (5, 8));
        assert!(progress.msg_app_flow_paused, "stale acks do not unpause");
    }

    #[test]
    fn maybe_decr_to_replicate_resets_to_match() {
        let mut progress = replicating(5, 10, 16);
        progress.sent_commit = 9;
        assert!(progress.maybe_decr_to(8, 2));
        assert_eq!(progress.next_idx, 6, "replicate ignores the hint");
        assert_eq!(progress.sent_commit, 5);
    }

    #[test]
    fn maybe_decr_to_replicate_ignores_stale_rejection() {
        let mut progress = replicating(5, 10, 16);
        assert!(!progress.maybe_decr_to(5, 0));
        assert!(!progress.maybe_decr_to(4, 0));
        assert_eq!(progress.next_idx, 10);
    }

    #[test]
    fn maybe_decr_to_probe_ignores_stale_rejection() {
        let mut progress = probing(0, 10);
        progress.msg_app_flow_paused = true;
        // Only a rejection of the latest probe (index 9) counts.
        assert!(!progress.maybe_decr_to(5, 5));
        assert!(!progress.maybe_decr_to(10, 5));
        assert_eq!(progress.next_idx, 10);
        assert!(progress.msg_app_flow_paused);
    }

    #[test]
    fn maybe_decr_to_probe_respects_hint() {
        let mut progress = probing(0, 10);
        progress.msg_app_flow_paused = true;
        assert!(progress.maybe_decr_to(9, 3));
        assert_eq!(progress.next_idx, 4);
        assert!(!progress.msg_app_flow_paused);
        // A hint at or beyond the rejected index only steps back by one.
        let mut progress = probing(0, 10);
        assert!(progress.maybe_decr_to(9, 20));
        assert_eq!(progress.next_idx, 9);
    }

    #[test]
    fn maybe_decr_to_probe_never_below_match_plus_one() {
        let mut progress = probing(5, 10);
        assert!(progress.maybe_decr_to(9, 0));
        assert_eq!(progress.next_idx, 6);
    }

    #[test]
    fn maybe_decr_to_probe_caps_sent_commit() {
        let mut progress = probing(0, 10);
        progress.sent_commit = 9;
        assert!(progress.maybe_decr_to(9, 2));
        assert_eq!(progress.next_idx, 3);
        assert_eq!(progress.sent_commit, 2);
    }

    #[test]
    fn become_probe_from_snapshot_starts_after_snapshot() {
        let mut progress = probing(1, 2);
        progress.become_snapshot(10);
        assert_eq!(progress.pending_snapshot, 10);
        progress.become_probe();
        assert_eq!(progress.state, ProgressState::Probe);
        assert_eq!(progress.next_idx, 11);
        assert_eq!(progress.pending_snapshot, 0);

        // If the follower already matched beyond the snapshot, match wins.
        let mut progress = probing(1, 2);
        progress.become_snapshot(10);
        progress.matched = 15;
        progress.become_probe();
        assert_eq!(progress.next_idx, 16);
    }

    #[test]
    fn become_probe_from_replicate_resets_to_match() {
        let mut progress = replicating(5, 6, 16);
        progress.sent_entries(4, 40);
        assert_eq!(progress.next_idx, 10);
        progress.sent_commit(9);
        progress.become_probe();
        assert_eq!(progress.next_idx, 6);
        assert_eq!(progress.inflights.count(), 0);
        assert_eq!(progress.sent_commit, 5);
        assert!(!progress.is_paused());
    }

    #[test]
    fn become_replicate_and_snapshot() {
        let mut progress = probing(4, 9);
        progress.msg_app_flow_paused = true;
        progress.become_replicate();
        assert_eq!(progress.state, ProgressState::Replicate);
        assert_eq!(progress.next_idx, 5);
        assert!(!progress.is_paused());
        progress.become_snapshot(20);
        assert_eq!(progress.state, ProgressState::Snapshot);
        assert_eq!(progress.next_idx, 21);
        assert_eq!(progress.sent_commit, 20);
    }

    #[test]
    fn is_paused_per_state() {
        let mut progress = probing(0, 1);
        assert!(!progress.is_paused());
        progress.msg_app_flow_paused = true;
        assert!(progress.is_paused());

        let mut progress = replicating(0, 1, 16);
        assert!(!progress.is_paused());
        progress.msg_app_flow_paused = true;
        assert!(progress.is_paused());

        let mut progress = probing(0, 1);
        progress.become_snapshot(5);
        assert!(!progress.msg_app_flow_paused);
        assert!(progress.is_paused(), "snapshot state is always paused");
    }

    #[test]
    fn sent_entries_in_probe_pauses_only_when_non_empty() {
        let mut progress = probing(0, 5);
        progress.sent_entries(0, 0);
        assert!(!progress.is_paused());
        progress.sent_entries(3, 30);
        assert!(progress.is_paused());
        assert_eq!(progress.next_idx, 5, "probe does not advance next");
        assert_eq!(progress.inflights.count(), 0);
    }

    #[test]
    fn sent_entries_in_replicate_tracks_inflights() {
        let mut progress = replicating(4, 5, 2);
        progress.sent_entries(3, 30);
        assert_eq!(progress.next_idx, 8);
        assert_eq!(progress.inflights.count(), 1);
        assert!(!progress.is_paused());
        progress.sent_entries(0, 0);
        assert_eq!(progress.next_idx, 8);
        assert_eq!(progress.inflights.count(), 1);
        progress.sent_entries(2, 20);
        assert_eq!(progress.next_idx, 10);
        assert!(progress.is_paused(), "window of 2 is full");
        // Acknowledging the first append frees its slot.
        assert!(progress.maybe_update(7));
        progress.inflights.free_le(7);
        assert!(!progress.is_paused());
        assert_eq!(progress.inflights.count(), 1);
    }

    #[test]
    fn sent_entries_in_replicate_respects_byte_limit() {
        let mut progress = Progress::new(1, 100, 50);
        progress.become_replicate();
        progress.sent_entries(1, 30);
        assert!(!progress.is_paused());
        progress.sent_entries(1, 30);
        assert!(progress.is_paused());
        assert_eq!(progress.inflights.bytes(), 60);
    }

    #[test]
    #[should_panic(expected = "StateSnapshot")]
    fn sent_entries_in_snapshot_panics() {
        let mut progress = probing(0, 1);
        progress.become_snapshot(3);
        progress.sent_entries(1, 1);
    }

    #[test]
    fn can_bump_commit_rules() {
        let mut progress = replicating(5, 11, 16);
        progress.sent_commit(5);
        // Entries up to 10 were sent; telling commit 8 is useful.
        assert!(progress.can_bump_commit(8));
        // Not a higher commit index.
        assert!(!progress.can_bump_commit(5));
        assert!(!progress.can_bump_commit(3));
        // Follower already knows a commit index covering all it was sent.
        progress.sent_commit(10);
        assert!(!progress.can_bump_commit(12));
    }

    #[test]
    fn display_formats() {
        let mut progress = replicating(5, 6, 16);
        assert_eq!(progress.to_string(), "StateReplicate match=5 next=6");
        progress.sent_entries(1, 10);
        assert_eq!(
            progress.to_string(),
            "StateReplicate match=5 next=7 inflight=1"
        );

        let mut progress = probing(0, 3);
        progress.is_learner = true;
        progress.msg_app_flow_paused = true;
        assert_eq!(
            progress.to_string(),
            "StateProbe match=0 next=3 learner paused"
        );

        let mut progress = probing(2, 3);
        progress.become_snapshot(9);
        assert_eq!(
            progress.to_string(),
            "StateSnapshot match=2 next=10 paused pending_snap=9"
        );
    }
}
