//! Seeded randomized safety test of the raft core.
//!
//! Each run builds a cluster of RawNodes (3 or 5 voters) and lets one seeded
//! RNG pick, step by step, what happens next (no threads, no clock):
//!
//! - time and elections: tick one node or all, campaign, transfer
//!   leadership, forget the leader;
//! - client requests: propose at a random node (drops are fine), ReadIndex;
//! - persistence: hand out a Ready; persist a prefix of a node's handed-out
//!   Readies (pipelined, persistence delayed at random); the leader may send
//!   its appends before its own fsync (§10.2.1);
//! - network: deliver the oldest or a random in-flight message
//!   (reordering), drop it (loss; the sender gets etcd's transport reports),
//!   duplicate it, partition the nodes in two or cut one direction of a
//!   link, heal;
//! - crashes: a node loses its unpersisted Readies and all in-memory state
//!   and restarts from its `MemoryStorage` (which this driver writes only
//!   when a Ready is persisted), with `Config.applied` = what its durable
//!   state machine applied, or with the state machine rebuilt from the
//!   snapshot;
//! - compaction: snapshot the state machine at an applied index and compact
//!   the storage, so that lagging peers need a snapshot.
//!
//! Each run draws its config (pre-vote, check-quorum, timeouts, message and
//! inflight limits, uncommitted and apply budgets, forwarding) and its fault
//! mix from the seed.
//!
//! After every step [`Sim::check`] asserts: election safety (one leader per
//! term over the whole run, one granted vote per term and node, durable
//! term/vote never go back); log matching (an entry (index, term) ever seen
//! anywhere always has the same predecessor term and data); committed
//! entries never change (a global map of every entry any node reported
//! committed; no node's log contradicts it at or below that node's commit
//! index) and are durable on a majority; applied sequences agree (every
//! node applies 1, 2, 3, ... exactly the committed entries; snapshots carry
//! exactly the applied prefix; applied ≤ committed); leader completeness
//! (a new leader holds every entry committed so far); ReadIndex answers are
//! linearizable: every ReadState index is ≥ the highest index any node knew
//! committed when the read was issued (which covers every commit
//! acknowledged before it). At the end of each run the faults stop and the
//! cluster must elect a leader and commit and apply a final proposal on
//! every node.
//!
//! Three more tests vary the base mix:
//!
//! - `random_membership_*`: the cluster is bootstrapped (membership in the
//!   log, as etcd) with 3 or 5 voters and spare ids up to 7 that join with
//!   an empty storage; random membership changes are proposed (add voter,
//!   add learner, promote, demote, remove voter or learner; joint changes of
//!   several at once with auto, implicit or explicit transition; leaving
//!   the joint configuration), at a leader from its view, or at another node
//!   (forwarded; then only additions of voters). The driver applies
//!   committed changes with `apply_conf_change`, as an etcd server does
//!   (a removed id is never added again: such a change applies as a no-op),
//!   restarts nodes with the committed log re-applied from the snapshot when
//!   changes lie after it, snapshots with the configuration as of the
//!   snapshot's index, crashes members of joint configurations, and keeps
//!   removed nodes running or stops them (once every member knows of the
//!   removal); the transport may drop messages from removed nodes (etcd's
//!   `IsIDRemoved`). Further invariants: a committed entry is durable on a
//!   quorum of the configuration of the leader that committed it (joint:
//!   both halves); every node arrives at the same configuration after
//!   applying the same committed prefix (compared by index), its core has
//!   the configuration of the index it applied, installed snapshots carry
//!   the configuration of their index; a committed change applies without
//!   error; a leader is a voter of its configuration, unless it was removed
//!   or demoted and no voter has its whole log yet (it hands over); a node
//!   that applied its own removal never leads a later term. The final
//!   phase leaves a joint configuration and requires the final proposal on
//!   every member of the final configuration. A run that ends in the known
//!   stall of [`Sim::demoted_stall`] is reported, not failed (unless
//!   `RINGRAFT_RANDOM_STRICT`).
//! - `random_lease_reads`: as above with lease-based reads, check-quorum,
//!   and clocks that tick together (only "tick all"; no campaigns forced by
//!   the driver), which is what the lease assumes; crashes included.
//!
//! Environment: `RINGRAFT_RANDOM_RUNS` (runs per test),
//! `RINGRAFT_RANDOM_STEPS` (steps per run), `RINGRAFT_SEED` (run exactly that
//! seed), `RINGRAFT_RANDOM_FIRST_SEED` (first seed of the range),
//! `RINGRAFT_RANDOM_KEEP_GOING` (run every seed, list the failing ones),
//! `RINGRAFT_RANDOM_TRACE` (print every action), `RINGRAFT_RANDOM_VERBOSE`
//! (per-run statistics), `RINGRAFT_RANDOM_STRICT` (fail on the known
//! stall too). A failure names the seed, the command that reproduces it,
//! the node states (and configurations) and the last actions.

use ringraft::raft::raft::decode_conf_change;
use ringraft::raft::{
    Config, MemoryStorage, NO_LIMIT, RawNode, ReadOnlyOption, Ready, SnapshotStatus, StateRole,
    Storage,
};
use ringraft::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState, Message, MessageType,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

/// Runs per test when `RINGRAFT_RANDOM_RUNS` is not set: the five tests
/// take about 45 s together in `cargo test --release` on a 2-core machine
/// (two at a time). Raise `RINGRAFT_RANDOM_RUNS` for a longer search.
const DEFAULT_RUNS_3: u64 = 1000;
const DEFAULT_RUNS_5: u64 = 1000;
const DEFAULT_RUNS_MEMBERSHIP_3: u64 = 1000;
const DEFAULT_RUNS_MEMBERSHIP_5: u64 = 700;
const DEFAULT_RUNS_LEASE: u64 = 700;
/// Steps per run when `RINGRAFT_RANDOM_STEPS` is not set. Long runs reach
/// the deep histories (several crashed leaders in a row) that short ones
/// rarely do.
const DEFAULT_STEPS: usize = 10_000;
/// Actions kept for the failure report.
const TRACE_LEN: usize = 80;
/// Rounds the final liveness phase may take.
const LIVENESS_ROUNDS: usize = 3000;

/// Records an action in the trace; formats only when tracing (a failing
/// seed is re-run with tracing on, which reproduces it exactly).
macro_rules! note {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing {
            let text = format!($($arg)*);
            $sim.log(text);
        }
    };
}

// ---------------------------------------------------------------------------
// Deterministic randomness.

/// SplitMix64: the only source of randomness of the scheduler.
struct Rng {
    state: u64,
}

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `[0, bound)` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

// ---------------------------------------------------------------------------
// Per-run configuration.

/// What a test varies: the cluster's size and how it starts, and which
/// kinds of faults and requests it adds to the base mix.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// Voters at the start.
    nodes: u64,
    /// Bootstrap the cluster (membership in the log, as etcd) and make
    /// random membership changes, with spare nodes that join empty.
    membership: bool,
    /// Lease-based reads with synchronized clocks: every node ticks
    /// together (only "tick all"), as the lease assumes.
    lease: bool,
}

/// Node ids a membership run may use (initial voters and spares).
const MAX_NODES: u64 = 7;

/// The knobs one run draws from its seed.
#[derive(Debug, Clone)]
struct Params {
    pre_vote: bool,
    check_quorum: bool,
    election_tick: usize,
    heartbeat_tick: usize,
    max_size_per_msg: u64,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
    max_uncommitted_entries_size: u64,
    max_committed_size_per_ready: u64,
    disable_proposal_forwarding: bool,
    /// The leader sends `append_messages` when the Ready is handed out,
    /// before its own persistence (thesis §10.2.1).
    early_append: bool,
    /// Weight of crashing a node (0: no crashes).
    crash_weight: u64,
    compaction: bool,
    /// Scales the weights of message loss and duplication (0: none).
    fault_rate: u64,
    /// Weight of a new partition or one-way cut (0: none).
    partition_weight: u64,
    /// Weight of healing the network: 1 makes partitions last long.
    heal_weight: u64,
    /// Probability (num, den) that a delivery picks a random in-flight
    /// message rather than the oldest.
    reorder: (u64, u64),
    /// Weight of persisting (against 32 for handing out Readies): low
    /// values let unpersisted Readies pile up.
    persist_weight: u64,
    /// Weight of ticking one node (against 80 for delivering a message):
    /// how fast time passes relative to processing.
    tick_weight: u64,
    core_seed: u64,
    /// Weight of proposing a membership change (0: none).
    conf_weight: u64,
    /// The transport drops messages from nodes whose removal the recipient
    /// has applied (etcd's `IsIDRemoved`); not in the final phase.
    drop_from_removed: bool,
    /// Weight of stopping a node removed from the configuration.
    stop_removed_weight: u64,
    /// Reads: safe (heartbeat round) or lease-based.
    read_only: ReadOnlyOption,
    /// Only "tick all": every clock ticks at the same rate.
    sync_ticks: bool,
}

impl Params {
    fn random(rng: &mut Rng, variant: Variant) -> Params {
        let election_tick = 5 + rng.index(10);
        let heartbeat_tick = 1 + rng.index(2);
        let small_messages = rng.chance(1, 3);
        let max_size_per_msg = if small_messages {
            rng.below(48)
        } else {
            1024 * 1024
        };
        let max_inflight_msgs = if rng.chance(1, 3) {
            1 + rng.index(4)
        } else {
            256
        };
        let max_inflight_bytes = if small_messages && rng.chance(1, 2) {
            max_size_per_msg.max(1) + rng.below(64)
        } else {
            NO_LIMIT
        };
        let max_uncommitted_entries_size = if rng.chance(1, 5) {
            16 + rng.below(64)
        } else {
            NO_LIMIT
        };
        let max_committed_size_per_ready = if rng.chance(1, 4) {
            1 + rng.below(64)
        } else {
            64 * 1024 * 1024
        };
        // Slow persistence means long round trips: let time pass more slowly
        // then, or no election would ever finish in time.
        let persist_weight = [28, 28, 8, 3][rng.index(4)];
        let tick_weight = [12, 24, 48][rng.index(3)] * persist_weight / 28;
        let tick_weight = tick_weight.max(3);
        let mut p = Params {
            pre_vote: rng.chance(1, 2),
            check_quorum: rng.chance(1, 2),
            election_tick,
            heartbeat_tick,
            max_size_per_msg,
            max_inflight_msgs,
            max_inflight_bytes,
            max_uncommitted_entries_size,
            max_committed_size_per_ready,
            disable_proposal_forwarding: rng.chance(1, 5),
            early_append: rng.chance(1, 2),
            crash_weight: [0, 1, 1, 3][rng.index(4)],
            compaction: rng.chance(2, 3),
            fault_rate: [0, 1, 1, 2, 4][rng.index(5)],
            partition_weight: [0, 1, 1, 2][rng.index(4)],
            heal_weight: [1, 4][rng.index(2)],
            reorder: [(1, 2), (1, 8), (0, 1)][rng.index(3)],
            persist_weight,
            tick_weight,
            core_seed: rng.next_u64(),
            conf_weight: 0,
            drop_from_removed: false,
            stop_removed_weight: 0,
            read_only: ReadOnlyOption::Safe,
            sync_ticks: false,
        };
        // Draws only in the new variants, so that the base variants' seeds
        // keep reproducing the same runs.
        if variant.membership {
            p.conf_weight = [1, 3, 6][rng.index(3)];
            p.drop_from_removed = rng.chance(1, 2);
            p.stop_removed_weight = [0, 1][rng.index(2)];
        }
        if variant.lease {
            // The lease's assumptions: clocks tick at the same rate, and a
            // node that acknowledged the leader votes for nobody else for an
            // election timeout. Hence no single ticks and no campaigns
            // forced by the driver. Crashes stay: a restarted node refuses
            // votes for its first election timeout (see
            // `lease_read_after_a_follower_restart_is_not_stale` in
            // tests/raft_membership.rs).
            p.check_quorum = true;
            p.read_only = ReadOnlyOption::LeaseBased;
            p.sync_ticks = true;
        }
        p
    }

    fn config(&self, id: u64, applied: u64, incarnation: u64) -> Config {
        let mut config = Config::new(id);
        config.election_tick = self.election_tick;
        config.heartbeat_tick = self.heartbeat_tick;
        config.applied = applied;
        config.max_size_per_msg = self.max_size_per_msg;
        config.max_committed_size_per_ready = self.max_committed_size_per_ready;
        config.max_inflight_msgs = self.max_inflight_msgs;
        config.max_inflight_bytes = self.max_inflight_bytes;
        config.max_uncommitted_entries_size = self.max_uncommitted_entries_size;
        config.check_quorum = self.check_quorum;
        config.pre_vote = self.pre_vote;
        config.disable_proposal_forwarding = self.disable_proposal_forwarding;
        config.read_only = self.read_only;
        config.seed = self
            .core_seed
            .wrapping_add(incarnation.wrapping_mul(0x51_7cc1));
        config
    }
}

// ---------------------------------------------------------------------------
// The state machine: the applied entries themselves, so that snapshots can be
// checked against what the other nodes applied.

type StateMachine = BTreeMap<u64, (u64, Vec<u8>)>;

/// An entry's payload as the checks record it: its type, then its data (an
/// empty leader entry and an empty leave-joint change differ).
fn tagged(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.data.len() + 1);
    out.push(entry.entry_type as u8);
    out.extend_from_slice(&entry.data);
    out
}

/// A normal entry's payload `data`, as [`tagged`] records it.
fn tagged_normal(data: &[u8]) -> Vec<u8> {
    tagged(&Entry {
        data: data.to_vec().into(),
        ..Default::default()
    })
}

/// Every node id a configuration mentions.
fn members(cs: &ConfState) -> BTreeSet<u64> {
    cs.voters
        .iter()
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners)
        .chain(&cs.learners_next)
        .copied()
        .collect()
}

/// Whether `holders` is a quorum of the joint configuration `(incoming,
/// outgoing)` (an empty half imposes nothing).
fn is_quorum(holders: &BTreeSet<u64>, incoming: &[u64], outgoing: &[u64]) -> bool {
    let majority = |voters: &[u64]| {
        voters.is_empty()
            || voters.iter().filter(|v| holders.contains(v)).count() * 2 > voters.len()
    };
    majority(incoming) && majority(outgoing)
}

fn encode_state_machine(sm: &StateMachine, up_to: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (&index, (term, data)) in sm.range(..=up_to) {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&term.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

fn decode_state_machine(mut bytes: &[u8]) -> StateMachine {
    let mut sm = StateMachine::new();
    let take = |n: usize, bytes: &mut &[u8]| {
        assert!(bytes.len() >= n, "snapshot data truncated");
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        head.to_vec()
    };
    while !bytes.is_empty() {
        let index = u64::from_le_bytes(take(8, &mut bytes).try_into().expect("8 bytes"));
        let term = u64::from_le_bytes(take(8, &mut bytes).try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(take(4, &mut bytes).try_into().expect("4 bytes"));
        let data = take(len as usize, &mut bytes);
        sm.insert(index, (term, data));
    }
    sm
}

// ---------------------------------------------------------------------------
// Nodes and the simulated cluster.

struct SimNode {
    id: u64,
    /// The running node; `None` while crashed.
    raw: Option<RawNode<MemoryStorage>>,
    /// What survived the crash (the persisted storage), while down.
    disk: MemoryStorage,
    /// Readies handed out and not yet persisted, oldest first.
    unpersisted: VecDeque<Ready>,
    /// The state machine (durable: it survives a crash unless the restart
    /// chooses to rebuild it from the snapshot).
    sm: StateMachine,
    /// The last index applied to `sm`.
    applied: u64,
    /// Commit index up to which this node's entries were recorded.
    commit_seen: u64,
    /// The term in which this node was last seen leading (0: none since
    /// start or restart).
    leader_term_seen: u64,
    /// The HardState last persisted (survives crashes).
    durable_hard_state: HardState,
    incarnation: u64,
    /// The index up to which the running incarnation's configuration has
    /// absorbed the log: its starting snapshot, the snapshots it installed
    /// and the committed entries it handed out that the driver applied
    /// (configuration changes through `apply_conf_change`). Below the
    /// state machine's `applied` after a restart that re-applies entries.
    raft_applied: u64,
    /// Stopped for good (removed from the configuration).
    stopped: bool,
}

#[derive(Debug, Clone)]
enum Action {
    Tick(u64),
    TickAll,
    Propose(u64),
    Campaign(u64),
    Ready(u64),
    Persist(u64, usize),
    ReadyAndPersist(u64),
    Deliver(usize),
    Drop(usize),
    Duplicate(usize),
    Partition(Vec<u64>),
    CutOneWay(u64, u64),
    Heal,
    Crash(u64),
    Restart(u64),
    Compact(u64),
    TransferLeader(u64, u64),
    ForgetLeader(u64),
    ReadIndex(u64),
    /// Propose a membership change at a node (v1 encoding if the flag).
    ConfChange(u64, ConfChangeV2, bool),
    /// Stop a node that is no longer a member.
    StopRemoved(u64),
}

struct Sim {
    p: Params,
    variant: Variant,
    rng: Rng,
    /// The nodes started so far (initial voters, then spares as they are
    /// added), ascending.
    ids: Vec<u64>,
    /// Every id a run may use.
    pool: Vec<u64>,
    /// Ids whose removal was accepted by a leader: never added again (as
    /// etcd never reuses a removed member's id).
    retired: BTreeSet<u64>,
    /// The final phase is running: the transport no longer drops messages
    /// from removed nodes (a member that has not yet applied a removal may
    /// need the removed node's vote; etcd's transport has that hazard).
    final_phase: bool,
    /// The final phase ended in the known stall of [`Sim::demoted_stall`].
    known_stall: Option<String>,
    /// `RINGRAFT_RANDOM_STRICT`: fail on that stall too.
    strict: bool,
    /// Removed or demoted leaders handing over, with their term (traced).
    handing_over: BTreeMap<u64, u64>,
    nodes: BTreeMap<u64, SimNode>,
    in_flight: Vec<Message>,
    cut: BTreeSet<(u64, u64)>,
    step: usize,
    next_data: u64,
    trace: VecDeque<String>,
    /// The action under way (for the failure report).
    current: String,
    /// Keep the trace of actions (the re-run of a failing seed).
    tracing: bool,
    /// Print every action (`RINGRAFT_RANDOM_TRACE`).
    print_trace: bool,
    /// Count actions and outcomes (`RINGRAFT_RANDOM_VERBOSE`).
    verbose: bool,
    /// Counters for `RINGRAFT_RANDOM_VERBOSE`.
    stats: BTreeMap<String, u64>,
    // --- history for the invariants ---
    /// term -> the only node that ever led it.
    leaders: BTreeMap<u64, u64>,
    /// (voter, term) -> the candidate it granted its vote to.
    votes: HashMap<(u64, u64), u64>,
    /// (index, term) -> (term of index-1, data): every entry ever seen in
    /// any log. Log matching over all time: an entry determines its
    /// predecessor, hence (by induction) the whole prefix.
    entry_info: HashMap<(u64, u64), (u64, Vec<u8>)>,
    /// index -> (term, data) of every entry any node reported committed.
    committed: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Read requests: context -> the highest index committed when asked.
    reads: HashMap<Vec<u8>, u64>,
    /// index -> (term, data) of every entry any node applied.
    applied: BTreeMap<u64, (u64, Vec<u8>)>,
    /// index -> the configuration after applying the configuration change
    /// at that index (index 0: the initial one). Every node applying the
    /// same committed prefix must arrive at the same configuration.
    confs: BTreeMap<u64, ConfState>,
    /// Voter sets (incoming, outgoing) that committed entries, and for each
    /// committed index the one of the leader that committed it: the entry
    /// must stay durable on a quorum of it.
    quorums: Vec<(Vec<u64>, Vec<u64>)>,
    commit_quorum: HashMap<u64, usize>,
    /// id -> the index of the configuration change that removed it.
    removal_index: BTreeMap<u64, u64>,
    /// Nodes that applied a configuration without themselves after being a
    /// member, with their term then: they never lead a later term.
    removed_applied: BTreeMap<u64, u64>,
}

fn msg_name(t: i32) -> String {
    match MessageType::try_from(t) {
        Ok(t) => format!("{t:?}"),
        Err(_) => format!("type{t}"),
    }
}

fn describe(m: &Message) -> String {
    let mut s = format!(
        "{} {}->{} t{} i{} lt{} c{}",
        msg_name(m.msg_type),
        m.from,
        m.to,
        m.term,
        m.index,
        m.log_term,
        m.commit
    );
    if !m.entries.is_empty() {
        let first = &m.entries[0];
        let last = &m.entries[m.entries.len() - 1];
        let _ = write!(
            s,
            " ents[{}..={} t{}..t{}]",
            first.index, last.index, first.term, last.term
        );
    }
    if let Some(snap) = &m.snapshot {
        let _ = write!(s, " snap(i{} t{})", snap.metadata.index, snap.metadata.term);
    }
    if m.reject {
        let _ = write!(s, " reject(hint {})", m.reject_hint);
    }
    s
}

impl Sim {
    fn new(seed: u64, variant: Variant, tracing: bool) -> Sim {
        let nodes = variant.nodes;
        let mut rng = Rng::new(seed ^ nodes.wrapping_mul(0xa076_1d64_78bd_642f));
        if variant.membership || variant.lease {
            // Other runs than the base variants' for the same seed.
            let salt = u64::from(variant.membership) | (u64::from(variant.lease) << 1);
            rng = Rng::new(rng.next_u64() ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
        let p = Params::random(&mut rng, variant);
        let ids: Vec<u64> = (1..=nodes).collect();
        let pool: Vec<u64> = if variant.membership {
            (1..=MAX_NODES.max(nodes)).collect()
        } else {
            ids.clone()
        };
        let initial = ConfState {
            voters: ids.clone(),
            ..Default::default()
        };
        let mut sim = Sim {
            p,
            variant,
            rng,
            ids: ids.clone(),
            pool,
            retired: BTreeSet::new(),
            final_phase: false,
            known_stall: None,
            strict: std::env::var("RINGRAFT_RANDOM_STRICT").is_ok(),
            handing_over: BTreeMap::new(),
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            cut: BTreeSet::new(),
            step: 0,
            next_data: 1,
            trace: VecDeque::new(),
            current: String::new(),
            stats: BTreeMap::new(),
            tracing: tracing || std::env::var("RINGRAFT_RANDOM_TRACE").is_ok(),
            print_trace: std::env::var("RINGRAFT_RANDOM_TRACE").is_ok(),
            verbose: std::env::var("RINGRAFT_RANDOM_VERBOSE").is_ok(),
            leaders: BTreeMap::new(),
            votes: HashMap::new(),
            entry_info: HashMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            reads: HashMap::new(),
            confs: BTreeMap::new(),
            quorums: vec![(ids.clone(), Vec::new())],
            commit_quorum: HashMap::new(),
            removal_index: BTreeMap::new(),
            removed_applied: BTreeMap::new(),
        };
        if variant.membership {
            sim.bootstrap(&ids);
        } else {
            sim.confs.insert(0, initial.clone());
            for &id in &ids {
                let storage = MemoryStorage::new_with_conf_state(initial.clone());
                sim.add_node(id, storage);
            }
        }
        sim
    }

    /// A running node `id` over `storage` (empty: a node joining later).
    fn add_node(&mut self, id: u64, storage: MemoryStorage) {
        let raw = RawNode::new(&self.p.config(id, 0, 0), storage.clone()).expect("new node");
        self.nodes.insert(
            id,
            SimNode {
                id,
                raw: Some(raw),
                disk: storage,
                unpersisted: VecDeque::new(),
                sm: StateMachine::new(),
                applied: 0,
                commit_seen: 0,
                leader_term_seen: 0,
                durable_hard_state: HardState::default(),
                incarnation: 0,
                raft_applied: 0,
                stopped: false,
            },
        );
        if !self.ids.contains(&id) {
            self.ids.push(id);
            self.ids.sort_unstable();
        }
    }

    /// Starts a new cluster of `voters` as etcd does: every node
    /// bootstraps the same configuration entries (committed at term 1),
    /// persists them and applies them before the run starts.
    fn bootstrap(&mut self, voters: &[u64]) {
        self.confs.insert(0, ConfState::default());
        for &id in voters {
            self.add_node(id, MemoryStorage::new());
            let raw = self.raw(id).expect("up");
            raw.bootstrap(voters).expect("bootstrap");
            let mut entries = Vec::new();
            let mut confs = Vec::new();
            while raw.has_ready() {
                let ready = raw.ready();
                raw.advance_append_async(&ready);
                assert!(ready.messages.is_empty() && ready.append_messages.is_empty());
                let store = raw.store_mut();
                store.append(&ready.entries).expect("append");
                if let Some(hs) = ready.hard_state {
                    store.set_hard_state(hs);
                }
                raw.on_persisted(ready.number);
                for entry in &ready.committed_entries {
                    let cc = decode_conf_change(entry)
                        .expect("decodes")
                        .expect("bootstrap entries are configuration changes");
                    let cs = raw
                        .apply_conf_change(&cc)
                        .expect("bootstrap change applies");
                    confs.push((entry.index, cs));
                    entries.push(entry.clone());
                }
                if let Some(last) = ready.committed_entries.last() {
                    raw.advance_apply(last.index);
                }
            }
            let hs = raw.store().hard_state();
            let node = self.nodes.get_mut(&id).expect("node");
            node.durable_hard_state = hs;
            node.commit_seen = hs.commit;
            node.applied = hs.commit;
            node.raft_applied = hs.commit;
            assert_eq!(entries.len(), voters.len(), "bootstrap entries applied");
            let mut prev_term = 0;
            for entry in &entries {
                let value = (entry.term, tagged(entry));
                node.sm.insert(entry.index, value.clone());
                self.applied.insert(entry.index, value.clone());
                self.committed.insert(entry.index, value.clone());
                self.commit_quorum.insert(entry.index, 0);
                self.entry_info
                    .insert((entry.index, entry.term), (prev_term, value.1));
                prev_term = entry.term;
            }
            // `bootstrap` installs the whole configuration at once, so
            // re-applying its entries returns the full one; a node replaying
            // the log from the start (one that joins later) arrives at the
            // first k voters after entry k.
            for (k, (index, cs)) in confs.into_iter().enumerate() {
                assert_eq!(cs.voters, voters, "node {id}: bootstrap configuration");
                let partial = ConfState {
                    voters: voters[..=k].to_vec(),
                    ..Default::default()
                };
                self.record_conf(id, index, partial);
            }
        }
    }

    fn log(&mut self, text: String) {
        if self.print_trace {
            eprintln!("#{} {text}", self.step);
        }
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("#{} {text}", self.step));
    }

    fn raw(&mut self, id: u64) -> Option<&mut RawNode<MemoryStorage>> {
        self.nodes.get_mut(&id).and_then(|n| n.raw.as_mut())
    }

    fn is_up(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.raw.is_some())
    }

    fn random_node(&mut self) -> u64 {
        self.ids[self.rng.index(self.ids.len())]
    }

    // -----------------------------------------------------------------------
    // Actions.

    fn pick_action(&mut self) -> Action {
        let any_down = self.nodes.values().any(|n| n.raw.is_none() && !n.stopped);
        let has_msgs = !self.in_flight.is_empty();
        // Processing (Readies, persistence, delivery) is much more frequent
        // than ticks, as in a real deployment, so that elections can finish
        // within an election timeout most of the time.
        let ready_nodes: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.raw.as_ref().is_some_and(|r| r.has_ready()))
            .map(|n| n.id)
            .collect();
        let persist_nodes: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.raw.is_some() && !n.unpersisted.is_empty())
            .map(|n| n.id)
            .collect();
        let f = self.p.fault_rate;
        let on = |cond: bool, weight: u64| if cond { weight } else { 0 };
        let persist = self.p.persist_weight;
        // Synchronized clocks: time passes as fast, but only for everyone at
        // once.
        let (tick_one, tick_all) = if self.p.sync_ticks {
            (0, (self.p.tick_weight / self.ids.len() as u64).max(1))
        } else {
            (self.p.tick_weight, 2)
        };
        let stoppable = self.stoppable_nodes();
        let weights: [(u64, u8); 21] = [
            (tick_one, 0),                                               // tick
            (tick_all, 1),                                               // tick all
            (16, 2),                                                     // propose
            (on(!self.p.sync_ticks, 1), 3),                              // campaign
            (on(!ready_nodes.is_empty(), 32), 4),                        // ready
            (on(!persist_nodes.is_empty(), persist), 5),                 // persist
            (on(!ready_nodes.is_empty(), persist / 2), 6),               // ready and persist
            (on(has_msgs, 80), 7),                                       // deliver
            (on(has_msgs, 4 * f), 8),                                    // drop
            (on(has_msgs, 4 * f), 9),                                    // duplicate
            (self.p.partition_weight, 10),                               // partition
            (self.p.partition_weight, 11),                               // one-way cut
            (on(!self.cut.is_empty(), self.p.heal_weight), 12),          // heal
            (self.p.crash_weight, 13),                                   // crash
            (on(any_down, 8), 14),                                       // restart
            (on(self.p.compaction, 6), 15),                              // compact
            (1, 16),                                                     // transfer leadership
            (1, 17),                                                     // forget leader
            (3, 18),                                                     // read index
            (self.p.conf_weight, 19),                                    // membership change
            (on(!stoppable.is_empty(), self.p.stop_removed_weight), 20), // stop removed
        ];
        let total: u64 = weights.iter().map(|w| w.0).sum();
        let mut roll = self.rng.below(total);
        let mut kind = 0;
        for (weight, k) in weights {
            if roll < weight {
                kind = k;
                break;
            }
            roll -= weight;
        }
        let msg_index = |sim: &mut Sim| {
            if !sim.rng.chance(sim.p.reorder.0, sim.p.reorder.1) {
                0
            } else {
                sim.rng.index(sim.in_flight.len())
            }
        };
        match kind {
            0 => Action::Tick(self.random_node()),
            1 => Action::TickAll,
            2 => Action::Propose(self.random_node()),
            3 => Action::Campaign(self.random_node()),
            4 => Action::Ready(ready_nodes[self.rng.index(ready_nodes.len())]),
            5 => {
                let id = persist_nodes[self.rng.index(persist_nodes.len())];
                let pending = self.nodes[&id].unpersisted.len();
                let count = 1 + self.rng.index(pending.max(1));
                Action::Persist(id, count)
            }
            6 => Action::ReadyAndPersist(ready_nodes[self.rng.index(ready_nodes.len())]),
            7 => Action::Deliver(msg_index(self)),
            8 => Action::Drop(msg_index(self)),
            9 => Action::Duplicate(msg_index(self)),
            10 => {
                let group: Vec<u64> = self
                    .ids
                    .clone()
                    .into_iter()
                    .filter(|_| self.rng.chance(1, 2))
                    .collect();
                Action::Partition(group)
            }
            11 => {
                let a = self.random_node();
                let b = self.random_node();
                Action::CutOneWay(a, b)
            }
            12 => Action::Heal,
            13 => {
                // Leaders and nodes with unpersisted Readies lose the most
                // interesting state.
                let leaders: Vec<u64> = self
                    .nodes
                    .values()
                    .filter(|n| {
                        n.raw
                            .as_ref()
                            .is_some_and(|r| r.raft.state == StateRole::Leader)
                    })
                    .map(|n| n.id)
                    .collect();
                // Nodes that know entries are committed which they have not
                // made durable themselves.
                let at_risk: Vec<u64> = self
                    .nodes
                    .values()
                    .filter(|n| {
                        n.raw.as_ref().is_some_and(|r| {
                            let log = &r.raft.raft_log;
                            log.committed >= log.unstable.offset
                        })
                    })
                    .map(|n| n.id)
                    .collect();
                let mut choices = vec![leaders, persist_nodes.clone(), at_risk, self.ids.clone()];
                if self.variant.membership {
                    // Members of a joint configuration (crash-restart in
                    // the middle of a joint change).
                    let joint: Vec<u64> = self
                        .nodes
                        .values()
                        .filter_map(|n| n.raw.as_ref())
                        .filter(|r| r.raft.trk.config().voters.is_joint())
                        .flat_map(|r| r.raft.trk.config().voters.ids())
                        .filter(|id| self.is_up(*id))
                        .collect();
                    choices.push(joint);
                }
                let choice = &choices[self.rng.index(choices.len())];
                if choice.is_empty() {
                    Action::Crash(self.random_node())
                } else {
                    Action::Crash(choice[self.rng.index(choice.len())])
                }
            }
            14 => {
                let down: Vec<u64> = self
                    .nodes
                    .values()
                    .filter(|n| n.raw.is_none() && !n.stopped)
                    .map(|n| n.id)
                    .collect();
                Action::Restart(down[self.rng.index(down.len())])
            }
            15 => Action::Compact(self.random_node()),
            16 => {
                let at = self.random_node();
                let to = self.random_node();
                Action::TransferLeader(at, to)
            }
            17 => Action::ForgetLeader(self.random_node()),
            18 => Action::ReadIndex(self.random_node()),
            19 => self.random_conf_change(),
            _ => Action::StopRemoved(stoppable[self.rng.index(stoppable.len())]),
        }
    }

    /// Running nodes whose removal is committed.
    /// Running nodes whose removal every member of the newest
    /// configuration knows is committed (its durable commit index covers
    /// it). Stopping a removed node earlier can stall the group for good,
    /// in etcd as here: a member that has not yet applied the removal may
    /// need the removed node's vote.
    fn stoppable_nodes(&self) -> Vec<u64> {
        let Some((_, newest)) = self.confs.iter().next_back() else {
            return Vec::new();
        };
        let members = members(newest);
        self.removal_index
            .iter()
            .filter(|&(&id, &index)| {
                self.is_up(id)
                    && members.iter().all(|m| {
                        self.nodes
                            .get(m)
                            .is_some_and(|n| n.durable_hard_state.commit >= index)
                    })
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// A membership change proposed at a node, computed from that node's
    /// view of the configuration: usually at a leader (any change that
    /// keeps a voter), sometimes at another node, which forwards it (then
    /// only additions of voters, which apply to whatever configuration the
    /// leader has: the leader accepts a change without looking at its
    /// content, so a removal or demotion computed from a stale view could
    /// remove the last voter).
    fn random_conf_change(&mut self) -> Action {
        let leaders: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| {
                n.raw
                    .as_ref()
                    .is_some_and(|r| r.raft.state == StateRole::Leader)
            })
            .map(|n| n.id)
            .collect();
        let at_leader = !leaders.is_empty() && self.rng.chance(3, 4);
        let at = if at_leader {
            leaders[self.rng.index(leaders.len())]
        } else {
            self.random_node()
        };
        let view = match self.nodes[&at].raw.as_ref() {
            Some(raw) => raw.raft.conf_state(),
            None => ConfState::default(),
        };
        let additions_only = !at_leader;
        let transition = |t: ConfChangeTransition| t as i32;
        if !view.voters_outgoing.is_empty() && self.rng.chance(3, 4) {
            // Joint: leave it (explicitly; also for auto-leave).
            return Action::ConfChange(
                at,
                ConfChangeV2 {
                    transition: transition(ConfChangeTransition::ConfChangeTransitionAuto),
                    ..Default::default()
                },
                false,
            );
        }
        let mut voters: BTreeSet<u64> = view.voters.iter().copied().collect();
        let mut learners: BTreeSet<u64> = view.learners.iter().copied().collect();
        let all_members = members(&view);
        let mut used = BTreeSet::new();
        let count = if self.rng.chance(2, 3) {
            1
        } else {
            2 + self.rng.index(2)
        };
        let mut changes = Vec::new();
        for _ in 0..count {
            let spare: Vec<u64> = self
                .pool
                .iter()
                .copied()
                .filter(|id| {
                    !all_members.contains(id) && !self.retired.contains(id) && !used.contains(id)
                })
                .collect();
            let free_voters: Vec<u64> = voters.difference(&used).copied().collect();
            // A removed node's id is never reused (a stale view may still
            // show it as a learner).
            let free_learners: Vec<u64> = learners
                .difference(&used)
                .copied()
                .filter(|id| !self.retired.contains(id))
                .collect();
            let mut kinds = Vec::new();
            if !spare.is_empty() {
                kinds.push(0); // add voter
                if !additions_only {
                    // From a stale view, a voter may look like a spare:
                    // adding it as a learner would demote it.
                    kinds.push(1); // add learner
                }
            }
            if !free_learners.is_empty() {
                kinds.push(2); // promote learner
            }
            if !additions_only && voters.len() > 1 && !free_voters.is_empty() {
                kinds.push(3); // demote voter
                kinds.push(4); // remove voter
            }
            if !additions_only && !free_learners.is_empty() {
                kinds.push(5); // remove learner
            }
            if kinds.is_empty() {
                break;
            }
            let kind = kinds[self.rng.index(kinds.len())];
            let pick = |rng: &mut Rng, list: &[u64]| list[rng.index(list.len())];
            let (change_type, id) = match kind {
                0 => (
                    ConfChangeType::ConfChangeAddNode,
                    pick(&mut self.rng, &spare),
                ),
                1 => (
                    ConfChangeType::ConfChangeAddLearnerNode,
                    pick(&mut self.rng, &spare),
                ),
                2 => (
                    ConfChangeType::ConfChangeAddNode,
                    pick(&mut self.rng, &free_learners),
                ),
                3 => (
                    ConfChangeType::ConfChangeAddLearnerNode,
                    pick(&mut self.rng, &free_voters),
                ),
                4 => (
                    ConfChangeType::ConfChangeRemoveNode,
                    pick(&mut self.rng, &free_voters),
                ),
                _ => (
                    ConfChangeType::ConfChangeRemoveNode,
                    pick(&mut self.rng, &free_learners),
                ),
            };
            used.insert(id);
            match change_type {
                ConfChangeType::ConfChangeAddNode => {
                    learners.remove(&id);
                    voters.insert(id);
                }
                ConfChangeType::ConfChangeAddLearnerNode => {
                    voters.remove(&id);
                    learners.insert(id);
                }
                _ => {
                    voters.remove(&id);
                    learners.remove(&id);
                }
            }
            changes.push(ConfChangeSingle {
                change_type: change_type as i32,
                node_id: id,
            });
        }
        if changes.is_empty() {
            return Action::ReadIndex(at);
        }
        let transitions = [
            ConfChangeTransition::ConfChangeTransitionAuto,
            ConfChangeTransition::ConfChangeTransitionJointImplicit,
            ConfChangeTransition::ConfChangeTransitionJointExplicit,
        ];
        let chosen = if changes.len() == 1 && self.rng.chance(2, 3) {
            ConfChangeTransition::ConfChangeTransitionAuto
        } else {
            transitions[self.rng.index(transitions.len())]
        };
        let simple = changes.len() == 1 && chosen == ConfChangeTransition::ConfChangeTransitionAuto;
        let v1 = simple && self.rng.chance(1, 4);
        Action::ConfChange(
            at,
            ConfChangeV2 {
                transition: transition(chosen),
                changes,
                context: Vec::new(),
            },
            v1,
        )
    }

    /// Performs `action`; returns the nodes whose state it may have changed.
    fn perform(&mut self, action: Action) -> Vec<u64> {
        if self.tracing {
            self.current = format!("{action:?}");
        }
        if self.verbose
            && self.nodes.values().any(|n| {
                n.raw
                    .as_ref()
                    .is_some_and(|r| r.raft.state == StateRole::Leader)
            })
        {
            *self.stats.entry("steps with a leader".into()).or_default() += 1;
        }
        match action {
            Action::Tick(id) => {
                if let Some(raw) = self.raw(id) {
                    raw.tick();
                }
                note!(self, "tick {id}");
                vec![id]
            }
            Action::TickAll => {
                for id in self.ids.clone() {
                    if let Some(raw) = self.raw(id) {
                        raw.tick();
                    }
                }
                note!(self, "tick all");
                self.ids.clone()
            }
            Action::Propose(id) => {
                let data = self.next_data.to_le_bytes().to_vec();
                self.next_data += 1;
                let result = self.raw(id).map(|raw| raw.propose(data));
                if self.verbose {
                    let key = format!(
                        "propose {:?}",
                        result.as_ref().map(|r| r
                            .as_ref()
                            .map_err(|e| format!("{e}").chars().take(30).collect::<String>()))
                    );
                    *self.stats.entry(key).or_default() += 1;
                }
                note!(self, "propose at {id}: {result:?}");
                vec![id]
            }
            Action::Campaign(id) => {
                let result = self.raw(id).map(|raw| raw.campaign());
                note!(self, "campaign {id}: {result:?}");
                vec![id]
            }
            Action::Ready(id) => {
                let text = self.hand_out_ready(id).unwrap_or_default();
                note!(self, "ready {id}: {text}");
                vec![id]
            }
            Action::Persist(id, count) => {
                let text = self.persist(id, count);
                note!(self, "persist {id} x{count}: {text}");
                vec![id]
            }
            Action::ReadyAndPersist(id) => {
                let mut texts = Vec::new();
                for _ in 0..8 {
                    let Some(text) = self.hand_out_ready(id) else {
                        break;
                    };
                    texts.push(text);
                }
                let count = self.nodes[&id].unpersisted.len();
                let text = self.persist(id, count);
                note!(self, "ready+persist {id}: [{}] {text}", texts.join("; "));
                vec![id]
            }
            Action::Deliver(index) => {
                let m = self.in_flight.remove(index);
                let to = m.to;
                let text = if self.tracing {
                    describe(&m)
                } else {
                    String::new()
                };
                let outcome = self.deliver(m);
                note!(self, "deliver {text}: {outcome}");
                vec![to]
            }
            Action::Drop(index) => {
                let m = self.in_flight.remove(index);
                note!(self, "drop {}", describe(&m));
                let from = m.from;
                self.lose(m);
                vec![from]
            }
            Action::Duplicate(index) => {
                let m = self.in_flight[index].clone();
                note!(self, "duplicate {}", describe(&m));
                self.in_flight.push(m);
                vec![]
            }
            Action::Partition(group) => {
                self.cut.clear();
                for &a in &self.ids {
                    for &b in &self.ids {
                        if group.contains(&a) != group.contains(&b) {
                            self.cut.insert((a, b));
                        }
                    }
                }
                note!(self, "partition {group:?} | rest");
                vec![]
            }
            Action::CutOneWay(a, b) => {
                if a != b {
                    self.cut.insert((a, b));
                }
                note!(self, "cut {a}->{b}");
                vec![]
            }
            Action::Heal => {
                self.cut.clear();
                note!(self, "heal");
                vec![]
            }
            Action::Crash(id) => {
                self.crash(id);
                vec![]
            }
            Action::Restart(id) => {
                self.restart(id);
                vec![id]
            }
            Action::Compact(id) => {
                self.compact(id, false);
                vec![id]
            }
            Action::TransferLeader(at, to) => {
                if let Some(raw) = self.raw(at) {
                    raw.transfer_leader(to);
                }
                note!(self, "transfer leadership at {at} to {to}");
                vec![at]
            }
            Action::ReadIndex(id) => {
                let context = format!("read-{}", self.next_data).into_bytes();
                self.next_data += 1;
                // Linearizable: the answer must cover every commit
                // acknowledged before the request. A commit is acknowledged
                // only once some node knows it committed, so the highest
                // index any node knows committed bounds them all.
                let floor = self.committed.keys().next_back().copied().unwrap_or(0);
                self.reads.insert(context.clone(), floor);
                let result = self.raw(id).map(|raw| {
                    let result = raw.read_index(context);
                    (result, !raw.raft.read_states.is_empty())
                });
                if self.verbose && result.as_ref().is_some_and(|r| r.1) {
                    // Answered at once: a lease read (or a single voter).
                    *self
                        .stats
                        .entry("reads answered at once".into())
                        .or_default() += 1;
                }
                let result = result.map(|r| r.0);
                note!(self, "read index at {id} (floor {floor}): {result:?}");
                vec![id]
            }
            Action::ForgetLeader(id) => {
                if let Some(raw) = self.raw(id) {
                    raw.forget_leader();
                }
                note!(self, "forget leader at {id}");
                vec![id]
            }
            Action::ConfChange(at, cc, v1) => {
                self.propose_conf_change(at, &cc, v1);
                vec![at]
            }
            Action::StopRemoved(id) => {
                self.crash(id);
                self.nodes.get_mut(&id).expect("node").stopped = true;
                note!(self, "stop removed node {id}");
                vec![]
            }
        }
    }

    /// Proposes `cc` at `at`. Nodes it adds for the first time start with
    /// an empty storage and learn the configuration from the log.
    fn propose_conf_change(&mut self, at: u64, cc: &ConfChangeV2, v1: bool) -> bool {
        for change in &cc.changes {
            let id = change.node_id;
            if change.change_type != ConfChangeType::ConfChangeRemoveNode as i32
                && !self.nodes.contains_key(&id)
            {
                self.add_node(id, MemoryStorage::new());
                note!(self, "start node {id} (empty, to join)");
            }
        }
        let Some(raw) = self.raw(at) else {
            note!(self, "conf change at {at}: down");
            return false;
        };
        let at_leader = raw.raft.state == StateRole::Leader;
        let result = if v1 {
            let single = &cc.changes[0];
            raw.propose_conf_change_v1(&ConfChange {
                id: 0,
                change_type: single.change_type,
                node_id: single.node_id,
                context: Vec::new(),
            })
        } else {
            raw.propose_conf_change(cc)
        };
        if result.is_ok() && at_leader {
            for change in &cc.changes {
                if change.change_type == ConfChangeType::ConfChangeRemoveNode as i32 {
                    self.retired.insert(change.node_id);
                }
            }
        }
        if self.verbose {
            let key = format!(
                "conf change {}",
                match &result {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("{e}"),
                }
            );
            *self.stats.entry(key).or_default() += 1;
        }
        note!(
            self,
            "conf change at {at}{}: {} {:?}: {result:?}",
            if at_leader { " (leader)" } else { "" },
            if v1 { "v1" } else { "v2" },
            describe_conf_change(cc)
        );
        result.is_ok()
    }

    /// Hands out one Ready at `id` if there is one; its summary for the
    /// trace (empty when not tracing).
    fn hand_out_ready(&mut self, id: u64) -> Option<String> {
        let early = self.p.early_append;
        let tracing = self.tracing;
        let node = self.nodes.get_mut(&id).expect("node");
        let raw = node.raw.as_mut()?;
        if !raw.has_ready() {
            return None;
        }
        let mut ready = raw.ready();
        raw.advance_append_async(&ready);
        let text = if tracing {
            summarize_ready(&ready)
        } else {
            String::new()
        };
        let read_states: Vec<(Vec<u8>, u64)> = ready
            .read_states
            .iter()
            .map(|rs| (rs.request_ctx.clone(), rs.index))
            .collect();
        let early_messages = if early {
            std::mem::take(&mut ready.append_messages)
        } else {
            Vec::new()
        };
        node.unpersisted.push_back(ready);
        self.send(early_messages);
        let text = Some(text);
        for (context, index) in read_states {
            if self.verbose {
                *self.stats.entry("read states".into()).or_default() += 1;
            }
            let name = String::from_utf8_lossy(&context).into_owned();
            let Some(&floor) = self.reads.get(&context) else {
                panic!("node {id}: read state for unknown request {name:?}");
            };
            assert!(
                index >= floor,
                "linearizability: node {id} answers read {name:?} with index {index}, \
                 but {floor} was committed before the read was requested"
            );
            let committed = self.committed.keys().next_back().copied().unwrap_or(0);
            let commit = self.nodes[&id]
                .raw
                .as_ref()
                .map_or(0, |r| r.raft.raft_log.committed);
            assert!(
                index <= committed.max(commit),
                "node {id} answers read {name:?} with index {index} beyond anything committed \
                 ({committed})"
            );
        }
        text
    }

    /// Persists the oldest `count` handed-out Readies at `id`, acknowledges
    /// them, applies their committed entries and sends their messages.
    fn persist(&mut self, id: u64, count: usize) -> String {
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raw) = node.raw.as_mut() else {
            return "down".to_string();
        };
        let count = count.min(node.unpersisted.len());
        if count == 0 {
            return "nothing".to_string();
        }
        let mut last_number = 0;
        let mut outgoing = Vec::new();
        let mut to_apply = Vec::new();
        for _ in 0..count {
            let ready = node.unpersisted.pop_front().expect("ready");
            let store = raw.store_mut();
            if let Some(snapshot) = &ready.snapshot {
                if let Err(error) = store.apply_snapshot(snapshot.clone()) {
                    panic!(
                        "node {id}: persisting Ready {}: storage refused its snapshot: {error}",
                        ready.number
                    );
                }
            }
            if let Err(error) = store.append(&ready.entries) {
                panic!(
                    "node {id}: persisting Ready {}: storage refused its entries: {error}",
                    ready.number
                );
            }
            if let Some(hs) = ready.hard_state {
                let old = node.durable_hard_state;
                assert!(
                    hs.term >= old.term,
                    "node {id}: persisted term went back from {} to {}",
                    old.term,
                    hs.term
                );
                assert!(
                    !(hs.term == old.term && old.vote != 0 && hs.vote != old.vote),
                    "node {id}: persisted vote changed within term {}: {} -> {}",
                    hs.term,
                    old.vote,
                    hs.vote
                );
                assert!(
                    hs.commit >= old.commit,
                    "node {id}: persisted commit went back from {} to {}",
                    old.commit,
                    hs.commit
                );
                store.set_hard_state(hs);
                node.durable_hard_state = hs;
            }
            last_number = ready.number;
            outgoing.extend(ready.append_messages);
            outgoing.extend(ready.messages);
            to_apply.push((ready.snapshot, ready.committed_entries));
        }
        raw.on_persisted(last_number);
        self.record_commits(id);
        let mut applied_text = String::new();
        // For each batch, the newest snapshot of a later Ready of this
        // persist (the core installed it when it received it).
        let mut later_snapshots = vec![0; to_apply.len()];
        let mut newest = 0;
        for (i, (snapshot, _)) in to_apply.iter().enumerate().rev() {
            later_snapshots[i] = newest;
            if let Some(snapshot) = snapshot {
                newest = newest.max(snapshot.metadata.index);
            }
        }
        for ((snapshot, entries), later_snapshot) in to_apply.into_iter().zip(later_snapshots) {
            if let Some(snapshot) = snapshot {
                self.apply_snapshot(id, &snapshot);
                if self.tracing {
                    let _ = write!(applied_text, " snap@{}", snapshot.metadata.index);
                }
            }
            if !entries.is_empty() {
                let last = entries[entries.len() - 1].index;
                for entry in &entries {
                    self.apply_entry(id, entry, later_snapshot);
                }
                if let Some(raw) = self.raw(id) {
                    raw.advance_apply(last);
                }
                if self.tracing {
                    let _ = write!(applied_text, " applied..={last}");
                }
            }
        }
        let sent = outgoing.len();
        self.send(outgoing);
        if !self.tracing {
            return String::new();
        }
        format!("up to #{last_number}, sent {sent}{applied_text}")
    }

    /// Applies a committed entry handed out by `id`'s core: to the state
    /// machine (unless it is re-applied after a restart, when it must equal
    /// what was applied before) and, for a configuration change, to the
    /// core.
    fn apply_entry(&mut self, id: u64, entry: &Entry, later_snapshot: u64) {
        let value = (entry.term, tagged(entry));
        let node = self.nodes.get_mut(&id).expect("node");
        assert_eq!(
            entry.index,
            node.raft_applied + 1,
            "node {id}: the core hands out entry {} to apply after {}",
            entry.index,
            node.raft_applied
        );
        node.raft_applied = entry.index;
        if entry.index <= node.applied {
            // Re-applied from the log after a restart from the snapshot.
            assert_eq!(
                node.sm.get(&entry.index),
                Some(&value),
                "node {id}: re-applied entry {} (term {}) differs from the one it applied",
                entry.index,
                entry.term
            );
        } else {
            assert_eq!(
                entry.index,
                node.applied + 1,
                "node {id} applies entry {} after applied index {}",
                entry.index,
                node.applied
            );
            match self.committed.get(&entry.index) {
                Some(c) => assert_eq!(
                    c, &value,
                    "node {id} applies entry {} (term {}) that differs from the committed one \
                     (term {})",
                    entry.index, entry.term, c.0
                ),
                None => panic!(
                    "node {id} applies entry {} (term {}) that no node reported committed",
                    entry.index, entry.term
                ),
            }
            match self.applied.get(&entry.index) {
                Some(a) => assert_eq!(
                    a, &value,
                    "node {id} applies entry {} (term {}), another node applied term {} there",
                    entry.index, entry.term, a.0
                ),
                None => {
                    self.applied.insert(entry.index, value.clone());
                }
            }
            node.sm.insert(entry.index, value);
            node.applied = entry.index;
        }
        let commit = node.raw.as_ref().map_or(0, |r| r.raft.raft_log.committed);
        assert!(
            entry.index <= commit,
            "node {id} applied {} beyond its commit index {commit}",
            entry.index
        );
        if entry.entry_type != EntryType::EntryNormal as i32 {
            self.apply_conf_entry(id, entry, later_snapshot);
        }
    }

    /// The index of the newest snapshot `id`'s core has installed (on
    /// receipt) that the driver has not yet persisted and applied, or 0.
    fn restored_snapshot_index(&self, id: u64, later_snapshot: u64) -> u64 {
        let node = &self.nodes[&id];
        let unstable = node
            .raw
            .as_ref()
            .and_then(|r| r.raft.raft_log.unstable.snapshot.as_ref())
            .map_or(0, |s| s.metadata.index);
        let handed_out = node
            .unpersisted
            .iter()
            .filter_map(|r| r.snapshot.as_ref())
            .map(|s| s.metadata.index)
            .max()
            .unwrap_or(0);
        unstable.max(handed_out).max(later_snapshot)
    }

    /// Applies the committed configuration change `entry` to `id`'s core,
    /// which must accept it, and checks the configuration it leads to.
    fn apply_conf_entry(&mut self, id: u64, entry: &Entry, later_snapshot: u64) {
        let mut cc = match decode_conf_change(entry) {
            Ok(Some(cc)) => cc,
            other => panic!(
                "node {id}: committed configuration change at {} does not decode: {other:?}",
                entry.index
            ),
        };
        // As etcd's server validates a change when it applies it: a removed
        // node's id is never added again (a forwarded proposal may arrive
        // after the removal); node id 0 makes that change a no-op. Every
        // node decides alike: it depends only on the committed prefix.
        for change in &mut cc.changes {
            if change.change_type != ConfChangeType::ConfChangeRemoveNode as i32
                && self
                    .removal_index
                    .get(&change.node_id)
                    .is_some_and(|&removed| removed < entry.index)
            {
                change.node_id = 0;
            }
        }
        let restored = self.restored_snapshot_index(id, later_snapshot);
        assert!(
            restored < entry.index,
            "node {id}: the configuration change at {} ({}) is applied after the core \
             installed the snapshot at {restored}, whose configuration already includes it",
            entry.index,
            describe_conf_change(&cc)
        );
        let raw = self.raw(id).expect("up");
        let cs = match raw.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(error) => panic!(
                "node {id}: committed configuration change at {} ({}) refused when applied: \
                 {error}",
                entry.index,
                describe_conf_change(&cc)
            ),
        };
        let actual = raw.raft.conf_state();
        assert_eq!(
            cs, actual,
            "node {id}: apply_conf_change returned a configuration the core does not have"
        );
        note!(
            self,
            "node {id} applies conf change at {}: {} -> {}",
            entry.index,
            describe_conf_change(&cc),
            describe_conf_state(&cs)
        );
        self.record_conf(id, entry.index, cs);
        // The leader may commit more under the new configuration.
        self.record_commits(id);
    }

    /// The configuration after applying the committed log up to `index`.
    fn conf_at(&self, index: u64) -> &ConfState {
        self.confs
            .range(..=index)
            .next_back()
            .map(|(_, cs)| cs)
            .expect("initial configuration")
    }

    /// Records that `id` arrived at `cs` by applying the change at `index`:
    /// every node must arrive at the same configuration there.
    fn record_conf(&mut self, id: u64, index: u64, cs: ConfState) {
        if let Some(known) = self.confs.get(&index) {
            assert_eq!(
                known,
                &cs,
                "configuration divergence: node {id} has {} after applying the change at {index}, \
                 another node had {}",
                describe_conf_state(&cs),
                describe_conf_state(known)
            );
        } else {
            let before = members(self.conf_at(index - 1));
            let after = members(&cs);
            for &gone in before.difference(&after) {
                self.removal_index.entry(gone).or_insert(index);
            }
            for added in after.difference(&before) {
                assert!(
                    !self.removal_index.contains_key(added),
                    "node {added} is a member again at {index} after its removal"
                );
            }
            self.confs.insert(index, cs.clone());
        }
        if !members(&cs).contains(&id) && self.removal_index.get(&id).is_some_and(|&i| i <= index) {
            let term = self.nodes[&id].raw.as_ref().map_or(0, |r| r.raft.term);
            self.removed_applied.entry(id).or_insert(term);
        }
    }

    fn apply_snapshot(&mut self, id: u64, snapshot: &ringraft::raftpb::Snapshot) {
        let index = snapshot.metadata.index;
        let term = snapshot.metadata.term;
        let sm = decode_state_machine(&snapshot.data);
        self.check_state_machine(id, &sm, index, "installed snapshot");
        if let Some(c) = self.committed.get(&index) {
            assert_eq!(
                c.0, term,
                "node {id}: snapshot at {index} has term {term}, committed entry has {}",
                c.0
            );
        }
        let expected = self.conf_at(index);
        assert_eq!(
            &snapshot.metadata.conf_state,
            expected,
            "node {id}: snapshot at {index} carries configuration {}, the log's at {index} is {}",
            describe_conf_state(&snapshot.metadata.conf_state),
            describe_conf_state(expected)
        );
        let node = self.nodes.get_mut(&id).expect("node");
        assert!(
            index > node.applied,
            "node {id} installs snapshot at {index} at or below its applied index {}",
            node.applied
        );
        assert!(
            index > node.raft_applied,
            "node {id} installs snapshot at {index} at or below the index its core applied {}",
            node.raft_applied
        );
        node.sm = sm;
        node.applied = index;
        node.raft_applied = index;
    }

    /// A state machine rebuilt from snapshot data must hold exactly the
    /// entries 1..=index that the cluster applied.
    fn check_state_machine(&self, id: u64, sm: &StateMachine, index: u64, what: &str) {
        assert_eq!(
            sm.len() as u64,
            index,
            "node {id}: {what} at {index} holds {} entries",
            sm.len()
        );
        for (i, value) in sm {
            assert!(*i >= 1 && *i <= index, "node {id}: {what} holds index {i}");
            match self.applied.get(i) {
                Some(a) => assert_eq!(
                    a, value,
                    "node {id}: {what} at {index}: entry {i} differs from the applied one"
                ),
                None => panic!("node {id}: {what} at {index}: entry {i} was never applied"),
            }
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if m.msg_type == MessageType::MsgVoteResp as i32 && !m.reject {
                let previous = self.votes.insert((m.from, m.term), m.to);
                if let Some(previous) = previous {
                    assert_eq!(
                        previous, m.to,
                        "node {} granted its vote in term {} to both {previous} and {}",
                        m.from, m.term, m.to
                    );
                }
            }
            self.in_flight.push(m);
        }
    }

    /// Delivers `m` (or loses it on a cut link or at a crashed node); the
    /// outcome for the trace (empty when not tracing).
    fn deliver(&mut self, m: Message) -> String {
        if self.cut.contains(&(m.from, m.to)) {
            self.lose(m);
            return "cut".to_string();
        }
        if !self.is_up(m.to) {
            self.lose(m);
            return "recipient down".to_string();
        }
        if self.p.drop_from_removed
            && !self.final_phase
            && self
                .removal_index
                .get(&m.from)
                .is_some_and(|&index| index <= self.nodes[&m.to].applied)
        {
            // etcd's transport refuses messages from a removed member.
            self.lose(m);
            return "from a removed node".to_string();
        }
        let from = m.from;
        let to = m.to;
        let is_snapshot = m.msg_type == MessageType::MsgSnap as i32;
        if self.verbose {
            *self
                .stats
                .entry(format!("deliver {}", msg_name(m.msg_type)))
                .or_default() += 1;
        }
        let result = self.raw(to).expect("up").step(m);
        if is_snapshot && let Some(raw) = self.raw(from) {
            raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        if !self.tracing {
            return String::new();
        }
        format!("{result:?}")
    }

    /// A message is lost: the transport tells the sender what it would.
    fn lose(&mut self, m: Message) {
        let report_unreachable = self.rng.chance(1, 2);
        let Some(raw) = self.raw(m.from) else {
            return;
        };
        if m.msg_type == MessageType::MsgSnap as i32 {
            raw.report_snapshot(m.to, SnapshotStatus::Failure);
        } else if m.msg_type == MessageType::MsgApp as i32 && report_unreachable {
            raw.report_unreachable(m.to);
        }
    }

    fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raw) = node.raw.take() else {
            note!(self, "crash {id}: already down");
            return;
        };
        node.disk = raw.store().clone();
        let lost = node.unpersisted.len();
        node.unpersisted.clear();
        note!(self, "crash {id} (lost {lost} unpersisted Readies)");
    }

    fn restart(&mut self, id: u64) {
        let rebuild_sm = self.rng.chance(1, 3);
        // etcd's way: restart the core from the snapshot and re-apply the
        // committed log after it (the state machine skips what it has).
        let reapply = self.variant.membership && self.rng.chance(1, 3);
        let node = self.nodes.get_mut(&id).expect("node");
        if node.raw.is_some() {
            return;
        }
        let snapshot = node.disk.snapshot(0).expect("snapshot");
        let snapshot_index = snapshot.metadata.index;
        if rebuild_sm {
            // The state machine was volatile: rebuild it from the snapshot.
            node.sm = decode_state_machine(&snapshot.data);
            node.applied = snapshot_index;
        }
        // The core starts from the snapshot's configuration: with
        // configuration changes between the snapshot and the applied index
        // it must re-apply them (etcd's servers restart with `applied` at
        // the snapshot), as only the application knows them.
        let changes_after_snapshot = node.applied > snapshot_index
            && node
                .disk
                .entries(snapshot_index + 1, node.applied + 1, NO_LIMIT)
                .expect("applied entries are durable")
                .iter()
                .any(|e| e.entry_type != EntryType::EntryNormal as i32);
        let config_applied = if reapply || changes_after_snapshot {
            snapshot_index
        } else {
            node.applied
        };
        node.raft_applied = config_applied;
        node.incarnation += 1;
        let config = self.p.config(id, config_applied, node.incarnation);
        let raw = match RawNode::new(&config, node.disk.clone()) {
            Ok(raw) => raw,
            Err(error) => panic!(
                "node {id} cannot restart from its persisted state (applied {}): {error}",
                node.applied
            ),
        };
        node.commit_seen = raw.raft.raft_log.committed;
        node.leader_term_seen = 0;
        node.raw = Some(raw);
        let (sm, applied) = (node.sm.clone(), node.applied);
        self.check_state_machine(id, &sm, applied, "restarted state machine");
        note!(
            self,
            "restart {id} (applied {applied}, state machine {})",
            if rebuild_sm { "rebuilt" } else { "kept" }
        );
        self.check_full_log(id);
    }

    /// Compacts the storage of `id` up to a random applied index.
    fn compact(&mut self, id: u64, everything: bool) {
        let pick = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raw) = node.raw.as_mut() else {
            return;
        };
        let store = raw.store();
        let first = store.first_index().expect("first index");
        let last = store.last_index().expect("last index");
        let upto = node
            .applied
            .min(node.raft_applied)
            .min(store.hard_state().commit)
            .min(last);
        if upto < first {
            note!(self, "compact {id}: nothing");
            return;
        }
        // Often everything applied, so that lagging peers need a snapshot.
        let index = if everything || pick % 2 == 0 {
            upto
        } else {
            first + (pick >> 1) % (upto - first + 1)
        };
        let data = encode_state_machine(&node.sm, index);
        // The configuration as of the snapshot's index (not the current one).
        let conf_state = self
            .confs
            .range(..=index)
            .next_back()
            .map(|(_, cs)| cs.clone())
            .expect("initial configuration");
        let store = raw.store_mut();
        store
            .create_snapshot(index, Some(conf_state), data)
            .expect("create snapshot");
        store.compact(index).expect("compact");
        note!(self, "compact {id} to {index}");
    }

    // -----------------------------------------------------------------------
    // Invariants.

    fn check_entry(&mut self, id: u64, index: u64, term: u64, prev_term: u64, data: &[u8]) {
        match self.entry_info.get(&(index, term)) {
            Some((p, d)) => {
                assert!(
                    *p == prev_term && d.as_slice() == data,
                    "log matching: node {id} has entry {index} of term {term} after term \
                     {prev_term} with data {data:?}; elsewhere it follows term {p} with data {d:?}"
                );
            }
            None => {
                self.entry_info
                    .insert((index, term), (prev_term, data.to_vec()));
            }
        }
    }

    fn check_committed_entry(&self, id: u64, index: u64, term: u64, data: &[u8]) {
        if let Some((t, d)) = self.committed.get(&index) {
            assert!(
                *t == term && d.as_slice() == data,
                "committed entry {index} (term {t}) differs on node {id} (term {term}) \
                 at or below its commit index"
            );
        }
    }

    /// Records the entries newly covered by `id`'s commit index.
    fn record_commits(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raw) = node.raw.as_ref() else {
            return;
        };
        let log = &raw.raft.raft_log;
        let commit = log.committed;
        if commit <= node.commit_seen {
            return;
        }
        let low = (node.commit_seen + 1).max(log.first_index());
        node.commit_seen = commit;
        if low > commit {
            return;
        }
        let entries = match log.slice(low, commit + 1, NO_LIMIT) {
            Ok(entries) => entries,
            Err(error) => {
                panic!("node {id}: committed entries [{low}, {commit}] unreadable: {error}")
            }
        };
        // The leader that just committed these did so with a quorum of its
        // configuration (the driver records after every step, and after
        // every configuration change it applies).
        let quorum = (raw.raft.state == StateRole::Leader).then(|| {
            let voters = &raw.raft.trk.config().voters;
            let incoming: Vec<u64> = voters.incoming().iter().collect();
            let outgoing: Vec<u64> = voters.outgoing().iter().collect();
            (incoming, outgoing)
        });
        let quorum = quorum.map(
            |q| match self.quorums.iter().position(|known| *known == q) {
                Some(position) => position,
                None => {
                    self.quorums.push(q);
                    self.quorums.len() - 1
                }
            },
        );
        for e in entries {
            let data = tagged(&e);
            match self.committed.get(&e.index) {
                Some((t, d)) => assert!(
                    *t == e.term && *d == data,
                    "committed entry changed: index {} was committed with term {t}, \
                     node {id} now reports term {} committed",
                    e.index,
                    e.term
                ),
                None => {
                    if quorum.is_none() && self.verbose {
                        *self
                            .stats
                            .entry("commit first seen at a non-leader".into())
                            .or_default() += 1;
                    }
                    self.check_durable_majority(e.index, e.term, id, quorum);
                    if let Some(quorum) = quorum {
                        self.commit_quorum.insert(e.index, quorum);
                    }
                    self.committed.insert(e.index, (e.term, data));
                }
            }
        }
    }

    /// The term of `index` in what `node` has made durable: `Some(None)`
    /// when its snapshot covers the index, `None` when it does not have it.
    fn durable_term(node: &SimNode, index: u64) -> Option<Option<u64>> {
        let store = match node.raw.as_ref() {
            Some(raw) => raw.store(),
            None => &node.disk,
        };
        let first = store.first_index().expect("first index");
        if index < first {
            return Some(None);
        }
        store.term(index).ok().map(Some)
    }

    /// A committed entry is durable on a quorum (or covered by their
    /// snapshots) of the configuration that committed it (`quorum`, an
    /// index into `quorums`; unknown: of some configuration in force before
    /// it): the leader counts only persisted acknowledgements, its own
    /// included, and no durable copy is ever lost.
    fn check_durable_majority(&self, index: u64, term: u64, reporter: u64, quorum: Option<usize>) {
        let holders: BTreeSet<u64> = self
            .nodes
            .values()
            .filter(|n| match Sim::durable_term(n, index) {
                Some(Some(t)) => t == term,
                Some(None) => true,
                None => false,
            })
            .map(|n| n.id)
            .collect();
        let ok = match quorum {
            Some(q) => is_quorum(&holders, &self.quorums[q].0, &self.quorums[q].1),
            None => self.confs.range(..index).any(|(_, cs)| {
                !cs.voters.is_empty() && is_quorum(&holders, &cs.voters, &cs.voters_outgoing)
            }),
        };
        assert!(
            ok,
            "entry {index} (term {term}) is committed (reported by node {reporter}) but durable \
             only on {holders:?}, not a quorum of {}",
            match quorum {
                Some(q) => format!("{:?}&&{:?}", self.quorums[q].0, self.quorums[q].1),
                None => "any configuration before it".to_string(),
            }
        );
    }

    /// Checks the not-yet-durable tail of `id`'s log (the only part that can
    /// have changed since the last check).
    fn check_unstable(&mut self, id: u64) {
        let Some(raw) = self.nodes[&id].raw.as_ref() else {
            return;
        };
        let log = &raw.raft.raft_log;
        let entries = log.unstable_entries();
        let Some(first) = entries.first() else {
            return;
        };
        let prev_term = match log.term(first.index - 1) {
            Ok(t) => t,
            Err(error) => panic!(
                "node {id}: term of {} before the unstable entries unknown: {error}",
                first.index - 1
            ),
        };
        let commit = log.committed;
        let list: Vec<(u64, u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.index, e.term, tagged(e)))
            .collect();
        self.check_entries(id, prev_term, commit, &list);
    }

    fn check_entries(
        &mut self,
        id: u64,
        mut prev_term: u64,
        commit: u64,
        list: &[(u64, u64, Vec<u8>)],
    ) {
        for (index, term, data) in list {
            assert!(
                *term >= prev_term,
                "node {id}: log term decreases at {index}: {term} after {prev_term}"
            );
            self.check_entry(id, *index, *term, prev_term, data);
            if *index <= commit {
                self.check_committed_entry(id, *index, *term, data);
            }
            prev_term = *term;
        }
    }

    /// Checks the whole log of `id`.
    fn check_full_log(&mut self, id: u64) {
        let Some(raw) = self.nodes[&id].raw.as_ref() else {
            return;
        };
        let log = &raw.raft.raft_log;
        let first = log.first_index();
        let prev_term = match log.term(first - 1) {
            Ok(t) => t,
            Err(error) => panic!(
                "node {id}: term of compaction point {} unknown: {error}",
                first - 1
            ),
        };
        let commit = log.committed;
        let last = log.last_index();
        assert!(
            commit <= last,
            "node {id}: commit {commit} beyond last index {last}"
        );
        if first > 1
            && let Some((t, _)) = self.committed.get(&(first - 1))
        {
            assert_eq!(
                *t,
                prev_term,
                "node {id}: compaction point {} has term {prev_term}, committed term {t}",
                first - 1
            );
        }
        let list: Vec<(u64, u64, Vec<u8>)> = log
            .all_entries()
            .into_iter()
            .map(|e| (e.index, e.term, tagged(&e)))
            .collect();
        self.check_entries(id, prev_term, commit, &list);
    }

    /// Notes in the trace how removed or demoted leaders' hand-overs end.
    fn trace_handovers(&mut self) {
        let mut ended = Vec::new();
        for (&id, &term) in &self.handing_over {
            let now = self.nodes[&id]
                .raw
                .as_ref()
                .map(|r| (r.raft.state, r.raft.term));
            match now {
                Some((StateRole::Leader, t)) if t == term => {}
                None => ended.push((id, term, "crashed".to_string())),
                Some((_, t)) if t > term => ended.push((id, term, format!("moved to term {t}"))),
                Some(_) => ended.push((id, term, "stepped down".to_string())),
            }
        }
        for (id, term, how) in ended {
            self.handing_over.remove(&id);
            note!(self, "hand-over by {id} (term {term}) ended: {how}");
        }
    }

    /// Election safety and leader completeness for every running node.
    fn check_leaders(&mut self) {
        if self.tracing {
            self.trace_handovers();
        }
        let mut new_handovers = Vec::new();
        for id in self.ids.clone() {
            let node = &self.nodes[&id];
            let Some(raw) = node.raw.as_ref() else {
                continue;
            };
            if raw.raft.state != StateRole::Leader {
                continue;
            }
            let term = raw.raft.term;
            match self.leaders.get(&term) {
                Some(&other) => assert_eq!(
                    other, id,
                    "election safety: nodes {other} and {id} both led term {term}"
                ),
                None => {
                    self.leaders.insert(term, id);
                }
            }
            // A leader is a voter of its configuration, except a removed or
            // demoted one handing over: until a voter has all of its log.
            let voters = &raw.raft.trk.config().voters;
            if !voters.contains(id) {
                if self.tracing && !self.handing_over.contains_key(&id) {
                    new_handovers.push((id, term));
                }
                let last = raw.raft.raft_log.last_index();
                let caught_up: Vec<u64> = voters
                    .ids()
                    .into_iter()
                    .filter(|v| raw.raft.trk.get(*v).is_some_and(|pr| pr.matched >= last))
                    .collect();
                assert!(
                    caught_up.is_empty(),
                    "node {id} leads term {term} but is not a voter of its configuration {}, \
                     although voters {caught_up:?} have its whole log",
                    describe_conf_state(&raw.raft.conf_state())
                );
            }
            if let Some(&removed_in) = self.removed_applied.get(&id) {
                assert!(
                    term <= removed_in,
                    "node {id} leads term {term} after it applied its own removal in term \
                     {removed_in}"
                );
            }
            if node.leader_term_seen == term {
                continue;
            }
            // A new leader: its log holds every entry committed so far.
            let log = &raw.raft.raft_log;
            let first = log.first_index();
            for (&index, (t, _)) in &self.committed {
                if index < first {
                    continue;
                }
                let ours = log.term(index);
                assert!(
                    ours.as_ref().is_ok_and(|ours| ours == t),
                    "leader completeness: node {id} became leader of term {term} without \
                     committed entry {index} (term {t}); its term there: {ours:?}"
                );
            }
            self.nodes.get_mut(&id).expect("node").leader_term_seen = term;
        }
        for (id, term) in new_handovers {
            self.handing_over.insert(id, term);
            note!(self, "node {id} (term {term}) hands over");
        }
    }

    /// The core's configuration is the one the log leads to at the index
    /// up to which it has absorbed the log (unless it holds a snapshot the
    /// driver has not yet applied).
    fn check_conf(&self, id: u64) {
        let node = &self.nodes[&id];
        let Some(raw) = node.raw.as_ref() else {
            return;
        };
        if self.restored_snapshot_index(id, 0) > node.raft_applied {
            return;
        }
        let actual = raw.raft.conf_state();
        let expected = self.conf_at(node.raft_applied);
        assert_eq!(
            &actual,
            expected,
            "node {id}: its configuration {} differs from the log's at {} ({})",
            describe_conf_state(&actual),
            node.raft_applied,
            describe_conf_state(expected)
        );
    }

    fn check(&mut self, touched: &[u64]) {
        for &id in touched {
            self.record_commits(id);
            self.check_unstable(id);
            if let Some(raw) = self.nodes[&id].raw.as_ref() {
                let log = &raw.raft.raft_log;
                assert!(
                    log.committed <= log.last_index(),
                    "node {id}: commit {} beyond last index {}",
                    log.committed,
                    log.last_index()
                );
                assert!(
                    self.nodes[&id].applied <= log.committed,
                    "node {id}: applied {} beyond commit {}",
                    self.nodes[&id].applied,
                    log.committed
                );
            }
            if self.variant.membership {
                self.check_conf(id);
            }
        }
        self.check_leaders();
        if self.step % 64 == 0 {
            for id in self.ids.clone() {
                self.check_full_log(id);
            }
            for (&index, (term, _)) in &self.committed {
                let quorum = self.commit_quorum.get(&index).copied();
                self.check_durable_majority(index, *term, 0, quorum);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Driving.

    fn run(&mut self, steps: usize) {
        for step in 1..=steps {
            self.step = step;
            let action = self.pick_action();
            let touched = self.perform(action);
            self.check(&touched);
        }
        self.liveness();
    }

    /// Stops all faults and requires a leader and a final proposal applied
    /// on every member of the final configuration. Removed nodes whose
    /// removal every member knows committed are stopped, the others keep
    /// running; a joint configuration is left (explicitly if need be)
    /// before the final proposal.
    fn liveness(&mut self) {
        self.step += 1;
        self.cut.clear();
        self.final_phase = true;
        note!(self, "liveness: heal, restart everyone");
        for id in self.ids.clone() {
            if !self.is_up(id) && !self.nodes[&id].stopped {
                self.restart(id);
            }
        }
        for id in self.stoppable_nodes() {
            self.crash(id);
            self.nodes.get_mut(&id).expect("node").stopped = true;
            note!(self, "liveness: stop removed node {id}");
        }
        let running: Vec<u64> = self
            .ids
            .iter()
            .copied()
            .filter(|id| !self.nodes[id].stopped)
            .collect();
        let mut proposal: Option<(Vec<u8>, usize)> = None;
        let mut last_attempt: Option<usize> = None;
        for round in 0..LIVENESS_ROUNDS {
            self.step += 1;
            if self.tracing {
                self.current = format!("liveness round {round}: tick all");
            }
            for &id in &running {
                self.raw(id).expect("up").tick();
            }
            for _ in 0..100 {
                for &id in &running {
                    if self.tracing {
                        self.current = format!("liveness round {round}: ready+persist {id}");
                    }
                    let mut texts = Vec::new();
                    while let Some(text) = self.hand_out_ready(id) {
                        texts.push(text);
                    }
                    let count = self.nodes[&id].unpersisted.len();
                    let text = self.persist(id, count);
                    if !texts.is_empty() {
                        note!(self, "ready+persist {id}: [{}] {text}", texts.join("; "));
                    }
                }
                if self.in_flight.is_empty() {
                    break;
                }
                for m in std::mem::take(&mut self.in_flight) {
                    let text = if self.tracing {
                        describe(&m)
                    } else {
                        String::new()
                    };
                    if self.tracing {
                        self.current = format!("liveness round {round}: deliver {text}");
                    }
                    let outcome = self.deliver(m);
                    note!(self, "deliver {text}: {outcome}");
                }
            }
            self.check(&running);
            // One leader that every member of its configuration follows.
            let leaders: Vec<(u64, u64)> = self
                .nodes
                .values()
                .filter_map(|n| n.raw.as_ref())
                .filter(|r| r.raft.state == StateRole::Leader)
                .map(|r| (r.raft.id, r.raft.term))
                .collect();
            let Some(&(leader, term)) = leaders.iter().max_by_key(|l| l.1) else {
                continue;
            };
            let conf = self.nodes[&leader]
                .raw
                .as_ref()
                .expect("up")
                .raft
                .conf_state();
            let conf_members = members(&conf);
            if let Some((data, _)) = &proposal {
                let data = tagged_normal(data);
                let done = conf.voters_outgoing.is_empty()
                    && conf_members.iter().all(|id| {
                        let node = &self.nodes[id];
                        node.sm.values().any(|(_, d)| *d == data)
                            && node
                                .raw
                                .as_ref()
                                .is_some_and(|r| r.raft.conf_state() == conf)
                    });
                if done {
                    assert!(
                        conf.voters.contains(&leader),
                        "liveness: leader {leader} is not a voter of the final configuration"
                    );
                    return;
                }
            }
            let followed = conf_members.iter().all(|id| {
                self.nodes[id]
                    .raw
                    .as_ref()
                    .is_some_and(|r| r.raft.lead == leader && r.raft.term == term)
            });
            if round >= 300 && round % 100 == 0 && !self.strict {
                if let Some(stall) = self.demoted_stall() {
                    self.known_stall = Some(stall);
                    return;
                }
            }
            let stale = last_attempt.is_none_or(|at| round >= at + 50);
            if !(followed && stale) {
                continue;
            }
            if self.variant.membership {
                // A member that joined after the leader's last snapshot
                // refuses it (it is not in its configuration): snapshot again.
                self.compact(leader, true);
            }
            if !conf.voters_outgoing.is_empty() {
                let leave = ConfChangeV2::default();
                self.propose_conf_change(leader, &leave, false);
                last_attempt = Some(round);
                continue;
            }
            let data = format!("final-{}", self.next_data).into_bytes();
            self.next_data += 1;
            let result = self.raw(leader).expect("up").propose(data.clone());
            note!(
                self,
                "liveness: propose at leader {leader} (term {term}): {result:?}"
            );
            if result.is_ok() {
                proposal = Some((data, round));
                last_attempt = Some(round);
            }
        }
        if let Some(stall) = self.demoted_stall().filter(|_| !self.strict) {
            self.known_stall = Some(stall);
            return;
        }
        panic!(
            "liveness: no leader committed and applied a proposal on every member within \
             {LIVENESS_ROUNDS} fault-free rounds (proposal {:?})",
            proposal.map(|p| String::from_utf8_lossy(&p.0).into_owned())
        );
    }

    /// Recognizes the known permanent stall of apply-time membership (as in
    /// etcd): a voter that has the entry leaving a joint configuration (or
    /// removing or demoting a node) but has not learned that it committed
    /// still counts, in its own configuration, the nodes that change
    /// demoted or removed; those have applied it, so they never campaign,
    /// and they refuse their vote because their log is longer (entries the
    /// old leader appended and replicated to them, not to the voter). Only
    /// a leader that hands over until a voter has its whole log avoids it,
    /// and a crash or a lost leadership ends the hand-over early.
    ///
    /// Some(description) when every node that may campaign lacks a quorum,
    /// in its own configuration, of nodes whose logs are no more
    /// up-to-date than its own, and each is blocked by a node that may not
    /// campaign; everything is applied and quiet, so nothing can change.
    fn demoted_stall(&self) -> Option<String> {
        let up: Vec<&RawNode<MemoryStorage>> =
            self.nodes.values().filter_map(|n| n.raw.as_ref()).collect();
        let quiet = self.in_flight.is_empty()
            && self
                .nodes
                .values()
                .all(|n| n.raw.is_none() || n.unpersisted.is_empty())
            && up.iter().all(|r| {
                r.raft.raft_log.applied == r.raft.raft_log.committed
                    && !r.has_ready()
                    && r.raft.state != StateRole::Leader
            });
        if !quiet {
            return None;
        }
        let log = |r: &RawNode<MemoryStorage>| {
            (r.raft.raft_log.last_term(), r.raft.raft_log.last_index())
        };
        let may_campaign =
            |r: &RawNode<MemoryStorage>| r.raft.trk.config().voters.contains(r.raft.id);
        let mut blocked = Vec::new();
        for candidate in up.iter().filter(|r| may_campaign(r)) {
            let grant: BTreeSet<u64> = up
                .iter()
                .filter(|r| log(r) <= log(candidate))
                .map(|r| r.raft.id)
                .collect();
            let voters = &candidate.raft.trk.config().voters;
            let incoming: Vec<u64> = voters.incoming().iter().collect();
            let outgoing: Vec<u64> = voters.outgoing().iter().collect();
            if is_quorum(&grant, &incoming, &outgoing) {
                return None;
            }
            let blockers: Vec<u64> = up
                .iter()
                .filter(|r| voters.contains(r.raft.id) && !grant.contains(&r.raft.id))
                .map(|r| r.raft.id)
                .collect();
            blocked.push(format!(
                "voter {} lacks the votes of {blockers:?}",
                candidate.raft.id
            ));
        }
        // The most up-to-date logs are all on nodes that no longer
        // campaign (with every node a voter, the one with the longest log
        // would win: that would be a real liveness failure).
        let longest = up.iter().map(|r| log(r)).max()?;
        let holders: Vec<u64> = up
            .iter()
            .filter(|r| log(r) == longest)
            .map(|r| r.raft.id)
            .collect();
        if blocked.is_empty() || up.iter().any(|r| log(r) == longest && may_campaign(r)) {
            return None;
        }
        Some(format!(
            "{}; the longest logs are on {holders:?}, which no longer campaign",
            blocked.join(", ")
        ))
    }

    fn describe_nodes(&self) -> String {
        let mut out = String::new();
        if self.variant.membership {
            let _ = writeln!(out, "  configurations by index:");
            for (index, cs) in &self.confs {
                let _ = writeln!(out, "    {index}: {}", describe_conf_state(cs));
            }
        }
        for node in self.nodes.values() {
            match node.raw.as_ref() {
                None => {
                    let hs = node.disk.hard_state();
                    let _ = writeln!(
                        out,
                        "  node {}: DOWN (durable term {} vote {} commit {}, applied {})",
                        node.id, hs.term, hs.vote, hs.commit, node.applied
                    );
                }
                Some(raw) => {
                    let r = &raw.raft;
                    let log = &r.raft_log;
                    let _ = writeln!(
                        out,
                        "  node {}: {:?} term {} vote {} lead {} conf ({}) log [{}..={}] last term \
                         {} commit {} applied {} unpersisted {} log {:?}",
                        node.id,
                        r.state,
                        r.term,
                        r.vote,
                        r.lead,
                        describe_conf_state(&r.conf_state()),
                        log.first_index(),
                        log.last_index(),
                        log.last_term(),
                        log.committed,
                        node.applied,
                        node.unpersisted.len(),
                        log.all_entries()
                            .iter()
                            .map(|e| (e.index, e.term))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        out
    }
}

fn describe_conf_state(cs: &ConfState) -> String {
    let mut s = format!("voters {:?}", cs.voters);
    if !cs.voters_outgoing.is_empty() {
        let _ = write!(s, "&&{:?}", cs.voters_outgoing);
    }
    if !cs.learners.is_empty() {
        let _ = write!(s, " learners {:?}", cs.learners);
    }
    if !cs.learners_next.is_empty() {
        let _ = write!(s, " learners_next {:?}", cs.learners_next);
    }
    if cs.auto_leave {
        s.push_str(" auto-leave");
    }
    s
}

fn describe_conf_change(cc: &ConfChangeV2) -> String {
    if cc.changes.is_empty() {
        return "leave joint".to_string();
    }
    let changes: Vec<String> = cc
        .changes
        .iter()
        .map(|c| {
            let kind = match ConfChangeType::try_from(c.change_type) {
                Ok(ConfChangeType::ConfChangeAddNode) => "voter",
                Ok(ConfChangeType::ConfChangeAddLearnerNode) => "learner",
                Ok(ConfChangeType::ConfChangeRemoveNode) => "remove",
                _ => "other",
            };
            format!("{kind} {}", c.node_id)
        })
        .collect();
    let transition = match ConfChangeTransition::try_from(cc.transition) {
        Ok(ConfChangeTransition::ConfChangeTransitionAuto) => "auto",
        Ok(ConfChangeTransition::ConfChangeTransitionJointImplicit) => "implicit",
        Ok(ConfChangeTransition::ConfChangeTransitionJointExplicit) => "explicit",
        Err(_) => "?",
    };
    format!("[{}] {transition}", changes.join(", "))
}

fn summarize_ready(ready: &Ready) -> String {
    let mut s = format!("#{}", ready.number);
    if let Some(ss) = ready.soft_state {
        let _ = write!(s, " {:?}/lead {}", ss.role, ss.leader_id);
    }
    if let Some(hs) = ready.hard_state {
        let _ = write!(s, " hs(t{} v{} c{})", hs.term, hs.vote, hs.commit);
    }
    if let (Some(first), Some(last)) = (ready.entries.first(), ready.entries.last()) {
        let _ = write!(
            s,
            " ents[{}..={} t{}..t{}]",
            first.index, last.index, first.term, last.term
        );
    }
    if let Some(snap) = &ready.snapshot {
        let _ = write!(s, " snap(i{} t{})", snap.metadata.index, snap.metadata.term);
    }
    if let (Some(first), Some(last)) = (
        ready.committed_entries.first(),
        ready.committed_entries.last(),
    ) {
        let _ = write!(s, " commit[{}..={}]", first.index, last.index);
    }
    let msgs = ready.messages.len() + ready.append_messages.len();
    if msgs > 0 {
        let _ = write!(s, " msgs {msgs}");
    }
    s
}

// ---------------------------------------------------------------------------
// Test entry points.

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    match parsed {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".to_string()
    }
}

/// One run; on failure, the report (seed, how to reproduce, last actions).
/// `Ok(Some(stall))`: the run ended in the known stall of
/// [`Sim::demoted_stall`].
fn run_one(
    variant: Variant,
    seed: u64,
    steps: usize,
    test_name: &str,
) -> Result<Option<String>, String> {
    let nodes = variant.nodes;
    let mut sim = Sim::new(seed, variant, false);
    let mut result = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    if result.is_err() {
        // Runs are deterministic: run the seed again, this time keeping the
        // trace of actions for the report.
        let first = result;
        sim = Sim::new(seed, variant, true);
        result = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
        if result.is_ok() {
            let cause = first
                .err()
                .map(|p| panic_text(p.as_ref()))
                .unwrap_or_default();
            return Err(format!(
                "raft_random: {nodes}-node run with seed {seed} failed ({cause}) but passed when \
                 re-run with tracing: the run is not deterministic"
            ));
        }
    }
    if result.is_ok() && std::env::var("RINGRAFT_RANDOM_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: {} terms led, {} entries committed, {} applied, {} distinct entries; {:?} {:?}",
            sim.leaders.len(),
            sim.committed.len(),
            sim.applied.len(),
            sim.entry_info.len(),
            sim.p,
            sim.stats
        );
    }
    if let Err(payload) = result {
        // The actions do not depend on the number of steps: a failure at
        // step n of the random phase recurs with exactly n steps (the
        // shortest reproduction); one in the final liveness phase needs the
        // same number of steps.
        let steps_env = if sim.step <= steps {
            format!("RINGRAFT_RANDOM_STEPS={} ", sim.step)
        } else if steps != DEFAULT_STEPS {
            format!("RINGRAFT_RANDOM_STEPS={steps} ")
        } else {
            String::new()
        };
        let mut trace = String::new();
        for line in &sim.trace {
            let _ = writeln!(trace, "  {line}");
        }
        return Err(format!(
            "raft_random: {nodes}-node run with seed {seed} failed at step {step} ({current}): \
             {cause}\n\
             reproduce: RINGRAFT_SEED={seed} {steps_env}{strict_env}cargo test --release --test \
             raft_random -- --exact {test_name}\n\
             params: {params:?}\n\
             nodes:\n{nodes_text}\
             last actions:\n{trace}",
            step = sim.step,
            strict_env = if sim.strict {
                "RINGRAFT_RANDOM_STRICT=1 "
            } else {
                ""
            },
            current = sim.current,
            cause = panic_text(payload.as_ref()),
            params = sim.p,
            nodes_text = sim.describe_nodes(),
        ));
    }
    Ok(sim.known_stall.take().map(|stall| {
        format!(
            "seed {seed}: {stall} (reproduce: RINGRAFT_SEED={seed} RINGRAFT_RANDOM_STRICT=1 \
             cargo test --release --test raft_random -- --exact {test_name})"
        )
    }))
}

fn run_many(variant: Variant, default_runs: u64, test_name: &str) {
    let steps = env_u64("RINGRAFT_RANDOM_STEPS").map_or(DEFAULT_STEPS, |s| s as usize);
    if let Some(seed) = env_u64("RINGRAFT_SEED") {
        match run_one(variant, seed, steps, test_name) {
            Err(report) => panic!("{report}"),
            Ok(Some(stall)) => eprintln!("{test_name}: known stall, {stall}"),
            Ok(None) => {}
        }
        return;
    }
    // RINGRAFT_RANDOM_KEEP_GOING: run every seed and list the failing ones.
    let keep_going = std::env::var("RINGRAFT_RANDOM_KEEP_GOING").is_ok();
    let mut failures: Vec<(u64, String)> = Vec::new();
    let mut stalls: Vec<String> = Vec::new();
    let runs = env_u64("RINGRAFT_RANDOM_RUNS").unwrap_or(default_runs);
    let first = env_u64("RINGRAFT_RANDOM_FIRST_SEED").unwrap_or(0);
    let start = Instant::now();
    for seed in first..first + runs {
        match run_one(variant, seed, steps, test_name) {
            Err(report) => {
                if !keep_going {
                    panic!("{report}");
                }
                failures.push((seed, report));
            }
            Ok(Some(stall)) => stalls.push(stall),
            Ok(None) => {}
        }
    }
    eprintln!(
        "{test_name}: {runs} runs of {steps} steps (seeds {first}..{}) in {:.1?}",
        first + runs,
        start.elapsed()
    );
    if !stalls.is_empty() {
        // Not a failure (see `Sim::demoted_stall`), but never silent.
        eprintln!(
            "{test_name}: {} of {runs} runs ended in the known stall of a demoted or removed \
             node with a longer log (RINGRAFT_RANDOM_STRICT=1 fails them):\n  {}",
            stalls.len(),
            stalls.join("\n  ")
        );
    }
    if let Some((_, report)) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|f| f.0).collect();
        let causes: Vec<String> = failures
            .iter()
            .map(|f| f.1.lines().next().unwrap_or_default().to_string())
            .collect();
        panic!(
            "{test_name}: {} of {runs} runs failed, seeds {seeds:?}:\n{}\n\nfirst failure:\n{report}",
            failures.len(),
            causes.join("\n")
        );
    }
}

const fn base(nodes: u64) -> Variant {
    Variant {
        nodes,
        membership: false,
        lease: false,
    }
}

#[test]
fn random_3_nodes() {
    run_many(base(3), DEFAULT_RUNS_3, "random_3_nodes");
}

#[test]
fn random_5_nodes() {
    run_many(base(5), DEFAULT_RUNS_5, "random_5_nodes");
}

/// Random membership changes on a bootstrapped cluster of 3 voters, with
/// up to 4 spare nodes that join empty.
#[test]
fn random_membership_3_nodes() {
    let variant = Variant {
        membership: true,
        ..base(3)
    };
    run_many(
        variant,
        DEFAULT_RUNS_MEMBERSHIP_3,
        "random_membership_3_nodes",
    );
}

/// Random membership changes on a bootstrapped cluster of 5 voters, with
/// 2 spare nodes.
#[test]
fn random_membership_5_nodes() {
    let variant = Variant {
        membership: true,
        ..base(5)
    };
    run_many(
        variant,
        DEFAULT_RUNS_MEMBERSHIP_5,
        "random_membership_5_nodes",
    );
}

/// Lease-based reads with synchronized clocks, with membership changes.
#[test]
fn random_lease_reads() {
    let variant = Variant {
        nodes: 3,
        membership: true,
        lease: true,
    };
    run_many(variant, DEFAULT_RUNS_LEASE, "random_lease_reads");
}

// ---------------------------------------------------------------------------
// Regression scenarios for core bugs this test found.

/// A follower of a 3-node cluster (id 2), fresh.
fn follower() -> RawNode<MemoryStorage> {
    let conf_state = ringraft::raftpb::ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let storage = MemoryStorage::new_with_conf_state(conf_state);
    RawNode::new(&Config::new(2), storage).expect("raw node")
}

/// A message from leader 1 in term 1.
fn from_leader(msg_type: MessageType) -> Message {
    Message {
        msg_type: msg_type as i32,
        from: 1,
        to: 2,
        term: 1,
        ..Default::default()
    }
}

fn snapshot_message(index: u64) -> Message {
    let mut m = from_leader(MessageType::MsgSnap);
    let mut snapshot = ringraft::raftpb::Snapshot::default();
    snapshot.metadata.index = index;
    snapshot.metadata.term = 1;
    snapshot.metadata.conf_state.voters = vec![1, 2, 3];
    m.snapshot = Some(snapshot);
    m
}

/// Hands out the next Ready (there must be one).
fn next_ready(raw: &mut RawNode<MemoryStorage>) -> Ready {
    assert!(raw.has_ready(), "expected a Ready");
    let ready = raw.ready();
    raw.advance_append_async(&ready);
    ready
}

/// Persists `readies` in order and acknowledges them.
fn persist_readies(raw: &mut RawNode<MemoryStorage>, readies: &[Ready]) {
    for ready in readies {
        let store = raw.store_mut();
        if let Some(snapshot) = &ready.snapshot {
            store.apply_snapshot(snapshot.clone()).expect("snapshot");
        }
        store.append(&ready.entries).expect("append");
        if let Some(hs) = ready.hard_state {
            store.set_hard_state(hs);
        }
    }
    raw.on_persisted(readies.last().expect("readies").number);
}

/// Seed 2 of `random_3_nodes` (step 250, before the fix): once a snapshot
/// received from the leader was persisted, the next Ready handed out the
/// committed entries after the old applied index, which the snapshot had
/// compacted away ("committed entries unreadable"). A persisted snapshot now
/// counts as applied, as etcd's `appliedSnap`.
#[test]
fn persisted_snapshot_counts_as_applied() {
    let mut raw = follower();
    raw.step(snapshot_message(10)).expect("snapshot");
    let ready = next_ready(&mut raw);
    assert_eq!(ready.snapshot.as_ref().map(|s| s.metadata.index), Some(10));
    persist_readies(&mut raw, &[ready]);
    assert_eq!(raw.raft.raft_log.applied, 10);

    let mut append = from_leader(MessageType::MsgApp);
    append.index = 10;
    append.log_term = 1;
    append.commit = 11;
    append.entries = vec![Entry::new(1, 11, b"x".to_vec())];
    raw.step(append).expect("append");
    let ready = next_ready(&mut raw);
    persist_readies(&mut raw, &[ready]);
    let ready = next_ready(&mut raw);
    let applied: Vec<u64> = ready.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(applied, vec![11]);
}

/// Seed 73 of `random_5_nodes` (step 427, before the fix): committed
/// entries handed out in one Ready, then a snapshot in a later Ready, both
/// persisted together (pipelining): the application's acknowledgement of the
/// earlier entries arrives below the snapshot's index. `advance_apply` must
/// not move back (etcd's appliedTo takes the maximum) instead of panicking.
#[test]
fn late_apply_acknowledgement_after_snapshot_is_harmless() {
    let mut raw = follower();
    let mut append = from_leader(MessageType::MsgApp);
    append.entries = (1..=3).map(|i| Entry::new(1, i, vec![i as u8])).collect();
    raw.step(append).expect("append");
    let ready = next_ready(&mut raw);
    persist_readies(&mut raw, &[ready]);

    let mut heartbeat = from_leader(MessageType::MsgHeartbeat);
    heartbeat.commit = 3;
    raw.step(heartbeat).expect("heartbeat");
    let with_entries = next_ready(&mut raw);
    assert_eq!(with_entries.committed_entries.len(), 3);

    raw.step(snapshot_message(10)).expect("snapshot");
    let with_snapshot = next_ready(&mut raw);
    assert!(with_snapshot.snapshot.is_some());
    persist_readies(&mut raw, &[with_entries, with_snapshot]);
    assert_eq!(raw.raft.raft_log.applied, 10);

    // The application applied the entries of the first Ready.
    raw.advance_apply(3);
    assert_eq!(raw.raft.raft_log.applied, 10);
    assert!(raw.raft.raft_log.applying >= 10);
}
