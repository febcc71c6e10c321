//! Saving one snapshot file durably: write a temporary file, fsync it,
//! rename it into place, fsync the directory. This is the only
//! implementation of that sequence. Every step goes through an
//! [`IoBackend`], so the persistence actor runs it on its own backend
//! (io_uring, std, or the fault injector around either), and other callers
//! (the `DurableStorage` façade, tests) run the same code on the std
//! backend with [`save_snapshot_file_blocking`].
//!
//! Owns: the sequence, and the [`SnapshotMarker`] it hands back: the only
//! way production code gets a marker to write into the WAL
//! (`wal::release`).
//! Guarantees: when this returns `Ok`, the file is durable under its final
//! name and the marker is returned; before that (a failure, or a crash),
//! only a `<name>.tmp` file may exist (or, if the directory fsync failed,
//! the file under its name with no marker vouching for it), and
//! [`Snapshotter::new`](crate::snap::Snapshotter::new) removes every `*.tmp`
//! when it next opens the directory.
//! May not touch: the file format (`snap::codec` owns it), the WAL.

use super::backend::{BackendKind, IoBackend};
use super::error::PersistError;
use crate::raftpb::Snapshot;
use crate::snap::SnapName;
use crate::snap::codec::encode_snapshot_file;
use crate::snap::state_file::TEMPORARY_SUFFIX;
use crate::wal::SnapshotMarker;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Saves `snapshot` (which must not be empty: index 0 has no file) durably
/// in `dir` through `backend`; returns the marker the WAL may now record.
pub async fn save_snapshot_file<B: IoBackend>(
    backend: &B,
    dir: &Path,
    snapshot: &Snapshot,
) -> Result<SnapshotMarker, PersistError> {
    debug_assert!(!snapshot.is_empty(), "an empty snapshot has no file");
    let name = SnapName {
        term: snapshot.metadata.term,
        index: snapshot.metadata.index,
    }
    .file_name();
    let path = dir.join(&name);
    let writing = dir.join(format!("{name}{TEMPORARY_SUFFIX}"));
    let bytes = encode_snapshot_file(snapshot);
    let handle = backend
        .create_file(&writing)
        .await
        .map_err(|e| PersistError::io("creating snapshot file", &writing, e))?;
    let (written, _) = backend.write_all_at(&handle, 0, bytes).await;
    written.map_err(|e| PersistError::io("writing snapshot file", &writing, e))?;
    backend
        .sync_all(&handle)
        .await
        .map_err(|e| PersistError::io("fsync of snapshot file", &writing, e))?;
    drop(handle);
    backend
        .rename(&writing, &path)
        .await
        .map_err(|e| PersistError::io("renaming snapshot file", &path, e))?;
    backend
        .sync_dir(dir)
        .await
        .map_err(|e| PersistError::io("fsync of snapshot directory", dir, e))?;
    Ok(SnapshotMarker::for_durable_file(snapshot))
}

/// [`save_snapshot_file`] on the calling thread, for callers outside the
/// persistence actor. `backend` must be of the std kind (the std backend,
/// or the fault injector around it): its steps complete without a runtime
/// (its fsync on its helper thread), which the uring backend's do not.
pub fn save_snapshot_file_blocking<B: IoBackend>(
    backend: &B,
    dir: &Path,
    snapshot: &Snapshot,
) -> Result<SnapshotMarker, PersistError> {
    assert_eq!(
        backend.kind(),
        BackendKind::Std,
        "a blocking snapshot save needs the std backend"
    );
    block_on(save_snapshot_file(backend, dir, snapshot))
}

/// Wakes the thread that polls the future.
struct Unparker(std::thread::Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread, parking between polls until it is woken
/// (a spurious wake-up only costs a poll).
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unparker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
