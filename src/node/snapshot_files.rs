//! Where the node's snapshots meet the snapshot directory: a snapshot the
//! apply actor takes is streamed into a state file, and a state machine is
//! restored by streaming such a file back.
//!
//! Owns: the choice between a raft snapshot whose data refers to a state
//! file ([`StateFileRef`], everything this node writes) and one whose data
//! is the framed state itself (snapshots written before state files
//! existed, and the simulation's, which has no directory).
//! Guarantees: a restore from a file checks the file's size and CRC to its
//! end, and fails (naming the file) rather than keep a state built from
//! wrong bytes; nothing here holds a whole snapshot in memory.
//! May not touch: raft, the WAL, the `.snap` files (the persistence actor
//! saves those), the network.

use super::applier::{Applier, SnapshotJob};
use super::error::ApplyError;
use super::mailbox::SnapshotData;
use crate::raftpb::Snapshot;
use crate::snap::state_file::{WritePacing, write_state_file};
use crate::snap::{SnapError, StateFileReader, StateFileRef};
use crate::state_machine::{StateMachine, WriteSnapshot};
use std::path::Path;
use std::sync::Arc;

/// Writes `job` as a state file in `snap_dir` at the pace of `pacing`
/// (blocking: run it on a blocking thread) and returns what the raft actor records.
pub(crate) fn write<V: WriteSnapshot>(
    snap_dir: &Path,
    pacing: WritePacing,
    job: SnapshotJob<V>,
) -> Result<SnapshotData, ApplyError> {
    let index = job.index();
    let reference = write_state_file(snap_dir, index, pacing, |out| {
        job.write(out).map_err(Failure::Job)
    })
    .map_err(|failure| match failure {
        Failure::Job(error) => error,
        Failure::File(error) => file_error(index, error),
    })?;
    Ok(SnapshotData {
        index,
        data: reference.encode_data(),
        state_bytes: reference.size_bytes,
    })
}

/// Restores `applier` from `snapshot`: from its state file in `snap_dir`,
/// or from its data when the state travels inline. Blocking.
pub(crate) fn restore<S: StateMachine>(
    applier: &mut Applier<S>,
    snap_dir: &Path,
    snapshot: &Snapshot,
) -> Result<(), ApplyError> {
    let index = snapshot.metadata.index;
    let reference = StateFileRef::of_snapshot(snapshot)
        .map_err(|reason| ApplyError::SnapshotFormat { index, reason })?;
    let Some(reference) = reference else {
        return applier.restore(index, &mut snapshot.data.as_slice());
    };
    let mut reader =
        StateFileReader::open(snap_dir, reference).map_err(|e| file_error(index, e))?;
    applier.restore(index, &mut reader)?;
    reader.finish().map_err(|e| file_error(index, e))
}

/// How many bytes `snapshot`'s state takes: its state file's length, or
/// its data's when the state travels inline.
pub(crate) fn state_bytes(snapshot: &Snapshot) -> u64 {
    state_file_of(snapshot).map_or(snapshot.data.len() as u64, |file| file.size_bytes)
}

/// The state file of `snapshot`, if its state lives in one.
pub(crate) fn state_file_of(snapshot: &Snapshot) -> Option<StateFileRef> {
    StateFileRef::of_snapshot(snapshot).ok().flatten()
}

fn file_error(index: u64, error: SnapError) -> ApplyError {
    ApplyError::SnapshotFile {
        index,
        source: Arc::new(error),
    }
}

/// Why writing a state file failed: the snapshot's own writing, or the
/// file.
enum Failure {
    Job(ApplyError),
    File(SnapError),
}

impl From<SnapError> for Failure {
    fn from(error: SnapError) -> Failure {
        Failure::File(error)
    }
}
