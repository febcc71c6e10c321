//! Saving one snapshot file through the actor's IO backend, in the
//! snapshotter's durable order: write a temporary file, fsync it, rename it
//! into place, fsync the directory. Every step is the backend's, so with the
//! uring backend all of them go through io_uring.
//!
//! Owns: that sequence when the persistence actor does it (the
//! [`Snapshotter`](crate::snap::Snapshotter) does the same with plain
//! syscalls, outside the actor).
//! Guarantees: when this returns `Ok`, the file is durable under its final
//! name; before that, only a `*.snap.tmp` file may exist, which the
//! snapshotter removes when it next opens the directory.
//! May not touch: the file format (`snap::codec` owns it), the WAL.

use super::backend::IoBackend;
use super::error::PersistError;
use crate::metrics::{NODE_LABEL, SNAPSHOT_SAVE_DURATION_SECONDS};
use crate::raftpb::Snapshot;
use crate::snap::SnapName;
use crate::snap::codec::encode_snapshot_file;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Suffix of a snapshot file being written; the snapshotter's own
/// (`Snapshotter::new` removes leftovers with this suffix).
const WRITING_SUFFIX: &str = ".tmp";

/// Saves `snapshot` durably in `dir`; returns its path. The time it took
/// is recorded with `node_id` as the `node` label.
pub(crate) async fn save_snapshot_file<B: IoBackend>(
    backend: &B,
    dir: &Path,
    snapshot: &Snapshot,
    node_id: u64,
) -> Result<PathBuf, PersistError> {
    let started = Instant::now();
    let name = SnapName {
        term: snapshot.metadata.term,
        index: snapshot.metadata.index,
    }
    .file_name();
    let path = dir.join(&name);
    let writing = dir.join(format!("{name}{WRITING_SUFFIX}"));
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
    metrics::histogram!(SNAPSHOT_SAVE_DURATION_SECONDS, NODE_LABEL => node_id.to_string())
        .record(started.elapsed().as_secs_f64());
    Ok(path)
}
