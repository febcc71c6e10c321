//! Hostile peer input to the raft core: arbitrary messages (every type,
//! extreme terms and indexes, malformed entries and snapshots, unknown
//! senders) stepped into a leader and into a follower of a working
//! three-node cluster, each followed by the Ready handling a node does.
//!
//! What must hold whatever a peer sends: nothing panics (the core's
//! invariant assertions are unreachable from peer input), the commit index
//! never goes back and never passes the last index, and an entry once
//! committed keeps its term for as long as it is in the log (a peer can
//! make a node lose uncommitted entries, never committed ones — only a
//! snapshot, which the transport's authentication guards, replaces them).
//! The fuzz target `fuzz/fuzz_targets/raft_step.rs` drives the same core
//! with byte-level input; this is its reproducible, seeded sibling.

mod support;

use proptest::prelude::*;
use ringraft::raft::raft::decode_conf_change;
use ringraft::raftpb::{
    ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};
use std::collections::BTreeMap;
use support::{Network, Node};

/// A u64 peer field: mostly values near the node's own, sometimes the
/// extremes that break unchecked arithmetic.
fn peer_number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..16,
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => Just(u64::MAX / 2),
        1 => any::<u64>(),
    ]
}

fn sender() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 1u64..=3, 1 => Just(0u64), 1 => Just(4u64), 1 => Just(u64::MAX)]
}

fn message_type() -> impl Strategy<Value = i32> {
    prop_oneof![8 => 0i32..=23, 1 => any::<i32>()]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0i32..4,
        peer_number(),
        peer_number(),
        prop::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(entry_type, term, index, data)| Entry {
            entry_type,
            term,
            index,
            data: data.into(),
        })
}

/// Entries that are contiguous after `index` (what a leader sends), so the
/// append path itself is exercised and not only its malformed-input guard.
fn contiguous_entries(index: u64) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec((0i32..3, peer_number(), any::<u8>()), 0..4).prop_map(move |specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(offset, (entry_type, term, byte))| Entry {
                entry_type,
                term,
                index: index.wrapping_add(1).wrapping_add(offset as u64),
                data: vec![byte].into(),
            })
            .collect()
    })
}

fn ids() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(prop_oneof![4 => 1u64..=4, 1 => any::<u64>()], 0..4)
}

fn snapshot() -> impl Strategy<Value = Option<Snapshot>> {
    let conf_state = (ids(), ids(), ids(), ids(), any::<bool>()).prop_map(
        |(voters, learners, voters_outgoing, learners_next, auto_leave)| ConfState {
            voters,
            learners,
            voters_outgoing,
            learners_next,
            auto_leave,
        },
    );
    prop::option::weighted(
        0.3,
        (conf_state, peer_number(), peer_number()).prop_map(|(conf_state, index, term)| Snapshot {
            data: b"foreign".to_vec(),
            metadata: SnapshotMetadata {
                conf_state,
                index,
                term,
            },
        }),
    )
}

prop_compose! {
    fn hostile_message(to: u64)(
        msg_type in message_type(),
        from in sender(),
        term in peer_number(),
        log_term in peer_number(),
        index in peer_number(),
        commit in peer_number(),
        reject in any::<bool>(),
        reject_hint in peer_number(),
        vote in sender(),
        contiguous in any::<bool>(),
        loose in prop::collection::vec(entry(), 0..4),
        snapshot in snapshot(),
        context in prop::collection::vec(any::<u8>(), 0..4),
    )(
        msg_type in Just(msg_type), from in Just(from), term in Just(term),
        log_term in Just(log_term), index in Just(index), commit in Just(commit),
        reject in Just(reject), reject_hint in Just(reject_hint), vote in Just(vote),
        entries in if contiguous { contiguous_entries(index).boxed() } else { Just(loose).boxed() },
        snapshot in Just(snapshot), context in Just(context),
    ) -> Message {
        Message {
            msg_type, to, from, term, log_term, index, entries, commit, snapshot,
            reject, reject_hint, context, vote, responses: Vec::new(),
        }
    }
}

/// A cluster of three with leader 1 and a few committed entries.
fn working_cluster() -> Network {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    for i in 0..4u8 {
        net.propose(1, &[i]);
    }
    net.stabilize();
    net
}

/// What a node does with its Readies, tolerating whatever the entries
/// hold (as the node's applier does): hand out, persist, acknowledge,
/// apply.
fn drain_readies(node: &mut Node) {
    for _ in 0..8 {
        if !node.raw.has_ready() {
            break;
        }
        let ready = node.raw.ready();
        node.raw.advance_append_async(&ready);
        let storage = node.raw.store_mut();
        if let Some(snapshot) = &ready.snapshot {
            storage
                .apply_snapshot(snapshot.clone())
                .expect("raft accepted a snapshot its storage refuses");
        }
        storage
            .append(&ready.entries)
            .expect("raft handed out entries its storage refuses");
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state);
        }
        node.raw.on_persisted(ready.number);
        for entry in &ready.committed_entries {
            if entry.entry_type() != EntryType::EntryNormal
                && let Ok(Some(cc)) = decode_conf_change(entry)
            {
                let _ = node.raw.apply_conf_change(&cc);
            }
        }
        if let Some(last) = ready.committed_entries.last() {
            node.raw.advance_apply(last.index);
        }
    }
}

/// Checks the commit index and the committed entries still in the log
/// against what was seen committed before.
fn check_committed(node: &Node, committed_before: u64, seen: &mut BTreeMap<u64, u64>) {
    let log = &node.raw.raft.raft_log;
    assert!(log.committed >= committed_before, "commit index went back");
    assert!(
        log.committed <= log.last_index(),
        "committed beyond the log"
    );
    let first_index = log.first_index();
    seen.retain(|&index, _| index >= first_index);
    for (index, term) in node.log_ids() {
        if index > log.committed {
            break;
        }
        let recorded = *seen.entry(index).or_insert(term);
        assert_eq!(recorded, term, "committed entry {index} changed term");
    }
}

fn step_all(net: &mut Network, target: u64, messages: Vec<Message>) {
    let mut seen = BTreeMap::new();
    let node = net.node_mut(target);
    check_committed(node, 0, &mut seen);
    for (count, m) in messages.into_iter().enumerate() {
        let committed_before = node.raw.raft.raft_log.committed;
        let _ = node.raw.step(m);
        drain_readies(node);
        if count % 3 == 2 {
            node.raw.tick();
            drain_readies(node);
        }
        check_committed(node, committed_before, &mut seen);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn leader_survives_hostile_messages(
        messages in prop::collection::vec(hostile_message(1), 1..12)
    ) {
        let mut net = working_cluster();
        step_all(&mut net, 1, messages);
    }

    #[test]
    fn follower_survives_hostile_messages(
        messages in prop::collection::vec(hostile_message(2), 1..12)
    ) {
        let mut net = working_cluster();
        step_all(&mut net, 2, messages);
    }
}

/// The overflow the issue names: a MsgApp at index u64::MAX with entries.
#[test]
fn append_at_the_last_possible_index_is_refused_without_overflow() {
    let mut net = working_cluster();
    let term = net.get(2).raw.raft.term;
    let node = net.node_mut(2);
    let last_before = node.raw.raft.raft_log.last_index();
    let m = Message {
        msg_type: MessageType::MsgApp as i32,
        to: 2,
        from: 1,
        term,
        log_term: term,
        index: u64::MAX,
        commit: u64::MAX,
        entries: vec![Entry::new(term, 0, b"x".to_vec())],
        ..Default::default()
    };
    let _ = node.raw.step(m);
    drain_readies(node);
    assert_eq!(node.raw.raft.raft_log.last_index(), last_before);
}
