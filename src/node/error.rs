//! What a node's callers can be told.
//!
//! Owns: [`NodeError`] and [`ApplyError`] (why applying stopped).
//! Guarantees: each failure a caller may react to differently has its own
//! variant (retry elsewhere, retry later, give up).
//! May not touch: anything but error values.

use super::bootstrap::BootError;
use crate::persist::SharedPersistError;
use crate::raft::{DropReason, RaftError};
use crate::state_machine::DecodeError;
use std::sync::Arc;

/// A state machine's own error, shared by every caller told of it.
pub type SharedStateMachineError = Arc<dyn std::error::Error + Send + Sync>;

/// Why a node request or start failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// This node cannot serve the request without a leader, or only the
    /// leader can.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<u64>,
    },
    /// Raft refused the proposal for now (a leader transfer, the
    /// uncommitted size limit, ...): retry later.
    #[error("proposal dropped: {reason:?}")]
    ProposalDropped {
        /// Raft's reason.
        reason: DropReason,
    },
    /// The request did not complete in time; it may still apply later.
    #[error("request timed out")]
    Timeout,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The durable storage failed (full disk, failed write or fdatasync):
    /// the node stopped; nothing unsynced was acknowledged. Restart it (on
    /// a full disk, after freeing space) to serve again.
    #[error("storage failed, the node has stopped: {0}")]
    Storage(SharedPersistError),
    /// The node could not boot from its data directory.
    #[error("boot: {0}")]
    Boot(Arc<BootError>),
    /// The raft core refused its configuration or state.
    #[error("raft: {0}")]
    Raft(Arc<RaftError>),
    /// The raft actor's in-memory log refused a persisted Ready (a bug).
    #[error("raft log: {0}")]
    RaftLog(String),
    /// One of the node's actors panicked (a bug): the node stopped.
    /// Restart it; the log and snapshots on disk are intact.
    #[error("the {actor} actor panicked, the node has stopped: {message}")]
    Panicked {
        /// "raft" or "apply".
        actor: &'static str,
        /// The panic's message.
        message: String,
    },
    /// `Node::start` was called outside a tokio runtime.
    #[error("Node::start must be called within a tokio runtime")]
    NoRuntime,
    /// Applying stopped: the state machine failed, or an entry was lost.
    /// The node stopped; a restart replays the log from the newest
    /// snapshot.
    #[error("state machine: {0}")]
    StateMachine(ApplyError),
    /// The committed command did not decode (the codec is not
    /// deterministic, or another writer's entry): skipped on every member.
    #[error("{0}")]
    CommandDecode(DecodeError),
    /// A membership request names a node that is not a member.
    #[error("node {node_id:#x} is not a member")]
    UnknownMember {
        /// The node named.
        node_id: u64,
    },
    /// A membership request cannot apply to the current membership (adding
    /// a member twice, promoting a voter, removing the last voter, node id
    /// 0).
    #[error("membership change refused: {reason}")]
    InvalidMembership {
        /// Why.
        reason: String,
    },
    /// Another membership change is still being applied on the leader;
    /// the request waited for it until the request timeout. Retry later.
    #[error("another membership change is still being applied")]
    MembershipChangePending,
    /// A lease read on a node whose configuration does not allow leases
    /// (`NodeConfig::lease_reads`).
    #[error("lease reads are not enabled on this node (NodeConfig::lease_reads)")]
    LeaseReadsDisabled,
}

/// Why applying committed entries stopped (fatal for the node).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// An entry was skipped: the caller lost one.
    #[error("entry {index} offered after applied index {applied}: entries are missing")]
    Gap {
        /// The entry offered.
        index: u64,
        /// The applied index before it.
        applied: u64,
    },
    /// The state machine failed applying a batch.
    #[error("applying entries {first}..={last}: {source}")]
    Apply {
        /// The first command's index.
        first: u64,
        /// The last command's index.
        last: u64,
        /// The state machine's error.
        source: SharedStateMachineError,
    },
    /// The state machine answered a batch with the wrong number of
    /// responses.
    #[error("applying entries {first}..={last}: {got} responses for {expected} commands")]
    ResponseCount {
        /// The first command's index.
        first: u64,
        /// The last command's index.
        last: u64,
        /// Commands in the batch.
        expected: usize,
        /// Responses returned.
        got: usize,
    },
    /// The state machine failed restoring a snapshot.
    #[error("restoring the snapshot at index {index}: {source}")]
    Restore {
        /// The snapshot's index.
        index: u64,
        /// The state machine's error.
        source: SharedStateMachineError,
    },
    /// The snapshot data is not framed as the node writes it.
    #[error("snapshot at index {index}: {reason}")]
    SnapshotFormat {
        /// The snapshot's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writing a snapshot failed.
    #[error("writing the snapshot at index {index}: {source}")]
    SnapshotWrite {
        /// The snapshot's index.
        index: u64,
        /// The writer's error.
        source: Arc<std::io::Error>,
    },
    /// The snapshot's state file could not be written, read or checked.
    #[error("state file of the snapshot at index {index}: {source}")]
    SnapshotFile {
        /// The snapshot's index.
        index: u64,
        /// What failed, naming the file.
        source: Arc<crate::snap::SnapError>,
    },
}

impl NodeError {
    /// What a caller is told when raft refuses its request, knowing
    /// `leader` (0: none).
    pub(crate) fn refused(error: RaftError, leader: u64) -> NodeError {
        match error {
            RaftError::ProposalDropped(
                DropReason::NoLeader | DropReason::Campaigning | DropReason::ForwardingDisabled,
            ) => NodeError::NotLeader {
                leader_hint: (leader != 0).then_some(leader),
            },
            RaftError::ProposalDropped(reason) => NodeError::ProposalDropped { reason },
            other => NodeError::from(other),
        }
    }
}

impl NodeError {
    /// Why the task of `actor` ended without returning: a panic (with its
    /// message), or the runtime shutting down (`Stopped`).
    pub(crate) fn task_ended(actor: &'static str, join: tokio::task::JoinError) -> NodeError {
        let Ok(panic) = join.try_into_panic() else {
            return NodeError::Stopped;
        };
        let message = match panic.downcast_ref::<&str>() {
            Some(message) => (*message).to_string(),
            None => match panic.downcast_ref::<String>() {
                Some(message) => message.clone(),
                None => "(no message)".to_string(),
            },
        };
        NodeError::Panicked { actor, message }
    }
}

impl From<BootError> for NodeError {
    fn from(error: BootError) -> NodeError {
        NodeError::Boot(Arc::new(error))
    }
}

impl From<RaftError> for NodeError {
    fn from(error: RaftError) -> NodeError {
        NodeError::Raft(Arc::new(error))
    }
}

impl From<ApplyError> for NodeError {
    fn from(error: ApplyError) -> NodeError {
        NodeError::StateMachine(error)
    }
}
