//! Snapshot transfers as the node sees them: sending a MsgSnap's state
//! file to a follower and telling raft how it went, and writing down a
//! state file arriving from the leader before raft sees its MsgSnap.
//!
//! Owns: the transfers in flight per follower, the retry backoff after a
//! failed transfer, and the receiving side's file (through
//! [`StateFileReceiver`]).
//! Guarantees:
//! - raft hears `Finish` for a follower only after the transport's delivery
//!   resolved `Ok`, which it does only once the follower confirmed the
//!   file received, checked and fsynced; any failure is reported as
//!   `Failure` only after a backoff (1 s, doubling to 30 s per failure in
//!   a row, reset by a success), so raft, which re-sends a snapshot at the
//!   next heartbeat response after a failure, never retries in a tight
//!   loop; meanwhile raft keeps the follower paused;
//! - a follower steps the MsgSnap into raft only after its state file is
//!   complete under its final name, checked and durable; a lost or damaged
//!   transfer leaves no temporary file behind (and a crash leaves only
//!   `*.tmp`, removed at the next boot).
//!
//! May not touch: raft (the raft actor steps and reports what this sends
//! it), the `.snap` files and the WAL.

use crate::raft::SnapshotStatus;
use crate::raftpb::Message;
use crate::snap::StateFileReceiver;
use crate::transport::snapshot_stream::state_file_ref;
use crate::transport::{IncomingSnapshot, OutgoingSnapshot, SnapshotTransferError, Transport};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Wait after a first failed transfer before raft may retry.
pub(crate) const FIRST_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries.
pub(crate) const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// What transfers tell the raft actor.
#[derive(Debug)]
pub(crate) enum TransferEvent {
    /// A transfer to `to` ended; report `status` to raft.
    Sent { to: u64, status: SnapshotStatus },
    /// A snapshot's state file is durable here; step its MsgSnap.
    Received(Box<Message>),
}

/// The node's snapshot transfers.
pub(crate) struct SnapshotTransfers {
    node: u64,
    snap_dir: PathBuf,
    transport: Arc<dyn Transport>,
    events: mpsc::UnboundedSender<TransferEvent>,
    /// Followers with a transfer in flight.
    sending: HashSet<u64>,
    /// The wait before reporting the next failure, per follower.
    backoff: HashMap<u64, Duration>,
}

impl SnapshotTransfers {
    /// Transfers of node `node` through `transport`, reporting to `events`.
    pub(crate) fn new(
        node: u64,
        snap_dir: PathBuf,
        transport: Arc<dyn Transport>,
        events: mpsc::UnboundedSender<TransferEvent>,
    ) -> SnapshotTransfers {
        SnapshotTransfers {
            node,
            snap_dir,
            transport,
            events,
            sending: HashSet::new(),
            backoff: HashMap::new(),
        }
    }

    /// Starts streaming the state file of MsgSnap `message`; a second
    /// MsgSnap to a follower with one in flight is dropped (raft waits for
    /// the first one's report).
    pub(crate) fn send(&mut self, message: Message) {
        let to = message.to;
        if !self.sending.insert(to) {
            tracing::debug!(node = self.node, to, "snapshot transfer already under way");
            return;
        }
        let backoff = *self.backoff.get(&to).unwrap_or(&FIRST_RETRY_BACKOFF);
        let delivery = deliver(
            self.node,
            Arc::clone(&self.transport),
            self.snap_dir.clone(),
            message,
            backoff,
        );
        let events = self.events.clone();
        tokio::spawn(async move {
            let status = delivery.await;
            // Refused only when the raft actor ended.
            let _ = events.send(TransferEvent::Sent { to, status });
        });
    }

    /// Notes how the transfer to `to` ended, for the next backoff.
    pub(crate) fn reported(&mut self, to: u64, status: SnapshotStatus) {
        self.sending.remove(&to);
        match status {
            SnapshotStatus::Finish => {
                self.backoff.remove(&to);
            }
            SnapshotStatus::Failure => {
                let next = self
                    .backoff
                    .get(&to)
                    .map_or(FIRST_RETRY_BACKOFF, |b| b.saturating_mul(2))
                    .min(MAX_RETRY_BACKOFF);
                self.backoff.insert(to, next);
            }
        }
    }

    /// Writes down an incoming snapshot on a blocking thread; its MsgSnap
    /// goes to raft once the file is durable.
    pub(crate) fn receive(&self, incoming: IncomingSnapshot) {
        let (node, snap_dir, events) = (self.node, self.snap_dir.clone(), self.events.clone());
        tokio::spawn(async move {
            if let Some(message) = receive(node, snap_dir, incoming).await {
                let _ = events.send(TransferEvent::Received(Box::new(message)));
            }
        });
    }
}

/// Streams the state file of `message` and says what raft must hear; a
/// failure is said only after `backoff`.
pub(crate) async fn deliver(
    node: u64,
    transport: Arc<dyn Transport>,
    snap_dir: PathBuf,
    message: Message,
    backoff: Duration,
) -> SnapshotStatus {
    let to = message.to;
    let index = message.snapshot.as_ref().map_or(0, |s| s.metadata.index);
    let outcome = match state_file_ref(&message) {
        Ok(reference) => {
            let snapshot = OutgoingSnapshot {
                message,
                state_file: reference.path(&snap_dir),
                size_bytes: reference.size_bytes,
            };
            transport.send_snapshot(snapshot).await
        }
        Err(reason) => Err(SnapshotTransferError::Refused { peer: to, reason }),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(node, to, index, "snapshot delivered");
            SnapshotStatus::Finish
        }
        Err(error) => {
            tracing::warn!(node, to, index, %error, retry_in_ms = backoff.as_millis() as u64, "snapshot transfer failed");
            tokio::time::sleep(backoff).await;
            SnapshotStatus::Failure
        }
    }
}

/// Writes the chunks of `incoming` to a state file and answers the
/// transport; returns the MsgSnap when the file is durable.
async fn receive(node: u64, snap_dir: PathBuf, incoming: IncomingSnapshot) -> Option<Message> {
    let IncomingSnapshot {
        message,
        mut chunks,
        outcome,
    } = incoming;
    let from = message.from;
    let reference = match state_file_ref(&message) {
        Ok(reference) => reference,
        Err(reason) => {
            let _ = outcome.send(Err(reason));
            return None;
        }
    };
    let tag = format!("from-{from:x}-{}", super::raft_actor::boot_sequence());
    let written = tokio::task::spawn_blocking(move || {
        let mut receiver = StateFileReceiver::create(&snap_dir, reference, &tag)?;
        while let Some(chunk) = chunks.blocking_recv() {
            receiver.write_chunk(&chunk)?;
        }
        receiver.finish()
    })
    .await;
    let verdict = match written {
        Ok(Ok(path)) => {
            tracing::info!(node, from, index = reference.index, path = %path.display(), "snapshot received");
            Ok(())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(join) => Err(format!("writing the state file: {join}")),
    };
    if let Err(reason) = &verdict {
        tracing::warn!(node, from, index = reference.index, %reason, "snapshot not received");
    }
    let accepted = verdict.is_ok();
    // The sender may have given up (stall); the file is durable anyway.
    let _ = outcome.send(verdict);
    accepted.then_some(message)
}

#[cfg(test)]
mod tests;
