//! The replicated key-value state machine: an ordered map of bytes to bytes
//! that every member builds by applying the same committed entries in the
//! same order.
//!
//! Owns: the map, the applied index, the member directory (each member's
//! peer address, as membership changes announced it: replicated state, so
//! a restarted or snapshot-restored node knows where its peers are), the
//! prost encoding of commands ([`KvCommand`]) and of snapshots
//! ([`KvSnapshot`]).
//!
//! Guarantees: applying is deterministic — the same entries give the same
//! state on every member, including for entries that do not decode (they
//! are skipped the same way everywhere, never crash a member); an entry at
//! or below the applied index is ignored (replay after restart is
//! harmless); a gap in indexes is refused, since it would mean the caller
//! lost an entry. `restore(snapshot())` yields an equal store.
//!
//! May not touch: raft, files or the network. The apply actor feeds it
//! committed entries and asks it for snapshots.

use prost::Message as _;
use std::collections::BTreeMap;
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
    /// The encoded command setting `key` to `value`.
    pub fn put(key: &[u8], value: &[u8]) -> Vec<u8> {
        KvCommand {
            operation: Some(Operation::Put(Put {
                key: key.to_vec(),
                value: value.to_vec(),
            })),
        }
        .encode_to_vec()
    }

    /// The encoded command removing `key`.
    pub fn delete(key: &[u8]) -> Vec<u8> {
        KvCommand {
            operation: Some(Operation::Delete(Delete { key: key.to_vec() })),
        }
        .encode_to_vec()
    }
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

/// The encoded state machine: the data of a raft snapshot.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KvSnapshot {
    /// The index of the last entry the state includes.
    #[prost(uint64, tag = "1")]
    pub applied_index: u64,
    /// Every pair, in key order.
    #[prost(message, repeated, tag = "2")]
    pub pairs: Vec<KvPair>,
    /// The member directory, in id order.
    #[prost(message, repeated, tag = "3")]
    pub members: Vec<MemberAddress>,
}

/// One member's peer address in a snapshot.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemberAddress {
    /// The member's node id.
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    /// Where its peers reach it (empty: unknown, as for in-process nodes).
    #[prost(string, tag = "2")]
    pub peer_url: String,
}

/// A membership change as the member directory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// `node_id` became a voter or learner reachable at `peer_url` (empty:
    /// keep the address already known, as when a learner is promoted).
    Added {
        /// The member.
        node_id: u64,
        /// Its peer address.
        peer_url: String,
    },
    /// `node_id` left.
    Removed {
        /// The member.
        node_id: u64,
    },
}

/// Why applying or restoring failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// An entry was skipped: the caller lost one.
    #[error("entry {index} applied after {applied}: entries {first_missing}..{index} are missing")]
    Gap {
        /// The entry offered.
        index: u64,
        /// The applied index before it.
        applied: u64,
        /// The first missing index.
        first_missing: u64,
    },
    /// A snapshot's data does not decode.
    #[error("snapshot data does not decode: {reason}")]
    SnapshotDecode {
        /// The decoder's message.
        reason: String,
    },
    /// A snapshot holds the same key twice or out of order.
    #[error("snapshot keys are not strictly increasing at pair {position}")]
    SnapshotUnordered {
        /// The position of the offending pair.
        position: usize,
    },
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
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
    /// An entry without a command (a leader's empty entry, a membership
    /// change): only the applied index moved.
    NoOp,
    /// The entry was at or below the applied index: already applied.
    AlreadyApplied,
    /// The entry's data is not a command; skipped on every member alike.
    Rejected {
        /// Why it did not decode.
        reason: String,
    },
}

/// The key-value state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    pairs: BTreeMap<Vec<u8>, Vec<u8>>,
    members: BTreeMap<u64, String>,
    applied_index: u64,
}

impl KvStore {
    /// An empty store at applied index 0.
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// The index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
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

    /// Applies the entry at `index` carrying `data` (an encoded
    /// [`KvCommand`], or empty for entries without a command).
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Result<ApplyOutcome, KvError> {
        if index <= self.applied_index {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        if index != self.applied_index + 1 {
            return Err(KvError::Gap {
                index,
                applied: self.applied_index,
                first_missing: self.applied_index + 1,
            });
        }
        self.applied_index = index;
        if data.is_empty() {
            return Ok(ApplyOutcome::NoOp);
        }
        let command = match KvCommand::decode(data) {
            Ok(command) => command,
            Err(error) => {
                return Ok(ApplyOutcome::Rejected {
                    reason: error.to_string(),
                });
            }
        };
        Ok(match command.operation {
            Some(Operation::Put(put)) => ApplyOutcome::Put {
                replaced: self.pairs.insert(put.key, put.value).is_some(),
            },
            Some(Operation::Delete(delete)) => ApplyOutcome::Deleted {
                existed: self.pairs.remove(&delete.key).is_some(),
            },
            None => ApplyOutcome::Rejected {
                reason: "command without operation".to_string(),
            },
        })
    }

    /// Advances the applied index over an entry that carries no command
    /// for this store.
    pub fn apply_no_op(&mut self, index: u64) -> Result<ApplyOutcome, KvError> {
        self.apply(index, &[])
    }

    /// Applies the membership changes of the entry at `index` to the member
    /// directory.
    pub fn apply_member_changes(
        &mut self,
        index: u64,
        changes: &[MemberChange],
    ) -> Result<ApplyOutcome, KvError> {
        let outcome = self.apply(index, &[])?;
        if outcome == ApplyOutcome::AlreadyApplied {
            return Ok(outcome);
        }
        for change in changes {
            self.record_member_change(change);
        }
        Ok(outcome)
    }

    fn record_member_change(&mut self, change: &MemberChange) {
        match change {
            MemberChange::Added { node_id, peer_url } => {
                let known = self.members.entry(*node_id).or_default();
                if !peer_url.is_empty() {
                    known.clone_from(peer_url);
                }
            }
            MemberChange::Removed { node_id } => {
                self.members.remove(node_id);
            }
        }
    }

    /// The member directory: node id → peer address (empty when unknown).
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    /// The encoded state (the data of a raft snapshot at the applied index):
    /// a [`KvSnapshot`], encoded straight from the map rather than through
    /// a copy of every pair (the apply actor does this every
    /// `snapshot_count` entries, with the whole store).
    pub fn snapshot(&self) -> Vec<u8> {
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
        // Proto3: empty and zero fields are left out, as the derived
        // encoder does; the output is byte-identical to it.
        let field_len = |tag: u32, value: &[u8]| {
            if value.is_empty() {
                0
            } else {
                key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
            }
        };
        let pair_len = |key: &[u8], value: &[u8]| field_len(1, key) + field_len(2, value);
        let mut capacity = 16;
        for (key, value) in &self.pairs {
            let len = pair_len(key, value);
            capacity += 1 + encoded_len_varint(len as u64) + len;
        }
        let mut out = Vec::with_capacity(capacity);
        if self.applied_index != 0 {
            prost::encoding::uint64::encode(1, &self.applied_index, &mut out);
        }
        let put_field = |out: &mut Vec<u8>, tag: u32, value: &[u8]| {
            if !value.is_empty() {
                encode_key(tag, WireType::LengthDelimited, out);
                encode_varint(value.len() as u64, out);
                out.extend_from_slice(value);
            }
        };
        for (key, value) in &self.pairs {
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(pair_len(key, value) as u64, &mut out);
            put_field(&mut out, 1, key);
            put_field(&mut out, 2, value);
        }
        for (&node_id, peer_url) in &self.members {
            prost::encoding::message::encode(
                3,
                &MemberAddress {
                    node_id,
                    peer_url: peer_url.clone(),
                },
                &mut out,
            );
        }
        out
    }

    /// A store rebuilt from [`KvStore::snapshot`] data.
    pub fn restore(data: &[u8]) -> Result<KvStore, KvError> {
        let snapshot = KvSnapshot::decode(data).map_err(|error| KvError::SnapshotDecode {
            reason: error.to_string(),
        })?;
        let mut pairs = BTreeMap::new();
        let mut previous: Option<&[u8]> = None;
        for (position, pair) in snapshot.pairs.iter().enumerate() {
            if previous.is_some_and(|prev| prev >= pair.key.as_slice()) {
                return Err(KvError::SnapshotUnordered { position });
            }
            previous = Some(&pair.key);
        }
        for pair in snapshot.pairs {
            pairs.insert(pair.key, pair.value);
        }
        let members = snapshot
            .members
            .into_iter()
            .map(|member| (member.node_id, member.peer_url))
            .collect();
        Ok(KvStore {
            pairs,
            members,
            applied_index: snapshot.applied_index,
        })
    }
}

#[cfg(test)]
mod tests;
