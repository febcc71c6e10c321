//! The apply actor: applies committed entries to the key-value state
//! machine in log order, completes the callers waiting for their proposals,
//! and serves reads once the state machine is recent enough.
//!
//! Owns: the [`KvStore`], the proposals waiting to apply (by
//! [`RequestId`]), the reads waiting for an applied index, and the
//! published applied index (a `watch` the raft actor turns into
//! `advance_apply`).
//!
//! Guarantees: entries apply in the order the raft actor sent them, each
//! once; a proposal's caller is answered with the entry's index only after
//! the entry applied here; a read with read index `i` is served only once
//! `applied ≥ i`; a snapshot replaces the state machine before any entry
//! after it applies. A gap in the entries (a lost entry) stops the actor
//! and fails every waiter, rather than serving a wrong state.
//!
//! Membership changes do not come through here as changes: the raft actor
//! applies them to raft itself (`apply_conf_change`) before forwarding the
//! entries; for the state machine they only move the applied index.
//!
//! May not touch: raft, files, the network. TODO (later slices): snapshot
//! every `snapshot_count` applied entries (through `MemoryStorage`, the
//! persistence actor, then compaction), metrics.

use super::envelope::{RequestId, request_id};
use super::error::NodeError;
use crate::kv::KvStore;
use crate::raftpb::{Entry, EntryType, Snapshot};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::{mpsc, oneshot, watch};

/// A read of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The value of a key.
    Get(Vec<u8>),
    /// Up to `limit` pairs whose key starts with `prefix`.
    ScanPrefix {
        /// The prefix.
        prefix: Vec<u8>,
        /// At most this many pairs.
        limit: usize,
    },
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// The value of the key, if it has one.
    Value(Option<Vec<u8>>),
    /// Pairs in key order.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
}

/// Where a proposal's outcome goes: the index it applied at.
pub(crate) type ProposalReply = oneshot::Sender<Result<u64, NodeError>>;
/// Where a read's answer goes.
pub(crate) type ReadReply = oneshot::Sender<Result<QueryResult, NodeError>>;

/// What the raft actor (and, for local reads, the handle) sends.
#[derive(Debug)]
pub(crate) enum ApplyMsg {
    /// Answer `reply` when the entry carrying `id` applies.
    Register {
        /// The proposal's id.
        id: RequestId,
        /// The caller.
        reply: ProposalReply,
    },
    /// Committed entries, in order.
    Committed(Vec<Entry>),
    /// A snapshot the node installed: restore the state machine from it.
    Restore(Snapshot),
    /// Serve `query` once applied ≥ `index` (0: at once, a serializable
    /// read).
    Read {
        /// The read index.
        index: u64,
        /// What to read.
        query: Query,
        /// The caller.
        reply: ReadReply,
    },
}

/// Sweep answered-elsewhere waiters (timed-out callers) this often.
const SWEEP_EVERY_MESSAGES: u64 = 1024;

/// The apply actor's state.
pub(crate) struct ApplyActor {
    kv: KvStore,
    inbox: mpsc::UnboundedReceiver<ApplyMsg>,
    applied: watch::Sender<u64>,
    waiters: HashMap<RequestId, ProposalReply>,
    reads: BTreeMap<(u64, u64), (Query, ReadReply)>,
    read_seq: u64,
    messages_seen: u64,
}

impl ApplyActor {
    /// An actor over `kv` (as boot left it) reading `inbox`.
    pub(crate) fn new(
        kv: KvStore,
        inbox: mpsc::UnboundedReceiver<ApplyMsg>,
        applied: watch::Sender<u64>,
    ) -> ApplyActor {
        applied.send_replace(kv.applied_index());
        ApplyActor {
            kv,
            inbox,
            applied,
            waiters: HashMap::new(),
            reads: BTreeMap::new(),
            read_seq: 0,
            messages_seen: 0,
        }
    }

    /// Runs until the raft actor hangs up (shutdown) or an entry is lost.
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        while let Some(message) = self.inbox.recv().await {
            if let Err(error) = self.handle(message) {
                tracing::error!(%error, "apply actor stops");
                self.fail_all(&error);
                return Err(error);
            }
            self.messages_seen += 1;
            if self.messages_seen % SWEEP_EVERY_MESSAGES == 0 {
                self.waiters.retain(|_, reply| !reply.is_closed());
                self.reads.retain(|_, (_, reply)| !reply.is_closed());
            }
        }
        self.fail_all(&NodeError::Stopped);
        Ok(())
    }

    fn handle(&mut self, message: ApplyMsg) -> Result<(), NodeError> {
        match message {
            ApplyMsg::Register { id, reply } => {
                self.waiters.insert(id, reply);
            }
            ApplyMsg::Committed(entries) => {
                let mut completed = Vec::new();
                for entry in &entries {
                    if let Some(reply) = self.apply(entry)? {
                        completed.push((reply, entry.index));
                    }
                }
                // Published before anyone is answered: a caller that got
                // its index sees `applied_index() >= index`.
                self.applied.send_replace(self.kv.applied_index());
                for (reply, index) in completed {
                    let _ = reply.send(Ok(index));
                }
                self.serve_reads();
            }
            ApplyMsg::Restore(snapshot) => {
                if snapshot.metadata.index > self.kv.applied_index() {
                    self.kv = KvStore::restore(&snapshot.data)
                        .map_err(|e| NodeError::StateMachine(e.to_string()))?;
                    self.applied.send_replace(self.kv.applied_index());
                    self.serve_reads();
                }
            }
            ApplyMsg::Read {
                index,
                query,
                reply,
            } => {
                if index <= self.kv.applied_index() {
                    let _ = reply.send(Ok(self.query(&query)));
                } else {
                    self.read_seq += 1;
                    self.reads.insert((index, self.read_seq), (query, reply));
                }
            }
        }
        Ok(())
    }

    /// Applies one entry; returns the caller waiting for it, if any.
    fn apply(&mut self, entry: &Entry) -> Result<Option<ProposalReply>, NodeError> {
        let outcome = if entry.entry_type() == EntryType::EntryNormal {
            self.kv.apply(entry.index, &entry.data)
        } else {
            self.kv.apply_no_op(entry.index)
        };
        let outcome = outcome.map_err(|e| NodeError::StateMachine(e.to_string()))?;
        if let crate::kv::ApplyOutcome::Rejected { reason } = &outcome {
            tracing::warn!(index = entry.index, %reason, "entry is not a command; skipped");
        }
        let id = (entry.entry_type() == EntryType::EntryNormal)
            .then(|| request_id(&entry.data))
            .flatten();
        Ok(id.and_then(|id| self.waiters.remove(&id)))
    }

    fn serve_reads(&mut self) {
        let applied = self.kv.applied_index();
        while let Some(entry) = self.reads.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let (query, reply) = entry.remove();
            let _ = reply.send(Ok(self.query(&query)));
        }
    }

    fn query(&self, query: &Query) -> QueryResult {
        match query {
            Query::Get(key) => QueryResult::Value(self.kv.get(key).map(<[u8]>::to_vec)),
            Query::ScanPrefix { prefix, limit } => {
                QueryResult::Pairs(self.kv.scan_prefix(prefix, *limit))
            }
        }
    }

    fn fail_all(&mut self, error: &NodeError) {
        for (_, reply) in self.waiters.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, (_, reply)) in std::mem::take(&mut self.reads) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}
