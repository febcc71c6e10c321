//! Sending raft messages between nodes: the [`Transport`] trait the raft
//! actor sends through, and an in-process implementation over tokio
//! channels ([`InProcessNetwork`]) for tests and benches.
//!
//! Owns: the registry of in-process nodes (id → inbox) and the fault knobs
//! (directed links that drop messages).
//!
//! Guarantees: `send` never blocks and never waits for the peer; a message
//! to an unknown or stopped node, or over a cut link, is dropped (raft
//! retries), and the sender learns it only as an error it may report to
//! raft as unreachable. Messages on one link keep their order.
//!
//! May not touch: raft state; what a message means. A TCP transport (length
//! prefixed prost frames) is a later slice.

use crate::raftpb::Message;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Why a message was not handed to its recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No node with that id is registered (or it stopped).
    #[error("node {0:#x} is unreachable")]
    Unreachable(u64),
    /// The link is cut by a test.
    #[error("link {from:#x} -> {to:#x} drops messages")]
    Dropped {
        /// The sender.
        from: u64,
        /// The recipient.
        to: u64,
    },
}

/// Sends raft messages to peers; implementations must not block.
pub trait Transport: Send + Sync + 'static {
    /// Hands `message` to `message.to`, or fails at once.
    fn send(&self, message: Message) -> Result<(), TransportError>;
}

/// The receiving end of a node's peer messages.
pub type PeerInbox = mpsc::UnboundedReceiver<Message>;

#[derive(Debug, Default)]
struct Registry {
    inboxes: HashMap<u64, mpsc::UnboundedSender<Message>>,
    cut: BTreeSet<(u64, u64)>,
}

/// Nodes of one process talking over tokio channels; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct InProcessNetwork {
    registry: Arc<Mutex<Registry>>,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> InProcessNetwork {
        InProcessNetwork::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry
        // inconsistent (every update is a single insert or remove).
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers node `id` (replacing an earlier registration, as after a
    /// restart) and returns its transport and inbox, to pass to
    /// `Node::start`.
    pub fn endpoint(&self, id: u64) -> (Arc<dyn Transport>, PeerInbox) {
        let (sender, inbox) = mpsc::unbounded_channel();
        self.lock().inboxes.insert(id, sender);
        let transport = InProcessTransport {
            from: id,
            network: self.clone(),
        };
        (Arc::new(transport), inbox)
    }

    /// Unregisters node `id`: messages to it are dropped.
    pub fn remove(&self, id: u64) {
        self.lock().inboxes.remove(&id);
    }

    /// Drops every message from `from` to `to` until healed.
    pub fn cut(&self, from: u64, to: u64) {
        self.lock().cut.insert((from, to));
    }

    /// Drops messages in both directions between `a` and `b`.
    pub fn partition(&self, a: u64, b: u64) {
        let mut registry = self.lock();
        registry.cut.insert((a, b));
        registry.cut.insert((b, a));
    }

    /// Drops every message to and from `id`.
    pub fn isolate(&self, id: u64) {
        let mut registry = self.lock();
        let others: Vec<u64> = registry
            .inboxes
            .keys()
            .copied()
            .filter(|&o| o != id)
            .collect();
        for other in others {
            registry.cut.insert((id, other));
            registry.cut.insert((other, id));
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    fn deliver(&self, from: u64, message: Message) -> Result<(), TransportError> {
        let to = message.to;
        let registry = self.lock();
        if registry.cut.contains(&(from, to)) {
            return Err(TransportError::Dropped { from, to });
        }
        let inbox = registry
            .inboxes
            .get(&to)
            .ok_or(TransportError::Unreachable(to))?;
        inbox
            .send(message)
            .map_err(|_| TransportError::Unreachable(to))
    }
}

/// One node's sending side of an [`InProcessNetwork`].
#[derive(Debug)]
struct InProcessTransport {
    from: u64,
    network: InProcessNetwork,
}

impl Transport for InProcessTransport {
    fn send(&self, message: Message) -> Result<(), TransportError> {
        self.network.deliver(self.from, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: u64, to: u64) -> Message {
        Message {
            from,
            to,
            ..Default::default()
        }
    }

    #[test]
    fn delivers_in_order_and_honours_cuts() {
        let network = InProcessNetwork::new();
        let (one, _inbox_one) = network.endpoint(1);
        let (_two, mut inbox_two) = network.endpoint(2);
        let mut first = message(1, 2);
        first.index = 1;
        let mut second = message(1, 2);
        second.index = 2;
        one.send(first).expect("delivered");
        one.send(second).expect("delivered");
        assert_eq!(inbox_two.try_recv().map(|m| m.index), Ok(1));
        assert_eq!(inbox_two.try_recv().map(|m| m.index), Ok(2));
        network.cut(1, 2);
        assert_eq!(
            one.send(message(1, 2)),
            Err(TransportError::Dropped { from: 1, to: 2 })
        );
        network.heal();
        assert!(one.send(message(1, 2)).is_ok());
        assert_eq!(one.send(message(1, 9)), Err(TransportError::Unreachable(9)));
        network.remove(2);
        assert_eq!(one.send(message(1, 2)), Err(TransportError::Unreachable(2)));
    }
}
