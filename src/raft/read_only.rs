//! Linearizable reads without log writes (ReadIndex, Raft thesis §6.4).
//!
//! Owns: the leader's queue of read requests waiting for a heartbeat round to
//! confirm its leadership, and the [`ReadState`] answer handed to the
//! application.
//!
//! Guarantees: a request is answered only after a quorum acknowledged a
//! heartbeat sent after the request arrived, and with the commit index the
//! leader had when the request arrived; requests are answered in arrival
//! order (confirming a later one confirms every earlier one).
//!
//! May not touch: the log or the tracker; `Raft` feeds acknowledgements in
//! and decides what a quorum is.

use crate::raftpb::Message;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The answer to a read request: once the application has applied up to
/// `index`, a read of its state is linearizable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadState {
    /// The commit index at the time of the request.
    pub index: u64,
    /// The request's context, as given to `read_index`.
    pub request_ctx: Vec<u8>,
}

/// One read request waiting for leadership confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRead {
    /// The original MsgReadIndex (its `from` is who asked).
    pub request: Message,
    /// The commit index when it arrived.
    pub index: u64,
    /// Nodes that acknowledged a heartbeat carrying this request's context.
    pub acks: BTreeSet<u64>,
}

/// The leader's pending read requests, by context, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct ReadOnly {
    pending: HashMap<Vec<u8>, PendingRead>,
    queue: VecDeque<Vec<u8>>,
}

impl ReadOnly {
    /// Queues a read of `request` at commit index `index`. A context already
    /// pending is not queued twice.
    pub fn add_request(&mut self, index: u64, request: Message) {
        let context = request_context(&request);
        if self.pending.contains_key(&context) {
            return;
        }
        self.queue.push_back(context.clone());
        self.pending.insert(
            context,
            PendingRead {
                request,
                index,
                acks: BTreeSet::new(),
            },
        );
    }

    /// Records that `from` acknowledged the heartbeat carrying `context`;
    /// returns everyone who has, or `None` for an unknown context.
    pub fn recv_ack(&mut self, from: u64, context: &[u8]) -> Option<&BTreeSet<u64>> {
        let pending = self.pending.get_mut(context)?;
        pending.acks.insert(from);
        Some(&pending.acks)
    }

    /// Removes and returns every request up to and including the one with
    /// `context` (confirming a later heartbeat round confirms earlier ones).
    pub fn advance(&mut self, context: &[u8]) -> Vec<PendingRead> {
        let Some(position) = self.queue.iter().position(|c| c.as_slice() == context) else {
            return Vec::new();
        };
        self.queue
            .drain(..=position)
            .filter_map(|c| self.pending.remove(&c))
            .collect()
    }

    /// The context of the newest pending request.
    pub fn last_pending_request_ctx(&self) -> Option<&[u8]> {
        self.queue.back().map(Vec::as_slice)
    }

    /// Requests waiting.
    pub fn pending_count(&self) -> usize {
        self.queue.len()
    }

    /// Drops every pending request (on losing leadership).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.queue.clear();
    }
}

/// The context of a read request: the data of its single entry.
pub fn request_context(request: &Message) -> Vec<u8> {
    request
        .entries
        .first()
        .map(|e| e.data.to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::Entry;

    fn request(context: &[u8], from: u64) -> Message {
        Message {
            from,
            entries: vec![Entry::new(0, 0, context.to_vec())],
            ..Default::default()
        }
    }

    #[test]
    fn acks_are_counted_per_context() {
        let mut ro = ReadOnly::default();
        ro.add_request(5, request(b"a", 1));
        assert_eq!(ro.recv_ack(1, b"a").map(|a| a.len()), Some(1));
        assert_eq!(ro.recv_ack(2, b"a").map(|a| a.len()), Some(2));
        assert_eq!(
            ro.recv_ack(2, b"a").map(|a| a.len()),
            Some(2),
            "duplicate ack"
        );
        assert!(ro.recv_ack(2, b"unknown").is_none());
    }

    #[test]
    fn duplicate_context_is_queued_once() {
        let mut ro = ReadOnly::default();
        ro.add_request(5, request(b"a", 1));
        ro.add_request(7, request(b"a", 1));
        assert_eq!(ro.pending_count(), 1);
        let done = ro.advance(b"a");
        assert_eq!(done[0].index, 5, "the first request's index stands");
    }

    #[test]
    fn advance_confirms_earlier_requests_in_order() {
        let mut ro = ReadOnly::default();
        ro.add_request(5, request(b"a", 1));
        ro.add_request(6, request(b"b", 2));
        ro.add_request(7, request(b"c", 3));
        let done = ro.advance(b"b");
        let indexes: Vec<u64> = done.iter().map(|p| p.index).collect();
        assert_eq!(indexes, vec![5, 6]);
        assert_eq!(ro.pending_count(), 1);
        assert_eq!(ro.last_pending_request_ctx(), Some(&b"c"[..]));
        assert!(ro.advance(b"zz").is_empty());
        ro.clear();
        assert_eq!(ro.pending_count(), 0);
    }
}
