//! The apply machinery without the actor around it: turns committed raft
//! entries into calls on the user's state machine, keeps the member
//! directory, and frames snapshots. Pure and synchronous, so that the
//! deterministic simulation (`tests/sim`) runs exactly this code.
//!
//! Owns: the [`StateMachine`], the applied index, the member directory
//! (node id → peer address, replicated: a restarted or snapshot-restored
//! node knows where its peers are), the members' published client URLs
//! (node id → client URL, from their attributes records), and the
//! snapshot data format:
//!
//! | bytes | field | meaning |
//! | --- | --- | --- |
//! | 4 | magic | `RRSN` |
//! | 1 | version | 1 |
//! | 4 | header length | u32, big-endian |
//! | n | header | protobuf [`SnapshotHeader`]: applied index (1), members (2: node id 1, peer url 2), client URLs (3: node id 1, client url 2) |
//! | rest | state | the state machine's own bytes ([`WriteSnapshot`]) |
//!
//! Guarantees: entries apply in index order, each once (an entry at or
//! below the applied index is skipped, so replay after a restart is
//! harmless); a gap is refused ([`ApplyError::Gap`]) rather than applied
//! around. Every member makes the same decisions: entries without a
//! command, and entries whose header or command does not decode, only move
//! the applied index. A snapshot taken between two batches restores to the
//! same applied index, member directory and state.
//!
//! May not touch: raft, channels, files. Membership changes are applied
//! to raft by the raft actor; here they only update the directory.

use super::envelope::{self, RequestId};
use super::error::{ApplyError, NodeError};
use crate::raft::raft::decode_conf_change;
use crate::raftpb::{ConfChangeType, Entry, EntryType};
use crate::state_machine::{Committed, DecodeError, StateMachine, WriteSnapshot};
use bytes::Bytes;
use prost::Message as _;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

/// The first bytes of the snapshot data.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"RRSN";
/// The snapshot data format version.
pub const SNAPSHOT_VERSION: u8 = 1;
/// A header longer than this is refused (it holds only the members).
const MAX_HEADER_BYTES: u32 = 64 * 1024 * 1024;

/// The node's part of a snapshot.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapshotHeader {
    /// The index of the last entry the state includes.
    #[prost(uint64, tag = "1")]
    pub applied_index: u64,
    /// The member directory, in id order.
    #[prost(message, repeated, tag = "2")]
    pub members: Vec<MemberAddress>,
    /// The members' published client URLs, in id order.
    #[prost(message, repeated, tag = "3")]
    pub client_urls: Vec<MemberClientUrl>,
}

/// One member's published client URL in a snapshot header.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemberClientUrl {
    /// The member's node id.
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    /// Where its clients connect.
    #[prost(string, tag = "2")]
    pub client_url: String,
}

/// One member's peer address in a snapshot header.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemberAddress {
    /// The member's node id.
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    /// Where its peers reach it (empty: unknown, as for in-process nodes).
    #[prost(string, tag = "2")]
    pub peer_url: String,
}

/// What applying a batch of entries did.
#[derive(Debug)]
pub struct AppliedBatch<R> {
    /// The outcome for each entry that carries a request id of this or
    /// another node, in log order.
    pub outcomes: Vec<(RequestId, u64, Result<R, NodeError>)>,
    /// A member was added by the batch.
    pub member_added: bool,
}

/// A snapshot being taken: the node's header and the state machine's
/// point-in-time view.
pub struct SnapshotJob<V> {
    header: SnapshotHeader,
    view: V,
}

impl<V: WriteSnapshot> SnapshotJob<V> {
    /// The applied index the snapshot stands at.
    pub fn index(&self) -> u64 {
        self.header.applied_index
    }

    /// Writes the framed snapshot to `out` (on a blocking thread: the
    /// state machine's part may be large).
    pub fn write(self, out: &mut dyn Write) -> Result<(), ApplyError> {
        let index = self.header.applied_index;
        let failed = |error: std::io::Error| ApplyError::SnapshotWrite {
            index,
            source: Arc::new(error),
        };
        let header = self.header.encode_to_vec();
        let header_len = u32::try_from(header.len()).map_err(|_| ApplyError::SnapshotFormat {
            index,
            reason: format!("header of {} bytes", header.len()),
        })?;
        out.write_all(SNAPSHOT_MAGIC).map_err(failed)?;
        out.write_all(&[SNAPSHOT_VERSION]).map_err(failed)?;
        out.write_all(&header_len.to_be_bytes()).map_err(failed)?;
        out.write_all(&header).map_err(failed)?;
        self.view.write_snapshot(out).map_err(failed)
    }

    /// The framed snapshot as bytes (today's raft snapshots travel whole).
    pub fn into_bytes(self) -> Result<Vec<u8>, ApplyError> {
        let mut data = Vec::new();
        self.write(&mut data)?;
        Ok(data)
    }
}

/// The state machine with the node's bookkeeping around it.
#[derive(Debug)]
pub struct Applier<S> {
    state: S,
    applied_index: u64,
    members: BTreeMap<u64, String>,
    client_urls: BTreeMap<u64, String>,
}

impl<S: StateMachine> Applier<S> {
    /// An applier over `state` (empty, at index 0).
    pub fn new(state: S) -> Applier<S> {
        Applier {
            state,
            applied_index: 0,
            members: BTreeMap::new(),
            client_urls: BTreeMap::new(),
        }
    }

    /// The index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The member directory: node id → peer address (empty when unknown).
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    /// The client URLs members published: node id → client URL.
    pub fn client_urls(&self) -> &BTreeMap<u64, String> {
        &self.client_urls
    }

    /// The state machine.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Answers a query of the state machine.
    pub fn query(&self, query: S::Query) -> S::QueryResult {
        self.state.query(query)
    }

    /// Applies committed `entries` (in order; those at or below the
    /// applied index are skipped). An error is fatal: a gap, or the state
    /// machine's own failure.
    pub fn apply(&mut self, entries: Vec<Entry>) -> Result<AppliedBatch<S::Response>, ApplyError> {
        let mut commands = Vec::with_capacity(entries.len());
        let mut waiting = Vec::with_capacity(entries.len());
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut member_added = false;
        for entry in entries {
            if entry.index <= self.applied_index {
                continue;
            }
            if entry.index != self.applied_index + 1 {
                return Err(ApplyError::Gap {
                    index: entry.index,
                    applied: self.applied_index,
                });
            }
            self.applied_index = entry.index;
            match entry.entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal if entry.data.first() == Some(&envelope::ATTRIBUTES_TAG) => {
                    self.apply_attributes(&entry);
                }
                EntryType::EntryNormal => match decode_proposal::<S>(&entry.data) {
                    (id, Ok(command)) => {
                        commands.push(Committed {
                            index: entry.index,
                            command,
                        });
                        waiting.push((id, entry.index));
                    }
                    (id, Err(error)) => {
                        tracing::warn!(index = entry.index, %error, "entry is not a command; skipped");
                        if let Some(id) = id {
                            outcomes.push((id, entry.index, Err(NodeError::CommandDecode(error))));
                        }
                    }
                },
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    member_added |= self.apply_member_change(&entry);
                }
            }
        }
        if commands.is_empty() {
            return Ok(AppliedBatch {
                outcomes,
                member_added,
            });
        }
        let decode_failures = outcomes.len();
        let (first, last) = (commands[0].index, commands[commands.len() - 1].index);
        let expected = commands.len();
        let responses = self
            .state
            .apply(commands)
            .map_err(|error| ApplyError::Apply {
                first,
                last,
                source: Arc::new(error),
            })?;
        if responses.len() != expected {
            return Err(ApplyError::ResponseCount {
                first,
                last,
                expected,
                got: responses.len(),
            });
        }
        for ((id, index), response) in waiting.into_iter().zip(responses) {
            if let Some(id) = id {
                outcomes.push((id, index, Ok(response)));
            }
        }
        if decode_failures > 0 {
            outcomes.sort_by_key(|(_, index, _)| *index);
        }
        Ok(AppliedBatch {
            outcomes,
            member_added,
        })
    }

    /// A membership change updates the member directory; returns whether
    /// it added a member.
    fn apply_member_change(&mut self, entry: &Entry) -> bool {
        // Refused alike on every member; only the index moves.
        let Ok(Some(cc)) = decode_conf_change(entry) else {
            return false;
        };
        let mut added = false;
        for change in &cc.changes {
            let node_id = change.node_id;
            match ConfChangeType::try_from(change.change_type) {
                Ok(
                    ConfChangeType::ConfChangeAddNode | ConfChangeType::ConfChangeAddLearnerNode,
                ) => {
                    let peer_url = envelope::member_peer_url(&cc.context, node_id);
                    let known = self.members.entry(node_id).or_default();
                    // A promotion announces no address: keep the known one.
                    if !peer_url.is_empty() {
                        *known = peer_url;
                    }
                    added = true;
                }
                Ok(ConfChangeType::ConfChangeRemoveNode) => {
                    self.members.remove(&node_id);
                    self.client_urls.remove(&node_id);
                }
                Ok(ConfChangeType::ConfChangeUpdateNode) => {
                    let peer_url = envelope::member_peer_url(&cc.context, node_id);
                    if !peer_url.is_empty() {
                        self.members.insert(node_id, peer_url);
                    }
                }
                Err(_) => {}
            }
        }
        added
    }

    /// A member's attributes record updates its client URL (an empty one
    /// forgets it).
    fn apply_attributes(&mut self, entry: &Entry) {
        match envelope::attributes_of(&entry.data) {
            Some(Ok(attributes)) if attributes.node_id != 0 => {
                if attributes.client_url.is_empty() {
                    self.client_urls.remove(&attributes.node_id);
                } else {
                    self.client_urls
                        .insert(attributes.node_id, attributes.client_url);
                }
            }
            Some(Ok(_)) => {
                tracing::warn!(
                    index = entry.index,
                    "member attributes name node 0; skipped"
                );
            }
            Some(Err(error)) => {
                tracing::warn!(index = entry.index, %error, "member attributes skipped");
            }
            None => {}
        }
    }

    /// A point-in-time view of the state machine alone (no node header),
    /// for a backup.
    pub fn state_view(&self) -> S::Snapshot {
        self.state.snapshot()
    }

    /// A point-in-time snapshot of the applied state, to be written with
    /// [`SnapshotJob::write`] while applying goes on.
    pub fn snapshot(&self) -> SnapshotJob<S::Snapshot> {
        SnapshotJob {
            header: SnapshotHeader {
                applied_index: self.applied_index,
                members: self
                    .members
                    .iter()
                    .map(|(&node_id, peer_url)| MemberAddress {
                        node_id,
                        peer_url: peer_url.clone(),
                    })
                    .collect(),
                client_urls: self
                    .client_urls
                    .iter()
                    .map(|(&node_id, client_url)| MemberClientUrl {
                        node_id,
                        client_url: client_url.clone(),
                    })
                    .collect(),
            },
            view: self.state.snapshot(),
        }
    }

    /// Replaces the state by the framed snapshot (as [`SnapshotJob::write`]
    /// wrote it) of the raft snapshot at `index`, read from `snapshot` as
    /// a stream.
    pub fn restore(&mut self, index: u64, snapshot: &mut dyn Read) -> Result<(), ApplyError> {
        let header = read_header(index, snapshot)?;
        if header.applied_index != index {
            return Err(ApplyError::SnapshotFormat {
                index,
                reason: format!("header says index {}", header.applied_index),
            });
        }
        self.state
            .restore(snapshot)
            .map_err(|error| ApplyError::Restore {
                index,
                source: Arc::new(error),
            })?;
        self.applied_index = index;
        self.members = header
            .members
            .into_iter()
            .map(|member| (member.node_id, member.peer_url))
            .collect();
        self.client_urls = header
            .client_urls
            .into_iter()
            .map(|member| (member.node_id, member.client_url))
            .collect();
        Ok(())
    }
}

/// The request id and decoded command of a normal entry's data.
fn decode_proposal<S: StateMachine>(
    data: &Bytes,
) -> (Option<RequestId>, Result<S::Command, DecodeError>) {
    match envelope::split(data) {
        Ok(proposal) => {
            // The command is the tail of the data, after the header.
            let header_len = data.len() - proposal.command.len();
            let command = data.slice(header_len..);
            (proposal.id, S::decode_shared_command(&command))
        }
        Err(error) => (None, Err(DecodeError::new(error))),
    }
}

/// Reads the prefix and header of a framed snapshot, leaving `reader` at
/// the state machine's bytes.
fn read_header(index: u64, reader: &mut dyn Read) -> Result<SnapshotHeader, ApplyError> {
    let bad = |reason: String| ApplyError::SnapshotFormat { index, reason };
    let mut fixed = [0u8; 9];
    reader
        .read_exact(&mut fixed)
        .map_err(|e| bad(format!("reading the 9-byte prefix: {e}")))?;
    if &fixed[..4] != SNAPSHOT_MAGIC {
        return Err(bad(format!(
            "magic {:?}, not {:?} (a snapshot of another format or version)",
            fixed[..4].escape_ascii().to_string(),
            "RRSN"
        )));
    }
    if fixed[4] != SNAPSHOT_VERSION {
        return Err(bad(format!(
            "format version {}, not {SNAPSHOT_VERSION}",
            fixed[4]
        )));
    }
    let header_len = u32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]);
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!("header of {header_len} bytes")));
    }
    // Grows with the bytes that arrive, so a wrong length cannot make it
    // allocate what it claims.
    let mut header = Vec::new();
    let read = reader
        .take(u64::from(header_len))
        .read_to_end(&mut header)
        .map_err(|e| bad(format!("reading the header: {e}")))?;
    if read != header_len as usize {
        return Err(bad(format!("header of {header_len} bytes, {read} present")));
    }
    SnapshotHeader::decode(header.as_slice()).map_err(|e| bad(format!("header: {e}")))
}

#[cfg(test)]
mod tests;
