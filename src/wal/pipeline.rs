//! The next segment file, prepared in the background before it is needed.
//!
//! Owns: `{n % 2}.tmp` files in the WAL directory, created, locked and
//! preallocated by one helper thread per WAL so that a cut only writes a
//! header and renames (etcd's file pipeline); how that thread preallocates
//! ([`Preallocation`]: the plain `fallocate` syscall, or `fallocate`
//! submitted through a small tokio-uring runtime the thread starts once, the
//! first time it is asked to).
//! Guarantees: at most one preparation runs at a time, never on the thread
//! that writes the WAL (unless the helper thread could not be started: then
//! the cut prepares its file itself, with the syscall); a change of
//! [`Preallocation`] applies from the next preparation on; io_uring
//! `fallocate` that the kernel or file system does not support (`EINVAL`,
//! `EOPNOTSUPP`) falls back to the syscall (which itself falls back to
//! extending the file), for this and every later preparation; dropping the
//! pipeline waits for the preparation under way, removes the unused file
//! and joins the helper thread, so no helper thread outlives the WAL that
//! started it.
//! May not touch: segments that have a `.wal` name; the WAL's write path
//! (the helper thread only ever sees the `.tmp` file it prepares).

use super::fs;
use crossbeam_channel::{Receiver, SendError, Sender};
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Suffix of prepared, not yet named segment files.
pub const PREPARED_SUFFIX: &str = ".tmp";

/// Name of the helper thread.
const HELPER_THREAD_NAME: &str = "ringraft-wal-prealloc";

/// Submission queue size of the helper thread's ring: one `fallocate` at a
/// time.
const HELPER_RING_ENTRIES: u32 = 4;

/// How the next segment file is preallocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preallocation {
    /// `fallocate(2)` as a plain syscall.
    #[default]
    Syscall,
    /// `fallocate` submitted through io_uring (`IORING_OP_FALLOCATE`), from
    /// a tokio-uring runtime on the helper thread; for a writer whose IO
    /// goes through io_uring anyway.
    Uring,
}

/// Test-only fault injection (`persist::fault_injection` builds one): called
/// with the file's path before each `fallocate` of a prepared segment, by
/// either [`Preallocation`]; an error it returns replaces that `fallocate`
/// (the file is created and locked, nothing is allocated), as a full disk
/// would. `None`, what every real WAL has, costs one branch per
/// preparation.
#[derive(Clone)]
pub struct PreallocationFault(Arc<FailPreallocation>);

/// The hook's function: the error to fail the preallocation of a file with.
type FailPreallocation = dyn Fn(&Path) -> Option<io::Error> + Send + Sync;

impl PreallocationFault {
    /// A hook that fails the preallocations for which `fail` returns an
    /// error.
    pub fn new(fail: impl Fn(&Path) -> Option<io::Error> + Send + Sync + 'static) -> Self {
        PreallocationFault(Arc::new(fail))
    }

    fn check(&self, path: &Path) -> io::Result<()> {
        match (self.0)(path) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for PreallocationFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreallocationFault")
    }
}

/// A preparation that failed: which file, and the operating system's error
/// (as the source, so that its kind and errno stay visible).
#[derive(Debug, thiserror::Error)]
#[error("preparing WAL segment {}: {source}", path.display())]
pub struct PreparationFailed {
    /// The file being prepared.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// A locked, preallocated, empty file waiting to become a segment.
#[derive(Debug)]
pub(crate) struct PreparedSegment {
    /// Where the file is now.
    pub path: PathBuf,
    /// The open, locked file.
    pub file: File,
}

/// One preparation for the helper thread.
struct Job {
    path: PathBuf,
    size_bytes: u64,
    preallocation: Preallocation,
    fault: Option<PreallocationFault>,
}

/// The helper thread and the two ends of its queues.
#[derive(Debug)]
struct Helper {
    jobs: Sender<Job>,
    results: Receiver<io::Result<PreparedSegment>>,
    thread: JoinHandle<()>,
}

/// Keeps one prepared segment ready.
#[derive(Debug)]
pub(crate) struct SegmentPipeline {
    dir: PathBuf,
    segment_size_bytes: u64,
    prepared_count: u64,
    preallocation: Preallocation,
    fault: Option<PreallocationFault>,
    /// `None` when the thread could not be started or has stopped: files
    /// are then prepared when taken.
    helper: Option<Helper>,
    /// The file the helper is preparing, while it owes a result.
    pending: Option<PathBuf>,
}

impl SegmentPipeline {
    /// Starts the helper thread and has it prepare the first file at once
    /// (with [`Preallocation::Syscall`]).
    pub fn start(dir: &Path, segment_size_bytes: u64) -> SegmentPipeline {
        let mut pipeline = SegmentPipeline {
            dir: dir.to_path_buf(),
            segment_size_bytes,
            prepared_count: 0,
            preallocation: Preallocation::Syscall,
            fault: None,
            helper: spawn_helper(),
            pending: None,
        };
        pipeline.prepare_next();
        pipeline
    }

    /// How files prepared from now on are preallocated (a preparation
    /// already under way finishes as it started).
    pub fn set_preallocation(&mut self, preallocation: Preallocation) {
        self.preallocation = preallocation;
    }

    /// Test-only: the fault hook for preparations from the next one on
    /// (`None` removes it).
    pub fn set_fault(&mut self, fault: Option<PreallocationFault>) {
        self.fault = fault;
    }

    /// The prepared file (waiting for it if needed; preparing it here if
    /// the helper failed or is gone); starts the next one. The error names
    /// the file ([`PreparationFailed`] inside the `io::Error`).
    pub fn take(&mut self) -> io::Result<PreparedSegment> {
        let prepared = match self.pending_result() {
            Some((_, Ok(prepared))) => Ok(prepared),
            Some((path, Err(e))) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "preparing the next WAL segment failed; trying once more"
                );
                self.prepare_in_place(&path)
            }
            None => {
                let path = self.next_path();
                self.prepared_count += 1;
                self.prepare_in_place(&path)
            }
        };
        // After a failure the WAL refuses further writes: prepare nothing
        // more (a later take, if any, prepares in place).
        if prepared.is_ok() {
            self.prepare_next();
        }
        prepared
    }

    fn prepare_in_place(&self, path: &Path) -> io::Result<PreparedSegment> {
        prepare(path, self.segment_size_bytes, None, self.fault.as_ref()).map_err(|source| {
            io::Error::new(
                source.kind(),
                PreparationFailed {
                    path: path.to_path_buf(),
                    source,
                },
            )
        })
    }

    /// The helper's result for the preparation under way (and its file), if
    /// one is.
    fn pending_result(&mut self) -> Option<(PathBuf, io::Result<PreparedSegment>)> {
        let path = self.pending.take()?;
        let result = self.helper_result();
        Some((path, result))
    }

    fn helper_result(&mut self) -> io::Result<PreparedSegment> {
        let Some(helper) = self.helper.as_ref() else {
            return Err(io::Error::other(format!(
                "{HELPER_THREAD_NAME} has stopped"
            )));
        };
        match helper.results.recv() {
            Ok(result) => result,
            Err(_) => {
                // The thread ended without answering (it panicked); prepare
                // in place from now on.
                self.stop_helper();
                Err(io::Error::other(format!(
                    "{HELPER_THREAD_NAME} stopped while preparing a segment"
                )))
            }
        }
    }

    fn next_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}{PREPARED_SUFFIX}", self.prepared_count % 2))
    }

    /// Hands the next preparation to the helper thread; without one, the
    /// next [`take`](Self::take) prepares the file itself.
    fn prepare_next(&mut self) {
        let Some(helper) = &self.helper else {
            return;
        };
        let path = self.next_path();
        let job = Job {
            path: path.clone(),
            size_bytes: self.segment_size_bytes,
            preallocation: self.preallocation,
            fault: self.fault.clone(),
        };
        if helper.jobs.send(job).is_ok() {
            self.prepared_count += 1;
            self.pending = Some(path);
        } else {
            self.stop_helper();
        }
    }

    fn stop_helper(&mut self) {
        if let Some(Helper {
            jobs,
            results,
            thread,
        }) = self.helper.take()
        {
            drop(jobs);
            drop(results);
            // A panic of the thread was reported as a failed preparation.
            let _ = thread.join();
        }
    }
}

impl Drop for SegmentPipeline {
    fn drop(&mut self) {
        if let Some((_, Ok(prepared))) = self.pending_result() {
            // Unused; if removing fails, opening the WAL again removes it.
            let _ = std::fs::remove_file(&prepared.path);
        }
        self.stop_helper();
    }
}

/// Starts the helper thread; `None` (preparing in place) if that fails.
fn spawn_helper() -> Option<Helper> {
    let (jobs, job_receiver) = crossbeam_channel::unbounded::<Job>();
    let (result_sender, results) = crossbeam_channel::unbounded();
    let spawned = std::thread::Builder::new()
        .name(HELPER_THREAD_NAME.to_string())
        .spawn(move || run_helper(&job_receiver, &result_sender));
    match spawned {
        Ok(thread) => Some(Helper {
            jobs,
            results,
            thread,
        }),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot start {HELPER_THREAD_NAME}; WAL segments are prepared when cut"
            );
            None
        }
    }
}

/// The helper thread: prepares files until the pipeline is dropped.
fn run_helper(jobs: &Receiver<Job>, results: &Sender<io::Result<PreparedSegment>>) {
    let mut uring = UringFallocate::NotStarted;
    for job in jobs {
        let uring = match job.preallocation {
            Preallocation::Syscall => None,
            Preallocation::Uring => Some(&mut uring),
        };
        let result = prepare(&job.path, job.size_bytes, uring, job.fault.as_ref());
        if let Err(e) = &result {
            // Said now, not at the cut that finds it: a disk filling up
            // shows a segment ahead.
            tracing::warn!(
                path = %job.path.display(),
                error = %e,
                "preparing the next WAL segment failed; the next cut tries again"
            );
        }
        if let Err(SendError(Ok(prepared))) = results.send(result) {
            // The pipeline is gone (it waits for us when dropped, so this
            // is not expected); leave nothing behind.
            let _ = std::fs::remove_file(&prepared.path);
        }
    }
}

/// Creates, locks and preallocates the file at `path`; through io_uring
/// when `uring` is given; `fault` may fail the preallocation instead.
fn prepare(
    path: &Path,
    size_bytes: u64,
    uring: Option<&mut UringFallocate>,
    fault: Option<&PreallocationFault>,
) -> io::Result<PreparedSegment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(fs::SEGMENT_FILE_MODE)
        .open(path)?;
    fs::try_lock_exclusive(&file)?;
    let preallocated_by = match uring {
        Some(uring) => uring.preallocate(&file, path, size_bytes, fault)?,
        None => {
            if let Some(fault) = fault {
                fault.check(path)?;
            }
            fs::preallocate(&file, size_bytes).map(|()| Preallocation::Syscall)?
        }
    };
    tracing::trace!(path = %path.display(), ?preallocated_by, "prepared WAL segment");
    Ok(PreparedSegment {
        path: path.to_path_buf(),
        file,
    })
}

/// The helper thread's io_uring `fallocate`: its runtime, started on first
/// use, or why it is not used.
enum UringFallocate {
    NotStarted,
    Running(tokio_uring::Runtime),
    /// The runtime could not start, or the kernel or file system does not
    /// support io_uring `fallocate`: the syscall from now on.
    Unavailable,
}

impl UringFallocate {
    /// Preallocates `file` to `size_bytes` like [`fs::preallocate`], through
    /// io_uring while that works; returns which way it went. An error from
    /// `fault` stands for the io_uring `fallocate`'s (or the syscall's, when
    /// io_uring is not used).
    fn preallocate(
        &mut self,
        file: &File,
        path: &Path,
        size_bytes: u64,
        fault: Option<&PreallocationFault>,
    ) -> io::Result<Preallocation> {
        if file.metadata()?.len() >= size_bytes {
            return Ok(Preallocation::Syscall);
        }
        if let Some(runtime) = self.runtime() {
            let result = match fault.map(|f| f.check(path)) {
                Some(Err(injected)) => Err(injected),
                _ => uring_fallocate(runtime, file, size_bytes),
            };
            match result {
                Ok(()) => return Ok(Preallocation::Uring),
                Err(e) if is_unsupported(&e) => {
                    tracing::warn!(
                        error = %e,
                        "io_uring fallocate is not supported here; WAL segments are \
                         preallocated with the fallocate syscall"
                    );
                    *self = UringFallocate::Unavailable;
                }
                Err(e) => return Err(e),
            }
        } else if let Some(fault) = fault {
            fault.check(path)?;
        }
        fs::preallocate(file, size_bytes).map(|()| Preallocation::Syscall)
    }

    fn runtime(&mut self) -> Option<&tokio_uring::Runtime> {
        if matches!(self, UringFallocate::NotStarted) {
            *self = match tokio_uring::Runtime::new(
                tokio_uring::builder().entries(HELPER_RING_ENTRIES),
            ) {
                Ok(runtime) => UringFallocate::Running(runtime),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "cannot start io_uring on {HELPER_THREAD_NAME}; WAL segments are \
                         preallocated with the fallocate syscall"
                    );
                    UringFallocate::Unavailable
                }
            };
        }
        match self {
            UringFallocate::Running(runtime) => Some(runtime),
            UringFallocate::NotStarted | UringFallocate::Unavailable => None,
        }
    }
}

/// `fallocate(file, 0, 0, size_bytes)` as an io_uring operation, on a
/// duplicate descriptor (the lock belongs to the open file, not to it).
fn uring_fallocate(runtime: &tokio_uring::Runtime, file: &File, size_bytes: u64) -> io::Result<()> {
    let duplicate = file.try_clone()?;
    runtime.block_on(async move {
        let file = tokio_uring::fs::File::from_std(duplicate);
        let result = file.fallocate(0, size_bytes, 0).await;
        // Closing a duplicate cannot lose data; its error says nothing.
        let _ = file.close().await;
        result
    })
}

/// Whether `error` means "io_uring fallocate is not supported here": an
/// opcode the kernel does not know (`EINVAL`), or a file system without
/// `fallocate` (`EOPNOTSUPP`).
fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::INVAL | Errno::OPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uring_works() -> bool {
        tokio_uring::Runtime::new(&tokio_uring::builder())
            .and_then(|runtime| runtime.block_on(tokio_uring::no_op()))
            .is_ok()
    }

    fn allocated_bytes(file: &File) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        file.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
    }

    #[test]
    fn uring_fallocate_preallocates_like_the_syscall() {
        if !uring_works() {
            eprintln!("skipped: io_uring unavailable");
            return;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("0.tmp");
        let file = File::create(&path).expect("create");
        let mut uring = UringFallocate::NotStarted;
        let by = uring
            .preallocate(&file, &path, 1 << 20, None)
            .expect("preallocate");
        assert_eq!(file.metadata().expect("metadata").len(), 1 << 20);
        if by == Preallocation::Uring {
            assert!(allocated_bytes(&file) >= 1 << 20, "blocks allocated");
        }
        // Already large enough: nothing to do.
        assert_eq!(
            uring.preallocate(&file, &path, 4096, None).expect("no-op"),
            Preallocation::Syscall
        );
        // The runtime is reused, not started again.
        assert!(matches!(
            uring,
            UringFallocate::Running(_) | UringFallocate::Unavailable
        ));
    }

    #[test]
    fn pipeline_prepares_locked_preallocated_files_either_way() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut pipeline = SegmentPipeline::start(dir.path(), 64 * 1024);
        for n in 0..4 {
            if n == 1 {
                pipeline.set_preallocation(Preallocation::Uring);
            }
            let prepared = pipeline.take().expect("prepared");
            assert_eq!(
                prepared.path.file_name().and_then(|n| n.to_str()),
                Some(if n % 2 == 0 { "0.tmp" } else { "1.tmp" })
            );
            assert_eq!(prepared.file.metadata().expect("metadata").len(), 64 * 1024);
            let other = File::open(&prepared.path).expect("open");
            assert_eq!(
                fs::try_lock_exclusive(&other).map_err(|e| e.kind()),
                Err(io::ErrorKind::WouldBlock),
                "{} is locked",
                prepared.path.display()
            );
            // As a cut does: the file takes a segment's name.
            std::fs::rename(&prepared.path, dir.path().join(format!("segment-{n}")))
                .expect("rename");
        }
        drop(pipeline);
        // The file prepared ahead is removed with the pipeline.
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["segment-0", "segment-1", "segment-2", "segment-3"]);
    }

    /// A hook failing preallocations with `ENOSPC` while `failing` says so,
    /// counting the calls.
    fn full_disk(failing: impl Fn(u64) -> bool + Send + Sync + 'static) -> PreallocationFault {
        let calls = std::sync::atomic::AtomicU64::new(0);
        PreallocationFault::new(move |_| {
            let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            failing(call).then(|| io::Error::from_raw_os_error(Errno::NOSPC.raw_os_error()))
        })
    }

    #[test]
    fn a_failed_preparation_is_retried_once_when_taken() {
        for preallocation in [Preallocation::Syscall, Preallocation::Uring] {
            let dir = tempfile::tempdir().expect("temporary directory");
            let mut pipeline = SegmentPipeline::start(dir.path(), 64 * 1024);
            pipeline.set_preallocation(preallocation);
            // The helper's preparation after the first take fails; the
            // retry at the second take succeeds.
            pipeline.set_fault(Some(full_disk(|call| call == 1)));
            pipeline
                .take()
                .expect("the first file, prepared before the fault");
            let prepared = pipeline.take().expect("retried");
            assert_eq!(prepared.file.metadata().expect("metadata").len(), 64 * 1024);
        }
    }

    #[test]
    fn a_full_disk_fails_the_take_naming_the_file() {
        for preallocation in [Preallocation::Syscall, Preallocation::Uring] {
            let dir = tempfile::tempdir().expect("temporary directory");
            let mut pipeline = SegmentPipeline::start(dir.path(), 64 * 1024);
            pipeline.set_preallocation(preallocation);
            pipeline.set_fault(Some(full_disk(|_| true)));
            pipeline
                .take()
                .expect("the first file, prepared before the fault");
            let error = pipeline.take().expect_err("the disk is full");
            assert_eq!(error.kind(), io::ErrorKind::StorageFull);
            let message = error.to_string();
            assert!(
                message.contains("preparing WAL segment") && message.contains("1.tmp"),
                "{message}"
            );
            let source = std::error::Error::source(&error)
                .and_then(|e| e.downcast_ref::<io::Error>())
                .expect("the OS error as the source");
            assert_eq!(source.raw_os_error(), Some(Errno::NOSPC.raw_os_error()));
        }
    }

    #[test]
    fn unsupported_errors_are_recognized() {
        assert!(is_unsupported(&io::Error::from_raw_os_error(
            Errno::INVAL.raw_os_error()
        )));
        assert!(is_unsupported(&io::Error::from_raw_os_error(
            Errno::OPNOTSUPP.raw_os_error()
        )));
        assert!(!is_unsupported(&io::Error::from_raw_os_error(
            Errno::NOSPC.raw_os_error()
        )));
    }
}
