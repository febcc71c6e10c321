//! etcd's Maintenance `Snapshot` call: the store's backup
//! ([`super::backup`]) streamed to the client in chunks, as `etcdctl
//! snapshot save` expects it.
//!
//! Owns: taking the point-in-time view, writing it on a blocking thread
//! into bounded chunks, and each chunk's `remaining_bytes`. Guarantees: the
//! stream holds exactly the bytes of one backup of this member's state as
//! of one applied index (writes applied meanwhile are not in it); memory
//! stays bounded by a few chunks whatever the state's size (the writer
//! waits for the client); a client that goes stops the writing; a failure
//! ends the stream with an error, never with a short file that looks
//! whole (the hash at the end would not match anyway). May not touch: the
//! backup's format.

use super::backup::{backup_len, write_backup};
use super::header::{HeaderSource, status_of};
use super::pb::etcdserverpb::{ResponseHeader, SnapshotResponse};
use crate::node::Consistency;
use std::io::{self, Write};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Bytes of backup in one message (etcd sends 32 KiB).
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks queued for the client at most.
const CHUNKS_QUEUED: usize = 4;

type Chunks = mpsc::Sender<Result<SnapshotResponse, Status>>;

/// The backup of the node behind `headers`, as a stream of chunks.
pub async fn snapshot_stream(
    headers: &HeaderSource,
) -> Result<ReceiverStream<Result<SnapshotResponse, Status>>, Status> {
    let view = headers
        .node()
        .backup(Consistency::Serializable)
        .await
        .map_err(|e| status_of(&e))?;
    let mut header = headers.header();
    header.revision = view.revision();
    let (chunks, receiver) = mpsc::channel(CHUNKS_QUEUED);
    tokio::task::spawn_blocking(move || {
        let written = backup_len(&view).and_then(|total| {
            let mut out = ChunkWriter {
                chunks: &chunks,
                header,
                buffer: Vec::with_capacity(CHUNK_BYTES),
                remaining: total,
            };
            write_backup(&view, &mut out)?;
            out.send_buffer()
        });
        match written {
            Ok(()) => {}
            // The client went: nobody to tell.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
            Err(error) => {
                let _ = chunks.blocking_send(Err(Status::internal(format!(
                    "etcdserver: writing the snapshot: {error}"
                ))));
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

/// Cuts what is written into messages of [`CHUNK_BYTES`].
struct ChunkWriter<'a> {
    chunks: &'a Chunks,
    header: ResponseHeader,
    buffer: Vec<u8>,
    /// Bytes of the backup not yet sent.
    remaining: u64,
}

impl ChunkWriter<'_> {
    /// Sends what is buffered (nothing when empty). BrokenPipe: the client
    /// went.
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.remaining = self
            .remaining
            .checked_sub(blob.len() as u64)
            .ok_or_else(|| io::Error::other("the backup came out longer than it measured"))?;
        let message = SnapshotResponse {
            header: Some(self.header),
            remaining_bytes: self.remaining,
            blob: blob.into(),
        };
        self.chunks
            .blocking_send(Ok(message))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = room.min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
