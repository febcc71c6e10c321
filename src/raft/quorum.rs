//! Quorum arithmetic over raft voter configurations.
//!
//! Owns: [`MajorityConfig`] (a single set of voters decided by simple
//! majority) and [`JointConfig`] (two majority configs that must both agree
//! during a joint-consensus membership change), plus the two questions raft
//! asks of them: "which index is committed?" and "who won the election?".
//!
//! Guarantees: every answer is a pure function of the configuration and of
//! the caller-supplied lookup closure; voters missing from that lookup are
//! treated as "acknowledged nothing" / "has not voted". An empty majority
//! config commits everything (`u64::MAX`) and wins every vote, so the empty
//! outgoing half of a non-joint [`JointConfig`] never constrains the result.
//!
//! May not touch: progress, logs, messages or any IO. This module holds no
//! state beyond the voter sets.

use std::collections::BTreeSet;
use std::fmt;

/// The outcome of counting votes against a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: the missing votes could still swing the result.
    Pending,
    /// A majority can no longer be reached, whatever the missing votes are.
    Lost,
    /// A majority granted the vote.
    Won,
}

/// A set of voters that decides by simple majority (`len / 2 + 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    voters: BTreeSet<u64>,
}

impl MajorityConfig {
    /// Builds a majority config from a set of voter ids.
    pub fn new(voters: BTreeSet<u64>) -> Self {
        Self { voters }
    }

    /// The voter ids.
    pub fn voters(&self) -> &BTreeSet<u64> {
        &self.voters
    }

    /// Whether `id` is a voter in this config.
    pub fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id)
    }

    /// The number of voters.
    pub fn len(&self) -> usize {
        self.voters.len()
    }

    /// Whether the config has no voters at all.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// The voter ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.voters.iter().copied()
    }

    /// The number of voters that forms a majority (`len / 2 + 1`).
    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The largest log index acknowledged by a majority of voters.
    ///
    /// `acked(id)` returns the highest index voter `id` is known to hold;
    /// `None` counts as 0. An empty config returns `u64::MAX`, so that an
    /// empty half of a joint config never lowers the joint minimum.
    pub fn committed_index(&self, acked: &impl Fn(u64) -> Option<u64>) -> u64 {
        if self.voters.is_empty() {
            return u64::MAX;
        }
        let mut indexes: Vec<u64> = self.iter().map(|id| acked(id).unwrap_or(0)).collect();
        indexes.sort_unstable();
        // Ascending order: the element at `n - quorum` is held by exactly
        // `quorum` voters or more (itself and everything after it).
        indexes[indexes.len() - self.quorum()]
    }

    /// Tallies the votes of this config's voters.
    ///
    /// `votes(id)` returns `Some(true)` for a granted vote, `Some(false)` for
    /// a rejection and `None` when `id` has not voted. An empty config always
    /// wins. The result is [`VoteResult::Won`] once granted votes reach a
    /// majority, [`VoteResult::Lost`] once granted plus missing votes can no
    /// longer reach one, and [`VoteResult::Pending`] otherwise.
    pub fn vote_result(&self, votes: &impl Fn(u64) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0usize, 0usize);
        for id in self.iter() {
            match votes(id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.quorum();
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

impl FromIterator<u64> for MajorityConfig {
    fn from_iter<I: IntoIterator<Item = u64>>(ids: I) -> Self {
        Self::new(ids.into_iter().collect())
    }
}

/// Formats as `(1 2 3)`; an empty config is `()`.
impl fmt::Display for MajorityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (position, id) in self.iter().enumerate() {
            if position > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{id}")?;
        }
        f.write_str(")")
    }
}

/// Two majority configs that must both agree: the `incoming` config and, during
/// a joint-consensus change, the `outgoing` one (empty when not joint).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    incoming: MajorityConfig,
    outgoing: MajorityConfig,
}

impl JointConfig {
    /// Builds a joint config; pass an empty `outgoing` for a simple config.
    pub fn new(incoming: MajorityConfig, outgoing: MajorityConfig) -> Self {
        Self { incoming, outgoing }
    }

    /// The incoming (current or target) voters.
    pub fn incoming(&self) -> &MajorityConfig {
        &self.incoming
    }

    /// The outgoing voters; empty unless a joint change is in progress.
    pub fn outgoing(&self) -> &MajorityConfig {
        &self.outgoing
    }

    /// Whether a joint change is in progress (the outgoing half is non-empty).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Every voter of either half, ascending and without duplicates.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.incoming
            .voters()
            .union(self.outgoing.voters())
            .copied()
            .collect()
    }

    /// Whether `id` is a voter in either half.
    pub fn contains(&self, id: u64) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// The largest index committed by both halves: the minimum of the two
    /// halves' [`MajorityConfig::committed_index`]. Returns `u64::MAX` when
    /// both halves are empty.
    pub fn committed_index(&self, acked: &impl Fn(u64) -> Option<u64>) -> u64 {
        self.incoming
            .committed_index(acked)
            .min(self.outgoing.committed_index(acked))
    }

    /// Tallies the votes against both halves: [`VoteResult::Won`] only if
    /// both halves won, [`VoteResult::Lost`] if either half lost, otherwise
    /// [`VoteResult::Pending`].
    pub fn vote_result(&self, votes: &impl Fn(u64) -> Option<bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(votes);
        let outgoing = self.outgoing.vote_result(votes);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

/// Formats as `(1 2 3)&&(1 4 5)` when joint, or just `(1 2 3)` otherwise.
impl fmt::Display for JointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.incoming)?;
        if self.is_joint() {
            write!(f, "&&{}", self.outgoing)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn majority(ids: &[u64]) -> MajorityConfig {
        ids.iter().copied().collect()
    }

    fn joint(incoming: &[u64], outgoing: &[u64]) -> JointConfig {
        JointConfig::new(majority(incoming), majority(outgoing))
    }

    fn acked(pairs: &[(u64, u64)]) -> impl Fn(u64) -> Option<u64> {
        let map: BTreeMap<u64, u64> = pairs.iter().copied().collect();
        move |id| map.get(&id).copied()
    }

    fn votes(pairs: &[(u64, bool)]) -> impl Fn(u64) -> Option<bool> {
        let map: BTreeMap<u64, bool> = pairs.iter().copied().collect();
        move |id| map.get(&id).copied()
    }

    #[test]
    fn empty_majority_commits_everything_and_wins() {
        let config = MajorityConfig::default();
        assert!(config.is_empty());
        assert_eq!(config.committed_index(&acked(&[(1, 5)])), u64::MAX);
        assert_eq!(config.vote_result(&votes(&[])), VoteResult::Won);
    }

    #[test]
    fn committed_single_voter() {
        let config = majority(&[1]);
        assert_eq!(config.committed_index(&acked(&[(1, 7)])), 7);
        assert_eq!(config.committed_index(&acked(&[])), 0);
        // Acks from non-voters are ignored.
        assert_eq!(config.committed_index(&acked(&[(2, 9)])), 0);
    }

    #[test]
    fn committed_two_voters_needs_both() {
        let config = majority(&[1, 2]);
        assert_eq!(config.committed_index(&acked(&[(1, 10), (2, 4)])), 4);
        assert_eq!(config.committed_index(&acked(&[(1, 10)])), 0);
        assert_eq!(config.committed_index(&acked(&[(1, 3), (2, 3)])), 3);
    }

    #[test]
    fn committed_three_voters_is_the_median() {
        let config = majority(&[1, 2, 3]);
        assert_eq!(
            config.committed_index(&acked(&[(1, 10), (2, 5), (3, 1)])),
            5
        );
        assert_eq!(config.committed_index(&acked(&[(1, 10), (2, 5)])), 5);
        assert_eq!(config.committed_index(&acked(&[(1, 10)])), 0);
        assert_eq!(config.committed_index(&acked(&[(1, 2), (2, 2), (3, 2)])), 2);
    }

    #[test]
    fn committed_four_voters_needs_three() {
        let config = majority(&[1, 2, 3, 4]);
        assert_eq!(
            config.committed_index(&acked(&[(1, 100), (2, 101), (3, 99), (4, 1)])),
            99
        );
        assert_eq!(config.committed_index(&acked(&[(1, 100), (2, 101)])), 0);
        assert_eq!(
            config.committed_index(&acked(&[(1, 100), (2, 101), (4, 50)])),
            50
        );
    }

    #[test]
    fn committed_five_voters_needs_three() {
        let config = majority(&[1, 2, 3, 4, 5]);
        assert_eq!(
            config.committed_index(&acked(&[(1, 9), (2, 8), (3, 7), (4, 6), (5, 5)])),
            7
        );
        assert_eq!(config.committed_index(&acked(&[(1, 9), (2, 8), (5, 3)])), 3);
        assert_eq!(config.committed_index(&acked(&[(1, 9), (2, 8)])), 0);
    }

    #[test]
    fn vote_result_single_voter() {
        let config = majority(&[1]);
        assert_eq!(config.vote_result(&votes(&[])), VoteResult::Pending);
        assert_eq!(config.vote_result(&votes(&[(1, true)])), VoteResult::Won);
        assert_eq!(config.vote_result(&votes(&[(1, false)])), VoteResult::Lost);
    }

    #[test]
    fn vote_result_two_voters_requires_both() {
        let config = majority(&[1, 2]);
        assert_eq!(
            config.vote_result(&votes(&[(1, true)])),
            VoteResult::Pending
        );
        assert_eq!(config.vote_result(&votes(&[(1, false)])), VoteResult::Lost);
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, false)])),
            VoteResult::Lost
        );
    }

    #[test]
    fn vote_result_three_voters_with_missing_votes() {
        let config = majority(&[1, 2, 3]);
        assert_eq!(config.vote_result(&votes(&[])), VoteResult::Pending);
        assert_eq!(
            config.vote_result(&votes(&[(1, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, false)])),
            VoteResult::Pending
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, false)])),
            VoteResult::Pending
        );
    }

    #[test]
    fn vote_result_four_voters_needs_three() {
        let config = majority(&[1, 2, 3, 4]);
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true), (3, false)])),
            VoteResult::Pending
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, false), (3, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true), (4, true)])),
            VoteResult::Won
        );
        // Two rejections out of four already rule out three grants.
        assert_eq!(
            config.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
    }

    #[test]
    fn vote_result_ignores_non_voters() {
        let config = majority(&[1, 2, 3]);
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (7, true), (8, true)])),
            VoteResult::Pending
        );
    }

    #[test]
    fn joint_committed_is_min_of_halves() {
        let config = joint(&[1, 2, 3], &[1, 4, 5]);
        let acks = acked(&[(1, 10), (2, 9), (3, 8), (4, 3), (5, 2)]);
        assert_eq!(config.incoming().committed_index(&acks), 9);
        assert_eq!(config.outgoing().committed_index(&acks), 3);
        assert_eq!(config.committed_index(&acks), 3);
    }

    #[test]
    fn joint_committed_with_empty_outgoing_is_incoming() {
        let config = joint(&[1, 2, 3], &[]);
        assert!(!config.is_joint());
        assert_eq!(
            config.committed_index(&acked(&[(1, 10), (2, 9), (3, 8)])),
            9
        );
        assert_eq!(
            JointConfig::default().committed_index(&acked(&[])),
            u64::MAX
        );
    }

    #[test]
    fn joint_vote_results() {
        let config = joint(&[1, 2, 3], &[3, 4, 5]);
        assert_eq!(config.vote_result(&votes(&[])), VoteResult::Pending);
        // Incoming won, outgoing pending.
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        // Both won.
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true), (3, true), (4, true)])),
            VoteResult::Won
        );
        // Incoming won but outgoing lost.
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true), (4, false), (5, false)])),
            VoteResult::Lost
        );
        // Incoming lost, outgoing pending.
        assert_eq!(
            config.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
    }

    #[test]
    fn joint_vote_with_empty_outgoing_follows_incoming() {
        let config = joint(&[1, 2, 3], &[]);
        assert_eq!(
            config.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            config.vote_result(&votes(&[(1, true)])),
            VoteResult::Pending
        );
    }

    #[test]
    fn joint_ids_and_contains() {
        let config = joint(&[3, 1, 2], &[1, 5, 4]);
        assert!(config.is_joint());
        assert_eq!(
            config.ids().into_iter().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(config.contains(5));
        assert!(config.contains(2));
        assert!(!config.contains(6));
        assert_eq!(config.incoming().iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(config.incoming().len(), 3);
    }

    #[test]
    fn display_formats() {
        assert_eq!(majority(&[3, 1, 2]).to_string(), "(1 2 3)");
        assert_eq!(MajorityConfig::default().to_string(), "()");
        assert_eq!(joint(&[1, 2, 3], &[]).to_string(), "(1 2 3)");
        assert_eq!(
            joint(&[1, 2, 3], &[1, 4, 5]).to_string(),
            "(1 2 3)&&(1 4 5)"
        );
    }
}
