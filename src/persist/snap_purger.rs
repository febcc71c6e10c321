//! Removing old snapshot and state files on a thread of their own.
//!
//! Why: a state file holds the whole state (hundreds of MiB); unlinking one
//! frees its extents, which takes the file system tens of milliseconds, and
//! on the persistence thread every WAL group commit (and heartbeat) behind
//! it would wait.
//!
//! Owns: that thread and its queue of purge requests (at most one waiting:
//! requests made while one waits are the same request).
//! Guarantees: purges run in the order asked, one at a time; a failed purge
//! is logged and retried by the next one (old files left behind cost disk
//! space, never correctness); `finish` waits for the purge under way.
//! May not touch: the WAL, files newer than the newest `max_snap_files`
//! snapshots (the snapshotter's rule).

use crate::snap::Snapshotter;
use crossbeam_channel::{Sender, TrySendError, bounded};
use std::thread::JoinHandle;

/// The purging thread of one persistence actor.
pub(crate) struct SnapPurger {
    requests: Option<Sender<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl SnapPurger {
    /// A purger over `snapshotter`'s directory; `node_id` labels its logs.
    pub(crate) fn start(snapshotter: Snapshotter, node_id: u64) -> std::io::Result<SnapPurger> {
        let (requests, queue) = bounded::<usize>(1);
        let thread = std::thread::Builder::new()
            .name("ringraft-snap-purge".into())
            .spawn(move || {
                while let Ok(max_snap_files) = queue.recv() {
                    match snapshotter.purge(max_snap_files) {
                        Ok(removed) if !removed.is_empty() => {
                            tracing::debug!(node = node_id, removed = removed.len(), "old snapshot files removed");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(node = node_id, %error, "removing old snapshot files failed");
                        }
                    }
                }
            })?;
        Ok(SnapPurger {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Asks for the files beyond the newest `max_snap_files` snapshots to
    /// be removed; returns at once.
    pub(crate) fn purge(&self, max_snap_files: usize) {
        if let Some(requests) = &self.requests {
            match requests.try_send(max_snap_files) {
                // A request already waits: it will see these files too.
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    tracing::warn!("snapshot purge thread is gone");
                }
            }
        }
    }

    /// Waits for the purges asked so far.
    pub(crate) fn finish(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SnapPurger {
    fn drop(&mut self) {
        self.finish();
    }
}
