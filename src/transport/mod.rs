//! Sending raft messages between nodes.
//!
//! Owns: the [`Transport`] trait the raft actor sends through, the
//! [`PeerInbox`] it receives from, the snapshot transfer types
//! ([`OutgoingSnapshot`], [`IncomingSnapshot`]) and their wire format
//! ([`snapshot_stream`]), and the implementations: [`in_process`] (tokio
//! channels, for tests and benches) and [`tcp`] (length-prefixed prost
//! frames over TCP, between processes; it records the peer traffic
//! metrics declared in `crate::metrics`).
//!
//! Guarantees (every implementation): `send` never blocks and never waits
//! for the peer; a message that cannot be handed on is dropped (raft
//! retries) and the sender learns it only as an error, which it may report
//! to raft as unreachable; messages to one peer keep their order.
//!
//! A snapshot's state file does not travel as a message: `send_snapshot`
//! streams it in checksummed chunks ([`snapshot_stream`]), on a connection
//! of its own with TCP, and resolves only once the receiving node confirmed
//! the file received, checked and fsynced; the receiving node gets it as an
//! [`IncomingSnapshot`] through the sink it registered with
//! `accept_snapshots`.
//!
//! May not touch: raft state or what a message means; files (the node
//! opens the state file it sends and writes the one it receives).

pub mod in_process;
pub mod snapshot_stream;
pub mod tcp;

pub use in_process::InProcessNetwork;
pub use tcp::{TcpConfig, TcpTransport, TcpTransportError};

use crate::raftpb::Message;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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

    /// Streams the state file of the MsgSnap in `snapshot` to its
    /// recipient. The future resolves `Ok` only once the recipient
    /// confirmed the whole file received, checked and durable; it fails on
    /// any error, a refusal, or no progress for the transport's stall
    /// timeout. It holds at most a few chunks in memory.
    fn send_snapshot(&self, snapshot: OutgoingSnapshot) -> SnapshotDelivery;

    /// Where snapshots sent to this node go from now on; until called,
    /// incoming snapshots are refused.
    fn accept_snapshots(&self, sink: SnapshotSink);
}

/// A snapshot to stream to a follower.
#[derive(Debug)]
pub struct OutgoingSnapshot {
    /// The MsgSnap; its snapshot's data refers to the state file.
    pub message: Message,
    /// The state file.
    pub state_file: PathBuf,
    /// The state file's length, as the reference says.
    pub size_bytes: u64,
}

/// A snapshot arriving from the leader: its MsgSnap, then the state file's
/// bytes in order, each chunk already checked against its checksum. The
/// receiving node writes them down, checks the whole file, and answers
/// through `outcome` (`Err` with a reason it sends back); the transport
/// confirms to the sender only then. A chunk channel that closes early
/// means the transfer was lost.
#[derive(Debug)]
pub struct IncomingSnapshot {
    /// The MsgSnap.
    pub message: Message,
    /// The state file's bytes.
    pub chunks: mpsc::Receiver<Vec<u8>>,
    /// The node's verdict.
    pub outcome: oneshot::Sender<Result<(), String>>,
}

/// Where a transport hands incoming snapshots.
pub type SnapshotSink = mpsc::UnboundedSender<IncomingSnapshot>;

/// A snapshot transfer under way; see [`Transport::send_snapshot`].
pub type SnapshotDelivery =
    Pin<Box<dyn Future<Output = Result<(), SnapshotTransferError>> + Send + 'static>>;

/// Why a snapshot transfer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotTransferError {
    /// The peer is unknown, unreachable or refuses connections.
    #[error("snapshot to node {peer:#x}: unreachable: {reason}")]
    Unreachable {
        /// The recipient.
        peer: u64,
        /// Why.
        reason: String,
    },
    /// Reading the state file or the network failed.
    #[error("snapshot to or from node {peer:#x}: {what}: {source}")]
    Io {
        /// The other end.
        peer: u64,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// Nothing moved for the stall timeout.
    #[error("snapshot to or from node {peer:#x}: no progress for {after:?} while {what}")]
    Stalled {
        /// The other end.
        peer: u64,
        /// What was being waited for.
        what: &'static str,
        /// The stall timeout.
        after: Duration,
    },
    /// The other end refused the snapshot or broke the protocol.
    #[error("snapshot to or from node {peer:#x} refused: {reason}")]
    Refused {
        /// The other end.
        peer: u64,
        /// Why (as the refusing side said it).
        reason: String,
    },
}

/// The receiving end of a node's peer messages. Bounded: when the node
/// falls behind, the TCP transport stops reading its peers' connections
/// (back-pressure down to their writers, whose queues then refuse) and the
/// in-process transport refuses with [`TransportError::QueueFull`], instead
/// of messages piling up in memory.
pub type PeerInbox = mpsc::Receiver<Message>;

/// The sending end of a [`PeerInbox`], given to a transport.
pub type PeerInboxSender = mpsc::Sender<Message>;

/// Messages a [`PeerInbox`] holds by default ([`peer_inbox`]). The raft
/// actor takes up to 256 per loop pass; this is many passes of slack.
pub const DEFAULT_PEER_INBOX_CAPACITY: usize = 8192;

/// A new inbox of `capacity` messages (at least 1).
pub fn peer_inbox(capacity: usize) -> (PeerInboxSender, PeerInbox) {
    mpsc::channel(capacity.max(1))
}
