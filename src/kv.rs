//! The built-in replicated key-value state machine: an ordered map of
//! bytes to bytes, the [`StateMachine`] behind the HTTP API.
//!
//! Owns: the map, the prost encoding of commands ([`KvCommand`]) and the
//! snapshot format of the map: a sequence of [`KvPair`] records in
//! strictly increasing key order, each encoded as field 2 of a protobuf
//! message (so the whole is a valid `KvSnapshot { repeated KvPair pairs =
//! 2 }`), written and read one record at a time.
//!
//! Guarantees: applying is deterministic — the same commands give the same
//! state and responses on every member; a command without an operation is
//! answered `Rejected` alike everywhere. `restore` of what a snapshot view
//! wrote yields an equal map, and refuses unordered or truncated data with
//! a typed error.
//!
//! May not touch: raft, files or the network; the applied index and the
//! member directory are the node's (`node::applier`).

use crate::state_machine::{Committed, DecodeError, StateMachine, WriteSnapshot};
use prost::Message as _;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Bound;

/// Set `key` to `value`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Put {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The new value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Remove `key`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Delete {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// The operation a command performs.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum Operation {
    /// Set a key.
    #[prost(message, tag = "1")]
    Put(Put),
    /// Remove a key.
    #[prost(message, tag = "2")]
    Delete(Delete),
}

/// A command as stored in a raft entry's data.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KvCommand {
    /// What to do.
    #[prost(oneof = "Operation", tags = "1, 2")]
    pub operation: Option<Operation>,
}

impl KvCommand {
    /// The command setting `key` to `value`.
    pub fn put(key: &[u8], value: &[u8]) -> KvCommand {
        KvCommand {
            operation: Some(Operation::Put(Put {
                key: key.to_vec(),
                value: value.to_vec(),
            })),
        }
    }

    /// The command removing `key`.
    pub fn delete(key: &[u8]) -> KvCommand {
        KvCommand {
            operation: Some(Operation::Delete(Delete { key: key.to_vec() })),
        }
    }
}

/// Appends the encoding of `KvCommand::put(key, value)` to `out`, from
/// the slices (the node's `put` path, which would otherwise copy key and
/// value into a command only to encode it).
pub fn encode_put(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    // Proto3 leaves empty bytes fields out, as the derived encoder does.
    let field_len = |value: &[u8]| {
        if value.is_empty() {
            0
        } else {
            key_len(1) + encoded_len_varint(value.len() as u64) + value.len()
        }
    };
    let put_field = |out: &mut Vec<u8>, tag: u32, value: &[u8]| {
        if !value.is_empty() {
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(value.len() as u64, out);
            out.extend_from_slice(value);
        }
    };
    let put_len = field_len(key) + field_len(value);
    out.reserve(key_len(1) + encoded_len_varint(put_len as u64) + put_len);
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(put_len as u64, out);
    put_field(out, 1, key);
    put_field(out, 2, value);
}

/// One key and its value in a snapshot.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KvPair {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// The field number of a pair in the snapshot stream.
const PAIR_FIELD: u32 = 2;
/// A snapshot record longer than this is refused before it is read (keys
/// and values are capped far below it by the HTTP API).
const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Reading the snapshot failed.
    #[error("reading the snapshot at byte {offset}: {source}")]
    Read {
        /// Bytes read before the failure.
        offset: u64,
        /// The reader's error.
        source: std::io::Error,
    },
    /// A record of the snapshot does not decode.
    #[error("snapshot record {position} at byte {offset} does not decode: {reason}")]
    Decode {
        /// The record's position.
        position: usize,
        /// Its byte offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot holds the same key twice or out of order.
    #[error("snapshot keys are not strictly increasing at record {position}")]
    Unordered {
        /// The position of the offending record.
        position: usize,
    },
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutcome {
    /// A key was set; whether it existed before.
    Put {
        /// The key had a value before.
        replaced: bool,
    },
    /// A key was removed; whether it existed.
    Deleted {
        /// The key had a value.
        existed: bool,
    },
    /// The command had no operation; nothing changed (on every member).
    Rejected,
}

/// The answer to a command: where it applied and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvResponse {
    /// The raft index the command applied at.
    pub index: u64,
    /// What it did.
    pub outcome: KvOutcome,
}

/// A read of the key-value store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvQuery {
    /// The value of a key.
    Get(Vec<u8>),
    /// Up to `limit` pairs whose key starts with `prefix`.
    ScanPrefix {
        /// The prefix.
        prefix: Vec<u8>,
        /// At most this many pairs.
        limit: usize,
    },
}

/// The answer to a [`KvQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvQueryResult {
    /// The value of the key, if it has one.
    Value(Option<Vec<u8>>),
    /// Pairs in key order.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
}

/// The key-value state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    pairs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvStore {
    /// An empty store.
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs.get(key).map(Vec::as_slice)
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.pairs
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Performs `command`.
    pub fn execute(&mut self, command: KvCommand) -> KvOutcome {
        match command.operation {
            Some(Operation::Put(put)) => KvOutcome::Put {
                replaced: self.pairs.insert(put.key, put.value).is_some(),
            },
            Some(Operation::Delete(delete)) => KvOutcome::Deleted {
                existed: self.pairs.remove(&delete.key).is_some(),
            },
            None => KvOutcome::Rejected,
        }
    }
}

/// A point-in-time copy of the map, written out by a snapshot.
#[derive(Debug, Clone)]
pub struct KvSnapshotView {
    pairs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl WriteSnapshot for KvSnapshotView {
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()> {
        use prost::encoding::{WireType, encode_key, encode_varint};
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
        let mut record = Vec::new();
        for (key, value) in self.pairs {
            let pair = KvPair { key, value };
            record.clear();
            encode_key(PAIR_FIELD, WireType::LengthDelimited, &mut record);
            encode_varint(pair.encoded_len() as u64, &mut record);
            pair.encode_raw(&mut record);
            out.write_all(&record)?;
        }
        out.flush()
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Response = KvResponse;
    type Query = KvQuery;
    type QueryResult = KvQueryResult;
    type Snapshot = KvSnapshotView;
    type Error = KvError;

    fn encode_command(command: &KvCommand, out: &mut Vec<u8>) {
        out.reserve(command.encoded_len());
        command.encode_raw(out);
    }

    fn decode_command(bytes: &[u8]) -> Result<KvCommand, DecodeError> {
        KvCommand::decode(bytes).map_err(DecodeError::new)
    }

    fn apply(&mut self, commands: Vec<Committed<KvCommand>>) -> Result<Vec<KvResponse>, KvError> {
        Ok(commands
            .into_iter()
            .map(|committed| KvResponse {
                index: committed.index,
                outcome: self.execute(committed.command),
            })
            .collect())
    }

    fn query(&self, query: KvQuery) -> KvQueryResult {
        match query {
            KvQuery::Get(key) => KvQueryResult::Value(self.get(&key).map(<[u8]>::to_vec)),
            KvQuery::ScanPrefix { prefix, limit } => {
                KvQueryResult::Pairs(self.scan_prefix(&prefix, limit))
            }
        }
    }

    fn snapshot(&self) -> KvSnapshotView {
        KvSnapshotView {
            pairs: self.pairs.clone(),
        }
    }

    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), KvError> {
        let mut reader = RecordReader {
            input: std::io::BufReader::with_capacity(256 * 1024, snapshot),
            offset: 0,
        };
        let mut pairs = BTreeMap::new();
        let mut position = 0;
        while let Some(pair) = reader.next_pair(position)? {
            if pairs
                .last_key_value()
                .is_some_and(|(last, _): (&Vec<u8>, _)| last.as_slice() >= pair.key.as_slice())
            {
                return Err(KvError::Unordered { position });
            }
            pairs.insert(pair.key, pair.value);
            position += 1;
        }
        self.pairs = pairs;
        Ok(())
    }
}

/// Reads the snapshot's records one at a time.
struct RecordReader<R> {
    input: R,
    offset: u64,
}

impl<R: Read> RecordReader<R> {
    /// The next pair, or None at a clean end (between records).
    fn next_pair(&mut self, position: usize) -> Result<Option<KvPair>, KvError> {
        let record_offset = self.offset;
        let bad = |reason: String| KvError::Decode {
            position,
            offset: record_offset,
            reason,
        };
        let Some(key) = self.varint(true)? else {
            return Ok(None);
        };
        let expected = u64::from(PAIR_FIELD << 3 | 2);
        if key != expected {
            return Err(bad(format!("field key {key:#x}, expected {expected:#x}")));
        }
        let len = self
            .varint(false)?
            .ok_or_else(|| bad("truncated length".to_string()))?;
        if len > MAX_RECORD_BYTES {
            return Err(bad(format!("record of {len} bytes")));
        }
        let mut record = vec![0u8; len as usize];
        self.input
            .read_exact(&mut record)
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    bad(format!("truncated record of {len} bytes"))
                }
                _ => KvError::Read {
                    offset: self.offset,
                    source: error,
                },
            })?;
        self.offset += len;
        KvPair::decode(record.as_slice())
            .map(Some)
            .map_err(|error| bad(error.to_string()))
    }

    /// A varint; None at end of input before its first byte when
    /// `end_allowed`.
    fn varint(&mut self, end_allowed: bool) -> Result<Option<u64>, KvError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8; 1];
            let read = loop {
                match self.input.read(&mut byte) {
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match read {
                Ok(0) if shift == 0 && end_allowed => return Ok(None),
                Ok(0) => return Err(self.truncated()),
                Ok(_) => {}
                Err(source) => {
                    return Err(KvError::Read {
                        offset: self.offset,
                        source,
                    });
                }
            }
            self.offset += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(KvError::Decode {
            position: 0,
            offset: self.offset,
            reason: "varint longer than 10 bytes".to_string(),
        })
    }

    fn truncated(&self) -> KvError {
        KvError::Read {
            offset: self.offset,
            source: std::io::ErrorKind::UnexpectedEof.into(),
        }
    }
}

#[cfg(test)]
mod tests;
