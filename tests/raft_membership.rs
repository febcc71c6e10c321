//! Scenarios beyond replication: membership changes (single-step and joint),
//! learners, linearizable reads (ReadIndex, safe and lease-based) and
//! leadership transfer, on the in-memory network of RawNodes.

mod support;

use ringraft::raft::{
    Config, ConfigError, DropReason, MemoryStorage, RaftError, RawNode, ReadOnlyOption, StateRole,
    Storage,
};
use ringraft::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2,
};
use support::{Network, config};

fn single(change_type: ConfChangeType, node_id: u64) -> ConfChangeV2 {
    changes(
        ConfChangeTransition::ConfChangeTransitionAuto,
        &[(change_type, node_id)],
    )
}

fn changes(transition: ConfChangeTransition, list: &[(ConfChangeType, u64)]) -> ConfChangeV2 {
    ConfChangeV2 {
        transition: transition as i32,
        changes: list
            .iter()
            .map(|&(change_type, node_id)| ConfChangeSingle {
                change_type: change_type as i32,
                node_id,
            })
            .collect(),
        context: Vec::new(),
    }
}

use ConfChangeType::{ConfChangeAddLearnerNode, ConfChangeAddNode, ConfChangeRemoveNode};

/// Adds an empty node `id` that joins an existing cluster: no
/// configuration of its own, it learns it from the leader's log.
fn add_joining_node(net: &mut Network, id: u64) {
    net.nodes
        .insert(id, Network::node(&config(id), MemoryStorage::new()));
}

fn propose_change(net: &mut Network, at: u64, cc: &ConfChangeV2) {
    net.node_mut(at)
        .raw
        .propose_conf_change(cc)
        .expect("conf change accepted");
    net.stabilize();
}

fn voters(net: &Network, id: u64) -> Vec<u64> {
    net.get(id).raw.raft.conf_state().voters
}

fn committed(net: &Network, id: u64) -> u64 {
    net.get(id).raw.raft.raft_log.committed
}

/// Ticks until some node leads, returning it.
fn wait_for_leader(net: &mut Network) -> u64 {
    for _ in 0..200 {
        net.tick_all();
        net.stabilize();
        if let [(id, _)] = net.leaders()[..] {
            return id;
        }
    }
    panic!("no leader elected: {:?}", net.leaders());
}

/// Restart config for a node whose storage holds no snapshot: everything is
/// re-applied (as etcd's server restarts with `applied` = snapshot index).
fn restart_config(net: &Network, id: u64) -> Config {
    let mut c = config(id);
    c.applied = net
        .get(id)
        .raw
        .store()
        .snapshot(0)
        .expect("snapshot")
        .metadata
        .index;
    c
}

#[test]
fn add_voter_under_load() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"before");
    add_joining_node(&mut net, 4);
    net.node_mut(1)
        .raw
        .propose_conf_change(&single(ConfChangeAddNode, 4))
        .expect("accepted");
    // Proposals keep flowing while the change commits.
    for i in 0..5u8 {
        net.node_mut(1).raw.propose(vec![i]).expect("propose");
    }
    net.stabilize();
    for id in 1..=4 {
        assert_eq!(voters(&net, id), vec![1, 2, 3, 4], "node {id}");
    }
    assert_eq!(net.get(4).log_ids(), net.get(1).log_ids());
    // With 4 voters a quorum is 3: 1 and 4 alone cannot commit.
    net.isolate(2);
    net.isolate(3);
    let before = committed(&net, 1);
    net.node_mut(1).raw.propose(b"x".to_vec()).expect("propose");
    net.stabilize();
    assert_eq!(committed(&net, 1), before, "2 of 4 is not a quorum");
    net.heal();
    net.tick_and_stabilize(3);
    assert!(committed(&net, 1) > before);
}

#[test]
fn remove_voter_under_load_shrinks_quorum() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.node_mut(1)
        .raw
        .propose_conf_change(&single(ConfChangeRemoveNode, 3))
        .expect("accepted");
    for i in 0..5u8 {
        net.node_mut(1).raw.propose(vec![i]).expect("propose");
    }
    net.stabilize();
    assert_eq!(voters(&net, 1), vec![1, 2]);
    assert_eq!(voters(&net, 2), vec![1, 2]);
    // 3 is gone: 1 and 2 commit on their own, and 3's answers are ignored.
    net.isolate(3);
    let before = committed(&net, 1);
    net.propose(1, b"after");
    assert_eq!(committed(&net, 1), before + 1);
    assert!(!net.get(1).raw.raft.trk.progress().contains_key(&3));
}

#[test]
fn only_one_conf_change_may_be_pending() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    let raw = &mut net.node_mut(1).raw;
    raw.propose_conf_change(&single(ConfChangeAddNode, 4))
        .expect("first accepted");
    assert_eq!(
        raw.propose_conf_change(&single(ConfChangeAddNode, 5)),
        Err(RaftError::ProposalDropped(DropReason::ConfChangePending))
    );
    net.heal();
    net.stabilize();
    // Applied: the next one is accepted.
    net.node_mut(1)
        .raw
        .propose_conf_change(&single(ConfChangeAddLearnerNode, 5))
        .expect("accepted after the first applied");
}

#[test]
fn leave_joint_refused_outside_joint_and_change_refused_inside() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    let leave = ConfChangeV2::default();
    assert_eq!(
        net.node_mut(1).raw.propose_conf_change(&leave),
        Err(RaftError::ProposalDropped(DropReason::NotInJointConfig))
    );
    add_joining_node(&mut net, 4);
    let explicit = changes(
        ConfChangeTransition::ConfChangeTransitionJointExplicit,
        &[(ConfChangeAddNode, 4)],
    );
    propose_change(&mut net, 1, &explicit);
    assert!(net.get(1).raw.raft.trk.config().voters.is_joint());
    assert_eq!(
        net.node_mut(1)
            .raw
            .propose_conf_change(&single(ConfChangeAddNode, 5)),
        Err(RaftError::ProposalDropped(DropReason::JointConfigNotLeft))
    );
    // Explicit transition: stays joint until told.
    net.tick_and_stabilize(3);
    assert!(net.get(1).raw.raft.trk.config().voters.is_joint());
    propose_change(&mut net, 1, &leave);
    assert!(!net.get(1).raw.raft.trk.config().voters.is_joint());
    assert_eq!(voters(&net, 4), vec![1, 2, 3, 4]);
}

#[test]
fn joint_change_replacing_two_voters_survives_crash_of_node_1_in_joint_state() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"a");
    add_joining_node(&mut net, 4);
    add_joining_node(&mut net, 5);
    let cc = changes(
        ConfChangeTransition::ConfChangeTransitionJointExplicit,
        &[
            (ConfChangeAddNode, 4),
            (ConfChangeAddNode, 5),
            (ConfChangeRemoveNode, 2),
            (ConfChangeRemoveNode, 3),
        ],
    );
    propose_change(&mut net, 1, &cc);
    let trk_config = net.get(1).raw.raft.trk.config().to_string();
    assert_eq!(trk_config, "voters=(1 4 5)&&(1 2 3)");
    // In the joint state a commit needs majorities of both halves: {4, 5}
    // alone (with 1) is not enough without one of {2, 3}.
    net.isolate(2);
    net.isolate(3);
    let before = committed(&net, 1);
    net.node_mut(1)
        .raw
        .propose(b"joint".to_vec())
        .expect("propose");
    net.stabilize();
    assert_eq!(committed(&net, 1), before, "outgoing majority missing");
    net.heal();
    net.tick_and_stabilize(3);
    assert!(committed(&net, 1) > before);

    // Crash node 1 (the leader) while joint, and restart it.
    let restart = restart_config(&net, 1);
    net.restart(1, &restart);
    // As in etcd, the membership comes back by re-applying the committed
    // configuration entries after the last snapshot.
    net.flush(1);
    assert_eq!(
        net.get(1).raw.raft.trk.config().to_string(),
        "voters=(1 4 5)&&(1 2 3)",
        "the restarted node rebuilds the joint config from its log"
    );
    let leader = wait_for_leader(&mut net);
    // Leave the joint state at whichever node leads now.
    propose_change(&mut net, leader, &ConfChangeV2::default());
    for id in [1, 4, 5] {
        assert_eq!(voters(&net, id), vec![1, 4, 5], "node {id}");
        assert!(!net.get(id).raw.raft.trk.config().voters.is_joint());
    }
    // The new configuration makes progress without 2 and 3.
    net.isolate(2);
    net.isolate(3);
    let leader = wait_for_leader_among(&mut net, &[1, 4, 5]);
    let before = committed(&net, leader);
    net.propose(leader, b"new config");
    assert_eq!(committed(&net, leader), before + 1);
}

fn wait_for_leader_among(net: &mut Network, ids: &[u64]) -> u64 {
    for _ in 0..300 {
        net.tick_all();
        net.stabilize();
        let leaders: Vec<u64> = net
            .leaders()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| ids.contains(id))
            .collect();
        if let [id] = leaders[..] {
            let term = net.get(id).raw.raft.term;
            if net
                .leaders()
                .iter()
                .all(|&(other, t)| other == id || t < term)
            {
                return id;
            }
        }
    }
    panic!("no leader among {ids:?}: {:?}", net.leaders());
}

#[test]
fn auto_leave_joint_config() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    add_joining_node(&mut net, 4);
    let applied_before = net.get(2).conf_states.len();
    let cc = changes(
        ConfChangeTransition::ConfChangeTransitionAuto,
        &[(ConfChangeAddNode, 4), (ConfChangeRemoveNode, 3)],
    );
    propose_change(&mut net, 1, &cc);
    // The leader proposed the leave itself once the change was applied.
    assert!(!net.get(1).raw.raft.trk.config().voters.is_joint());
    assert_eq!(voters(&net, 1), vec![1, 2, 4]);
    assert_eq!(
        net.get(2).conf_states.len(),
        applied_before + 2,
        "enter and leave applied"
    );
}

#[test]
fn learner_receives_log_never_votes_and_is_promoted() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    add_joining_node(&mut net, 4);
    propose_change(&mut net, 1, &single(ConfChangeAddLearnerNode, 4));
    net.propose(1, b"for the learner");
    assert_eq!(net.get(4).log_ids(), net.get(1).log_ids());
    assert_eq!(net.get(4).raw.raft.conf_state().learners, vec![4]);
    // A learner never campaigns.
    for _ in 0..50 {
        net.node_mut(4).raw.tick();
    }
    net.stabilize();
    assert_eq!(net.get(4).role(), StateRole::Follower);
    // It does not count for commit: 1 and 4 are not a quorum of {1,2,3}.
    net.isolate(2);
    net.isolate(3);
    let before = committed(&net, 1);
    net.node_mut(1).raw.propose(b"x".to_vec()).expect("propose");
    net.stabilize();
    assert_eq!(committed(&net, 1), before);
    net.heal();
    net.stabilize();
    // Promotion keeps its progress and makes it count.
    propose_change(&mut net, 1, &single(ConfChangeAddNode, 4));
    assert_eq!(voters(&net, 4), vec![1, 2, 3, 4]);
    assert!(net.get(4).raw.raft.conf_state().learners.is_empty());
    net.isolate(3);
    let before = committed(&net, 1);
    net.propose(1, b"with 4 voting");
    assert_eq!(committed(&net, 1), before + 1, "1, 2, 4 of 4 voters");
}

#[test]
fn removing_the_leader_makes_it_step_down_and_others_elect() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    propose_change(&mut net, 1, &single(ConfChangeRemoveNode, 1));
    assert_ne!(net.get(1).role(), StateRole::Leader);
    assert_eq!(voters(&net, 2), vec![2, 3]);
    let leader = wait_for_leader_among(&mut net, &[2, 3]);
    net.propose(leader, b"after removal");
    assert!(
        net.get(2)
            .applied
            .values()
            .any(|(_, d)| d == b"after removal")
    );
    // The removed node cannot campaign.
    assert!(!net.get(1).raw.raft.promotable());
}

#[test]
fn proposals_forwarded_by_a_removed_node_are_ignored() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    propose_change(&mut net, 1, &single(ConfChangeRemoveNode, 3));
    // 3 still believes 1 leads; its forwarded proposal is dropped.
    let before = net.get(1).raw.raft.raft_log.last_index();
    let _ = net.node_mut(3).raw.propose(b"from removed".to_vec());
    net.stabilize();
    assert_eq!(net.get(1).raw.raft.raft_log.last_index(), before);
}

#[test]
fn v1_conf_change_adds_a_node() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    add_joining_node(&mut net, 4);
    let cc = ConfChange {
        id: 1,
        change_type: ConfChangeAddNode as i32,
        node_id: 4,
        context: Vec::new(),
    };
    net.node_mut(1)
        .raw
        .propose_conf_change_v1(&cc)
        .expect("accepted");
    net.stabilize();
    assert_eq!(voters(&net, 4), vec![1, 2, 3, 4]);
}

#[test]
fn read_index_on_leader_after_heartbeat_quorum() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"x");
    let commit = committed(&net, 1);
    net.node_mut(1)
        .raw
        .read_index(b"r1".to_vec())
        .expect("read");
    // Not answered until a quorum acknowledged the heartbeat round.
    net.flush(1);
    assert!(net.get(1).read_states.is_empty());
    net.stabilize();
    let states = &net.get(1).read_states;
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].request_ctx, b"r1");
    assert_eq!(states[0].index, commit);
}

#[test]
fn read_index_from_follower_is_answered_through_the_leader() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"x");
    let commit = committed(&net, 1);
    net.node_mut(2).raw.read_index(b"f".to_vec()).expect("read");
    net.stabilize();
    let states = &net.get(2).read_states;
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].index, commit);
    assert!(net.get(1).read_states.is_empty());
}

#[test]
fn read_index_without_leader_is_refused() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    assert_eq!(
        net.node_mut(2).raw.read_index(b"r".to_vec()),
        Err(RaftError::ProposalDropped(DropReason::NoLeader))
    );
}

#[test]
fn read_index_waits_for_an_entry_of_the_leaders_term() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"x");
    // Node 2 takes over; hold back everything 2 sends until the read is in.
    net.node_mut(2).raw.campaign().expect("campaign");
    net.stabilize_with(|m| !(m.from == 2 && m.msg_type() == ringraft::raftpb::MessageType::MsgApp));
    assert_eq!(net.get(2).role(), StateRole::Leader);
    assert!(net.get(2).raw.raft.raft_log.committed < net.get(2).raw.raft.raft_log.last_index());
    net.node_mut(2)
        .raw
        .read_index(b"early".to_vec())
        .expect("read queued");
    net.flush(2);
    assert!(
        net.get(2).read_states.is_empty(),
        "no answer before the leader's empty entry commits"
    );
    net.tick_and_stabilize(2);
    let states = &net.get(2).read_states;
    assert_eq!(states.len(), 1);
    assert!(states[0].index >= net.get(2).raw.raft.raft_log.committed);
    assert_eq!(
        net.get(2).raw.raft.raft_log.term(states[0].index),
        Ok(net.get(2).raw.raft.term)
    );
}

#[test]
fn read_on_isolated_old_leader_is_never_answered_with_stale_data() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"old");
    net.isolate(1);
    let new_leader = wait_for_leader_among(&mut net, &[2, 3]);
    net.propose(new_leader, b"acknowledged write");
    let acknowledged = committed(&net, new_leader);
    // The old leader still thinks it leads, but cannot confirm it.
    assert_eq!(net.get(1).role(), StateRole::Leader);
    net.node_mut(1)
        .raw
        .read_index(b"stale?".to_vec())
        .expect("queued");
    for _ in 0..5 {
        net.tick_all();
        net.stabilize();
    }
    assert!(
        net.get(1).read_states.is_empty(),
        "no answer while isolated"
    );
    net.heal();
    net.tick_and_stabilize(5);
    // Any answer that ever arrives must cover the acknowledged write.
    for id in 1..=3 {
        for state in &net.get(id).read_states {
            assert!(state.index >= acknowledged, "node {id}: {state:?}");
        }
    }
}

#[test]
fn lease_reads_require_check_quorum() {
    let mut c = config(1);
    c.read_only = ReadOnlyOption::LeaseBased;
    let storage = MemoryStorage::new();
    assert!(matches!(
        RawNode::new(&c, storage).err(),
        Some(RaftError::Config(ConfigError::LeaseWithoutCheckQuorum))
    ));
}

#[test]
fn lease_read_is_answered_without_a_heartbeat_round() {
    let mut net = Network::with_config(&[1, 2, 3], |id| {
        let mut c = config(id);
        c.check_quorum = true;
        c.read_only = ReadOnlyOption::LeaseBased;
        c
    });
    net.elect(1);
    net.propose(1, b"x");
    // One heartbeat round establishes the lease.
    net.tick_and_stabilize(1);
    net.node_mut(1)
        .raw
        .read_index(b"lease".to_vec())
        .expect("read");
    net.flush(1);
    assert!(net.in_flight.is_empty(), "no heartbeat round needed");
    assert_eq!(net.get(1).read_states.len(), 1);
    assert_eq!(net.get(1).read_states[0].index, committed(&net, 1));
}

/// Three bootstrapped voters with check-quorum, and `leases` set on each.
fn check_quorum_network(leases: fn(&mut Config)) -> Network {
    Network::bootstrapped(&[1, 2, 3], |id| {
        let mut c = config(id);
        c.check_quorum = true;
        leases(&mut c);
        c
    })
}

/// A cluster whose leases are honoured but whose default reads stay safe
/// (`lease_reads`): each read chooses.
fn per_read_lease_network() -> Network {
    check_quorum_network(|c| c.lease_reads = true)
}

#[test]
fn lease_reads_option_requires_check_quorum() {
    let mut c = config(1);
    c.lease_reads = true;
    assert!(matches!(
        RawNode::new(&c, MemoryStorage::new()).err(),
        Some(RaftError::Config(ConfigError::LeaseWithoutCheckQuorum))
    ));
}

#[test]
fn with_lease_reads_a_read_chooses_lease_or_heartbeat_round() {
    let mut net = per_read_lease_network();
    net.elect(1);
    net.propose(1, b"x");
    net.tick_and_stabilize(1);
    // A lease read is answered at once.
    net.node_mut(1)
        .raw
        .read_index_by_lease(b"lease".to_vec())
        .expect("read");
    net.flush(1);
    assert!(net.in_flight.is_empty(), "no heartbeat round needed");
    assert_eq!(net.get(1).read_states.len(), 1);
    assert_eq!(net.get(1).read_states[0].index, committed(&net, 1));
    net.node_mut(1).read_states.clear();
    // A plain read index still confirms with a heartbeat round.
    net.node_mut(1)
        .raw
        .read_index(b"safe".to_vec())
        .expect("read");
    net.flush(1);
    assert!(
        net.get(1).read_states.is_empty(),
        "not answered before the round"
    );
    assert!(net.in_flight.iter().any(
        |m| m.context == b"safe" && m.msg_type() == ringraft::raftpb::MessageType::MsgHeartbeat
    ));
    net.stabilize();
    assert_eq!(net.get(1).read_states.len(), 1);
}

#[test]
fn a_lease_read_without_lease_or_on_a_follower_falls_back_to_read_index() {
    let mut net = per_read_lease_network();
    net.elect(1);
    // No acknowledged heartbeat yet: no lease, a round is needed.
    net.node_mut(1)
        .raw
        .read_index_by_lease(b"early".to_vec())
        .expect("read");
    net.flush(1);
    assert!(net.get(1).read_states.is_empty());
    net.stabilize();
    assert_eq!(net.get(1).read_states.len(), 1);
    // A follower forwards it to the leader like any read.
    net.node_mut(2)
        .raw
        .read_index_by_lease(b"follower".to_vec())
        .expect("read");
    net.flush(2);
    assert!(net.get(2).read_states.is_empty());
    net.stabilize();
    assert_eq!(net.get(2).read_states.len(), 1);
    assert_eq!(net.get(2).read_states[0].request_ctx, b"follower");
}

#[test]
fn without_leases_a_lease_read_is_a_plain_read_index() {
    let mut net = check_quorum_network(|_| {});
    net.elect(1);
    net.propose(1, b"x");
    net.tick_and_stabilize(1);
    net.node_mut(1)
        .raw
        .read_index_by_lease(b"no-lease".to_vec())
        .expect("read");
    net.flush(1);
    assert!(
        net.get(1).read_states.is_empty(),
        "leases are not honoured here"
    );
    net.stabilize();
    assert_eq!(net.get(1).read_states.len(), 1);
}

fn lease_network() -> Network {
    check_quorum_network(|c| c.read_only = ReadOnlyOption::LeaseBased)
}

#[test]
fn lease_read_before_any_acknowledged_heartbeat_confirms_with_a_round() {
    let mut net = lease_network();
    net.elect(1);
    net.node_mut(1)
        .raw
        .read_index(b"early".to_vec())
        .expect("read");
    net.flush(1);
    assert!(net.get(1).read_states.is_empty());
    assert!(
        net.in_flight.iter().any(|m| m.context == b"early"
            && m.msg_type() == ringraft::raftpb::MessageType::MsgHeartbeat)
    );
    net.stabilize();
    assert_eq!(net.get(1).read_states.len(), 1);
}

#[test]
fn lease_expires_before_followers_stop_honouring_it() {
    let mut net = lease_network();
    net.elect(1);
    net.tick_and_stabilize(1);
    net.isolate(1);
    // election_tick is 10: the lease covers 8 of the leader's ticks after
    // the last acknowledged heartbeat was sent (less than 9 tick periods,
    // while a follower ignores votes for at least 9 after receiving it).
    for ticks in 1..=10 {
        net.node_mut(1).raw.tick();
        net.stabilize();
        net.node_mut(1)
            .raw
            .read_index(format!("t{ticks}").into_bytes())
            .expect("read");
        net.flush(1);
        let answered = net.get(1).read_states.len();
        if ticks <= 8 {
            assert_eq!(answered, ticks, "lease still held after {ticks} ticks");
        } else {
            assert_eq!(answered, 8, "lease must have expired after {ticks} ticks");
        }
    }
    // Meanwhile no follower has voted for anyone while the lease held.
    assert_eq!(net.get(2).raw.raft.vote, 1);
}

#[test]
fn transfer_to_up_to_date_follower() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.propose(1, b"x");
    let term = net.get(1).raw.raft.term;
    net.node_mut(1).raw.transfer_leader(2);
    net.stabilize();
    assert_eq!(net.get(2).role(), StateRole::Leader);
    assert_eq!(net.get(2).raw.raft.term, term + 1);
    assert_eq!(net.get(1).role(), StateRole::Follower);
    assert_eq!(net.get(1).raw.raft.lead, 2);
}

#[test]
fn transfer_to_lagging_follower_catches_it_up_first() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.isolate(3);
    for i in 0..5u8 {
        net.propose(1, &[i]);
    }
    net.heal();
    net.node_mut(1).raw.transfer_leader(3);
    // While the transfer is under way, proposals are refused.
    assert_eq!(
        net.node_mut(1).raw.propose(b"during".to_vec()),
        Err(RaftError::ProposalDropped(
            DropReason::LeaderTransferInProgress
        ))
    );
    net.stabilize();
    assert_eq!(net.get(3).role(), StateRole::Leader);
    assert_eq!(net.get(3).log_ids()[..7], net.get(1).log_ids()[..7]);
}

#[test]
fn transfer_to_unreachable_follower_is_aborted_after_election_timeout() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    net.isolate(3);
    net.node_mut(1).raw.transfer_leader(3);
    net.stabilize();
    assert_eq!(net.get(1).raw.raft.lead_transferee, 3);
    for _ in 0..10 {
        net.node_mut(1).raw.tick();
        net.stabilize();
    }
    assert_eq!(net.get(1).raw.raft.lead_transferee, 0);
    assert_eq!(net.get(1).role(), StateRole::Leader);
    net.propose(1, b"accepted again");
}

#[test]
fn transfer_to_learner_or_self_is_ignored() {
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    add_joining_node(&mut net, 4);
    propose_change(&mut net, 1, &single(ConfChangeAddLearnerNode, 4));
    net.node_mut(1).raw.transfer_leader(4);
    assert_eq!(net.get(1).raw.raft.lead_transferee, 0);
    net.node_mut(1).raw.transfer_leader(1);
    assert_eq!(net.get(1).raw.raft.lead_transferee, 0);
    net.stabilize();
    assert_eq!(net.get(1).role(), StateRole::Leader);
}

#[test]
fn forget_leader_lets_a_follower_vote_at_once() {
    let mut net = Network::with_config(&[1, 2, 3], |id| {
        let mut c = config(id);
        c.check_quorum = true;
        c
    });
    net.elect(1);
    net.node_mut(2).raw.forget_leader();
    assert_eq!(net.get(2).raw.raft.lead, 0);
    // With lease reads the leader may not be forgotten.
    let mut lease = Network::with_config(&[1, 2, 3], |id| {
        let mut c = config(id);
        c.check_quorum = true;
        c.read_only = ReadOnlyOption::LeaseBased;
        c
    });
    lease.elect(1);
    lease.node_mut(2).raw.forget_leader();
    assert_eq!(lease.get(2).raw.raft.lead, 1);
}

// ---------------------------------------------------------------------------
// Regressions for core bugs found by the randomized test
// (tests/raft_random.rs, `random_membership_*` and `random_lease_reads`).

/// Node 1 leads {1,2}, proposes its own removal and then one more entry.
/// Node 2 receives the removal, never the entry after it, and does not
/// learn that the removal committed before 1 applies it.
fn removed_leader_with_a_longer_log() -> Network {
    let mut net = Network::bootstrapped(&[1, 2], config);
    net.elect(1);
    let leader = &mut net.node_mut(1).raw;
    leader
        .propose_conf_change(&single(ConfChangeRemoveNode, 1))
        .expect("accepted");
    leader.propose(b"only on 1".to_vec()).expect("accepted");
    net.stabilize_with(|m| !(m.to == 2 && m.entries.iter().any(|e| e.data == b"only on 1"[..])));
    assert_eq!(voters(&net, 1), vec![2], "1 applied its removal");
    assert_eq!(voters(&net, 2), vec![1, 2], "2 has not");
    net
}

/// Seed 1 of `random_membership_3_nodes` (before the fix): a leader that
/// applied its own removal stepped down at once. Node 2, which has not
/// learned that the removal committed, still counts {1,2} and needs 1's
/// vote; 1 refuses it while its log is longer, and as a non-member never
/// campaigns itself: the group stalled for good. The removed leader now
/// keeps replicating (refusing proposals) until a voter has its whole log.
#[test]
fn removed_leader_hands_over_until_a_voter_has_its_log() {
    let mut net = removed_leader_with_a_longer_log();
    assert_eq!(net.get(1).role(), StateRole::Leader, "1 is handing over");
    assert_eq!(
        net.node_mut(1).raw.propose(b"refused".to_vec()),
        Err(RaftError::ProposalDropped(DropReason::NotInConfiguration))
    );
    let leader = wait_for_leader_among(&mut net, &[2]);
    assert_eq!(leader, 2);
    assert_ne!(net.get(1).role(), StateRole::Leader);
    assert_eq!(voters(&net, 2), vec![2]);
    net.propose(2, b"after");
    assert!(net.get(2).applied.values().any(|(_, d)| d == b"only on 1"));
}

/// Seed 126 of `random_membership_3_nodes` (before the fix): a leader
/// that is not a voter of its single-voter configuration answered reads
/// alone (the singleton shortcut), while that voter already led a later
/// term and had committed more.
#[test]
fn removed_leader_does_not_answer_reads_alone_for_the_single_voter() {
    let mut net = removed_leader_with_a_longer_log();
    assert_eq!(net.get(1).role(), StateRole::Leader);
    net.node_mut(1)
        .raw
        .read_index(b"alone?".to_vec())
        .expect("read");
    net.flush(1);
    assert!(
        net.get(1).read_states.is_empty(),
        "answered without confirming with the only voter"
    );
}

/// Seed 119 of `random_membership_3_nodes` (before the fix): a follower
/// handed out a committed configuration change for application, then
/// installed a snapshot (and its configuration) before the application
/// applied the change; applying it then changed a configuration that
/// already included it. The snapshot is now refused until the change is
/// applied.
#[test]
fn snapshot_waits_for_configuration_changes_being_applied() {
    use prost::Message as _;
    use ringraft::raftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
    let conf_state = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let mut raw =
        RawNode::new(&config(2), MemoryStorage::new_with_conf_state(conf_state)).expect("node");
    let add_learner = single(ConfChangeAddLearnerNode, 4);
    let append = Message {
        msg_type: MessageType::MsgApp as i32,
        from: 1,
        to: 2,
        term: 1,
        commit: 1,
        entries: vec![Entry {
            entry_type: EntryType::EntryConfChangeV2 as i32,
            term: 1,
            index: 1,
            data: add_learner.encode_to_vec().into(),
        }],
        ..Default::default()
    };
    raw.step(append).expect("append");
    // Persist the entry, then hand out the committed change (not applied).
    let mut handed_out = None;
    while raw.has_ready() {
        let ready = raw.ready();
        raw.advance_append_async(&ready);
        let store = raw.store_mut();
        store.append(&ready.entries).expect("append");
        if let Some(hs) = ready.hard_state {
            store.set_hard_state(hs);
        }
        raw.on_persisted(ready.number);
        if !ready.committed_entries.is_empty() {
            handed_out = Some(ready.committed_entries);
            break;
        }
    }
    assert_eq!(handed_out.expect("committed change handed out").len(), 1);
    let mut snapshot = Snapshot::default();
    snapshot.metadata.index = 5;
    snapshot.metadata.term = 1;
    snapshot.metadata.conf_state = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..Default::default()
    };
    let snap = Message {
        msg_type: MessageType::MsgSnap as i32,
        from: 1,
        to: 2,
        term: 1,
        snapshot: Some(snapshot),
        ..Default::default()
    };
    raw.step(snap.clone()).expect("snapshot");
    assert!(
        raw.raft.raft_log.unstable.snapshot.is_none(),
        "snapshot installed while a configuration change is being applied"
    );
    assert_eq!(raw.raft.conf_state().learners, Vec::<u64>::new());
    // Once the application has applied the change, the snapshot goes in.
    let cs = raw.apply_conf_change(&add_learner).expect("applies");
    assert_eq!(cs.learners, vec![4]);
    raw.advance_apply(1);
    raw.step(snap).expect("snapshot");
    assert!(raw.raft.raft_log.unstable.snapshot.is_some());
}

/// Seed 1233 of `random_membership_3_nodes` (before the fix): a learner
/// whose term a vote request raised (from a removed node with an old
/// configuration) ignored the leader of the lower term without a word
/// (neither pre-vote nor check-quorum), and as a learner it never
/// campaigns: it never heard from a leader again. It now answers with its
/// term, so the leader steps down and the next one includes it.
#[test]
fn learner_with_a_higher_term_brings_the_leader_up_to_it() {
    use ringraft::raftpb::{Message, MessageType};
    let mut net = Network::bootstrapped(&[1, 2, 3], config);
    net.elect(1);
    add_joining_node(&mut net, 4);
    propose_change(&mut net, 1, &single(ConfChangeAddLearnerNode, 4));
    let term = net.get(1).raw.raft.term;
    let vote = Message {
        msg_type: MessageType::MsgVote as i32,
        from: 3,
        to: 4,
        term: term + 5,
        ..Default::default()
    };
    net.node_mut(4).raw.step(vote).expect("vote request");
    assert_eq!(net.get(4).raw.raft.term, term + 5);
    // The candidate is gone: nobody else learns the term from 4's answer.
    net.stabilize_with(|m| m.msg_type() != MessageType::MsgVoteResp);
    for _ in 0..100 {
        net.tick_all();
        net.stabilize();
    }
    let leader = wait_for_leader(&mut net);
    assert!(net.get(leader).raw.raft.term > term + 5);
    net.propose(leader, b"reaches the learner");
    assert!(
        net.get(4)
            .applied
            .values()
            .any(|(_, d)| d == b"reaches the learner")
    );
}

/// Found while adding lease reads to the randomized test: a follower that
/// acknowledged the leader's heartbeat and then restarts has forgotten it
/// (no leader, election timer at zero). Were it to grant its vote at once, a
/// new leader could commit while the old leader's lease, which counted that
/// acknowledgement, still holds (etcd's lease reads have this gap). A node
/// restarted with lease reads on refuses votes for its first election
/// timeout, so the old leader's answers never miss an acknowledged write.
#[test]
fn lease_read_after_a_follower_restart_is_not_stale() {
    let mut net = lease_network();
    net.elect(1);
    net.propose(1, b"x");
    // 3 is cut off from 1 (not from 2); every clock ticks together, until
    // 3 is one tick away from campaigning.
    net.cut_link(1, 3);
    for _ in 0..200 {
        let r = &net.get(3).raw.raft;
        if r.state == StateRole::Follower
            && r.election_elapsed() + 1 == r.randomized_election_timeout()
        {
            break;
        }
        net.tick_all();
        net.stabilize();
    }
    // 2 acknowledged 1's last heartbeat; now 1 is cut off and 2 restarts.
    net.isolate(1);
    let mut restart = restart_config(&net, 2);
    restart.check_quorum = true;
    restart.read_only = ReadOnlyOption::LeaseBased;
    net.restart(2, &restart);
    // Each tick: whoever leads among 2 and 3 writes; 1 tries a lease read.
    let mut acknowledged_at_request = std::collections::BTreeMap::new();
    let mut new_leader_wrote = false;
    for tick in 0..40u32 {
        net.tick_all();
        net.stabilize();
        for id in [2, 3] {
            if net.get(id).role() == StateRole::Leader {
                net.propose(id, format!("w{tick}").as_bytes());
                new_leader_wrote = true;
            }
        }
        let acknowledged = committed(&net, 2).max(committed(&net, 3));
        let context = format!("r{tick}").into_bytes();
        acknowledged_at_request.insert(context.clone(), acknowledged);
        if net.get(1).role() == StateRole::Leader {
            net.node_mut(1).raw.read_index(context).expect("read");
            net.flush(1);
        }
    }
    assert!(
        new_leader_wrote,
        "2 and 3 elect a leader once the lease ran out"
    );
    for state in &net.get(1).read_states {
        let acknowledged = acknowledged_at_request[&state.request_ctx];
        assert!(
            state.index >= acknowledged,
            "lease read at the old leader answered with {} < {acknowledged}",
            state.index
        );
    }
}
