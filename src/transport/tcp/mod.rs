//! The TCP transport: raft messages between processes as length-prefixed
//! prost frames over one outbound connection per peer, optionally inside
//! mutually authenticated TLS.
//!
//! One concept a file:
//! - [`wire`]: the preamble and frame format (below), and reading frames;
//! - [`config`]: [`TcpConfig`], the limits and timeouts;
//! - `error`: [`TcpTransportError`] and the logged connection errors;
//! - `outbound`: dialing a peer (TCP, TLS, preamble), the writer task of
//!   each peer (batching, keepalives, reconnect with backoff) and the
//!   heartbeat round-trip bookkeeping;
//! - `inbound`: the accept loops and the connection tasks (TLS, preamble
//!   and frame validation, idle timeout);
//! - this file: the peer table and [`TcpTransport`] itself.
//!
//! Owns: the peer table (id → address, outbound queue, writer task), the
//! connection tasks, and recording the peer traffic metrics declared in
//! [`crate::metrics`] (labels `node`, this node, and `peer`; every series
//! of a peer is registered when the peer is added).
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
//! closes that one connection with a warning. An inbound connection silent
//! for [`TcpConfig::idle_timeout`] is closed (writers send an empty
//! keepalive frame when they have had nothing to send for
//! [`TcpConfig::keepalive_interval`]). A full inbox stops the reading of
//! inbound connections (back-pressure to the senders) rather than growing.
//! With [`TcpConfig::tls`] every connection, both directions and snapshot
//! connections alike, is TLS with certificates verified both ways, and the
//! member-id rule of [`crate::tls`] is enforced: a plaintext or
//! unauthenticated peer is refused before its preamble is read.
//! No task outlives [`TcpTransport::shutdown`] (also run on drop) for longer
//! than it takes to notice the signal.
//!
//! May not touch: raft state or what a message means (only `from`, `to`,
//! whether it is a MsgSnap, and the type and term of heartbeats and their
//! responses are looked at); the recorder or exporter of the metrics;
//! certificates (`crate::tls` loads and checks them).

pub mod config;
mod error;
mod inbound;
mod outbound;
pub mod wire;

pub use config::TcpConfig;
pub use error::TcpTransportError;
pub use wire::{MAGIC, PREAMBLE_LEN, PROTOCOL_VERSION};

use super::snapshot_stream;
use super::{
    OutgoingSnapshot, PeerInboxSender, SnapshotDelivery, SnapshotSink, SnapshotTransferError,
    Transport, TransportError,
};
use crate::metrics::register_peer;
use crate::raftpb::Message;
use outbound::{CONNECTED, DISCONNECTED, Link, Outgoing, RoundTrips};
use prost::Message as _;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// A peer connection's byte stream: plain TCP or TLS over it.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// A connection after TCP (and TLS) set-up, whichever it is.
type PeerStream = Box<dyn PeerIo>;

/// One known peer.
pub(super) struct Peer {
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

pub(super) struct Shared {
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
        inbox: PeerInboxSender,
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
        let task = inbound::accept_loop(Arc::clone(&self.shared), listener, local, inbox);
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
        outbound::spawn_link(&self.shared, peer, addr, round_trips)
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
        let link = match wire::peer_address(id, peer_url) {
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
            let addr = wire::peer_address(to, &url).map_err(|e| unreachable(e.to_string()))?;
            let mut file = snapshot_stream::open_state_file(to, &snapshot.state_file).await?;
            let config = &shared.config;
            let dialed = outbound::dial(
                config,
                wire::Preamble {
                    kind: wire::KIND_SNAPSHOT,
                    cluster_id: shared.cluster_id,
                    from: shared.id,
                    to,
                },
                &addr,
            );
            let mut stream = dialed.await.map_err(|e| unreachable(e.to_string()))?;
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
pub(super) struct Hex(pub(super) u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
