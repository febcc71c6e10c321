//! The interface between a node and the state it replicates: the user's
//! own [`StateMachine`].
//!
//! Owns: the [`StateMachine`] and [`WriteSnapshot`] traits and
//! [`Committed`], the unit `apply` receives.
//!
//! Guarantees (what the node promises an implementation):
//! - `apply` sees every committed command exactly once per life of the
//!   state machine, in log order, in batches; entries that carry no
//!   command (a leader's empty entry, a membership change) and entries
//!   whose data does not decode are not shown, but their indexes are
//!   consumed;
//! - `snapshot` is called between two `apply` batches; the view it returns
//!   is written on a blocking thread while `apply` goes on;
//! - `restore` is called on a state machine that must then equal the one
//!   that wrote the snapshot; commands after the snapshot's index follow;
//! - `query` never runs concurrently with `apply` or `restore` on the same
//!   state machine, and sees every batch applied before it.
//!
//! What the node asks of an implementation:
//! - **determinism**: the same commands in the same order give the same
//!   state and the same responses on every member (no clocks, no
//!   randomness, no iteration over hash maps with random seeds in a way
//!   that changes the outcome);
//! - **a command's failure is its response**: "insufficient funds" or "key
//!   not found" belongs in `Response` (for example a `Result`), and goes
//!   back to the proposer; every member decides it alike;
//! - **`Err` from `apply` or `restore` is fatal**: it means this member can
//!   no longer follow the log (a bug, a corrupt snapshot, an exhausted
//!   resource). The node stops, and every call on it reports
//!   [`crate::NodeError::StateMachine`] with that error. Restarting replays
//!   the log from the newest snapshot.
//!
//! Membership is not the state machine's business: the node keeps the
//! member directory and applies configuration changes itself.
//!
//! May not touch: anything of the node; this file is only the contract.

use bytes::Bytes;
use std::io::{Read, Write};

/// A committed command and the raft index it was committed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed<C> {
    /// The raft index of the entry (strictly increasing across calls).
    pub index: u64,
    /// The command, as the proposer gave it (decoded).
    pub command: C,
}

/// A point-in-time view of a state machine that can write itself out.
///
/// Returned by [`StateMachine::snapshot`] and written on a blocking thread
/// while the state machine keeps applying, so it must not borrow the state
/// machine: hold an owned copy, a persistent (copy-on-write) structure, or
/// a database snapshot handle.
pub trait WriteSnapshot: Send + 'static {
    /// Writes the state as of the view to `out`, in whatever format
    /// [`StateMachine::restore`] reads. The node frames the bytes (they are
    /// not required to be self-delimiting).
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// The user's replicated state. See the module documentation for the
/// contract; `examples/ledger/ledger.rs` is a complete small implementation.
pub trait StateMachine: Send + 'static {
    /// What proposers ask to change.
    type Command: Send + 'static;
    /// What `apply` answers for each command (a command's own failure
    /// belongs here).
    type Response: Send + 'static;
    /// What readers ask.
    type Query: Send + 'static;
    /// What `query` answers.
    type QueryResult: Send + 'static;
    /// A point-in-time view for snapshots.
    type Snapshot: WriteSnapshot;
    /// A failure that stops the node (not a command's failure).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends the encoding of `command` to `out` (the codec is the
    /// implementation's choice: prost, serde, raw bytes). Runs on the
    /// proposer's task.
    fn encode_command(command: &Self::Command, out: &mut Vec<u8>);

    /// Decodes a command that [`StateMachine::encode_command`] wrote. An
    /// error skips the entry on every member alike; its proposer, if
    /// waiting, gets [`crate::NodeError::CommandDecode`].
    fn decode_command(bytes: &[u8]) -> Result<Self::Command, DecodeError>;

    /// [`StateMachine::decode_command`] from the entry's own buffer, which
    /// the node calls when applying. The default decodes the slice; a
    /// state machine that keeps parts of a command (a value) may take them
    /// as [`Bytes::slice`]s of `bytes`, sharing the entry's buffer instead
    /// of copying out of it — and keeping that buffer alive while it holds
    /// them. Must decode exactly as `decode_command` does.
    fn decode_shared_command(bytes: &Bytes) -> Result<Self::Command, DecodeError> {
        Self::decode_command(bytes)
    }

    /// Applies a batch of committed commands in log order; returns exactly
    /// one response per command, in the same order. Must be
    /// deterministic. `Err` is fatal (see the module documentation).
    fn apply(
        &mut self,
        commands: Vec<Committed<Self::Command>>,
    ) -> Result<Vec<Self::Response>, Self::Error>;

    /// Answers a read. Linearizable reads run after the node caught up
    /// with the leader's commit index (ReadIndex), lease reads after the
    /// leader confirmed its lease, serializable reads at once.
    fn query(&self, query: Self::Query) -> Self::QueryResult;

    /// A point-in-time view of the state, written out afterwards on a
    /// blocking thread while `apply` goes on.
    fn snapshot(&self) -> Self::Snapshot;

    /// Replaces the whole state by the one `snapshot` holds (bytes written
    /// by [`WriteSnapshot::write_snapshot`]). `Err` is fatal.
    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), Self::Error>;
}

/// A command's bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command does not decode: {reason}")]
pub struct DecodeError {
    /// The codec's message.
    pub reason: String,
}

impl DecodeError {
    /// A decode error saying `reason`.
    pub fn new(reason: impl std::fmt::Display) -> DecodeError {
        DecodeError {
            reason: reason.to_string(),
        }
    }
}
