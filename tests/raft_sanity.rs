//! Smoke scenarios of the raft core through RawNode: single-node and
//! three-node elections, replication and commit with asynchronous
//! persistence.

mod support;

use ringraft::raft::StateRole;
use support::Network;

#[test]
fn single_node_elects_itself_and_commits() {
    let mut net = Network::new(&[1]);
    net.elect(1);
    assert_eq!(net.get(1).role(), StateRole::Leader);
    net.propose(1, b"hello");
    let node = net.get(1);
    assert_eq!(node.raw.raft.raft_log.committed, 2);
    assert_eq!(node.applied.get(&2), Some(&(1, b"hello".to_vec())));
}

#[test]
fn three_nodes_replicate_and_apply() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    assert_eq!(net.leaders(), vec![(1, 1)]);
    for i in 0..10u8 {
        net.propose(1, &[i]);
    }
    for id in [1, 2, 3] {
        let node = net.get(id);
        assert_eq!(node.raw.raft.raft_log.committed, 11, "node {id}");
        let proposals = node.applied.values().filter(|(_, d)| !d.is_empty());
        assert_eq!(proposals.count(), 10, "node {id}");
        assert_eq!(node.log_ids(), net.get(1).log_ids());
    }
}

#[test]
fn leader_does_not_commit_before_its_own_persistence_with_one_follower_down() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    let leader = net.node_mut(1);
    leader.raw.propose(b"x".to_vec()).expect("propose");
    assert!(leader.process_ready());
    // Leader's own Ready is not persisted; deliver its appends early (as
    // the §10.2.1 option would) to 2 and let 2 persist and answer.
    let ready = leader.unpersisted.front().expect("ready").clone();
    net.send(ready.append_messages.clone());
    while let Some(m) = net.in_flight.pop_front() {
        net.deliver(m);
    }
    let follower = net.node_mut(2);
    while follower.process_ready() {}
    let answers = follower.persist_all();
    net.send(answers);
    while let Some(m) = net.in_flight.pop_front() {
        net.deliver(m);
    }
    // 2 has it durably, 1 has not: {1,2} is a quorum only once 1 persists.
    assert_eq!(net.get(1).raw.raft.raft_log.committed, 1);
    let leader = net.node_mut(1);
    leader.persist_all();
    assert_eq!(leader.raw.raft.raft_log.committed, 2);
}
