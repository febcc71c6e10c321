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
//! linearizable (cover everything committed before the request). At the end
//! of each run the faults stop and the cluster must elect a leader and
//! commit and apply a final proposal on every node.
//!
//! Environment: `RINGRAFT_RANDOM_RUNS` (runs per test),
//! `RINGRAFT_RANDOM_STEPS` (steps per run), `RINGRAFT_SEED` (run exactly that
//! seed), `RINGRAFT_RANDOM_FIRST_SEED` (first seed of the range),
//! `RINGRAFT_RANDOM_KEEP_GOING` (run every seed, list the failing ones),
//! `RINGRAFT_RANDOM_TRACE` (print every action), `RINGRAFT_RANDOM_VERBOSE`
//! (per-run statistics). A failure names the seed, the command that
//! reproduces it, the node states and the last actions.

use ringraft::raft::{
    Config, MemoryStorage, NO_LIMIT, RawNode, Ready, SnapshotStatus, StateRole, Storage,
};
use ringraft::raftpb::{Entry, HardState, Message, MessageType};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

/// Runs per test when `RINGRAFT_RANDOM_RUNS` is not set (about 30 s per
/// test in `cargo test --release` on a 2-core machine; the two tests run in
/// parallel).
const DEFAULT_RUNS_3: u64 = 3000;
const DEFAULT_RUNS_5: u64 = 3000;
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
}

impl Params {
    fn random(rng: &mut Rng) -> Params {
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
        Params {
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
        }
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
}

struct Sim {
    p: Params,
    rng: Rng,
    ids: Vec<u64>,
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
    fn new(seed: u64, nodes: u64, tracing: bool) -> Sim {
        let mut rng = Rng::new(seed ^ nodes.wrapping_mul(0xa076_1d64_78bd_642f));
        let p = Params::random(&mut rng);
        let ids: Vec<u64> = (1..=nodes).collect();
        let conf_state = ringraft::raftpb::ConfState {
            voters: ids.clone(),
            ..Default::default()
        };
        let mut sim_nodes = BTreeMap::new();
        for &id in &ids {
            let storage = MemoryStorage::new_with_conf_state(conf_state.clone());
            let raw = RawNode::new(&p.config(id, 0, 0), storage.clone()).expect("new node");
            sim_nodes.insert(
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
                },
            );
        }
        Sim {
            p,
            rng,
            ids,
            nodes: sim_nodes,
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
        let any_down = self.nodes.values().any(|n| n.raw.is_none());
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
        let weights: [(u64, u8); 19] = [
            (self.p.tick_weight, 0),                            // tick
            (2, 1),                                             // tick all
            (16, 2),                                            // propose
            (1, 3),                                             // campaign
            (on(!ready_nodes.is_empty(), 32), 4),               // ready
            (on(!persist_nodes.is_empty(), persist), 5),        // persist
            (on(!ready_nodes.is_empty(), persist / 2), 6),      // ready and persist
            (on(has_msgs, 80), 7),                              // deliver
            (on(has_msgs, 4 * f), 8),                           // drop
            (on(has_msgs, 4 * f), 9),                           // duplicate
            (self.p.partition_weight, 10),                      // partition
            (self.p.partition_weight, 11),                      // one-way cut
            (on(!self.cut.is_empty(), self.p.heal_weight), 12), // heal
            (self.p.crash_weight, 13),                          // crash
            (on(any_down, 8), 14),                              // restart
            (on(self.p.compaction, 6), 15),                     // compact
            (1, 16),                                            // transfer leadership
            (1, 17),                                            // forget leader
            (3, 18),                                            // read index
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
                let choices = [leaders, persist_nodes.clone(), at_risk, self.ids.clone()];
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
                    .filter(|n| n.raw.is_none())
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
            _ => Action::ReadIndex(self.random_node()),
        }
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
                self.compact(id);
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
                // Linearizable: the answer must cover every entry committed
                // before the request.
                let floor = self.committed.keys().next_back().copied().unwrap_or(0);
                self.reads.insert(context.clone(), floor);
                let result = self.raw(id).map(|raw| raw.read_index(context));
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
        }
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
        for (snapshot, entries) in to_apply {
            if let Some(snapshot) = snapshot {
                self.apply_snapshot(id, &snapshot);
                if self.tracing {
                    let _ = write!(applied_text, " snap@{}", snapshot.metadata.index);
                }
            }
            if !entries.is_empty() {
                let last = entries[entries.len() - 1].index;
                for entry in &entries {
                    self.apply_entry(id, entry);
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

    fn apply_entry(&mut self, id: u64, entry: &Entry) {
        let node = self.nodes.get_mut(&id).expect("node");
        assert_eq!(
            entry.index,
            node.applied + 1,
            "node {id} applies entry {} after applied index {}",
            entry.index,
            node.applied
        );
        let value = (entry.term, entry.data.clone());
        match self.committed.get(&entry.index) {
            Some(c) => assert_eq!(
                c, &value,
                "node {id} applies entry {} (term {}) that differs from the committed one (term {})",
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
        let commit = node.raw.as_ref().map_or(0, |r| r.raft.raft_log.committed);
        assert!(
            node.applied <= commit,
            "node {id} applied {} beyond its commit index {commit}",
            node.applied
        );
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
        let node = self.nodes.get_mut(&id).expect("node");
        assert!(
            index > node.applied,
            "node {id} installs snapshot at {index} at or below its applied index {}",
            node.applied
        );
        node.sm = sm;
        node.applied = index;
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
        let node = self.nodes.get_mut(&id).expect("node");
        if node.raw.is_some() {
            return;
        }
        if rebuild_sm {
            // The state machine was volatile: rebuild it from the snapshot.
            let snapshot = node.disk.snapshot(0).expect("snapshot");
            node.sm = decode_state_machine(&snapshot.data);
            node.applied = snapshot.metadata.index;
        }
        node.incarnation += 1;
        let config = self.p.config(id, node.applied, node.incarnation);
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
    fn compact(&mut self, id: u64) {
        let pick = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(raw) = node.raw.as_mut() else {
            return;
        };
        let store = raw.store();
        let first = store.first_index().expect("first index");
        let last = store.last_index().expect("last index");
        let upto = node.applied.min(store.hard_state().commit).min(last);
        if upto < first {
            note!(self, "compact {id}: nothing");
            return;
        }
        // Often everything applied, so that lagging peers need a snapshot.
        let index = if pick % 2 == 0 {
            upto
        } else {
            first + (pick >> 1) % (upto - first + 1)
        };
        let data = encode_state_machine(&node.sm, index);
        let store = raw.store_mut();
        store
            .create_snapshot(index, None, data)
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
        for e in entries {
            match self.committed.get(&e.index) {
                Some((t, d)) => assert!(
                    *t == e.term && *d == e.data,
                    "committed entry changed: index {} was committed with term {t}, \
                     node {id} now reports term {} committed",
                    e.index,
                    e.term
                ),
                None => {
                    self.check_durable_majority(e.index, e.term, id);
                    self.committed.insert(e.index, (e.term, e.data));
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

    /// A committed entry is durable on a majority (or covered by their
    /// snapshots): the leader counts only persisted acknowledgements,
    /// its own included, and no durable copy is ever lost.
    fn check_durable_majority(&self, index: u64, term: u64, reporter: u64) {
        let holders: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| match Sim::durable_term(n, index) {
                Some(Some(t)) => t == term,
                Some(None) => true,
                None => false,
            })
            .map(|n| n.id)
            .collect();
        assert!(
            holders.len() * 2 > self.ids.len(),
            "entry {index} (term {term}) is committed (reported by node {reporter}) but durable \
             only on {holders:?}"
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
            .map(|e| (e.index, e.term, e.data.clone()))
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
            .map(|e| (e.index, e.term, e.data))
            .collect();
        self.check_entries(id, prev_term, commit, &list);
    }

    /// Election safety and leader completeness for every running node.
    fn check_leaders(&mut self) {
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
        }
        self.check_leaders();
        if self.step % 64 == 0 {
            for id in self.ids.clone() {
                self.check_full_log(id);
            }
            for (&index, (term, _)) in &self.committed {
                self.check_durable_majority(index, *term, 0);
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
    /// everywhere.
    fn liveness(&mut self) {
        self.step += 1;
        self.cut.clear();
        note!(self, "liveness: heal, restart everyone");
        for id in self.ids.clone() {
            if !self.is_up(id) {
                self.restart(id);
            }
        }
        let mut proposal: Option<(Vec<u8>, usize)> = None;
        for round in 0..LIVENESS_ROUNDS {
            self.step += 1;
            if self.tracing {
                self.current = format!("liveness round {round}: tick all");
            }
            for id in self.ids.clone() {
                self.raw(id).expect("up").tick();
            }
            for _ in 0..100 {
                for id in self.ids.clone() {
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
            let ids = self.ids.clone();
            self.check(&ids);
            if let Some((data, _)) = &proposal
                && self
                    .nodes
                    .values()
                    .all(|n| n.sm.values().any(|(_, d)| d == data))
            {
                return;
            }
            // One leader that everybody follows: propose (again, if an
            // earlier proposal got lost with a leader change).
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
            let followed = self
                .nodes
                .values()
                .filter_map(|n| n.raw.as_ref())
                .all(|r| r.raft.lead == leader && r.raft.term == term);
            let stale = proposal.as_ref().is_none_or(|(_, at)| round >= at + 50);
            if followed && stale {
                let data = format!("final-{}", self.next_data).into_bytes();
                self.next_data += 1;
                let result = self.raw(leader).expect("up").propose(data.clone());
                note!(
                    self,
                    "liveness: propose at leader {leader} (term {term}): {result:?}"
                );
                if result.is_ok() {
                    proposal = Some((data, round));
                }
            }
        }
        panic!(
            "liveness: no leader committed and applied a proposal on every node within \
             {LIVENESS_ROUNDS} fault-free rounds (proposal {:?})",
            proposal.map(|p| String::from_utf8_lossy(&p.0).into_owned())
        );
    }

    fn describe_nodes(&self) -> String {
        let mut out = String::new();
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
                        "  node {}: {:?} term {} vote {} lead {} log [{}..={}] last term {} \
                         commit {} applied {} unpersisted {} log {:?}",
                        node.id,
                        r.state,
                        r.term,
                        r.vote,
                        r.lead,
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
fn run_one(nodes: u64, seed: u64, steps: usize, test_name: &str) -> Result<(), String> {
    let mut sim = Sim::new(seed, nodes, false);
    let mut result = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    if result.is_err() {
        // Runs are deterministic: run the seed again, this time keeping the
        // trace of actions for the report.
        let first = result;
        sim = Sim::new(seed, nodes, true);
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
             reproduce: RINGRAFT_SEED={seed} {steps_env}cargo test --release --test raft_random \
             -- --exact {test_name}\n\
             params: {params:?}\n\
             nodes:\n{nodes_text}\
             last actions:\n{trace}",
            step = sim.step,
            current = sim.current,
            cause = panic_text(payload.as_ref()),
            params = sim.p,
            nodes_text = sim.describe_nodes(),
        ));
    }
    Ok(())
}

fn run_many(nodes: u64, default_runs: u64, test_name: &str) {
    let steps = env_u64("RINGRAFT_RANDOM_STEPS").map_or(DEFAULT_STEPS, |s| s as usize);
    if let Some(seed) = env_u64("RINGRAFT_SEED") {
        if let Err(report) = run_one(nodes, seed, steps, test_name) {
            panic!("{report}");
        }
        return;
    }
    // RINGRAFT_RANDOM_KEEP_GOING: run every seed and list the failing ones.
    let keep_going = std::env::var("RINGRAFT_RANDOM_KEEP_GOING").is_ok();
    let mut failures: Vec<(u64, String)> = Vec::new();
    let runs = env_u64("RINGRAFT_RANDOM_RUNS").unwrap_or(default_runs);
    let first = env_u64("RINGRAFT_RANDOM_FIRST_SEED").unwrap_or(0);
    let start = Instant::now();
    for seed in first..first + runs {
        if let Err(report) = run_one(nodes, seed, steps, test_name) {
            if !keep_going {
                panic!("{report}");
            }
            failures.push((seed, report));
        }
    }
    eprintln!(
        "{test_name}: {runs} runs of {steps} steps (seeds {first}..{}) in {:.1?}",
        first + runs,
        start.elapsed()
    );
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

#[test]
fn random_3_nodes() {
    run_many(3, DEFAULT_RUNS_3, "random_3_nodes");
}

#[test]
fn random_5_nodes() {
    run_many(5, DEFAULT_RUNS_5, "random_5_nodes");
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
