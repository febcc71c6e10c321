//! The io_uring backend: writes, fdatasync and fsync submitted through a
//! tokio-uring runtime on the actor's thread, plus the probe that tells
//! whether io_uring works on this machine.
//!
//! Owns: [`UringIo`], [`probe_uring`], and the runtime the actor runs in
//! with this backend.
//! Guarantees: a sync is submitted to the kernel before
//! `begin_sync_data` returns, so the actor encodes the next batch while the
//! device works; chunks of one write are written in order.
//! May not touch: file formats, the WAL's state.

use super::backend::{BackendKind, IoBackend, SyncInFlight, WriteOutcome};
use crate::wal::page_chunks::page_chunks;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::Path;
use std::rc::Rc;
use tokio_uring::buf::BoundedBuf as _;

/// Submission queue size of the actor's ring: a batch needs a few dozen
/// entries at most (one per 128 KiB chunk, one sync).
const RING_ENTRIES: u32 = 256;

/// IO through io_uring. Only usable inside the runtime from
/// [`uring_runtime`].
#[derive(Debug, Default)]
pub struct UringIo;

/// A tokio-uring runtime for the current thread.
pub fn uring_runtime() -> io::Result<tokio_uring::Runtime> {
    tokio_uring::Runtime::new(tokio_uring::builder().entries(RING_ENTRIES))
}

/// Whether io_uring works here: sets up a ring and completes one no-op
/// through it (a seccomp filter or `kernel.io_uring_disabled` makes one of
/// the two fail). Must not run inside another async runtime.
pub fn probe_uring() -> io::Result<()> {
    let runtime = uring_runtime()?;
    runtime.block_on(tokio_uring::no_op())
}

impl IoBackend for UringIo {
    type Handle = Rc<tokio_uring::fs::File>;

    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn adopt(&self, file: &File, _path: &Path) -> io::Result<Self::Handle> {
        Ok(Rc::new(tokio_uring::fs::File::from_std(file.try_clone()?)))
    }

    fn write_all_at(
        &self,
        handle: &Self::Handle,
        file_offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> + 'static {
        let file = Rc::clone(handle);
        async move {
            let mut buffer = bytes;
            for chunk in page_chunks(file_offset, buffer.len()) {
                let position = file_offset + chunk.start as u64;
                let (result, slice) = file.write_all_at(buffer.slice(chunk), position).await;
                buffer = slice.into_inner();
                if let Err(e) = result {
                    return (Err(e), buffer);
                }
            }
            (Ok(()), buffer)
        }
    }

    fn begin_sync_data(&self, handle: &Self::Handle) -> impl Future<Output = SyncInFlight> {
        let file = Rc::clone(handle);
        async move {
            let task = tokio_uring::spawn(async move { file.sync_data().await });
            // tokio-uring hands queued operations to the kernel when its
            // thread parks; awaiting a no-op parks it once, so the sync is
            // under way before the caller goes on encoding.
            let _ = tokio_uring::no_op().await;
            SyncInFlight::new(async move {
                task.await
                    .unwrap_or_else(|e| Err(io::Error::other(format!("sync task: {e}"))))
            })
        }
    }

    fn sync_all(&self, handle: &Self::Handle) -> impl Future<Output = io::Result<()>> + 'static {
        let file = Rc::clone(handle);
        async move { file.sync_all().await }
    }
}
