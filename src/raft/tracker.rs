//! The leader's (and candidate's) bookkeeping of the cluster membership.
//!
//! Owns: [`TrackerConfig`] (voters, learners and joint-change flags) and
//! [`ProgressTracker`], which pairs that configuration with one
//! [`Progress`] per member and the votes received in the current election.
//!
//! Guarantees: only voters count towards commit, quorum activity and
//! elections; learners are replicated to but never counted. Iteration is
//! always in ascending id order, so results are deterministic. A node's first
//! vote in an election is the one that counts.
//!
//! May not touch: how configurations change (the membership layer computes a
//! new configuration and progress map and hands both to
//! [`ProgressTracker::apply_conf`]), the log, messages or any IO.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::progress::Progress;
use super::quorum::{JointConfig, MajorityConfig, VoteResult};

/// A cluster membership configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The voters: the incoming config, plus the outgoing one while joint.
    pub voters: JointConfig,
    /// Whether a joint configuration should be left automatically once it
    /// is committed. Only meaningful while joint.
    pub auto_leave: bool,
    /// The learners: members that receive the log but do not vote. Disjoint
    /// from the voters of both halves.
    pub learners: BTreeSet<u64>,
    /// Outgoing voters that become learners when the joint config is left.
    /// They stay voters (in the outgoing half) until then.
    pub learners_next: BTreeSet<u64>,
}

/// Formats as `voters=(1 2 3)&&(1 2 4) learners=(5) learners_next=(4)
/// autoleave`; the learner parts appear only when non-empty and
/// `autoleave` only when set.
impl fmt::Display for TrackerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters={}", self.voters)?;
        if !self.learners.is_empty() {
            let learners: MajorityConfig = self.learners.iter().copied().collect();
            write!(f, " learners={learners}")?;
        }
        if !self.learners_next.is_empty() {
            let learners_next: MajorityConfig = self.learners_next.iter().copied().collect();
            write!(f, " learners_next={learners_next}")?;
        }
        if self.auto_leave {
            f.write_str(" autoleave")?;
        }
        Ok(())
    }
}

/// The current configuration, a [`Progress`] for each member, and the votes
/// of the current election.
#[derive(Clone, Debug)]
pub struct ProgressTracker {
    config: TrackerConfig,
    progress: BTreeMap<u64, Progress>,
    votes: BTreeMap<u64, bool>,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
}

impl ProgressTracker {
    /// An empty tracker whose progresses get inflight windows of
    /// `max_inflight_msgs` messages and `max_inflight_bytes` bytes (0 = no
    /// byte limit).
    pub fn new(max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            config: TrackerConfig::default(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight_msgs,
            max_inflight_bytes,
        }
    }

    /// The current configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Replaces the configuration and the progress map together, as computed
    /// by the membership layer. Votes are left untouched.
    pub fn apply_conf(&mut self, config: TrackerConfig, progress: BTreeMap<u64, Progress>) {
        self.config = config;
        self.progress = progress;
    }

    /// The inflight message limit given to new progresses.
    pub fn max_inflight_msgs(&self) -> usize {
        self.max_inflight_msgs
    }

    /// The inflight byte limit given to new progresses (0 = no limit).
    pub fn max_inflight_bytes(&self) -> u64 {
        self.max_inflight_bytes
    }

    /// Every member's progress, by id.
    pub fn progress(&self) -> &BTreeMap<u64, Progress> {
        &self.progress
    }

    /// Every member's progress, by id, mutably.
    pub fn progress_mut(&mut self) -> &mut BTreeMap<u64, Progress> {
        &mut self.progress
    }

    /// The progress of member `id`, if tracked.
    pub fn get(&self, id: u64) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// The progress of member `id`, mutably, if tracked.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Progress> {
        self.progress.get_mut(&id)
    }

    /// Tracks member `id` with a fresh [`Progress`] (probing from
    /// `next_idx`, with this tracker's inflight limits), replacing any
    /// existing one. Does not change the configuration.
    pub fn insert_progress(&mut self, id: u64, next_idx: u64, is_learner: bool) -> &mut Progress {
        let mut progress = Progress::new(next_idx, self.max_inflight_msgs, self.max_inflight_bytes);
        progress.is_learner = is_learner;
        match self.progress.entry(id) {
            Entry::Occupied(mut slot) => {
                slot.insert(progress);
                slot.into_mut()
            }
            Entry::Vacant(slot) => slot.insert(progress),
        }
    }

    /// Stops tracking member `id`, returning its progress. Does not change
    /// the configuration.
    pub fn remove(&mut self, id: u64) -> Option<Progress> {
        self.progress.remove(&id)
    }

    /// Every voter of either half of the configuration, ascending.
    pub fn voter_ids(&self) -> BTreeSet<u64> {
        self.config.voters.ids()
    }

    /// The learners, ascending (not including `learners_next`).
    pub fn learner_ids(&self) -> BTreeSet<u64> {
        self.config.learners.clone()
    }

    /// Whether the configuration has exactly one voter and is not joint.
    pub fn is_singleton(&self) -> bool {
        self.config.voters.incoming().len() == 1 && !self.config.voters.is_joint()
    }

    /// The largest index replicated on a quorum of voters, from each voter's
    /// `matched`. Untracked voters count as 0; learners never count.
    pub fn committed(&self) -> u64 {
        self.config
            .voters
            .committed_index(&|id| self.progress.get(&id).map(|progress| progress.matched))
    }

    /// Whether a quorum of voters has been recently active. Learners never
    /// count; untracked voters count as inactive.
    pub fn quorum_active(&self) -> bool {
        let active = |id: u64| {
            self.progress
                .get(&id)
                .filter(|progress| !progress.is_learner)
                .map(|progress| progress.recent_active)
        };
        self.config.voters.vote_result(&active) == VoteResult::Won
    }

    /// Calls `visitor` on every tracked progress in ascending id order.
    pub fn visit(&mut self, mut visitor: impl FnMut(u64, &mut Progress)) {
        for (&id, progress) in &mut self.progress {
            visitor(id, progress);
        }
    }

    /// Forgets every vote, for a new election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s vote. Only a node's first vote counts; later ones are
    /// ignored.
    pub fn record_vote(&mut self, id: u64, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// Counts the recorded votes of voters (votes of learners and unknown
    /// nodes are ignored) and returns `(granted, rejected, result)`.
    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let (mut granted, mut rejected) = (0, 0);
        for id in self.voter_ids() {
            match self.votes.get(&id) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        let result = self
            .config
            .voters
            .vote_result(&|id| self.votes.get(&id).copied());
        (granted, rejected, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(incoming: &[u64], outgoing: &[u64], learners: &[u64]) -> TrackerConfig {
        TrackerConfig {
            voters: JointConfig::new(
                incoming.iter().copied().collect(),
                outgoing.iter().copied().collect(),
            ),
            auto_leave: false,
            learners: learners.iter().copied().collect(),
            learners_next: BTreeSet::new(),
        }
    }

    /// A tracker for the given membership with every member tracked.
    fn tracker(incoming: &[u64], outgoing: &[u64], learners: &[u64]) -> ProgressTracker {
        let mut tracker = ProgressTracker::new(16, 0);
        let config = config(incoming, outgoing, learners);
        let mut progress = BTreeMap::new();
        for id in config.voters.ids() {
            progress.insert(id, Progress::new(1, 16, 0));
        }
        for &id in learners {
            let mut learner = Progress::new(1, 16, 0);
            learner.is_learner = true;
            progress.insert(id, learner);
        }
        tracker.apply_conf(config, progress);
        tracker
    }

    fn set_matched(tracker: &mut ProgressTracker, matched: &[(u64, u64)]) {
        for &(id, index) in matched {
            if let Some(progress) = tracker.get_mut(id) {
                progress.matched = index;
            }
        }
    }

    #[test]
    fn committed_uses_voter_matches() {
        let mut tracker = tracker(&[1, 2, 3], &[], &[]);
        set_matched(&mut tracker, &[(1, 10), (2, 7), (3, 3)]);
        assert_eq!(tracker.committed(), 7);
    }

    #[test]
    fn committed_ignores_learners() {
        let mut tracker = tracker(&[1, 2, 3], &[], &[4, 5]);
        set_matched(&mut tracker, &[(1, 10), (2, 2), (3, 1), (4, 10), (5, 10)]);
        assert_eq!(tracker.committed(), 2);
    }

    #[test]
    fn committed_counts_untracked_voters_as_zero() {
        let mut tracker = tracker(&[1, 2, 3], &[], &[]);
        set_matched(&mut tracker, &[(1, 10), (2, 8), (3, 6)]);
        tracker.remove(2);
        tracker.remove(3);
        assert_eq!(tracker.committed(), 0);
    }

    #[test]
    fn committed_in_joint_config_is_min() {
        let mut tracker = tracker(&[1, 2, 3], &[1, 4, 5], &[]);
        set_matched(&mut tracker, &[(1, 10), (2, 9), (3, 9), (4, 2), (5, 1)]);
        assert_eq!(tracker.committed(), 2);
    }

    #[test]
    fn quorum_active_needs_majority_of_voters() {
        let mut tracker = tracker(&[1, 2, 3], &[], &[4]);
        assert!(!tracker.quorum_active());
        if let Some(progress) = tracker.get_mut(1) {
            progress.recent_active = true;
        }
        if let Some(progress) = tracker.get_mut(4) {
            progress.recent_active = true;
        }
        assert!(!tracker.quorum_active(), "learners do not count");
        if let Some(progress) = tracker.get_mut(3) {
            progress.recent_active = true;
        }
        assert!(tracker.quorum_active());
    }

    #[test]
    fn quorum_active_in_joint_config_needs_both_halves() {
        let mut tracker = tracker(&[1, 2, 3], &[3, 4, 5], &[]);
        tracker.visit(|id, progress| progress.recent_active = id <= 3);
        assert!(!tracker.quorum_active());
        if let Some(progress) = tracker.get_mut(4) {
            progress.recent_active = true;
        }
        assert!(tracker.quorum_active());
    }

    #[test]
    fn tally_counts_voters_and_ignores_duplicates() {
        let mut tracker = tracker(&[1, 2, 3, 4, 5], &[], &[]);
        tracker.record_vote(1, true);
        tracker.record_vote(2, false);
        tracker.record_vote(2, true); // ignored: 2 already voted
        tracker.record_vote(1, false); // ignored
        assert_eq!(tracker.tally_votes(), (1, 1, VoteResult::Pending));
        tracker.record_vote(3, true);
        tracker.record_vote(4, true);
        assert_eq!(tracker.tally_votes(), (3, 1, VoteResult::Won));
    }

    #[test]
    fn tally_ignores_learner_and_unknown_votes() {
        let mut tracker = tracker(&[1, 2, 3], &[], &[4, 5]);
        tracker.record_vote(1, true);
        tracker.record_vote(4, true);
        tracker.record_vote(5, true);
        tracker.record_vote(9, true);
        assert_eq!(tracker.tally_votes(), (1, 0, VoteResult::Pending));
    }

    #[test]
    fn tally_reports_loss() {
        let mut tracker = tracker(&[1, 2, 3], &[], &[]);
        tracker.record_vote(1, true);
        tracker.record_vote(2, false);
        tracker.record_vote(3, false);
        assert_eq!(tracker.tally_votes(), (1, 2, VoteResult::Lost));
    }

    #[test]
    fn tally_in_joint_config() {
        let mut tracker = tracker(&[1, 2, 3], &[3, 4, 5], &[]);
        for id in [1, 2, 3] {
            tracker.record_vote(id, true);
        }
        assert_eq!(tracker.tally_votes(), (3, 0, VoteResult::Pending));
        tracker.record_vote(4, false);
        tracker.record_vote(5, false);
        assert_eq!(tracker.tally_votes(), (3, 2, VoteResult::Lost));
    }

    #[test]
    fn reset_votes_allows_new_election() {
        let mut tracker = tracker(&[1], &[], &[]);
        tracker.record_vote(1, false);
        assert_eq!(tracker.tally_votes(), (0, 1, VoteResult::Lost));
        tracker.reset_votes();
        assert_eq!(tracker.tally_votes(), (0, 0, VoteResult::Pending));
        tracker.record_vote(1, true);
        assert_eq!(tracker.tally_votes(), (1, 0, VoteResult::Won));
    }

    #[test]
    fn ids_and_singleton() {
        let tracker = tracker(&[1, 2], &[2, 3], &[4]);
        assert_eq!(
            tracker.voter_ids().into_iter().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            tracker.learner_ids().into_iter().collect::<Vec<_>>(),
            vec![4]
        );
        assert!(!tracker.is_singleton());
        assert!(self::tracker(&[7], &[], &[8]).is_singleton());
        assert!(!self::tracker(&[7], &[7, 8], &[]).is_singleton());
        assert!(!ProgressTracker::new(1, 0).is_singleton());
    }

    #[test]
    fn insert_get_remove_and_visit_order() {
        let mut tracker = ProgressTracker::new(8, 1024);
        tracker.insert_progress(3, 5, false);
        tracker.insert_progress(1, 5, true).recent_active = true;
        let learner = tracker.get(1).cloned();
        assert!(
            learner
                .as_ref()
                .is_some_and(|p| p.is_learner && p.recent_active)
        );
        // Replacing gives a fresh progress.
        tracker.insert_progress(1, 9, false);
        assert!(
            tracker
                .get(1)
                .is_some_and(|p| !p.is_learner && p.next_idx == 9)
        );

        let mut seen = Vec::new();
        tracker.visit(|id, progress| {
            seen.push(id);
            progress.matched = id;
        });
        assert_eq!(seen, vec![1, 3]);
        assert_eq!(tracker.get(3).map(|p| p.matched), Some(3));

        assert!(tracker.remove(3).is_some());
        assert!(tracker.remove(3).is_none());
        assert_eq!(tracker.progress().len(), 1);
    }

    #[test]
    fn inserted_progress_uses_tracker_limits() {
        let mut tracker = ProgressTracker::new(2, 0);
        let progress = tracker.insert_progress(1, 1, false);
        progress.become_replicate();
        progress.sent_entries(1, 10);
        assert!(!progress.is_paused());
        progress.sent_entries(1, 10);
        assert!(progress.is_paused(), "window of 2 from the tracker");
        assert_eq!(tracker.max_inflight_msgs(), 2);
        assert_eq!(tracker.max_inflight_bytes(), 0);
    }

    #[test]
    fn config_display() {
        let mut config = config(&[1, 2, 3], &[1, 2, 4], &[5]);
        config.learners_next.insert(4);
        config.auto_leave = true;
        assert_eq!(
            config.to_string(),
            "voters=(1 2 3)&&(1 2 4) learners=(5) learners_next=(4) autoleave"
        );
        assert_eq!(self::config(&[1], &[], &[]).to_string(), "voters=(1)");
    }
}
