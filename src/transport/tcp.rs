//! The TCP transport: raft messages between processes as length-prefixed
//! prost frames over one outbound TCP connection per peer.
//!
//! Owns: the peer table (id → address, outbound queue, writer task), the
//! writer tasks (connect, preamble, batch and write, reconnect with backoff),
//! the accept loops and inbound connection tasks (preamble and frame
//! validation), the wire format below, and recording the peer traffic
//! metrics declared in [`crate::metrics`] (labels `node`, this node, and
//! `peer`; every series of a peer is registered when the peer is added).
//!
//! Round-trip time (`ringraft_network_peer_round_trip_time_seconds`): the
//! writer notes the time just before it writes a batch holding a
//! MsgHeartbeat, with the heartbeat's term; when a MsgHeartbeatResp of the
//! same term arrives from that peer, the oldest noted heartbeat of that
//! term is matched to it and the time in between is recorded. A peer
//! answers every heartbeat of its own term, in order (each direction is one
//! TCP connection), so the match is exact; heartbeats of older terms, and
//! all of them when the connection fails, are forgotten unanswered. The
//! time includes both nodes' queueing and the peer's raft actor turn, as
//! etcd's prober includes its HTTP handling. Only a leader sends
//! heartbeats, so only a leader's series move.
//!
//! Guarantees: as [`Transport`] says — `send` never blocks: it refuses a
//! message at once with [`TransportError::Unreachable`] when the peer is
//! unknown or currently known to be disconnected, with
//! [`TransportError::QueueFull`] when the peer's bounded queue is full, and
//! with [`TransportError::Dropped`] when the message is over the frame limit
//! for its kind; messages to one peer are written in the order they were
//! accepted. Messages queued or in flight when a connection fails are lost
//! (raft retries). Nothing read from the network can panic the process, and
//! no length prefix alone makes it allocate: a frame's buffer grows with
//! the bytes that actually arrive, up to the frame limit. Any invalid input
//! closes that one connection with a warning.
//! No task outlives [`TcpTransport::shutdown`] (also run on drop) for longer
//! than it takes to notice the signal.
//!
//! May not touch: raft state or what a message means (only `from`, `to`,
//! whether it is a MsgSnap, and the type and term of heartbeats and their
//! responses are looked at); the recorder or exporter of the metrics.
//!
//! # Wire format (all integers big-endian, i.e. network order)
//!
//! Each connection carries messages one way, from the connecting node to
//! the listening node; the listener never writes. The connecting side first
//! sends a 32-byte preamble:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic [`MAGIC`] (`b"RRFT"`) |
//! | 4..6 | protocol version, u16 ([`PROTOCOL_VERSION`]) |
//! | 6..8 | connection kind, u16: 0 raft messages, 1 one snapshot ([`super::snapshot_stream`]) |
//! | 8..16 | cluster id, u64 |
//! | 16..24 | sender node id, u64 |
//! | 24..32 | recipient node id, u64 |
//!
//! A snapshot connection then carries one snapshot stream in both
//! directions and closes. A message connection carries frames, each a u32
//! length followed by that many bytes of a
//! prost-encoded [`crate::raftpb::Message`]. A frame may be at most
//! [`TcpConfig::max_message_bytes`] long, or
//! [`TcpConfig::max_snapshot_bytes`] if it is a MsgSnap (recognised by its
//! first two bytes, `08 07`: field 1, `type = 7`, which prost writes
//! first); a frame over the snapshot limit closes the connection as soon as
//! its length is read.

use super::snapshot_stream::{self, StreamLimits};
use super::{
    OutgoingSnapshot, SnapshotDelivery, SnapshotSink, SnapshotTransferError, Transport,
    TransportError,
};
use crate::metrics::{
    NODE_LABEL, PEER_LABEL, PEER_RECEIVED_BYTES_TOTAL, PEER_ROUND_TRIP_TIME_SECONDS,
    PEER_SEND_FAILURES_TOTAL, PEER_SENT_BYTES_TOTAL, PEER_SENT_MESSAGES_TOTAL, register_peer,
};
use crate::raftpb::{Message, MessageType};
use metrics::{Counter, Histogram, counter, histogram};
use prost::Message as _;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

/// The first four bytes of every ringraft peer connection.
pub const MAGIC: [u8; 4] = *b"RRFT";

/// The version of the preamble and framing described in the module docs.
pub const PROTOCOL_VERSION: u16 = 1;

/// Connection kind: raft message frames, one way.
const KIND_MESSAGES: u16 = 0;
/// Connection kind: one snapshot stream, both ways.
const KIND_SNAPSHOT: u16 = 1;

/// Length in bytes of the connection preamble.
pub const PREAMBLE_LEN: usize = 32;

/// How a MsgSnap frame body starts: the key of field 1 (`type`, wire type
/// varint) and the one-byte varint 7. Only these two bytes are awaited
/// before an oversized frame is judged, so a sender that stalls after an
/// oversized length cannot keep the connection waiting for more.
const SNAP_PREFIX: [u8; 2] = [0x08, MessageType::MsgSnap as u8];

/// How long the accept loop rests after a failed `accept` (for example out
/// of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Read buffer of an inbound connection: many small frames per syscall.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Receive buffers larger than this are given back after a frame, so one
/// snapshot does not pin its size for the life of the connection.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

/// Settings of a [`TcpTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Messages that may wait for one peer's writer; beyond this `send`
    /// returns [`TransportError::QueueFull`].
    pub queue_capacity: usize,
    /// Largest frame of any message other than MsgSnap, sent or received.
    pub max_message_bytes: u32,
    /// Largest MsgSnap frame, sent or received.
    pub max_snapshot_bytes: u32,
    /// A writer stops taking more queued messages into one write once its
    /// buffer holds this many bytes (a single message may exceed it).
    pub max_batch_bytes: usize,
    /// First pause before reconnecting to a peer.
    pub backoff_initial: Duration,
    /// The pause doubles per failed attempt up to this.
    pub backoff_max: Duration,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for one batch write; a peer that stops reading for
    /// longer is treated as disconnected.
    pub write_timeout: Duration,
    /// Time an inbound connection has to send its preamble.
    pub handshake_timeout: Duration,
    /// A snapshot transfer that makes no progress (no chunk read or
    /// written, no confirmation) for this long fails.
    pub snapshot_stall_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            queue_capacity: 4096,
            max_message_bytes: 16 * 1024 * 1024,
            max_snapshot_bytes: 1024 * 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            snapshot_stall_timeout: Duration::from_secs(10),
        }
    }
}

impl TcpConfig {
    fn check(&self) -> Result<(), &'static str> {
        if self.queue_capacity == 0 {
            return Err("queue_capacity must be at least 1");
        }
        if self.max_message_bytes > self.max_snapshot_bytes {
            return Err("max_message_bytes must not exceed max_snapshot_bytes");
        }
        if self.max_batch_bytes == 0 {
            return Err("max_batch_bytes must be at least 1");
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return Err("backoff_initial must be non-zero and at most backoff_max");
        }
        if self.connect_timeout.is_zero()
            || self.write_timeout.is_zero()
            || self.handshake_timeout.is_zero()
            || self.snapshot_stall_timeout.is_zero()
        {
            return Err("timeouts must be non-zero");
        }
        Ok(())
    }

    fn snapshot_limits(&self) -> StreamLimits {
        StreamLimits {
            stall_timeout: self.snapshot_stall_timeout,
            max_message_bytes: self.max_message_bytes,
            ..StreamLimits::default()
        }
    }

    fn frame_limit(&self, msg_type: i32) -> u32 {
        if msg_type == MessageType::MsgSnap as i32 {
            self.max_snapshot_bytes
        } else {
            self.max_message_bytes
        }
    }
}

/// Why the TCP transport could not be set up or configured.
#[derive(Debug, thiserror::Error)]
pub enum TcpTransportError {
    /// [`TcpTransport::new`] was called outside a tokio runtime.
    #[error("TCP transport of node {node:#x}: must be created inside a tokio runtime")]
    NoRuntime {
        /// This node.
        node: u64,
    },
    /// The [`TcpConfig`] is inconsistent.
    #[error("TCP transport of node {node:#x}: invalid config: {reason}")]
    InvalidConfig {
        /// This node.
        node: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A peer URL is not `host:port`, optionally with a scheme and a path.
    #[error("peer {peer:#x}: invalid peer URL {url:?}: {reason}")]
    InvalidPeerUrl {
        /// The peer.
        peer: u64,
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The listener's local address could not be read.
    #[error("TCP transport of node {node:#x}: reading the listener's address: {source}")]
    ListenerAddress {
        /// This node.
        node: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The transport was shut down.
    #[error("TCP transport of node {node:#x} is shut down")]
    ShutDown {
        /// This node.
        node: u64,
    },
}

/// Why an inbound connection was closed; logged, never returned.
#[derive(Debug, thiserror::Error)]
enum InboundError {
    #[error("reading from the socket: {0}")]
    Io(#[from] io::Error),
    #[error("no complete preamble within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("bad magic {0:02x?}: not a ringraft peer connection")]
    BadMagic([u8; 4]),
    #[error("protocol version {0}, this node speaks {PROTOCOL_VERSION}")]
    BadVersion(u16),
    #[error("cluster id {got:#x}, this node is in cluster {expected:#x}")]
    WrongCluster { got: u64, expected: u64 },
    #[error("sender {0:#x} is not a known peer")]
    UnknownSender(u64),
    #[error("preamble addressed to node {got:#x}, this is node {expected:#x}")]
    WrongRecipient { got: u64, expected: u64 },
    #[error("connection closed inside a frame after {read} of {expected} bytes")]
    Truncated { read: usize, expected: usize },
    #[error("frame claims {len} bytes, over the limit of {limit} bytes")]
    FrameTooLarge { len: u32, limit: u32 },
    #[error("undecodable frame of {len} bytes: {source}")]
    Decode {
        len: usize,
        source: prost::DecodeError,
    },
    #[error("message from {got:#x} on the connection of peer {expected:#x}")]
    WrongFrom { got: u64, expected: u64 },
    #[error("message to {got:#x}, this is node {expected:#x}")]
    WrongTo { got: u64, expected: u64 },
    #[error("connection kind {0}, neither messages (0) nor a snapshot (1)")]
    BadKind(u16),
    #[error("snapshot transfer failed: {0}")]
    Snapshot(SnapshotTransferError),
}

/// Why an outbound connection ended or could not be made; logged, never
/// returned.
#[derive(Debug, thiserror::Error)]
enum OutboundError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connecting to {addr}: no answer within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("writing to {addr}: {source}")]
    Write { addr: String, source: io::Error },
    #[error("writing to {addr}: stalled for {timeout:?}")]
    WriteTimeout { addr: String, timeout: Duration },
    #[error("reading from {addr}: {source}")]
    Read { addr: String, source: io::Error },
    #[error("{addr} closed the connection")]
    ClosedByPeer { addr: String },
    #[error("{addr} sent data on a send-only connection")]
    UnexpectedData { addr: String },
}

/// The fixed header a connecting node sends first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Preamble {
    kind: u16,
    cluster_id: u64,
    from: u64,
    to: u64,
}

impl Preamble {
    fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut bytes = [0u8; PREAMBLE_LEN];
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        bytes[6..8].copy_from_slice(&self.kind.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.cluster_id.to_be_bytes());
        bytes[16..24].copy_from_slice(&self.from.to_be_bytes());
        bytes[24..32].copy_from_slice(&self.to.to_be_bytes());
        bytes
    }

    /// Reads and checks magic and version; the caller checks the ids. The
    /// magic is checked before the rest is awaited, so a stray client (an
    /// HTTP request, a port scanner) is turned away at once.
    async fn read<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Preamble, InboundError> {
        let mut magic = [0u8; 4];
        reader.read_exact(&mut magic).await?;
        if magic != MAGIC {
            return Err(InboundError::BadMagic(magic));
        }
        let mut rest = [0u8; PREAMBLE_LEN - 4];
        reader.read_exact(&mut rest).await?;
        let version = u16::from_be_bytes([rest[0], rest[1]]);
        if version != PROTOCOL_VERSION {
            return Err(InboundError::BadVersion(version));
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Ok(Preamble {
            kind: u16::from_be_bytes([rest[2], rest[3]]),
            cluster_id: word(4),
            from: word(12),
            to: word(20),
        })
    }
}

/// Turns a peer URL into the `host:port` to connect to: a scheme
/// (`http://`) and a path are dropped.
fn peer_address(peer: u64, url: &str) -> Result<String, TcpTransportError> {
    let invalid = |reason| TcpTransportError::InvalidPeerUrl {
        peer,
        url: url.to_string(),
        reason,
    };
    let trimmed = url.trim();
    let without_scheme = match trimmed.split_once("://") {
        Some((_, rest)) => rest,
        None => trimmed,
    };
    let authority = match without_scheme.split_once('/') {
        Some((authority, _)) => authority,
        None => without_scheme,
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| invalid("no port"))?;
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(invalid("port is not a number from 0 to 65535"));
    }
    Ok(authority.to_string())
}

/// A writer's view of its connection, shared with `send`.
const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

/// A message accepted by `send`, with its encoded length computed there.
struct Outgoing {
    message: Message,
    len: u32,
}

/// Heartbeats written to a peer and not answered yet, beyond which the
/// oldest is forgotten (a peer that stopped answering but not reading).
const MAX_UNANSWERED_HEARTBEATS: usize = 64;

/// Node `node`'s send failure counter towards `peer` (cached handle: no
/// label allocation per failure).
fn failures_counter(node: u64, peer: u64) -> Counter {
    counter!(PEER_SEND_FAILURES_TOTAL, NODE_LABEL => node.to_string(), PEER_LABEL => peer.to_string())
}

/// The heartbeats written to one peer and not answered yet (term, time
/// written), oldest first, and the round-trip time histogram they feed;
/// see the module docs. Shared by the peer's writer and its inbound
/// connections.
struct RoundTrips {
    unanswered: Mutex<VecDeque<(u64, Instant)>>,
    histogram: Histogram,
}

impl RoundTrips {
    fn new(node: u64, peer: u64) -> RoundTrips {
        RoundTrips {
            unanswered: Mutex::new(VecDeque::new()),
            histogram: histogram!(
                PEER_ROUND_TRIP_TIME_SECONDS,
                NODE_LABEL => node.to_string(),
                PEER_LABEL => peer.to_string()
            ),
        }
    }

    fn unanswered(&self) -> MutexGuard<'_, VecDeque<(u64, Instant)>> {
        self.unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Heartbeats of `terms` were written, the write starting `at`.
    fn written(&self, terms: &[u64], at: Instant) {
        if terms.is_empty() {
            return;
        }
        let mut unanswered = self.unanswered();
        for &term in terms {
            if unanswered.len() >= MAX_UNANSWERED_HEARTBEATS {
                unanswered.pop_front();
            }
            unanswered.push_back((term, at));
        }
    }

    /// A heartbeat response of `term` arrived: matched to the oldest
    /// unanswered heartbeat of that term (older terms are never answered).
    fn answered(&self, term: u64) {
        let now = Instant::now();
        let mut unanswered = self.unanswered();
        while let Some(&(sent_term, at)) = unanswered.front() {
            if sent_term > term {
                // A response to a heartbeat forgotten already.
                return;
            }
            unanswered.pop_front();
            if sent_term == term {
                drop(unanswered);
                self.histogram.record(now.saturating_duration_since(at));
                return;
            }
        }
    }

    /// The connection failed: what it carried is never answered.
    fn forget(&self) {
        self.unanswered().clear();
    }
}

/// The outbound side of one peer; dropping it stops the writer task.
struct Link {
    queue: mpsc::Sender<Outgoing>,
    state: Arc<AtomicU8>,
    writer: JoinHandle<()>,
    failures: Counter,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// One known peer.
struct Peer {
    url: String,
    /// Kept while the peer is a member, across changes of its URL.
    round_trips: Arc<RoundTrips>,
    /// `None` when the URL could not be parsed: the peer may connect to us,
    /// but we cannot reach it.
    link: Option<Link>,
    /// Dropped when the peer is removed, which closes its inbound
    /// connections (they hold receivers).
    alive: watch::Sender<()>,
}

struct Shared {
    id: u64,
    cluster_id: u64,
    config: TcpConfig,
    runtime: Handle,
    peers: RwLock<HashMap<u64, Peer>>,
    shutdown: watch::Sender<bool>,
    accept_loops: Mutex<Vec<JoinHandle<()>>>,
    /// Where incoming snapshots go; `None` until the node registers.
    snapshot_sink: Mutex<Option<SnapshotSink>>,
}

impl Shared {
    // Every update of these maps is a single insert, remove or take, so a
    // panic elsewhere while holding a lock cannot leave them inconsistent.
    fn peers(&self) -> RwLockReadGuard<'_, HashMap<u64, Peer>> {
        self.peers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn peers_mut(&self) -> RwLockWriteGuard<'_, HashMap<u64, Peer>> {
        self.peers.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot_sink(&self) -> Option<SnapshotSink> {
        self.snapshot_sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn accept_loops(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.accept_loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Sends raft messages to peers over TCP and receives theirs; see the
/// module docs. Shut down on drop.
pub struct TcpTransport {
    shared: Arc<Shared>,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node", &self.shared.id)
            .field("cluster", &self.shared.cluster_id)
            .field("shut_down", &self.shared.is_shut_down())
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// A transport for node `node_id` of cluster `cluster_id`, with no peers
    /// and no listener yet. Must be called inside a tokio runtime: its
    /// tasks run there.
    pub fn new(
        node_id: u64,
        cluster_id: u64,
        config: TcpConfig,
    ) -> Result<TcpTransport, TcpTransportError> {
        config
            .check()
            .map_err(|reason| TcpTransportError::InvalidConfig {
                node: node_id,
                reason,
            })?;
        let runtime =
            Handle::try_current().map_err(|_| TcpTransportError::NoRuntime { node: node_id })?;
        let (shutdown, _) = watch::channel(false);
        Ok(TcpTransport {
            shared: Arc::new(Shared {
                id: node_id,
                cluster_id,
                config,
                runtime,
                peers: RwLock::new(HashMap::new()),
                shutdown,
                accept_loops: Mutex::new(Vec::new()),
                snapshot_sink: Mutex::new(None),
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.shared.id
    }

    /// Accepts peer connections on `listener` until shutdown, handing every
    /// valid message to `inbox` (whose receiver is the node's
    /// [`super::PeerInbox`]). Returns the address listened on. May be
    /// called for several listeners.
    pub fn listen(
        &self,
        listener: TcpListener,
        inbox: mpsc::UnboundedSender<Message>,
    ) -> Result<SocketAddr, TcpTransportError> {
        let node = self.shared.id;
        let local = listener
            .local_addr()
            .map_err(|source| TcpTransportError::ListenerAddress { node, source })?;
        let mut loops = self.shared.accept_loops();
        // Checked under the lock that `shutdown` takes, so a loop started
        // now is either refused here or aborted there.
        if self.shared.is_shut_down() {
            return Err(TcpTransportError::ShutDown { node });
        }
        let task = accept_loop(Arc::clone(&self.shared), listener, local, inbox);
        loops.push(self.shared.runtime.spawn(task));
        info!(node = %Hex(node), %local, "listening for peers");
        Ok(local)
    }

    /// Whether the writer towards `peer` holds an established connection.
    pub fn is_connected(&self, peer: u64) -> bool {
        self.shared
            .peers()
            .get(&peer)
            .and_then(|p| p.link.as_ref())
            .is_some_and(|link| link.state.load(Ordering::Acquire) == CONNECTED)
    }

    /// Stops every writer task, accept loop and inbound connection and
    /// forgets all peers; later sends fail with
    /// [`TransportError::Unreachable`]. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        let mut loops = self.shared.accept_loops();
        self.shared.shutdown.send_replace(true);
        for task in loops.drain(..) {
            task.abort();
        }
        drop(loops);
        // Dropping the peers aborts their writers and closes their inbound
        // connections; other inbound connections watch `shutdown`.
        let peers = std::mem::take(&mut *self.shared.peers_mut());
        drop(peers);
    }

    fn spawn_link(&self, peer: u64, addr: String, round_trips: Arc<RoundTrips>) -> Link {
        let (queue, pending) = mpsc::channel(self.shared.config.queue_capacity);
        let state = Arc::new(AtomicU8::new(CONNECTING));
        let node = self.shared.id;
        let (node_label, peer_label) = (node.to_string(), peer.to_string());
        let writer = Writer {
            node,
            cluster_id: self.shared.cluster_id,
            peer,
            addr,
            config: self.shared.config.clone(),
            pending,
            state: Arc::clone(&state),
            sent_bytes: counter!(
                PEER_SENT_BYTES_TOTAL,
                NODE_LABEL => node_label.clone(),
                PEER_LABEL => peer_label.clone()
            ),
            sent_messages: counter!(
                PEER_SENT_MESSAGES_TOTAL,
                NODE_LABEL => node_label,
                PEER_LABEL => peer_label
            ),
            failures: failures_counter(node, peer),
            round_trips,
        };
        Link {
            queue,
            state,
            writer: self.shared.runtime.spawn(writer.run()),
            failures: failures_counter(node, peer),
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn send(&self, message: Message) -> Result<(), TransportError> {
        let to = message.to;
        let peers = self.shared.peers();
        let link = peers
            .get(&to)
            .and_then(|p| p.link.as_ref())
            .ok_or(TransportError::Unreachable(to))?;
        let refuse = |error: TransportError| {
            link.failures.increment(1);
            Err(error)
        };
        if link.state.load(Ordering::Acquire) == DISCONNECTED {
            return refuse(TransportError::Unreachable(to));
        }
        let limit = self.shared.config.frame_limit(message.msg_type);
        let encoded = message.encoded_len();
        let len = match u32::try_from(encoded) {
            Ok(len) if len <= limit => len,
            _ => {
                warn!(
                    peer = %Hex(to),
                    msg_type = message.msg_type,
                    bytes = encoded,
                    limit,
                    "message over the frame limit dropped"
                );
                return refuse(TransportError::Dropped {
                    from: self.shared.id,
                    to,
                });
            }
        };
        match link.queue.try_send(Outgoing { message, len }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => refuse(TransportError::QueueFull(to)),
            Err(mpsc::error::TrySendError::Closed(_)) => refuse(TransportError::Unreachable(to)),
        }
    }

    fn add_peer(&self, id: u64, peer_url: &str) {
        // Members lists include this node; it never connects to itself.
        if id == self.shared.id {
            return;
        }
        let mut peers = self.shared.peers_mut();
        // Checked under the peers lock: `shutdown` raises the flag before
        // it takes the peers, so no peer added here can outlive it.
        if self.shared.is_shut_down() {
            return;
        }
        if peers.get(&id).is_some_and(|p| p.url == peer_url) {
            return;
        }
        register_peer(self.shared.id, id);
        let round_trips = peers.get(&id).map_or_else(
            || Arc::new(RoundTrips::new(self.shared.id, id)),
            |p| Arc::clone(&p.round_trips),
        );
        let link = match peer_address(id, peer_url) {
            Ok(addr) => {
                info!(peer = %Hex(id), %addr, "peer added");
                Some(self.spawn_link(id, addr, Arc::clone(&round_trips)))
            }
            Err(error) => {
                warn!(peer = %Hex(id), %error, "peer added but cannot be reached");
                None
            }
        };
        match peers.entry(id) {
            // The old link is dropped (its writer stops); inbound
            // connections from the peer stay, as it is still a member.
            Entry::Occupied(mut known) => {
                let peer = known.get_mut();
                peer.url = peer_url.to_string();
                peer.link = link;
            }
            Entry::Vacant(slot) => {
                slot.insert(Peer {
                    url: peer_url.to_string(),
                    round_trips,
                    link,
                    alive: watch::channel(()).0,
                });
            }
        }
    }

    fn remove_peer(&self, id: u64) {
        let removed = self.shared.peers_mut().remove(&id);
        if removed.is_some() {
            info!(peer = %Hex(id), "peer removed");
        }
        drop(removed);
    }

    fn send_snapshot(&self, snapshot: OutgoingSnapshot) -> SnapshotDelivery {
        let to = snapshot.message.to;
        let url = self.shared.peers().get(&to).map(|p| p.url.clone());
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let unreachable =
                |reason: String| SnapshotTransferError::Unreachable { peer: to, reason };
            let url = url.ok_or_else(|| unreachable("not a known peer".into()))?;
            let addr = peer_address(to, &url).map_err(|e| unreachable(e.to_string()))?;
            let mut file = snapshot_stream::open_state_file(to, &snapshot.state_file).await?;
            let config = &shared.config;
            let mut stream = timeout(config.connect_timeout, TcpStream::connect(addr.as_str()))
                .await
                .map_err(|_| unreachable(format!("connecting to {addr} timed out")))?
                .map_err(|e| unreachable(format!("connecting to {addr}: {e}")))?;
            let preamble = Preamble {
                kind: KIND_SNAPSHOT,
                cluster_id: shared.cluster_id,
                from: shared.id,
                to,
            }
            .encode();
            timeout(config.connect_timeout, stream.write_all(&preamble))
                .await
                .map_err(|_| unreachable(format!("sending the preamble to {addr} timed out")))?
                .map_err(|e| unreachable(format!("sending the preamble to {addr}: {e}")))?;
            let limits = config.snapshot_limits();
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                sent = snapshot_stream::send(shared.id, &mut stream, &snapshot.message, &mut file, &limits) => sent,
                _ = shutdown.wait_for(|stopped| *stopped) => Err(unreachable("transport shut down".into())),
            }
        })
    }

    fn accept_snapshots(&self, sink: SnapshotSink) {
        *self
            .shared
            .snapshot_sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }
}

/// Formats a node id as hex, as [`TransportError`] does.
struct Hex(u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// `backoff` scaled by a random factor in [0.75, 1.25), so peers that lost
/// a node at the same moment do not reconnect in lockstep.
fn jittered(backoff: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let permille = 750 + u32::try_from(random % 500).unwrap_or(0);
    backoff
        .checked_mul(permille)
        .map_or(backoff, |scaled| scaled / 1000)
}

/// The task that owns the connection to one peer.
struct Writer {
    node: u64,
    cluster_id: u64,
    peer: u64,
    addr: String,
    config: TcpConfig,
    pending: mpsc::Receiver<Outgoing>,
    state: Arc<AtomicU8>,
    sent_bytes: Counter,
    sent_messages: Counter,
    failures: Counter,
    round_trips: Arc<RoundTrips>,
}

impl Writer {
    async fn run(mut self) {
        let peer = Hex(self.peer);
        let mut backoff = self.config.backoff_initial;
        let mut reported_down = false;
        loop {
            match self.connect().await {
                Ok(stream) => {
                    self.state.store(CONNECTED, Ordering::Release);
                    reported_down = false;
                    info!(%peer, addr = %self.addr, "connected to peer");
                    let since = Instant::now();
                    let ended = self.serve(stream).await;
                    self.state.store(DISCONNECTED, Ordering::Release);
                    let dropped = self.drop_pending();
                    match ended {
                        Ok(()) => return,
                        Err(error) => {
                            info!(%peer, %error, dropped, "disconnected from peer");
                        }
                    }
                    // A connection the peer closes at once (it does not
                    // know us yet) must not turn into a reconnect storm.
                    if since.elapsed() >= self.config.backoff_max {
                        backoff = self.config.backoff_initial;
                    }
                }
                Err(error) => {
                    self.state.store(DISCONNECTED, Ordering::Release);
                    let dropped = self.drop_pending();
                    if reported_down {
                        debug!(%peer, %error, dropped, "peer still unreachable");
                    } else {
                        info!(%peer, %error, dropped, "peer unreachable; retrying");
                        reported_down = true;
                    }
                }
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = backoff.saturating_mul(2).min(self.config.backoff_max);
        }
    }

    /// Drops what waits in the queue: it was meant for a connection that
    /// is gone, and raft resends what still matters.
    fn drop_pending(&mut self) -> u64 {
        self.round_trips.forget();
        let mut dropped = 0;
        while self.pending.try_recv().is_ok() {
            dropped += 1;
        }
        self.failures.increment(dropped);
        dropped
    }

    async fn connect(&self) -> Result<TcpStream, OutboundError> {
        let addr = &self.addr;
        let stream = timeout(
            self.config.connect_timeout,
            TcpStream::connect(addr.as_str()),
        )
        .await
        .map_err(|_| OutboundError::ConnectTimeout {
            addr: addr.clone(),
            timeout: self.config.connect_timeout,
        })?
        .map_err(|source| OutboundError::Connect {
            addr: addr.clone(),
            source,
        })?;
        // Raft's small messages (heartbeats, votes) must not wait for Nagle.
        stream
            .set_nodelay(true)
            .map_err(|source| OutboundError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let mut stream = stream;
        let preamble = Preamble {
            kind: KIND_MESSAGES,
            cluster_id: self.cluster_id,
            from: self.node,
            to: self.peer,
        }
        .encode();
        self.write(&mut stream, &preamble).await?;
        Ok(stream)
    }

    async fn write(&self, stream: &mut TcpStream, bytes: &[u8]) -> Result<(), OutboundError> {
        match timeout(self.config.write_timeout, stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(OutboundError::Write {
                addr: self.addr.clone(),
                source,
            }),
            Err(_) => Err(OutboundError::WriteTimeout {
                addr: self.addr.clone(),
                timeout: self.config.write_timeout,
            }),
        }
    }

    /// Writes batches until the connection fails (`Err`) or the queue is
    /// closed (`Ok`).
    async fn serve(&mut self, mut stream: TcpStream) -> Result<(), OutboundError> {
        let mut batch = Vec::new();
        let mut heartbeats = Vec::new();
        let mut probe = [0u8; 1];
        loop {
            // The listener never writes, so a readable socket means it
            // closed (or reset) the connection: notice that now rather
            // than at the next write, so `send` stops queueing.
            let first = tokio::select! {
                next = self.pending.recv() => match next {
                    Some(outgoing) => outgoing,
                    None => return Ok(()),
                },
                read = stream.read(&mut probe) => {
                    let addr = self.addr.clone();
                    return Err(match read {
                        Ok(0) => OutboundError::ClosedByPeer { addr },
                        Ok(_) => OutboundError::UnexpectedData { addr },
                        Err(source) => OutboundError::Read { addr, source },
                    });
                }
            };
            batch.clear();
            heartbeats.clear();
            let mut count = self.encode(first, &mut batch, &mut heartbeats);
            while batch.len() < self.config.max_batch_bytes {
                match self.pending.try_recv() {
                    Ok(outgoing) => count += self.encode(outgoing, &mut batch, &mut heartbeats),
                    Err(_) => break,
                }
            }
            if count == 0 {
                continue;
            }
            let started = Instant::now();
            if let Err(error) = self.write(&mut stream, &batch).await {
                self.failures.increment(count);
                return Err(error);
            }
            self.round_trips.written(&heartbeats, started);
            self.sent_bytes.increment(batch.len() as u64);
            self.sent_messages.increment(count);
            if batch.capacity() > self.config.max_batch_bytes.saturating_mul(2) {
                // A snapshot grew it; do not keep that much per peer.
                batch = Vec::new();
            }
        }
    }

    /// Appends one frame (and a heartbeat's term to `heartbeats`); returns
    /// 1, or 0 if the message could not be encoded (then it is dropped and
    /// counted as a failure).
    fn encode(&self, outgoing: Outgoing, batch: &mut Vec<u8>, heartbeats: &mut Vec<u64>) -> u64 {
        let start = batch.len();
        batch.extend_from_slice(&outgoing.len.to_be_bytes());
        let encoded = outgoing.message.encode(batch);
        let written = batch.len() - start - 4;
        if encoded.is_err() || u32::try_from(written).ok() != Some(outgoing.len) {
            warn!(
                peer = %Hex(self.peer),
                expected = outgoing.len,
                written,
                "message could not be encoded; dropped"
            );
            batch.truncate(start);
            self.failures.increment(1);
            return 0;
        }
        if outgoing.message.msg_type == MessageType::MsgHeartbeat as i32 {
            heartbeats.push(outgoing.message.term);
        }
        1
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    local: SocketAddr,
    inbox: mpsc::UnboundedSender<Message>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopped| *stopped) => return,
            () = inbox.closed() => {
                info!(%local, "node stopped receiving; no longer accepting peers");
                return;
            }
        };
        match accepted {
            Ok((stream, remote)) => {
                let task = inbound_connection(Arc::clone(&shared), stream, remote, inbox.clone());
                shared.runtime.spawn(task);
            }
            Err(error) => {
                warn!(%local, %error, "accepting a peer connection failed");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    _ = shutdown.wait_for(|stopped| *stopped) => return,
                }
            }
        }
    }
}

async fn inbound_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    inbox: mpsc::UnboundedSender<Message>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut peer = None;
    let ended = tokio::select! {
        ended = serve_inbound(&shared, stream, remote, &inbox, &mut peer) => ended,
        _ = shutdown.wait_for(|stopped| *stopped) => Ok(()),
    };
    match (ended, peer) {
        (Ok(()), Some(peer)) => info!(peer = %Hex(peer), %remote, "peer disconnected"),
        (Ok(()), None) => debug!(%remote, "connection closed before its preamble"),
        (Err(error), Some(peer)) => {
            warn!(peer = %Hex(peer), %remote, %error, "closing peer connection");
        }
        (Err(error), None) => warn!(%remote, %error, "refusing connection"),
    }
}

/// Reads the preamble, then frames until EOF or an error; sets `peer` once
/// the sender is accepted.
async fn serve_inbound(
    shared: &Shared,
    stream: TcpStream,
    remote: SocketAddr,
    inbox: &mpsc::UnboundedSender<Message>,
    peer: &mut Option<u64>,
) -> Result<(), InboundError> {
    let config = &shared.config;
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let preamble = timeout(config.handshake_timeout, Preamble::read(&mut reader))
        .await
        .map_err(|_| InboundError::HandshakeTimeout(config.handshake_timeout))??;
    if preamble.cluster_id != shared.cluster_id {
        return Err(InboundError::WrongCluster {
            got: preamble.cluster_id,
            expected: shared.cluster_id,
        });
    }
    if preamble.to != shared.id {
        return Err(InboundError::WrongRecipient {
            got: preamble.to,
            expected: shared.id,
        });
    }
    let from = preamble.from;
    if preamble.kind == KIND_SNAPSHOT {
        if !shared.peers().contains_key(&from) {
            return Err(InboundError::UnknownSender(from));
        }
        *peer = Some(from);
        let limits = config.snapshot_limits();
        info!(peer = %Hex(from), %remote, "receiving a snapshot");
        return snapshot_stream::receive(
            &mut reader,
            from,
            shared.id,
            &limits,
            shared.snapshot_sink(),
        )
        .await
        .map_err(InboundError::Snapshot);
    }
    if preamble.kind != KIND_MESSAGES {
        return Err(InboundError::BadKind(preamble.kind));
    }
    let (mut removed, round_trips) = shared
        .peers()
        .get(&from)
        .map(|p| (p.alive.subscribe(), Arc::clone(&p.round_trips)))
        .ok_or(InboundError::UnknownSender(from))?;
    *peer = Some(from);
    info!(peer = %Hex(from), %remote, "peer connected");
    let received = counter!(
        PEER_RECEIVED_BYTES_TOTAL,
        NODE_LABEL => shared.id.to_string(),
        PEER_LABEL => from.to_string()
    );
    let mut body = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, config, &mut body) => frame?,
            _ = removed.changed() => return Ok(()),
        };
        let Some(len) = frame else {
            return Ok(());
        };
        let message = Message::decode(body.as_slice())
            .map_err(|source| InboundError::Decode { len, source })?;
        let limit = config.frame_limit(message.msg_type);
        if len > limit as usize {
            // The probe saw a MsgSnap type first, but a later duplicate
            // field made it something else.
            return Err(InboundError::FrameTooLarge {
                len: u32::try_from(len).unwrap_or(u32::MAX),
                limit,
            });
        }
        if message.from != from {
            return Err(InboundError::WrongFrom {
                got: message.from,
                expected: from,
            });
        }
        if message.to != shared.id {
            return Err(InboundError::WrongTo {
                got: message.to,
                expected: shared.id,
            });
        }
        received.increment(4 + len as u64);
        if message.msg_type == MessageType::MsgHeartbeatResp as i32 {
            round_trips.answered(message.term);
        }
        if inbox.send(message).is_err() {
            // The node stopped; nobody wants the rest.
            return Ok(());
        }
        if body.capacity() > KEEP_BUFFER_BYTES {
            body = Vec::new();
        }
    }
}

/// Reads one frame's body into `body`; `Ok(None)` at a clean end of stream.
/// The body grows with the bytes that actually arrive, so a length prefix
/// alone never allocates what it claims.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    config: &TcpConfig,
    body: &mut Vec<u8>,
) -> Result<Option<usize>, InboundError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(InboundError::Truncated {
                read: filled,
                expected: header.len(),
            });
        }
        filled += n;
    }
    let len = u32::from_be_bytes(header);
    if len > config.max_snapshot_bytes {
        return Err(InboundError::FrameTooLarge {
            len,
            limit: config.max_snapshot_bytes,
        });
    }
    let expected = usize::try_from(len).map_err(|_| InboundError::FrameTooLarge {
        len,
        limit: config.max_snapshot_bytes,
    })?;
    body.clear();
    if len > config.max_message_bytes {
        body.resize(expected.min(SNAP_PREFIX.len()), 0);
        if let Err(error) = reader.read_exact(body).await {
            return Err(match error.kind() {
                io::ErrorKind::UnexpectedEof => InboundError::Truncated { read: 0, expected },
                _ => InboundError::Io(error),
            });
        }
        if body.as_slice() != SNAP_PREFIX {
            return Err(InboundError::FrameTooLarge {
                len,
                limit: config.max_message_bytes,
            });
        }
    }
    let rest = (expected - body.len()) as u64;
    (&mut *reader).take(rest).read_to_end(body).await?;
    if body.len() < expected {
        return Err(InboundError::Truncated {
            read: body.len(),
            expected,
        });
    }
    Ok(Some(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_with_and_without_scheme() {
        assert_eq!(
            peer_address(2, "127.0.0.1:7380").ok(),
            Some("127.0.0.1:7380".into())
        );
        assert_eq!(
            peer_address(2, "http://127.0.0.1:7380").ok(),
            Some("127.0.0.1:7380".into())
        );
        assert_eq!(
            peer_address(2, "http://node-b.example:7380/raft").ok(),
            Some("node-b.example:7380".into())
        );
        assert_eq!(
            peer_address(2, "[::1]:7380").ok(),
            Some("[::1]:7380".into())
        );
        assert!(peer_address(2, "127.0.0.1").is_err());
        assert!(peer_address(2, "http://:7380").is_err());
        assert!(peer_address(2, "127.0.0.1:99999").is_err());
    }

    #[tokio::test]
    async fn preamble_round_trips_big_endian() {
        let preamble = Preamble {
            kind: KIND_SNAPSHOT,
            cluster_id: 0x0102_0304_0506_0708,
            from: 1,
            to: 2,
        };
        let bytes = preamble.encode();
        assert_eq!(&bytes[0..4], b"RRFT");
        assert_eq!(&bytes[4..6], &[0, 1]);
        assert_eq!(&bytes[6..8], &[0, 1]);
        assert_eq!(&bytes[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[23], 1);
        assert_eq!(bytes[31], 2);
        let read = Preamble::read(&mut &bytes[..])
            .await
            .expect("valid preamble");
        assert_eq!(read, preamble);
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_unless_it_is_a_snapshot() {
        let config = TcpConfig {
            max_message_bytes: 16,
            max_snapshot_bytes: 1024,
            ..TcpConfig::default()
        };
        let snap = Message {
            msg_type: MessageType::MsgSnap as i32,
            to: 2,
            from: 1,
            context: vec![7; 64],
            ..Default::default()
        };
        let mut app = snap.clone();
        app.msg_type = MessageType::MsgApp as i32;
        let frame = |m: &Message| {
            let mut bytes = u32::try_from(m.encoded_len())
                .expect("small")
                .to_be_bytes()
                .to_vec();
            bytes.extend(m.encode_to_vec());
            bytes
        };
        let mut body = Vec::new();
        let read = read_frame(&mut &frame(&snap)[..], &config, &mut body).await;
        assert_eq!(read.ok().flatten(), Some(snap.encoded_len()));
        assert_eq!(Message::decode(body.as_slice()).ok(), Some(snap));
        let refused = read_frame(&mut &frame(&app)[..], &config, &mut body).await;
        assert!(matches!(
            refused,
            Err(InboundError::FrameTooLarge { limit: 16, .. })
        ));
        let huge = u32::MAX.to_be_bytes();
        let refused = read_frame(&mut &huge[..], &config, &mut body).await;
        assert!(matches!(
            refused,
            Err(InboundError::FrameTooLarge { limit: 1024, .. })
        ));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(75) && d < Duration::from_millis(125));
        }
    }
}
