//! The io_uring backend: WAL writes, fdatasync, and every step of saving a
//! snapshot file (create, write, fsync, rename, directory fsync) submitted
//! through a tokio-uring runtime on the actor's thread, plus the probe that
//! tells whether io_uring works on this machine. (The preallocation of the
//! next WAL segment goes through io_uring too, on the WAL's own helper
//! thread: the actor asks the WAL for it, see `actor.rs`.)
//!
//! Owns: [`UringIo`], [`probe_uring`], and the runtime the actor runs in
//! with this backend.
//! Guarantees: a sync is submitted to the kernel before
//! `begin_sync_data` returns, so the actor encodes the next batch while the
//! device works; chunks of one write are written in order; a kernel whose
//! io_uring lacks the open or rename opcode (`EINVAL`) gets those two steps
//! as plain syscalls, never a failed snapshot save.
//! May not touch: file formats, the WAL's state.

use super::backend::{BackendKind, IoBackend, SyncInFlight, WriteOutcome};
use crate::wal::page_chunks::page_chunks;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
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

    fn write_all_at_now(
        &self,
        _handle: &Self::Handle,
        file: &File,
        file_offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> {
        // A buffered write that io_uring cannot complete inline goes to a
        // kernel worker thread and back; with nothing queued behind it,
        // the plain syscall on this thread saves that hop (1-client p50
        // in BENCHMARKS.md, "The hot path (issue 18)").
        let result = crate::wal::fs::write_all_at_in_pages(file, file_offset, &bytes);
        std::future::ready((result, bytes))
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

    fn sync_data_now(
        &self,
        _handle: &Self::Handle,
        file: &File,
    ) -> impl Future<Output = io::Result<()>> {
        // io_uring punts an fsync to a kernel worker thread; with nothing
        // to overlap, the plain syscall on this thread saves that hop.
        std::future::ready(file.sync_data())
    }

    fn sync_all(&self, handle: &Self::Handle) -> impl Future<Output = io::Result<()>> + 'static {
        let file = Rc::clone(handle);
        async move { file.sync_all().await }
    }

    fn create_file(&self, path: &Path) -> impl Future<Output = io::Result<Self::Handle>> + 'static {
        let path = path.to_path_buf();
        async move {
            let opened = tokio_uring::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::wal::fs::SEGMENT_FILE_MODE)
                .open(&path)
                .await;
            match opened {
                Ok(file) => Ok(Rc::new(file)),
                Err(e) if unknown_opcode(&e) => Ok(Rc::new(tokio_uring::fs::File::from_std(
                    crate::wal::fs::create_private_file(&path)?,
                ))),
                Err(e) => Err(e),
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + 'static {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        async move {
            match tokio_uring::fs::rename(&from, &to).await {
                Err(e) if unknown_opcode(&e) => std::fs::rename(&from, &to),
                renamed => renamed,
            }
        }
    }

    fn sync_dir(&self, dir: &Path) -> impl Future<Output = io::Result<()>> + 'static {
        let dir = dir.to_path_buf();
        async move {
            let opened = tokio_uring::fs::OpenOptions::new()
                .read(true)
                .open(&dir)
                .await;
            let file = match opened {
                Ok(file) => file,
                Err(e) if unknown_opcode(&e) => tokio_uring::fs::File::from_std(File::open(&dir)?),
                Err(e) => return Err(e),
            };
            let synced = file.sync_all().await;
            // A read-only descriptor of a directory: closing it loses nothing.
            let _ = file.close().await;
            synced
        }
    }
}

/// Whether `error` is what a kernel older than an io_uring opcode answers
/// (`EINVAL`; open through io_uring needs 5.6, rename 5.11): the same step
/// is then done with the plain syscall. Neither `open` nor `rename` of the
/// paths used here fails with `EINVAL` for any other reason.
fn unknown_opcode(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}
