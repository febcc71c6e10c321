//! [`TcpConfig`]: the TCP transport's limits, timeouts and TLS.
//!
//! Owns: the settings and their consistency check. May not touch:
//! connections (the transport's tasks read these settings).

use super::super::snapshot_stream::StreamLimits;
use crate::raftpb::MessageType;
use crate::tls::PeerTlsConfig;
use std::time::Duration;

/// Settings of a [`TcpTransport`].
#[derive(Clone, Debug)]
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
    /// A writer with nothing to send for this long sends an empty
    /// keepalive frame, so a quiet but healthy link is not taken for a
    /// dead one.
    pub keepalive_interval: Duration,
    /// An inbound message connection that delivers nothing (not even a
    /// keepalive) for this long is closed: a silent peer does not hold a
    /// connection and its descriptor forever. At least twice
    /// `keepalive_interval`.
    pub idle_timeout: Duration,
    /// Peer TLS (`crate::tls::PeerTls::load` builds it): every connection
    /// in both directions is TLS with certificates verified both ways and
    /// the member-id rule enforced; plaintext is refused. `None`: plain
    /// TCP, and whoever reaches the peer port can speak raft.
    pub tls: Option<PeerTlsConfig>,
    /// Inbound connections served at once per listener; more are closed
    /// at accept. Members need two each (messages, a snapshot), so this
    /// only bounds what strangers can hold open.
    pub max_inbound_connections: usize,
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
            keepalive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            tls: None,
            max_inbound_connections: 1024,
        }
    }
}

impl TcpConfig {
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.queue_capacity == 0 {
            return Err("queue_capacity must be at least 1");
        }
        if self.max_message_bytes > self.max_snapshot_bytes {
            return Err("max_message_bytes must not exceed max_snapshot_bytes");
        }
        if self.max_inbound_connections == 0 {
            return Err("max_inbound_connections must be at least 1");
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
            || self.keepalive_interval.is_zero()
        {
            return Err("timeouts must be non-zero");
        }
        if self.idle_timeout < self.keepalive_interval.saturating_mul(2) {
            return Err("idle_timeout must be at least twice keepalive_interval");
        }
        Ok(())
    }

    pub(super) fn snapshot_limits(&self) -> StreamLimits {
        StreamLimits {
            stall_timeout: self.snapshot_stall_timeout,
            max_message_bytes: self.max_message_bytes,
            ..StreamLimits::default()
        }
    }

    pub(super) fn frame_limit(&self, msg_type: i32) -> u32 {
        if msg_type == MessageType::MsgSnap as i32 {
            self.max_snapshot_bytes
        } else {
            self.max_message_bytes
        }
    }
}
