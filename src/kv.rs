//! The built-in replicated key-value state machine: an ordered map of
//! bytes to bytes, the [`StateMachine`] behind the HTTP API, and the
//! accounting of its size that the space quota ([`SpaceQuota`]) admits
//! writes against.
//!
//! Owns: the map (keys and values are reference-counted [`Bytes`], so
//! that a snapshot view copies pointers, not bytes), the prost encoding
//! of commands ([`KvCommand`]), the snapshot format of the map: a sequence
//! of [`KvPair`] records in strictly increasing key order, each encoded as
//! field 2 of a protobuf message (so the whole is a valid `KvSnapshot {
//! repeated KvPair pairs = 2 }`), written and read one record at a time;
//! the state's size ([`KvStore::state_bytes`]: key and value bytes plus
//! [`PAIR_OVERHEAD_BYTES`] per pair) and its published copy
//! ([`StateSize`]); the quota's admission rule and NOSPACE alarm
//! ([`SpaceQuota`]).
//!
//! Guarantees: applying is deterministic — the same commands give the same
//! state, size and responses on every member; a command without an
//! operation is answered `Rejected` alike everywhere. The quota is never
//! consulted by `apply` (as in etcd, it is checked where a request is
//! admitted, so members configured with different quotas still apply the
//! same log alike). `restore` of what a snapshot view wrote yields an
//! equal map and size, and refuses unordered or truncated data with a
//! typed error; it drops the old state before reading the new one, so a
//! failed restore leaves the store empty (the node stops on a restore
//! failure anyway, and a follower restoring a large snapshot does not
//! hold the old and the new state at once).
//!
//! May not touch: raft, files or the network; the applied index and the
//! member directory are the node's (`node::applier`).

use crate::state_machine::{Committed, DecodeError, StateMachine, WriteSnapshot};
use bytes::Bytes;
use prost::Message as _;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set `key` to `value`. `Bytes`, so that a command decoded from an
/// entry's buffer can hold its value as a slice of it
/// ([`StateMachine::decode_shared_command`]).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Put {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The new value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// Remove `key`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Delete {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
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
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(value),
            })),
        }
    }

    /// The command removing `key`.
    pub fn delete(key: &[u8]) -> KvCommand {
        KvCommand {
            operation: Some(Operation::Delete(Delete {
                key: Bytes::copy_from_slice(key),
            })),
        }
    }
}

/// The encoded length of a proto3 `bytes` field with tag 1 or 2 holding
/// `len` bytes: left out (0) when empty, as the derived encoder does.
fn bytes_field_len(len: usize) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    if len == 0 {
        0
    } else {
        key_len(1) + encoded_len_varint(len as u64) + len
    }
}

/// Appends the key and length of a bytes field (nothing when `len` is 0);
/// the caller writes the `len` bytes after it.
fn put_bytes_field_head(tag: u32, len: usize, out: &mut Vec<u8>) {
    use prost::encoding::{WireType, encode_key, encode_varint};
    if len != 0 {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
    }
}

/// Appends, for a message with `key` (field 1) and a value of `value_len`
/// bytes (field 2) held as field `outer_tag` of an enclosing message, every
/// byte up to the value's own bytes, which the caller appends (or writes)
/// next: the bytes of the derived encoder, without copying the value.
fn encode_key_value_head(outer_tag: u32, key: &[u8], value_len: usize, out: &mut Vec<u8>) {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let inner_len = bytes_field_len(key.len()) + bytes_field_len(value_len);
    encode_key(outer_tag, WireType::LengthDelimited, out);
    encode_varint(inner_len as u64, out);
    put_bytes_field_head(1, key.len(), out);
    out.extend_from_slice(key);
    put_bytes_field_head(2, value_len, out);
}

/// Appends the encoding of `KvCommand::put(key, value)` to `out`, from
/// the slices (the node's `put` path, which would otherwise copy key and
/// value into a command only to encode it).
pub fn encode_put(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let put_len = bytes_field_len(key.len()) + bytes_field_len(value.len());
    out.reserve(put_len + 12);
    encode_key_value_head(1, key, value.len(), out);
    out.extend_from_slice(value);
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
    /// One page of the pairs whose key starts with `prefix`, in key order
    /// (see [`KvStore::scan`]).
    ScanPrefix {
        /// The prefix.
        prefix: Vec<u8>,
        /// Start at the first key at or after this one (empty: at the
        /// prefix); a page's [`ScanPage::next`] continues a scan.
        start: Vec<u8>,
        /// At most this many pairs.
        limit: usize,
        /// Stop before the keys and values returned would exceed this
        /// many bytes (the first pair is returned whatever its size).
        max_bytes: usize,
    },
}

/// One page of a prefix scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Pairs in key order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first key under the prefix that this page left out (where the
    /// next page starts); `None` when the scan reached the prefix's end.
    pub next: Option<Vec<u8>>,
}

/// The answer to a [`KvQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvQueryResult {
    /// The value of the key, if it has one.
    Value(Option<Vec<u8>>),
    /// A page of pairs in key order.
    Pairs(ScanPage),
}

/// The bytes the size accounting adds to every pair beyond its key and
/// value: an estimate of what the map spends per pair (the key's `Vec`
/// and the value's `Bytes` handles are 56 bytes; B-tree nodes and the
/// allocator add more), so that many tiny pairs count for roughly the
/// memory they take rather than for their payload alone. Part of the
/// deterministic state size: changing it changes no replicated byte, but
/// every member should run the same value.
pub const PAIR_OVERHEAD_BYTES: u64 = 64;

/// What one pair counts toward [`KvStore::state_bytes`].
pub fn pair_bytes(key_len: usize, value_len: usize) -> u64 {
    (key_len as u64)
        .saturating_add(value_len as u64)
        .saturating_add(PAIR_OVERHEAD_BYTES)
}

/// A read-only handle on a store's size, [`KvStore::state_bytes`] as of
/// its last change, readable from any thread without asking the node
/// (which owns the store once started). Taken with
/// [`KvStore::state_size`] before the store moves into the node.
#[derive(Debug, Clone, Default)]
pub struct StateSize(Arc<AtomicU64>);

impl StateSize {
    /// Publishes `bytes` as the size (by the store that owns this).
    pub(crate) fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    /// The store's size in bytes (key and value bytes plus
    /// [`PAIR_OVERHEAD_BYTES`] per pair) after the last command applied.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The key-value state machine.
#[derive(Debug, Default)]
pub struct KvStore {
    /// Keys and values are `Bytes` so that a snapshot view shares them.
    /// A key is a copy of its own (a slice would keep the whole entry it
    /// came in alive for as long as the key lives); a value may be a
    /// slice of its entry (see [`KvStore::decode_shared_command`]).
    pairs: BTreeMap<Bytes, Bytes>,
    /// The sum of [`pair_bytes`] over the map; a function of the map
    /// alone, hence the same on every member at the same index.
    size: u64,
    /// `size`, published for readers on other threads.
    published: StateSize,
}

impl Clone for KvStore {
    /// A separate store with the same pairs (values shared) and its own
    /// [`StateSize`].
    fn clone(&self) -> KvStore {
        let clone = KvStore {
            pairs: self.pairs.clone(),
            size: self.size,
            published: StateSize::default(),
        };
        clone.publish();
        clone
    }
}

impl PartialEq for KvStore {
    fn eq(&self, other: &KvStore) -> bool {
        // The size follows from the pairs; it is compared so that a bug in
        // its accounting shows in every test that compares stores.
        self.pairs == other.pairs && self.size == other.size
    }
}

impl Eq for KvStore {}

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

    /// The size of the state: key and value bytes plus
    /// [`PAIR_OVERHEAD_BYTES`] per pair.
    pub fn state_bytes(&self) -> u64 {
        self.size
    }

    /// A handle that follows [`KvStore::state_bytes`] from other threads,
    /// also after the store moved into a node; clones of the store have
    /// their own.
    pub fn state_size(&self) -> StateSize {
        self.published.clone()
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs.get(key).map(Bytes::as_ref)
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.scan(prefix, &[], limit, usize::MAX).pairs
    }

    /// One page of the pairs whose key starts with `prefix`, from the
    /// first such key at or after `start`, in key order: at most `limit`
    /// pairs, and no more than `max_bytes` of keys and values together,
    /// except that a first pair larger than `max_bytes` is returned alone
    /// (so that a scan always progresses). [`ScanPage::next`] names the
    /// first key left out, to pass as `start` for the next page.
    pub fn scan(&self, prefix: &[u8], start: &[u8], limit: usize, max_bytes: usize) -> ScanPage {
        let from = if start > prefix { start } else { prefix };
        let mut page = ScanPage::default();
        let mut bytes = 0usize;
        let under_prefix = self
            .pairs
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        for (key, value) in under_prefix {
            let pair = key.len().saturating_add(value.len());
            let full = page.pairs.len() >= limit
                || (!page.pairs.is_empty() && bytes.saturating_add(pair) > max_bytes);
            if full {
                page.next = Some(key.to_vec());
                break;
            }
            bytes = bytes.saturating_add(pair);
            page.pairs.push((key.to_vec(), value.to_vec()));
        }
        page
    }

    /// Performs `command`.
    pub fn execute(&mut self, command: KvCommand) -> KvOutcome {
        let outcome = match command.operation {
            Some(Operation::Put(put)) => {
                let key_len = put.key.len();
                self.size = self
                    .size
                    .saturating_add(pair_bytes(key_len, put.value.len()));
                // An existing key keeps its stored copy: no allocation.
                let old = match self.pairs.get_mut(put.key.as_ref()) {
                    Some(value) => Some(std::mem::replace(value, put.value)),
                    None => self
                        .pairs
                        .insert(Bytes::copy_from_slice(&put.key), put.value),
                };
                if let Some(old) = &old {
                    self.size = self.size.saturating_sub(pair_bytes(key_len, old.len()));
                }
                KvOutcome::Put {
                    replaced: old.is_some(),
                }
            }
            Some(Operation::Delete(delete)) => {
                let old = self.pairs.remove(delete.key.as_ref());
                if let Some(old) = &old {
                    self.size = self
                        .size
                        .saturating_sub(pair_bytes(delete.key.len(), old.len()));
                }
                KvOutcome::Deleted {
                    existed: old.is_some(),
                }
            }
            None => KvOutcome::Rejected,
        };
        self.publish();
        outcome
    }

    /// Makes `size` visible to [`StateSize`] holders.
    fn publish(&self) {
        self.published.0.store(self.size, Ordering::Relaxed);
    }

    /// Empties the store.
    fn clear(&mut self) {
        self.pairs = BTreeMap::new();
        self.size = 0;
        self.publish();
    }
}

/// Why [`SpaceQuota::admit_put`] refused a write. Both messages start with
/// "quota exceeded" (the HTTP API answers them with 507, like a failed
/// disk, whose message names a file and an OS error instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The write would take the state past the quota.
    #[error(
        "quota exceeded: a put counting {cost} bytes would take the state ({state_bytes} \
         bytes, and {in_flight_bytes} bytes of puts in flight) past the quota of \
         {quota_bytes} bytes; NOSPACE alarm raised: puts are refused, reads and deletes \
         work, until the state is at or below {resume_bytes} bytes"
    )]
    Exceeded {
        /// What the put counts ([`pair_bytes`]).
        cost: u64,
        /// The state's size.
        state_bytes: u64,
        /// The puts this node admitted that have not finished.
        in_flight_bytes: u64,
        /// The quota.
        quota_bytes: u64,
        /// Where the alarm clears.
        resume_bytes: u64,
    },
    /// The NOSPACE alarm is raised: every write is refused until it
    /// clears.
    #[error(
        "quota exceeded: NOSPACE alarm raised (the state holds {state_bytes} bytes, the quota \
         is {quota_bytes} bytes): puts are refused, reads and deletes work, until the state \
         is at or below {resume_bytes} bytes"
    )]
    Alarm {
        /// The state's size.
        state_bytes: u64,
        /// The quota.
        quota_bytes: u64,
        /// Where the alarm clears.
        resume_bytes: u64,
    },
}

/// The space quota of a serving node: etcd's `--quota-backend-bytes`
/// applied to the key-value state held in memory.
///
/// Checked where a write is admitted (the HTTP request path), never in
/// `apply`: a put whose [`pair_bytes`] would take the state, plus the puts
/// this node admitted that have not finished, past the quota is refused
/// and raises the NOSPACE alarm. While the alarm is raised every put is
/// refused (as etcd's NOSPACE alarm does), reads and deletes go on; the
/// alarm clears by itself once the state is at or below
/// [`SpaceQuota::resume_bytes`] (90% of the quota), checked by
/// [`SpaceQuota::refresh`] and at every admission. The margin keeps the
/// alarm from flapping on every write at the edge; a put refused while the
/// state is already at or below the margin (one too large for the room
/// left) holds the alarm only until the next check. An alarm is this
/// node's own: each member admits against its own applied state.
///
/// The limit is soft by what other members admit concurrently (their
/// writes are not reserved here), as etcd's is.
#[derive(Debug)]
pub struct SpaceQuota {
    quota_bytes: u64,
    size: StateSize,
    /// [`pair_bytes`] of the puts admitted and not yet finished, so that
    /// concurrent writes on this node cannot all pass the same check.
    reserved: AtomicU64,
    alarm: AtomicBool,
}

/// An admitted put's share of the quota, released when dropped (the put
/// finished: applied, failed, or its caller gave up).
#[derive(Debug)]
pub struct QuotaReservation<'a> {
    quota: &'a SpaceQuota,
    bytes: u64,
}

impl Drop for QuotaReservation<'_> {
    fn drop(&mut self) {
        self.quota.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl SpaceQuota {
    /// A quota of `quota_bytes` over the store whose size `size` follows.
    pub fn new(quota_bytes: u64, size: StateSize) -> SpaceQuota {
        SpaceQuota {
            quota_bytes,
            size,
            reserved: AtomicU64::new(0),
            alarm: AtomicBool::new(false),
        }
    }

    /// The quota, in bytes.
    pub fn quota_bytes(&self) -> u64 {
        self.quota_bytes
    }

    /// The store's size now ([`KvStore::state_bytes`] as last applied).
    pub fn state_bytes(&self) -> u64 {
        self.size.bytes()
    }

    /// The size at or below which a raised alarm clears: 90% of the quota.
    pub fn resume_bytes(&self) -> u64 {
        self.quota_bytes - self.quota_bytes / 10
    }

    /// Whether the NOSPACE alarm is raised (as of the last check).
    pub fn alarm(&self) -> bool {
        self.alarm.load(Ordering::Acquire)
    }

    /// Re-evaluates the alarm against the state's size now: raises it when
    /// the state is past the quota (writes admitted elsewhere), clears it
    /// once the state is at or below [`SpaceQuota::resume_bytes`]. Returns
    /// whether it is raised.
    pub fn refresh(&self) -> bool {
        let state = self.state_bytes();
        if state > self.quota_bytes {
            self.raise(state);
        } else if state <= self.resume_bytes() && self.alarm.swap(false, Ordering::AcqRel) {
            tracing::info!(
                state_bytes = state,
                quota_bytes = self.quota_bytes,
                "NOSPACE alarm cleared: writes are admitted again"
            );
        }
        self.alarm()
    }

    /// Admits a put of a `key_len`-byte key and a `value_len`-byte value,
    /// or refuses it (raising the alarm). Hold the reservation until the
    /// put has finished.
    pub fn admit_put(
        &self,
        key_len: usize,
        value_len: usize,
    ) -> Result<QuotaReservation<'_>, QuotaError> {
        if self.refresh() {
            return Err(QuotaError::Alarm {
                state_bytes: self.state_bytes(),
                quota_bytes: self.quota_bytes,
                resume_bytes: self.resume_bytes(),
            });
        }
        let cost = pair_bytes(key_len, value_len);
        // Reserved before the check, so that of two concurrent puts the
        // second one sees the first.
        let reserved = self.reserved.fetch_add(cost, Ordering::AcqRel);
        let reservation = QuotaReservation {
            quota: self,
            bytes: cost,
        };
        let state = self.state_bytes();
        let used = state.saturating_add(reserved);
        if used.saturating_add(cost) > self.quota_bytes {
            drop(reservation);
            self.raise(state);
            return Err(QuotaError::Exceeded {
                cost,
                state_bytes: state,
                in_flight_bytes: reserved,
                quota_bytes: self.quota_bytes,
                resume_bytes: self.resume_bytes(),
            });
        }
        Ok(reservation)
    }

    fn raise(&self, state: u64) {
        if !self.alarm.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                state_bytes = state,
                quota_bytes = self.quota_bytes,
                resume_bytes = self.resume_bytes(),
                "NOSPACE alarm raised: writes are refused until deletes free space"
            );
        }
    }
}

/// The value a store keeps of a put whose command arrived in a buffer of
/// `command_len` bytes: the slice itself while the value is at least half
/// of that buffer (the buffer it keeps alive is then at most twice the
/// value), a copy of its own otherwise (a small value must not hold a
/// larger entry in memory). The buffer is one entry's data: the leader's
/// proposal buffer, or the entry's own allocation where a follower or a
/// restart decoded it (the TCP transport and WAL replay decode each entry
/// out of a borrowed frame), never a whole frame or segment.
fn value_to_keep(value: &Bytes, command_len: usize) -> Bytes {
    if value.len().saturating_mul(2) >= command_len {
        value.clone()
    } else {
        Bytes::copy_from_slice(value)
    }
}

/// A point-in-time view of the map, written out by a snapshot. Taking it
/// copies the map's nodes and the keys' and values' reference counts, not
/// their bytes.
#[derive(Debug, Clone)]
pub struct KvSnapshotView {
    pairs: BTreeMap<Bytes, Bytes>,
}

impl WriteSnapshot for KvSnapshotView {
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
        let mut head = Vec::new();
        for (key, value) in &self.pairs {
            // The bytes of `KvPair { key, value }` as field 2, the value
            // written from the shared buffer rather than copied into a
            // record first.
            head.clear();
            encode_key_value_head(PAIR_FIELD, key, value.len(), &mut head);
            out.write_all(&head)?;
            out.write_all(value)?;
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

    fn decode_shared_command(bytes: &Bytes) -> Result<KvCommand, DecodeError> {
        // Decoding from `Bytes` slices the fields out of the entry's buffer
        // instead of copying them.
        let mut command = KvCommand::decode(bytes.clone()).map_err(DecodeError::new)?;
        if let Some(Operation::Put(put)) = &mut command.operation {
            put.value = value_to_keep(&put.value, bytes.len());
        }
        Ok(command)
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
            KvQuery::ScanPrefix {
                prefix,
                start,
                limit,
                max_bytes,
            } => KvQueryResult::Pairs(self.scan(&prefix, &start, limit, max_bytes)),
        }
    }

    fn snapshot(&self) -> KvSnapshotView {
        KvSnapshotView {
            pairs: self.pairs.clone(),
        }
    }

    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), KvError> {
        // The old state goes first: holding it while the new one is read
        // would double the memory of a large state. A failure leaves the
        // store empty, which is no worse: the node stops on it.
        self.clear();
        // Freed on another thread's allocator arena, the old pages would
        // stay resident beside the new state.
        crate::free_memory::return_free_memory();
        let restored = self.read_pairs(snapshot);
        if restored.is_err() {
            self.clear();
        }
        self.publish();
        restored
    }
}

impl KvStore {
    /// Reads a snapshot's records into the (empty) map.
    fn read_pairs(&mut self, snapshot: &mut dyn Read) -> Result<(), KvError> {
        let mut reader = RecordReader {
            input: std::io::BufReader::with_capacity(256 * 1024, snapshot),
            offset: 0,
        };
        let mut position = 0;
        while let Some(pair) = reader.next_pair(position)? {
            if self
                .pairs
                .last_key_value()
                .is_some_and(|(last, _)| last.as_ref() >= pair.key.as_slice())
            {
                return Err(KvError::Unordered { position });
            }
            self.size = self
                .size
                .saturating_add(pair_bytes(pair.key.len(), pair.value.len()));
            self.pairs
                .insert(Bytes::from(pair.key), Bytes::from(pair.value));
            position += 1;
        }
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
