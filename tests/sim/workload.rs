//! The simulated clients and the history they record.
//!
//! Owns: each client's one outstanding operation, its deadline, the count
//! of its writes (the machine makes written values unique from it), the
//! history of linearizable operations for the machine's end-of-run check,
//! and the real-time floor of linearizable reads.
//!
//! Clients send each operation to a random node (up or not: a node that is
//! down refuses at once and the client tries again shortly). A follower
//! forwards proposals to its leader (raft's proposal forwarding, as the real
//! node does); a linearizable read is a ReadIndex read at that node; a
//! serializable read queries that node's state machine as it stands. What
//! the operations are is the machine's choice (`machine`). A write
//! that is answered is acknowledged; one refused at once did not happen; one
//! whose node crashed, stopped or did not answer before the timeout has an
//! unknown outcome (it may apply later, or never). Reads that fail are left
//! out of the history (they have no effect).
//!
//! Guarantees: the history uses the simulated clock for call and return
//! times, so real-time order is what the simulation did. Every answered
//! linearizable read is checked as it completes, for every machine: its
//! result must be the reference state at the index the node served it at,
//! and that index must be at least the floor: the highest index of any
//! write acknowledged or linearizable read answered before the read was
//! issued (a ReadIndex read can be served no earlier: its read index is at
//! least every index committed when it began).
//! May not touch: the nodes (the cluster carries requests and answers).

use crate::checks::Checker;
use crate::machine::{ClientOp, History, SimMachine};
use crate::node::{Answer, Reply, Waiter};
use crate::rng::SimRng;
use crate::stats::Stats;

/// What an outstanding operation does.
#[derive(Debug, Clone)]
enum OpKind<S: SimMachine> {
    Write(S::Command),
    /// A linearizable read; `floor` is the lowest index it may be served
    /// at.
    Read {
        query: S::Query,
        floor: u64,
    },
}

#[derive(Debug, Clone)]
struct Pending<S: SimMachine> {
    op: u64,
    kind: OpKind<S>,
    node: u64,
    call_us: u64,
    deadline_us: u64,
}

/// What a client asks of a node.
#[derive(Debug, Clone)]
pub enum Request<S: SimMachine> {
    /// Propose this command.
    Propose {
        node: u64,
        command: S::Command,
        waiter: Waiter,
    },
    /// A linearizable read.
    Read {
        node: u64,
        query: S::Query,
        waiter: Waiter,
    },
    /// A serializable read.
    LocalRead {
        node: u64,
        query: S::Query,
        client: usize,
    },
}

/// The clients of a run.
#[derive(Debug)]
pub struct Workload<S: SimMachine> {
    pub params: S::Params,
    pending: Vec<Option<Pending<S>>>,
    written: Vec<u64>,
    pub history: S::History,
    /// The highest index of a write acknowledged or a linearizable read
    /// answered so far.
    completed_floor: u64,
    next_op: u64,
    /// No new operations (the final phase).
    pub stopped: bool,
    pub timeout_us: u64,
    pub think_max_us: u64,
}

impl<S: SimMachine> Workload<S> {
    /// `clients` clients of a machine with parameters `params`.
    pub fn new(
        clients: usize,
        params: S::Params,
        timeout_us: u64,
        think_max_us: u64,
    ) -> Workload<S> {
        Workload {
            pending: vec![None; clients],
            written: vec![0; clients],
            history: S::history(&params),
            params,
            completed_floor: 0,
            next_op: 0,
            stopped: false,
            timeout_us,
            think_max_us,
        }
    }

    /// Client `client` wakes up at `now_us`: gives up an operation past
    /// its deadline, and starts a new one if it has none. `nodes` are the
    /// ids it may send to.
    pub fn wake(
        &mut self,
        client: usize,
        now_us: u64,
        nodes: &[u64],
        rng: &mut SimRng,
        stats: &mut Stats,
    ) -> Option<Request<S>> {
        if let Some(pending) = &self.pending[client] {
            if now_us < pending.deadline_us {
                return None;
            }
            self.give_up(client, stats);
        }
        if self.stopped {
            return None;
        }
        let node = rng.pick(nodes)?;
        let op = S::next_op(&self.params, client, &mut self.written[client], rng);
        self.next_op += 1;
        let waiter = Waiter {
            client,
            op: self.next_op,
        };
        let (kind, request) = match op {
            ClientOp::Write(command) => (
                OpKind::Write(command.clone()),
                Request::Propose {
                    node,
                    command,
                    waiter,
                },
            ),
            ClientOp::Read(query) => (
                OpKind::Read {
                    query: query.clone(),
                    floor: self.completed_floor,
                },
                Request::Read {
                    node,
                    query,
                    waiter,
                },
            ),
            ClientOp::LocalRead(query) => {
                stats.serializable_reads += 1;
                return Some(Request::LocalRead {
                    node,
                    query,
                    client,
                });
            }
        };
        self.pending[client] = Some(Pending {
            op: self.next_op,
            kind,
            node,
            call_us: now_us,
            deadline_us: now_us + self.timeout_us,
        });
        Some(request)
    }

    /// The client's outstanding operation has this deadline, if any.
    pub fn deadline_us(&self, client: usize) -> Option<u64> {
        self.pending[client].as_ref().map(|p| p.deadline_us)
    }

    /// A node answered; true if it completed the client's operation.
    pub fn answer(
        &mut self,
        reply: &Reply<S>,
        now_us: u64,
        stats: &mut Stats,
        check: &mut Checker<S>,
    ) -> bool {
        let client = reply.waiter.client;
        let Some(pending) = self.pending[client].take_if(|p| p.op == reply.waiter.op) else {
            return false;
        };
        let id = client as u64;
        match (&reply.answer, pending.kind) {
            (Answer::Written(index, response), OpKind::Write(command)) => {
                stats.writes_acknowledged += 1;
                stats.writes_refused_by_state_machine += u64::from(S::refused(response));
                self.completed_floor = self.completed_floor.max(*index);
                self.history
                    .write(id, pending.call_us, Some(now_us), &command);
            }
            (Answer::Value(result), OpKind::Read { query, floor }) => {
                stats.linearizable_reads += 1;
                let served = reply.applied_index;
                check.read("linearizable", reply.node, served, &query, result);
                if served < floor {
                    check.violation(format!(
                        "linearizable read {query:?} by client {client} at node {} was served at applied index {served}, below {floor}: an operation that completed before it began saw index {floor}",
                        reply.node
                    ));
                }
                self.completed_floor = self.completed_floor.max(served);
                self.history
                    .read(id, pending.call_us, now_us, &query, result);
            }
            // Refused: did not happen; a read that failed has no effect.
            _ => {}
        }
        true
    }

    /// The client's operation is lost with its node (crash or stop).
    pub fn node_lost(&mut self, node: u64, stats: &mut Stats) -> Vec<usize> {
        let lost: Vec<usize> = (0..self.pending.len())
            .filter(|&c| self.pending[c].as_ref().is_some_and(|p| p.node == node))
            .collect();
        for &client in &lost {
            self.give_up(client, stats);
        }
        lost
    }

    /// The request could not reach its node: it did not happen.
    pub fn refused(&mut self, client: usize) {
        self.pending[client] = None;
    }

    fn give_up(&mut self, client: usize, stats: &mut Stats) {
        let Some(pending) = self.pending[client].take() else {
            return;
        };
        if let OpKind::Write(command) = &pending.kind {
            stats.writes_unknown += 1;
            self.history
                .write(client as u64, pending.call_us, None, command);
        }
    }

    /// Ends the run: every outstanding write has an unknown outcome.
    pub fn finish(&mut self, stats: &mut Stats) {
        for client in 0..self.pending.len() {
            self.give_up(client, stats);
        }
    }
}
