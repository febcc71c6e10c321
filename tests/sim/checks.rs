//! The safety checks of a simulated run, against a reference built from
//! what the nodes applied.
//!
//! Owns: the agreed log (every entry some node applied, by index: the first
//! node to apply an index fixes it), the reference state it implies (each
//! key's value and the membership after every index), the leader of every
//! term, the acknowledged writes, and the violations found.
//!
//! Guarantees, each checked where it can first fail:
//! - election safety: at most one leader per term over the whole run;
//! - state machine safety: a node applies at index `i` exactly the entry
//!   every other node applied at `i` (same term, type and bytes), and in
//!   order (no index is skipped);
//! - applied states agree: after every apply batch or snapshot restore, a
//!   node's real `KvStore` (every key of the key space, its size, its member
//!   directory) equals the reference state at the node's applied index;
//! - serializable reads return the value of the key in the reference state
//!   at the index the node had applied;
//! - an acknowledged write is the entry at the index it was acknowledged
//!   with, in the agreed log (which no node may later contradict, and which
//!   every member must reach at the end: see `cluster`).
//!
//! The linearizable history is checked at the end by the workload.
//! May not touch: the nodes; it only reads what they report.

use prost::Message as _;
use ringraft::kv::{KvCommand, KvStore, Operation as KvOperation};
use ringraft::node::envelope::{RequestId, request_id};
use ringraft::raft::raft::decode_conf_change;
use ringraft::raftpb::{ConfChangeType, Entry};
use std::collections::{BTreeMap, BTreeSet};

/// One entry of the agreed log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AgreedEntry {
    term: u64,
    entry_type: i32,
    data: Vec<u8>,
}

/// Voters and learners after some index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

impl Membership {
    /// Every member.
    pub fn all(&self) -> BTreeSet<u64> {
        self.voters.union(&self.learners).copied().collect()
    }
}

/// Each key's writes in the agreed log: (index, value; `None` = deleted).
type KeyHistory = Vec<(u64, Option<Vec<u8>>)>;

/// The reference and the violations of one run.
#[derive(Debug)]
pub struct Checker {
    keys: Vec<Vec<u8>>,
    log: Vec<AgreedEntry>,
    key_history: BTreeMap<Vec<u8>, KeyHistory>,
    membership_history: Vec<(u64, Membership)>,
    leaders: BTreeMap<u64, u64>,
    /// Acknowledged writes: index → request.
    pub acknowledged: BTreeMap<u64, RequestId>,
    pub violations: Vec<String>,
}

impl Checker {
    /// A checker for a run whose clients use `keys`.
    pub fn new(keys: Vec<Vec<u8>>) -> Checker {
        let key_history = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        Checker {
            keys,
            log: Vec::new(),
            key_history,
            membership_history: vec![(0, Membership::default())],
            leaders: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    /// Records a violation.
    pub fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }

    /// The index of the last entry any node applied.
    pub fn agreed_len(&self) -> u64 {
        self.log.len() as u64
    }

    /// Node `id` is leader in `term`.
    pub fn leader(&mut self, term: u64, id: u64) {
        match self.leaders.get(&term) {
            Some(&other) if other != id => self.violation(format!(
                "election safety: nodes {other} and {id} both lead term {term}"
            )),
            Some(_) => {}
            None => {
                self.leaders.insert(term, id);
            }
        }
    }

    /// Node `node` applies `entry`.
    pub fn applied(&mut self, node: u64, entry: &Entry) {
        let agreed = AgreedEntry {
            term: entry.term,
            entry_type: entry.entry_type,
            data: entry.data.clone(),
        };
        let index = entry.index;
        let len = self.log.len() as u64;
        if index == 0 || index > len + 1 {
            self.violation(format!(
                "node {node} applies index {index} but the agreed log ends at {len}"
            ));
            return;
        }
        if index <= len {
            let existing = &self.log[(index - 1) as usize];
            if *existing != agreed {
                self.violation(format!(
                    "state machine safety: node {node} applies at index {index} an entry of term {} ({} bytes), the agreed entry has term {} ({} bytes)",
                    agreed.term,
                    agreed.data.len(),
                    existing.term,
                    existing.data.len()
                ));
            }
            return;
        }
        self.extend_reference(index, &agreed, entry);
        self.log.push(agreed);
    }

    fn extend_reference(&mut self, index: u64, agreed: &AgreedEntry, entry: &Entry) {
        if let Ok(Some(cc)) = decode_conf_change(entry) {
            let mut membership = self.membership_at(index);
            for change in &cc.changes {
                let id = change.node_id;
                match ConfChangeType::try_from(change.change_type) {
                    Ok(ConfChangeType::ConfChangeAddNode) => {
                        membership.learners.remove(&id);
                        membership.voters.insert(id);
                    }
                    Ok(ConfChangeType::ConfChangeAddLearnerNode) => {
                        membership.voters.remove(&id);
                        membership.learners.insert(id);
                    }
                    Ok(ConfChangeType::ConfChangeRemoveNode) => {
                        membership.voters.remove(&id);
                        membership.learners.remove(&id);
                    }
                    _ => {}
                }
            }
            self.membership_history.push((index, membership));
            return;
        }
        if agreed.entry_type != ringraft::raftpb::EntryType::EntryNormal as i32
            || agreed.data.is_empty()
        {
            return;
        }
        let Ok(command) = KvCommand::decode(agreed.data.as_slice()) else {
            return;
        };
        let (key, value) = match command.operation {
            Some(KvOperation::Put(put)) => (put.key, Some(put.value)),
            Some(KvOperation::Delete(delete)) => (delete.key, None),
            None => return,
        };
        match self.key_history.get_mut(&key) {
            Some(history) => history.push((index, value)),
            None => self.violation(format!("entry {index} writes a key no client uses")),
        }
    }

    /// The reference value of `key` once `index` is applied.
    pub fn value_at(&self, key: &[u8], index: u64) -> Option<&[u8]> {
        let history = self.key_history.get(key)?;
        let after = history.partition_point(|(at, _)| *at <= index);
        history[..after]
            .last()
            .and_then(|(_, value)| value.as_deref())
    }

    /// The reference membership once `index` is applied.
    pub fn membership_at(&self, index: u64) -> Membership {
        let after = self
            .membership_history
            .partition_point(|(at, _)| *at <= index);
        self.membership_history[..after]
            .last()
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Node `node`'s state machine must equal the reference at its applied
    /// index.
    pub fn state(&mut self, node: u64, kv: &KvStore) {
        let applied = kv.applied_index();
        if applied > self.agreed_len() {
            self.violation(format!(
                "node {node} stands at applied index {applied} beyond the agreed log ({})",
                self.agreed_len()
            ));
            return;
        }
        let mut present = 0;
        let mut mismatch = None;
        for key in &self.keys {
            let expected = self.value_at(key, applied);
            present += usize::from(expected.is_some());
            if kv.get(key) != expected && mismatch.is_none() {
                mismatch = Some(format!(
                    "node {node} at applied index {applied}: key {} is {:?}, the agreed log gives {:?}",
                    key.escape_ascii(),
                    kv.get(key).map(|v| v.escape_ascii().to_string()),
                    expected.map(|v| v.escape_ascii().to_string())
                ));
            }
        }
        if mismatch.is_none() && kv.len() != present {
            mismatch = Some(format!(
                "node {node} at applied index {applied} holds {} keys, the agreed log gives {present}",
                kv.len()
            ));
        }
        let members: BTreeSet<u64> = kv.members().keys().copied().collect();
        let expected_members = self.membership_at(applied).all();
        if mismatch.is_none() && members != expected_members {
            mismatch = Some(format!(
                "node {node} at applied index {applied}: member directory {members:?}, the agreed log gives {expected_members:?}"
            ));
        }
        if let Some(what) = mismatch {
            self.violation(format!("applied state disagrees: {what}"));
        }
    }

    /// A serializable read at node `node` (applied index `applied`) of
    /// `key` returned `value`.
    pub fn serializable_read(&mut self, node: u64, key: &[u8], applied: u64, value: Option<&[u8]>) {
        if applied > self.agreed_len() || self.value_at(key, applied) != value {
            let expected = self.value_at(key, applied).map(<[u8]>::to_vec);
            self.violation(format!(
                "serializable read of {} at node {node} (applied {applied}) returned {:?}, the state at {applied} has {:?}",
                key.escape_ascii(),
                value.map(|v| v.escape_ascii().to_string()),
                expected.map(|v| v.escape_ascii().to_string())
            ));
        }
    }

    /// Node `node` acknowledged the write `id` as applied at `index`.
    pub fn acknowledged_write(&mut self, node: u64, index: u64, id: RequestId) {
        let carried = self
            .log
            .get(index.wrapping_sub(1) as usize)
            .and_then(|e| request_id(&e.data));
        if carried != Some(id) {
            self.violation(format!(
                "node {node} acknowledged write {id:?} at index {index}, which the agreed log gives to {carried:?}"
            ));
        }
        self.acknowledged.insert(index, id);
    }

    /// The agreed entry at `index` as (term, data), if known.
    pub fn agreed_entry(&self, index: u64) -> Option<(u64, &[u8])> {
        self.log
            .get(index.wrapping_sub(1) as usize)
            .map(|e| (e.term, e.data.as_slice()))
    }
}
