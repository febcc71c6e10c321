//! Membership change rules: simple changes, joint consensus, learners.

use super::*;
use crate::raft::NO_LIMIT;
use crate::raft::raft::tracker_from_conf_state;
use crate::raftpb::ConfState;

fn add(id: u64) -> ConfChangeSingle {
    change(ConfChangeType::ConfChangeAddNode, id)
}

fn add_learner(id: u64) -> ConfChangeSingle {
    change(ConfChangeType::ConfChangeAddLearnerNode, id)
}

fn remove_node(id: u64) -> ConfChangeSingle {
    change(ConfChangeType::ConfChangeRemoveNode, id)
}

fn change(change_type: ConfChangeType, node_id: u64) -> ConfChangeSingle {
    ConfChangeSingle {
        change_type: change_type as i32,
        node_id,
    }
}

struct State {
    config: TrackerConfig,
    progress: BTreeMap<u64, Progress>,
}

impl State {
    fn new(voters: &[u64], learners: &[u64]) -> State {
        let (config, progress) = tracker_from_conf_state(
            &ConfState {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                ..Default::default()
            },
            1,
            16,
            NO_LIMIT,
        );
        State { config, progress }
    }

    fn changer(&self) -> Changer<'_> {
        Changer {
            config: &self.config,
            progress: &self.progress,
            last_index: 10,
            max_inflight_msgs: 16,
            max_inflight_bytes: NO_LIMIT,
        }
    }

    fn set(&mut self, result: ConfChangeResult) {
        let (config, progress) = result.expect("change accepted");
        self.config = config;
        self.progress = progress;
    }

    fn show(&self) -> String {
        self.config.to_string()
    }
}

#[test]
fn simple_add_voter() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().simple(&[add(4)]));
    assert_eq!(s.config.voters.incoming().len(), 4);
    let pr = &s.progress[&4];
    assert!(!pr.is_learner);
    assert_eq!(
        pr.next_idx, 10,
        "new members are probed from the last index"
    );
    assert!(pr.recent_active);
}

#[test]
fn simple_add_learner_then_promote() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().simple(&[add_learner(4)]));
    assert!(s.config.learners.contains(&4));
    assert!(s.progress[&4].is_learner);
    s.progress.get_mut(&4).expect("4").matched = 7;
    s.set(s.changer().simple(&[add(4)]));
    assert!(s.config.learners.is_empty());
    assert!(s.config.voters.incoming().contains(4));
    assert!(!s.progress[&4].is_learner);
    assert_eq!(s.progress[&4].matched, 7, "promotion keeps progress");
}

#[test]
fn simple_demote_voter_to_learner() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().simple(&[add_learner(3)]));
    assert_eq!(s.show(), "voters=(1 2) learners=(3)");
    assert!(s.progress[&3].is_learner);
}

#[test]
fn simple_remove_voter_and_learner() {
    let mut s = State::new(&[1, 2, 3], &[4]);
    s.set(s.changer().simple(&[remove_node(3)]));
    s.set(s.changer().simple(&[remove_node(4)]));
    assert_eq!(s.show(), "voters=(1 2)");
    assert!(!s.progress.contains_key(&3));
    assert!(!s.progress.contains_key(&4));
    // Removing an unknown node changes nothing.
    s.set(s.changer().simple(&[remove_node(9)]));
    assert_eq!(s.show(), "voters=(1 2)");
}

#[test]
fn simple_refuses_two_voter_changes() {
    let s = State::new(&[1, 2, 3], &[]);
    assert_eq!(
        s.changer().simple(&[add(4), add(5)]).err(),
        Some(ConfChangeError::TooManyVoterChanges)
    );
    assert_eq!(
        s.changer().simple(&[add(4), remove_node(1)]).err(),
        Some(ConfChangeError::TooManyVoterChanges)
    );
    // A learner change alongside one voter change is fine.
    assert!(s.changer().simple(&[add(4), add_learner(5)]).is_ok());
}

#[test]
fn removing_the_last_voter_is_refused() {
    let s = State::new(&[1], &[]);
    assert_eq!(
        s.changer().simple(&[remove_node(1)]).err(),
        Some(ConfChangeError::RemovesAllVoters)
    );
}

#[test]
fn node_id_zero_is_skipped() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().simple(&[add(0)]));
    assert_eq!(s.show(), "voters=(1 2 3)");
}

#[test]
fn unknown_change_type_is_refused() {
    let s = State::new(&[1, 2, 3], &[]);
    let bad = ConfChangeSingle {
        change_type: 42,
        node_id: 4,
    };
    assert_eq!(
        s.changer().simple(&[bad]).err(),
        Some(ConfChangeError::UnknownChangeType(42))
    );
}

#[test]
fn joint_change_replaces_three_voters() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(
        s.changer()
            .enter_joint(false, &[add(4), add(5), remove_node(2), remove_node(3)]),
    );
    assert_eq!(s.show(), "voters=(1 4 5)&&(1 2 3)");
    assert!(s.progress.contains_key(&2), "outgoing voters keep progress");
    s.set(s.changer().leave_joint());
    assert_eq!(s.show(), "voters=(1 4 5)");
    let ids: Vec<u64> = s.progress.keys().copied().collect();
    assert_eq!(ids, vec![1, 4, 5]);
}

#[test]
fn joint_demotion_goes_through_learners_next() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().enter_joint(true, &[add_learner(3)]));
    assert_eq!(
        s.show(),
        "voters=(1 2)&&(1 2 3) learners_next=(3) autoleave"
    );
    assert!(
        !s.progress[&3].is_learner,
        "still votes in the outgoing half"
    );
    s.set(s.changer().leave_joint());
    assert_eq!(s.show(), "voters=(1 2) learners=(3)");
    assert!(s.progress[&3].is_learner);
}

#[test]
fn joint_refuses_nesting_and_simple_changes() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().enter_joint(false, &[add(4)]));
    assert_eq!(
        s.changer().enter_joint(false, &[add(5)]).err(),
        Some(ConfChangeError::AlreadyJoint)
    );
    assert_eq!(
        s.changer().simple(&[add(5)]).err(),
        Some(ConfChangeError::AlreadyJoint)
    );
}

#[test]
fn leaving_a_non_joint_config_is_refused() {
    let s = State::new(&[1, 2, 3], &[]);
    assert_eq!(
        s.changer().leave_joint().err(),
        Some(ConfChangeError::NotJoint)
    );
}

#[test]
fn joint_without_voters_is_refused() {
    let s = State::new(&[], &[]);
    assert_eq!(
        s.changer().enter_joint(false, &[add(1)]).err(),
        Some(ConfChangeError::NoVotersToJoin)
    );
}

#[test]
fn readding_a_removed_outgoing_voter_in_joint() {
    let mut s = State::new(&[1, 2, 3], &[]);
    s.set(s.changer().enter_joint(false, &[remove_node(3), add(3)]));
    assert_eq!(s.show(), "voters=(1 2 3)&&(1 2 3)");
    s.set(s.changer().leave_joint());
    assert_eq!(s.show(), "voters=(1 2 3)");
    assert!(s.progress.contains_key(&3));
}

#[test]
fn classifying_conf_change_v2() {
    let v2 = |transition: ConfChangeTransition, changes: Vec<ConfChangeSingle>| ConfChangeV2 {
        transition: transition as i32,
        changes,
        context: vec![],
    };
    use ConfChangeTransition::*;
    assert_eq!(
        enters_joint(&v2(ConfChangeTransitionAuto, vec![add(4)])),
        Ok(None)
    );
    assert_eq!(
        enters_joint(&v2(ConfChangeTransitionAuto, vec![add(4), add(5)])),
        Ok(Some(true))
    );
    assert_eq!(
        enters_joint(&v2(ConfChangeTransitionJointImplicit, vec![add(4)])),
        Ok(Some(true))
    );
    assert_eq!(
        enters_joint(&v2(ConfChangeTransitionJointExplicit, vec![add(4)])),
        Ok(Some(false))
    );
    assert!(leaves_joint(&v2(ConfChangeTransitionAuto, vec![])));
    assert!(!leaves_joint(&v2(
        ConfChangeTransitionJointExplicit,
        vec![]
    )));
    assert!(!leaves_joint(&v2(ConfChangeTransitionAuto, vec![add(4)])));
    let bad = ConfChangeV2 {
        transition: 9,
        ..Default::default()
    };
    assert_eq!(
        enters_joint(&bad),
        Err(ConfChangeError::UnknownTransition(9))
    );
}

#[test]
fn v1_change_converts_to_v2() {
    let cc = ConfChange {
        id: 3,
        change_type: ConfChangeType::ConfChangeRemoveNode as i32,
        node_id: 7,
        context: b"ctx".to_vec(),
    };
    let v2 = conf_change_as_v2(&cc);
    assert_eq!(v2.changes, vec![remove_node(7)]);
    assert_eq!(v2.context, b"ctx");
    assert_eq!(enters_joint(&v2), Ok(None));
}
