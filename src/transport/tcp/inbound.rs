//! The peer port's inbound side: the accept loops, and one task per
//! connection that runs the TLS handshake (with [`TcpConfig::tls`]), reads
//! and checks the preamble, then reads frames into the node's inbox or
//! hands a snapshot stream to the node's sink.
//!
//! Owns: accepting (at most [`TcpConfig::max_inbound_connections`] at a
//! time; failed accepts, such as running out of descriptors, pause the
//! loop instead of spinning), the handshake and preamble timeouts, the
//! member-id check of a certified sender against its preamble, the idle
//! timeout, and validating every frame. Guarantees: a connection is
//! served only for a known member of this cluster addressing this node,
//! proven by its certificate when TLS is on; a full inbox stops reading
//! (back-pressure) rather than buffering. May not touch: the outbound
//! side, what a message means.

use super::config::TcpConfig;
use super::error::InboundError;
use super::wire::{self, Preamble};
use super::{Hex, PeerStream, Shared};
use crate::metrics::{NODE_LABEL, PEER_LABEL, PEER_RECEIVED_BYTES_TOTAL};
use crate::raftpb::{Message, MessageType};
use crate::tls::{identity, peer};
use crate::transport::{PeerInboxSender, snapshot_stream};
use metrics::counter;
use prost::Message as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

/// How long the accept loop rests after a failed `accept` (for example out
/// of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until shutdown or until the node
/// stops reading its inbox.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    local: SocketAddr,
    inbox: PeerInboxSender,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let slots = Arc::new(Semaphore::new(shared.config.max_inbound_connections));
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
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    warn!(
                        %local,
                        %remote,
                        limit = shared.config.max_inbound_connections,
                        "too many peer connections; closing this one"
                    );
                    continue;
                };
                let task =
                    inbound_connection(Arc::clone(&shared), stream, remote, inbox.clone(), slot);
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

/// One inbound connection, from TCP accept to close; holds its `slot`
/// of the connection cap.
async fn inbound_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    inbox: PeerInboxSender,
    _slot: OwnedSemaphorePermit,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut peer = None;
    let ended = tokio::select! {
        ended = serve_connection(&shared, stream, remote, &inbox, &mut peer) => ended,
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

/// The TLS handshake (if configured), then [`serve_inbound`].
async fn serve_connection(
    shared: &Shared,
    stream: TcpStream,
    remote: SocketAddr,
    inbox: &PeerInboxSender,
    peer: &mut Option<u64>,
) -> Result<(), InboundError> {
    let config = &shared.config;
    let (stream, certified): (PeerStream, Option<u64>) = match &config.tls {
        None => (Box::new(stream), None),
        Some(tls) => {
            let (session, member) = timeout(config.handshake_timeout, peer::accept(tls, stream))
                .await
                .map_err(|_| InboundError::HandshakeTimeout(config.handshake_timeout))??;
            (Box::new(session), Some(member))
        }
    };
    serve_inbound(shared, stream, remote, inbox, certified, peer).await
}

/// Reads the preamble, then frames until EOF or an error; sets `peer` once
/// the sender is accepted. `certified`: the member the TLS client
/// certificate proved, which the preamble's sender must be.
async fn serve_inbound(
    shared: &Shared,
    stream: PeerStream,
    remote: SocketAddr,
    inbox: &PeerInboxSender,
    certified: Option<u64>,
    peer: &mut Option<u64>,
) -> Result<(), InboundError> {
    let config = &shared.config;
    let mut reader = BufReader::with_capacity(wire::READ_BUFFER_BYTES, stream);
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
    if let Some(proven) = certified {
        identity::check_claim(proven, from).map_err(|source| {
            InboundError::NotTheCertifiedMember {
                claimed: from,
                source,
            }
        })?;
    }
    if preamble.kind == wire::KIND_SNAPSHOT {
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
    if preamble.kind != wire::KIND_MESSAGES {
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
    let mut idle = IdleWatch::new(config.idle_timeout);
    loop {
        let frame = {
            let read = wire::read_frame(&mut reader, config, &mut body);
            tokio::pin!(read);
            loop {
                tokio::select! {
                    frame = &mut read => break frame?,
                    _ = removed.changed() => return Ok(()),
                    () = &mut idle.deadline => idle.check()?,
                }
            }
        };
        idle.heard = true;
        let Some(len) = frame else {
            return Ok(());
        };
        if len == 0 {
            continue; // a keepalive
        }
        let message = checked_message(shared, from, len, &body)?;
        received.increment(4 + len as u64);
        if message.msg_type == MessageType::MsgHeartbeatResp as i32 {
            round_trips.answered(message.term);
        }
        if inbox.send(message).await.is_err() {
            // The node stopped; nobody wants the rest.
            return Ok(());
        }
        if body.capacity() > wire::KEEP_BUFFER_BYTES {
            body = Vec::new();
        }
    }
}

/// Decodes a frame's body and checks it is a message from `from` to this
/// node within the frame limit of its type.
fn checked_message(
    shared: &Shared,
    from: u64,
    len: usize,
    body: &[u8],
) -> Result<Message, InboundError> {
    let config: &TcpConfig = &shared.config;
    let message = Message::decode(body).map_err(|source| InboundError::Decode { len, source })?;
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
    Ok(message)
}

/// Closes a connection that delivers no frame for its timeout. Checked
/// when the timer fires rather than re-armed per frame (a timer per frame
/// would take the timer driver's lock at every message), so a silent
/// connection is closed between one and two timeouts after its last frame.
struct IdleWatch {
    timeout: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// A frame arrived since the timer was last armed.
    heard: bool,
}

impl IdleWatch {
    fn new(timeout: Duration) -> IdleWatch {
        IdleWatch {
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            heard: false,
        }
    }

    /// The timer fired: re-arm it if a frame arrived meanwhile, else fail.
    fn check(&mut self) -> Result<(), InboundError> {
        if !std::mem::take(&mut self.heard) {
            return Err(InboundError::Idle(self.timeout));
        }
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
        Ok(())
    }
}
