//! Membership changes: computes the configuration and progress map that a
//! configuration change leads to, without touching the live tracker.
//!
//! Owns: the rules of single-step changes (`simple`), joint consensus
//! (`enter_joint`, `leave_joint`) and the typed [`ConfChangeError`].
//!
//! Guarantees: a returned configuration satisfies the tracker invariants
//! (every voter and learner has a progress; no id is both voter and
//! learner; `learners_next` only holds outgoing voters; a non-joint
//! configuration has no `learners_next` and no `auto_leave`), and a simple
//! change moves at most one voter, so any two consecutive majorities
//! overlap. A refused change leaves nothing modified: the caller swaps the
//! result in only on success.
//!
//! May not touch: the raft state machine or the log. `Raft` decides when a
//! change applies and installs the result.

use super::progress::Progress;
use super::quorum::{JointConfig, MajorityConfig};
use super::tracker::TrackerConfig;
use crate::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
};
use std::collections::{BTreeMap, BTreeSet};

/// Why a configuration change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// A joint configuration must be left before another change.
    #[error("configuration is already joint")]
    AlreadyJoint,
    /// Only a joint configuration can be left.
    #[error("cannot leave a configuration that is not joint")]
    NotJoint,
    /// A joint configuration needs voters in its incoming half to start from.
    #[error("cannot make a configuration without voters joint")]
    NoVotersToJoin,
    /// A simple change moved several voters at once (use joint consensus).
    #[error("more than one voter changed without entering a joint configuration")]
    TooManyVoterChanges,
    /// The change would leave no voter.
    #[error("the change removes all voters")]
    RemovesAllVoters,
    /// A change type value that is not a [`ConfChangeType`].
    #[error("unknown conf change type {0}")]
    UnknownChangeType(i32),
    /// A transition value that is not a [`ConfChangeTransition`].
    #[error("unknown conf change transition {0}")]
    UnknownTransition(i32),
}

/// The configuration and progress map a change produces.
pub type ConfChangeResult = Result<(TrackerConfig, BTreeMap<u64, Progress>), ConfChangeError>;

/// Computes configuration changes against a copy of the current state.
pub struct Changer<'a> {
    /// The configuration to change.
    pub config: &'a TrackerConfig,
    /// The current progress of every member.
    pub progress: &'a BTreeMap<u64, Progress>,
    /// The leader's last log index: new members are probed from there.
    pub last_index: u64,
    /// Inflight window of new members' progress.
    pub max_inflight_msgs: usize,
    /// Inflight byte budget of new members' progress.
    pub max_inflight_bytes: u64,
}

/// The working copy a change is applied to.
struct Draft {
    incoming: BTreeSet<u64>,
    outgoing: BTreeSet<u64>,
    learners: BTreeSet<u64>,
    learners_next: BTreeSet<u64>,
    auto_leave: bool,
    progress: BTreeMap<u64, Progress>,
}

impl Draft {
    fn finish(self) -> (TrackerConfig, BTreeMap<u64, Progress>) {
        let config = TrackerConfig {
            voters: JointConfig::new(
                MajorityConfig::new(self.incoming),
                MajorityConfig::new(self.outgoing),
            ),
            auto_leave: self.auto_leave,
            learners: self.learners,
            learners_next: self.learners_next,
        };
        check_invariants(&config, &self.progress);
        (config, self.progress)
    }
}

impl Changer<'_> {
    fn draft(&self) -> Draft {
        Draft {
            incoming: self.config.voters.incoming().voters().clone(),
            outgoing: self.config.voters.outgoing().voters().clone(),
            learners: self.config.learners.clone(),
            learners_next: self.config.learners_next.clone(),
            auto_leave: self.config.auto_leave,
            progress: self.progress.clone(),
        }
    }

    /// Enters a joint configuration: the current voters become the outgoing
    /// half, `changes` are applied to the incoming half. Left automatically
    /// if `auto_leave`, otherwise by an explicit empty change.
    pub fn enter_joint(&self, auto_leave: bool, changes: &[ConfChangeSingle]) -> ConfChangeResult {
        if self.config.voters.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        let mut draft = self.draft();
        if draft.incoming.is_empty() {
            return Err(ConfChangeError::NoVotersToJoin);
        }
        draft.outgoing = draft.incoming.clone();
        self.apply(&mut draft, changes)?;
        draft.auto_leave = auto_leave;
        Ok(draft.finish())
    }

    /// Leaves the joint configuration: outgoing voters not in the incoming
    /// half are dropped (or become learners if so staged).
    pub fn leave_joint(&self) -> ConfChangeResult {
        if !self.config.voters.is_joint() {
            return Err(ConfChangeError::NotJoint);
        }
        let mut draft = self.draft();
        for id in std::mem::take(&mut draft.learners_next) {
            draft.learners.insert(id);
            if let Some(pr) = draft.progress.get_mut(&id) {
                pr.is_learner = true;
            }
        }
        for id in std::mem::take(&mut draft.outgoing) {
            if !draft.incoming.contains(&id) && !draft.learners.contains(&id) {
                draft.progress.remove(&id);
            }
        }
        draft.auto_leave = false;
        Ok(draft.finish())
    }

    /// Applies `changes` directly, which may move at most one voter.
    pub fn simple(&self, changes: &[ConfChangeSingle]) -> ConfChangeResult {
        if self.config.voters.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        let mut draft = self.draft();
        self.apply(&mut draft, changes)?;
        let before = self.config.voters.incoming().voters();
        if before.symmetric_difference(&draft.incoming).count() > 1 {
            return Err(ConfChangeError::TooManyVoterChanges);
        }
        Ok(draft.finish())
    }

    fn apply(
        &self,
        draft: &mut Draft,
        changes: &[ConfChangeSingle],
    ) -> Result<(), ConfChangeError> {
        for change in changes {
            // Node id 0 marks a change the application decided not to apply.
            if change.node_id == 0 {
                continue;
            }
            let change_type = ConfChangeType::try_from(change.change_type)
                .map_err(|_| ConfChangeError::UnknownChangeType(change.change_type))?;
            match change_type {
                ConfChangeType::ConfChangeAddNode => self.make_voter(draft, change.node_id),
                ConfChangeType::ConfChangeAddLearnerNode => {
                    self.make_learner(draft, change.node_id)
                }
                ConfChangeType::ConfChangeRemoveNode => remove(draft, change.node_id),
                ConfChangeType::ConfChangeUpdateNode => {}
            }
        }
        if draft.incoming.is_empty() {
            return Err(ConfChangeError::RemovesAllVoters);
        }
        Ok(())
    }

    fn new_progress(&self, is_learner: bool) -> Progress {
        // Probe from the last index: the follower answers with where its log
        // really ends. Recently active, so check-quorum does not count a
        // member that just joined as lost.
        let mut pr = Progress::new(
            self.last_index.max(1),
            self.max_inflight_msgs,
            self.max_inflight_bytes,
        );
        pr.is_learner = is_learner;
        pr.recent_active = true;
        pr
    }

    fn make_voter(&self, draft: &mut Draft, id: u64) {
        match draft.progress.get_mut(&id) {
            None => {
                draft.progress.insert(id, self.new_progress(false));
            }
            Some(pr) => pr.is_learner = false,
        }
        draft.learners.remove(&id);
        draft.learners_next.remove(&id);
        draft.incoming.insert(id);
    }

    fn make_learner(&self, draft: &mut Draft, id: u64) {
        let Some(pr) = draft.progress.get(&id) else {
            draft.progress.insert(id, self.new_progress(true));
            draft.learners.insert(id);
            return;
        };
        if pr.is_learner {
            return;
        }
        draft.incoming.remove(&id);
        draft.learners.remove(&id);
        draft.learners_next.remove(&id);
        if draft.outgoing.contains(&id) {
            // Still a voter of the outgoing half: it becomes a learner only
            // when the joint configuration is left.
            draft.learners_next.insert(id);
        } else {
            if let Some(pr) = draft.progress.get_mut(&id) {
                pr.is_learner = true;
            }
            draft.learners.insert(id);
        }
    }
}

fn remove(draft: &mut Draft, id: u64) {
    if !draft.progress.contains_key(&id) {
        return;
    }
    draft.incoming.remove(&id);
    draft.learners.remove(&id);
    draft.learners_next.remove(&id);
    // An outgoing voter keeps its progress until the joint config is left.
    if !draft.outgoing.contains(&id) {
        draft.progress.remove(&id);
    }
}

/// Why a configuration read from outside (a snapshot a peer sent) breaks
/// the tracker invariants [`check_invariants`] asserts, if it does: no
/// voter, a member id 0, a learner that is also a voter, a
/// `learners_next` member that is not an outgoing voter or already a
/// learner, or joint-only fields outside a joint configuration.
pub fn conf_state_fault(cs: &ConfState) -> Option<&'static str> {
    let voter = |id: &u64| cs.voters.contains(id) || cs.voters_outgoing.contains(id);
    let all = || {
        cs.voters
            .iter()
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners)
            .chain(&cs.learners_next)
    };
    if cs.voters.is_empty() {
        Some("no voters")
    } else if all().any(|&id| id == 0) {
        Some("member id 0")
    } else if cs.learners.iter().any(voter) {
        Some("a learner is also a voter")
    } else if cs
        .learners_next
        .iter()
        .any(|id| !cs.voters_outgoing.contains(id) || cs.learners.contains(id))
    {
        Some("learners_next holds a member that is not only an outgoing voter")
    } else if cs.voters_outgoing.is_empty() && (cs.auto_leave || !cs.learners_next.is_empty()) {
        Some("joint fields outside a joint configuration")
    } else {
        None
    }
}

/// Panics if `config` and `progress` break the tracker invariants: the
/// changer's own logic is wrong then (the input was checked before).
fn check_invariants(config: &TrackerConfig, progress: &BTreeMap<u64, Progress>) {
    for id in config
        .voters
        .ids()
        .iter()
        .chain(&config.learners)
        .chain(&config.learners_next)
    {
        assert!(progress.contains_key(id), "member {id} has no progress");
    }
    for id in &config.learners_next {
        assert!(
            config.voters.outgoing().contains(*id),
            "{id} is in learners_next but not an outgoing voter"
        );
        assert!(
            !progress[id].is_learner,
            "{id} in learners_next is already a learner"
        );
    }
    for id in &config.learners {
        assert!(
            !config.voters.outgoing().contains(*id) && !config.voters.incoming().contains(*id),
            "{id} is both learner and voter"
        );
        assert!(
            progress[id].is_learner,
            "learner {id} is not marked as learner"
        );
    }
    if !config.voters.is_joint() {
        assert!(
            config.learners_next.is_empty(),
            "learners_next outside a joint config"
        );
        assert!(!config.auto_leave, "auto_leave outside a joint config");
    }
}

/// A single-step change as the equivalent [`ConfChangeV2`].
pub fn conf_change_as_v2(cc: &ConfChange) -> ConfChangeV2 {
    ConfChangeV2 {
        transition: ConfChangeTransition::ConfChangeTransitionAuto as i32,
        changes: vec![ConfChangeSingle {
            change_type: cc.change_type,
            node_id: cc.node_id,
        }],
        context: cc.context.clone(),
    }
}

/// Whether `cc` asks to leave a joint configuration (it is empty).
pub fn leaves_joint(cc: &ConfChangeV2) -> bool {
    cc.changes.is_empty() && cc.transition == ConfChangeTransition::ConfChangeTransitionAuto as i32
}

/// Whether `cc` must go through a joint configuration, and if so whether it
/// is left automatically.
pub fn enters_joint(cc: &ConfChangeV2) -> Result<Option<bool>, ConfChangeError> {
    let transition = ConfChangeTransition::try_from(cc.transition)
        .map_err(|_| ConfChangeError::UnknownTransition(cc.transition))?;
    let joint =
        transition != ConfChangeTransition::ConfChangeTransitionAuto || cc.changes.len() > 1;
    if !joint {
        return Ok(None);
    }
    let auto_leave = matches!(
        transition,
        ConfChangeTransition::ConfChangeTransitionAuto
            | ConfChangeTransition::ConfChangeTransitionJointImplicit
    );
    Ok(Some(auto_leave))
}

#[cfg(test)]
mod tests;
