//! The simulated clock and the queue of everything due to happen.
//!
//! Owns: simulated time (microseconds since the run started) and the events
//! scheduled at future times.
//! Guarantees: events come out in time order; events due at the same
//! microsecond come out in the order they were scheduled (a sequence
//! number breaks ties), so a run is a pure function of its seed. Nothing
//! here reads a real clock.
//! May not touch: what events mean (the cluster dispatches them).

use ringraft::raftpb::Message;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The two IO paths of a persistence actor that may be busy at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoLane {
    /// The WAL's fdatasync.
    Sync,
    /// A snapshot save (its file write, fsync, directory fsync), which
    /// holds up the encoding of everything queued behind it.
    Snapshot,
}

/// Something due to happen to the cluster.
#[derive(Debug)]
pub enum Event {
    /// A node's clock ticks (ignored if the node restarted since: the
    /// incarnation differs).
    Tick { node: u64, incarnation: u64 },
    /// A raft message arrives at `message.to` (boxed: events move around
    /// the heap, and a message is large).
    Deliver { message: Box<Message> },
    /// One of the node's persistence IO steps has completed.
    PersistStep {
        node: u64,
        incarnation: u64,
        lane: IoLane,
    },
    /// A client decides on its next operation.
    ClientWake { client: usize },
    /// A crashed node boots again.
    Restart { node: u64 },
    /// Partitions end.
    Heal,
}

#[derive(Debug)]
struct Scheduled {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

/// The clock and the event queue.
#[derive(Debug, Default)]
pub struct Scheduler {
    now_us: u64,
    next_seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
}

impl Scheduler {
    /// The current simulated time.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Schedules `event` `delay_us` from now.
    pub fn after(&mut self, delay_us: u64, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled {
            at_us: self.now_us + delay_us,
            seq,
            event,
        }));
    }

    /// The next event due before `until_us`, advancing the clock to it; or
    /// `None` (and the clock at `until_us`) when there is none.
    pub fn next_before(&mut self, until_us: u64) -> Option<Event> {
        match self.queue.peek() {
            Some(Reverse(next)) if next.at_us < until_us => {
                let Reverse(next) = self.queue.pop()?;
                self.now_us = self.now_us.max(next.at_us);
                Some(next.event)
            }
            _ => {
                self.now_us = self.now_us.max(until_us);
                None
            }
        }
    }
}
