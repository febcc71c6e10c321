//! RawNode's Ready protocol: numbering, what each Ready carries, must_sync,
//! pipelining, on_persisted covering earlier Readies, and refused input.

use super::*;
use crate::raft::storage::MemoryStorage;
use crate::raft::{DropReason, StateRole};

fn node(id: u64, voters: &[u64]) -> RawNode<MemoryStorage> {
    let conf_state = ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    };
    let storage = MemoryStorage::new_with_conf_state(conf_state);
    RawNode::new(&Config::new(id), storage).expect("node")
}

/// Hands out the next Ready and accepts it.
fn next(raw: &mut RawNode<MemoryStorage>) -> Ready {
    assert!(raw.has_ready());
    let ready = raw.ready();
    raw.advance_append_async(&ready);
    ready
}

/// Stores a Ready as the persistence actor would, then acknowledges it.
fn persist(raw: &mut RawNode<MemoryStorage>, ready: &Ready) {
    store(raw, ready);
    raw.on_persisted(ready.number);
}

fn store(raw: &mut RawNode<MemoryStorage>, ready: &Ready) {
    let storage = raw.store_mut();
    storage.append(&ready.entries).expect("append");
    if let Some(hs) = ready.hard_state {
        storage.set_hard_state(hs);
    }
}

/// Node `from` grants node 1 its vote in term 1.
fn grant_vote(raw: &mut RawNode<MemoryStorage>, from: u64) {
    raw.step(Message {
        msg_type: MessageType::MsgVoteResp as i32,
        from,
        to: 1,
        term: 1,
        ..Default::default()
    })
    .expect("step");
}

/// A single-node leader with its empty entry committed and applied.
fn leader() -> RawNode<MemoryStorage> {
    let mut raw = node(1, &[1]);
    raw.campaign().expect("campaign");
    while raw.has_ready() {
        let ready = next(&mut raw);
        persist(&mut raw, &ready);
        if let Some(last) = ready.committed_entries.last() {
            raw.advance_apply(last.index);
        }
    }
    assert_eq!(raw.raft.state, StateRole::Leader);
    raw
}

#[test]
fn fresh_node_has_no_ready() {
    let raw = node(1, &[1, 2, 3]);
    assert!(!raw.has_ready());
}

#[test]
fn readies_are_numbered_from_one() {
    let mut raw = node(1, &[1, 2, 3]);
    raw.campaign().expect("campaign");
    let first = next(&mut raw);
    assert_eq!(first.number, 1);
    raw.tick();
    let _ = raw.propose(b"x".to_vec());
    raw.campaign().expect("campaign");
    let second = next(&mut raw);
    assert_eq!(second.number, 2);
}

#[test]
fn campaign_ready_syncs_term_and_vote_and_holds_vote_requests() {
    let mut raw = node(1, &[1, 2, 3]);
    raw.campaign().expect("campaign");
    let ready = next(&mut raw);
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 1,
            vote: 1,
            commit: 0
        })
    );
    assert!(ready.must_sync, "a new term and vote must be fsynced");
    assert_eq!(ready.soft_state.map(|s| s.role), Some(StateRole::Candidate));
    let targets: Vec<u64> = ready.messages.iter().map(|m| m.to).collect();
    assert_eq!(targets, vec![2, 3]);
    assert!(ready.append_messages.is_empty());
}

#[test]
fn candidate_counts_its_own_vote_only_after_persistence() {
    let mut raw = node(1, &[1, 2, 3]);
    raw.campaign().expect("campaign");
    let ready = next(&mut raw);
    // Node 2 grants: with our own vote that is a majority, but our vote is
    // not durable yet.
    grant_vote(&mut raw, 2);
    assert_eq!(raw.raft.state, StateRole::Candidate);
    persist(&mut raw, &ready);
    assert_eq!(raw.raft.state, StateRole::Leader);
}

#[test]
fn single_node_commits_only_after_persisting_its_entry() {
    let mut raw = leader();
    raw.propose(b"a".to_vec()).expect("propose");
    let ready = next(&mut raw);
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.must_sync);
    assert_eq!(raw.raft.raft_log.committed, 1, "empty entry only");
    persist(&mut raw, &ready);
    assert_eq!(raw.raft.raft_log.committed, 2);
    let ready = next(&mut raw);
    assert_eq!(ready.committed_entries.len(), 1);
    assert_eq!(ready.committed_entries[0].data, &b"a"[..]);
    assert!(!ready.must_sync, "a commit-only change needs no fsync");
    assert_eq!(ready.hard_state.map(|hs| hs.commit), Some(2));
}

#[test]
fn pipelined_readies_carry_disjoint_entries() {
    let mut raw = leader();
    raw.propose(b"a".to_vec()).expect("propose");
    let first = next(&mut raw);
    raw.propose(b"b".to_vec()).expect("propose");
    let second = next(&mut raw);
    assert_eq!(first.entries.len(), 1);
    assert_eq!(second.entries.len(), 1);
    assert_eq!(first.entries[0].index + 1, second.entries[0].index);
    assert_eq!(raw.pending_persist_count(), 2);
    // Persisting the later number covers the earlier one.
    store(&mut raw, &first);
    store(&mut raw, &second);
    raw.on_persisted(second.number);
    assert_eq!(raw.pending_persist_count(), 0);
    assert_eq!(raw.raft.raft_log.committed, 3);
    assert!(raw.raft.raft_log.unstable_entries().is_empty());
}

#[test]
fn acknowledging_an_older_number_leaves_later_readies_pending() {
    let mut raw = leader();
    raw.propose(b"a".to_vec()).expect("propose");
    let first = next(&mut raw);
    raw.propose(b"b".to_vec()).expect("propose");
    let second = next(&mut raw);
    store(&mut raw, &first);
    raw.on_persisted(first.number);
    assert_eq!(raw.pending_persist_count(), 1);
    assert_eq!(raw.raft.raft_log.committed, 2);
    assert_eq!(raw.raft.raft_log.unstable_entries().len(), 1);
    persist(&mut raw, &second);
    assert_eq!(raw.raft.raft_log.committed, 3);
}

/// An append from `leader` of `term` carrying `entries` after (`index`, `log_term`).
fn append(leader: u64, term: u64, log_term: u64, index: u64, entries: Vec<Entry>) -> Message {
    Message {
        msg_type: MessageType::MsgApp as i32,
        from: leader,
        to: 2,
        term,
        log_term,
        index,
        entries,
        ..Default::default()
    }
}

fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn one_acknowledgement_stabilizes_what_is_still_ours_of_every_ready_it_covers() {
    let mut raw = node(2, &[1, 2, 3]);
    let entries = |term: u64, range: std::ops::RangeInclusive<u64>| -> Vec<Entry> {
        range
            .map(|index| Entry::new(term, index, b"x".to_vec()))
            .collect()
    };
    raw.step(append(1, 1, 0, 0, entries(1, 1..=3)))
        .expect("step");
    let first = next(&mut raw);
    raw.step(append(1, 1, 1, 3, entries(1, 4..=6)))
        .expect("step");
    let second = next(&mut raw);
    // A new leader replaces 5 and 6 before either Ready is durable.
    raw.step(append(3, 2, 1, 4, entries(2, 5..=5)))
        .expect("step");
    let third = next(&mut raw);
    assert_eq!(indexes(&third.entries), vec![(5, 2)]);
    store(&mut raw, &first);
    store(&mut raw, &second);
    raw.on_persisted(second.number);
    // The first Ready's entries are ours and durable; the second's last
    // entry (6 of term 1) is gone, so only the third Ready's acknowledgement
    // may mark 4 and the new 5 durable.
    assert_eq!(raw.pending_persist_count(), 1);
    assert_eq!(
        indexes(raw.raft.raft_log.unstable_entries()),
        vec![(4, 1), (5, 2)]
    );
    persist(&mut raw, &third);
    assert_eq!(raw.pending_persist_count(), 0);
    assert!(raw.raft.raft_log.unstable_entries().is_empty());
}

#[test]
fn committed_entries_are_handed_out_once() {
    let mut raw = leader();
    raw.propose(b"a".to_vec()).expect("propose");
    let ready = next(&mut raw);
    persist(&mut raw, &ready);
    let with_commit = next(&mut raw);
    assert_eq!(with_commit.committed_entries.len(), 1);
    // Not applied yet, but already handed out: not repeated.
    assert!(!raw.has_ready());
    raw.advance_apply(2);
    assert_eq!(raw.raft.raft_log.applied, 2);
}

#[test]
#[should_panic(expected = "before advance_append_async")]
fn ready_twice_without_advance_panics() {
    let mut raw = node(1, &[1, 2, 3]);
    raw.campaign().expect("campaign");
    let _ = raw.ready();
    let _ = raw.ready();
}

#[test]
fn step_refuses_local_message_types() {
    let mut raw = node(1, &[1, 2, 3]);
    for msg_type in [
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgCheckQuorum,
    ] {
        let result = raw.step(Message {
            msg_type: msg_type as i32,
            from: 2,
            ..Default::default()
        });
        assert_eq!(result, Err(RaftError::StepLocalMessage(msg_type)));
    }
    assert_eq!(raw.raft.state, StateRole::Follower);
}

#[test]
fn step_refuses_messages_no_peer_sends() {
    let mut raw = node(1, &[1, 2, 3]);
    let cases = [
        (
            MessageType::MsgProp,
            2,
            3,
            "a forwarded proposal or read carries no term",
        ),
        (
            MessageType::MsgReadIndex,
            2,
            1,
            "a forwarded proposal or read carries no term",
        ),
        (MessageType::MsgVote, 2, 0, "term 0"),
        (MessageType::MsgApp, 0, 1, "sender id 0"),
        (MessageType::MsgHeartbeat, 1, 1, "sender is this node"),
    ];
    for (msg_type, from, term, reason) in cases {
        let result = raw.step(Message {
            msg_type: msg_type as i32,
            to: 1,
            from,
            term,
            ..Default::default()
        });
        assert_eq!(
            result,
            Err(RaftError::MalformedMessage {
                msg_type,
                from,
                reason
            })
        );
    }
    assert_eq!(raw.raft.term, 0);
    assert_eq!(raw.raft.state, StateRole::Follower);
}

#[test]
fn step_refuses_responses_from_non_members() {
    let mut raw = node(1, &[1, 2, 3]);
    let result = raw.step(Message {
        msg_type: MessageType::MsgAppResp as i32,
        from: 9,
        term: 1,
        ..Default::default()
    });
    assert_eq!(
        result,
        Err(RaftError::StepPeerNotFound {
            msg_type: MessageType::MsgAppResp,
            from: 9
        })
    );
}

#[test]
fn step_refuses_unknown_message_types() {
    let mut raw = node(1, &[1, 2, 3]);
    let result = raw.step(Message {
        msg_type: 77,
        from: 2,
        ..Default::default()
    });
    assert_eq!(
        result,
        Err(RaftError::UnknownMessageType { value: 77, from: 2 })
    );
}

#[test]
fn proposal_without_leader_is_dropped() {
    let mut raw = node(1, &[1, 2, 3]);
    assert_eq!(
        raw.propose(b"x".to_vec()),
        Err(RaftError::ProposalDropped(DropReason::NoLeader))
    );
    assert!(!raw.has_ready());
}

#[test]
fn leader_appends_are_marked_safe_to_send_early() {
    let mut raw = node(1, &[1, 2]);
    raw.campaign().expect("campaign");
    let ready = next(&mut raw);
    grant_vote(&mut raw, 2);
    persist(&mut raw, &ready);
    assert_eq!(raw.raft.state, StateRole::Leader);
    let ready = next(&mut raw);
    assert!(!ready.append_messages.is_empty());
    assert!(
        ready
            .append_messages
            .iter()
            .all(|m| m.msg_type() == MessageType::MsgApp)
    );
    assert!(ready.messages.is_empty());
}

#[test]
fn restart_restores_hard_state_and_log() {
    let mut raw = leader();
    raw.propose(b"a".to_vec()).expect("propose");
    let ready = next(&mut raw);
    persist(&mut raw, &ready);
    let ready = next(&mut raw);
    persist(&mut raw, &ready);
    let storage = raw.store().clone();
    let mut config = Config::new(1);
    config.applied = 1;
    let restarted = RawNode::new(&config, storage).expect("restart");
    assert_eq!(restarted.raft.term, 1);
    assert_eq!(restarted.raft.vote, 1);
    assert_eq!(restarted.raft.raft_log.committed, 2);
    assert_eq!(restarted.raft.raft_log.last_index(), 2);
    assert_eq!(restarted.raft.state, StateRole::Follower);
    // Entry 2 is committed but not applied: the first Ready hands it out.
    assert!(restarted.has_ready());
}

#[test]
fn restart_with_commit_beyond_log_is_an_error() {
    let mut storage = MemoryStorage::new_with_conf_state(ConfState {
        voters: vec![1],
        ..Default::default()
    });
    storage.set_hard_state(HardState {
        term: 1,
        vote: 1,
        commit: 5,
    });
    let result = RawNode::new(&Config::new(1), storage);
    assert!(matches!(
        result.err(),
        Some(RaftError::InvalidHardState {
            commit: 5,
            committed: 0,
            last_index: 0
        })
    ));
}

#[test]
fn applied_beyond_commit_is_an_error() {
    let storage = MemoryStorage::new_with_conf_state(ConfState {
        voters: vec![1],
        ..Default::default()
    });
    let mut config = Config::new(1);
    config.applied = 3;
    assert!(matches!(
        RawNode::new(&config, storage).err(),
        Some(RaftError::AppliedBeyondCommitted {
            applied: 3,
            committed: 0
        })
    ));
}

#[test]
fn invalid_config_is_refused() {
    let storage = MemoryStorage::new();
    let mut config = Config::new(1);
    config.election_tick = 1;
    assert!(matches!(
        RawNode::new(&config, storage).err(),
        Some(RaftError::Config(_))
    ));
}

#[test]
fn bootstrap_commits_one_conf_change_per_voter() {
    let mut raw = RawNode::new(&Config::new(1), MemoryStorage::new()).expect("node");
    raw.bootstrap(&[1, 2, 3]).expect("bootstrap");
    assert_eq!(raw.raft.conf_state().voters, vec![1, 2, 3]);
    let ready = next(&mut raw);
    assert_eq!(ready.entries.len(), 3);
    assert!(
        ready
            .entries
            .iter()
            .all(|e| e.entry_type() == EntryType::EntryConfChange && e.term == 1)
    );
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 1,
            vote: 0,
            commit: 3
        })
    );
    assert!(ready.committed_entries.is_empty(), "not durable yet");
    persist(&mut raw, &ready);
    let ready = next(&mut raw);
    assert_eq!(ready.committed_entries.len(), 3);
}

#[test]
fn bootstrap_refuses_empty_voters_and_non_empty_storage() {
    let mut raw = RawNode::new(&Config::new(1), MemoryStorage::new()).expect("node");
    assert_eq!(raw.bootstrap(&[]), Err(RaftError::BootstrapWithoutVoters));
    let mut configured = node(1, &[1]);
    assert_eq!(
        configured.bootstrap(&[1]),
        Err(RaftError::BootstrapNonEmptyStorage { last_index: 0 })
    );
}

#[test]
fn propose_many_appends_every_entry_in_order_in_one_ready() {
    let mut raw = leader();
    let first = raw.raft.raft_log.last_index() + 1;
    let data: Vec<Vec<u8>> = (0u8..5).map(|i| vec![i; 3]).collect();
    raw.propose_many(data.clone()).expect("propose");
    let ready = next(&mut raw);
    let indexes: Vec<u64> = ready.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (first..first + 5).collect::<Vec<_>>());
    let proposed: Vec<Vec<u8>> = ready.entries.iter().map(|e| e.data.to_vec()).collect();
    assert_eq!(proposed, data);
    persist(&mut raw, &ready);
    let ready = next(&mut raw);
    assert_eq!(ready.committed_entries.len(), 5, "all five commit together");
}

#[test]
fn propose_many_without_a_leader_refuses_them_all() {
    let mut raw = node(1, &[1, 2, 3]);
    let before = raw.raft.raft_log.last_index();
    let refused = raw.propose_many(vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(refused.is_err(), "no leader to take them: {refused:?}");
    assert_eq!(raw.raft.raft_log.last_index(), before, "nothing appended");
}

/// Hands out and persists every Ready, returning the committed entries,
/// without reporting any of them applied.
fn run_without_applying(raw: &mut RawNode<MemoryStorage>) -> Vec<Entry> {
    let mut committed = Vec::new();
    while raw.has_ready() {
        let ready = next(raw);
        persist(raw, &ready);
        committed.extend(ready.committed_entries);
    }
    committed
}

#[test]
fn waits_for_applied_only_while_raft_holds_something_back() {
    let mut raw = leader();
    assert!(
        !raw.waits_for_applied(),
        "a settled leader waits for nothing"
    );

    // Normal entries committed and not yet applied hold nothing back.
    raw.propose(b"x".to_vec()).expect("propose");
    let committed = run_without_applying(&mut raw);
    assert_eq!(committed.len(), 1);
    assert!(!raw.waits_for_applied());
    raw.advance_apply(committed[0].index);

    // A membership change: the next one (and leaving a joint
    // configuration) waits until it applies.
    let add = ConfChange {
        id: 1,
        change_type: crate::raftpb::ConfChangeType::ConfChangeAddLearnerNode as i32,
        node_id: 2,
        context: Vec::new(),
    };
    raw.propose_conf_change_v1(&add)
        .expect("propose conf change");
    let committed = run_without_applying(&mut raw);
    let change_index = committed.last().expect("the change committed").index;
    assert!(raw.waits_for_applied(), "a pending membership change waits");
    raw.advance_apply(change_index);
    assert!(!raw.waits_for_applied(), "applied, nothing waits");
}

#[test]
fn waits_for_applied_while_the_applying_budget_is_spent() {
    let conf_state = ConfState {
        voters: vec![1],
        ..Default::default()
    };
    let storage = MemoryStorage::new_with_conf_state(conf_state);
    let mut config = Config::new(1);
    config.max_committed_size_per_ready = 8;
    let mut raw = RawNode::new(&config, storage).expect("node");
    raw.campaign().expect("campaign");
    let mut applied = 0;
    while raw.has_ready() {
        let ready = next(&mut raw);
        persist(&mut raw, &ready);
        if let Some(last) = ready.committed_entries.last() {
            applied = last.index;
        }
    }
    raw.advance_apply(applied);
    assert!(!raw.waits_for_applied());

    for _ in 0..3 {
        raw.propose(vec![7; 16]).expect("propose");
    }
    let committed = run_without_applying(&mut raw);
    assert!(!committed.is_empty());
    assert!(
        raw.waits_for_applied(),
        "entries over the budget wait for the applied index"
    );
    raw.advance_apply(committed.last().expect("an entry").index);
    assert!(!raw.waits_for_applied());
}
