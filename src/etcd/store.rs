//! [`EtcdStore`]: the MVCC key-value store as a node's state machine,
//! with etcd's requests as its commands.
//!
//! Owns: the command format (an [`EtcdCommand`]: etcd's own Put,
//! DeleteRange, Txn or Compaction request, so a command is the bytes a
//! client sent, re-encoded once), applying commands to the
//! [`MvccStore`], reads ([`EtcdQuery`]), and snapshots (the MVCC
//! snapshot format of `crate::mvcc`), and publishing every applied
//! write's events on the [`WatchFeed`]. Guarantees: every member applies a
//! command alike, its failure included (a command's failure is its
//! response); a command that does not convert (an enum value etcd does
//! not define, which the services refuse before proposing) fails the same
//! way everywhere. May not touch: raft, gRPC, leases (until the lessor
//! comes, no lease exists, so a write attaching one fails with etcd's
//! "requested lease not found").

use super::convert;
use super::pb::etcdserverpb as pb;
use crate::kv::StateSize;
use crate::mvcc::{self, MvccError, MvccSnapshot, MvccStore, SnapshotError};
use crate::state_machine::{Committed, DecodeError, StateMachine, WriteSnapshot};
use prost::Message as _;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::broadcast;

/// A write, as proposed through raft.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdCommand {
    /// The request.
    #[prost(oneof = "Operation", tags = "1, 2, 3, 4")]
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
}

impl Default for EtcdStore {
    fn default() -> EtcdStore {
        let store = MvccStore::new();
        EtcdStore {
            size: StateSize::default(),
            revision: AppliedRevision(Arc::new(AtomicI64::new(store.current_revision()))),
            store,
            feed: WatchFeed(broadcast::channel(WATCH_FEED_CAPACITY).0),
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

    fn execute(&mut self, command: EtcdCommand) -> EtcdOutcome {
        // No lessor yet: no lease exists.
        let no_lease = |_: i64| false;
        let invalid = |status: tonic::Status| EtcdCommandError::Invalid(status.message().into());
        match command.operation {
            None => Err(EtcdCommandError::Invalid(
                "a command with no request".into(),
            )),
            Some(Operation::Put(put)) => {
                let applied = self.store.put(&convert::put_request(put), &no_lease)?;
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
                let applied = self.store.txn(&txn, &no_lease)?;
                self.publish(applied.events);
                Ok(EtcdResponse::Txn(applied.response))
            }
            Some(Operation::Compaction(compaction)) => {
                let revision = self.store.compact(compaction.revision)?;
                Ok(EtcdResponse::Compacted { revision })
            }
        }
    }
}

impl WriteSnapshot for MvccSnapshot {
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()> {
        self.write_to(out)
    }
}

impl StateMachine for EtcdStore {
    type Command = EtcdCommand;
    type Response = EtcdApplied;
    type Query = EtcdQuery;
    type QueryResult = EtcdQueryResult;
    type Snapshot = MvccSnapshot;
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
                outcome: self.execute(committed.command),
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
        }
    }

    fn snapshot(&self) -> MvccSnapshot {
        self.store.snapshot()
    }

    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), EtcdStoreError> {
        // The old state goes first: a large store must not be held twice.
        self.store = MvccStore::new();
        self.store = MvccStore::restore(snapshot)?;
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
        let committed = commands
            .into_iter()
            .zip(1u64..)
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
}
