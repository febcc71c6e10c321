//! The Readies the raft actor handed out and has not released yet.
//!
//! Owns: their queue, in Ready order, and the bytes they hold.
//! Guarantees: Readies leave in the order they came; one submitted to the
//! persistence actor leaves only once its number is acknowledged; one that
//! needed no persistence leaves as soon as every earlier one has. The byte
//! count is what back-pressure reads (`accepting`).
//! May not touch: raft, the persistence actor, the transport.

use crate::raft::Ready;
use std::collections::VecDeque;

/// A Ready handed out and not yet released.
pub(crate) struct InFlight {
    pub(crate) ready: Ready,
    /// Sent to the persistence actor (false: needed no persistence).
    pub(crate) submitted: bool,
    /// The bytes it holds, for back-pressure.
    pub(crate) bytes: usize,
    /// Its append messages already went out (`send_appends_early`).
    pub(crate) appends_sent: bool,
}

/// The queue of Readies in flight.
pub(crate) struct InFlightReadies {
    queue: VecDeque<InFlight>,
    bytes: usize,
    max_bytes: usize,
}

impl InFlightReadies {
    /// An empty queue that stops accepting at `max_bytes` (at least 1).
    pub(crate) fn new(max_bytes: usize) -> InFlightReadies {
        InFlightReadies {
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes: max_bytes.max(1),
        }
    }

    /// Whether new work may be taken (the bytes in flight are under the cap).
    pub(crate) fn accepting(&self) -> bool {
        self.bytes < self.max_bytes
    }

    /// Whether no Ready is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether any Ready waits for the persistence actor.
    pub(crate) fn awaiting_persistence(&self) -> bool {
        self.queue.iter().any(|flight| flight.submitted)
    }

    /// Queues `flight` behind every earlier Ready.
    pub(crate) fn push(&mut self, flight: InFlight) {
        self.bytes += flight.bytes;
        self.queue.push_back(flight);
    }

    /// Takes, in order, the Readies that may be released now that every
    /// Ready numbered up to `acked` is durable.
    pub(crate) fn take_released(&mut self, acked: u64) -> Vec<InFlight> {
        let mut released = Vec::new();
        while let Some(front) = self.queue.front() {
            if front.submitted && front.ready.number > acked {
                break;
            }
            let Some(flight) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= flight.bytes;
            released.push(flight);
        }
        released
    }
}
