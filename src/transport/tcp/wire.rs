//! The peer wire format: the preamble a connecting node sends first, and
//! the frames after it. All integers are big-endian (network order).
//!
//! Owns: the format below, encoding the preamble, reading and checking
//! it, reading one frame, and turning a peer URL into an address.
//! Guarantees: a length prefix alone never makes a reader allocate what it
//! claims; nothing read here can panic. May not touch: what a frame's
//! message means, sockets and TLS (the connection tasks own them).
//!
//! Each connection carries messages one way, from the connecting node to
//! the listening node; the listener never writes (with TLS: after the
//! handshake). The connecting side first sends a 32-byte preamble:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic [`MAGIC`] (`b"RRFT"`) |
//! | 4..6 | protocol version, u16 ([`PROTOCOL_VERSION`]) |
//! | 6..8 | connection kind, u16: 0 raft messages, 1 one snapshot ([`crate::transport::snapshot_stream`]) |
//! | 8..16 | cluster id, u64 |
//! | 16..24 | sender node id, u64 |
//! | 24..32 | recipient node id, u64 |
//!
//! A snapshot connection then carries one snapshot stream in both
//! directions and closes. A message connection carries frames, each a u32
//! length followed by that many bytes of a prost-encoded
//! [`crate::raftpb::Message`]. A frame of length 0 is a keepalive and
//! carries no message (version 2; version 1 had no keepalives). A frame
//! may be at most [`TcpConfig::max_message_bytes`] long, or
//! [`TcpConfig::max_snapshot_bytes`] if it is a MsgSnap (recognised by its
//! first two bytes, `08 07`: field 1, `type = 7`, which prost writes
//! first); a frame over the snapshot limit closes the connection as soon
//! as its length is read.

use super::config::TcpConfig;
use super::error::{InboundError, TcpTransportError};
use crate::raftpb::MessageType;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The first four bytes of every ringraft peer connection.
pub const MAGIC: [u8; 4] = *b"RRFT";

/// The version of the preamble and framing described in the module docs.
pub const PROTOCOL_VERSION: u16 = 2;

/// Connection kind: raft message frames, one way.
pub(super) const KIND_MESSAGES: u16 = 0;
/// Connection kind: one snapshot stream, both ways.
pub(super) const KIND_SNAPSHOT: u16 = 1;

/// Length in bytes of the connection preamble.
pub const PREAMBLE_LEN: usize = 32;

/// How a MsgSnap frame body starts: the key of field 1 (`type`, wire type
/// varint) and the one-byte varint 7. Only these two bytes are awaited
/// before an oversized frame is judged, so a sender that stalls after an
/// oversized length cannot keep the connection waiting for more.
const SNAP_PREFIX: [u8; 2] = [0x08, MessageType::MsgSnap as u8];

/// The frame a writer sends when it had nothing to send for a while.
pub(super) const KEEPALIVE_FRAME: [u8; 4] = [0; 4];

/// Read buffer of an inbound connection: many small frames per syscall.
pub(super) const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Receive buffers larger than this are given back after a frame, so one
/// snapshot does not pin its size for the life of the connection.
pub(super) const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

/// The fixed header a connecting node sends first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Preamble {
    pub(super) kind: u16,
    pub(super) cluster_id: u64,
    pub(super) from: u64,
    pub(super) to: u64,
}

impl Preamble {
    pub(super) fn encode(&self) -> [u8; PREAMBLE_LEN] {
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
    pub(super) async fn read<R: AsyncRead + Unpin>(
        reader: &mut R,
    ) -> Result<Preamble, InboundError> {
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
pub(super) fn peer_address(peer: u64, url: &str) -> Result<String, TcpTransportError> {
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
/// Reads one frame's body into `body`; `Ok(None)` at a clean end of stream.
/// The body grows with the bytes that actually arrive, so a length prefix
/// alone never allocates what it claims.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
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
    use crate::raftpb::Message;
    use prost::Message as _;

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
        assert_eq!(&bytes[4..6], &[0, 2]);
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
}
