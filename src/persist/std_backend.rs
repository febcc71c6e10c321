//! The plain-syscall backend: `pwrite` (and the create, rename and
//! directory fsync of a snapshot save) on the actor's thread, `fdatasync`
//! and `fsync` of files on one helper thread, so that the actor encodes and
//! writes the next batch while the device syncs the previous one (the same
//! two-stage pipeline io_uring gives the uring backend).
//!
//! Owns: [`StdIo`] and its sync thread.
//! Guarantees: syncs run one after another in the order issued; a sync's
//! result is the kernel's, never retried; the helper thread ends when the
//! backend is dropped.
//! May not touch: file formats, the WAL's state.

use super::backend::{BackendKind, IoBackend, SyncInFlight, WriteOutcome};
use crate::wal::fs::{sync_dir, write_all_at_in_pages};
use std::fs::File;
use std::future::{Future, ready};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Name of the helper thread.
const SYNC_THREAD_NAME: &str = "ringraft-fdatasync";

/// Which sync the helper thread runs.
#[derive(Clone, Copy, Debug)]
enum SyncKind {
    Data,
    All,
}

/// One sync for the helper thread.
struct SyncJob {
    file: Arc<File>,
    kind: SyncKind,
    done: oneshot::Sender<io::Result<()>>,
}

/// IO through ordinary blocking syscalls.
#[derive(Debug)]
pub struct StdIo {
    jobs: mpsc::Sender<SyncJob>,
}

impl StdIo {
    /// Starts the backend and its sync thread.
    pub fn new() -> io::Result<StdIo> {
        let (jobs, receiver) = mpsc::channel::<SyncJob>();
        std::thread::Builder::new()
            .name(SYNC_THREAD_NAME.to_string())
            .spawn(move || {
                for SyncJob { file, kind, done } in receiver {
                    let result = match kind {
                        SyncKind::Data => file.sync_data(),
                        SyncKind::All => file.sync_all(),
                    };
                    // Close our descriptor before reporting: once the actor
                    // has every result, no descriptor of this thread may
                    // still hold the segment's flock (a reopen right after
                    // shutdown would find the WAL locked).
                    drop(file);
                    // The actor may have stopped waiting; nothing to do then.
                    let _ = done.send(result);
                }
            })?;
        Ok(StdIo { jobs })
    }

    fn sync(
        &self,
        file: &Arc<File>,
        kind: SyncKind,
    ) -> impl Future<Output = io::Result<()>> + use<> {
        let (done, outcome) = oneshot::channel();
        let job = SyncJob {
            file: Arc::clone(file),
            kind,
            done,
        };
        let sent = self.jobs.send(job).is_ok();
        async move {
            if !sent {
                return Err(io::Error::other("the fdatasync thread has stopped"));
            }
            outcome
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the fdatasync thread has stopped")))
        }
    }
}

impl IoBackend for StdIo {
    type Handle = Arc<File>;

    fn kind(&self) -> BackendKind {
        BackendKind::Std
    }

    fn adopt(&self, file: &File, _path: &Path) -> io::Result<Arc<File>> {
        Ok(Arc::new(file.try_clone()?))
    }

    fn write_all_at(
        &self,
        handle: &Arc<File>,
        file_offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> + 'static {
        let result = write_all_at_in_pages(handle, file_offset, &bytes);
        ready((result, bytes))
    }

    fn begin_sync_data(&self, handle: &Arc<File>) -> impl Future<Output = SyncInFlight> {
        // Handed to the helper thread now: under way once this returns.
        ready(SyncInFlight::new(self.sync(handle, SyncKind::Data)))
    }

    fn sync_data_now(
        &self,
        handle: &Arc<File>,
        _file: &File,
    ) -> impl Future<Output = io::Result<()>> {
        // Nothing to overlap: on this thread rather than the helper's.
        ready(handle.sync_data())
    }

    fn sync_all(&self, handle: &Arc<File>) -> impl Future<Output = io::Result<()>> + 'static {
        self.sync(handle, SyncKind::All)
    }

    fn create_file(&self, path: &Path) -> impl Future<Output = io::Result<Arc<File>>> + 'static {
        ready(crate::wal::fs::create_private_file(path).map(Arc::new))
    }

    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + 'static {
        ready(std::fs::rename(from, to))
    }

    fn sync_dir(&self, dir: &Path) -> impl Future<Output = io::Result<()>> + 'static {
        // Rare (one per snapshot) and waited for at once: no need for the
        // helper thread.
        ready(sync_dir(dir))
    }
}
