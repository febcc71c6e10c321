//! What a node's callers can be told.
//!
//! Owns: [`NodeError`].
//! Guarantees: each failure a caller may react to differently has its own
//! variant (retry elsewhere, retry later, give up).
//! May not touch: anything but error values.

use super::bootstrap::BootError;
use crate::persist::SharedPersistError;
use crate::raft::RaftError;

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
    /// Raft refused the proposal (leader transfer, size limit, ...).
    #[error("proposal dropped: {reason}")]
    ProposalDropped {
        /// Raft's reason.
        reason: String,
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
    Boot(std::sync::Arc<BootError>),
    /// The raft core refused its configuration or state.
    #[error("raft: {0}")]
    Raft(std::sync::Arc<RaftError>),
    /// The raft actor's in-memory log refused a persisted Ready (a bug).
    #[error("raft log: {0}")]
    RaftLog(String),
    /// `Node::start` was called outside a tokio runtime.
    #[error("Node::start must be called within a tokio runtime")]
    NoRuntime,
    /// The state machine refused a committed entry (a lost entry).
    #[error("state machine: {0}")]
    StateMachine(String),
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
}

impl From<BootError> for NodeError {
    fn from(error: BootError) -> NodeError {
        NodeError::Boot(std::sync::Arc::new(error))
    }
}

impl From<RaftError> for NodeError {
    fn from(error: RaftError) -> NodeError {
        NodeError::Raft(std::sync::Arc::new(error))
    }
}
