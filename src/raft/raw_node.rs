//! The application's handle on the raft core, with asynchronous persistence.
//!
//! Owns: a [`Raft`] state machine, the numbering of Readies, and the record
//! of what each handed-out Ready asked to persist.
//!
//! Guarantees: Ready `n` carries only entries, HardState and snapshot not
//! carried by an earlier Ready, so the caller may hand Readies to a
//! persistence actor back to back without waiting (pipelining).
//! `on_persisted(n)` covers every Ready up to `n`: only then do its entries
//! become stable, the leader count its own log toward commit, and a
//! candidate count its own vote. Committed entries are handed out once each,
//! only when durable locally.
//!
//! The protocol for the caller (the raft actor):
//! 1. `if has_ready() { let rd = ready(); advance_append_async(&rd); }`
//! 2. persist `rd.hard_state`, `rd.entries`, `rd.snapshot` (fdatasync if
//!    `rd.must_sync`), possibly together with later Readies;
//! 3. once durable: apply `rd.snapshot` and append `rd.entries` to the
//!    `MemoryStorage`, set its HardState, call `on_persisted(rd.number)`,
//!    then send `rd.messages` (and `rd.append_messages`, which the leader may
//!    instead send before its own fsync, Raft thesis §10.2.1);
//! 4. apply `rd.committed_entries`, then `advance_apply(index)`.
//!
//! May not touch: IO. Storing and sending is the caller's job.

use super::raft::{Raft, RaftError, SoftState, StateRole, is_local_message, is_response_message};
use super::read_only::ReadState;
use super::storage::{Storage, entries_size};
use super::{Config, progress::Progress};
use crate::raftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use prost::Message as _;
use std::collections::{BTreeMap, VecDeque};

/// A batch of work the application must do for the raft core.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ready {
    /// The Ready's number: `on_persisted(number)` acknowledges it.
    pub number: u64,
    /// Leader and role, when they changed since the previous Ready.
    pub soft_state: Option<SoftState>,
    /// The HardState to persist, when it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append to the WAL, then to `MemoryStorage`.
    pub entries: Vec<Entry>,
    /// A snapshot to persist and install.
    pub snapshot: Option<Snapshot>,
    /// Whether the write must be fdatasynced before acknowledging: new
    /// entries, a snapshot, or a changed term or vote. A commit-only change
    /// need not be.
    pub must_sync: bool,
    /// Committed entries to apply to the state machine, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages to send once this Ready is persisted.
    pub messages: Vec<Message>,
    /// A leader's replication messages (MsgApp, MsgSnap, MsgHeartbeat):
    /// send after persistence by default; the thesis (§10.2.1) allows a
    /// leader to send them before its own fsync.
    pub append_messages: Vec<Message>,
    /// Answers to read requests: serve each once the application has
    /// applied up to its index.
    pub read_states: Vec<ReadState>,
    /// Self-addressed messages stepped by `on_persisted`.
    local_messages: Vec<Message>,
}

impl Ready {
    /// Whether this Ready asks for anything to be persisted.
    pub fn needs_persistence(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

/// What one handed-out Ready asked to persist.
#[derive(Debug)]
struct PendingPersist {
    number: u64,
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    local_messages: Vec<Message>,
}

/// A node's status for operators and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// This node's id.
    pub id: u64,
    /// Term, vote and commit.
    pub hard_state: HardState,
    /// Leader and role.
    pub soft_state: SoftState,
    /// The applied index.
    pub applied: u64,
    /// Per-peer progress (leader only; empty otherwise).
    pub progress: BTreeMap<u64, Progress>,
    /// The current membership.
    pub conf_state: ConfState,
}

/// Whether a snapshot send succeeded (`report_snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received the whole snapshot.
    Finish,
    /// Sending failed.
    Failure,
}

/// The log every member of a brand-new cluster of `voters` starts with, as
/// etcd bootstraps one: one ConfChangeAddNode entry per voter at term 1,
/// indexes 1..=n, committed by construction (every member writes the same).
/// [`RawNode::bootstrap`] appends them in memory; a node that wants them
/// durable before raft starts writes them into its new WAL with HardState
/// `{term: 1, commit: n}` and starts raft on that log instead.
pub fn bootstrap_entries(voters: &[u64]) -> Vec<Entry> {
    voters
        .iter()
        .zip(1u64..)
        .map(|(&node_id, index)| Entry {
            entry_type: EntryType::EntryConfChange as i32,
            term: 1,
            index,
            data: add_node(node_id).encode_to_vec().into(),
        })
        .collect()
}

fn add_node(node_id: u64) -> ConfChange {
    ConfChange {
        change_type: crate::raftpb::ConfChangeType::ConfChangeAddNode as i32,
        node_id,
        ..Default::default()
    }
}

/// The raft core with a Ready-based, asynchronously persisted interface.
pub struct RawNode<S: Storage> {
    /// The state machine (public for tests and the node layer's reads).
    pub raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    next_ready_number: u64,
    awaiting_advance: Option<u64>,
    pending: VecDeque<PendingPersist>,
}

impl<S: Storage> RawNode<S> {
    /// A node over `storage` (restarted from its state if not empty).
    pub fn new(config: &Config, storage: S) -> Result<RawNode<S>, RaftError> {
        let raft = Raft::new(config, storage)?;
        let prev_hard_state = raft.hard_state();
        let prev_soft_state = raft.soft_state();
        Ok(RawNode {
            raft,
            prev_soft_state,
            prev_hard_state,
            next_ready_number: 1,
            awaiting_advance: None,
            pending: VecDeque::new(),
        })
    }

    /// Starts a brand-new cluster of `voters` on an empty storage, as etcd
    /// does: one committed ConfChangeAddNode entry per voter at term 1,
    /// indexes 1..=n. Because the membership lives in the log, a node that
    /// joins later learns it by replaying the log from the start. The
    /// entries come out in the first Ready to be persisted, then as
    /// committed entries to apply (applying them again is harmless).
    pub fn bootstrap(&mut self, voters: &[u64]) -> Result<(), RaftError> {
        if voters.is_empty() {
            return Err(RaftError::BootstrapWithoutVoters);
        }
        let last_index = self.raft.raft_log.last_index();
        if last_index != 0 || !self.raft.trk.progress().is_empty() {
            return Err(RaftError::BootstrapNonEmptyStorage { last_index });
        }
        self.raft.become_follower(1, 0);
        let entries = bootstrap_entries(voters);
        self.raft.raft_log.append(&entries);
        // Committed by construction: every member bootstraps the same way.
        self.raft.raft_log.committed = entries.len() as u64;
        for &node_id in voters {
            self.raft
                .apply_conf_change(&super::confchange::conf_change_as_v2(&add_node(node_id)))?;
        }
        // Nothing is persisted yet: the first Ready carries the HardState.
        self.prev_hard_state = HardState::default();
        Ok(())
    }

    /// The storage (the raft actor's `MemoryStorage`).
    pub fn store(&self) -> &S {
        self.raft.raft_log.store()
    }

    /// The storage, to append persisted entries to.
    pub fn store_mut(&mut self) -> &mut S {
        self.raft.raft_log.store_mut()
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now.
    pub fn campaign(&mut self) -> Result<(), RaftError> {
        self.raft.step(Message {
            msg_type: MessageType::MsgHup as i32,
            ..Default::default()
        })
    }

    /// Proposes `data` to be appended to the log.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        self.propose_many(vec![data])
    }

    /// Proposes several entries' data in one step (one `MsgProp`): they
    /// are appended together, in order, or all refused.
    pub fn propose_many(&mut self, data: Vec<Vec<u8>>) -> Result<(), RaftError> {
        let id = self.raft.id;
        let entries = data
            .into_iter()
            .map(|data| Entry {
                data: data.into(),
                ..Default::default()
            })
            .collect();
        self.raft.step(Message {
            msg_type: MessageType::MsgProp as i32,
            from: id,
            entries,
            ..Default::default()
        })
    }

    /// Proposes a membership change (applied with
    /// [`RawNode::apply_conf_change`] once committed).
    pub fn propose_conf_change(&mut self, cc: &ConfChangeV2) -> Result<(), RaftError> {
        self.propose_entry(EntryType::EntryConfChangeV2, cc.encode_to_vec())
    }

    /// Proposes a single-step membership change in etcd's v1 encoding.
    pub fn propose_conf_change_v1(&mut self, cc: &ConfChange) -> Result<(), RaftError> {
        self.propose_entry(EntryType::EntryConfChange, cc.encode_to_vec())
    }

    fn propose_entry(&mut self, entry_type: EntryType, data: Vec<u8>) -> Result<(), RaftError> {
        let id = self.raft.id;
        self.raft.step(Message {
            msg_type: MessageType::MsgProp as i32,
            from: id,
            entries: vec![Entry {
                entry_type: entry_type as i32,
                data: data.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// Applies a committed membership change; returns the new ConfState
    /// (which the application stores with its next snapshot).
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState, RaftError> {
        self.raft.apply_conf_change(cc)
    }

    /// Asks for a linearizable read: a [`ReadState`] with `context` comes
    /// back in a later Ready once leadership is confirmed.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<(), RaftError> {
        self.raft.step(Message {
            msg_type: MessageType::MsgReadIndex as i32,
            entries: vec![Entry {
                data: context.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// Like [`RawNode::read_index`], but a leader whose lease holds answers
    /// at once, without a heartbeat round (`Config::lease_reads`; see
    /// `Raft::read_index_by_lease`).
    pub fn read_index_by_lease(&mut self, context: Vec<u8>) -> Result<(), RaftError> {
        self.raft.read_index_by_lease(context)
    }

    /// Asks the leader to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: u64) {
        let message = Message {
            msg_type: MessageType::MsgTransferLeader as i32,
            from: transferee,
            ..Default::default()
        };
        // Ignored when it does not apply; cannot fail.
        let _ = self.raft.step(message);
    }

    /// Makes a follower forget its leader (so it may vote at once), unless
    /// lease reads are on.
    pub fn forget_leader(&mut self) {
        let message = Message {
            msg_type: MessageType::MsgForgetLeader as i32,
            ..Default::default()
        };
        let _ = self.raft.step(message);
    }

    /// Handles a message from a peer. Local-only message types and
    /// responses from non-members are refused.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        let Ok(msg_type) = MessageType::try_from(m.msg_type) else {
            return Err(RaftError::UnknownMessageType {
                value: m.msg_type,
                from: m.from,
            });
        };
        if is_local_message(msg_type) {
            return Err(RaftError::StepLocalMessage(msg_type));
        }
        if let Some(reason) = malformed(&m, msg_type, self.raft.id) {
            return Err(RaftError::MalformedMessage {
                msg_type,
                from: m.from,
                reason,
            });
        }
        if is_response_message(msg_type) && self.raft.trk.get(m.from).is_none() {
            return Err(RaftError::StepPeerNotFound {
                msg_type,
                from: m.from,
            });
        }
        self.raft.step(m)
    }

    /// Reports that `id` could not be reached (its append was lost).
    pub fn report_unreachable(&mut self, id: u64) {
        let message = Message {
            msg_type: MessageType::MsgUnreachable as i32,
            from: id,
            ..Default::default()
        };
        // Local message: cannot fail.
        let _ = self.raft.step(message);
    }

    /// Reports the outcome of sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        let message = Message {
            msg_type: MessageType::MsgSnapStatus as i32,
            from: id,
            reject: status == SnapshotStatus::Failure,
            ..Default::default()
        };
        // Local message: cannot fail.
        let _ = self.raft.step(message);
    }

    /// Whether a Ready has something to do.
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.soft_state() != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || !raft.msgs.is_empty()
            || !raft.msgs_after_append.is_empty()
            || !raft.read_states.is_empty()
            || raft.raft_log.has_next_unstable_entries()
            || raft.raft_log.has_next_unstable_snapshot()
            || raft.raft_log.has_next_committed_entries(false)
    }

    /// The next batch of work. Call [`RawNode::advance_append_async`] with
    /// it before asking for another.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.awaiting_advance.is_none(),
            "ready() called again before advance_append_async() of Ready {:?}",
            self.awaiting_advance
        );
        let number = self.next_ready_number;
        self.next_ready_number += 1;
        self.awaiting_advance = Some(number);

        let raft = &mut self.raft;
        raft.announce_commit();
        let soft_state = raft.soft_state();
        let hard_state = raft.hard_state();
        let entries = raft.raft_log.next_unstable_entries().to_vec();
        let snapshot = raft.raft_log.next_unstable_snapshot().cloned();
        let committed_entries = match raft.raft_log.next_committed_entries(false) {
            Ok(entries) => entries,
            Err(error) => panic!("committed entries unreadable from the raft log: {error}"),
        };
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard_state.term != self.prev_hard_state.term
            || hard_state.vote != self.prev_hard_state.vote;
        let (append_messages, messages) = std::mem::take(&mut raft.msgs)
            .into_iter()
            .partition(is_replication);
        Ready {
            number,
            soft_state: (soft_state != self.prev_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.prev_hard_state).then_some(hard_state),
            entries,
            snapshot,
            must_sync,
            committed_entries,
            messages,
            append_messages,
            read_states: std::mem::take(&mut raft.read_states),
            local_messages: std::mem::take(&mut raft.msgs_after_append),
        }
    }

    /// Accepts `ready` as handed out: its entries and snapshot are now in
    /// flight to storage, its committed entries in flight to the
    /// application. The next `ready()` carries only what is newer.
    pub fn advance_append_async(&mut self, ready: &Ready) {
        assert_eq!(
            self.awaiting_advance,
            Some(ready.number),
            "advance_append_async() with a Ready that is not the last one handed out"
        );
        self.awaiting_advance = None;
        if let Some(soft_state) = ready.soft_state {
            self.prev_soft_state = soft_state;
        }
        if let Some(hard_state) = ready.hard_state {
            self.prev_hard_state = hard_state;
        }
        let raft = &mut self.raft;
        raft.raft_log.accept_unstable();
        if let Some(last) = ready.committed_entries.last() {
            let size = entries_size(&ready.committed_entries);
            raft.raft_log.accept_applying(last.index, size, false);
            let payload = super::raft::payload_size(&ready.committed_entries);
            raft.reduce_uncommitted_size(payload);
        }
        self.pending.push_back(PendingPersist {
            number: ready.number,
            last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: ready.snapshot.as_ref().map(|s| s.metadata.index),
            local_messages: ready.local_messages.clone(),
        });
    }

    /// Every Ready up to `number` is durable (and its entries and snapshot
    /// are in the storage). Entries become stable, and the self-addressed
    /// messages (own vote, leader's own acknowledgement) take effect. A
    /// persisted snapshot counts as applied (the caller restored its state
    /// machine from it), as etcd's `appliedSnap`.
    pub fn on_persisted(&mut self, number: u64) {
        let persisted_count = self
            .pending
            .iter()
            .take_while(|p| p.number <= number)
            .count();
        for persisted in self.pending.iter_mut().take(persisted_count) {
            if let Some(index) = persisted.snapshot_index {
                self.raft.raft_log.stable_snap_to(index);
                // The snapshot is installed: the state machine stands at its
                // index (etcd's appliedSnap). Without this the next Ready
                // would hand out committed entries from the old applied
                // index, which the snapshot compacted away.
                self.raft.applied_to(index);
            }
            for message in std::mem::take(&mut persisted.local_messages) {
                // Self-addressed messages of a past term are ignored by
                // step; none of them can fail.
                let _ = self.raft.step(message);
            }
        }
        // The entries of all these Readies become stable in one step, so
        // that the unstable log drops its durable prefix once per
        // acknowledgement rather than once per Ready (each drop moves the
        // entries behind it). The furthest entry still ours covers every
        // earlier one; an entry replaced since (another term) is not ours.
        // Stepping the messages first changes nothing here: it can only
        // append behind the last entry (a new leader's empty entry).
        let unstable = &self.raft.raft_log.unstable;
        let furthest_durable = self
            .pending
            .iter()
            .take(persisted_count)
            .filter_map(|p| p.last_entry)
            .filter(|&(index, term)| unstable.holds_entry(index, term))
            .max();
        if let Some((index, term)) = furthest_durable {
            self.raft.raft_log.stable_to(index, term);
        }
        self.pending.drain(..persisted_count);
    }

    /// Whether raft holds something back until [`RawNode::advance_apply`]
    /// reports progress: committed entries over the applying byte budget,
    /// or (on a leader) a further membership change or the automatic leave
    /// of a joint configuration, both of which wait for the pending one to
    /// apply. Otherwise the applied index only feeds checks made on a tick
    /// or a request, and the driver may report it lazily.
    pub fn waits_for_applied(&self) -> bool {
        let raft = &self.raft;
        raft.raft_log.applying_paused() || raft.pending_conf_index > raft.raft_log.applied
    }

    /// The application applied committed entries up to `applied_index`.
    pub fn advance_apply(&mut self, applied_index: u64) {
        self.raft.applied_to(applied_index);
    }

    /// Readies handed out and not yet persisted.
    pub fn pending_persist_count(&self) -> usize {
        self.pending.len()
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        let raft = &self.raft;
        let progress = if raft.state == StateRole::Leader {
            raft.trk.progress().clone()
        } else {
            BTreeMap::new()
        };
        Status {
            id: raft.id,
            hard_state: raft.hard_state(),
            soft_state: raft.soft_state(),
            applied: raft.raft_log.applied,
            progress,
            conf_state: raft.conf_state(),
        }
    }
}

/// A leader's replication traffic (only leaders send these types), which
/// §10.2.1 allows to precede the leader's own fsync.
fn is_replication(m: &Message) -> bool {
    matches!(
        m.msg_type(),
        MessageType::MsgApp | MessageType::MsgSnap | MessageType::MsgHeartbeat
    )
}

/// Why a message from the network cannot be a peer's, if it cannot: a
/// sender that is nobody or this node, or a term that contradicts its type
/// (a forwarded proposal or read carries none; everything else a peer
/// sends carries the sender's term). Such input would otherwise reach the
/// core's assertions about the messages it sends in reply.
fn malformed(m: &Message, msg_type: MessageType, own_id: u64) -> Option<&'static str> {
    if m.from == 0 {
        return Some("sender id 0");
    }
    if m.from == own_id {
        return Some("sender is this node");
    }
    let termless = matches!(msg_type, MessageType::MsgProp | MessageType::MsgReadIndex);
    match (termless, m.term) {
        (true, term) if term != 0 => Some("a forwarded proposal or read carries no term"),
        (false, 0) => Some("term 0"),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
