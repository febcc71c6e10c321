//! The raft core's errors: what its callers are told when a proposal or a
//! message is refused, or persisted state does not fit together.
//!
//! Owns: [`RaftError`] and [`DropReason`].
//! May not touch: anything else; plain data.

use super::confchange::ConfChangeError;
use super::config::ConfigError;
use super::storage::StorageError;
use crate::raftpb::MessageType;

/// Why a proposal was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No leader is known to forward to.
    NoLeader,
    /// The uncommitted bytes limit is reached.
    UncommittedSizeLimit,
    /// This node is not a member (removed) and may not lead.
    NotInConfiguration,
    /// This follower does not forward proposals.
    ForwardingDisabled,
    /// A leadership transfer is under way.
    LeaderTransferInProgress,
    /// The proposal carried no entries.
    Empty,
    /// A candidate cannot take proposals.
    Campaigning,
    /// A configuration change is proposed but not yet applied.
    ConfChangePending,
    /// A joint configuration must be left before another change.
    JointConfigNotLeft,
    /// An empty configuration change outside a joint configuration.
    NotInJointConfig,
    /// A configuration change entry could not be decoded.
    MalformedConfChange,
    /// The proposal was forwarded by a node that is not a member.
    FromNonMember,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            DropReason::NoLeader => "no leader",
            DropReason::UncommittedSizeLimit => "uncommitted size limit reached",
            DropReason::NotInConfiguration => "node is not in the configuration",
            DropReason::ForwardingDisabled => "proposal forwarding is disabled",
            DropReason::LeaderTransferInProgress => "leader transfer in progress",
            DropReason::Empty => "proposal has no entries",
            DropReason::Campaigning => "node is campaigning",
            DropReason::ConfChangePending => "a configuration change is still pending",
            DropReason::JointConfigNotLeft => "the joint configuration must be left first",
            DropReason::NotInJointConfig => "not in a joint configuration",
            DropReason::MalformedConfChange => "configuration change cannot be decoded",
            DropReason::FromNonMember => "forwarded by a node that is not a member",
        };
        f.write_str(text)
    }
}

/// Errors the raft core returns to its caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// The configuration is invalid.
    #[error("invalid raft config: {0}")]
    Config(#[from] ConfigError),
    /// Storage refused a read.
    #[error("raft storage: {0}")]
    Storage(#[from] StorageError),
    /// A proposal was dropped; the caller may retry.
    #[error("proposal dropped: {0}")]
    ProposalDropped(DropReason),
    /// A message meant only for a node's own use came from outside.
    #[error("cannot step local message {0:?} received from the network")]
    StepLocalMessage(MessageType),
    /// A message that no peer sends (sender or term contradicting its
    /// type).
    #[error("malformed {msg_type:?} from {from}: {reason}")]
    MalformedMessage {
        /// The message's type.
        msg_type: MessageType,
        /// The sender it claims.
        from: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A response came from a node that is not a member.
    #[error("response {msg_type:?} from unknown peer {from}")]
    StepPeerNotFound {
        /// The response's type.
        msg_type: MessageType,
        /// The sender.
        from: u64,
    },
    /// A message carried an unknown type value.
    #[error("unknown message type {value} from {from}")]
    UnknownMessageType {
        /// The raw enum value.
        value: i32,
        /// The sender.
        from: u64,
    },
    /// The persisted HardState contradicts the persisted log.
    #[error("persisted commit index {commit} is out of range [{committed}, {last_index}]")]
    InvalidHardState {
        /// The persisted commit index.
        commit: u64,
        /// The commit index implied by the snapshot.
        committed: u64,
        /// The last index of the persisted log.
        last_index: u64,
    },
    /// A configuration change could not be applied.
    #[error("configuration change refused: {0}")]
    ConfChange(#[from] ConfChangeError),
    /// A configuration change entry's data could not be decoded.
    #[error("configuration change entry at index {index} cannot be decoded: {reason}")]
    MalformedConfChangeEntry {
        /// The entry's index.
        index: u64,
        /// The decoder's message.
        reason: String,
    },
    /// A read-index response without exactly one context entry.
    #[error("read index response from {from} carries {entries} entries, expected 1")]
    MalformedReadIndexResponse {
        /// The sender.
        from: u64,
        /// How many entries it carried.
        entries: usize,
    },
    /// `bootstrap` needs at least one voter.
    #[error("bootstrap needs at least one voter")]
    BootstrapWithoutVoters,
    /// `bootstrap` runs only on an empty storage.
    #[error(
        "cannot bootstrap a storage that already holds a log (last index {last_index}) or a configuration"
    )]
    BootstrapNonEmptyStorage {
        /// The storage's last index.
        last_index: u64,
    },
    /// `Config::applied` is beyond what is committed.
    #[error("applied index {applied} is beyond the committed index {committed}")]
    AppliedBeyondCommitted {
        /// The configured applied index.
        applied: u64,
        /// The persisted commit index.
        committed: u64,
    },
}
