//! Scenario tests derived from the raft paper's rules (§5, §9.6, Figure 7,
//! Figure 8) and from etcd's behaviour, run on the in-memory network of
//! RawNodes with asynchronous persistence: election safety, the vote
//! restriction, log matching, leader completeness, the commit rule for
//! entries of earlier terms, fast backtracking, flow control, snapshots,
//! pre-vote, check-quorum, proposal dropping and pipelined Readies.

mod support;

use ringraft::raft::progress::{Progress, ProgressState};
use ringraft::raft::raft::{CAMPAIGN_TRANSFER, Rng};
use ringraft::raft::{Config, DropReason, RaftError, SnapshotStatus, StateRole, Storage};
use ringraft::raftpb::{Entry, Message, MessageType};
use std::collections::{BTreeMap, BTreeSet};
use support::{Network, config, is, storage_with_log};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The scenario config changed by `change`.
fn config_with(change: impl Fn(&mut Config)) -> impl Fn(u64) -> Config {
    move |id| {
        let mut c = config(id);
        change(&mut c);
        c
    }
}

fn term(net: &Network, id: u64) -> u64 {
    net.get(id).raw.raft.term
}

fn committed(net: &Network, id: u64) -> u64 {
    net.get(id).raw.raft.raft_log.committed
}

fn last_index(net: &Network, id: u64) -> u64 {
    net.get(id).raw.raft.raft_log.last_index()
}

fn log_terms(net: &Network, id: u64) -> Vec<u64> {
    net.get(id).log_ids().iter().map(|&(_, t)| t).collect()
}

/// The leader's record of `id`.
fn progress(net: &Network, leader: u64, id: u64) -> Progress {
    net.get(leader)
        .raw
        .raft
        .trk
        .get(id)
        .expect("tracked peer")
        .clone()
}

/// `count` entries of term `t`.
fn run(t: u64, count: usize) -> Vec<u64> {
    vec![t; count]
}

/// A message of type `t` from `from` to `to` in `term`.
fn msg(t: MessageType, from: u64, to: u64, term: u64) -> Message {
    Message {
        msg_type: t as i32,
        from,
        to,
        term,
        ..Default::default()
    }
}

/// A vote request from a candidate whose log ends at (`index`, `log_term`).
fn vote_request(from: u64, to: u64, term: u64, index: u64, log_term: u64) -> Message {
    Message {
        index,
        log_term,
        ..msg(MessageType::MsgVote, from, to, term)
    }
}

/// Vote responses in `messages`, as (to, granted).
fn vote_responses(messages: &[Message]) -> Vec<(u64, bool)> {
    messages
        .iter()
        .filter(|m| is(m, MessageType::MsgVoteResp))
        .map(|m| (m.to, !m.reject))
        .collect()
}

/// Ticks and stabilizes until some node leads in a term above `above`;
/// returns that (leader, term). Panics after `max_rounds`.
fn elect_by_ticks(net: &mut Network, above: u64, max_rounds: usize) -> (u64, u64) {
    for _ in 0..max_rounds {
        net.tick_all();
        net.stabilize();
        let leaders: Vec<(u64, u64)> = net
            .leaders()
            .into_iter()
            .filter(|&(_, t)| t > above)
            .collect();
        assert!(
            leaders.len() <= 1,
            "two leaders above term {above}: {leaders:?}"
        );
        if let Some(&leader) = leaders.first() {
            return leader;
        }
    }
    panic!("no leader above term {above} after {max_rounds} rounds");
}

// ---------------------------------------------------------------------------
// 1. Election safety: at most one leader per term
// ---------------------------------------------------------------------------

#[test]
fn three_simultaneous_candidates_split_the_vote_then_a_later_term_elects_one() {
    let mut net = Network::new(&[1, 2, 3]);
    for id in [1, 2, 3] {
        net.node_mut(id).raw.campaign().expect("campaign");
    }
    let mut responses = Vec::new();
    net.stabilize_with(|m| {
        if is(m, MessageType::MsgVoteResp) {
            responses.push((m.from, m.to, m.reject));
        }
        true
    });
    // Everyone voted for itself in term 1, so every request was refused.
    assert_eq!(responses.len(), 6);
    assert!(responses.iter().all(|&(_, _, reject)| reject));
    assert!(net.leaders().is_empty());
    for id in [1, 2, 3] {
        assert_eq!(term(&net, id), 1);
        assert_eq!(net.get(id).raw.raft.vote, id);
        assert_eq!(net.get(id).durable_hard_state.vote, id);
    }
    // Randomized timeouts break the tie in a later term.
    let (leader, leader_term) = elect_by_ticks(&mut net, 1, 100);
    assert!(leader_term >= 2);
    assert_eq!(net.leaders(), vec![(leader, leader_term)]);
    for id in [1, 2, 3] {
        assert_eq!(term(&net, id), leader_term);
        assert_eq!(net.get(id).raw.raft.lead, leader);
    }
}

#[test]
fn two_two_split_vote_in_four_nodes_elects_nobody_in_that_term() {
    let mut net = Network::new(&[1, 2, 3, 4]);
    net.node_mut(1).raw.campaign().expect("campaign");
    net.node_mut(2).raw.campaign().expect("campaign");
    net.flush(1);
    net.flush(2);
    // 3 hears from 1 first, 4 from 2 first.
    let first: Vec<Message> =
        net.take_in_flight(|m| (m.from, m.to) == (1, 3) || (m.from, m.to) == (2, 4));
    assert_eq!(first.len(), 2);
    for m in first {
        net.deliver(m);
    }
    net.stabilize();
    assert!(net.leaders().is_empty(), "{:?}", net.leaders());
    assert_eq!(net.get(3).raw.raft.vote, 1);
    assert_eq!(net.get(4).raw.raft.vote, 2);
    for id in [1, 2, 3, 4] {
        assert_eq!(term(&net, id), 1);
    }
    let (_, leader_term) = elect_by_ticks(&mut net, 1, 100);
    assert!(leader_term >= 2);
    assert_eq!(net.leaders().len(), 1);
}

#[test]
fn repeated_leader_failures_elect_one_leader_per_increasing_term() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    let mut leaders_by_term: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut leader, mut leader_term) = elect_by_ticks(&mut net, 0, 100);
    leaders_by_term.insert(leader_term, leader);
    for round in 0..15u8 {
        net.propose(leader, &[round]);
        // The leader crashes (is cut off); the others elect a new one.
        net.isolate(leader);
        let (next, next_term) = elect_by_ticks(&mut net, leader_term, 200);
        assert_ne!(next, leader);
        assert!(next_term > leader_term);
        assert_eq!(leaders_by_term.insert(next_term, next), None);
        net.heal();
        net.tick_and_stabilize(3);
        // The deposed leader learned the new term and follows.
        assert_eq!(net.get(leader).role(), StateRole::Follower);
        assert_eq!(net.leaders(), vec![(next, next_term)]);
        (leader, leader_term) = (next, next_term);
    }
    assert_eq!(leaders_by_term.len(), 16);
}

// ---------------------------------------------------------------------------
// 2. Vote restriction (§5.4.1) and durable votes
// ---------------------------------------------------------------------------

#[test]
fn candidate_with_lower_last_term_cannot_win() {
    let logs = |id: u64| match id {
        1 => storage_with_log(&[1, 2, 3], &[1, 1, 1], 2),
        _ => storage_with_log(&[1, 2, 3], &[1, 2], 2),
    };
    let mut net = Network::with_storages(&[1, 2, 3], config, logs);
    net.node_mut(1).raw.campaign().expect("campaign");
    let mut responses = Vec::new();
    net.stabilize_with(|m| {
        responses.extend(vote_responses(std::slice::from_ref(m)));
        true
    });
    // 1's log is longer but its last term (1) is below theirs (2).
    assert_eq!(responses, vec![(1, false), (1, false)]);
    assert_eq!(net.get(1).role(), StateRole::Follower);
    for id in [2, 3] {
        assert_eq!(term(&net, id), 3, "the request's term is adopted");
        assert_eq!(net.get(id).raw.raft.vote, 0, "but no vote is cast");
    }
    // Either of the up-to-date nodes can win.
    net.elect(2);
    assert_eq!(net.leaders(), vec![(2, 4)]);
    assert_eq!(log_terms(&net, 1), vec![1, 2, 4]);
}

#[test]
fn candidate_with_shorter_log_in_the_same_last_term_cannot_win() {
    let logs = |id: u64| match id {
        1 => storage_with_log(&[1, 2, 3], &[1, 1], 1),
        _ => storage_with_log(&[1, 2, 3], &[1, 1, 1], 1),
    };
    let mut net = Network::with_storages(&[1, 2, 3], config, logs);
    net.elect(1);
    assert!(net.leaders().is_empty());
    assert_eq!(net.get(1).role(), StateRole::Follower);
    assert_eq!(term(&net, 1), 2);
    // The longer log wins, even against the lowest id.
    net.elect(3);
    assert_eq!(net.leaders(), vec![(3, 3)]);
    for id in [1, 2, 3] {
        assert_eq!(log_terms(&net, id), vec![1, 1, 1, 3]);
        assert_eq!(committed(&net, id), 4);
    }
}

#[test]
fn higher_last_term_beats_a_longer_log() {
    let logs = |id: u64| match id {
        2 => storage_with_log(&[1, 2, 3], &[1, 2], 2),
        _ => storage_with_log(&[1, 2, 3], &[1, 1, 1, 1], 2),
    };
    let mut net = Network::with_storages(&[1, 2, 3], config, logs);
    net.elect(2);
    assert_eq!(net.leaders(), vec![(2, 3)]);
    for id in [1, 2, 3] {
        assert_eq!(log_terms(&net, id), vec![1, 2, 3], "node {id}");
    }
}

#[test]
fn a_voter_grants_at_most_one_vote_per_term() {
    let mut net = Network::new(&[1, 2, 3]);
    let voter = net.node_mut(3);
    voter.raw.step(vote_request(1, 3, 1, 0, 0)).expect("step");
    // Another candidate of the same term is refused.
    voter.raw.step(vote_request(2, 3, 1, 0, 0)).expect("step");
    // A retransmitted request of the candidate voted for is granted again.
    voter.raw.step(vote_request(1, 3, 1, 0, 0)).expect("step");
    assert!(voter.process_ready());
    let ready = voter.unpersisted.back().expect("ready").clone();
    assert_eq!(ready.hard_state.map(|hs| (hs.term, hs.vote)), Some((1, 1)));
    assert_eq!(
        vote_responses(&ready.messages),
        vec![(1, true), (2, false), (1, true)]
    );
    // A new term frees the vote.
    voter.raw.step(vote_request(2, 3, 2, 0, 0)).expect("step");
    assert!(voter.process_ready());
    let ready = voter.unpersisted.back().expect("ready").clone();
    assert_eq!(ready.hard_state.map(|hs| (hs.term, hs.vote)), Some((2, 2)));
    assert_eq!(vote_responses(&ready.messages), vec![(2, true)]);
}

#[test]
fn a_vote_response_leaves_with_the_ready_that_persists_the_vote() {
    let mut net = Network::new(&[1, 2, 3]);
    net.node_mut(1).raw.campaign().expect("campaign");
    net.flush(1);
    let requests = net.take_in_flight(|m| m.to == 2);
    assert_eq!(requests.len(), 1);
    let voter = net.node_mut(2);
    voter.raw.step(requests[0].clone()).expect("step");
    assert!(voter.process_ready());
    let ready = voter.unpersisted.front().expect("ready").clone();
    let hard_state = ready.hard_state.expect("the vote is in this Ready");
    assert_eq!((hard_state.term, hard_state.vote), (1, 1));
    assert!(ready.must_sync, "a vote must be fsynced");
    assert_eq!(vote_responses(&ready.messages), vec![(1, true)]);
    assert!(
        ready.append_messages.is_empty(),
        "a vote response is never sent before persistence"
    );
    // Until persisted, the voter has nothing to send and its vote is not
    // durable.
    assert_eq!(voter.durable_hard_state.vote, 0);
    assert!(!voter.raw.has_ready());
    let sent = voter.persist_all();
    assert_eq!(voter.durable_hard_state.vote, 1);
    assert_eq!(vote_responses(&sent), vec![(1, true)]);
}

#[test]
fn a_vote_lost_in_a_crash_was_never_sent_and_a_durable_vote_survives_restarts() {
    let mut net = Network::new(&[1, 2, 3]);
    let voter = net.node_mut(3);
    voter.raw.step(vote_request(1, 3, 1, 0, 0)).expect("step");
    assert!(voter.process_ready());
    // Crash before the vote is durable: the Ready with the response is
    // lost, so nobody learned of the vote, and 3 may vote again.
    net.restart(3, &config(3));
    assert!(net.in_flight.is_empty());
    assert_eq!(net.get(3).raw.raft.vote, 0);
    assert_eq!(term(&net, 3), 0);
    let voter = net.node_mut(3);
    voter.raw.step(vote_request(2, 3, 1, 0, 0)).expect("step");
    let sent: Vec<Message> = {
        while voter.process_ready() {}
        voter.persist_all()
    };
    assert_eq!(vote_responses(&sent), vec![(2, true)]);
    // Now the vote for 2 is durable: after a restart 1 is still refused.
    net.restart(3, &config(3));
    assert_eq!(net.get(3).raw.raft.vote, 2);
    let voter = net.node_mut(3);
    voter.raw.step(vote_request(1, 3, 1, 0, 0)).expect("step");
    while voter.process_ready() {}
    let sent = voter.persist_all();
    assert_eq!(vote_responses(&sent), vec![(1, false)]);
}

#[test]
fn a_single_node_with_pre_vote_elects_itself_once_its_votes_are_durable() {
    let mut net = Network::with_config(&[1], config_with(|c| c.pre_vote = true));
    let node = net.node_mut(1);
    node.raw.campaign().expect("campaign");
    assert_eq!(node.role(), StateRole::PreCandidate);
    assert!(node.process_ready());
    assert_eq!(node.role(), StateRole::PreCandidate);
    node.persist_all();
    // The pre-vote is won: a real election, whose vote must be durable too.
    assert_eq!(node.role(), StateRole::Candidate);
    assert_eq!(node.raw.raft.term, 1);
    assert!(node.process_ready());
    assert_eq!(node.role(), StateRole::Candidate);
    node.persist_all();
    assert_eq!(node.role(), StateRole::Leader);
    net.propose(1, b"solo");
    assert_eq!(net.get(1).applied.get(&2), Some(&(1, b"solo".to_vec())));
}

#[test]
fn a_candidate_counts_its_own_vote_only_once_persisted() {
    let mut net = Network::new(&[1, 2, 3]);
    let candidate = net.node_mut(1);
    candidate.raw.campaign().expect("campaign");
    assert!(candidate.process_ready());
    // A grant from 2 alone is not a majority of 3 while 1's own vote is
    // not durable.
    let grant = msg(MessageType::MsgVoteResp, 2, 1, 1);
    candidate.raw.step(grant).expect("step");
    assert_eq!(candidate.role(), StateRole::Candidate);
    candidate.persist_all();
    assert_eq!(candidate.role(), StateRole::Leader);
}

// ---------------------------------------------------------------------------
// 3. Log matching
// ---------------------------------------------------------------------------

/// The raft paper's Figure 7: the leader of term 8 and followers (a)-(f).
fn figure7_network() -> Network {
    let voters = [1, 2, 3, 4, 5, 6, 7];
    let logs = move |id: u64| {
        let terms: Vec<u64> = match id {
            1 => [run(1, 3), run(4, 2), run(5, 2), run(6, 3)].concat(),
            2 => [run(1, 3), run(4, 2), run(5, 2), run(6, 2)].concat(),
            3 => [run(1, 3), run(4, 1)].concat(),
            4 => [run(1, 3), run(4, 2), run(5, 2), run(6, 4)].concat(),
            5 => [run(1, 3), run(4, 2), run(5, 2), run(6, 3), run(7, 2)].concat(),
            6 => [run(1, 3), run(4, 4)].concat(),
            7 => [run(1, 3), run(2, 3), run(3, 5)].concat(),
            _ => unreachable!(),
        };
        storage_with_log(&voters, &terms, 7)
    };
    Network::with_storages(&voters, config, logs)
}

#[test]
fn figure7_every_follower_converges_to_the_leaders_log() {
    let mut net = figure7_network();
    net.node_mut(1).raw.campaign().expect("campaign");
    let mut rejections: BTreeMap<u64, usize> = BTreeMap::new();
    let mut votes = Vec::new();
    net.stabilize_with(|m| {
        if is(m, MessageType::MsgAppResp) && m.reject {
            *rejections.entry(m.from).or_default() += 1;
        }
        if is(m, MessageType::MsgVoteResp) {
            votes.push((m.from, !m.reject));
        }
        true
    });
    votes.sort();
    // (c) and (d) have more up-to-date logs and refuse; 5 of 7 suffice.
    assert_eq!(
        votes,
        vec![
            (2, true),
            (3, true),
            (4, false),
            (5, false),
            (6, true),
            (7, true)
        ]
    );
    assert_eq!(net.leaders(), vec![(1, 8)]);
    let expected = [run(1, 3), run(4, 2), run(5, 2), run(6, 3), run(8, 1)].concat();
    for id in 1..=7 {
        assert_eq!(log_terms(&net, id), expected, "node {id}");
        assert_eq!(committed(&net, id), 11, "node {id}");
        // Everybody applied the leader's entries, not its own conflicting
        // ones: the entries carry "index/term" of the leader's history.
        let applied = &net.get(id).applied;
        assert_eq!(applied.get(&4), Some(&(4, b"4/4".to_vec())), "node {id}");
        assert_eq!(applied.get(&10), Some(&(6, b"10/6".to_vec())), "node {id}");
    }
    // (c)'s extra entry 11 and (d)'s entries 11-12 of term 7 are gone; (f)'s
    // terms 2 and 3 were replaced from index 4. The leader's first probe is
    // at index 10: every follower without entry 10 of term 6 rejects it
    // once, and its hint brings the leader straight to the match point.
    assert_eq!(rejections.get(&2), Some(&1), "(a) lacks entry 10");
    assert_eq!(rejections.get(&3), Some(&1), "(b) lacks entries 5-10");
    assert_eq!(rejections.get(&4), None, "(c) has entry 10 of term 6");
    assert_eq!(rejections.get(&5), None, "(d) has entry 10 of term 6");
    assert_eq!(rejections.get(&6), Some(&1), "(e) diverges in one term");
    assert_eq!(rejections.get(&7), Some(&1), "(f) diverges in terms 2, 3");
}

#[test]
fn unreplicated_entries_of_crashed_leaders_are_truncated_everywhere() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    net.elect(1);
    net.propose(1, b"a");
    // Leader 1 is cut off and appends entries nobody else sees.
    net.isolate(1);
    for data in [b"x1", b"x2"] {
        net.node_mut(1).raw.propose(data.to_vec()).expect("propose");
    }
    net.stabilize();
    assert_eq!(log_terms(&net, 1), vec![1, 1, 1, 1]);
    net.elect(2);
    assert_eq!(net.get(2).role(), StateRole::Leader);
    net.propose(2, b"b");
    // Leader 2 too is cut off with an unreplicated entry.
    net.isolate(2);
    net.node_mut(2).raw.propose(b"y".to_vec()).expect("propose");
    net.stabilize();
    net.heal();
    net.isolate(1);
    net.isolate(2);
    net.elect(3);
    assert_eq!(net.get(3).role(), StateRole::Leader);
    net.propose(3, b"c");
    assert_eq!(log_terms(&net, 2), vec![1, 1, 2, 2, 2]);
    // Heal; the new leader's heartbeats depose 1 and 2 and repair them.
    net.heal();
    net.tick_and_stabilize(3);
    assert_eq!(net.leaders(), vec![(3, 3)]);
    let expected = vec![(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)];
    for id in 1..=5 {
        assert_eq!(net.get(id).log_ids(), expected, "node {id}");
        assert_eq!(committed(&net, id), 6, "node {id}");
        let data: Vec<&[u8]> = net.get(id).applied.values().map(|(_, d)| &d[..]).collect();
        assert_eq!(
            data,
            vec![&b""[..], b"a", b"", b"b", b"", b"c"],
            "node {id}"
        );
    }
}

#[test]
fn a_delayed_duplicate_append_does_not_truncate_a_longer_matching_log() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    net.elect(1);
    // Only 1 and 2 get the new entries, so nothing new commits (a delayed
    // append below the commit index would just be answered with it).
    for id in [3, 4, 5] {
        net.isolate(id);
    }
    net.node_mut(1).raw.propose(b"a".to_vec()).expect("propose");
    net.flush(1);
    let delayed = net.take_in_flight(|m| m.to == 2);
    assert_eq!(delayed.len(), 1);
    for data in [b"b", b"c", b"d"] {
        net.propose(1, data);
    }
    assert_eq!(log_terms(&net, 2), vec![1, 1, 1, 1, 1]);
    assert_eq!(committed(&net, 2), 1);
    // The old append (entry 2 only) arrives late: entry 2 matches, so
    // nothing after it is dropped; the answer acknowledges index 2 only.
    let follower = net.node_mut(2);
    follower.raw.step(delayed[0].clone()).expect("step");
    while follower.process_ready() {}
    let sent = follower.persist_all();
    let acks: Vec<(u64, bool)> = sent.iter().map(|m| (m.index, m.reject)).collect();
    assert_eq!(acks, vec![(2, false)]);
    assert_eq!(log_terms(&net, 2), vec![1, 1, 1, 1, 1]);
    net.send(sent);
    net.stabilize();
    assert_eq!(progress(&net, 1, 2).matched, 5, "a stale ack is ignored");
}

// ---------------------------------------------------------------------------
// 4. Leader completeness
// ---------------------------------------------------------------------------

#[test]
fn a_less_up_to_date_node_cannot_lead_after_a_commit() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    net.elect(1);
    // 4 and 5 miss "v", which {1, 2, 3} commit.
    net.isolate(4);
    net.isolate(5);
    net.propose(1, b"v");
    assert_eq!(committed(&net, 1), 2);
    // The leader crashes; 4 and 5 come back.
    net.heal();
    net.isolate(1);
    for candidate in [4, 5] {
        net.elect(candidate);
        assert_eq!(net.get(candidate).role(), StateRole::Candidate);
    }
    let (leader, _) = elect_by_ticks(&mut net, 1, 200);
    assert!([2, 3].contains(&leader), "leader {leader}");
    assert_eq!(net.get(leader).raw.raft.raft_log.term(2), Ok(1));
    for id in 2..=5 {
        assert_eq!(
            net.get(id).applied.get(&2),
            Some(&(1, b"v".to_vec())),
            "node {id}"
        );
    }
}

#[test]
fn committed_entries_are_in_every_later_leaders_log() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    let mut committed_entries: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
    let (mut leader, mut leader_term) = elect_by_ticks(&mut net, 0, 100);
    for round in 0..10u64 {
        // Only a bare majority including the leader gets the new entries.
        let ids: Vec<u64> = (1..=5).filter(|&id| id != leader).collect();
        let cut_off = [ids[round as usize % 4], ids[(round as usize + 1) % 4]];
        for id in cut_off {
            net.isolate(id);
        }
        net.propose(leader, format!("r{round}").as_bytes());
        let node = net.get(leader);
        for (&index, entry) in &node.applied {
            committed_entries.insert(index, entry.clone());
        }
        // The leader dies; the lagging nodes return.
        net.heal();
        net.isolate(leader);
        let (next, next_term) = elect_by_ticks(&mut net, leader_term, 300);
        let log = &net.get(next).raw.raft.raft_log;
        for (&index, (entry_term, _)) in &committed_entries {
            assert_eq!(
                log.term(index),
                Ok(*entry_term),
                "leader {next} of term {next_term} lacks committed entry {index}"
            );
        }
        net.heal();
        net.tick_and_stabilize(3);
        (leader, leader_term) = (next, next_term);
    }
    net.propose(leader, b"last");
    for id in 1..=5 {
        for (index, entry) in &committed_entries {
            assert_eq!(net.get(id).applied.get(index), Some(entry), "node {id}");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. The commit rule for entries of earlier terms (Figure 8)
// ---------------------------------------------------------------------------

/// One entry per append message, so that the script can hand entries out
/// one at a time.
fn one_entry_per_message(id: u64) -> Config {
    let mut c = config(id);
    c.max_size_per_msg = 1;
    c
}

/// Figure 8 up to (c). The leader's empty entry stands in for the
/// paper's client entries: S1's entry at index 2 is of term 2, S5's at
/// index 2 of term 3, and S1's term-4 entry at index 3.
///
/// Returns the network with S1 leading term 4: S1 [1, 2, 4], S2 [1, 2],
/// S3 [1, 2], S4 [1], S5 [1, 3] (isolated).
fn figure8_until_c() -> Network {
    let voters = [1, 2, 3, 4, 5];
    let logs = move |_| {
        let mut storage = storage_with_log(&voters, &[1], 1);
        storage.set_commit(1);
        storage
    };
    let mut net = Network::with_storages(&voters, one_entry_per_message, logs);

    // (a) S1 leads term 2 and replicates its entry 2 only to S2.
    net.node_mut(1).raw.campaign().expect("campaign");
    net.stabilize_with(|m| !(is(m, MessageType::MsgApp) && m.from == 1 && m.to >= 3));
    assert_eq!(net.leaders(), vec![(1, 2)]);
    assert_eq!(log_terms(&net, 1), vec![1, 2]);
    assert_eq!(log_terms(&net, 2), vec![1, 2]);
    assert_eq!(committed(&net, 1), 1, "2 of 5 is no majority");

    // (b) S1 crashes; S5 wins term 3 with S3, S4 and itself (S2 refuses:
    // its log is more up to date) and appends entry 2 of term 3, then
    // crashes before sending it.
    net.isolate(1);
    net.node_mut(5).raw.campaign().expect("campaign");
    net.stabilize_with(|m| !(is(m, MessageType::MsgApp) && m.from == 5));
    assert_eq!(net.get(5).role(), StateRole::Leader);
    assert_eq!(term(&net, 5), 3);
    assert_eq!(log_terms(&net, 5), vec![1, 3]);
    for id in [3, 4] {
        assert_eq!(net.get(id).raw.raft.vote, 5);
        assert_eq!(log_terms(&net, id), vec![1]);
    }
    net.restart(5, &one_entry_per_message(5));

    // (c) S1 restarts and wins term 4 (term 3 is taken: S3 and S4 voted
    // for S5). It brings S3 up to date with entry 2 of term 2, but its
    // term-4 entry reaches nobody yet (as if each append were cut after
    // the older entries), and S4 hears nothing.
    net.heal();
    net.isolate(5);
    net.restart(1, &one_entry_per_message(1));
    net.elect(1);
    assert_eq!(net.get(1).role(), StateRole::Candidate);
    assert_eq!(term(&net, 1), 3);
    net.node_mut(1).raw.campaign().expect("campaign");
    net.stabilize_with(|m| {
        if is(m, MessageType::MsgApp) && m.from == 1 {
            if m.to == 4 {
                return false;
            }
            m.entries.retain(|e| e.term < 4);
        }
        true
    });
    assert_eq!(net.leaders(), vec![(1, 4)]);
    assert_eq!(log_terms(&net, 1), vec![1, 2, 4]);
    assert_eq!(log_terms(&net, 2), vec![1, 2]);
    assert_eq!(log_terms(&net, 3), vec![1, 2]);
    assert_eq!(log_terms(&net, 4), vec![1]);
    assert_eq!(log_terms(&net, 5), vec![1, 3]);
    net
}

#[test]
fn figure8_c_an_earlier_terms_entry_on_a_majority_is_not_committed() {
    let net = figure8_until_c();
    // The leader knows entry 2 is on S1, S2 and S3, a majority...
    assert_eq!(progress(&net, 1, 1).matched, 3);
    assert_eq!(progress(&net, 1, 2).matched, 2);
    assert_eq!(progress(&net, 1, 3).matched, 2);
    assert_eq!(net.get(1).raw.raft.trk.committed(), 2);
    // ...but it is of term 2, so counting replicas must not commit it.
    for id in 1..=5 {
        assert_eq!(committed(&net, id), 1, "node {id}");
        assert!(!net.get(id).applied.contains_key(&2), "node {id}");
    }
}

#[test]
fn figure8_d_the_uncommitted_entry_may_then_be_overwritten() {
    let mut net = figure8_until_c();
    // S1 crashes; S5 returns. Term 4 is taken, S5 wins term 5 with S2, S3
    // and S4: its last term 3 beats their 2.
    net.heal();
    net.isolate(1);
    net.elect(5);
    assert_eq!(net.get(5).role(), StateRole::Follower);
    net.elect(5);
    assert_eq!(net.leaders().last(), Some(&(5, 5)));
    // S5 overwrites entry 2 of term 2 on S2 and S3 (a former majority).
    for id in 2..=5 {
        assert_eq!(log_terms(&net, id), vec![1, 3, 5], "node {id}");
        assert_eq!(committed(&net, id), 3, "node {id}");
        assert_eq!(net.get(id).applied.get(&2).map(|(t, _)| *t), Some(3));
    }
    // Nobody ever applied entry 2 of term 2.
    assert!(
        net.nodes
            .values()
            .all(|n| n.applied.get(&2).is_none_or(|(t, _)| *t == 3))
    );
}

#[test]
fn figure8_e_an_own_term_entry_on_a_majority_commits_the_earlier_ones() {
    let mut net = figure8_until_c();
    // S1 gets its term-4 entry to S2 and S3 (S4 stays out of reach).
    net.cut_link(1, 4);
    for _ in 0..3 {
        net.node_mut(1).raw.tick();
        net.stabilize();
    }
    assert_eq!(committed(&net, 1), 3);
    for id in [1, 2, 3] {
        assert_eq!(log_terms(&net, id), vec![1, 2, 4], "node {id}");
        assert_eq!(net.get(id).applied.get(&2).map(|(t, _)| *t), Some(2));
    }
    // Now S1 crashes: S5 can no longer win, S2 and S3 refuse it for ever.
    net.heal();
    net.isolate(1);
    for _ in 0..3 {
        net.elect(5);
        assert_ne!(net.get(5).role(), StateRole::Leader);
    }
    let (leader, _) = elect_by_ticks(&mut net, 5, 200);
    assert!([2, 3].contains(&leader), "leader {leader}");
    net.propose(leader, b"after");
    for id in 2..=5 {
        let terms = log_terms(&net, id);
        assert_eq!(terms[..3], [1, 2, 4], "node {id}");
        assert_eq!(net.get(id).applied.get(&2).map(|(t, _)| *t), Some(2));
        assert_eq!(net.get(id).applied.get(&3).map(|(t, _)| *t), Some(4));
    }
}

// ---------------------------------------------------------------------------
// 6. Follower catch-up with fast backtracking
// ---------------------------------------------------------------------------

/// Elects node 1 over a follower 2 with `follower` log (node 3 has the
/// leader's log) and returns (MsgApp rejections from 2, MsgApps to 2).
fn catch_up(leader: &[u64], follower: &[u64], hard_term: u64) -> (Network, usize, usize) {
    let (leader, follower) = (leader.to_vec(), follower.to_vec());
    let logs = move |id: u64| match id {
        2 => storage_with_log(&[1, 2, 3], &follower, hard_term),
        _ => storage_with_log(&[1, 2, 3], &leader, hard_term),
    };
    let mut net = Network::with_storages(&[1, 2, 3], config, logs);
    net.node_mut(1).raw.campaign().expect("campaign");
    let (mut rejections, mut appends) = (0, 0);
    net.stabilize_with(|m| {
        if m.from == 2 && is(m, MessageType::MsgAppResp) && m.reject {
            rejections += 1;
        }
        if m.to == 2 && is(m, MessageType::MsgApp) {
            appends += 1;
        }
        true
    });
    assert_eq!(net.leaders(), vec![(1, hard_term + 1)]);
    assert_eq!(net.get(2).log_ids(), net.get(1).log_ids());
    assert_eq!(committed(&net, 2), last_index(&net, 1));
    (net, rejections, appends)
}

#[test]
fn rejections_are_bounded_by_divergent_terms_not_entries() {
    // Three divergent terms on each side, 90 divergent follower entries.
    let leader = [run(1, 5), run(3, 20), run(5, 20), run(7, 20)].concat();
    let follower = [run(1, 5), run(2, 30), run(4, 30), run(6, 30)].concat();
    let (net, rejections, appends) = catch_up(&leader, &follower, 7);
    assert!(
        rejections <= 3,
        "{rejections} rejections for 3 divergent terms"
    );
    assert_eq!(rejections, 2, "one per overlapping divergent term pair");
    // The rejected probes, then one append carrying the whole repair (node
    // 3 has already acknowledged, so it also carries the commit index).
    assert_eq!(appends, rejections + 1);
    // The follower's 90 entries of terms 2, 4, 6 were truncated.
    let terms = log_terms(&net, 2);
    assert_eq!(terms.len(), 66);
    assert!(terms.iter().all(|t| [1, 3, 5, 7, 8].contains(t)));
}

#[test]
fn one_long_divergent_term_costs_one_rejection() {
    let leader = [run(1, 5), run(3, 3)].concat();
    let follower = [run(1, 5), run(2, 200)].concat();
    let (net, rejections, _) = catch_up(&leader, &follower, 3);
    assert_eq!(rejections, 1);
    assert_eq!(last_index(&net, 2), 9);
}

#[test]
fn a_lagging_follower_without_divergence_needs_one_probe() {
    let leader = [run(1, 5), run(2, 100)].concat();
    let follower = run(1, 5);
    let (net, rejections, _) = catch_up(&leader, &follower, 2);
    assert_eq!(rejections, 1);
    assert_eq!(last_index(&net, 2), 106);
}

#[test]
fn a_follower_with_a_longer_stale_tail_is_truncated_in_one_round() {
    // The follower's tail is longer but older: one rejection, then the
    // leader's entries replace it from the first divergent index.
    let leader = [run(1, 3), run(4, 2)].concat();
    let follower = [run(1, 3), run(2, 10), run(3, 10)].concat();
    let (net, rejections, _) = catch_up(&leader, &follower, 4);
    assert_eq!(rejections, 1);
    assert_eq!(log_terms(&net, 2), vec![1, 1, 1, 4, 4, 5]);
}

// ---------------------------------------------------------------------------
// 7. Flow control
// ---------------------------------------------------------------------------

const MAX_INFLIGHT: usize = 3;

fn small_window(id: u64) -> Config {
    let mut c = config(id);
    c.max_inflight_msgs = MAX_INFLIGHT;
    c.max_size_per_msg = 1;
    c
}

/// MsgApps carrying entries from 1 to `to` among `messages`.
fn appends_to(messages: &[Message], to: u64) -> Vec<Message> {
    messages
        .iter()
        .filter(|m| is(m, MessageType::MsgApp) && m.to == to && !m.entries.is_empty())
        .cloned()
        .collect()
}

#[test]
fn a_replicating_follower_has_at_most_max_inflight_unacknowledged_appends() {
    let mut net = Network::with_config(&[1, 2, 3], small_window);
    net.elect(1);
    assert_eq!(progress(&net, 1, 2).state, ProgressState::Replicate);
    net.isolate(3);
    for i in 0..10u8 {
        net.node_mut(1).raw.propose(vec![i]).expect("propose");
    }
    // Entries 2..=11, one per message: only the window goes out.
    net.flush(1);
    let pr = progress(&net, 1, 2);
    assert_eq!(pr.inflights.count(), MAX_INFLIGHT);
    assert!(pr.is_paused());
    let mut held: Vec<Message> = net.take_in_flight(|m| m.to == 2);
    assert_eq!(appends_to(&held, 2).len(), MAX_INFLIGHT);
    // Unacknowledged appends to 2, by last index.
    let mut outstanding: BTreeSet<u64> = appends_to(&held, 2)
        .iter()
        .map(|m| m.entries.last().expect("entries").index)
        .collect();
    let mut acks_delivered = 0;
    while !held.is_empty() {
        for m in held.drain(..) {
            net.deliver(m);
        }
        net.flush(2);
        // Acknowledge one at a time: each frees one slot of the window.
        let acks = net.take_in_flight(|m| m.from == 2);
        for ack in acks {
            assert!(is(&ack, MessageType::MsgAppResp) && !ack.reject);
            outstanding.retain(|&index| index > ack.index);
            net.deliver(ack);
            acks_delivered += 1;
            net.flush(1);
            let new: Vec<Message> = net.take_in_flight(|m| m.to == 2);
            for m in appends_to(&new, 2) {
                outstanding.insert(m.entries.last().expect("entries").index);
            }
            assert!(
                outstanding.len() <= MAX_INFLIGHT,
                "{} unacknowledged appends",
                outstanding.len()
            );
            held.extend(new);
        }
    }
    assert!(acks_delivered >= 10);
    assert_eq!(last_index(&net, 2), 11);
    assert_eq!(committed(&net, 1), 11);
    net.stabilize();
    assert_eq!(committed(&net, 2), 11);
    assert_eq!(net.get(2).applied.len(), 11);
}

#[test]
fn sending_resumes_as_acknowledgements_arrive() {
    let mut net = Network::with_config(&[1, 2, 3], small_window);
    net.elect(1);
    net.isolate(3);
    for i in 0..6u8 {
        net.node_mut(1).raw.propose(vec![i]).expect("propose");
    }
    net.flush(1);
    let first = net.take_in_flight(|m| m.to == 2);
    assert_eq!(appends_to(&first, 2).len(), 3);
    // One acknowledgement covering all three frees the whole window: the
    // leader sends the next three at once.
    for m in first {
        net.deliver(m);
    }
    net.flush(2);
    let mut acks = net.take_in_flight(|m| m.from == 2);
    assert_eq!(acks.len(), 3);
    let last_ack = acks.pop().expect("ack");
    assert_eq!(last_ack.index, 4);
    net.deliver(last_ack);
    net.flush(1);
    let second = net.take_in_flight(|m| m.to == 2);
    let indexes: Vec<u64> = appends_to(&second, 2)
        .iter()
        .map(|m| m.entries[0].index)
        .collect();
    assert_eq!(indexes, vec![5, 6, 7]);
    // The stale, smaller acknowledgements change nothing.
    for ack in acks {
        net.deliver(ack);
    }
    net.flush(1);
    assert!(appends_to(&net.take_in_flight(|m| m.to == 2), 2).is_empty());
    assert_eq!(progress(&net, 1, 2).inflights.count(), 3);
}

#[test]
fn a_probing_follower_gets_one_append_until_it_answers() {
    let mut net = Network::with_config(&[1, 2, 3], small_window);
    net.node_mut(1).raw.campaign().expect("campaign");
    net.flush(1);
    net.deliver_in_flight();
    net.flush(2);
    net.flush(3);
    net.deliver_in_flight();
    assert_eq!(net.get(1).role(), StateRole::Leader);
    // A new leader probes: its empty entry goes out, then nothing more
    // to a follower until it answers, however much is proposed.
    for i in 0..5u8 {
        net.node_mut(1).raw.propose(vec![i]).expect("propose");
    }
    net.flush(1);
    for id in [2, 3] {
        let pr = progress(&net, 1, id);
        assert_eq!(pr.state, ProgressState::Probe);
        assert!(pr.is_paused());
        let appends: Vec<Message> = net
            .in_flight
            .iter()
            .filter(|m| is(m, MessageType::MsgApp) && m.to == id)
            .cloned()
            .collect();
        assert_eq!(appends.len(), 1, "to {id}");
        assert_eq!(appends[0].entries.len(), 1);
        assert_eq!(appends[0].entries[0].index, 1);
    }
    // Once it answers, the follower is replicated to in a window.
    net.deliver_in_flight();
    net.flush(2);
    net.flush(3);
    net.deliver_in_flight();
    net.flush(1);
    assert_eq!(progress(&net, 1, 2).state, ProgressState::Replicate);
    assert_eq!(appends_to(&Vec::from(net.in_flight.clone()), 2).len(), 3);
    net.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(committed(&net, id), 6);
    }
}

#[test]
fn a_lost_probe_is_retried_only_after_a_heartbeat_response() {
    let mut net = Network::with_config(&[1, 2, 3], small_window);
    net.elect(1);
    net.node_mut(1).raw.report_unreachable(2);
    assert_eq!(progress(&net, 1, 2).state, ProgressState::Probe);
    net.node_mut(1).raw.propose(b"a".to_vec()).expect("propose");
    net.flush(1);
    // The probe is lost.
    let lost = net.take_in_flight(|m| m.to == 2);
    assert_eq!(appends_to(&lost, 2).len(), 1);
    for i in 0..3u8 {
        net.node_mut(1).raw.propose(vec![i]).expect("propose");
    }
    net.flush(1);
    assert!(appends_to(&net.take_in_flight(|m| m.to == 2), 2).is_empty());
    net.stabilize();
    assert_eq!(last_index(&net, 2), 1);
    // A heartbeat round trip unpauses the probe.
    net.node_mut(1).raw.tick();
    let mut appends = 0;
    net.stabilize_with(|m| {
        if is(m, MessageType::MsgApp) && m.to == 2 {
            appends += 1;
        }
        true
    });
    assert!(appends >= 1);
    assert_eq!(net.get(2).log_ids(), net.get(1).log_ids());
    assert_eq!(committed(&net, 2), 5);
}

#[test]
fn the_byte_window_limits_appends_in_flight_too() {
    let mut net = Network::with_config(
        &[1, 2, 3],
        config_with(|c| {
            c.max_size_per_msg = 1;
            c.max_inflight_bytes = 10;
        }),
    );
    net.elect(1);
    net.isolate(3);
    for i in 0..6u8 {
        net.node_mut(1).raw.propose(vec![i; 4]).expect("propose");
    }
    net.flush(1);
    // 4 + 4 < 10 bytes, the third message reaches the limit.
    let first = net.take_in_flight(|m| m.to == 2);
    assert_eq!(appends_to(&first, 2).len(), 3);
    let pr = progress(&net, 1, 2);
    assert_eq!(pr.inflights.bytes(), 12);
    assert!(pr.is_paused());
    for m in first {
        net.deliver(m);
    }
    net.stabilize();
    assert_eq!(last_index(&net, 2), 7);
    assert_eq!(committed(&net, 2), 7);
}

// ---------------------------------------------------------------------------
// 8. Snapshot send and restore
// ---------------------------------------------------------------------------

/// Leader 1 commits ten entries while 3 is cut off, then snapshots and
/// compacts its storage at its applied index (11). Links are healed.
fn compacted_leader_and_lagging_follower() -> Network {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for i in 0..10u8 {
        net.propose(1, &[i]);
    }
    let leader = net.node_mut(1);
    assert_eq!(leader.applied_index, 11);
    let conf_state = leader.raw.raft.conf_state();
    let storage = leader.raw.store_mut();
    let snapshot = storage
        .create_snapshot(11, Some(conf_state), b"state@11".to_vec())
        .expect("snapshot");
    assert_eq!((snapshot.metadata.index, snapshot.metadata.term), (11, 1));
    storage.compact(11).expect("compact");
    assert_eq!(net.get(1).raw.raft.raft_log.first_index(), 12);
    net.heal();
    net
}

/// Ticks the leader once and stabilizes, holding back every MsgSnap;
/// returns them.
fn heartbeat_until_snapshot(net: &mut Network) -> Vec<Message> {
    net.node_mut(1).raw.tick();
    let mut snapshots = Vec::new();
    net.stabilize_with(|m| {
        if is(m, MessageType::MsgSnap) {
            snapshots.push(m.clone());
            return false;
        }
        true
    });
    snapshots
}

#[test]
fn a_follower_behind_the_compaction_point_is_sent_a_snapshot_and_catches_up() {
    let mut net = compacted_leader_and_lagging_follower();
    let snapshots = heartbeat_until_snapshot(&mut net);
    assert_eq!(snapshots.len(), 1);
    let snap = snapshots[0].snapshot.clone().expect("snapshot");
    assert_eq!(snapshots[0].to, 3);
    assert_eq!(snap.metadata.index, 11);
    assert_eq!(snap.data, b"state@11".to_vec());
    let pr = progress(&net, 1, 3);
    assert_eq!(pr.state, ProgressState::Snapshot);
    assert_eq!(pr.pending_snapshot, 11);
    // While the snapshot is in flight, no appends go to 3.
    net.node_mut(1)
        .raw
        .propose(b"during".to_vec())
        .expect("propose");
    let mut appends_to_3 = 0;
    net.stabilize_with(|m| {
        if is(m, MessageType::MsgApp) && m.to == 3 {
            appends_to_3 += 1;
        }
        true
    });
    assert_eq!(appends_to_3, 0);
    assert_eq!(committed(&net, 1), 12);

    // The follower restores it: the snapshot comes in a Ready of its own,
    // with the acknowledgement that may only leave once it is durable.
    let follower = net.node_mut(3);
    follower.raw.step(snapshots[0].clone()).expect("step");
    assert!(follower.process_ready());
    let ready = follower.unpersisted.back().expect("ready").clone();
    assert_eq!(ready.snapshot.as_ref().map(|s| s.metadata.index), Some(11));
    assert!(ready.must_sync);
    assert!(ready.committed_entries.is_empty());
    let acks: Vec<&Message> = ready
        .messages
        .iter()
        .filter(|m| is(m, MessageType::MsgAppResp))
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].index, acks[0].reject), (11, false));
    assert!(!follower.raw.raft.promotable(), "no campaign mid-restore");
    net.stabilize();
    // Then the entries after the snapshot arrive as appends.
    let follower = net.get(3);
    assert_eq!(follower.applied_index, 12);
    assert_eq!(follower.raw.store().first_index(), Ok(12));
    assert_eq!(follower.log_ids(), vec![(12, 1)]);
    assert_eq!(follower.applied.get(&12), Some(&(1, b"during".to_vec())));
    assert_eq!(progress(&net, 1, 3).state, ProgressState::Replicate);
    net.propose(1, b"after");
    assert_eq!(net.get(3).applied.get(&13), Some(&(1, b"after".to_vec())));
    assert_eq!(committed(&net, 3), 13);
}

#[test]
fn report_snapshot_failure_moves_to_probe_and_the_snapshot_is_resent() {
    let mut net = compacted_leader_and_lagging_follower();
    let lost = heartbeat_until_snapshot(&mut net);
    assert_eq!(lost.len(), 1);
    let leader = net.node_mut(1);
    leader.raw.report_snapshot(3, SnapshotStatus::Failure);
    let pr = progress(&net, 1, 3);
    assert_eq!(pr.state, ProgressState::Probe);
    assert_eq!(pr.pending_snapshot, 0);
    assert_eq!(pr.next_idx, pr.matched + 1);
    assert!(pr.is_paused(), "waits for a heartbeat response");
    // Nothing is retried in a tight loop...
    net.stabilize();
    assert_eq!(progress(&net, 1, 3).state, ProgressState::Probe);
    // ...but the next heartbeat response brings a new snapshot.
    let again = heartbeat_until_snapshot(&mut net);
    assert_eq!(again.len(), 1);
    net.deliver(again[0].clone());
    net.stabilize();
    assert_eq!(net.get(3).applied_index, 11);
    assert_eq!(committed(&net, 3), 11);
    assert_eq!(progress(&net, 1, 3).state, ProgressState::Replicate);
}

#[test]
fn report_snapshot_finish_moves_to_probe_past_the_snapshot() {
    let mut net = compacted_leader_and_lagging_follower();
    let snapshots = heartbeat_until_snapshot(&mut net);
    // The snapshot arrives but the follower's answer is lost; the
    // transport reports success.
    net.deliver(snapshots[0].clone());
    net.flush(3);
    let answers = net.take_in_flight(|m| m.from == 3);
    assert_eq!(answers.len(), 1);
    net.node_mut(1)
        .raw
        .report_snapshot(3, SnapshotStatus::Finish);
    let pr = progress(&net, 1, 3);
    assert_eq!(pr.state, ProgressState::Probe);
    assert_eq!(pr.next_idx, 12, "probing resumes after the snapshot");
    assert!(pr.is_paused());
    net.node_mut(1).raw.propose(b"x".to_vec()).expect("propose");
    net.node_mut(1).raw.tick();
    let mut snaps = 0;
    net.stabilize_with(|m| {
        snaps += usize::from(is(m, MessageType::MsgSnap));
        true
    });
    assert_eq!(snaps, 0, "no second snapshot");
    assert_eq!(progress(&net, 1, 3).state, ProgressState::Replicate);
    assert_eq!(net.get(3).applied.get(&12), Some(&(1, b"x".to_vec())));
}

#[test]
fn a_snapshot_acknowledged_after_further_compaction_waits_for_report_snapshot() {
    let mut net = compacted_leader_and_lagging_follower();
    let snapshots = heartbeat_until_snapshot(&mut net);
    assert_eq!(snapshots.len(), 1);
    // The leader moves on and compacts past the snapshot in flight.
    net.propose(1, b"12");
    net.propose(1, b"13");
    let leader = net.node_mut(1);
    let conf_state = leader.raw.raft.conf_state();
    let storage = leader.raw.store_mut();
    storage
        .create_snapshot(13, Some(conf_state), b"state@13".to_vec())
        .expect("snapshot");
    storage.compact(13).expect("compact");
    // 3 installs snapshot 11 and says so, but entry 12 is gone: as in etcd
    // the progress stays in Snapshot, heartbeats or not...
    net.deliver(snapshots[0].clone());
    net.stabilize();
    assert_eq!(net.get(3).applied_index, 11);
    net.node_mut(1).raw.tick();
    net.stabilize();
    let pr = progress(&net, 1, 3);
    assert_eq!((pr.state, pr.matched), (ProgressState::Snapshot, 11));
    // ...until the transport reports the send finished: then a probe finds
    // the follower needs the newer snapshot.
    net.node_mut(1)
        .raw
        .report_snapshot(3, SnapshotStatus::Finish);
    let again = heartbeat_until_snapshot(&mut net);
    assert_eq!(again.len(), 1);
    let snap = again[0].snapshot.as_ref().expect("snapshot");
    assert_eq!(snap.metadata.index, 13);
    net.deliver(again[0].clone());
    net.stabilize();
    assert_eq!(net.get(3).applied_index, 13);
    assert_eq!(progress(&net, 1, 3).state, ProgressState::Replicate);
    net.propose(1, b"14");
    assert_eq!(net.get(3).applied.get(&14), Some(&(1, b"14".to_vec())));
}

// ---------------------------------------------------------------------------
// 9. Pre-vote prevents term inflation (§9.6)
// ---------------------------------------------------------------------------

/// Leader 1 of term 1; 3 is cut off and misses an entry; 3 ticks for five
/// election timeouts. Returns the network (3 still cut off) and the terms
/// 3 went through.
fn isolate_and_tick_node_3(pre_vote: bool) -> (Network, BTreeSet<u64>) {
    let mut net = Network::with_config(&[1, 2, 3], config_with(move |c| c.pre_vote = pre_vote));
    net.elect(1);
    net.propose(1, b"a");
    net.isolate(3);
    net.propose(1, b"b");
    let mut terms = BTreeSet::new();
    let mut was_pre_candidate = false;
    for _ in 0..100 {
        net.tick_all();
        net.stabilize();
        terms.insert(term(&net, 3));
        was_pre_candidate |= net.get(3).role() == StateRole::PreCandidate;
    }
    assert_eq!(was_pre_candidate, pre_vote);
    assert_eq!(net.leaders(), vec![(1, 1)]);
    (net, terms)
}

#[test]
fn with_pre_vote_an_isolated_node_keeps_its_term_and_does_not_disrupt_on_return() {
    let (mut net, terms) = isolate_and_tick_node_3(true);
    assert_eq!(terms, BTreeSet::from([1]), "no term inflation");
    assert_eq!(net.get(3).durable_hard_state.term, 1);
    net.heal();
    for _ in 0..50 {
        net.tick_all();
        net.stabilize();
        assert_eq!(net.leaders(), vec![(1, 1)], "the leader is never disrupted");
    }
    assert_eq!(net.get(3).role(), StateRole::Follower);
    assert_eq!(net.get(3).raw.raft.lead, 1);
    assert_eq!(net.get(3).log_ids(), net.get(1).log_ids());
    assert_eq!(net.get(3).applied.get(&3), Some(&(1, b"b".to_vec())));
}

#[test]
fn without_pre_vote_an_isolated_node_inflates_its_term_and_disrupts_the_leader() {
    let (mut net, terms) = isolate_and_tick_node_3(false);
    let inflated = term(&net, 3);
    assert!(inflated >= 4, "term went up to {inflated}");
    assert!(terms.len() >= 4);
    net.heal();
    let mut disrupted = false;
    for _ in 0..50 {
        net.tick_all();
        net.stabilize();
        disrupted |= net.get(1).role() != StateRole::Leader || term(&net, 1) != 1;
    }
    assert!(
        disrupted,
        "the returning candidate's term deposes the leader"
    );
    // 3's stale log keeps it from winning; a new leader of a higher term
    // takes over.
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0].0, 3);
    assert!(leaders[0].1 > inflated);
}

#[test]
fn pre_vote_with_check_quorum_keeps_an_up_to_date_node_from_disrupting() {
    // Without a missed entry, pre-vote alone would let 3 win: the lease
    // of check-quorum makes 2 ignore it while it hears from the leader.
    let mut net = Network::with_config(
        &[1, 2, 3],
        config_with(|c| {
            c.pre_vote = true;
            c.check_quorum = true;
        }),
    );
    net.elect(1);
    net.isolate(3);
    for _ in 0..60 {
        net.tick_all();
        net.stabilize();
    }
    assert_eq!(term(&net, 3), 1);
    net.heal();
    let mut pre_vote_answers = 0;
    for _ in 0..50 {
        net.tick_all();
        net.stabilize_with(|m| {
            pre_vote_answers += usize::from(is(m, MessageType::MsgPreVoteResp) && m.from != 3);
            true
        });
        assert_eq!(net.leaders(), vec![(1, 1)]);
    }
    assert_eq!(
        pre_vote_answers, 0,
        "pre-votes within the lease are ignored"
    );
    assert_eq!(net.get(3).raw.raft.lead, 1);
}

#[test]
fn a_pre_candidate_learns_a_higher_term_from_a_rejection() {
    let mut net = Network::with_config(&[1, 2, 3], config_with(|c| c.pre_vote = true));
    net.elect(1);
    net.isolate(1);
    // 2 and 3 move to term 2 without 1 hearing of it.
    net.elect(2);
    assert_eq!(net.get(2).role(), StateRole::Leader);
    assert_eq!(term(&net, 2), 2);
    net.heal();
    net.restart(1, &config_with(|c| c.pre_vote = true)(1));
    net.node_mut(1).raw.campaign().expect("campaign");
    assert_eq!(net.get(1).role(), StateRole::PreCandidate);
    assert_eq!(term(&net, 1), 1, "a pre-candidate keeps its term");
    net.stabilize();
    assert_eq!(net.get(1).role(), StateRole::Follower);
    assert_eq!(term(&net, 1), 2);
    assert_eq!(net.leaders(), vec![(2, 2)]);
}

// ---------------------------------------------------------------------------
// 10. Check-quorum and the leader lease
// ---------------------------------------------------------------------------

fn check_quorum(id: u64) -> Config {
    let mut c = config(id);
    c.check_quorum = true;
    c
}

#[test]
fn a_leader_cut_off_from_a_quorum_steps_down_within_two_election_timeouts() {
    let mut net = Network::with_config(&[1, 2, 3], check_quorum);
    net.elect(1);
    net.isolate(1);
    let election_tick = 10;
    // Followers were active in the first check period: it passes.
    for _ in 0..election_tick {
        net.node_mut(1).raw.tick();
    }
    assert_eq!(net.get(1).role(), StateRole::Leader);
    // Nobody answered in the second period.
    for _ in 0..election_tick {
        net.node_mut(1).raw.tick();
    }
    assert_eq!(net.get(1).role(), StateRole::Follower);
    assert_eq!(term(&net, 1), 1, "stepping down does not change the term");
    assert_eq!(net.get(1).raw.raft.lead, 0);
}

#[test]
fn a_leader_hearing_from_a_quorum_stays() {
    let mut net = Network::with_config(&[1, 2, 3], check_quorum);
    net.elect(1);
    net.isolate(3);
    for _ in 0..100 {
        net.tick_all();
        net.stabilize();
    }
    assert_eq!(net.get(1).role(), StateRole::Leader);
    assert_eq!(term(&net, 1), 1);
}

#[test]
fn without_check_quorum_a_cut_off_leader_stays_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(1);
    for _ in 0..100 {
        net.node_mut(1).raw.tick();
    }
    assert_eq!(net.get(1).role(), StateRole::Leader);
}

/// Leader 1 of term 1 with `make_config`; 2 has just heard from it.
/// Returns what 2 answers to a MsgVote of term 5 from an up-to-date 3, and
/// 2's (term, vote) afterwards.
fn vote_of_2_for_3(
    make_config: impl Fn(u64) -> Config,
    context: &[u8],
) -> (Vec<(u64, bool)>, u64, u64) {
    let mut net = Network::with_config(&[1, 2, 3], make_config);
    net.elect(1);
    let last = last_index(&net, 2);
    let mut request = vote_request(3, 2, 5, last, 1);
    request.context = context.to_vec();
    let voter = net.node_mut(2);
    voter.raw.step(request).expect("step");
    while voter.process_ready() {}
    let sent = voter.persist_all();
    (
        vote_responses(&sent),
        term(&net, 2),
        net.get(2).raw.raft.vote,
    )
}

#[test]
fn with_check_quorum_a_follower_in_its_lease_ignores_a_higher_term_vote() {
    let (responses, term, vote) = vote_of_2_for_3(check_quorum, b"");
    assert!(responses.is_empty(), "{responses:?}");
    assert_eq!((term, vote), (1, 1), "term and vote unchanged");
}

#[test]
fn without_check_quorum_the_same_vote_is_granted() {
    let (responses, term, vote) = vote_of_2_for_3(config, b"");
    assert_eq!(responses, vec![(3, true)]);
    assert_eq!((term, vote), (5, 3));
}

#[test]
fn a_leader_transfer_vote_overrides_the_lease() {
    let (responses, term, vote) = vote_of_2_for_3(check_quorum, CAMPAIGN_TRANSFER);
    assert_eq!(responses, vec![(3, true)]);
    assert_eq!((term, vote), (5, 3));
}

#[test]
fn the_lease_ends_an_election_timeout_after_the_leader_was_last_heard() {
    let mut net = Network::with_config(&[1, 2, 3], check_quorum);
    net.elect(1);
    net.isolate(1);
    for _ in 0..10 {
        net.node_mut(2).raw.tick();
    }
    net.stabilize();
    let last = last_index(&net, 2);
    let voter = net.node_mut(2);
    voter
        .raw
        .step(vote_request(3, 2, 5, last, 1))
        .expect("step");
    while voter.process_ready() {}
    let sent = voter.persist_all();
    assert_eq!(vote_responses(&sent), vec![(3, true)]);
    assert_eq!(term(&net, 2), 5);
}

// ---------------------------------------------------------------------------
// 11. Proposals: dropped with an error, or forwarded to the leader
// ---------------------------------------------------------------------------

fn dropped(reason: DropReason) -> Result<(), RaftError> {
    Err(RaftError::ProposalDropped(reason))
}

#[test]
fn a_proposal_without_a_leader_is_dropped() {
    let mut net = Network::new(&[1, 2, 3]);
    assert_eq!(
        net.node_mut(1).raw.propose(b"x".to_vec()),
        dropped(DropReason::NoLeader)
    );
    // Also when a follower learns of a new term but not yet its leader.
    net.elect(1);
    assert_eq!(net.get(2).raw.raft.lead, 1);
    net.node_mut(2)
        .raw
        .step(vote_request(3, 2, 2, 0, 0))
        .expect("step");
    assert_eq!(term(&net, 2), 2);
    assert_eq!(net.get(2).raw.raft.lead, 0);
    assert_eq!(
        net.node_mut(2).raw.propose(b"x".to_vec()),
        dropped(DropReason::NoLeader)
    );
    assert!(
        net.get(2)
            .raw
            .raft
            .msgs
            .iter()
            .all(|m| !is(m, MessageType::MsgProp))
    );
}

#[test]
fn a_candidate_drops_proposals() {
    let mut net = Network::new(&[1, 2, 3]);
    net.node_mut(1).raw.campaign().expect("campaign");
    assert_eq!(
        net.node_mut(1).raw.propose(b"x".to_vec()),
        dropped(DropReason::Campaigning)
    );
}

#[test]
fn a_follower_with_forwarding_disabled_drops_proposals() {
    let mut net = Network::with_config(
        &[1, 2, 3],
        config_with(|c| c.disable_proposal_forwarding = true),
    );
    net.elect(1);
    assert_eq!(
        net.node_mut(2).raw.propose(b"x".to_vec()),
        dropped(DropReason::ForwardingDisabled)
    );
    assert!(!net.get(2).raw.has_ready(), "nothing is sent");
    // The leader itself still takes proposals.
    net.propose(1, b"y");
    assert_eq!(net.get(2).applied.get(&2), Some(&(1, b"y".to_vec())));
}

#[test]
fn a_follower_forwards_proposals_to_the_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.node_mut(3)
        .raw
        .propose(b"via 3".to_vec())
        .expect("forwarded");
    net.flush(3);
    let forwarded = net.take_in_flight(|m| m.from == 3);
    assert_eq!(forwarded.len(), 1);
    assert!(is(&forwarded[0], MessageType::MsgProp));
    assert_eq!(forwarded[0].to, 1);
    assert_eq!(forwarded[0].entries[0].data, b"via 3".to_vec());
    net.deliver(forwarded[0].clone());
    net.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(
            net.get(id).applied.get(&2),
            Some(&(1, b"via 3".to_vec())),
            "node {id}"
        );
    }
}

#[test]
fn proposals_past_the_uncommitted_size_limit_are_dropped_until_commit() {
    let mut net = Network::with_config(
        &[1, 2, 3],
        config_with(|c| c.max_uncommitted_entries_size = 10),
    );
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    let leader = net.node_mut(1);
    assert_eq!(leader.raw.propose(b"12345".to_vec()), Ok(()));
    assert_eq!(leader.raw.propose(b"67890".to_vec()), Ok(()));
    assert_eq!(
        leader.raw.propose(b"!".to_vec()),
        dropped(DropReason::UncommittedSizeLimit)
    );
    assert_eq!(leader.raw.raft.uncommitted_size, 10);
    // Empty entries cost nothing.
    net.stabilize();
    assert_eq!(last_index(&net, 1), 3);
    // Once committed and applied, the budget is free again.
    net.heal();
    net.tick_and_stabilize(2);
    assert_eq!(committed(&net, 1), 3);
    assert_eq!(net.get(1).raw.raft.uncommitted_size, 0);
    net.propose(1, b"again");
    assert_eq!(net.get(3).applied.get(&4), Some(&(1, b"again".to_vec())));
}

#[test]
fn a_single_proposal_larger_than_the_limit_is_accepted_when_nothing_is_uncommitted() {
    let mut net = Network::with_config(
        &[1, 2, 3],
        config_with(|c| c.max_uncommitted_entries_size = 4),
    );
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    let leader = net.node_mut(1);
    assert_eq!(leader.raw.propose(b"0123456789".to_vec()), Ok(()));
    assert_eq!(
        leader.raw.propose(b"x".to_vec()),
        dropped(DropReason::UncommittedSizeLimit)
    );
}

// ---------------------------------------------------------------------------
// 12. Pipelined Readies
// ---------------------------------------------------------------------------

#[test]
fn a_leader_pipelines_readies_and_applies_only_what_it_has_persisted() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let leader = net.node_mut(1);
    for data in [b"a", b"b", b"c"] {
        leader.raw.propose(data.to_vec()).expect("propose");
        assert!(leader.process_ready());
    }
    assert_eq!(leader.unpersisted.len(), 3);
    assert_eq!(leader.raw.pending_persist_count(), 3);
    let handed_out: Vec<Vec<u64>> = leader
        .unpersisted
        .iter()
        .map(|r| r.entries.iter().map(|e| e.index).collect())
        .collect();
    assert_eq!(handed_out, vec![vec![2], vec![3], vec![4]]);
    // The leader sends its appends before its own fsync (§10.2.1).
    let mut early = Vec::new();
    for ready in leader.unpersisted.iter_mut() {
        early.append(&mut ready.append_messages);
    }
    net.send(early);
    net.deliver_in_flight();
    net.flush(2);
    net.flush(3);
    net.deliver_in_flight();
    // The followers are a quorum: everything is committed...
    assert_eq!(committed(&net, 1), 4);
    // ...but the leader applies nothing it has not made durable itself.
    let leader = net.node_mut(1);
    assert!(leader.process_ready());
    let ready = leader.unpersisted.back().expect("ready");
    assert!(ready.committed_entries.is_empty());
    assert_eq!(ready.hard_state.map(|hs| hs.commit), Some(4));
    assert!(!ready.must_sync, "a commit-only change needs no fsync");
    leader.persist(1);
    assert!(leader.process_ready());
    let applied: Vec<u64> = leader
        .unpersisted
        .back()
        .expect("ready")
        .committed_entries
        .iter()
        .map(|e| e.index)
        .collect();
    assert_eq!(applied, vec![2]);
    leader.persist_all();
    while leader.process_ready() {}
    leader.persist_all();
    let data: Vec<&[u8]> = leader.applied.values().map(|(_, d)| &d[..]).collect();
    assert_eq!(data, vec![&b""[..], b"a", b"b", b"c"]);
}

#[test]
fn a_follower_acknowledges_only_the_readies_it_has_persisted() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for data in [b"a", b"b", b"c"] {
        net.node_mut(1).raw.propose(data.to_vec()).expect("propose");
        net.flush(1);
        net.deliver_in_flight();
        assert!(net.node_mut(2).process_ready());
    }
    let follower = net.node_mut(2);
    assert_eq!(follower.unpersisted.len(), 3);
    // Persist the first only: its acknowledgement (index 2) leaves, the
    // others wait.
    let sent = follower.persist(1);
    let acks: Vec<u64> = sent
        .iter()
        .filter(|m| is(m, MessageType::MsgAppResp))
        .map(|m| m.index)
        .collect();
    assert_eq!(acks, vec![2]);
    assert_eq!(follower.raw.store().last_index(), Ok(2));
    net.send(sent);
    net.deliver_in_flight();
    assert_eq!(progress(&net, 1, 2).matched, 2);
    assert_eq!(committed(&net, 1), 2);
    let sent = net.node_mut(2).persist_all();
    let acks: Vec<u64> = sent
        .iter()
        .filter(|m| is(m, MessageType::MsgAppResp))
        .map(|m| m.index)
        .collect();
    assert_eq!(acks, vec![3, 4]);
    net.send(sent);
    net.stabilize();
    assert_eq!(committed(&net, 2), 4);
    assert_eq!(net.get(2).applied.len(), 4);
}

#[test]
fn a_stale_persistence_ack_does_not_mark_a_replacing_entry_stable() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    // Leader 1 is cut off and hands out (but has not persisted) entry 2 of
    // term 1.
    net.isolate(1);
    let old = net.node_mut(1);
    old.raw.propose(b"lost".to_vec()).expect("propose");
    assert!(old.process_ready());
    let stale_number = old.unpersisted[0].number;
    assert_eq!(
        old.unpersisted[0].entries,
        vec![support::entry(2, 1, b"lost")]
    );
    // 2 and 3 elect 2 in term 2, whose empty entry takes index 2 (1 is
    // kept out of the network so that its Ready stays unpersisted).
    let old = net.nodes.remove(&1).expect("node 1");
    net.elect(2);
    assert_eq!(net.leaders(), vec![(2, 2)]);
    net.nodes.insert(1, old);
    // 2's append reaches 1, which replaces its entry 2 before persisting.
    let append = Message {
        index: 1,
        log_term: 1,
        entries: vec![Entry::new(2, 2, Vec::new())],
        commit: 2,
        ..msg(MessageType::MsgApp, 2, 1, 2)
    };
    let old = net.node_mut(1);
    old.raw.step(append).expect("step");
    assert_eq!(old.role(), StateRole::Follower);
    assert_eq!(old.raw.raft.raft_log.term(2), Ok(2));
    assert!(old.process_ready());
    assert_eq!(
        old.unpersisted[1].entries,
        vec![Entry::new(2, 2, Vec::new())]
    );
    // The stale Ready becomes durable: that acknowledges entry 2 of term
    // 1, not the entry 2 of term 2 now in the log.
    old.persist(1);
    assert_eq!(old.raw.pending_persist_count(), 1);
    let unstable = &old.raw.raft.raft_log.unstable;
    assert_eq!(unstable.offset, 2, "entry 2 of term 2 is still unstable");
    assert_eq!(unstable.entries, vec![Entry::new(2, 2, Vec::new())]);
    assert_eq!(old.raw.store().term(2), Ok(1), "storage has the old entry");
    // Committed index 2 is not handed out for application while unstable.
    assert!(!old.applied.contains_key(&2));
    // The old leader's own acknowledgement of term 1 changed nothing.
    assert_eq!(old.raw.raft.term, 2);
    assert!(old.unpersisted[0].number > stale_number);
    // Only the Ready with the new entry makes it stable.
    let sent = old.persist_all();
    assert!(old.raw.raft.raft_log.unstable.entries.is_empty());
    assert_eq!(old.raw.store().term(2), Ok(2));
    let acks: Vec<(u64, bool)> = sent
        .iter()
        .filter(|m| is(m, MessageType::MsgAppResp))
        .map(|m| (m.index, m.reject))
        .collect();
    assert_eq!(acks, vec![(2, false)]);
    while old.process_ready() {}
    old.persist_all();
    assert_eq!(old.applied.get(&2), Some(&(2, Vec::new())));
    net.heal();
    net.tick_and_stabilize(2);
    for id in [1, 2, 3] {
        assert_eq!(net.get(id).log_ids(), vec![(1, 1), (2, 2)]);
    }
}

#[test]
fn a_deposed_leaders_late_self_acknowledgement_does_not_commit() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    // 1 hands out an entry, sends it early to 2 (§10.2.1), and 2 acks.
    let leader = net.node_mut(1);
    leader.raw.propose(b"x".to_vec()).expect("propose");
    assert!(leader.process_ready());
    let early = std::mem::take(&mut leader.unpersisted[0].append_messages);
    net.send(early.into_iter().filter(|m| m.to == 2).collect());
    net.deliver_in_flight();
    net.flush(2);
    net.flush(3);
    let ack = net.take_in_flight(|m| m.from == 2);
    // Meanwhile 1 learns of term 2 (3 campaigned) and steps down...
    let last = last_index(&net, 3);
    net.node_mut(1)
        .raw
        .step(vote_request(3, 1, 2, last, 1))
        .expect("step");
    assert_eq!(net.get(1).role(), StateRole::Follower);
    // ...then its Ready becomes durable and the ack arrives: neither
    // counts any more.
    for m in ack {
        net.deliver(m);
    }
    net.node_mut(1).persist_all();
    assert_eq!(committed(&net, 1), 1);
    assert_eq!(net.get(1).raw.raft.trk.get(2).map(|p| p.matched), Some(0));
}

// ---------------------------------------------------------------------------
// Randomized runs: contested elections, partitions, crashes, pipelined and
// out-of-step persistence, reordered and lost messages. The safety
// properties are checked after every step.
// ---------------------------------------------------------------------------

struct Chaos {
    net: Network,
    rng: Rng,
    ids: Vec<u64>,
    make_config: fn(u64) -> Config,
    crashes: bool,
    compactions: bool,
    /// Every node seen leading, by term (election safety).
    leaders_by_term: BTreeMap<u64, BTreeSet<u64>>,
    /// Committed entries: index -> (entry term, term of the leader that
    /// first reported it committed).
    committed: BTreeMap<u64, (u64, u64)>,
    /// Applied entries, by index, across all nodes (state machine safety).
    applied: BTreeMap<u64, (u64, Vec<u8>)>,
    proposals: u64,
}

impl Chaos {
    fn new(ids: &[u64], make_config: fn(u64) -> Config, seed: u64, faults: Faults) -> Chaos {
        Chaos {
            net: Network::with_config(ids, make_config),
            rng: Rng::new(seed),
            ids: ids.to_vec(),
            make_config,
            crashes: faults.crashes,
            compactions: faults.compactions,
            leaders_by_term: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            proposals: 0,
        }
    }

    fn pick(&mut self) -> u64 {
        self.ids[self.rng.below(self.ids.len() as u64) as usize]
    }

    fn repartition(&mut self) {
        self.net.heal();
        match self.rng.below(4) {
            0 | 1 => {}
            2 => {
                let id = self.pick();
                self.net.isolate(id);
            }
            _ => {
                // Split into two sides at random.
                let side: Vec<bool> = self.ids.iter().map(|_| self.rng.below(2) == 0).collect();
                for (i, &a) in self.ids.iter().enumerate() {
                    for (j, &b) in self.ids.iter().enumerate() {
                        if side[i] != side[j] {
                            self.net.cut_link(a, b);
                        }
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        if self.rng.below(60) == 0 {
            self.repartition();
        }
        if self.crashes && self.rng.below(150) == 0 {
            let id = self.pick();
            let lost: Vec<Message> = self
                .net
                .in_flight
                .iter()
                .filter(|m| m.to == id)
                .cloned()
                .collect();
            self.report_lost_snapshots(&lost);
            self.net.restart(id, &(self.make_config)(id));
        }
        if self.compactions && self.rng.below(40) == 0 {
            let id = self.pick();
            self.compact(id);
        }
        for id in self.ids.clone() {
            if self.rng.below(3) == 0 {
                self.net.node_mut(id).raw.tick();
            }
        }
        if self.rng.below(25) == 0 {
            // Contested elections: a campaign out of turn.
            let id = self.pick();
            let _ = self.net.node_mut(id).raw.campaign();
        }
        if self.rng.below(3) == 0 {
            let id = self.pick();
            self.proposals += 1;
            let data = format!("p{}", self.proposals).into_bytes();
            let _ = self.net.node_mut(id).raw.propose(data);
        }
        // Readies are handed out and persisted out of step.
        for id in self.ids.clone() {
            let hand_out = self.rng.below(3) != 0;
            let early = self.rng.below(2) == 0;
            let node = self.net.node_mut(id);
            if hand_out {
                while node.process_ready() {}
            }
            if early {
                // A leader may send its appends before its own fsync
                // (§10.2.1).
                let mut appends = Vec::new();
                for ready in node.unpersisted.iter_mut() {
                    appends.append(&mut ready.append_messages);
                }
                self.send(appends);
            }
            let pending = self.net.get(id).unpersisted.len() as u64;
            let count = self.rng.below(pending + 1) as usize;
            let sent = self.net.node_mut(id).persist(count);
            self.send(sent);
        }
        // Deliver some messages in random order; lose or duplicate a few.
        let deliveries = self.rng.below(self.net.in_flight.len() as u64 + 1);
        for _ in 0..deliveries {
            if self.net.in_flight.is_empty() {
                break;
            }
            let at = self.rng.below(self.net.in_flight.len() as u64) as usize;
            let Some(m) = self.net.in_flight.remove(at) else {
                break;
            };
            let lost = self.rng.below(20) == 0 || self.net.cut.contains(&(m.from, m.to));
            if is(&m, MessageType::MsgSnap) {
                // The transport reports the outcome of a snapshot send.
                let status = if lost {
                    SnapshotStatus::Failure
                } else {
                    SnapshotStatus::Finish
                };
                if let Some(node) = self.net.nodes.get_mut(&m.from) {
                    node.raw.report_snapshot(m.to, status);
                }
            }
            if lost {
                continue;
            }
            if self.rng.below(20) == 0 {
                self.net.in_flight.push_back(m.clone());
            }
            if matches!(
                m.msg_type(),
                MessageType::MsgApp | MessageType::MsgHeartbeat | MessageType::MsgSnap
            ) {
                self.saw_leader(m.term, m.from);
            }
            self.net.deliver(m);
        }
        self.check();
    }

    /// Sends `messages`, reporting the snapshots lost on cut links.
    fn send(&mut self, messages: Vec<Message>) {
        let cut: Vec<Message> = messages
            .iter()
            .filter(|m| self.net.cut.contains(&(m.from, m.to)))
            .cloned()
            .collect();
        self.report_lost_snapshots(&cut);
        self.net.send(messages);
    }

    /// The transport reports snapshots it could not deliver.
    fn report_lost_snapshots(&mut self, lost: &[Message]) {
        for m in lost.iter().filter(|m| is(m, MessageType::MsgSnap)) {
            if let Some(node) = self.net.nodes.get_mut(&m.from) {
                node.raw.report_snapshot(m.to, SnapshotStatus::Failure);
            }
        }
    }

    /// Node `id` snapshots its state machine at its applied index and
    /// compacts its log there, but not past its durable commit index (as
    /// etcd's server waits for the Ready's writes before snapshotting):
    /// a restart needs a HardState commit at least the snapshot's index.
    fn compact(&mut self, id: u64) {
        let node = self.net.node_mut(id);
        let index = node.applied_index.min(node.durable_hard_state.commit);
        let conf_state = node.raw.raft.conf_state();
        let storage = node.raw.store_mut();
        if storage.first_index().expect("first index") > index {
            return;
        }
        let data = format!("state of {id} at {index}").into_bytes();
        storage
            .create_snapshot(index, Some(conf_state), data)
            .expect("snapshot at the applied index");
        storage
            .compact(index)
            .expect("compact at the applied index");
    }

    fn saw_leader(&mut self, term: u64, id: u64) {
        let leaders = self.leaders_by_term.entry(term).or_default();
        leaders.insert(id);
        assert!(
            leaders.len() <= 1,
            "two leaders in term {term}: {leaders:?}"
        );
    }

    fn check(&mut self) {
        for (id, t) in self.net.leaders() {
            self.saw_leader(t, id);
        }
        for node in self.net.nodes.values() {
            let raft = &node.raw.raft;
            if raft.state == StateRole::Leader {
                // Leader completeness: every entry committed under an
                // earlier term is in this leader's log.
                let first_index = raft.raft_log.first_index();
                for (&index, &(entry_term, commit_term)) in &self.committed {
                    // Entries compacted away are in the leader's snapshot.
                    if commit_term < raft.term && index + 1 >= first_index {
                        assert_eq!(
                            raft.raft_log.term(index),
                            Ok(entry_term),
                            "leader {} of term {} lacks entry {index} committed in term {commit_term}",
                            raft.id,
                            raft.term
                        );
                    }
                }
                for index in first_index.max(2) - 1..=raft.raft_log.committed {
                    let entry_term = raft.raft_log.term(index).expect("committed entry");
                    let known = self
                        .committed
                        .entry(index)
                        .or_insert((entry_term, raft.term));
                    assert_eq!(known.0, entry_term, "entry {index} committed twice");
                }
            }
            // State machine safety: the same entry at each applied index.
            for (&index, entry) in &node.applied {
                let known = self.applied.entry(index).or_insert_with(|| entry.clone());
                assert_eq!(
                    known, entry,
                    "node {} applied a different entry {index}",
                    raft.id
                );
            }
        }
    }

    /// Heals everything and runs the cluster until one leader has every
    /// node's log identical and committed.
    fn settle(&mut self) -> u64 {
        self.net.heal();
        for _ in 0..300 {
            self.net.tick_all();
            let mut snapshots = Vec::new();
            self.net.stabilize_with(|m| {
                if is(m, MessageType::MsgSnap) {
                    snapshots.push((m.from, m.to));
                }
                true
            });
            for (from, to) in snapshots {
                let sender = self.net.node_mut(from);
                sender.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
            self.check();
            let leaders: Vec<(u64, u64)> = self.net.leaders();
            let Some(&(leader, leader_term)) = leaders.iter().max_by_key(|(_, t)| *t) else {
                continue;
            };
            if leaders.len() > 1 || self.net.get(leader).raw.raft.lead != leader {
                continue;
            }
            let all_follow = self
                .net
                .nodes
                .values()
                .all(|n| n.raw.raft.term == leader_term && n.raw.raft.lead == leader);
            if all_follow {
                self.net.propose(leader, b"final");
                self.check();
                return leader;
            }
        }
        panic!("cluster did not settle");
    }

    fn assert_converged(&self, leader: u64) {
        let reference = self.net.get(leader);
        let last = reference.raw.raft.raft_log.last_index();
        // Compare what every node still holds (compaction points differ).
        let from = self
            .net
            .nodes
            .values()
            .map(|n| n.raw.raft.raft_log.first_index())
            .max()
            .expect("nodes");
        let suffix = |node: &support::Node| -> Vec<(u64, u64)> {
            node.log_ids()
                .into_iter()
                .filter(|&(i, _)| i >= from)
                .collect()
        };
        for node in self.net.nodes.values() {
            assert_eq!(suffix(node), suffix(reference), "node {}", node.id());
            assert_eq!(node.raw.raft.raft_log.committed, last, "node {}", node.id());
            assert_eq!(node.applied_index, last, "node {}", node.id());
        }
    }
}

/// The faults a randomized run injects besides partitions and lost,
/// duplicated and reordered messages.
#[derive(Clone, Copy)]
struct Faults {
    /// Nodes crash, losing the Readies they have not persisted.
    crashes: bool,
    /// Nodes snapshot and compact their logs, so that laggards need
    /// snapshots.
    compactions: bool,
}

const NO_FAULTS: Faults = Faults {
    crashes: false,
    compactions: false,
};

const ALL_FAULTS: Faults = Faults {
    crashes: true,
    compactions: true,
};

fn run_chaos(make_config: fn(u64) -> Config, seed: u64, faults: Faults) -> Chaos {
    run_chaos_on(&[1, 2, 3, 4, 5], make_config, seed, faults)
}

fn run_chaos_on(ids: &[u64], make_config: fn(u64) -> Config, seed: u64, faults: Faults) -> Chaos {
    let mut chaos = Chaos::new(ids, make_config, seed, faults);
    for _ in 0..3000 {
        chaos.step();
    }
    let leader = chaos.settle();
    chaos.assert_converged(leader);
    chaos
}

#[test]
fn random_contested_elections_keep_one_leader_per_term_and_logs_consistent() {
    let chaos = run_chaos(config, 7, NO_FAULTS);
    let terms_with_leaders = chaos.leaders_by_term.len();
    assert!(
        terms_with_leaders >= 10,
        "only {terms_with_leaders} terms had leaders"
    );
    assert!(
        chaos.committed.len() >= 50,
        "{} committed",
        chaos.committed.len()
    );
}

#[test]
fn random_crashes_with_unpersisted_readies_keep_raft_safe() {
    let crashes = Faults {
        crashes: true,
        compactions: false,
    };
    let chaos = run_chaos(config, 11, crashes);
    assert!(chaos.leaders_by_term.len() >= 10);
    assert!(chaos.committed.len() >= 50);
}

#[test]
fn random_runs_with_pre_vote_and_check_quorum_keep_raft_safe() {
    fn both(id: u64) -> Config {
        let mut c = config(id);
        c.pre_vote = true;
        c.check_quorum = true;
        c
    }
    let chaos = run_chaos(both, 13, ALL_FAULTS);
    assert!(chaos.leaders_by_term.len() >= 5);
    assert!(chaos.committed.len() >= 50);
}

#[test]
fn random_runs_with_tight_flow_control_keep_raft_safe() {
    fn tight(id: u64) -> Config {
        let mut c = config(id);
        c.max_inflight_msgs = 2;
        c.max_size_per_msg = 1;
        c
    }
    let chaos = run_chaos(tight, 17, ALL_FAULTS);
    assert!(chaos.committed.len() >= 50);
}

#[test]
fn random_runs_over_several_seeds_with_every_fault_keep_raft_safe() {
    fn both(id: u64) -> Config {
        let mut c = config(id);
        c.pre_vote = true;
        c.check_quorum = true;
        c
    }
    fn tight(id: u64) -> Config {
        let mut c = config(id);
        c.max_inflight_msgs = 2;
        c.max_size_per_msg = 1;
        c
    }
    let configs: [fn(u64) -> Config; 3] = [config, both, tight];
    for seed in 100..106 {
        for make_config in configs {
            let chaos = run_chaos(make_config, seed, ALL_FAULTS);
            assert!(chaos.committed.len() >= 50, "seed {seed}");
            let chaos = run_chaos_on(&[1, 2, 3], make_config, seed, ALL_FAULTS);
            assert!(chaos.committed.len() >= 50, "seed {seed}");
        }
    }
}
