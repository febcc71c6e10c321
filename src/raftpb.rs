//! Wire and disk types shared by the raft core, the WAL, the snapshotter and
//! the transport.
//!
//! Owns: the protobuf messages of etcd's `raftpb`, `walpb`, `snappb` and
//! `etcdserverpb.Metadata`, written by hand with `prost` derives.
//!
//! Guarantees: every field number and enum value is etcd's, and the encoding is
//! byte-for-byte the one etcd's gogoproto code produces. etcd declares most
//! scalar fields `optional ... [(gogoproto.nullable) = false]` in proto2, which
//! gogoproto marshals *always*, even when zero; the prost `required` label does
//! the same, so those fields are `required` here. Repeated scalars are unpacked
//! (proto2's default). Optional `bytes` fields that etcd only marshals when
//! non-nil are plain `bytes` here: empty and absent are the same to us, which
//! matches etcd for every value etcd actually writes (nil data). Files written
//! by etcd decode here and ours decode in etcd's tools.
//!
//! May not touch: anything but data. No IO, no validation beyond what protobuf
//! decoding does; callers check invariants after decoding.

/// The kind of a raft log entry (`raftpb.EntryType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EntryType {
    /// An application command (or an empty entry appended by a new leader).
    EntryNormal = 0,
    /// A [`ConfChange`] (single-step membership change).
    EntryConfChange = 1,
    /// A [`ConfChangeV2`] (joint-consensus membership change).
    EntryConfChangeV2 = 2,
}

/// One raft log entry (`raftpb.Entry`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    /// What `data` holds, as an [`EntryType`] value.
    #[prost(enumeration = "EntryType", required, tag = "1")]
    pub entry_type: i32,
    /// The term of the leader that created the entry.
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    /// The position of the entry in the log (the first entry is 1).
    #[prost(uint64, required, tag = "3")]
    pub index: u64,
    /// The payload: an application command or an encoded conf change.
    /// `Bytes`, so that the copies of an entry the node keeps (the Ready,
    /// the persistence request, `MemoryStorage`, the committed batch) share
    /// one buffer instead of each allocating its own.
    #[prost(bytes = "bytes", tag = "4")]
    pub data: bytes::Bytes,
}

impl Entry {
    /// A normal entry at `index` of `term` carrying `data`.
    pub fn new(term: u64, index: u64, data: impl Into<bytes::Bytes>) -> Entry {
        Entry {
            entry_type: EntryType::EntryNormal as i32,
            term,
            index,
            data: data.into(),
        }
    }
}

/// The state raft must persist before it answers any message
/// (`raftpb.HardState`).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct HardState {
    /// The current term.
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// The node voted for in `term`, 0 if none.
    #[prost(uint64, required, tag = "2")]
    pub vote: u64,
    /// The highest log index known to be committed.
    #[prost(uint64, required, tag = "3")]
    pub commit: u64,
}

impl HardState {
    /// True when every field is zero: nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The membership of a cluster (`raftpb.ConfState`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfState {
    /// Voters of the incoming (or only) configuration.
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    pub voters: Vec<u64>,
    /// Learners: receive the log, never vote.
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    pub learners: Vec<u64>,
    /// Voters of the outgoing configuration while in a joint configuration.
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub voters_outgoing: Vec<u64>,
    /// Voters of the outgoing configuration that become learners when the
    /// joint configuration is left.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub learners_next: Vec<u64>,
    /// Whether the joint configuration is left automatically.
    #[prost(bool, required, tag = "5")]
    pub auto_leave: bool,
}

/// What a snapshot covers (`raftpb.SnapshotMetadata`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapshotMetadata {
    /// The membership at `index`.
    #[prost(message, required, tag = "1")]
    pub conf_state: ConfState,
    /// The last log index the snapshot includes.
    #[prost(uint64, required, tag = "2")]
    pub index: u64,
    /// The term of the entry at `index`.
    #[prost(uint64, required, tag = "3")]
    pub term: u64,
}

/// A state-machine snapshot with its raft metadata (`raftpb.Snapshot`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Snapshot {
    /// The encoded state machine.
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    /// Index, term and membership the snapshot stands for.
    #[prost(message, required, tag = "2")]
    pub metadata: SnapshotMetadata,
}

impl Snapshot {
    /// True for the zero snapshot (index 0), which stands for "no snapshot".
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

/// The type of a raft [`Message`] (`raftpb.MessageType`), with etcd's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    /// Local: start an election.
    MsgHup = 0,
    /// Local: a leader sends heartbeats.
    MsgBeat = 1,
    /// A proposal of entries.
    MsgProp = 2,
    /// Append entries (also probes).
    MsgApp = 3,
    /// Response to [`MessageType::MsgApp`].
    MsgAppResp = 4,
    /// Request a vote.
    MsgVote = 5,
    /// Response to [`MessageType::MsgVote`].
    MsgVoteResp = 6,
    /// Install a snapshot.
    MsgSnap = 7,
    /// Leader heartbeat carrying the commit index.
    MsgHeartbeat = 8,
    /// Response to [`MessageType::MsgHeartbeat`].
    MsgHeartbeatResp = 9,
    /// Local: a peer could not be reached.
    MsgUnreachable = 10,
    /// Local: outcome of sending a snapshot.
    MsgSnapStatus = 11,
    /// Local: a leader checks that a quorum is active.
    MsgCheckQuorum = 12,
    /// Ask the leader to transfer leadership.
    MsgTransferLeader = 13,
    /// Tell the transfer target to campaign at once.
    MsgTimeoutNow = 14,
    /// A linearizable read request.
    MsgReadIndex = 15,
    /// Response to [`MessageType::MsgReadIndex`].
    MsgReadIndexResp = 16,
    /// Request a pre-vote.
    MsgPreVote = 17,
    /// Response to [`MessageType::MsgPreVote`].
    MsgPreVoteResp = 18,
    /// etcd's local storage-append message (async storage writes).
    MsgStorageAppend = 19,
    /// Response to [`MessageType::MsgStorageAppend`].
    MsgStorageAppendResp = 20,
    /// etcd's local storage-apply message.
    MsgStorageApply = 21,
    /// Response to [`MessageType::MsgStorageApply`].
    MsgStorageApplyResp = 22,
    /// Forget the current leader (used with lease reads disabled).
    MsgForgetLeader = 23,
}

/// A message between raft nodes, or a local input (`raftpb.Message`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// What the message is, as a [`MessageType`] value.
    #[prost(enumeration = "MessageType", required, tag = "1")]
    pub msg_type: i32,
    /// The recipient's node id.
    #[prost(uint64, required, tag = "2")]
    pub to: u64,
    /// The sender's node id.
    #[prost(uint64, required, tag = "3")]
    pub from: u64,
    /// The sender's term (0 for local messages).
    #[prost(uint64, required, tag = "4")]
    pub term: u64,
    /// The term of the entry at `index` (MsgApp), or the last log term (votes).
    #[prost(uint64, required, tag = "5")]
    pub log_term: u64,
    /// The index preceding `entries` (MsgApp) or the index being acknowledged.
    #[prost(uint64, required, tag = "6")]
    pub index: u64,
    /// Entries to append or propose.
    #[prost(message, repeated, tag = "7")]
    pub entries: Vec<Entry>,
    /// The sender's commit index.
    #[prost(uint64, required, tag = "8")]
    pub commit: u64,
    /// A snapshot to install (MsgSnap).
    #[prost(message, optional, tag = "9")]
    pub snapshot: Option<Snapshot>,
    /// Whether the request was refused.
    #[prost(bool, required, tag = "10")]
    pub reject: bool,
    /// On rejection, the index the follower suggests probing from.
    #[prost(uint64, required, tag = "11")]
    pub reject_hint: u64,
    /// Opaque context (campaign type, read request id).
    #[prost(bytes = "vec", tag = "12")]
    pub context: Vec<u8>,
    /// The vote being cast, for etcd's storage messages.
    #[prost(uint64, required, tag = "13")]
    pub vote: u64,
    /// Responses carried by etcd's local storage messages.
    #[prost(message, repeated, tag = "14")]
    pub responses: Vec<Message>,
}

/// The kind of a single membership change (`raftpb.ConfChangeType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeType {
    /// Add a voter (or promote a learner).
    ConfChangeAddNode = 0,
    /// Remove a voter or learner.
    ConfChangeRemoveNode = 1,
    /// No change to membership; carries updated context (for example a URL).
    ConfChangeUpdateNode = 2,
    /// Add a learner (or demote a voter).
    ConfChangeAddLearnerNode = 3,
}

/// A single-step membership change (`raftpb.ConfChange`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfChange {
    /// An application-chosen id.
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    /// What to do, as a [`ConfChangeType`] value.
    #[prost(enumeration = "ConfChangeType", required, tag = "2")]
    pub change_type: i32,
    /// The node the change applies to.
    #[prost(uint64, required, tag = "3")]
    pub node_id: u64,
    /// Opaque application context.
    #[prost(bytes = "vec", tag = "4")]
    pub context: Vec<u8>,
}

/// One change inside a [`ConfChangeV2`] (`raftpb.ConfChangeSingle`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfChangeSingle {
    /// What to do, as a [`ConfChangeType`] value.
    #[prost(enumeration = "ConfChangeType", required, tag = "1")]
    pub change_type: i32,
    /// The node the change applies to.
    #[prost(uint64, required, tag = "2")]
    pub node_id: u64,
}

/// How a [`ConfChangeV2`] moves through joint consensus
/// (`raftpb.ConfChangeTransition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeTransition {
    /// Joint consensus only when needed, left automatically.
    ConfChangeTransitionAuto = 0,
    /// Always joint, left automatically.
    ConfChangeTransitionJointImplicit = 1,
    /// Always joint, left only by an explicit empty ConfChangeV2.
    ConfChangeTransitionJointExplicit = 2,
}

/// A membership change of one or more steps (`raftpb.ConfChangeV2`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfChangeV2 {
    /// How joint consensus is used, as a [`ConfChangeTransition`] value.
    #[prost(enumeration = "ConfChangeTransition", required, tag = "1")]
    pub transition: i32,
    /// The changes, applied together.
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<ConfChangeSingle>,
    /// Opaque application context.
    #[prost(bytes = "vec", tag = "3")]
    pub context: Vec<u8>,
}

/// Types of etcd's `walpb` package: the WAL's record framing payloads.
pub mod walpb {
    use super::ConfState;

    /// One WAL record (`walpb.Record`). `crc` is the running CRC-32C after
    /// adding `data`.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Record {
        /// Record type: metadata=1, entry=2, state=3, crc=4, snapshot=5.
        #[prost(int64, required, tag = "1")]
        pub record_type: i64,
        /// Running CRC-32C (Castagnoli) of the WAL up to and including `data`.
        #[prost(uint32, required, tag = "2")]
        pub crc: u32,
        /// The encoded payload (an Entry, HardState, Metadata or Snapshot).
        #[prost(bytes = "vec", tag = "3")]
        pub data: Vec<u8>,
    }

    /// A snapshot marker in the WAL (`walpb.Snapshot`).
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Snapshot {
        /// The index of the snapshot.
        #[prost(uint64, required, tag = "1")]
        pub index: u64,
        /// The term of the snapshot.
        #[prost(uint64, required, tag = "2")]
        pub term: u64,
        /// Membership at the snapshot (absent in WALs of etcd before 3.5).
        #[prost(message, optional, tag = "3")]
        pub conf_state: Option<ConfState>,
    }
}

/// Types of etcd's `snappb` package: the snapshot file payload.
pub mod snappb {
    /// The content of a `.snap` file (`snappb.Snapshot`).
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Snapshot {
        /// CRC-32C of `data`.
        #[prost(uint32, required, tag = "1")]
        pub crc: u32,
        /// The encoded raft [`Snapshot`](super::Snapshot).
        #[prost(bytes = "vec", tag = "2")]
        pub data: Vec<u8>,
    }
}

/// The WAL metadata record (`etcdserverpb.Metadata`): who wrote this WAL.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Metadata {
    /// The node id of the member that owns the WAL.
    #[prost(uint64, required, tag = "1")]
    pub node_id: u64,
    /// The cluster the member belongs to.
    #[prost(uint64, required, tag = "2")]
    pub cluster_id: u64,
}

#[cfg(test)]
mod tests;
