//! Starting the persistence actor on its own thread and talking to it.
//!
//! Owns: the actor's thread and runtime (tokio-uring for the uring backend,
//! a current-thread tokio runtime for std), the backend choice and its
//! fallback (wrapped in the test-only fault injector when
//! [`PersistConfig::fault_injection`] asks), the request queue's sending
//! side ([`PersistSender`]), snapshot save tickets, shutdown.
//! Guarantees: [`PersistActor::start`] returns once the actor runs with a
//! working backend (or with the reason it cannot); a request sent after the
//! actor failed or stopped is refused with that failure; dropping the
//! [`PersistActor`] shuts it down gracefully and joins its thread.
//! May not touch: the WAL or snapshot files (the actor owns them once
//! started).

use super::actor::Actor;
use super::backend::{BackendKind, IoBackend};
use super::config::{BackendChoice, PersistConfig};
use super::error::{PersistError, SharedPersistError};
use super::fault_injection::FaultyIo;
use super::progress::{
    Listener, PersistedDoorbell, PersistedWatch, ProgressSender, progress_channel,
};
use super::request::{PersistRequest, ReadyToPersist};
use super::snap_purger::SnapPurger;
use super::std_backend::StdIo;
use super::uring_backend::{UringIo, uring_runtime};
use super::wal_gauge::record_wal_segments;
use crate::raftpb::Snapshot;
use crate::snap::Snapshotter;
use crate::wal::Wal;
use crossbeam_channel::{Receiver, Sender};
use std::io;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Name of the actor's thread.
const THREAD_NAME: &str = "ringraft-persist";

/// The submitting side of the actor's queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct PersistSender {
    requests: Sender<PersistRequest>,
    watch: PersistedWatch,
}

impl PersistSender {
    /// Queues a Ready. Blocks only when the queue is bounded and full.
    /// Numbers must increase in the order Readies are submitted (with
    /// several submitters, the caller serializes numbering and sending).
    pub fn submit(&self, ready: ReadyToPersist) -> Result<(), SharedPersistError> {
        self.send(PersistRequest::Ready(ready))
    }

    /// Queues a snapshot save: its file, then its WAL marker (synced), then
    /// releasing and purging what it makes unnecessary. The ticket resolves
    /// once the file and the marker are durable (and, when a synced hard
    /// state already commits the snapshot, once that cleanup is done).
    pub fn save_snapshot(&self, snapshot: Snapshot) -> Result<SnapshotTicket, SharedPersistError> {
        let (reply, receiver) = oneshot::channel();
        self.send(PersistRequest::SaveSnapshot { snapshot, reply })?;
        Ok(SnapshotTicket {
            receiver,
            watch: self.watch.clone(),
        })
    }

    /// Requests waiting in the queue.
    pub fn queued_requests(&self) -> usize {
        self.requests.len()
    }

    fn send(&self, request: PersistRequest) -> Result<(), SharedPersistError> {
        self.watch.latest()?;
        self.requests
            .send(request)
            .map_err(|_| self.watch.stopped_error())
    }
}

/// The outcome of one snapshot save.
#[derive(Debug)]
pub struct SnapshotTicket {
    receiver: oneshot::Receiver<Result<(), SharedPersistError>>,
    watch: PersistedWatch,
}

impl SnapshotTicket {
    /// Waits until the snapshot is durable, or the actor failed.
    pub async fn wait(self) -> Result<(), SharedPersistError> {
        match self.receiver.await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.watch.stopped_error()),
        }
    }

    /// [`wait`](Self::wait) for a thread outside any async runtime (it
    /// panics inside one, as tokio's blocking receive does).
    pub fn wait_blocking(self) -> Result<(), SharedPersistError> {
        match self.receiver.blocking_recv() {
            Ok(outcome) => outcome,
            Err(_) => Err(self.watch.stopped_error()),
        }
    }
}

/// The running persistence actor.
#[derive(Debug)]
pub struct PersistActor {
    sender: PersistSender,
    watch: PersistedWatch,
    /// The listening ends of the wakes, until the node's driver takes them.
    doorbell: Option<Listener>,
    backend: BackendKind,
    thread: Option<JoinHandle<Result<(), SharedPersistError>>>,
}

/// A runtime for the actor's thread, matching its backend.
enum ActorRuntime {
    Uring(tokio_uring::Runtime),
    Std(tokio::runtime::Runtime),
}

impl ActorRuntime {
    fn for_backend(kind: BackendKind) -> Result<ActorRuntime, PersistError> {
        match kind {
            BackendKind::Uring => probed_uring_runtime()
                .map(ActorRuntime::Uring)
                .map_err(PersistError::UringUnavailable),
            BackendKind::Std => tokio::runtime::Builder::new_current_thread()
                .build()
                .map(ActorRuntime::Std)
                .map_err(|e| PersistError::Thread(format!("tokio runtime: {e}"))),
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            ActorRuntime::Uring(runtime) => runtime.block_on(future),
            ActorRuntime::Std(runtime) => runtime.block_on(future),
        }
    }
}

/// A tokio-uring runtime that has completed one operation.
fn probed_uring_runtime() -> io::Result<tokio_uring::Runtime> {
    let runtime = uring_runtime()?;
    runtime.block_on(tokio_uring::no_op())?;
    Ok(runtime)
}

/// What the actor's thread is started with.
struct ThreadStart {
    wal: Wal,
    snapshotter: Snapshotter,
    config: PersistConfig,
    requests: Receiver<PersistRequest>,
    progress: ProgressSender,
    started: mpsc::Sender<Result<BackendKind, PersistError>>,
}

impl ThreadStart {
    /// Reports the backend and runs the actor to its end; wrapped in the
    /// fault injector when the config asks for it (tests).
    fn run<B: IoBackend>(
        mut self,
        backend: B,
        runtime: ActorRuntime,
    ) -> Result<(), SharedPersistError> {
        match self.config.fault_injection.take() {
            Some(injection) => self.run_actor(FaultyIo::with(backend, injection), runtime),
            None => self.run_actor(backend, runtime),
        }
    }

    fn run_actor<B: IoBackend>(
        self,
        backend: B,
        runtime: ActorRuntime,
    ) -> Result<(), SharedPersistError> {
        let ThreadStart {
            wal,
            snapshotter,
            config,
            requests,
            progress,
            started,
        } = self;
        let purger = match SnapPurger::start(snapshotter.clone(), config.node_id) {
            Ok(purger) => purger,
            Err(e) => {
                let _ = started.send(Err(PersistError::Thread(format!(
                    "snapshot purge thread: {e}"
                ))));
                return Err(Arc::new(PersistError::Stopped));
            }
        };
        let _ = started.send(Ok(backend.kind()));
        record_wal_segments(wal.dir(), config.node_id);
        let actor = Actor::new(
            wal,
            snapshotter,
            purger,
            config,
            backend,
            requests,
            progress,
        );
        runtime.block_on(actor.run())
    }

    /// Runs the actor on the std backend.
    fn run_std(self) -> Result<(), SharedPersistError> {
        let backend = match StdIo::new() {
            Ok(backend) => backend,
            Err(e) => return self.refuse(PersistError::Thread(format!("fdatasync thread: {e}"))),
        };
        match ActorRuntime::for_backend(BackendKind::Std) {
            Ok(runtime) => self.run(backend, runtime),
            Err(e) => self.refuse(e),
        }
    }

    fn refuse(self, error: PersistError) -> Result<(), SharedPersistError> {
        let _ = self.started.send(Err(error));
        Err(Arc::new(PersistError::Stopped))
    }
}

impl PersistActor {
    /// Starts the actor on its own thread over an open WAL and the
    /// snapshotter of the same data directory, with the backend
    /// `config.backend` asks for. `Auto` probes io_uring on the actor's
    /// thread and falls back to std with a log line when it does not work.
    pub fn start(
        wal: Wal,
        snapshotter: Snapshotter,
        config: PersistConfig,
    ) -> Result<PersistActor, PersistError> {
        let choice = config.backend;
        Self::spawn(wal, snapshotter, config, move |start| match choice {
            BackendChoice::Std => start.run_std(),
            BackendChoice::Uring => match ActorRuntime::for_backend(BackendKind::Uring) {
                Ok(runtime) => start.run(UringIo, runtime),
                Err(e) => start.refuse(e),
            },
            BackendChoice::Auto => match ActorRuntime::for_backend(BackendKind::Uring) {
                Ok(runtime) => start.run(UringIo, runtime),
                Err(uring_error) => {
                    tracing::warn!(
                        error = %uring_error,
                        "io_uring does not work here; the persistence actor uses the std backend"
                    );
                    start.run_std()
                }
            },
        })
    }

    /// Starts the actor with the backend `make_backend` builds on the
    /// actor's thread (tests wrap a real backend in a fault injector this
    /// way); `config.backend` is ignored.
    pub fn start_with_backend<B, F>(
        wal: Wal,
        snapshotter: Snapshotter,
        config: PersistConfig,
        make_backend: F,
    ) -> Result<PersistActor, PersistError>
    where
        B: IoBackend,
        F: FnOnce() -> B + Send + 'static,
    {
        Self::spawn(wal, snapshotter, config, move |start| {
            let backend = make_backend();
            match ActorRuntime::for_backend(backend.kind()) {
                Ok(runtime) => start.run(backend, runtime),
                Err(e) => start.refuse(e),
            }
        })
    }

    fn spawn(
        wal: Wal,
        snapshotter: Snapshotter,
        config: PersistConfig,
        body: impl FnOnce(ThreadStart) -> Result<(), SharedPersistError> + Send + 'static,
    ) -> Result<PersistActor, PersistError> {
        let (sender, requests) = match config.queue_capacity {
            Some(capacity) => crossbeam_channel::bounded(capacity),
            None => crossbeam_channel::unbounded(),
        };
        let (progress, watch, doorbell) = progress_channel()
            .map_err(|e| PersistError::Thread(format!("acknowledgement socket: {e}")))?;
        let (started, started_receiver) = mpsc::channel();
        let start = ThreadStart {
            wal,
            snapshotter,
            config,
            requests,
            progress,
            started,
        };
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_string())
            .spawn(move || body(start))
            .map_err(|e| PersistError::Thread(format!("spawning {THREAD_NAME}: {e}")))?;
        let backend = match started_receiver.recv() {
            Ok(Ok(kind)) => kind,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                return Err(PersistError::Thread(format!(
                    "{THREAD_NAME} ended before starting: {}",
                    join_failure(thread.join())
                )));
            }
        };
        Ok(PersistActor {
            sender: PersistSender {
                requests: sender,
                watch: watch.clone(),
            },
            watch,
            doorbell: Some(doorbell),
            backend,
            thread: Some(thread),
        })
    }

    /// A sender for the raft actor (and the apply actor's snapshot saves).
    pub fn sender(&self) -> PersistSender {
        self.sender.clone()
    }

    /// The acknowledgements.
    pub fn watch(&self) -> PersistedWatch {
        self.watch.clone()
    }

    /// The acknowledgements through the doorbell and its `Notify`, for the
    /// one task that drives the node; call it on that task's runtime. They
    /// have one listener: later calls get the watch alone.
    pub fn take_doorbell(&mut self) -> PersistedDoorbell {
        PersistedDoorbell::new(self.watch.clone(), self.doorbell.take())
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Finishes everything queued before this call, syncs, closes the WAL
    /// and joins the thread; returns the failure if the actor failed.
    /// Blocks the calling thread for that long.
    pub fn shutdown(mut self) -> Result<(), SharedPersistError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), SharedPersistError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // Refused only when the actor already ended; joining tells why.
        let _ = self.sender.requests.send(PersistRequest::Shutdown);
        match thread.join() {
            Ok(outcome) => outcome,
            Err(panic) => Err(Arc::new(PersistError::Thread(join_failure::<()>(Err(
                panic,
            ))))),
        }
    }
}

impl Drop for PersistActor {
    fn drop(&mut self) {
        // A failure was already published on the watch; nothing else to do.
        let _ = self.stop();
    }
}

fn join_failure<T>(joined: std::thread::Result<T>) -> String {
    match joined {
        Ok(_) => "no panic".to_string(),
        Err(panic) => match panic.downcast_ref::<&str>() {
            Some(message) => format!("panicked: {message}"),
            None => match panic.downcast_ref::<String>() {
                Some(message) => format!("panicked: {message}"),
                None => "panicked".to_string(),
            },
        },
    }
}
