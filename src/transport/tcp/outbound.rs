//! The peer port's outbound side: dialing a peer (TCP, then TLS with
//! [`TcpConfig::tls`], then the preamble), the writer task that owns each
//! peer's message connection, and the heartbeat round-trip bookkeeping.
//!
//! Owns: connect, handshake and write timeouts, batching queued messages
//! into one write, keepalive frames on a quiet link, noticing a
//! connection the peer closed, and reconnecting with jittered backoff.
//! Guarantees: a TLS connection is used only once the server's
//! certificate proved the member dialed; messages to one peer are written
//! in the order `send` accepted them. May not touch: the inbound side,
//! what a message means.

use super::config::TcpConfig;
use super::error::OutboundError;
use super::wire::{self, Preamble};
use super::{Hex, PeerStream, Shared};
use crate::metrics::{
    NODE_LABEL, PEER_LABEL, PEER_ROUND_TRIP_TIME_SECONDS, PEER_SEND_FAILURES_TOTAL,
    PEER_SENT_BYTES_TOTAL, PEER_SENT_MESSAGES_TOTAL,
};
use crate::raftpb::{Message, MessageType};
use crate::tls::peer;
use metrics::{Counter, Histogram, counter, histogram};
use prost::Message as _;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tracing::{debug, info, warn};

/// A writer's view of its connection, shared with `send`.
pub(super) const CONNECTING: u8 = 0;
pub(super) const CONNECTED: u8 = 1;
pub(super) const DISCONNECTED: u8 = 2;

/// A message accepted by `send`, with its encoded length computed there.
pub(super) struct Outgoing {
    pub(super) message: Message,
    pub(super) len: u32,
}

/// Heartbeats written to a peer and not answered yet, beyond which the
/// oldest is forgotten (a peer that stopped answering but not reading).
const MAX_UNANSWERED_HEARTBEATS: usize = 64;

/// Node `node`'s send failure counter towards `peer` (cached handle: no
/// label allocation per failure).
pub(super) fn failures_counter(node: u64, peer: u64) -> Counter {
    counter!(PEER_SEND_FAILURES_TOTAL, NODE_LABEL => node.to_string(), PEER_LABEL => peer.to_string())
}

/// The heartbeats written to one peer and not answered yet (term, time
/// written), oldest first, and the round-trip time histogram they feed;
/// see the module docs. Shared by the peer's writer and its inbound
/// connections.
pub(super) struct RoundTrips {
    unanswered: Mutex<VecDeque<(u64, Instant)>>,
    histogram: Histogram,
}

impl RoundTrips {
    pub(super) fn new(node: u64, peer: u64) -> RoundTrips {
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
    pub(super) fn answered(&self, term: u64) {
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
pub(super) struct Link {
    pub(super) queue: mpsc::Sender<Outgoing>,
    pub(super) state: Arc<AtomicU8>,
    writer: JoinHandle<()>,
    pub(super) failures: Counter,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// Starts the writer task of `peer` at `addr` on the transport's runtime.
pub(super) fn spawn_link(
    shared: &Shared,
    peer: u64,
    addr: String,
    round_trips: Arc<RoundTrips>,
) -> Link {
    let (queue, pending) = mpsc::channel(shared.config.queue_capacity);
    let state = Arc::new(AtomicU8::new(CONNECTING));
    let node = shared.id;
    let (node_label, peer_label) = (node.to_string(), peer.to_string());
    let writer = Writer {
        preamble: Preamble {
            kind: wire::KIND_MESSAGES,
            cluster_id: shared.cluster_id,
            from: node,
            to: peer,
        },
        addr,
        config: shared.config.clone(),
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
        writer: shared.runtime.spawn(writer.run()),
        failures: failures_counter(node, peer),
    }
}

/// Opens a connection to `preamble.to` at `addr`: TCP (no Nagle: raft's
/// small messages must not wait), the TLS handshake with `config.tls`
/// (failing unless the server proves `preamble.to`), then the preamble.
pub(super) async fn dial(
    config: &TcpConfig,
    preamble: Preamble,
    addr: &str,
) -> Result<PeerStream, OutboundError> {
    let connect_error = |source| OutboundError::Connect {
        addr: addr.to_string(),
        source,
    };
    let stream = timeout(config.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| OutboundError::ConnectTimeout {
            addr: addr.to_string(),
            timeout: config.connect_timeout,
        })?
        .map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    let mut stream: PeerStream = match &config.tls {
        None => Box::new(stream),
        Some(tls) => {
            let handshake = peer::connect(tls, stream, addr, preamble.to);
            let session = timeout(config.handshake_timeout, handshake)
                .await
                .map_err(|_| OutboundError::TlsTimeout {
                    addr: addr.to_string(),
                    timeout: config.handshake_timeout,
                })?
                .map_err(|source| OutboundError::Tls {
                    addr: addr.to_string(),
                    source,
                })?;
            Box::new(session)
        }
    };
    write_within(config.write_timeout, &mut stream, addr, &preamble.encode()).await?;
    Ok(stream)
}

/// Writes (and flushes: TLS buffers) `bytes` within `limit`.
async fn write_within(
    limit: Duration,
    stream: &mut PeerStream,
    addr: &str,
    bytes: &[u8],
) -> Result<(), OutboundError> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(OutboundError::Write {
            addr: addr.to_string(),
            source,
        }),
        Err(_) => Err(OutboundError::WriteTimeout {
            addr: addr.to_string(),
            timeout: limit,
        }),
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
    /// The preamble of every connection (its `to` is the peer).
    preamble: Preamble,
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
        let peer = Hex(self.preamble.to);
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

    async fn connect(&self) -> Result<PeerStream, OutboundError> {
        dial(&self.config, self.preamble, &self.addr).await
    }

    async fn write(&self, stream: &mut PeerStream, bytes: &[u8]) -> Result<(), OutboundError> {
        write_within(self.config.write_timeout, stream, &self.addr, bytes).await
    }

    /// Writes batches until the connection fails (`Err`) or the queue is
    /// closed (`Ok`).
    async fn serve(&mut self, mut stream: PeerStream) -> Result<(), OutboundError> {
        let mut batch = Vec::new();
        let mut heartbeats = Vec::new();
        let mut probe = [0u8; 1];
        let mut keepalive = tokio::time::interval(self.config.keepalive_interval);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Whether anything was written since the last keepalive tick.
        let mut written = true;
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
                _ = keepalive.tick() => {
                    if !std::mem::take(&mut written) {
                        self.write(&mut stream, &wire::KEEPALIVE_FRAME).await?;
                    }
                    continue;
                }
            };
            written = true;
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
            // Noted before the write: the peer's answer may arrive (on the
            // inbound connection, another task) before the write returns,
            // and an answer to a heartbeat not noted yet is dropped. A
            // failed write forgets them with the connection.
            self.round_trips.written(&heartbeats, Instant::now());
            if let Err(error) = self.write(&mut stream, &batch).await {
                self.failures.increment(count);
                self.round_trips.forget();
                return Err(error);
            }
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
                peer = %Hex(self.preamble.to),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(75) && d < Duration::from_millis(125));
        }
    }
}
