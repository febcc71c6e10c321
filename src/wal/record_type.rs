//! The record types of etcd's WAL (`walpb.Record.type`).
//!
//! Owns: the numbering metadata=1, entry=2, state=3, crc=4, snapshot=5.
//! Guarantees: the values are etcd's; any other value is rejected on decode.
//! May not touch: record contents or framing.

/// What a WAL record's `data` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// An encoded [`Metadata`](crate::raftpb::Metadata): who wrote the WAL.
    Metadata = 1,
    /// An encoded raft [`Entry`](crate::raftpb::Entry).
    Entry = 2,
    /// An encoded [`HardState`](crate::raftpb::HardState).
    State = 3,
    /// No data; `crc` carries the running CRC of the previous segment.
    Crc = 4,
    /// An encoded [`walpb::Snapshot`](crate::raftpb::walpb::Snapshot) marker.
    Snapshot = 5,
}

impl RecordType {
    /// The type for a `walpb.Record.type` value, `None` for unknown values.
    pub fn from_i64(value: i64) -> Option<RecordType> {
        match value {
            1 => Some(RecordType::Metadata),
            2 => Some(RecordType::Entry),
            3 => Some(RecordType::State),
            4 => Some(RecordType::Crc),
            5 => Some(RecordType::Snapshot),
            _ => None,
        }
    }

    /// The `walpb.Record.type` value.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// The lower-case name used by `ringraft wal dump`.
    pub fn name(self) -> &'static str {
        match self {
            RecordType::Metadata => "metadata",
            RecordType::Entry => "entry",
            RecordType::State => "state",
            RecordType::Crc => "crc",
            RecordType::Snapshot => "snapshot",
        }
    }
}
