//! One simulated run: a cluster of 3 or 5 nodes replicating one state
//! machine (the key-value store or the ledger: [`Choice`] by seed), its
//! clients and its faults, driven by one seeded scheduler.
//!
//! Owns: the running nodes, the disks of crashed nodes, node ids (never
//! reused: a removed member never comes back), the run's parameters (drawn
//! from the seed), fault injection, the final phase and the checks that
//! need the whole cluster.
//!
//! A run is `steps` steps; a step is one tick interval (10 ms) of simulated
//! time in which every event due runs: each node's own clock ticks (with
//! jitter), messages arrive, fdatasyncs and snapshot saves complete,
//! clients act; at the start of a step a fault may be injected: a crash of
//! one node (preferring one in the middle of a snapshot save) or a power
//! loss of several at once, a partition (random split, isolated node,
//! one-way link), healing, a membership change (add a voter or learner with
//! a fresh id, promote a learner, remove a member) or a leader transfer.
//! Crashed nodes restart after a while from what their disk kept.
//!
//! The final phase stops faults and new client operations, heals the
//! network, restarts every crashed node, and runs until the cluster has
//! converged (one leader known to every member, everything committed and
//! applied everywhere, nothing in flight), bounded: a run that does not
//! converge is reported as a stall. Then: every member's state machine,
//! applied index and member directory are the same, every member's raft
//! log agrees with the agreed log, every acknowledged write is in it, and
//! the history passes the machine's check (linearizability for the
//! key-value store). A machine with an invariant (the ledger's total) has
//! it checked on every node at the end of every step.
//!
//! Guarantees: a run is a pure function of (seed, steps, break mode,
//! machine choice): ordered collections only, one RNG, simulated time.
//! May not touch: real time, threads, files.

use crate::checks::Checker;
use crate::disk::{SimDisk, TailFate};
use crate::ledger::Ledger;
use crate::machine::{Choice, History, SimMachine};
use crate::network::{Network, NetworkFaults};
use crate::node::{BreakMode, Env, MembershipChange, NodeSettings, Reply, SimNode};
use crate::persistence::Latency;
use crate::rng::SimRng;
use crate::scheduler::{Event, Scheduler};
use crate::stats::Stats;
use crate::workload::{Request, Workload};
use ringraft::KvStore;
use ringraft::node::DEFAULT_MAX_INFLIGHT_BYTES;
use ringraft::raft::{StateRole, Storage};
use std::collections::{BTreeMap, BTreeSet};

/// Simulated time of one step (one tick of a node's clock).
pub const TICK_US: u64 = 10_000;
/// Steps without faults at the start: the new cluster's bootstrap entries
/// reach its disks. A power loss of every member before that leaves every
/// node with an empty log and no configuration, so none may campaign: a
/// dead cluster (true of the real node, and of etcd, too).
const FORMATION_STEPS: u64 = 50;
/// Steps the final phase may take to converge.
const CONVERGENCE_STEPS: u64 = 1_500;
/// Messages per step beyond which a run counts as a message storm (a
/// livelock: normal runs send a few dozen per step).
const STORM_MESSAGES_PER_STEP: u64 = 400;

/// What a run found.
#[derive(Debug)]
pub struct RunOutcome {
    pub seed: u64,
    /// The state machine it replicated (`machine::kv::NAME`, ...).
    pub machine: &'static str,
    pub violations: Vec<String>,
    /// Why the run did not converge, if it did not.
    pub stall: Option<String>,
    pub stats: Stats,
}

/// The world of one run.
pub struct Cluster<S: SimMachine> {
    rng: SimRng,
    sched: Scheduler,
    net: Network,
    check: Checker<S>,
    stats: Stats,
    workload: Workload<S>,
    /// The state every node starts from.
    genesis: S,
    replies: Vec<Reply<S>>,
    next_seq: u64,
    nodes: BTreeMap<u64, SimNode<S>>,
    down: BTreeMap<u64, SimDisk>,
    incarnations: BTreeMap<u64, u64>,
    next_id: u64,
    size: usize,
    settings: NodeSettings,
    fault_per_mille: u64,
    restart_max_us: u64,
    /// Print every delivered message from this simulated time on
    /// (`RINGRAFT_SIM_TRACE_FROM_STEP`), to debug a seed.
    trace_from_us: Option<u64>,
}

/// An `Env` over the cluster's parts (a macro so that the borrows stay
/// per field, next to a borrowed node).
macro_rules! env {
    ($cluster:ident) => {
        Env {
            rng: &mut $cluster.rng,
            sched: &mut $cluster.sched,
            net: &mut $cluster.net,
            check: &mut $cluster.check,
            stats: &mut $cluster.stats,
            replies: &mut $cluster.replies,
            next_seq: &mut $cluster.next_seq,
        }
    };
}

/// Runs seed `seed` for `steps` steps, with the state machine `choice`
/// gives it.
pub fn run(seed: u64, steps: u64, break_mode: BreakMode, choice: Choice) -> RunOutcome {
    match choice.machine(seed) {
        crate::machine::kv::NAME => run_machine::<KvStore>(seed, steps, break_mode),
        _ => run_machine::<Ledger>(seed, steps, break_mode),
    }
}

fn run_machine<S: SimMachine>(seed: u64, steps: u64, break_mode: BreakMode) -> RunOutcome {
    let mut cluster = Cluster::<S>::new(seed, break_mode);
    let mut steps_run = 0;
    // A run stops at its first violation: what follows it is noise.
    while steps_run < steps && cluster.check.violations.is_empty() {
        if steps_run >= FORMATION_STEPS {
            cluster.maybe_inject_fault();
        }
        cluster.run_until((steps_run + 1) * TICK_US);
        steps_run += 1;
        cluster.check_storm(steps_run);
        cluster.check_invariants();
    }
    cluster.stats.steps = steps_run;
    cluster.stats.seeds = 1;
    let mut stall = None;
    if cluster.check.violations.is_empty() {
        stall = cluster.converge(steps);
        if stall.is_none() && cluster.check.violations.is_empty() {
            cluster.final_checks();
        }
    }
    if cluster.check.violations.is_empty() {
        cluster.check_history();
    }
    let net = &cluster.net;
    cluster.stats.messages_sent = net.sent;
    cluster.stats.messages_lost = net.lost;
    cluster.stats.messages_duplicated = net.duplicated;
    cluster.stats.stalls = u64::from(stall.is_some());
    RunOutcome {
        seed,
        machine: S::NAME,
        violations: cluster.check.violations,
        stall,
        stats: cluster.stats,
    }
}

impl<S: SimMachine> Cluster<S> {
    fn new(seed: u64, break_mode: BreakMode) -> Cluster<S> {
        let mut rng = SimRng::new(seed);
        let size = if rng.chance(500) { 3 } else { 5 };
        let fdatasync_min_us = rng.range(200, 1_000);
        let settings = NodeSettings {
            election_tick: 10,
            heartbeat_tick: rng.range(2, 3) as usize,
            snapshot_count: rng.range(20, 60),
            catchup_entries: rng.range(5, 20),
            latency: Latency {
                fdatasync_min_us,
                fdatasync_max_us: fdatasync_min_us + rng.range(1_000, 15_000),
                snapshot_step_max_us: rng.range(500, 3_000),
            },
            break_mode,
            raft_seed: rng.next_u64(),
            send_appends_early: false,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        };
        // Half the runs send appends early (the node's default), the other
        // half after the leader's fdatasync. Taken from a bit of the raft
        // seed rather than a new draw, so every other draw of a seed stays
        // what it was.
        // A quarter of the runs give the Readies in flight a budget of 32
        // to 400 bytes (one Ready of a HardState alone counts 32, an
        // entry 32 plus its data), so client requests often wait for
        // persistence (back-pressure); the others the node's default.
        // Also from the raft seed's bits, for the same reason.
        let tight_budget = (settings.raft_seed >> 1) & 3 == 0;
        let settings = NodeSettings {
            send_appends_early: settings.raft_seed & 1 == 1,
            max_inflight_bytes: if tight_budget {
                32 + ((settings.raft_seed >> 8) % 369) as usize
            } else {
                DEFAULT_MAX_INFLIGHT_BYTES
            },
            ..settings
        };
        let delay_min_us = rng.range(100, 500);
        let faults = NetworkFaults {
            loss_per_mille: rng.below(50),
            duplicate_per_mille: rng.below(30),
            delay_min_us,
            delay_max_us: delay_min_us + rng.range(500, 4_000),
            long_delay_per_mille: rng.below(50),
            long_delay_max_us: 30_000,
        };
        let clients = rng.range(3, 5) as usize;
        let params = S::draw_params(&mut rng);
        let think_max_us = rng.range(10_000, 60_000);
        let genesis = S::genesis(&params);
        let workload = Workload::new(clients, params.clone(), 50 * TICK_US, think_max_us);
        let check = Checker::new(params);
        let mut cluster = Cluster {
            fault_per_mille: rng.range(20, 60),
            restart_max_us: rng.range(5, 30) * TICK_US,
            trace_from_us: std::env::var("RINGRAFT_SIM_TRACE_FROM_STEP")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(|step| step * TICK_US),
            rng,
            sched: Scheduler::default(),
            net: Network::new(faults),
            check,
            stats: Stats::default(),
            workload,
            genesis,
            replies: Vec::new(),
            next_seq: 0,
            nodes: BTreeMap::new(),
            down: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            next_id: size as u64 + 1,
            size,
            settings,
        };
        let voters: Vec<u64> = (1..=size as u64).collect();
        for &id in &voters {
            cluster.start_new_node(id, Some(&voters));
        }
        for client in 0..clients {
            let delay = cluster.rng.below(think_max_us);
            cluster.sched.after(delay, Event::ClientWake { client });
        }
        cluster
    }

    fn incarnation(&mut self, id: u64) -> u64 {
        let incarnation = self.incarnations.entry(id).or_insert(0);
        *incarnation += 1;
        *incarnation
    }

    fn start_new_node(&mut self, id: u64, voters: Option<&[u64]>) {
        let incarnation = self.incarnation(id);
        match SimNode::create(id, voters, self.genesis.clone(), self.settings, incarnation) {
            Ok(node) => self.bring_up(node),
            Err(e) => self.check.violation(e),
        }
    }

    fn bring_up(&mut self, mut node: SimNode<S>) {
        let id = node.id;
        let incarnation = node.incarnation;
        self.net.up.insert(id);
        node.kick(&mut env!(self));
        self.nodes.insert(id, node);
        let delay = self.rng.below(TICK_US);
        self.sched.after(
            delay,
            Event::Tick {
                node: id,
                incarnation,
            },
        );
        self.after_node_event(id);
    }

    fn run_until(&mut self, until_us: u64) {
        while let Some(event) = self.sched.next_before(until_us) {
            self.dispatch(event);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => {
                let Some(n) = self
                    .nodes
                    .get_mut(&node)
                    .filter(|n| n.incarnation == incarnation)
                else {
                    return;
                };
                n.tick(&mut env!(self));
                let jitter = self.rng.below(TICK_US / 5);
                self.sched.after(
                    TICK_US - TICK_US / 10 + jitter,
                    Event::Tick { node, incarnation },
                );
                self.after_node_event(node);
            }
            Event::Deliver { message } => {
                let to = message.to;
                if !self.net.reachable(message.from, to) {
                    return;
                }
                if self
                    .trace_from_us
                    .is_some_and(|from| self.sched.now_us() >= from)
                {
                    println!(
                        "{:>10} us {:?} {}→{} term {} index {} log_term {} commit {} entries {} reject {} hint {} snap {:?}",
                        self.sched.now_us(),
                        message.msg_type(),
                        message.from,
                        message.to,
                        message.term,
                        message.index,
                        message.log_term,
                        message.commit,
                        message.entries.len(),
                        message.reject,
                        message.reject_hint,
                        message.snapshot.as_ref().map(|s| (
                            s.metadata.index,
                            s.metadata.term,
                            &s.metadata.conf_state.voters,
                            &s.metadata.conf_state.learners
                        ))
                    );
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.step(*message, &mut env!(self));
                    self.after_node_event(to);
                }
            }
            Event::PersistStep {
                node,
                incarnation,
                lane,
            } => {
                if let Some(n) = self
                    .nodes
                    .get_mut(&node)
                    .filter(|n| n.incarnation == incarnation)
                {
                    n.io_completed(lane, &mut env!(self));
                    self.after_node_event(node);
                }
            }
            Event::ClientWake { client } => self.client_wake(client),
            Event::Restart { node } => self.restart(node),
            Event::Heal => {
                if self.net.partitioned() {
                    self.stats.heals += 1;
                }
                self.net.heal();
            }
        }
    }

    /// Answers clients, and stops a node that applied its own removal.
    fn after_node_event(&mut self, id: u64) {
        let now = self.sched.now_us();
        for reply in std::mem::take(&mut self.replies) {
            if self.trace_from_us.is_some_and(|from| now >= from) {
                println!(
                    "{now:>10} us reply to client {} op {} from node {} at applied {}: {:?}",
                    reply.waiter.client,
                    reply.waiter.op,
                    reply.node,
                    reply.applied_index,
                    reply.answer
                );
            }
            if self
                .workload
                .answer(&reply, now, &mut self.stats, &mut self.check)
            {
                let think = self.rng.below(self.workload.think_max_us);
                self.sched.after(
                    think,
                    Event::ClientWake {
                        client: reply.waiter.client,
                    },
                );
            }
        }
        if self.nodes.get(&id).is_some_and(|n| n.removed) {
            self.stop_for_good(id);
            self.stats.nodes_removed += 1;
        }
    }

    fn client_wake(&mut self, client: usize) {
        let now = self.sched.now_us();
        let ids: Vec<u64> = self.nodes.keys().chain(self.down.keys()).copied().collect();
        let Some(request) = self
            .workload
            .wake(client, now, &ids, &mut self.rng, &mut self.stats)
        else {
            if let Some(deadline) = self.workload.deadline_us(client) {
                self.sched.after(
                    deadline.saturating_sub(now) + 1,
                    Event::ClientWake { client },
                );
            }
            return;
        };
        let retry_us = 1_000;
        match request {
            Request::Propose {
                node,
                command,
                waiter,
            } => match self.nodes.get_mut(&node) {
                Some(n) => {
                    n.propose(&command, waiter, &mut env!(self));
                    self.after_node_event(node);
                    self.wake_at_deadline(client);
                }
                None => {
                    self.workload.refused(client);
                    self.sched.after(retry_us, Event::ClientWake { client });
                }
            },
            Request::Read {
                node,
                query,
                waiter,
            } => match self.nodes.get_mut(&node) {
                Some(n) => {
                    n.read(query, waiter, &mut env!(self));
                    self.after_node_event(node);
                    self.wake_at_deadline(client);
                }
                None => {
                    self.workload.refused(client);
                    self.sched.after(retry_us, Event::ClientWake { client });
                }
            },
            Request::LocalRead {
                node,
                query,
                client,
            } => {
                if let Some(n) = self.nodes.get(&node) {
                    let (applied, result) = n.local_read(query.clone());
                    self.check
                        .read("serializable", node, applied, &query, &result);
                }
                let think = self.rng.below(self.workload.think_max_us);
                self.sched.after(think, Event::ClientWake { client });
            }
        }
    }

    fn wake_at_deadline(&mut self, client: usize) {
        if let Some(deadline) = self.workload.deadline_us(client) {
            let now = self.sched.now_us();
            self.sched.after(
                deadline.saturating_sub(now) + 1,
                Event::ClientWake { client },
            );
        }
    }

    /// The node is gone (crash or stop): its clients' operations are lost.
    fn take_down(&mut self, id: u64) -> Option<SimNode<S>> {
        let node = self.nodes.remove(&id)?;
        self.net.up.remove(&id);
        for client in self.workload.node_lost(id, &mut self.stats) {
            self.sched.after(1_000, Event::ClientWake { client });
        }
        Some(node)
    }

    fn crash(&mut self, id: u64) {
        let Some(node) = self.take_down(id) else {
            return;
        };
        self.stats.crashes += 1;
        if node.saving_snapshot() {
            self.stats.crashes_mid_snapshot += 1;
        }
        let mut disk = node.disk;
        match disk.crash(&mut self.rng) {
            TailFate::Clean => {}
            TailFate::Lost => self.stats.tails_lost += 1,
            TailFate::Kept => self.stats.tails_kept += 1,
            TailFate::Torn => self.stats.tails_torn += 1,
            TailFate::Hole => self.stats.tails_holed += 1,
        }
        self.down.insert(id, disk);
        let delay = self.rng.range(TICK_US, self.restart_max_us);
        self.sched.after(delay, Event::Restart { node: id });
    }

    fn restart(&mut self, id: u64) {
        let Some(disk) = self.down.remove(&id) else {
            return;
        };
        let incarnation = self.incarnation(id);
        match SimNode::restart(id, disk, self.genesis.clone(), self.settings, incarnation) {
            Ok((node, repaired)) => {
                self.stats.torn_tails_repaired += u64::from(repaired);
                self.bring_up(node);
            }
            Err(e) => self.check.violation(format!("restart failed: {e}")),
        }
    }

    fn stop_for_good(&mut self, id: u64) {
        self.take_down(id);
        self.down.remove(&id);
    }

    /// The node that leads the highest term, if any.
    fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter(|n| n.raw().raft.state == StateRole::Leader)
            .max_by_key(|n| n.raw().raft.term)
            .map(|n| n.id)
    }

    fn maybe_inject_fault(&mut self) {
        if !self.rng.chance(self.fault_per_mille) {
            return;
        }
        let up: Vec<u64> = self.nodes.keys().copied().collect();
        match self.rng.below(100) {
            0..22 => {
                let saving: Vec<u64> = up
                    .iter()
                    .copied()
                    .filter(|id| self.nodes[id].saving_snapshot())
                    .collect();
                let target = if !saving.is_empty() && self.rng.chance(500) {
                    self.rng.pick(&saving)
                } else {
                    self.rng.pick(&up)
                };
                if let Some(id) = target
                    && up.len() > 1
                {
                    self.crash(id);
                }
            }
            22..30 => {
                // A power loss of several nodes at once.
                let count = self.rng.range(2, up.len().max(2) as u64) as usize;
                let mut victims = up.clone();
                while victims.len() > count {
                    let at = self.rng.below(victims.len() as u64) as usize;
                    victims.remove(at);
                }
                for id in victims {
                    self.crash(id);
                }
            }
            30..45 => self.partition(),
            45..55 => {
                let all: Vec<u64> = self.nodes.keys().chain(self.down.keys()).copied().collect();
                if let (Some(a), Some(b)) = (self.rng.pick(&all), self.rng.pick(&all))
                    && a != b
                {
                    self.net.cut_one_way(a, b);
                    self.stats.one_way_cuts += 1;
                    let heal = self.rng.range(5, 50) * TICK_US;
                    self.sched.after(heal, Event::Heal);
                }
            }
            55..65 => {
                if self.net.partitioned() {
                    self.stats.heals += 1;
                }
                self.net.heal();
            }
            65..82 => self.change_membership(),
            _ => self.transfer_leadership(),
        }
    }

    fn partition(&mut self) {
        let mut all: Vec<u64> = self.nodes.keys().chain(self.down.keys()).copied().collect();
        if all.len() < 2 {
            return;
        }
        let left_len = if self.rng.chance(400) {
            1
        } else {
            self.rng.range(1, all.len() as u64 - 1) as usize
        };
        let mut left = Vec::new();
        while left.len() < left_len {
            let at = self.rng.below(all.len() as u64) as usize;
            left.push(all.remove(at));
        }
        self.net.partition(&left, &all);
        self.stats.partitions += 1;
        let heal = self.rng.range(5, 80) * TICK_US;
        self.sched.after(heal, Event::Heal);
    }

    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let conf = self.nodes[&leader].raw().status().conf_state;
        let change = if let Some(&learner) = conf.learners.first() {
            if self.rng.chance(600) {
                MembershipChange::Promote(learner)
            } else {
                MembershipChange::Remove(learner)
            }
        } else if conf.voters.len() > self.size {
            let Some(victim) = self.rng.pick(&conf.voters) else {
                return;
            };
            MembershipChange::Remove(victim)
        } else if self.rng.chance(500) {
            MembershipChange::AddLearner(self.next_id)
        } else {
            MembershipChange::AddVoter(self.next_id)
        };
        let Some(node) = self.nodes.get_mut(&leader) else {
            return;
        };
        let proposed = node.propose_membership(change, &mut env!(self));
        self.after_node_event(leader);
        if proposed.is_err() {
            return;
        }
        self.stats.membership_changes += 1;
        if let MembershipChange::AddLearner(id) | MembershipChange::AddVoter(id) = change {
            self.next_id += 1;
            self.start_new_node(id, None);
        }
    }

    fn transfer_leadership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let voters = self.nodes[&leader].raw().status().conf_state.voters;
        let Some(to) = self.rng.pick(&voters) else {
            return;
        };
        if to == leader {
            return;
        }
        self.stats.transfers += 1;
        if let Some(node) = self.nodes.get_mut(&leader) {
            node.transfer_leader(to, &mut env!(self));
            self.after_node_event(leader);
        }
    }

    /// The final phase; `None` when the cluster converged, otherwise why not.
    fn converge(&mut self, steps: u64) -> Option<String> {
        self.workload.stopped = true;
        self.net.heal();
        self.net.faults.loss_per_mille = 0;
        self.net.faults.duplicate_per_mille = 0;
        self.net.faults.long_delay_per_mille = 0;
        let down: Vec<u64> = self.down.keys().copied().collect();
        for id in down {
            self.restart(id);
        }
        for step in steps..steps + CONVERGENCE_STEPS {
            self.run_until((step + 1) * TICK_US);
            self.check_storm(step + 1);
            if !self.check.violations.is_empty() {
                return None;
            }
            if self.converged() {
                self.stop_non_members();
                return None;
            }
        }
        Some(self.describe())
    }

    /// The machine's invariant on every running node (after every step;
    /// it is also checked after every change of a node's state).
    fn check_invariants(&mut self) {
        if !S::HAS_INVARIANT {
            return;
        }
        for node in self.nodes.values() {
            self.check.invariant(node.id, node.applier());
            self.stats.invariant_checks += 1;
        }
    }

    /// A run whose nodes send messages as fast as the network carries them
    /// is livelocked: a failure, and it would never end in reasonable time.
    fn check_storm(&mut self, steps_run: u64) {
        let limit = (steps_run + 100) * STORM_MESSAGES_PER_STEP;
        if self.net.sent > limit {
            self.check.violation(format!(
                "message storm: {} messages in {steps_run} steps",
                self.net.sent
            ));
        }
    }

    fn members(&self) -> BTreeSet<u64> {
        self.check.membership_at(self.check.agreed_len()).all()
    }

    fn converged(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let lead = &self.nodes[&leader].raw().raft;
        let commit = lead.raft_log.committed;
        if lead.raft_log.last_index() != commit || self.check.agreed_len() != commit {
            return false;
        }
        self.members().iter().all(|id| {
            self.nodes.get(id).is_some_and(|n| {
                n.raw().raft.lead == leader
                    && n.raw().raft.term == lead.term
                    && n.applier().applied_index() == commit
                    && n.raw().raft.raft_log.last_index() == commit
                    && n.quiet()
            })
        })
    }

    fn stop_non_members(&mut self) {
        let members = self.members();
        let strays: Vec<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|id| !members.contains(id))
            .collect();
        for id in strays {
            self.stop_for_good(id);
        }
    }

    fn describe(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .values()
            .map(|n| {
                let raft = &n.raw().raft;
                format!(
                    "{}:{:?} term {} lead {} commit {} last {} applied {} voters {:?} learners {:?}",
                    n.id,
                    raft.state,
                    raft.term,
                    raft.lead,
                    raft.raft_log.committed,
                    raft.raft_log.last_index(),
                    n.applier().applied_index(),
                    n.raw().status().conf_state.voters,
                    n.raw().status().conf_state.learners
                )
            })
            .collect();
        format!(
            "no convergence within {CONVERGENCE_STEPS} steps; members by the agreed log {:?}; down {:?}; nodes: {}",
            self.members(),
            self.down.keys().collect::<Vec<_>>(),
            nodes.join("; ")
        )
    }

    /// Whole-cluster checks once converged.
    fn final_checks(&mut self) {
        let members = self.members();
        let mut reference: Option<(u64, &SimNode<S>)> = None;
        let mut violations = Vec::new();
        for id in &members {
            let Some(node) = self.nodes.get(id) else {
                violations.push(format!("member {id} is not running at the end"));
                continue;
            };
            if S::HAS_INVARIANT
                && let Err(what) = S::invariant(&self.workload.params, node.applier().state())
            {
                violations.push(format!("node {id} at the end: {what}"));
            }
            match reference {
                None => reference = Some((*id, node)),
                Some((other, first))
                    if first.applier().state() != node.applier().state()
                        || first.applier().members() != node.applier().members()
                        || first.applier().applied_index() != node.applier().applied_index() =>
                {
                    violations.push(format!(
                        "final states differ: node {other} and node {id} (applied {} and {}; members {:?} and {:?})",
                        first.applier().applied_index(),
                        node.applier().applied_index(),
                        first.applier().members(),
                        node.applier().members()
                    ))
                }
                Some(_) => {}
            }
            let store = node.raw().store();
            let (Ok(first), Ok(last)) = (store.first_index(), store.last_index()) else {
                continue;
            };
            if let Ok(entries) = store.entries(first, last + 1, u64::MAX) {
                for entry in entries {
                    match self.check.agreed_entry(entry.index) {
                        Some((term, data)) if term == entry.term && data == entry.data.as_ref() => {
                        }
                        agreed => violations.push(format!(
                            "node {id}'s log at {} (term {}) differs from the agreed entry {:?}",
                            entry.index,
                            entry.term,
                            agreed.map(|(t, d)| (t, d.len()))
                        )),
                    }
                }
            }
        }
        let end = self.check.agreed_len();
        for (&index, id) in &self.check.acknowledged {
            if index > end {
                violations.push(format!(
                    "acknowledged write {id:?} at {index} is past the final log end {end}"
                ));
            }
        }
        for violation in violations {
            self.check.violation(violation);
        }
    }

    fn check_history(&mut self) {
        self.workload.finish(&mut self.stats);
        let history = &self.workload.history;
        self.stats.linearizable_ops_checked = history.len() as u64;
        if let Err(what) = history.check() {
            self.check.violation(what);
        }
    }
}
