//! The IO the persistence actor needs, as one trait with two real
//! implementations (io_uring and plain syscalls) and a fault injector for
//! tests.
//!
//! Owns: [`IoBackend`], [`BackendKind`] and [`SyncInFlight`].
//! Guarantees (of every implementation): writes go out in the WAL's
//! page-aligned chunks, in order; a sync's result is reported exactly as the
//! kernel gave it and is never retried; every step of saving a snapshot file
//! (create, write, fsync, rename, directory fsync) goes through the backend.
//! May not touch: file formats, the WAL's state, acknowledgements.

use crate::wal::writer::PreallocationFault;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;

/// Which IO backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring through a tokio-uring runtime on the actor's thread.
    Uring,
    /// `pwrite` and `fdatasync` on the actor's thread.
    Std,
}

impl BackendKind {
    /// The backend's name, as logs and benches show it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Uring => "uring",
            BackendKind::Std => "std",
        }
    }
}

/// A sync under way; [`SyncInFlight::wait`] gives the kernel's verdict.
pub struct SyncInFlight {
    completion: Pin<Box<dyn Future<Output = io::Result<()>>>>,
}

impl SyncInFlight {
    /// A sync whose verdict `completion` delivers.
    pub fn new(completion: impl Future<Output = io::Result<()>> + 'static) -> SyncInFlight {
        SyncInFlight {
            completion: Box::pin(completion),
        }
    }

    /// Waits for the sync to finish.
    pub async fn wait(self) -> io::Result<()> {
        self.completion.await
    }
}

impl std::fmt::Debug for SyncInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncInFlight")
    }
}

/// A write returns its buffer so its capacity can be reused.
pub type WriteOutcome = (io::Result<()>, Vec<u8>);

/// The IO operations of the persistence actor. Every method is used from the
/// actor's thread only, inside the runtime [`IoBackend::kind`] names.
pub trait IoBackend: 'static {
    /// The backend's own handle on an open file.
    type Handle: Clone + 'static;

    /// Which runtime the backend needs.
    fn kind(&self) -> BackendKind;

    /// A handle on `file` (at `path`, for errors and logs) that stays valid
    /// after `file` is closed.
    fn adopt(&self, file: &File, path: &Path) -> io::Result<Self::Handle>;

    /// Writes `bytes` at `file_offset` in page-aligned chunks, in order.
    fn write_all_at(
        &self,
        handle: &Self::Handle,
        file_offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> + 'static;

    /// Writes like [`IoBackend::write_all_at`] to `handle` (whose file is
    /// `file`), when the actor has nothing queued behind the write. A
    /// backend whose writes may go through another thread (the kernel's
    /// io_uring workers take a buffered write they cannot finish at once)
    /// may write here on the calling thread instead, one hand-off fewer;
    /// by default it is [`IoBackend::write_all_at`].
    fn write_all_at_now(
        &self,
        handle: &Self::Handle,
        file: &File,
        file_offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> {
        let _ = file;
        self.write_all_at(handle, file_offset, bytes)
    }

    /// Starts an `fdatasync` of `handle`; once this returns, the sync is
    /// under way (submitted to the kernel), so the caller can do other work
    /// before awaiting the returned [`SyncInFlight`].
    fn begin_sync_data(&self, handle: &Self::Handle) -> impl Future<Output = SyncInFlight>;

    /// An `fsync` of `handle` (data and metadata), for new snapshot files.
    fn sync_all(&self, handle: &Self::Handle) -> impl Future<Output = io::Result<()>> + 'static;

    /// fdatasync of `handle` (whose file is `file`), waited for, when the
    /// actor has nothing to overlap with it. A backend that syncs on
    /// another thread (or through the kernel's io_uring workers) may do it
    /// here on the calling thread instead, one hand-off fewer; by default
    /// it is [`IoBackend::begin_sync_data`] waited for.
    fn sync_data_now(
        &self,
        handle: &Self::Handle,
        file: &File,
    ) -> impl Future<Output = io::Result<()>> {
        let _ = file;
        let begin = self.begin_sync_data(handle);
        async move { begin.await.wait().await }
    }

    /// Creates the file at `path` (truncating one already there) and opens
    /// it for writing, for new snapshot files.
    fn create_file(&self, path: &Path) -> impl Future<Output = io::Result<Self::Handle>> + 'static;

    /// Renames `from` to `to`, replacing `to`; durable only once
    /// [`sync_dir`](IoBackend::sync_dir) of the directory succeeds.
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + 'static;

    /// An `fsync` of the directory `dir`, making the creations and renames
    /// in it durable.
    fn sync_dir(&self, dir: &Path) -> impl Future<Output = io::Result<()>> + 'static;

    /// Called just before Ready `number` is acknowledged; lets a test
    /// backend record where acknowledgements fall among the IO operations.
    fn acknowledged(&self, number: u64) {
        let _ = number;
    }

    /// The hook the WAL's helper thread calls before preallocating a
    /// segment (the fault injector's, to fail chosen `fallocate`s); real
    /// backends have none.
    fn preallocation_fault(&self) -> Option<PreallocationFault> {
        None
    }
}
