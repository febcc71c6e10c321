//! Fuzzes `RawNode::step` with arbitrary peer messages: the input bytes are
//! read as a sequence of messages (types, senders, terms, indexes, entries,
//! snapshots) stepped into a leader or a follower of a three-member
//! cluster, each followed by the Ready handling a node does. Any panic is a
//! finding: peer input must never reach the core's invariant assertions.
//! `tests/raft_hostile.rs` is the seeded proptest sibling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringraft::raft::raft::decode_conf_change;
use ringraft::raft::{Config, MemoryStorage, RawNode};
use ringraft::raftpb::{
    ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};

/// Reads fields off the input; past its end everything reads as zero.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.bytes.split_first() else {
            return 0;
        };
        self.bytes = rest;
        first
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A peer number: mostly near `near`, sometimes an extreme or any u64.
    fn number(&mut self, near: u64) -> u64 {
        match self.byte() % 8 {
            0 => u64::MAX,
            1 => u64::MAX - 1,
            2 => {
                let mut raw = [0u8; 8];
                raw.iter_mut().for_each(|b| *b = self.byte());
                u64::from_le_bytes(raw)
            }
            3 => 0,
            _ => near.saturating_add(u64::from(self.byte() % 8)).saturating_sub(3),
        }
    }

    fn member(&mut self) -> u64 {
        match self.byte() % 8 {
            0 => 0,
            1 => 4,
            2 => u64::MAX,
            n => u64::from(n % 3) + 1,
        }
    }

    fn ids(&mut self) -> Vec<u64> {
        (0..self.byte() % 4).map(|_| self.member()).collect()
    }
}

fn config(id: u64) -> Config {
    let mut config = Config::new(id);
    config.seed = 7;
    config.max_size_per_msg = 1 << 20;
    config
}

fn node(id: u64) -> Option<RawNode<MemoryStorage>> {
    let conf_state = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    RawNode::new(&config(id), MemoryStorage::new_with_conf_state(conf_state)).ok()
}

/// Hands out, persists, acknowledges and applies every Ready, as a node
/// does, tolerating whatever the entries hold.
fn drain(raw: &mut RawNode<MemoryStorage>) {
    for _ in 0..8 {
        if !raw.has_ready() {
            return;
        }
        let ready = raw.ready();
        raw.advance_append_async(&ready);
        let storage = raw.store_mut();
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
        raw.on_persisted(ready.number);
        for entry in &ready.committed_entries {
            if entry.entry_type() != EntryType::EntryNormal
                && let Ok(Some(cc)) = decode_conf_change(entry)
            {
                let _ = raw.apply_conf_change(&cc);
            }
        }
        if let Some(last) = ready.committed_entries.last() {
            raw.advance_apply(last.index);
        }
    }
}

/// Node 1 elected by votes from 2 and 3, with one entry of its term.
fn leader() -> Option<RawNode<MemoryStorage>> {
    let mut raw = node(1)?;
    raw.campaign().ok()?;
    drain(&mut raw);
    let term = raw.raft.term;
    for from in [2, 3] {
        let vote = Message {
            msg_type: MessageType::MsgVoteResp as i32,
            to: 1,
            from,
            term,
            ..Default::default()
        };
        let _ = raw.step(vote);
    }
    drain(&mut raw);
    Some(raw)
}

/// Node 2 following leader 1 of term 1, with two entries.
fn follower() -> Option<RawNode<MemoryStorage>> {
    let mut raw = node(2)?;
    let append = Message {
        msg_type: MessageType::MsgApp as i32,
        to: 2,
        from: 1,
        term: 1,
        entries: vec![Entry::new(1, 1, Vec::new()), Entry::new(1, 2, b"v".to_vec())],
        commit: 1,
        ..Default::default()
    };
    raw.step(append).ok()?;
    drain(&mut raw);
    Some(raw)
}

fn message(input: &mut Input, raw: &RawNode<MemoryStorage>) -> Message {
    let term_now = raw.raft.term;
    let last_index = raw.raft.raft_log.last_index();
    let kind = input.byte();
    let msg_type = if kind >= 240 {
        i32::from(kind)
    } else {
        i32::from(kind % 24)
    };
    let from = input.member();
    let term = input.number(term_now);
    let index = input.number(last_index);
    let contiguous = input.byte() % 2 == 0;
    let entries = (0..input.byte() % 4)
        .map(|offset| Entry {
            entry_type: i32::from(input.byte() % 4),
            term: input.number(term_now),
            index: if contiguous {
                index.wrapping_add(1 + u64::from(offset))
            } else {
                input.number(last_index)
            },
            data: vec![input.byte()].into(),
        })
        .collect();
    let snapshot = (input.byte() % 4 == 0).then(|| Snapshot {
        data: b"foreign".to_vec(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: input.ids(),
                learners: input.ids(),
                voters_outgoing: input.ids(),
                learners_next: input.ids(),
                auto_leave: input.byte() % 2 == 0,
            },
            index: input.number(last_index),
            term: input.number(term_now),
        },
    });
    Message {
        msg_type,
        to: raw.raft.id,
        from,
        term,
        log_term: input.number(term_now),
        index,
        entries,
        commit: input.number(last_index),
        snapshot,
        reject: input.byte() % 2 == 0,
        reject_hint: input.number(last_index),
        context: vec![input.byte()],
        vote: input.member(),
        responses: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { bytes: data };
    let start = if input.byte() % 2 == 0 {
        leader()
    } else {
        follower()
    };
    let Some(mut raw) = start else {
        return;
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        let committed_before = raw.raft.raft_log.committed;
        let m = message(&mut input, &raw);
        let _ = raw.step(m);
        drain(&mut raw);
        if input.byte() % 4 == 0 {
            raw.tick();
            drain(&mut raw);
        }
        let log = &raw.raft.raft_log;
        assert!(log.committed >= committed_before, "commit index went back");
        assert!(log.committed <= log.last_index(), "committed beyond the log");
    }
});
