//! The simulated network between the nodes.
//!
//! Owns: which nodes are reachable, which directed links are cut
//! (partitions, symmetric or one-way), and the per-run fault rates: loss,
//! duplication, delay and the long delays that reorder messages.
//! Guarantees: a message to a node that is down or behind a cut link fails
//! to send (the transport reports it, as a refused connection would); one
//! that is sent may still be lost, duplicated, delayed or overtaken, and is
//! dropped on arrival if its link was cut meanwhile or its target is down.
//! Forwarded proposals (MsgProp) are never duplicated (see [`Network::send`]).
//! Every choice comes from the run's one RNG.
//! May not touch: raft; delivering is the cluster's job (it schedules
//! [`Event::Deliver`] here and steps the message when it is due).

use crate::rng::SimRng;
use crate::scheduler::{Event, Scheduler};
use ringraft::raftpb::{Message, MessageType};
use std::collections::BTreeSet;

/// Fault rates of one run.
#[derive(Debug, Clone, Copy)]
pub struct NetworkFaults {
    pub loss_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub delay_min_us: u64,
    pub delay_max_us: u64,
    /// Chance of a long delay (which reorders the message behind later
    /// ones).
    pub long_delay_per_mille: u64,
    pub long_delay_max_us: u64,
}

/// The network.
#[derive(Debug)]
pub struct Network {
    /// Nodes that are running.
    pub up: BTreeSet<u64>,
    cut: BTreeSet<(u64, u64)>,
    pub faults: NetworkFaults,
    /// Messages sent, lost, duplicated (for the summary).
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
}

impl Network {
    /// A network with no node up and no link cut.
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            up: BTreeSet::new(),
            cut: BTreeSet::new(),
            faults,
            sent: 0,
            lost: 0,
            duplicated: 0,
        }
    }

    /// Whether `from` can reach `to` now.
    pub fn reachable(&self, from: u64, to: u64) -> bool {
        self.up.contains(&to) && !self.cut.contains(&(from, to))
    }

    /// Sends `message`; false when it could not be sent.
    pub fn send(&mut self, message: Message, rng: &mut SimRng, sched: &mut Scheduler) -> bool {
        if !self.reachable(message.from, message.to) {
            return false;
        }
        self.sent += 1;
        if rng.chance(self.faults.loss_per_mille) {
            self.lost += 1;
            return true;
        }
        // Raft tolerates duplicated messages except forwarded proposals:
        // raft does not deduplicate them and the state machine has no
        // request ids to, so a duplicate applies twice (a put reverting a
        // later put). The real transport (TCP, no retransmission above
        // it) delivers each message at most once, which is what this
        // relies on.
        if message.msg_type() != MessageType::MsgProp && rng.chance(self.faults.duplicate_per_mille)
        {
            self.duplicated += 1;
            let delay = self.delay_us(rng);
            sched.after(
                delay,
                Event::Deliver {
                    message: Box::new(message.clone()),
                },
            );
        }
        let delay = self.delay_us(rng);
        sched.after(
            delay,
            Event::Deliver {
                message: Box::new(message),
            },
        );
        true
    }

    fn delay_us(&self, rng: &mut SimRng) -> u64 {
        if rng.chance(self.faults.long_delay_per_mille) {
            rng.range(self.faults.delay_max_us, self.faults.long_delay_max_us)
        } else {
            rng.range(self.faults.delay_min_us, self.faults.delay_max_us)
        }
    }

    /// Cuts both directions between the two groups.
    pub fn partition(&mut self, left: &[u64], right: &[u64]) {
        for &a in left {
            for &b in right {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether any link is cut.
    pub fn partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}
