//! What the raft and apply actors hand to the persistence actor.
//!
//! Owns: [`ReadyToPersist`] (the durable part of one raft Ready) and the
//! request queue's message type.
//! Guarantees: plain data; a Ready's number, not its position in a batch,
//! is what acknowledgements refer to.
//! May not touch: IO.

use super::error::SharedPersistError;
use crate::raft::raw_node::Ready;
use crate::raftpb::{Entry, HardState, Snapshot};
use tokio::sync::oneshot;

/// The part of a raft Ready that must be made durable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadyToPersist {
    /// The Ready's number; numbers must increase in submission order.
    pub number: u64,
    /// The hard state, when it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// A snapshot to save (file first, then the WAL marker).
    pub snapshot: Option<Snapshot>,
    /// Whether raft requires an fdatasync before acknowledging (the actor
    /// also syncs whenever the WAL's own rule asks for it).
    pub must_sync: bool,
}

impl ReadyToPersist {
    /// The durable part of `ready` (cloned: the raft actor keeps the Ready
    /// to append its entries to `MemoryStorage` once acknowledged).
    pub fn from_ready(ready: &Ready) -> ReadyToPersist {
        ReadyToPersist {
            number: ready.number,
            hard_state: ready.hard_state,
            entries: ready.entries.clone(),
            snapshot: ready.snapshot.clone(),
            must_sync: ready.must_sync,
        }
    }

    /// Approximate bytes this Ready adds to a batch (entry payloads plus
    /// per-record framing), for the batch byte cap.
    pub fn approx_bytes(&self) -> usize {
        const RECORD_OVERHEAD_BYTES: usize = 32;
        let entries: usize = self
            .entries
            .iter()
            .map(|e| e.data.len() + RECORD_OVERHEAD_BYTES)
            .sum();
        let snapshot = self
            .snapshot
            .as_ref()
            .map_or(0, |s| s.data.len() + RECORD_OVERHEAD_BYTES);
        entries + snapshot + RECORD_OVERHEAD_BYTES
    }
}

/// The reply to a snapshot save: `Ok` once the snapshot file and its WAL
/// marker are durable.
pub(crate) type SnapshotReply = oneshot::Sender<Result<(), SharedPersistError>>;

/// One message on the actor's queue.
#[derive(Debug)]
pub(crate) enum PersistRequest {
    /// A Ready to make durable and acknowledge by number.
    Ready(ReadyToPersist),
    /// A snapshot made by the apply actor: save it in etcd's order, then
    /// release and purge what it makes unnecessary.
    SaveSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
        /// Where to say it is durable.
        reply: SnapshotReply,
    },
    /// Finish what is queued before this, sync, close, stop.
    Shutdown,
}

impl PersistRequest {
    /// Approximate bytes this request adds to a batch.
    pub(crate) fn approx_bytes(&self) -> usize {
        match self {
            PersistRequest::Ready(ready) => ready.approx_bytes(),
            PersistRequest::SaveSnapshot { snapshot, .. } => snapshot.data.len(),
            PersistRequest::Shutdown => 0,
        }
    }
}
