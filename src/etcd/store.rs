//! [`EtcdStore`]: the MVCC key-value store and the leases as a node's
//! state machine, with etcd's requests as its commands.
//!
//! Owns: the command format (an [`EtcdCommand`]: etcd's own Put,
//! DeleteRange, Txn or Compaction request, so a command is the bytes a
//! client sent, re-encoded once, or one of the lease commands below),
//! applying commands to the [`MvccStore`] and the [`LeaseTable`], reads
//! ([`EtcdQuery`]), snapshots (the MVCC snapshot format of `crate::mvcc`
//! followed by the lease section of `super::lease_snapshot`), and
//! publishing every applied write's events on the [`WatchFeed`].
//! Guarantees: every member applies a command alike, its failure included
//! (a command's failure is its response); a command that does not convert
//! (an enum value etcd does not define, which the services refuse before
//! proposing) fails the same way everywhere. May not touch: raft, gRPC.
//!
//! Leases (etcd's lessor, replicated): the table of leases is state like
//! the keys, changed only by commands. A grant carries its id (chosen by
//! the proposing member, so that applying needs no randomness) and its
//! granted TTL; a renewal (etcd's keep-alive, which here goes through
//! raft) records the raft index it applied at; a revocation deletes the
//! lease and its keys in one revision; an expiry, proposed by the leader
//! when its clock says the lease ran out (`super::lessor`), names the
//! renewal index it saw and does nothing if the lease was renewed since,
//! so a renewal that raced the expiry wins on every member alike. Clocks
//! stay out of the replicated state: each member keeps its own deadlines
//! ([`LeaseDeadlines`], set as it applies grants and renewals).

use super::convert;
use super::lease_snapshot::{LeaseSectionError, read_lease_section, write_lease_section};
use super::leases::{LeaseDeadlines, LeaseRecord, LeaseTable, granted_ttl};
use super::pb::etcdserverpb as pb;
use crate::kv::StateSize;
use crate::mvcc::{self, MvccError, MvccSnapshot, MvccStore, SnapshotError};
use crate::state_machine::{Committed, DecodeError, StateMachine, WriteSnapshot};
use prost::Message as _;
use std::io::{BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::broadcast;

/// A write, as proposed through raft.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdCommand {
    /// The request.
    #[prost(oneof = "Operation", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub operation: Option<Operation>,
}

/// The request of an [`EtcdCommand`]: etcd's own messages.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Operation {
    /// A put.
    #[prost(message, tag = "1")]
    Put(pb::PutRequest),
    /// A delete of a key or range.
    #[prost(message, tag = "2")]
    DeleteRange(pb::DeleteRangeRequest),
    /// A transaction.
    #[prost(message, tag = "3")]
    Txn(pb::TxnRequest),
    /// A compaction.
    #[prost(message, tag = "4")]
    Compaction(pb::CompactionRequest),
    /// A lease grant.
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrant),
    /// A lease revocation (a client's).
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevoke),
    /// A lease renewal (a keep-alive).
    #[prost(message, tag = "7")]
    LeaseRenew(LeaseRenew),
    /// A lease expiry (the leader's).
    #[prost(message, tag = "8")]
    LeaseExpire(LeaseExpire),
}

/// Grants lease `id` for `ttl` seconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrant {
    /// The id (never 0: the proposer picks one when the client leaves it
    /// to the server).
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The TTL in seconds, as the client asked (the apply grants
    /// [`granted_ttl`] of it).
    #[prost(int64, tag = "2")]
    pub ttl: i64,
}

/// Revokes lease `id` and deletes its keys.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRevoke {
    /// The lease.
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// Renews lease `id` for its granted TTL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRenew {
    /// The lease.
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// Expires lease `id` (revokes it) unless it was renewed after the raft
/// index `renewed_at_index` the leader's deadline came from.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseExpire {
    /// The lease.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The index of the grant or renewal whose deadline passed.
    #[prost(uint64, tag = "2")]
    pub renewed_at_index: u64,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub enum EtcdResponse {
    /// A put's answer.
    Put(mvcc::PutResponse),
    /// A delete's answer.
    DeleteRange(mvcc::DeleteRangeResponse),
    /// A transaction's answer.
    Txn(mvcc::TxnResponse),
    /// The store compacted at the requested revision; `revision` is the
    /// store's current one.
    Compacted {
        /// The current revision.
        revision: i64,
    },
    /// A lease was granted.
    LeaseGranted {
        /// Its id.
        id: i64,
        /// The TTL granted, in seconds.
        ttl: i64,
        /// The store's current revision.
        revision: i64,
    },
    /// A lease was renewed.
    LeaseRenewed {
        /// Its granted TTL, in seconds.
        ttl: i64,
        /// The store's current revision.
        revision: i64,
    },
    /// A lease was revoked (by a client, or expired) with its keys, in
    /// one revision (the response's; the current one if it had no key).
    LeaseRevoked(mvcc::DeleteRangeResponse),
    /// An expiry found the lease renewed since (or gone): nothing changed.
    LeaseKept {
        /// The store's current revision.
        revision: i64,
    },
}

/// Why a command failed (every member fails it alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdCommandError {
    /// The store refused it.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// It does not convert to a store operation.
    #[error("{0}")]
    Invalid(String),
}

/// A command's outcome.
pub type EtcdOutcome = Result<EtcdResponse, EtcdCommandError>;

/// What the node answers a proposer: the raft index the command applied
/// at, and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdApplied {
    /// The command's raft index.
    pub index: u64,
    /// What it did.
    pub outcome: EtcdOutcome,
}

/// A read-only handle on the store's current revision as of the last
/// command applied, readable from any thread without asking the node
/// (taken with [`EtcdStore::applied_revision`] before the store moves
/// into the node): what response headers that report "now" carry.
#[derive(Debug, Clone)]
pub struct AppliedRevision(Arc<AtomicI64>);

impl AppliedRevision {
    /// The revision.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A read.
#[derive(Debug, Clone, PartialEq)]
pub enum EtcdQuery {
    /// A range read.
    Range(mvcc::RangeRequest),
    /// The current revision.
    Revision,
    /// The history of `[key, range_end)` from `start_revision` on (a
    /// watch's catch-up).
    EventsSince {
        /// The first revision wanted.
        start_revision: i64,
        /// The watched key.
        key: bytes::Bytes,
        /// The end of the watched range (etcd's conventions).
        range_end: bytes::Bytes,
    },
    /// One lease, with its keys when `keys`.
    Lease {
        /// The lease.
        id: i64,
        /// Whether to list its keys.
        keys: bool,
    },
    /// Every lease's id.
    Leases,
    /// etcd's HashKV: the hash of the stored versions up to `revision`
    /// (0: the current one), [`MvccStore::hash_kv`].
    HashKv {
        /// The revision hashed up to.
        revision: i64,
    },
    /// etcd's Hash: the hash of the whole replicated state, the versions
    /// and the leases ([`MvccStore::hash_state`], given each lease's id and
    /// granted TTL).
    Hash,
}

/// A lease as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The TTL granted, in seconds.
    pub granted_ttl: i64,
    /// Its keys, in key order (empty unless asked for).
    pub keys: Vec<bytes::Bytes>,
}

/// A read's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum EtcdQueryResult {
    /// The range read's answer.
    Range(Result<mvcc::RangeResponse, MvccError>),
    /// The current revision.
    Revision(i64),
    /// The events, and the revision they run up to.
    Events(Result<(Vec<mvcc::Event>, i64), MvccError>),
    /// The lease, if it exists, and the current revision.
    Lease(Option<LeaseInfo>, i64),
    /// The ids of every lease, in order, and the current revision.
    Leases(Vec<i64>, i64),
    /// The HashKV.
    HashKv(Result<mvcc::KvHash, MvccError>),
    /// The Hash, and the current revision.
    Hash(u32, i64),
}

/// The events of one applied write, in revision order, as watchers get
/// them; an empty batch means the store was replaced by a snapshot (the
/// history jumped, so a watch cannot go on).
pub type EventBatch = Arc<Vec<mvcc::Event>>;

/// Where watchers subscribe to the events the store applies from now on
/// ([`EtcdStore::watch_feed`]); cheap to clone.
#[derive(Debug, Clone)]
pub struct WatchFeed(broadcast::Sender<EventBatch>);

impl WatchFeed {
    /// A receiver of every batch applied after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<EventBatch> {
        self.0.subscribe()
    }
}

/// Batches a watcher may fall behind by before it is cancelled (it then
/// re-creates its watch from the revision it reached).
pub const WATCH_FEED_CAPACITY: usize = 4096;

/// Why the store cannot follow the log any more.
#[derive(Debug, thiserror::Error)]
pub enum EtcdStoreError {
    /// A snapshot does not restore.
    #[error("restoring the key-value store: {0}")]
    Restore(#[from] SnapshotError),
    /// A snapshot's lease section does not restore.
    #[error("restoring the leases: {0}")]
    Leases(#[from] LeaseSectionError),
    /// A snapshot's key carries a lease its lease section does not hold.
    #[error(
        "restoring the leases: key {key:?} carries lease {lease}, which the snapshot does not hold"
    )]
    UnknownLease {
        /// The lease id.
        lease: i64,
        /// The key (lossy UTF-8).
        key: String,
    },
}

/// The MVCC store behind etcd's API.
#[derive(Debug)]
pub struct EtcdStore {
    store: MvccStore,
    /// The store's size and revision, published after every batch for
    /// the quota and for headers.
    size: StateSize,
    revision: AppliedRevision,
    /// Every applied write's events go here (nobody listening is fine:
    /// publishing never blocks and never changes what is applied).
    feed: WatchFeed,
    /// The granted leases (replicated).
    leases: LeaseTable,
    /// This member's lease deadlines (not replicated; see the module doc).
    deadlines: LeaseDeadlines,
}

/// What the etcd store's snapshot writes: the MVCC snapshot, then the
/// lease section.
#[derive(Debug)]
pub struct EtcdSnapshot {
    mvcc: MvccSnapshot,
    leases: LeaseTable,
}

impl Default for EtcdStore {
    fn default() -> EtcdStore {
        let store = MvccStore::new();
        EtcdStore {
            size: StateSize::default(),
            revision: AppliedRevision(Arc::new(AtomicI64::new(store.current_revision()))),
            store,
            feed: WatchFeed(broadcast::channel(WATCH_FEED_CAPACITY).0),
            leases: LeaseTable::new(),
            deadlines: LeaseDeadlines::default(),
        }
    }
}

impl EtcdStore {
    /// An empty store at revision 1, as a fresh etcd.
    pub fn new() -> EtcdStore {
        EtcdStore::default()
    }

    /// The feed of applied events, for the watch service; take it before
    /// the store moves into the node.
    pub fn watch_feed(&self) -> WatchFeed {
        self.feed.clone()
    }

    /// The store's size as the quota counts it ([`MvccStore::size_bytes`]),
    /// for a [`crate::kv::SpaceQuota`]; take it before the store moves
    /// into the node.
    pub fn state_size(&self) -> StateSize {
        self.size.clone()
    }

    /// The store's current revision, published; take it before the store
    /// moves into the node.
    pub fn applied_revision(&self) -> AppliedRevision {
        self.revision.clone()
    }

    /// This member's lease deadlines, for the lessor and the lease
    /// service; take them before the store moves into the node.
    pub fn lease_deadlines(&self) -> LeaseDeadlines {
        self.deadlines.clone()
    }

    /// The granted leases.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    fn publish_state(&self) {
        self.size.set(self.store.size_bytes());
        self.revision
            .0
            .store(self.store.current_revision(), Ordering::Relaxed);
    }

    fn publish(&self, events: Vec<mvcc::Event>) {
        if !events.is_empty() {
            let _ = self.feed.0.send(Arc::new(events));
        }
    }

    /// The store itself, for reads in tests and tools.
    pub fn mvcc(&self) -> &MvccStore {
        &self.store
    }

    fn execute(&mut self, index: u64, command: EtcdCommand) -> EtcdOutcome {
        let leases = &self.leases;
        let lease_exists = |id: i64| leases.contains_key(&id);
        let invalid = |status: tonic::Status| EtcdCommandError::Invalid(status.message().into());
        match command.operation {
            None => Err(EtcdCommandError::Invalid(
                "a command with no request".into(),
            )),
            Some(Operation::Put(put)) => {
                let applied = self.store.put(&convert::put_request(put), &lease_exists)?;
                self.publish(applied.events);
                Ok(EtcdResponse::Put(applied.response))
            }
            Some(Operation::DeleteRange(delete)) => {
                let applied = self.store.delete_range(&convert::delete_request(delete))?;
                self.publish(applied.events);
                Ok(EtcdResponse::DeleteRange(applied.response))
            }
            Some(Operation::Txn(txn)) => {
                let txn = convert::txn_request(txn).map_err(invalid)?;
                let applied = self.store.txn(&txn, &lease_exists)?;
                self.publish(applied.events);
                Ok(EtcdResponse::Txn(applied.response))
            }
            Some(Operation::Compaction(compaction)) => {
                let revision = self.store.compact(compaction.revision)?;
                Ok(EtcdResponse::Compacted { revision })
            }
            Some(Operation::LeaseGrant(grant)) => self.grant(index, grant),
            Some(Operation::LeaseRevoke(LeaseRevoke { id })) => {
                if !self.leases.contains_key(&id) {
                    return Err(MvccError::LeaseNotFound.into());
                }
                Ok(EtcdResponse::LeaseRevoked(self.revoke(id)))
            }
            Some(Operation::LeaseRenew(LeaseRenew { id })) => {
                let record = self
                    .leases
                    .get_mut(&id)
                    .ok_or(EtcdCommandError::Mvcc(MvccError::LeaseNotFound))?;
                record.last_renew_index = index;
                let ttl = record.granted_ttl_seconds;
                self.deadlines.renewed(id, ttl, index);
                Ok(EtcdResponse::LeaseRenewed {
                    ttl,
                    revision: self.store.current_revision(),
                })
            }
            Some(Operation::LeaseExpire(LeaseExpire {
                id,
                renewed_at_index,
            })) => {
                let due = self
                    .leases
                    .get(&id)
                    .is_some_and(|record| record.last_renew_index == renewed_at_index);
                if due {
                    Ok(EtcdResponse::LeaseRevoked(self.revoke(id)))
                } else {
                    Ok(EtcdResponse::LeaseKept {
                        revision: self.store.current_revision(),
                    })
                }
            }
        }
    }

    fn grant(&mut self, index: u64, grant: LeaseGrant) -> EtcdOutcome {
        if grant.id == 0 {
            return Err(EtcdCommandError::Invalid(
                "etcdserver: a lease grant with id 0".into(),
            ));
        }
        let ttl = granted_ttl(grant.ttl)
            .ok_or_else(|| EtcdCommandError::Invalid("etcdserver: too large lease TTL".into()))?;
        if self.leases.contains_key(&grant.id) {
            return Err(MvccError::LeaseExists.into());
        }
        self.leases.insert(
            grant.id,
            LeaseRecord {
                granted_ttl_seconds: ttl,
                last_renew_index: index,
            },
        );
        self.deadlines.renewed(grant.id, ttl, index);
        Ok(EtcdResponse::LeaseGranted {
            id: grant.id,
            ttl,
            revision: self.store.current_revision(),
        })
    }

    /// Removes lease `id` and deletes its keys in one revision.
    fn revoke(&mut self, id: i64) -> mvcc::DeleteRangeResponse {
        self.leases.remove(&id);
        self.deadlines.remove(id);
        let applied = self.store.revoke_lease(id);
        self.publish(applied.events);
        applied.response
    }

    fn lease_info(&self, id: i64, keys: bool) -> Option<LeaseInfo> {
        self.leases.get(&id).map(|record| LeaseInfo {
            granted_ttl: record.granted_ttl_seconds,
            keys: if keys {
                self.store.keys_of_lease(id)
            } else {
                Vec::new()
            },
        })
    }
}

impl EtcdSnapshot {
    /// Writes the view in the store's snapshot format (what
    /// [`StateMachine::restore`] reads); may be called more than once.
    pub fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.mvcc.write_to(out)?;
        write_lease_section(&self.leases, out)
    }

    /// The store's revision as of the view.
    pub fn revision(&self) -> i64 {
        self.mvcc.current_revision()
    }
}

impl WriteSnapshot for EtcdSnapshot {
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()> {
        self.write_to(out)
    }
}

impl StateMachine for EtcdStore {
    type Command = EtcdCommand;
    type Response = EtcdApplied;
    type Query = EtcdQuery;
    type QueryResult = EtcdQueryResult;
    type Snapshot = EtcdSnapshot;
    type Error = EtcdStoreError;

    fn encode_command(command: &EtcdCommand, out: &mut Vec<u8>) {
        out.reserve(command.encoded_len());
        command.encode_raw(out);
    }

    fn decode_command(bytes: &[u8]) -> Result<EtcdCommand, DecodeError> {
        EtcdCommand::decode(bytes).map_err(DecodeError::new)
    }

    fn apply(
        &mut self,
        commands: Vec<Committed<EtcdCommand>>,
    ) -> Result<Vec<EtcdApplied>, EtcdStoreError> {
        let applied = commands
            .into_iter()
            .map(|committed| EtcdApplied {
                index: committed.index,
                outcome: self.execute(committed.index, committed.command),
            })
            .collect();
        self.publish_state();
        Ok(applied)
    }

    fn query(&self, query: EtcdQuery) -> EtcdQueryResult {
        match query {
            EtcdQuery::Range(range) => EtcdQueryResult::Range(self.store.range(&range)),
            EtcdQuery::Revision => EtcdQueryResult::Revision(self.store.current_revision()),
            EtcdQuery::EventsSince {
                start_revision,
                key,
                range_end,
            } => EtcdQueryResult::Events(
                self.store
                    .events_since(start_revision, &key, &range_end)
                    .map(|events| (events, self.store.current_revision())),
            ),
            EtcdQuery::Lease { id, keys } => {
                EtcdQueryResult::Lease(self.lease_info(id, keys), self.store.current_revision())
            }
            EtcdQuery::Leases => EtcdQueryResult::Leases(
                self.leases.keys().copied().collect(),
                self.store.current_revision(),
            ),
            EtcdQuery::HashKv { revision } => EtcdQueryResult::HashKv(self.store.hash_kv(revision)),
            EtcdQuery::Hash => {
                let leases: Vec<(i64, i64)> = self
                    .leases
                    .iter()
                    .map(|(&id, record)| (id, record.granted_ttl_seconds))
                    .collect();
                EtcdQueryResult::Hash(
                    self.store.hash_state(&leases),
                    self.store.current_revision(),
                )
            }
        }
    }

    fn snapshot(&self) -> EtcdSnapshot {
        EtcdSnapshot {
            mvcc: self.store.snapshot(),
            leases: self.leases.clone(),
        }
    }

    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), EtcdStoreError> {
        // The old state goes first: a large store must not be held twice.
        self.store = MvccStore::new();
        self.leases = LeaseTable::new();
        let mut input = BufReader::with_capacity(mvcc::RESTORE_BUFFER_BYTES, snapshot);
        let (store, offset) = MvccStore::restore_prefix(&mut input)?;
        let leases = read_lease_section(&mut input, offset)?;
        if let Some((lease, key)) = store
            .leased_keys()
            .into_iter()
            .find(|(lease, _)| !leases.contains_key(lease))
        {
            return Err(EtcdStoreError::UnknownLease {
                lease,
                key: String::from_utf8_lossy(&key).into_owned(),
            });
        }
        self.store = store;
        self.leases = leases;
        // A restart or a restore gives every lease its full TTL again.
        self.deadlines.reset(&self.leases);
        self.publish_state();
        // The history jumped: an empty batch tells watchers theirs broke.
        let _ = self.feed.0.send(Arc::new(Vec::new()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(key: &str, value: &str) -> EtcdCommand {
        EtcdCommand {
            operation: Some(Operation::Put(pb::PutRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                ..pb::PutRequest::default()
            })),
        }
    }

    fn apply(store: &mut EtcdStore, commands: Vec<EtcdCommand>) -> Vec<EtcdOutcome> {
        apply_at(store, 1, commands)
    }

    /// Applies `commands` at raft indexes `first..`, each through its
    /// encoding as raft carries it.
    fn apply_at(store: &mut EtcdStore, first: u64, commands: Vec<EtcdCommand>) -> Vec<EtcdOutcome> {
        let committed = commands
            .into_iter()
            .zip(first..)
            .map(|(command, index)| {
                let mut bytes = Vec::new();
                EtcdStore::encode_command(&command, &mut bytes);
                let command = EtcdStore::decode_command(&bytes).expect("round trip");
                Committed { index, command }
            })
            .collect();
        store
            .apply(committed)
            .expect("applies")
            .into_iter()
            .map(|applied| applied.outcome)
            .collect()
    }

    fn get(store: &EtcdStore, key: &str) -> Option<mvcc::KeyValue> {
        let request = mvcc::RangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            ..mvcc::RangeRequest::default()
        };
        match store.query(EtcdQuery::Range(request)) {
            EtcdQueryResult::Range(Ok(response)) => response.kvs.into_iter().next(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn puts_deletes_and_txns_apply_with_etcds_revisions() {
        let mut store = EtcdStore::new();
        let outcomes = apply(
            &mut store,
            vec![put("a", "1"), put("a", "2"), put("b", "x")],
        );
        assert!(matches!(&outcomes[0], Ok(EtcdResponse::Put(r)) if r.revision == 2));
        let a = get(&store, "a").expect("a exists");
        assert_eq!((a.version, a.create_revision, a.mod_revision), (2, 2, 3));
        let txn = EtcdCommand {
            operation: Some(Operation::Txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    key: Bytes::from_static(b"a"),
                    target: pb::compare::CompareTarget::Value as i32,
                    target_union: Some(pb::compare::TargetUnion::Value(Bytes::from_static(b"2"))),
                    ..pb::Compare::default()
                }],
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestDeleteRange(
                        pb::DeleteRangeRequest {
                            key: Bytes::from_static(b"b"),
                            ..pb::DeleteRangeRequest::default()
                        },
                    )),
                }],
                failure: Vec::new(),
            })),
        };
        let outcomes = apply(&mut store, vec![txn]);
        assert!(
            matches!(&outcomes[0], Ok(EtcdResponse::Txn(r)) if r.succeeded && r.revision == 5),
            "{outcomes:?}"
        );
        assert_eq!(get(&store, "b"), None);
    }

    #[test]
    fn a_failing_command_is_its_response_and_changes_nothing() {
        let mut store = EtcdStore::new();
        let with_lease = EtcdCommand {
            operation: Some(Operation::Put(pb::PutRequest {
                key: Bytes::from_static(b"k"),
                lease: 7,
                ..pb::PutRequest::default()
            })),
        };
        let bad_enum = EtcdCommand {
            operation: Some(Operation::Txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    key: Bytes::from_static(b"k"),
                    result: 42,
                    ..pb::Compare::default()
                }],
                ..pb::TxnRequest::default()
            })),
        };
        let compact_future = EtcdCommand {
            operation: Some(Operation::Compaction(pb::CompactionRequest {
                revision: 99,
                physical: false,
            })),
        };
        let outcomes = apply(
            &mut store,
            vec![with_lease, bad_enum, compact_future, EtcdCommand::default()],
        );
        assert_eq!(
            outcomes[0],
            Err(EtcdCommandError::Mvcc(MvccError::LeaseNotFound))
        );
        assert!(matches!(&outcomes[1], Err(EtcdCommandError::Invalid(m)) if m.contains("42")));
        assert_eq!(
            outcomes[2],
            Err(EtcdCommandError::Mvcc(MvccError::FutureRevision))
        );
        assert!(outcomes[3].is_err());
        assert_eq!(
            store.query(EtcdQuery::Revision),
            EtcdQueryResult::Revision(1),
            "nothing changed"
        );
    }

    #[test]
    fn a_snapshot_restores_an_equal_store_and_replaces_the_old_one() {
        let mut store = EtcdStore::new();
        apply(
            &mut store,
            vec![put("a", "1"), put("b", "2"), put("a", "3")],
        );
        let mut bytes = Vec::new();
        store
            .snapshot()
            .write_snapshot(&mut bytes)
            .expect("written");
        let mut restored = EtcdStore::new();
        apply(&mut restored, vec![put("stale", "gone")]);
        restored.restore(&mut bytes.as_slice()).expect("restores");
        assert_eq!(restored.mvcc(), store.mvcc());
        assert_eq!(get(&restored, "stale"), None);
        let mut corrupt = bytes.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0x40;
        assert!(EtcdStore::new().restore(&mut corrupt.as_slice()).is_err());
    }

    fn lease_command(operation: Operation) -> EtcdCommand {
        EtcdCommand {
            operation: Some(operation),
        }
    }

    fn grant(id: i64, ttl: i64) -> EtcdCommand {
        lease_command(Operation::LeaseGrant(LeaseGrant { id, ttl }))
    }

    fn put_leased(key: &str, lease: i64) -> EtcdCommand {
        EtcdCommand {
            operation: Some(Operation::Put(pb::PutRequest {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::from_static(b"v"),
                lease,
                ..pb::PutRequest::default()
            })),
        }
    }

    #[test]
    fn leases_are_granted_attached_and_revoked_with_their_keys() {
        let mut store = EtcdStore::new();
        let deadlines = store.lease_deadlines();
        let mut events = store.watch_feed().subscribe();
        let outcomes = apply_at(
            &mut store,
            1,
            vec![
                grant(7, 1),
                grant(7, 60),
                put_leased("a", 7),
                put_leased("b", 7),
                put("c", "x"),
                put_leased("d", 8),
            ],
        );
        assert_eq!(
            outcomes[0],
            Ok(EtcdResponse::LeaseGranted {
                id: 7,
                ttl: super::super::leases::MIN_TTL_SECONDS,
                revision: 1
            }),
            "a TTL below the minimum is raised to it"
        );
        assert_eq!(outcomes[1], Err(MvccError::LeaseExists.into()));
        assert_eq!(outcomes[5], Err(MvccError::LeaseNotFound.into()));
        assert_eq!(deadlines.get(7).map(|d| d.renewed_at_index), Some(1));
        assert_eq!(
            store.query(EtcdQuery::Lease { id: 7, keys: true }),
            EtcdQueryResult::Lease(
                Some(LeaseInfo {
                    granted_ttl: 2,
                    keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
                }),
                4
            )
        );
        assert_eq!(
            store.query(EtcdQuery::Leases),
            EtcdQueryResult::Leases(vec![7], 4)
        );
        while events.try_recv().is_ok() {}
        let revoke = lease_command(Operation::LeaseRevoke(LeaseRevoke { id: 7 }));
        let outcomes = apply_at(&mut store, 7, vec![revoke.clone(), revoke]);
        let Ok(EtcdResponse::LeaseRevoked(revoked)) = &outcomes[0] else {
            panic!("unexpected {outcomes:?}");
        };
        assert_eq!((revoked.deleted, revoked.revision), (2, 5), "one revision");
        assert_eq!(outcomes[1], Err(MvccError::LeaseNotFound.into()));
        let batch = events.try_recv().expect("the deletions are published");
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().all(|e| e.kind == mvcc::EventKind::Delete));
        assert_eq!(get(&store, "a"), None);
        assert!(get(&store, "c").is_some(), "keys without the lease stay");
        assert_eq!(deadlines.get(7), None);
        assert_eq!(
            store.query(EtcdQuery::Lease { id: 7, keys: true }),
            EtcdQueryResult::Lease(None, 5)
        );
    }

    #[test]
    fn an_expiry_that_raced_a_renewal_does_nothing() {
        let mut store = EtcdStore::new();
        let deadlines = store.lease_deadlines();
        apply_at(&mut store, 10, vec![grant(5, 30), put_leased("k", 5)]);
        let renew = lease_command(Operation::LeaseRenew(LeaseRenew { id: 5 }));
        let outcomes = apply_at(&mut store, 12, vec![renew]);
        assert_eq!(
            outcomes[0],
            Ok(EtcdResponse::LeaseRenewed {
                ttl: 30,
                revision: 2
            })
        );
        assert_eq!(deadlines.get(5).map(|d| d.renewed_at_index), Some(12));
        // The leader saw the grant's deadline (index 10) pass, but the
        // renewal at 12 applied first: the lease stays.
        let stale = lease_command(Operation::LeaseExpire(LeaseExpire {
            id: 5,
            renewed_at_index: 10,
        }));
        let outcomes = apply_at(&mut store, 13, vec![stale]);
        assert_eq!(outcomes[0], Ok(EtcdResponse::LeaseKept { revision: 2 }));
        assert!(get(&store, "k").is_some());
        assert!(store.leases().contains_key(&5));
        let due = lease_command(Operation::LeaseExpire(LeaseExpire {
            id: 5,
            renewed_at_index: 12,
        }));
        let outcomes = apply_at(&mut store, 14, vec![due.clone(), due]);
        assert!(
            matches!(&outcomes[0], Ok(EtcdResponse::LeaseRevoked(r)) if r.deleted == 1 && r.revision == 3),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[1], Ok(EtcdResponse::LeaseKept { revision: 3 }));
        assert_eq!(get(&store, "k"), None);
        assert!(store.leases().is_empty());
        assert_eq!(deadlines.get(5), None);
        let renew_gone = lease_command(Operation::LeaseRenew(LeaseRenew { id: 5 }));
        assert_eq!(
            apply_at(&mut store, 16, vec![renew_gone])[0],
            Err(MvccError::LeaseNotFound.into())
        );
    }

    fn hash(store: &EtcdStore) -> u32 {
        match store.query(EtcdQuery::Hash) {
            EtcdQueryResult::Hash(hash, _) => hash,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_hash_covers_the_leases_not_their_renewals_and_survives_a_snapshot() {
        let mut store = EtcdStore::new();
        apply_at(&mut store, 1, vec![put("a", "1"), grant(3, 10)]);
        let EtcdQueryResult::HashKv(Ok(kv)) = store.query(EtcdQuery::HashKv { revision: 0 }) else {
            panic!("a HashKV");
        };
        assert_eq!(kv.hash, store.mvcc().hash_kv(0).expect("hashes").hash);
        let with_lease = hash(&store);
        assert_eq!(
            store.query(EtcdQuery::Hash),
            EtcdQueryResult::Hash(store.mvcc().hash_state(&[(3, 10)]), 2)
        );
        // A renewal changes only the renewal index, which is not hashed
        // (keep-alives would change the hash every few seconds).
        let renew = lease_command(Operation::LeaseRenew(LeaseRenew { id: 3 }));
        apply_at(&mut store, 3, vec![renew]);
        assert_eq!(hash(&store), with_lease);
        apply_at(&mut store, 4, vec![grant(4, 10)]);
        let two_leases = hash(&store);
        assert_ne!(two_leases, with_lease, "a grant changes the hash");
        let EtcdQueryResult::HashKv(Ok(kv_after)) = store.query(EtcdQuery::HashKv { revision: 0 })
        else {
            panic!("a HashKV");
        };
        assert_eq!(kv_after, kv, "a grant changes no key");

        let mut bytes = Vec::new();
        store
            .snapshot()
            .write_snapshot(&mut bytes)
            .expect("written");
        let mut restored = EtcdStore::new();
        restored.restore(&mut bytes.as_slice()).expect("restores");
        assert_eq!(hash(&restored), two_leases);
        assert_eq!(
            restored.query(EtcdQuery::HashKv { revision: 5 }),
            EtcdQueryResult::HashKv(Err(MvccError::FutureRevision))
        );
    }

    #[test]
    fn leases_survive_a_snapshot_and_a_bad_lease_section_is_an_error() {
        let mut store = EtcdStore::new();
        apply_at(
            &mut store,
            1,
            vec![
                grant(3, 10),
                grant(-9, 100),
                put_leased("a", 3),
                put("b", "x"),
            ],
        );
        let mut bytes = Vec::new();
        store
            .snapshot()
            .write_snapshot(&mut bytes)
            .expect("written");
        let mut restored = EtcdStore::new();
        let deadlines = restored.lease_deadlines();
        apply_at(&mut restored, 1, vec![grant(44, 10)]);
        restored.restore(&mut bytes.as_slice()).expect("restores");
        assert_eq!(restored.mvcc(), store.mvcc());
        assert_eq!(restored.leases(), store.leases());
        assert_eq!(deadlines.get(44), None, "the old state's lease is gone");
        assert_eq!(deadlines.get(3).map(|d| d.renewed_at_index), Some(1));
        let remaining = deadlines
            .remaining_seconds(-9, std::time::Instant::now())
            .expect("known");
        assert!((99..=100).contains(&remaining), "full TTL: {remaining}");

        // Without its lease section, the snapshot's leased key has no lease.
        let mut mvcc_only = Vec::new();
        store
            .mvcc()
            .snapshot()
            .write_to(&mut mvcc_only)
            .expect("written");
        assert!(matches!(
            EtcdStore::new().restore(&mut mvcc_only.as_slice()),
            Err(EtcdStoreError::UnknownLease { lease: 3, .. })
        ));
        let section = mvcc_only.len();
        for cut in [section + 1, section + 12, bytes.len() - 1] {
            let result = EtcdStore::new().restore(&mut &bytes[..cut]);
            assert!(
                matches!(result, Err(EtcdStoreError::Leases(_))),
                "cut at {cut}: {result:?}"
            );
        }
        let mut corrupt = bytes.clone();
        corrupt[section + 20] ^= 1;
        assert!(matches!(
            EtcdStore::new().restore(&mut corrupt.as_slice()),
            Err(EtcdStoreError::Leases(_))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(EtcdStore::new().restore(&mut longer.as_slice()).is_err());

        // A store with no lease restores from a snapshot written before
        // leases existed (no section).
        let mut plain = EtcdStore::new();
        apply_at(&mut plain, 1, vec![put("x", "1")]);
        let mut old = Vec::new();
        plain.mvcc().snapshot().write_to(&mut old).expect("written");
        let mut restored = EtcdStore::new();
        restored.restore(&mut old.as_slice()).expect("restores");
        assert_eq!(restored.mvcc(), plain.mvcc());
        assert!(restored.leases().is_empty());
    }
}
