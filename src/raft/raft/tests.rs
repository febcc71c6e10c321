//! Rules of the state machine checked on one `Raft` at a time, by stepping
//! hand-made messages (scenarios across nodes live in `tests/`).

use super::*;
use crate::raft::storage::MemoryStorage;
use crate::raftpb::SnapshotMetadata;

fn raft_with(id: u64, voters: &[u64], configure: impl Fn(&mut Config)) -> Raft<MemoryStorage> {
    let storage = MemoryStorage::new_with_conf_state(ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    });
    let mut config = Config::new(id);
    configure(&mut config);
    Raft::new(&config, storage).expect("raft")
}

fn raft(id: u64, voters: &[u64]) -> Raft<MemoryStorage> {
    raft_with(id, voters, |_| {})
}

/// A follower whose storage holds entries with the given terms from 1.
fn follower_with_log(terms: &[u64]) -> Raft<MemoryStorage> {
    let mut storage = MemoryStorage::new_with_conf_state(ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    });
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry::new(t, i as u64 + 1, vec![]))
        .collect();
    storage.append(&entries).expect("append");
    let last_term = terms.last().copied().unwrap_or(0);
    storage.set_hard_state(HardState {
        term: last_term,
        vote: 0,
        commit: 0,
    });
    Raft::new(&Config::new(1), storage).expect("raft")
}

fn msg(msg_type: MessageType, from: u64, to: u64, term: u64) -> Message {
    Message {
        msg_type: msg_type as i32,
        from,
        to,
        term,
        ..Default::default()
    }
}

fn take(r: &mut Raft<MemoryStorage>) -> Vec<Message> {
    // As `RawNode::ready` does before taking the messages.
    r.announce_commit();
    std::mem::take(&mut r.msgs)
}

/// Delivers the node's own queued self-messages (as on_persisted would).
fn persist_self(r: &mut Raft<MemoryStorage>) {
    for m in std::mem::take(&mut r.msgs_after_append) {
        r.step(m).expect("self message");
    }
}

/// Makes a 3-node `r` (id 1) leader of term 1 with 2's vote.
fn make_leader(r: &mut Raft<MemoryStorage>) {
    r.campaign(CampaignType::Election);
    persist_self(r);
    r.step(msg(MessageType::MsgVoteResp, 2, 1, r.term))
        .expect("vote");
    assert_eq!(r.state, StateRole::Leader);
    take(r);
}

#[test]
fn rng_is_deterministic_per_seed() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    let mut c = Rng::new(8);
    let from_a: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
    let from_b: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
    let from_c: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
    assert_eq!(from_a, from_b);
    assert_ne!(from_a, from_c);
    assert_eq!(Rng::new(1).below(0), 0);
}

#[test]
fn randomized_election_timeout_stays_in_range_and_varies() {
    let mut r = raft(1, &[1, 2, 3]);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        r.reset_randomized_election_timeout();
        let timeout = r.randomized_election_timeout();
        assert!((10..20).contains(&timeout), "timeout {timeout}");
        seen.insert(timeout);
    }
    assert!(seen.len() > 5, "timeouts barely vary: {seen:?}");
}

#[test]
fn follower_campaigns_after_election_timeout() {
    let mut r = raft(1, &[1, 2, 3]);
    let timeout = r.randomized_election_timeout();
    for _ in 0..timeout - 1 {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
    r.tick();
    assert_eq!(r.state, StateRole::Candidate);
    assert_eq!(r.term, 1);
    assert_eq!(r.vote, 1);
}

#[test]
fn learner_never_campaigns() {
    let storage = MemoryStorage::new_with_conf_state(ConfState {
        voters: vec![1, 2],
        learners: vec![3],
        ..Default::default()
    });
    let mut r = Raft::new(&Config::new(3), storage).expect("raft");
    for _ in 0..100 {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 0);
}

#[test]
fn pre_candidate_keeps_term_and_asks_for_next_term() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.pre_vote = true);
    r.step(msg(MessageType::MsgHup, 1, 1, 0)).expect("hup");
    assert_eq!(r.state, StateRole::PreCandidate);
    assert_eq!(r.term, 0);
    assert_eq!(r.vote, 0);
    let sent = take(&mut r);
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|m| m.msg_type() == MessageType::MsgPreVote && m.term == 1)
    );
}

#[test]
fn pre_vote_win_starts_real_election() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.pre_vote = true);
    r.step(msg(MessageType::MsgHup, 1, 1, 0)).expect("hup");
    persist_self(&mut r);
    r.step(msg(MessageType::MsgPreVoteResp, 2, 1, 1))
        .expect("pre-vote");
    assert_eq!(r.state, StateRole::Candidate);
    assert_eq!(r.term, 1);
}

#[test]
fn rejected_pre_votes_return_to_follower_without_term_change() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.pre_vote = true);
    r.step(msg(MessageType::MsgHup, 1, 1, 0)).expect("hup");
    persist_self(&mut r);
    for from in [2, 3] {
        let mut reject = msg(MessageType::MsgPreVoteResp, from, 1, 0);
        reject.reject = true;
        r.step(reject).expect("reject");
    }
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 0);
}

#[test]
fn vote_granted_once_per_term() {
    let mut r = raft(1, &[1, 2, 3]);
    let mut request = msg(MessageType::MsgVote, 2, 1, 1);
    request.index = 0;
    request.log_term = 0;
    r.step(request.clone()).expect("vote");
    assert_eq!(r.vote, 2);
    let granted = take(&mut r);
    assert!(!granted[0].reject);
    // Another candidate in the same term is refused.
    request.from = 3;
    r.step(request.clone()).expect("vote");
    let refused = take(&mut r);
    assert!(refused[0].reject);
    assert_eq!(r.vote, 2);
    // The same candidate asking again gets the vote again (retransmission).
    request.from = 2;
    r.step(request).expect("vote");
    assert!(!take(&mut r)[0].reject);
}

#[test]
fn vote_refused_to_less_up_to_date_log() {
    let cases = [
        // (candidate last index, last term, granted) against log terms [1,1,2]
        (3, 2, true),
        (4, 2, true),
        (9, 3, true),
        (2, 2, true),
        (1, 3, true),
        (9, 1, false),
        (3, 1, false),
    ];
    for (index, log_term, granted) in cases {
        let mut r = follower_with_log(&[1, 1, 2]);
        let mut request = msg(MessageType::MsgVote, 2, 1, 3);
        request.index = index;
        request.log_term = log_term;
        r.step(request).expect("vote");
        let response = take(&mut r);
        let grant_index = if index == 2 && log_term == 2 {
            // Same last term, shorter log: refused.
            false
        } else {
            granted
        };
        assert_eq!(
            !response[0].reject, grant_index,
            "candidate ({index}, {log_term})"
        );
    }
}

#[test]
fn messages_of_lower_terms_are_ignored() {
    let mut r = raft(1, &[1, 2, 3]);
    r.become_follower(5, 2);
    let mut append = msg(MessageType::MsgApp, 3, 1, 3);
    append.entries = vec![Entry::new(3, 1, b"x".to_vec())];
    r.step(append).expect("step");
    assert_eq!(r.raft_log.last_index(), 0);
    assert_eq!(r.term, 5);
    assert_eq!(r.lead, 2);
    assert!(take(&mut r).is_empty());
}

#[test]
fn stale_leader_is_answered_when_pre_vote_or_check_quorum() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.check_quorum = true);
    r.become_follower(5, 2);
    r.step(msg(MessageType::MsgHeartbeat, 3, 1, 3))
        .expect("step");
    let sent = take(&mut r);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msg_type(), MessageType::MsgAppResp);
    assert_eq!(sent[0].term, 5);
    assert_eq!(sent[0].to, 3);
}

#[test]
fn higher_term_append_makes_follower_of_sender() {
    let mut r = raft(1, &[1, 2, 3]);
    make_leader(&mut r);
    r.step(msg(MessageType::MsgApp, 2, 1, 7)).expect("step");
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 7);
    assert_eq!(r.lead, 2);
}

#[test]
fn higher_term_vote_request_resets_leader() {
    let mut r = raft(1, &[1, 2, 3]);
    make_leader(&mut r);
    let mut request = msg(MessageType::MsgVote, 2, 1, 7);
    request.index = 10;
    request.log_term = 6;
    r.step(request).expect("step");
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 7);
    assert_eq!(r.lead, 0);
    assert_eq!(r.vote, 2);
}

#[test]
fn leader_lease_ignores_disruptive_vote_requests() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.check_quorum = true);
    r.become_follower(1, 2);
    let mut request = msg(MessageType::MsgVote, 3, 1, 2);
    request.index = 10;
    request.log_term = 1;
    r.step(request.clone()).expect("step");
    assert_eq!(r.term, 1, "in lease: term unchanged");
    assert!(take(&mut r).is_empty());
    // A leader transfer's campaign may break the lease.
    request.context = CAMPAIGN_TRANSFER.to_vec();
    r.step(request).expect("step");
    assert_eq!(r.term, 2);
    assert_eq!(r.vote, 3);
}

#[test]
fn append_with_mismatched_previous_entry_is_rejected_with_hint() {
    let mut r = follower_with_log(&[1, 1, 2, 2, 2]);
    let mut append = msg(MessageType::MsgApp, 2, 1, 3);
    append.index = 5;
    append.log_term = 3;
    r.step(append).expect("step");
    let sent = take(&mut r);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].reject);
    assert_eq!(sent[0].index, 5);
    // Our entries of term ≤ 3 end at 5 (term 2): the leader can jump there.
    assert_eq!((sent[0].reject_hint, sent[0].log_term), (5, 2));
}

#[test]
fn append_past_our_log_hints_our_last_index() {
    let mut r = follower_with_log(&[1, 1]);
    let mut append = msg(MessageType::MsgApp, 2, 1, 3);
    append.index = 9;
    append.log_term = 3;
    r.step(append).expect("step");
    let sent = take(&mut r);
    assert!(sent[0].reject);
    assert_eq!((sent[0].reject_hint, sent[0].log_term), (2, 1));
}

#[test]
fn append_below_commit_answers_commit_index() {
    let mut r = follower_with_log(&[1, 1, 1]);
    r.raft_log.commit_to(3);
    let mut append = msg(MessageType::MsgApp, 2, 1, 1);
    append.index = 1;
    append.log_term = 1;
    r.step(append).expect("step");
    let sent = take(&mut r);
    assert!(!sent[0].reject);
    assert_eq!(sent[0].index, 3);
}

#[test]
fn malformed_appends_from_a_peer_do_not_panic() {
    let mut r = follower_with_log(&[1, 1, 1]);
    r.raft_log.commit_to(3);
    // Overwrites a committed entry with a different term.
    let mut overwrite = msg(MessageType::MsgApp, 2, 1, 2);
    overwrite.index = 1;
    overwrite.log_term = 1;
    overwrite.entries = vec![Entry::new(2, 2, vec![])];
    r.step(overwrite).expect("step");
    // Non-contiguous entries.
    let mut gap = msg(MessageType::MsgApp, 2, 1, 2);
    gap.index = 3;
    gap.log_term = 1;
    gap.entries = vec![Entry::new(2, 4, vec![]), Entry::new(2, 6, vec![])];
    r.step(gap).expect("step");
    // Heartbeat committing past our log.
    let mut heartbeat = msg(MessageType::MsgHeartbeat, 2, 1, 2);
    heartbeat.commit = 100;
    r.step(heartbeat).expect("step");
    assert_eq!(r.raft_log.last_index(), 3);
    assert_eq!(r.raft_log.committed, 3);
    assert_eq!(r.raft_log.term(2), Ok(1));
}

#[test]
fn heartbeat_advances_commit_and_is_answered_with_context() {
    let mut r = follower_with_log(&[1, 1, 1]);
    let mut heartbeat = msg(MessageType::MsgHeartbeat, 2, 1, 1);
    heartbeat.commit = 2;
    heartbeat.context = b"ctx".to_vec();
    r.step(heartbeat).expect("step");
    assert_eq!(r.raft_log.committed, 2);
    let sent = take(&mut r);
    assert_eq!(sent[0].msg_type(), MessageType::MsgHeartbeatResp);
    assert_eq!(sent[0].context, b"ctx");
}

#[test]
fn leader_appends_empty_entry_of_its_term() {
    let mut r = follower_with_log(&[1, 1]);
    r.campaign(CampaignType::Election);
    persist_self(&mut r);
    r.step(msg(MessageType::MsgVoteResp, 2, 1, r.term))
        .expect("vote");
    assert_eq!(r.state, StateRole::Leader);
    assert_eq!(r.raft_log.last_index(), 3);
    assert_eq!(r.raft_log.term(3), Ok(r.term));
    assert!(r.raft_log.unstable_entries()[0].data.is_empty());
}

#[test]
fn leader_counts_own_entries_only_when_acknowledged_to_itself() {
    let mut r = raft(1, &[1, 2, 3]);
    make_leader(&mut r);
    // The empty entry 1 is not durable on the leader yet; follower 2 has it.
    let own_acks = std::mem::take(&mut r.msgs_after_append);
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, 1);
    ack.index = 1;
    r.step(ack).expect("ack");
    assert_eq!(r.raft_log.committed, 0, "one durable copy of three");
    for m in own_acks {
        r.step(m).expect("own ack");
    }
    assert_eq!(r.raft_log.committed, 1, "leader + follower 2");
}

/// A leader of 3 that committed its empty entry 1 with both followers
/// (now replicating), then sent them entries 2 and 3, durable on the
/// leader and not acknowledged yet.
fn leader_with_two_unacknowledged_entries() -> Raft<MemoryStorage> {
    let mut r = raft(1, &[1, 2, 3]);
    make_leader(&mut r);
    persist_self(&mut r);
    for follower in [2, 3] {
        r.step(app_resp(follower, 1)).expect("ack");
    }
    assert_eq!(r.raft_log.committed, 1);
    take(&mut r);
    for data in [b"a", b"b"] {
        r.step(proposal(data)).expect("propose");
    }
    persist_self(&mut r);
    take(&mut r);
    r
}

/// Follower `from`'s acknowledgement of entries up to `index` (term 1).
fn app_resp(from: u64, index: u64) -> Message {
    Message {
        index,
        ..msg(MessageType::MsgAppResp, from, 1, 1)
    }
}

/// A client proposal of one entry carrying `data`.
fn proposal(data: &[u8]) -> Message {
    Message {
        entries: vec![Entry {
            data: data.to_vec().into(),
            ..Default::default()
        }],
        ..msg(MessageType::MsgProp, 1, 1, 0)
    }
}

fn commits_sent_to(messages: &[Message], to: u64) -> Vec<(u64, usize)> {
    messages
        .iter()
        .filter(|m| m.to == to && m.msg_type() == MessageType::MsgApp)
        .map(|m| (m.commit, m.entries.len()))
        .collect()
}

#[test]
fn acknowledgements_of_one_batch_announce_the_commit_index_once() {
    let mut r = leader_with_two_unacknowledged_entries();
    for index in 2..=3 {
        r.step(app_resp(2, index)).expect("ack");
        assert_eq!(r.raft_log.committed, index);
    }
    assert!(r.msgs.is_empty(), "nothing sent before the batch ends");
    let sent = take(&mut r);
    // Each follower hears the last commit index once, in an empty append.
    assert_eq!(commits_sent_to(&sent, 2), vec![(3, 0)]);
    assert_eq!(commits_sent_to(&sent, 3), vec![(3, 0)]);
    assert!(take(&mut r).is_empty(), "announced once");
}

#[test]
fn a_proposal_in_the_same_batch_carries_the_commit_index() {
    let mut r = leader_with_two_unacknowledged_entries();
    r.step(app_resp(2, 3)).expect("ack");
    r.step(proposal(b"c")).expect("propose");
    let sent = take(&mut r);
    // The proposal's append told both followers commit 3: no empty append.
    assert_eq!(commits_sent_to(&sent, 2), vec![(3, 1)]);
    assert_eq!(commits_sent_to(&sent, 3), vec![(3, 1)]);
}

#[test]
fn a_deposed_leader_announces_nothing() {
    let mut r = leader_with_two_unacknowledged_entries();
    r.step(app_resp(2, 3)).expect("ack");
    r.step(msg(MessageType::MsgApp, 3, 1, 2))
        .expect("newer leader");
    assert_eq!(r.state, StateRole::Follower);
    let sent = take(&mut r);
    assert!(
        sent.iter().all(|m| m.msg_type() != MessageType::MsgApp),
        "{sent:?}"
    );
}

#[test]
fn own_acknowledgement_from_an_earlier_term_is_ignored() {
    let mut r = raft(1, &[1, 2, 3]);
    make_leader(&mut r);
    let own_acks = std::mem::take(&mut r.msgs_after_append);
    // Deposed before the entry became durable.
    r.step(msg(MessageType::MsgApp, 2, 1, 2)).expect("step");
    assert_eq!(r.state, StateRole::Follower);
    for m in own_acks {
        r.step(m).expect("stale own ack");
    }
    assert_eq!(r.raft_log.committed, 0);
}

#[test]
fn check_quorum_leader_steps_down_without_active_quorum() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.check_quorum = true);
    make_leader(&mut r);
    for _ in 0..10 {
        r.tick();
    }
    // First check: nobody was active, but recent_active starts... either
    // way within two election timeouts the leader must step down.
    for _ in 0..10 {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
    assert_eq!(r.term, 1);
}

#[test]
fn check_quorum_leader_stays_with_an_active_quorum() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.check_quorum = true);
    make_leader(&mut r);
    for _ in 0..5 {
        for _ in 0..10 {
            r.tick();
            let mut response = msg(MessageType::MsgHeartbeatResp, 2, 1, 1);
            response.term = r.term;
            r.step(response).expect("heartbeat response");
        }
    }
    assert_eq!(r.state, StateRole::Leader);
}

#[test]
fn proposals_past_uncommitted_limit_are_dropped() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.max_uncommitted_entries_size = 10);
    make_leader(&mut r);
    let propose = |data: &[u8]| Message {
        msg_type: MessageType::MsgProp as i32,
        from: 1,
        entries: vec![Entry::new(0, 0, data.to_vec())],
        ..Default::default()
    };
    r.step(propose(b"12345678")).expect("first fits");
    assert_eq!(
        r.step(propose(b"12345678")),
        Err(RaftError::ProposalDropped(DropReason::UncommittedSizeLimit))
    );
    // Once committed entries are handed to the application the budget is
    // released.
    r.reduce_uncommitted_size(8);
    r.step(propose(b"12345678")).expect("fits again");
}

#[test]
fn a_single_oversized_proposal_is_accepted_when_nothing_is_uncommitted() {
    let mut r = raft_with(1, &[1, 2, 3], |c| c.max_uncommitted_entries_size = 4);
    make_leader(&mut r);
    r.step(Message {
        msg_type: MessageType::MsgProp as i32,
        from: 1,
        entries: vec![Entry::new(0, 0, vec![0; 100])],
        ..Default::default()
    })
    .expect("accepted: otherwise it could never be proposed");
}

#[test]
fn follower_forwards_proposals_to_its_leader() {
    let mut r = raft(1, &[1, 2, 3]);
    r.become_follower(1, 2);
    r.step(Message {
        msg_type: MessageType::MsgProp as i32,
        from: 1,
        entries: vec![Entry::new(0, 0, b"x".to_vec())],
        ..Default::default()
    })
    .expect("forwarded");
    let sent = take(&mut r);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, 2);
    assert_eq!(sent[0].term, 0, "forwarded proposals carry no term");
}

#[test]
fn snapshot_restore_replaces_log_and_membership() {
    let mut r = follower_with_log(&[1, 1]);
    let snapshot = Snapshot {
        data: b"state".to_vec(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1, 2],
                learners: vec![4],
                ..Default::default()
            },
            index: 10,
            term: 3,
        },
    };
    assert!(r.restore(snapshot.clone()));
    assert_eq!(r.raft_log.committed, 10);
    assert_eq!(r.raft_log.last_index(), 10);
    assert_eq!(r.conf_state().voters, vec![1, 2]);
    assert_eq!(r.conf_state().learners, vec![4]);
    // The same snapshot again is not needed.
    assert!(!r.restore(snapshot));
}

#[test]
fn snapshot_matching_our_log_only_fast_forwards_commit() {
    let mut r = follower_with_log(&[1, 1, 1]);
    let snapshot = Snapshot {
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            },
            index: 2,
            term: 1,
        },
        ..Default::default()
    };
    assert!(!r.restore(snapshot));
    assert_eq!(r.raft_log.committed, 2);
    assert_eq!(r.raft_log.last_index(), 3);
}

#[test]
fn snapshot_without_us_is_refused() {
    let mut r = follower_with_log(&[1]);
    let snapshot = Snapshot {
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![2, 3],
                ..Default::default()
            },
            index: 5,
            term: 1,
        },
        ..Default::default()
    };
    assert!(!r.restore(snapshot));
    assert_eq!(r.raft_log.last_index(), 1);
}

#[test]
fn node_with_pending_snapshot_cannot_campaign() {
    let mut r = follower_with_log(&[1]);
    let snapshot = Snapshot {
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            },
            index: 5,
            term: 1,
        },
        ..Default::default()
    };
    assert!(r.restore(snapshot));
    assert!(!r.promotable());
    r.hup(CampaignType::Election);
    assert_eq!(r.state, StateRole::Follower);
}

#[test]
fn conf_state_round_trips_through_the_tracker() {
    let conf_state = ConfState {
        voters: vec![1, 4, 5],
        learners: vec![7],
        voters_outgoing: vec![1, 2, 3],
        learners_next: vec![2],
        auto_leave: true,
    };
    let (config, progress) = tracker_from_conf_state(&conf_state, 11, 16, NO_LIMIT);
    assert_eq!(conf_state_of(&config), conf_state);
    let ids: Vec<u64> = progress.keys().copied().collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 7]);
    assert!(progress[&7].is_learner);
    assert!(
        !progress[&2].is_learner,
        "2 is an outgoing voter until the joint config is left"
    );
    assert!(progress.values().all(|pr| pr.next_idx == 11));
}

use super::super::NO_LIMIT;
