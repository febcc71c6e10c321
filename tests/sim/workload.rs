//! The simulated clients and the history they record.
//!
//! Owns: each client's one outstanding operation, its deadline, the values
//! it writes (unique over the run, so a read names the write it saw), and
//! the history of linearizable operations for the checker.
//!
//! Clients send each operation to a random node (up or not: a node that is
//! down refuses at once and the client tries again shortly). A follower
//! forwards proposals to its leader (raft's proposal forwarding, as the real
//! node does); a linearizable get is a ReadIndex read at that node; a
//! serializable get reads that node's state machine as it stands. A write
//! that is answered is acknowledged; one refused at once did not happen; one
//! whose node crashed, stopped or did not answer before the timeout has an
//! unknown outcome (it may apply later, or never). Reads that fail are left
//! out of the history (they have no effect).
//!
//! Guarantees: the history uses the simulated clock for call and return
//! times, so real-time order is what the simulation did.
//! May not touch: the nodes (the cluster carries requests and answers).

use crate::node::{Answer, Reply, Waiter};
use crate::rng::SimRng;
use crate::stats::Stats;
use ringraft::linearizability::Operation;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Put,
    Delete,
    LinearizableGet,
    SerializableGet,
}

#[derive(Debug, Clone)]
struct Pending {
    op: u64,
    kind: OpKind,
    key: Vec<u8>,
    value: Vec<u8>,
    node: u64,
    call_us: u64,
    deadline_us: u64,
}

/// What a client asks of a node.
#[derive(Debug, Clone)]
pub enum Request {
    /// Propose this encoded command.
    Propose {
        node: u64,
        command: Vec<u8>,
        waiter: Waiter,
    },
    /// A linearizable read.
    Read {
        node: u64,
        key: Vec<u8>,
        waiter: Waiter,
    },
    /// A serializable read.
    LocalRead {
        node: u64,
        key: Vec<u8>,
        client: usize,
    },
}

/// The clients of a run.
#[derive(Debug)]
pub struct Workload {
    pending: Vec<Option<Pending>>,
    written: Vec<u64>,
    pub keys: Vec<Vec<u8>>,
    pub history: Vec<Operation>,
    next_op: u64,
    /// No new operations (the final phase).
    pub stopped: bool,
    pub timeout_us: u64,
    pub think_max_us: u64,
}

impl Workload {
    /// `clients` clients over `key_count` keys.
    pub fn new(clients: usize, key_count: usize, timeout_us: u64, think_max_us: u64) -> Workload {
        Workload {
            pending: vec![None; clients],
            written: vec![0; clients],
            keys: (0..key_count)
                .map(|k| format!("k{k}").into_bytes())
                .collect(),
            history: Vec::new(),
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
    ) -> Option<Request> {
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
        let key = self.keys[rng.below(self.keys.len() as u64) as usize].clone();
        let kind = match rng.below(100) {
            0..35 => OpKind::Put,
            35..45 => OpKind::Delete,
            45..80 => OpKind::LinearizableGet,
            _ => OpKind::SerializableGet,
        };
        self.next_op += 1;
        let op = self.next_op;
        let waiter = Waiter { client, op };
        let mut value = Vec::new();
        let request = match kind {
            OpKind::Put => {
                self.written[client] += 1;
                value = format!("c{client}-{}", self.written[client]).into_bytes();
                Request::Propose {
                    node,
                    command: ringraft::kv::KvCommand::put(&key, &value),
                    waiter,
                }
            }
            OpKind::Delete => Request::Propose {
                node,
                command: ringraft::kv::KvCommand::delete(&key),
                waiter,
            },
            OpKind::LinearizableGet => Request::Read {
                node,
                key: key.clone(),
                waiter,
            },
            OpKind::SerializableGet => {
                stats.serializable_reads += 1;
                return Some(Request::LocalRead { node, key, client });
            }
        };
        self.pending[client] = Some(Pending {
            op,
            kind,
            key,
            value,
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
    pub fn answer(&mut self, reply: &Reply, now_us: u64, stats: &mut Stats) -> bool {
        let client = reply.waiter.client;
        let Some(pending) = self.pending[client].take_if(|p| p.op == reply.waiter.op) else {
            return false;
        };
        let id = client as u64;
        match (&reply.answer, pending.kind) {
            (Answer::Written(_), OpKind::Put) => {
                stats.writes_acknowledged += 1;
                self.history.push(Operation::put(
                    id,
                    pending.call_us,
                    now_us,
                    pending.key,
                    pending.value,
                ));
            }
            (Answer::Written(_), OpKind::Delete) => {
                stats.writes_acknowledged += 1;
                self.history
                    .push(Operation::delete(id, pending.call_us, now_us, pending.key));
            }
            (Answer::Value(Some(value)), OpKind::LinearizableGet) => {
                stats.linearizable_reads += 1;
                self.history.push(Operation::get(
                    id,
                    pending.call_us,
                    now_us,
                    pending.key,
                    value.clone(),
                ));
            }
            (Answer::Value(None), OpKind::LinearizableGet) => {
                stats.linearizable_reads += 1;
                self.history.push(Operation::get_none(
                    id,
                    pending.call_us,
                    now_us,
                    pending.key,
                ));
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
        let id = client as u64;
        match pending.kind {
            OpKind::Put => {
                stats.writes_unknown += 1;
                self.history.push(Operation::put_unknown(
                    id,
                    pending.call_us,
                    pending.key,
                    pending.value,
                ));
            }
            OpKind::Delete => {
                stats.writes_unknown += 1;
                self.history
                    .push(Operation::delete_unknown(id, pending.call_us, pending.key));
            }
            OpKind::LinearizableGet | OpKind::SerializableGet => {}
        }
    }

    /// Ends the run: every outstanding write has an unknown outcome.
    pub fn finish(&mut self, stats: &mut Stats) {
        for client in 0..self.pending.len() {
            self.give_up(client, stats);
        }
    }
}
