//! Sending raft messages between nodes.
//!
//! Owns: the [`Transport`] trait the raft actor sends through, the
//! [`PeerInbox`] it receives from, and the implementations:
//! [`in_process`] (tokio channels, for tests and benches) and [`tcp`]
//! (length-prefixed prost frames over TCP, between processes; it records
//! the peer traffic metrics declared in `crate::metrics`).
//!
//! Guarantees (every implementation): `send` never blocks and never waits
//! for the peer; a message that cannot be handed on is dropped (raft
//! retries) and the sender learns it only as an error, which it may report
//! to raft as unreachable; messages to one peer keep their order.
//!
//! May not touch: raft state or what a message means.

pub mod in_process;
pub mod tcp;

pub use in_process::InProcessNetwork;
pub use tcp::{TcpConfig, TcpTransport, TcpTransportError};

use crate::raftpb::Message;
use tokio::sync::mpsc;

/// Why a message was not handed to its recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No node with that id is known (or it stopped).
    #[error("node {0:#x} is unreachable")]
    Unreachable(u64),
    /// The link is cut by a test, or the message is over the transport's
    /// size limit for its kind.
    #[error("link {from:#x} -> {to:#x} drops messages")]
    Dropped {
        /// The sender.
        from: u64,
        /// The recipient.
        to: u64,
    },
    /// The queue towards the peer is full; the message was dropped.
    #[error("queue to node {0:#x} is full")]
    QueueFull(u64),
}

/// Sends raft messages to peers; implementations must not block.
pub trait Transport: Send + Sync + 'static {
    /// Hands `message` to `message.to`, or fails at once.
    fn send(&self, message: Message) -> Result<(), TransportError>;

    /// Peer `id` is a member reachable at `peer_url` (called for every
    /// member at start and for every member a membership change adds).
    /// Transports that need no address ignore it.
    fn add_peer(&self, id: u64, peer_url: &str) {
        let _ = (id, peer_url);
    }

    /// Peer `id` left the cluster: stop sending to it.
    fn remove_peer(&self, id: u64) {
        let _ = id;
    }
}

/// The receiving end of a node's peer messages.
pub type PeerInbox = mpsc::UnboundedReceiver<Message>;
