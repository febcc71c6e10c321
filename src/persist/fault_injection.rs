//! A test backend: wraps a real backend, records every write, sync (of
//! files and directories), rename, preallocation and acknowledgement in the
//! order they happen, and fails chosen WAL writes, WAL fdatasyncs,
//! preallocations of the next WAL segment (`fallocate`, by the syscall or
//! io_uring), snapshot file writes and syncs with `ENOSPC` or `EIO`.
//!
//! Test-only, but always compiled: a node is started with it through
//! [`PersistConfig::fault_injection`](super::PersistConfig) (`None`, the
//! default, is one branch at start); a cargo feature would need every test
//! run to pass a flag (or the crate to depend on itself), and the code is
//! small.
//!
//! Owns: [`FaultyIo`], [`IoLog`], [`IoEvent`], [`FaultPlan`], [`Fault`],
//! [`FaultInjection`], [`FaultTrigger`].
//! Guarantees: an injected failure replaces the operation (the real one is
//! not issued, except the written prefix of a short write), as a device
//! error would, with the kernel's errno; each kind of operation is counted
//! on its own, from 1, in issue order; events are recorded in program
//! order (preallocations from the WAL's helper thread interleave with the
//! actor's).
//! May not touch: anything the wrapped backend does not.

use super::backend::{BackendKind, IoBackend, SyncInFlight, WriteOutcome};
use crate::wal::writer::PreallocationFault;
use rustix::io::Errno;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// A preallocation (`fallocate`) of the next WAL segment was about to
    /// be issued, on the WAL's helper thread (or at a cut, for a retry).
    Preallocated {
        /// The prepared file.
        path: PathBuf,
        /// False: the plan failed it (the real one was not issued); true:
        /// the real one was issued (a real failure shows as the cut's).
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

/// The errno an injected failure carries, as the kernel would give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedErrno {
    /// `ENOSPC`: the file system is full.
    NoSpace,
    /// `EIO`: the device failed.
    Io,
}

impl InjectedErrno {
    /// The error, with the operating system's code (so that its kind is
    /// `StorageFull` or the raw error is `EIO`, exactly like a real one).
    pub fn to_io_error(self) -> io::Error {
        let errno = match self {
            InjectedErrno::NoSpace => Errno::NOSPC,
            InjectedErrno::Io => Errno::IO,
        };
        io::Error::from_raw_os_error(errno.raw_os_error())
    }
}

/// A switch a test flips at a moment of its choosing ("the disk is full
/// from now on"); clones share the switch.
#[derive(Clone, Debug, Default)]
pub struct FaultTrigger(Arc<AtomicBool>);

impl FaultTrigger {
    /// A switch, off.
    pub fn new() -> FaultTrigger {
        FaultTrigger::default()
    }

    /// Operations issued from now on fail.
    pub fn arm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Operations issued from now on succeed again.
    pub fn disarm(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether the switch is on.
    pub fn is_armed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl PartialEq for FaultTrigger {
    fn eq(&self, other: &FaultTrigger) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FaultTrigger {}

/// Which operations of one kind fail, counting from 1 in the order they
/// are issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// Only the Nth.
    Nth(u64),
    /// The Nth and every one after it.
    FromNth(u64),
    /// Every one issued while the trigger is armed.
    WhileArmed(FaultTrigger),
}

/// One kind of operation failing: where, and with which errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which operations fail.
    pub at: FaultPoint,
    /// With which error.
    pub errno: InjectedErrno,
    /// For writes only: how many bytes of a failing write reach the file
    /// before the error (a short write, as `ENOSPC` leaves one: the record
    /// it cut is torn). 0: nothing is written.
    pub written_prefix_bytes: usize,
}

impl Fault {
    /// The Nth operation fails with `errno`.
    pub fn nth(n: u64, errno: InjectedErrno) -> Fault {
        Fault::at(FaultPoint::Nth(n), errno)
    }

    /// The Nth operation and every later one fail with `errno`.
    pub fn from_nth(n: u64, errno: InjectedErrno) -> Fault {
        Fault::at(FaultPoint::FromNth(n), errno)
    }

    /// Every operation issued while `trigger` is armed fails with `errno`.
    pub fn while_armed(trigger: &FaultTrigger, errno: InjectedErrno) -> Fault {
        Fault::at(FaultPoint::WhileArmed(trigger.clone()), errno)
    }

    /// A failing write first writes this many bytes (see
    /// [`Fault::written_prefix_bytes`]).
    pub fn after_writing(mut self, bytes: usize) -> Fault {
        self.written_prefix_bytes = bytes;
        self
    }

    fn at(at: FaultPoint, errno: InjectedErrno) -> Fault {
        Fault {
            at,
            errno,
            written_prefix_bytes: 0,
        }
    }

    /// Whether the `count`th operation fails.
    fn fails(&self, count: u64) -> bool {
        match &self.at {
            FaultPoint::Nth(n) => count == *n,
            FaultPoint::FromNth(n) => count >= *n,
            FaultPoint::WhileArmed(trigger) => trigger.is_armed(),
        }
    }
}

/// Which operations fail; each kind is counted on its own. `None` for a
/// kind: it never fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Writes to WAL segments (each batch is one write).
    pub wal_write: Option<Fault>,
    /// fdatasyncs of the WAL issued by the actor (a segment cut's own sync
    /// goes through the WAL, not the backend, and is not counted).
    pub wal_sync_data: Option<Fault>,
    /// `fallocate` of the next WAL segment on the WAL's helper thread, by
    /// the syscall or io_uring (counted from the first preparation after
    /// the actor starts; the one the WAL began when it was opened is not
    /// affected). A failed preparation is retried once at the cut, and the
    /// retry is counted too.
    pub fallocate: Option<Fault>,
    /// Writes of snapshot files.
    pub snapshot_write: Option<Fault>,
    /// fsyncs of snapshot files and of the snapshot directory.
    pub snapshot_sync: Option<Fault>,
}

/// A [`Fault`] and how many operations of its kind were issued; shared
/// with the WAL's helper thread for `fallocate`.
#[derive(Debug, Default)]
struct Counted {
    fault: Option<Fault>,
    count: AtomicU64,
}

impl Counted {
    fn new(fault: Option<Fault>) -> Counted {
        Counted {
            fault,
            count: AtomicU64::new(0),
        }
    }

    /// Counts one operation; its fault if it fails.
    fn next(&self) -> Option<&Fault> {
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.fault.as_ref().filter(|fault| fault.fails(count))
    }
}

/// What a plan adds to a node's or an actor's config: the plan and the log
/// the events go to (the test keeps a clone of the log).
#[derive(Clone, Debug, Default)]
pub struct FaultInjection {
    /// Which operations fail.
    pub plan: FaultPlan,
    /// Where every operation is recorded.
    pub log: IoLog,
}

impl PartialEq for FaultInjection {
    fn eq(&self, other: &FaultInjection) -> bool {
        self.plan == other.plan && Arc::ptr_eq(&self.log.events, &other.log.events)
    }
}

impl Eq for FaultInjection {}

/// Which file a handle is on, for the plan's kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Wal,
    Snapshot,
}

/// A file handle of the wrapped backend with its path.
#[derive(Clone, Debug)]
pub struct FaultyHandle<H> {
    inner: H,
    path: Rc<PathBuf>,
    kind: FileKind,
}

/// A backend that records and injects failures around `inner`.
#[derive(Debug)]
pub struct FaultyIo<B> {
    inner: B,
    log: IoLog,
    wal_write: Counted,
    wal_sync_data: Counted,
    fallocate: Arc<Counted>,
    snapshot_write: Counted,
    snapshot_sync: Counted,
}

impl<B> FaultyIo<B> {
    /// Wraps `inner`, recording into `log` and failing as `plan` says.
    pub fn new(inner: B, log: IoLog, plan: FaultPlan) -> FaultyIo<B> {
        FaultyIo {
            inner,
            log,
            wal_write: Counted::new(plan.wal_write),
            wal_sync_data: Counted::new(plan.wal_sync_data),
            fallocate: Arc::new(Counted::new(plan.fallocate)),
            snapshot_write: Counted::new(plan.snapshot_write),
            snapshot_sync: Counted::new(plan.snapshot_sync),
        }
    }

    /// [`FaultyIo::new`] with the parts of `injection`.
    pub fn with(inner: B, injection: FaultInjection) -> FaultyIo<B> {
        FaultyIo::new(inner, injection.log, injection.plan)
    }
}

/// An injected failure, named as such in its message but carrying the
/// operating system's code.
fn injected(fault: &Fault) -> io::Error {
    fault.errno.to_io_error()
}

impl<B: IoBackend> FaultyIo<B> {
    fn write_fault(&self, kind: FileKind) -> Option<&Fault> {
        match kind {
            FileKind::Wal => self.wal_write.next(),
            FileKind::Snapshot => self.snapshot_write.next(),
        }
    }
}

impl<B: IoBackend> IoBackend for FaultyIo<B> {
    type Handle = FaultyHandle<B::Handle>;

    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn adopt(&self, file: &File, path: &Path) -> io::Result<Self::Handle> {
        // The actor adopts WAL segments only; snapshot files are created.
        Ok(FaultyHandle {
            inner: self.inner.adopt(file, path)?,
            path: Rc::new(path.to_path_buf()),
            kind: FileKind::Wal,
        })
    }

    fn write_all_at(
        &self,
        handle: &Self::Handle,
        file_offset: u64,
        mut bytes: Vec<u8>,
    ) -> impl Future<Output = WriteOutcome> + 'static {
        let fault = self.write_fault(handle.kind).cloned();
        let log = self.log.clone();
        let path = PathBuf::clone(&handle.path);
        let len = bytes.len();
        // A failing write still writes its prefix, as a short write would.
        let (write, error) = match fault {
            None => (
                Some(self.inner.write_all_at(&handle.inner, file_offset, bytes)),
                None,
            ),
            Some(fault) if fault.written_prefix_bytes > 0 => {
                bytes.truncate(fault.written_prefix_bytes.min(len));
                let prefix = self.inner.write_all_at(&handle.inner, file_offset, bytes);
                (Some(prefix), Some(injected(&fault)))
            }
            Some(fault) => (None, Some(injected(&fault))),
        };
        async move {
            let (mut result, buffer) = match write {
                Some(write) => write.await,
                None => (Ok(()), Vec::new()),
            };
            if let Some(error) = error {
                result = Err(error);
            }
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
        let failure = match handle.kind {
            FileKind::Wal => self.wal_sync_data.next(),
            FileKind::Snapshot => self.snapshot_sync.next(),
        }
        .map(injected);
        let log = self.log.clone();
        let path = PathBuf::clone(&handle.path);
        log.push(IoEvent::SyncStarted { path: path.clone() });
        let begin = failure
            .is_none()
            .then(|| self.inner.begin_sync_data(&handle.inner));
        async move {
            let in_flight = match begin {
                Some(begin) => Some(begin.await),
                None => None,
            };
            SyncInFlight::new(async move {
                let result = match (in_flight, failure) {
                    (Some(sync), _) => sync.wait().await,
                    (None, Some(failure)) => Err(failure),
                    (None, None) => Ok(()),
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
        let failure = match handle.kind {
            FileKind::Snapshot => self.snapshot_sync.next().map(injected),
            FileKind::Wal => None,
        };
        let log = self.log.clone();
        let path = PathBuf::clone(&handle.path);
        log.push(IoEvent::SyncStarted { path: path.clone() });
        let sync = failure
            .is_none()
            .then(|| self.inner.sync_all(&handle.inner));
        recorded_sync(log, path, sync, failure)
    }

    fn create_file(&self, path: &Path) -> impl Future<Output = io::Result<Self::Handle>> + 'static {
        let create = self.inner.create_file(path);
        let path = Rc::new(path.to_path_buf());
        async move {
            Ok(FaultyHandle {
                inner: create.await?,
                path,
                kind: FileKind::Snapshot,
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
        // Only snapshot saves sync a directory through the backend.
        let failure = self.snapshot_sync.next().map(injected);
        let log = self.log.clone();
        let path = dir.to_path_buf();
        log.push(IoEvent::SyncStarted { path: path.clone() });
        let sync = failure.is_none().then(|| self.inner.sync_dir(dir));
        recorded_sync(log, path, sync, failure)
    }

    fn acknowledged(&self, number: u64) {
        self.log.push(IoEvent::Acknowledged { number });
    }

    fn preallocation_fault(&self) -> Option<PreallocationFault> {
        let counted = Arc::clone(&self.fallocate);
        let log = self.log.clone();
        Some(PreallocationFault::new(move |path| {
            let failure = counted.next().map(injected);
            log.push(IoEvent::Preallocated {
                path: path.to_path_buf(),
                ok: failure.is_none(),
            });
            failure
        }))
    }
}

/// A sync's outcome, recorded when it finishes: the real one's, or the
/// injected `failure` (then `sync` is `None`).
async fn recorded_sync(
    log: IoLog,
    path: PathBuf,
    sync: Option<impl Future<Output = io::Result<()>> + 'static>,
    failure: Option<io::Error>,
) -> io::Result<()> {
    let result = match (sync, failure) {
        (Some(sync), _) => sync.await,
        (None, Some(failure)) => Err(failure),
        (None, None) => Ok(()),
    };
    log.push(IoEvent::SyncFinished {
        path,
        ok: result.is_ok(),
    });
    result
}
