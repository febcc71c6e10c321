//! A test backend: wraps a real backend, records every write, sync (of
//! files and directories), rename and acknowledgement in the order they
//! happen, and fails a chosen fdatasync or write.
//!
//! Owns: [`FaultyIo`], [`IoLog`], [`IoEvent`], [`FaultPlan`].
//! Guarantees: an injected failure replaces the operation (the real one is
//! not issued), as a device error would; events are recorded on the actor's
//! thread in program order.
//! May not touch: anything the wrapped backend does not.

use super::backend::{BackendKind, IoBackend, SyncInFlight, WriteOutcome};
use std::cell::Cell;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoEvent {
    /// A write completed (or failed) at `file_offset` of `path`.
    Write {
        /// The file.
        path: PathBuf,
        /// Where the write started.
        file_offset: u64,
        /// How many bytes it carried.
        len: usize,
        /// Whether it succeeded.
        ok: bool,
    },
    /// An fdatasync (or fsync, of a file or a directory) was issued.
    SyncStarted {
        /// The file or directory.
        path: PathBuf,
    },
    /// That sync finished.
    SyncFinished {
        /// The file.
        path: PathBuf,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A file was renamed (or the rename failed).
    Renamed {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
        /// Whether it succeeded.
        ok: bool,
    },
    /// The actor acknowledged every Ready up to `number`.
    Acknowledged {
        /// The Ready number.
        number: u64,
    },
}

/// The shared, ordered record of events.
#[derive(Clone, Debug, Default)]
pub struct IoLog {
    events: Arc<Mutex<Vec<IoEvent>>>,
}

impl IoLog {
    /// Every event so far, in order.
    pub fn events(&self) -> Vec<IoEvent> {
        self.lock().clone()
    }

    fn push(&self, event: IoEvent) {
        self.lock().push(event);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<IoEvent>> {
        // A test thread that panicked while holding the lock leaves the
        // events intact; keep recording.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which operations fail, counting from 1 in the order they are issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail this fdatasync (of any file) with `EIO`.
    pub fail_sync_data: Option<u64>,
    /// Fail this write with `EIO`.
    pub fail_write: Option<u64>,
}

/// A file handle of the wrapped backend with its path.
#[derive(Clone, Debug)]
pub struct FaultyHandle<H> {
    inner: H,
    path: Rc<PathBuf>,
}

/// A backend that records and injects failures around `inner`.
#[derive(Debug)]
pub struct FaultyIo<B> {
    inner: B,
    log: IoLog,
    plan: FaultPlan,
    sync_data_count: Cell<u64>,
    write_count: Rc<Cell<u64>>,
}

impl<B> FaultyIo<B> {
    /// Wraps `inner`, recording into `log` and failing as `plan` says.
    pub fn new(inner: B, log: IoLog, plan: FaultPlan) -> FaultyIo<B> {
        FaultyIo {
            inner,
            log,
            plan,
            sync_data_count: Cell::new(0),
            write_count: Rc::new(Cell::new(0)),
        }
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure (EIO)"))
}

impl<B: IoBackend> IoBackend for FaultyIo<B> {
    type Handle = FaultyHandle<B::Handle>;

    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn adopt(&self, file: &File, path: &Path) -> io::Result<Self::Handle> {
        Ok(FaultyHandle {
            inner: self.inner.adopt(file, path)?,
            path: Rc::new(path.to_path_buf()),
        })
    }

    fn write_all_at(
        &self,
        handle: &Self::Handle,
        file_offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> + 'static {
        let count = self.write_count.get() + 1;
        self.write_count.set(count);
        let fail = self.plan.fail_write == Some(count);
        let log = self.log.clone();
        let path = PathBuf::clone(&handle.path);
        let len = bytes.len();
        let write = (!fail).then(|| self.inner.write_all_at(&handle.inner, file_offset, bytes));
        async move {
            let (result, buffer) = match write {
                Some(write) => write.await,
                None => (Err(injected("write")), Vec::new()),
            };
            log.push(IoEvent::Write {
                path,
                file_offset,
                len,
                ok: result.is_ok(),
            });
            (result, buffer)
        }
    }

    fn begin_sync_data(&self, handle: &Self::Handle) -> impl Future<Output = SyncInFlight> {
        let count = self.sync_data_count.get() + 1;
        self.sync_data_count.set(count);
        let fail = self.plan.fail_sync_data == Some(count);
        let log = self.log.clone();
        let path = PathBuf::clone(&handle.path);
        log.push(IoEvent::SyncStarted { path: path.clone() });
        let begin = (!fail).then(|| self.inner.begin_sync_data(&handle.inner));
        async move {
            let in_flight = match begin {
                Some(begin) => Some(begin.await),
                None => None,
            };
            SyncInFlight::new(async move {
                let result = match in_flight {
                    Some(sync) => sync.wait().await,
                    None => Err(injected("fdatasync")),
                };
                log.push(IoEvent::SyncFinished {
                    path,
                    ok: result.is_ok(),
                });
                result
            })
        }
    }

    fn sync_all(&self, handle: &Self::Handle) -> impl Future<Output = io::Result<()>> + 'static {
        let log = self.log.clone();
        let path = PathBuf::clone(&handle.path);
        log.push(IoEvent::SyncStarted { path: path.clone() });
        let sync = self.inner.sync_all(&handle.inner);
        async move {
            let result = sync.await;
            log.push(IoEvent::SyncFinished {
                path,
                ok: result.is_ok(),
            });
            result
        }
    }

    fn create_file(&self, path: &Path) -> impl Future<Output = io::Result<Self::Handle>> + 'static {
        let create = self.inner.create_file(path);
        let path = Rc::new(path.to_path_buf());
        async move {
            Ok(FaultyHandle {
                inner: create.await?,
                path,
            })
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + 'static {
        let log = self.log.clone();
        let rename = self.inner.rename(from, to);
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        async move {
            let result = rename.await;
            log.push(IoEvent::Renamed {
                from,
                to,
                ok: result.is_ok(),
            });
            result
        }
    }

    fn sync_dir(&self, dir: &Path) -> impl Future<Output = io::Result<()>> + 'static {
        let log = self.log.clone();
        let path = dir.to_path_buf();
        log.push(IoEvent::SyncStarted { path: path.clone() });
        let sync = self.inner.sync_dir(dir);
        async move {
            let result = sync.await;
            log.push(IoEvent::SyncFinished {
                path,
                ok: result.is_ok(),
            });
            result
        }
    }

    fn acknowledged(&self, number: u64) {
        self.log.push(IoEvent::Acknowledged { number });
    }
}
