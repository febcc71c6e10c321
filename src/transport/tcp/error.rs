//! The TCP transport's errors: [`TcpTransportError`], returned to the
//! embedder, and the reasons a connection ended, which are only logged.
//!
//! Owns: the error types and their messages. May not touch: anything
//! else.

use super::wire::PROTOCOL_VERSION;
use crate::tls::{PeerHandshakeError, PeerIdentityError};
use crate::transport::SnapshotTransferError;
use std::io;
use std::time::Duration;

/// Why the TCP transport could not be set up or configured.
#[derive(Debug, thiserror::Error)]
pub enum TcpTransportError {
    /// [`super::TcpTransport::new`] was called outside a tokio runtime.
    #[error("TCP transport of node {node:#x}: must be created inside a tokio runtime")]
    NoRuntime {
        /// This node.
        node: u64,
    },
    /// The [`super::TcpConfig`] is inconsistent.
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
pub(super) enum InboundError {
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
    #[error("peer TLS: {0}")]
    Tls(#[from] PeerHandshakeError),
    #[error("preamble claims sender {claimed:#x}: {source}")]
    NotTheCertifiedMember {
        claimed: u64,
        source: PeerIdentityError,
    },
    #[error("nothing received for {0:?} (not even a keepalive)")]
    Idle(Duration),
}

/// Why an outbound connection ended or could not be made; logged, never
/// returned.
#[derive(Debug, thiserror::Error)]
pub(super) enum OutboundError {
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
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: String,
        source: PeerHandshakeError,
    },
    #[error("TLS with {addr}: no handshake within {timeout:?}")]
    TlsTimeout { addr: String, timeout: Duration },
}
