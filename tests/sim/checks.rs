//! The safety checks of a simulated run, against a reference built from
//! what the nodes applied.
//!
//! Owns: the agreed log (every entry some node applied, by index: the first
//! node to apply an index fixes it), the reference it implies (the state
//! machine's [`Reference`] and the membership after every index), the
//! leader of every term, the acknowledged writes, and the violations found.
//!
//! Guarantees, each checked where it can first fail:
//! - election safety: at most one leader per term over the whole run;
//! - state machine safety: a node applies at index `i` exactly the entry
//!   every other node applied at `i` (same term, type and bytes), and in
//!   order (no index is skipped);
//! - applied states agree: after every apply batch or snapshot restore, a
//!   node's real state machine (as its `Applier` holds it) equals the
//!   reference state at the node's applied index (so two nodes at the same
//!   index hold the same state), its member directory equals the membership
//!   the agreed log gives there, and the machine's invariant holds;
//! - reads (serializable, and linearizable as they complete) return what
//!   the reference state gives at the index the node had applied;
//! - an acknowledged write is the entry at the index it was acknowledged
//!   with, in the agreed log (which no node may later contradict, and which
//!   every member must reach at the end: see `cluster`), and its response
//!   is the one the reference decided.
//!
//! The history is checked at the end by the workload.
//! May not touch: the nodes; it only reads what they report.

use crate::machine::{Reference, SimMachine};
use ringraft::node::applier::Applier;
use ringraft::node::envelope::{self, RequestId, request_id};
use ringraft::raft::raft::decode_conf_change;
use ringraft::raftpb::{ConfChangeType, Entry, EntryType};
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

/// The reference and the violations of one run.
#[derive(Debug)]
pub struct Checker<S: SimMachine> {
    params: S::Params,
    reference: S::Reference,
    log: Vec<AgreedEntry>,
    membership_history: Vec<(u64, Membership)>,
    leaders: BTreeMap<u64, u64>,
    /// Acknowledged writes: index → request.
    pub acknowledged: BTreeMap<u64, RequestId>,
    pub violations: Vec<String>,
}

impl<S: SimMachine> Checker<S> {
    /// A checker for a run with parameters `params`.
    pub fn new(params: S::Params) -> Checker<S> {
        Checker {
            reference: S::reference(&params),
            params,
            log: Vec::new(),
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
            data: entry.data.to_vec(),
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
        if agreed.entry_type != EntryType::EntryNormal as i32 || agreed.data.is_empty() {
            return;
        }
        // Every proposal of the simulation is framed and decodes; one that
        // did not would apply as nothing on every member, and the state
        // comparison would show it.
        let Ok(proposal) = envelope::split(&agreed.data) else {
            self.violation(format!("entry {index}: proposal header does not decode"));
            return;
        };
        match S::decode_command(proposal.command) {
            Ok(command) => {
                if let Err(what) = self.reference.commit(index, &command) {
                    self.violation(what);
                }
            }
            Err(error) => self.violation(format!("entry {index}: {error}")),
        }
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

    /// The machine's invariant on node `node`'s state.
    pub fn invariant(&mut self, node: u64, applier: &Applier<S>) {
        if let Err(what) = S::invariant(&self.params, applier.state()) {
            self.violation(format!(
                "node {node} at applied index {}: {what}",
                applier.applied_index()
            ));
        }
    }

    /// Node `node`'s state machine and member directory must equal the
    /// reference at its applied index.
    pub fn state(&mut self, node: u64, applier: &Applier<S>) {
        let applied = applier.applied_index();
        if applied > self.agreed_len() {
            self.violation(format!(
                "node {node} stands at applied index {applied} beyond the agreed log ({})",
                self.agreed_len()
            ));
            return;
        }
        let mut mismatch = self.reference.check_state(applied, applier.state()).err();
        if mismatch.is_none() {
            mismatch = self.directory_mismatch(applied, applier);
        }
        if let Some(what) = mismatch {
            self.violation(format!(
                "applied state disagrees: node {node} at applied index {applied}: {what}"
            ));
        }
        if S::HAS_INVARIANT {
            self.invariant(node, applier);
        }
    }

    /// How the member directory differs from the membership the agreed
    /// log gives at `applied`, if it does (without allocating: this runs
    /// after every apply batch).
    fn directory_mismatch(&self, applied: u64, applier: &Applier<S>) -> Option<String> {
        let after = self
            .membership_history
            .partition_point(|(at, _)| *at <= applied);
        let expected = after
            .checked_sub(1)
            .map(|at| &self.membership_history[at].1);
        let directory = applier.members();
        let expected_len = expected.map_or(0, |m| m.voters.len() + m.learners.len());
        let same = directory.len() == expected_len
            && directory.keys().all(|id| {
                expected.is_some_and(|m| m.voters.contains(id) || m.learners.contains(id))
            });
        if !same {
            let members: BTreeSet<u64> = directory.keys().copied().collect();
            return Some(format!(
                "member directory {members:?}, the agreed log gives {:?}",
                self.membership_at(applied).all()
            ));
        }
        // Addresses come from the change that added the member: the
        // simulation's `peer_url`, or none (the bootstrap members).
        let misplaced = directory.iter().find(|(id, url)| {
            !url.is_empty()
                && url
                    .strip_prefix(crate::node::PEER_URL_PREFIX)
                    .and_then(|n| n.parse::<u64>().ok())
                    != Some(**id)
        });
        misplaced.map(|(id, url)| format!("member directory gives node {id} the address {url:?}"))
    }

    /// A read (`kind`: serializable or linearizable) of `query` answered by
    /// node `node` at applied index `applied` returned `result`.
    pub fn read(
        &mut self,
        kind: &str,
        node: u64,
        applied: u64,
        query: &S::Query,
        result: &S::QueryResult,
    ) {
        let checked = if applied > self.agreed_len() {
            Err(format!("beyond the agreed log ({})", self.agreed_len()))
        } else {
            self.reference.check_query(applied, query, result)
        };
        if let Err(what) = checked {
            self.violation(format!(
                "{kind} read at node {node} (applied {applied}): {what}"
            ));
        }
    }

    /// Node `node` acknowledged the write `id` as applied at `index` with
    /// `response`.
    pub fn acknowledged_write(
        &mut self,
        node: u64,
        index: u64,
        id: RequestId,
        response: &S::Response,
    ) {
        let carried = self
            .log
            .get(index.wrapping_sub(1) as usize)
            .and_then(|e| request_id(&e.data));
        if carried != Some(id) {
            self.violation(format!(
                "node {node} acknowledged write {id:?} at index {index}, which the agreed log gives to {carried:?}"
            ));
        } else if let Err(what) = self.reference.check_response(index, response) {
            self.violation(format!(
                "node {node} answered write {id:?} at index {index}: {what}"
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
