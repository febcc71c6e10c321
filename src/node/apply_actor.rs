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
//! Membership changes are applied to raft by the raft actor
//! (`apply_conf_change`) before it forwards the entries; here they only
//! update the member directory of the state machine (peer addresses).
//!
//! Every `snapshot_count` applied entries it encodes the state machine and
//! hands the snapshot data to the raft actor, which records it in
//! `MemoryStorage`, has the persistence actor save it, and compacts. It
//! also does so right after a member is added: a new member whose log must
//! start from a snapshot can only accept one whose configuration names it,
//! and raft sends the newest; without this, the leader would offer an older
//! snapshot that the new member refuses, again and again, until the next
//! periodic one (found by the simulation, `tests/sim`).
//!
//! May not touch: raft, files, the network.

use super::envelope::{RequestId, member_peer_url, request_id};
use super::error::NodeError;
use crate::kv::{ApplyOutcome, KvError, KvStore, MemberChange};
use crate::metrics as names;
use crate::raft::raft::decode_conf_change;
use crate::raftpb::{ConfChangeType, Entry, EntryType, Snapshot};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
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
    /// The member directory.
    Members,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// The value of the key, if it has one.
    Value(Option<Vec<u8>>),
    /// Pairs in key order.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// Node id → peer address (empty when unknown).
    Members(BTreeMap<u64, String>),
}

/// The state machine encoded at `index`, for the raft actor to make a raft
/// snapshot of.
#[derive(Debug)]
pub(crate) struct SnapshotData {
    /// The applied index the data stands at.
    pub(crate) index: u64,
    /// `KvStore::snapshot()`.
    pub(crate) data: Vec<u8>,
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
/// An apply batch slower than this counts as slow (etcd's threshold).
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The apply actor's metric handles, looked up once: a lookup by name
/// hashes the name and labels and allocates the label, which per entry
/// batch (and formerly per proposal) showed in profiles. Handles come from
/// the recorder installed when the node starts.
struct ApplyMetrics {
    apply_duration: metrics::Histogram,
    slow_apply: metrics::Counter,
    applied: metrics::Counter,
    pending: metrics::Gauge,
    snapshot_create: metrics::Histogram,
    snapshot_apply: metrics::Histogram,
}

impl ApplyMetrics {
    fn new(node_id: u64) -> ApplyMetrics {
        let node = node_id.to_string();
        let label = [(names::NODE_LABEL, node)];
        ApplyMetrics {
            apply_duration: metrics::histogram!(names::APPLY_DURATION_SECONDS, &label),
            slow_apply: metrics::counter!(names::SLOW_APPLY_TOTAL, &label),
            applied: metrics::counter!(names::PROPOSALS_APPLIED_TOTAL, &label),
            pending: metrics::gauge!(names::PROPOSALS_PENDING, &label),
            snapshot_create: metrics::histogram!(names::SNAPSHOT_CREATE_DURATION_SECONDS, &label),
            snapshot_apply: metrics::histogram!(names::SNAPSHOT_APPLY_DURATION_SECONDS, &label),
        }
    }
}

/// Where the apply actor's output goes besides its callers.
pub(crate) struct ApplyOutputs {
    /// The applied index, published after every batch.
    pub(crate) applied: watch::Sender<u64>,
    /// Snapshot data for the raft actor.
    pub(crate) snapshots: mpsc::UnboundedSender<SnapshotData>,
}

/// The apply actor's state.
pub(crate) struct ApplyActor {
    metrics: ApplyMetrics,
    kv: KvStore,
    inbox: mpsc::UnboundedReceiver<ApplyMsg>,
    outputs: ApplyOutputs,
    waiters: HashMap<RequestId, ProposalReply>,
    reads: BTreeMap<(u64, u64), (Query, ReadReply)>,
    read_seq: u64,
    messages_seen: u64,
    /// Snapshot every this many applied entries (0: never).
    snapshot_count: u64,
    last_snapshot_index: u64,
    /// A member was added since the last snapshot.
    member_added: bool,
}

impl ApplyActor {
    /// An actor of node `node_id` over `kv` (as boot left it, at its last
    /// snapshot) reading `inbox`.
    pub(crate) fn new(
        node_id: u64,
        kv: KvStore,
        inbox: mpsc::UnboundedReceiver<ApplyMsg>,
        outputs: ApplyOutputs,
        snapshot_count: u64,
    ) -> ApplyActor {
        outputs.applied.send_replace(kv.applied_index());
        let last_snapshot_index = kv.applied_index();
        ApplyActor {
            metrics: ApplyMetrics::new(node_id),
            kv,
            inbox,
            outputs,
            waiters: HashMap::new(),
            reads: BTreeMap::new(),
            read_seq: 0,
            messages_seen: 0,
            snapshot_count,
            last_snapshot_index,
            member_added: false,
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
            ApplyMsg::Committed(entries) => self.apply_batch(&entries)?,
            ApplyMsg::Restore(snapshot) => {
                if snapshot.metadata.index > self.kv.applied_index() {
                    let started = Instant::now();
                    self.kv = KvStore::restore(&snapshot.data)
                        .map_err(|e| NodeError::StateMachine(e.to_string()))?;
                    self.metrics.snapshot_apply.record(started.elapsed());
                    tracing::info!(
                        index = snapshot.metadata.index,
                        "state machine restored from a snapshot"
                    );
                    self.last_snapshot_index = self.kv.applied_index();
                    self.outputs.applied.send_replace(self.kv.applied_index());
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

    fn apply_batch(&mut self, entries: &[Entry]) -> Result<(), NodeError> {
        let started = Instant::now();
        let applied_before = self.kv.applied_index();
        let mut completed = Vec::new();
        for entry in entries {
            if let Some(reply) = self.apply(entry)? {
                completed.push((reply, entry.index));
            }
        }
        // Published before anyone is answered: a caller that got its index
        // sees `applied_index() >= index`.
        self.outputs.applied.send_replace(self.kv.applied_index());
        for (reply, index) in completed {
            let _ = reply.send(Ok(index));
        }
        self.serve_reads();
        let elapsed = started.elapsed();
        self.metrics.apply_duration.record(elapsed);
        if elapsed > SLOW_APPLY {
            self.metrics.slow_apply.increment(1);
        }
        self.metrics
            .applied
            .increment(self.kv.applied_index() - applied_before);
        self.metrics.pending.set(self.waiters.len() as f64);
        self.maybe_snapshot();
        Ok(())
    }

    /// Every `snapshot_count` applied entries, and after a member was
    /// added, hands the encoded state machine to the raft actor.
    fn maybe_snapshot(&mut self) {
        let applied = self.kv.applied_index();
        let since_last = applied - self.last_snapshot_index;
        let member_added = std::mem::take(&mut self.member_added) && since_last > 0;
        if self.snapshot_count == 0 || (since_last < self.snapshot_count && !member_added) {
            return;
        }
        let started = Instant::now();
        let data = self.kv.snapshot();
        self.metrics.snapshot_create.record(started.elapsed());
        self.last_snapshot_index = applied;
        // Refused only when the raft actor ended; then nothing matters.
        let _ = self.outputs.snapshots.send(SnapshotData {
            index: applied,
            data,
        });
    }

    /// Applies one entry; returns the caller waiting for it, if any.
    fn apply(&mut self, entry: &Entry) -> Result<Option<ProposalReply>, NodeError> {
        let outcome = match entry.entry_type() {
            EntryType::EntryNormal => self.kv.apply(entry.index, &entry.data),
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                self.apply_member_change(entry)
            }
        };
        let outcome = outcome.map_err(|e| NodeError::StateMachine(e.to_string()))?;
        if let ApplyOutcome::Rejected { reason } = &outcome {
            tracing::warn!(index = entry.index, %reason, "entry is not a command; skipped");
        }
        let id = (entry.entry_type() == EntryType::EntryNormal)
            .then(|| request_id(&entry.data))
            .flatten();
        Ok(id.and_then(|id| self.waiters.remove(&id)))
    }

    /// A membership change updates the member directory; raft itself was
    /// changed by the raft actor.
    fn apply_member_change(&mut self, entry: &Entry) -> Result<ApplyOutcome, KvError> {
        let Ok(Some(cc)) = decode_conf_change(entry) else {
            // Refused alike on every member; only the index moves.
            return self.kv.apply_no_op(entry.index);
        };
        let peer_url = member_peer_url(&cc.context);
        let changes: Vec<MemberChange> = cc
            .changes
            .iter()
            .filter_map(|change| {
                let node_id = change.node_id;
                match ConfChangeType::try_from(change.change_type) {
                    Ok(
                        ConfChangeType::ConfChangeAddNode
                        | ConfChangeType::ConfChangeAddLearnerNode,
                    ) => Some(MemberChange::Added {
                        node_id,
                        peer_url: peer_url.clone(),
                    }),
                    Ok(ConfChangeType::ConfChangeRemoveNode) => {
                        Some(MemberChange::Removed { node_id })
                    }
                    Ok(ConfChangeType::ConfChangeUpdateNode) | Err(_) => None,
                }
            })
            .collect();
        self.member_added |= changes
            .iter()
            .any(|change| matches!(change, MemberChange::Added { .. }));
        self.kv.apply_member_changes(entry.index, &changes)
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
            Query::Members => QueryResult::Members(self.kv.members().clone()),
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
