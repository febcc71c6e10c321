//! The snapshot stream: how a state file travels from leader to follower
//! over one bidirectional byte stream (a TCP connection of its own, or an
//! in-memory pipe between in-process nodes), in fixed-size checksummed
//! chunks, ending with the follower's confirmation.
//!
//! Why a connection of its own rather than frames on the peer connection:
//! a state file of hundreds of MiB would sit in front of heartbeats and
//! appends on the message connection for seconds (head-of-line blocking,
//! elections); the message connection is one-way, and the confirmation
//! needs a way back; and a stall or failure of the transfer closes only
//! its own connection.
//!
//! # Wire format (after the TCP preamble, integers big-endian)
//!
//! Sender to receiver:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | length `n` of the MsgSnap, u32 (at most the message frame limit) |
//! | n | the MsgSnap, a prost-encoded `raftpb.Message` whose snapshot data is a state file reference |
//! | then, per chunk: 4 | chunk length `c`, u32, 1 ..= [`MAX_CHUNK_BYTES`] |
//! | 4 | CRC-32C of the chunk, u32 |
//! | c | the chunk |
//! | at the end: 4 | 0 (no more chunks) |
//! | 4 | CRC-32C of the whole file, u32 |
//!
//! Receiver to sender, once, at the end (or at the first error, best
//! effort): one status byte (0: the file is received, checked and durable;
//! 1: refused), a u16 length and that many bytes of UTF-8 reason.
//!
//! Owns: that format, the stall timeout on every read, write and wait,
//! the transfer metrics (bytes, durations, in flight, failures) and a
//! progress log line every [`PROGRESS_LOG_BYTES`].
//! Guarantees: at most one chunk (plus the receiving node's small channel)
//! is in memory on either side; a chunk whose checksum fails, a length
//! over the limits, or a stream that ends early fails the transfer on both
//! sides; the sender's `Ok` means the receiver said status 0, which the
//! receiving node sends only after its file is checked and fsynced.
//! May not touch: files (the sender reads the state file it is given; the
//! receiving node writes), raft.

use super::{IncomingSnapshot, SnapshotSink, SnapshotTransferError};
use crate::metrics as names;
use crate::raftpb::{Message, MessageType};
use crate::snap::StateFileRef;
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};

/// Largest chunk accepted; what a sender writes (1 MiB: large sequential
/// writes, little memory).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks a receiving node may have waiting to be written down.
pub const CHUNKS_QUEUED: usize = 4;
/// A progress line is logged every this many bytes.
pub const PROGRESS_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// Longest reason sent back.
const MAX_REASON_BYTES: usize = 1024;

/// Settings of one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// No progress for this long fails the transfer.
    pub stall_timeout: Duration,
    /// Largest MsgSnap frame accepted.
    pub max_message_bytes: u32,
    /// Chunk size the sender uses (at most [`MAX_CHUNK_BYTES`]).
    pub chunk_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            stall_timeout: Duration::from_secs(10),
            max_message_bytes: 64 * 1024 * 1024,
            chunk_bytes: MAX_CHUNK_BYTES,
        }
    }
}

/// Metric handles of one node's transfers in one direction.
struct Meter {
    bytes: metrics::Counter,
    duration: metrics::Histogram,
    in_flight: metrics::Gauge,
    failures: metrics::Counter,
}

impl Meter {
    fn sending(node: u64) -> Meter {
        let label = [(names::NODE_LABEL, node.to_string())];
        Meter {
            bytes: metrics::counter!(names::SNAPSHOT_SENT_BYTES_TOTAL, &label),
            duration: metrics::histogram!(names::SNAPSHOT_SEND_DURATION_SECONDS, &label),
            in_flight: metrics::gauge!(names::SNAPSHOT_SENDS_IN_FLIGHT, &label),
            failures: metrics::counter!(names::SNAPSHOT_SEND_FAILURES_TOTAL, &label),
        }
    }

    fn receiving(node: u64) -> Meter {
        let label = [(names::NODE_LABEL, node.to_string())];
        Meter {
            bytes: metrics::counter!(names::SNAPSHOT_RECEIVED_BYTES_TOTAL, &label),
            duration: metrics::histogram!(names::SNAPSHOT_RECEIVE_DURATION_SECONDS, &label),
            in_flight: metrics::gauge!(names::SNAPSHOT_RECEIVES_IN_FLIGHT, &label),
            failures: metrics::counter!(names::SNAPSHOT_RECEIVE_FAILURES_TOTAL, &label),
        }
    }

    /// Runs `transfer`, recording it.
    async fn record<T>(
        &self,
        transfer: impl Future<Output = Result<T, SnapshotTransferError>>,
    ) -> Result<T, SnapshotTransferError> {
        let started = Instant::now();
        self.in_flight.increment(1.0);
        let outcome = transfer.await;
        self.in_flight.decrement(1.0);
        match &outcome {
            Ok(_) => self.duration.record(started.elapsed()),
            Err(_) => self.failures.increment(1),
        }
        outcome
    }
}

/// Progress of one transfer, for the log.
struct Progress {
    node: u64,
    peer: u64,
    index: u64,
    total_bytes: u64,
    moved_bytes: u64,
    next_log_bytes: u64,
    started: Instant,
    sending: bool,
}

impl Progress {
    fn new(node: u64, peer: u64, reference: &StateFileRef, sending: bool) -> Progress {
        Progress {
            node,
            peer,
            index: reference.index,
            total_bytes: reference.size_bytes,
            moved_bytes: 0,
            next_log_bytes: PROGRESS_LOG_BYTES,
            started: Instant::now(),
            sending,
        }
    }

    fn moved(&mut self, bytes: usize) {
        self.moved_bytes += bytes as u64;
        if self.moved_bytes >= self.next_log_bytes {
            self.next_log_bytes += PROGRESS_LOG_BYTES;
            let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                node = self.node,
                peer = self.peer,
                index = self.index,
                direction = if self.sending { "send" } else { "receive" },
                moved_mib = self.moved_bytes >> 20,
                total_mib = self.total_bytes >> 20,
                mib_per_second = (self.moved_bytes as f64 / elapsed / 1048576.0) as u64,
                "snapshot transfer progress"
            );
        }
    }
}

/// Runs `operation`, failing the transfer after `limits.stall_timeout`.
async fn within<T>(
    limits: &StreamLimits,
    peer: u64,
    what: &'static str,
    operation: impl Future<Output = std::io::Result<T>>,
) -> Result<T, SnapshotTransferError> {
    match timeout(limits.stall_timeout, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(SnapshotTransferError::Io {
            peer,
            what,
            source: Arc::new(source),
        }),
        Err(_) => Err(SnapshotTransferError::Stalled {
            peer,
            what,
            after: limits.stall_timeout,
        }),
    }
}

/// The state file reference of a MsgSnap, or why it is not a snapshot
/// this stream can carry.
pub fn state_file_ref(message: &Message) -> Result<StateFileRef, String> {
    if message.msg_type != MessageType::MsgSnap as i32 {
        return Err(format!("message type {}, not MsgSnap", message.msg_type));
    }
    let snapshot = message
        .snapshot
        .as_ref()
        .ok_or_else(|| "MsgSnap without a snapshot".to_string())?;
    StateFileRef::of_snapshot(snapshot)?
        .ok_or_else(|| "snapshot data is not a state file reference".to_string())
}

/// Opens the state file to send to `peer`.
pub async fn open_state_file(
    peer: u64,
    path: &std::path::Path,
) -> Result<tokio::fs::File, SnapshotTransferError> {
    tokio::fs::File::open(path)
        .await
        .map_err(|source| SnapshotTransferError::Io {
            peer,
            what: "opening the state file",
            source: Arc::new(source),
        })
}

/// Sends the MsgSnap `message` and the state file read from `file` over
/// `stream`, then waits for the receiver's confirmation. `node` is this
/// node (for metrics and logs).
pub async fn send<S, F>(
    node: u64,
    stream: &mut S,
    message: &Message,
    file: &mut F,
    limits: &StreamLimits,
) -> Result<(), SnapshotTransferError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: AsyncRead + Unpin,
{
    let meter = Meter::sending(node);
    meter
        .record(send_unmetered(
            node,
            stream,
            message,
            file,
            limits,
            &meter.bytes,
        ))
        .await
}

async fn send_unmetered<S, F>(
    node: u64,
    stream: &mut S,
    message: &Message,
    file: &mut F,
    limits: &StreamLimits,
    sent_bytes: &metrics::Counter,
) -> Result<(), SnapshotTransferError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: AsyncRead + Unpin,
{
    let peer = message.to;
    let reference = state_file_ref(message)
        .map_err(|reason| SnapshotTransferError::Refused { peer, reason })?;
    let mut frame = Vec::with_capacity(4 + message.encoded_len());
    frame.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode_raw(&mut frame);
    within(
        limits,
        peer,
        "sending the MsgSnap",
        stream.write_all(&frame),
    )
    .await?;
    let mut progress = Progress::new(node, peer, &reference, true);
    let chunk_bytes = limits.chunk_bytes.clamp(1, MAX_CHUNK_BYTES);
    let mut chunk = vec![0u8; chunk_bytes];
    let mut whole_crc = 0u32;
    let mut sent = 0u64;
    loop {
        let filled = within(
            limits,
            peer,
            "reading the state file",
            fill(file, &mut chunk),
        )
        .await?;
        if filled == 0 {
            break;
        }
        let data = &chunk[..filled];
        whole_crc = crc32c::crc32c_append(whole_crc, data);
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(filled as u32).to_be_bytes());
        header[4..].copy_from_slice(&crc32c::crc32c(data).to_be_bytes());
        within(limits, peer, "sending a chunk", async {
            stream.write_all(&header).await?;
            stream.write_all(data).await
        })
        .await?;
        sent += filled as u64;
        sent_bytes.increment(filled as u64);
        progress.moved(filled);
    }
    if sent != reference.size_bytes || whole_crc != reference.crc32c {
        return Err(SnapshotTransferError::Refused {
            peer,
            reason: format!(
                "the state file holds {sent} bytes with CRC {whole_crc:#010x}, its reference says {} bytes with CRC {:#010x}",
                reference.size_bytes, reference.crc32c
            ),
        });
    }
    let mut end = [0u8; 8];
    end[4..].copy_from_slice(&whole_crc.to_be_bytes());
    within(limits, peer, "ending the stream", async {
        stream.write_all(&end).await?;
        stream.flush().await
    })
    .await?;
    match read_status(stream, peer, limits).await? {
        Ok(()) => Ok(()),
        Err(reason) => Err(SnapshotTransferError::Refused { peer, reason }),
    }
}

/// Reads into `chunk` until it is full or the input ends; returns the
/// bytes read.
async fn fill<F: AsyncRead + Unpin>(file: &mut F, chunk: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < chunk.len() {
        let n = file.read(&mut chunk[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

async fn read_status<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: u64,
    limits: &StreamLimits,
) -> Result<Result<(), String>, SnapshotTransferError> {
    let mut head = [0u8; 3];
    within(
        limits,
        peer,
        "waiting for the confirmation",
        stream.read_exact(&mut head),
    )
    .await?;
    let len = usize::from(u16::from_be_bytes([head[1], head[2]])).min(MAX_REASON_BYTES);
    let mut reason = vec![0u8; len];
    within(
        limits,
        peer,
        "reading the refusal",
        stream.read_exact(&mut reason),
    )
    .await?;
    match head[0] {
        0 => Ok(Ok(())),
        _ => Ok(Err(String::from_utf8_lossy(&reason).into_owned())),
    }
}

async fn write_status<S: AsyncWrite + Unpin>(
    stream: &mut S,
    peer: u64,
    limits: &StreamLimits,
    outcome: &Result<(), String>,
) -> Result<(), SnapshotTransferError> {
    let (status, reason) = match outcome {
        Ok(()) => (0u8, &b""[..]),
        Err(reason) => (1u8, reason.as_bytes()),
    };
    let reason = &reason[..reason.len().min(MAX_REASON_BYTES)];
    let mut bytes = Vec::with_capacity(3 + reason.len());
    bytes.push(status);
    bytes.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    bytes.extend_from_slice(reason);
    within(limits, peer, "sending the confirmation", async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    })
    .await
}

/// Receives one snapshot from `from` for node `to` over `stream`, handing
/// it to `sink`, and answers the sender with the node's verdict.
pub async fn receive<S>(
    stream: &mut S,
    from: u64,
    to: u64,
    limits: &StreamLimits,
    sink: Option<SnapshotSink>,
) -> Result<(), SnapshotTransferError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let meter = Meter::receiving(to);
    meter
        .record(async {
            let outcome = receive_unmetered(stream, from, to, limits, sink, &meter.bytes).await;
            if let Err(error) = &outcome {
                // Best effort: the sender learns why instead of only
                // seeing the connection close.
                let refusal = Err(error.to_string());
                let _ = write_status(stream, from, limits, &refusal).await;
            }
            outcome
        })
        .await
}

async fn receive_unmetered<S>(
    stream: &mut S,
    from: u64,
    to: u64,
    limits: &StreamLimits,
    sink: Option<SnapshotSink>,
    received_bytes: &metrics::Counter,
) -> Result<(), SnapshotTransferError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let refused = |reason: String| SnapshotTransferError::Refused { peer: from, reason };
    let message = read_message(stream, from, limits).await?;
    if message.from != from || message.to != to {
        return Err(refused(format!(
            "MsgSnap from {:#x} to {:#x} on a connection from {from:#x} to {to:#x}",
            message.from, message.to
        )));
    }
    let reference = state_file_ref(&message).map_err(refused)?;
    let sink = sink.ok_or_else(|| refused("this node does not accept snapshots yet".into()))?;
    let (chunks, chunk_queue) = mpsc::channel(CHUNKS_QUEUED);
    let (outcome_sender, outcome) = oneshot::channel();
    sink.send(IncomingSnapshot {
        message,
        chunks: chunk_queue,
        outcome: outcome_sender,
    })
    .map_err(|_| refused("this node stopped".into()))?;
    let mut progress = Progress::new(to, from, &reference, false);
    let mut whole_crc = 0u32;
    let mut number = 0u64;
    loop {
        let mut header = [0u8; 8];
        within(
            limits,
            from,
            "waiting for a chunk",
            stream.read_exact(&mut header),
        )
        .await?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 {
            if crc != whole_crc {
                return Err(refused(format!(
                    "whole-file CRC {whole_crc:#010x}, the sender says {crc:#010x}"
                )));
            }
            break;
        }
        if len > MAX_CHUNK_BYTES {
            return Err(refused(format!(
                "chunk {number} of {len} bytes, over the limit of {MAX_CHUNK_BYTES}"
            )));
        }
        let mut chunk = vec![0u8; len];
        within(
            limits,
            from,
            "reading a chunk",
            stream.read_exact(&mut chunk),
        )
        .await?;
        let actual = crc32c::crc32c(&chunk);
        if actual != crc {
            return Err(refused(format!(
                "chunk {number} checksum mismatch: {actual:#010x}, the sender says {crc:#010x}"
            )));
        }
        whole_crc = crc32c::crc32c_append(whole_crc, &chunk);
        received_bytes.increment(len as u64);
        progress.moved(len);
        number += 1;
        // Waits while the node writes: memory stays bounded.
        within(limits, from, "handing a chunk to the node", async {
            chunks
                .send(chunk)
                .await
                .map_err(|_| std::io::Error::other("the node stopped receiving the snapshot"))
        })
        .await?;
    }
    drop(chunks);
    let verdict = within(
        limits,
        from,
        "the node checking and syncing the file",
        async {
            outcome
                .await
                .map_err(|_| std::io::Error::other("the node dropped the snapshot"))
        },
    )
    .await?;
    write_status(stream, from, limits, &verdict).await?;
    verdict.map_err(refused)
}

async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    from: u64,
    limits: &StreamLimits,
) -> Result<Message, SnapshotTransferError> {
    let mut len = [0u8; 4];
    within(
        limits,
        from,
        "waiting for the MsgSnap",
        stream.read_exact(&mut len),
    )
    .await?;
    let len = u32::from_be_bytes(len);
    if len > limits.max_message_bytes {
        return Err(SnapshotTransferError::Refused {
            peer: from,
            reason: format!(
                "MsgSnap frame of {len} bytes, over the limit of {}",
                limits.max_message_bytes
            ),
        });
    }
    let mut body = Vec::new();
    let read = within(
        limits,
        from,
        "reading the MsgSnap",
        (&mut *stream).take(u64::from(len)).read_to_end(&mut body),
    )
    .await?;
    if read != len as usize {
        return Err(SnapshotTransferError::Refused {
            peer: from,
            reason: format!("MsgSnap frame of {len} bytes ended after {read}"),
        });
    }
    Message::decode(body.as_slice()).map_err(|e| SnapshotTransferError::Refused {
        peer: from,
        reason: format!("MsgSnap does not decode: {e}"),
    })
}

#[cfg(test)]
mod tests;
