//! The store against a simple model: the full key map at every revision
//! (`Vec` index = revision) and the events of every revision, over random
//! sequences of puts, deletions, txns (with reads inside), compactions,
//! reads and replays at random revisions, and snapshot → restore.

use super::tests::{b, recomputed_size};
use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Lease 9 does not exist.
fn lease_exists(id: i64) -> bool {
    id != 9
}

fn key(k: u8) -> Bytes {
    Bytes::from(vec![b'a' + k])
}

#[derive(Debug, Clone)]
enum Write {
    Put {
        key: u8,
        value: u8,
        lease: i64,
    },
    /// `[key, key + len)` by letter; len 0 is the single key.
    Delete {
        key: u8,
        len: u8,
    },
    Get {
        key: u8,
    },
}

#[derive(Debug, Clone)]
enum Step {
    Txn {
        compare_key: u8,
        version: i64,
        success: Vec<Write>,
        failure: Vec<Write>,
    },
    Compact {
        back: i64,
    },
    Read {
        back: i64,
        key: u8,
        len: u8,
    },
    Replay {
        back: i64,
        key: u8,
        len: u8,
    },
    Snapshot,
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => (0..6u8, any::<u8>(), prop_oneof![5 => Just(0i64), 2 => Just(1), 1 => Just(2), 1 => Just(9)])
            .prop_map(|(key, value, lease)| Write::Put { key, value, lease }),
        2 => (0..6u8, 0..3u8).prop_map(|(key, len)| Write::Delete { key, len }),
        1 => (0..6u8).prop_map(|key| Write::Get { key }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..6u8, 0..3i64, prop::collection::vec(write(), 0..4), prop::collection::vec(write(), 0..3))
            .prop_map(|(compare_key, version, success, failure)| Step::Txn { compare_key, version, success, failure }),
        1 => (-1..8i64).prop_map(|back| Step::Compact { back }),
        3 => (-1..12i64, 0..6u8, 0..4u8).prop_map(|(back, key, len)| Step::Read { back, key, len }),
        2 => (-1..12i64, 0..6u8, 0..4u8).prop_map(|(back, key, len)| Step::Replay { back, key, len }),
        1 => Just(Step::Snapshot),
    ]
}

/// A key range by letters: len 0 is the single key, 3 is "from key".
fn span(k: u8, len: u8) -> (Bytes, Bytes) {
    match len {
        0 => (key(k), Bytes::new()),
        3 => (key(k), Bytes::from_static(&[0])),
        n => (key(k), key(k + n)),
    }
}

fn in_span(candidate: &[u8], k: u8, len: u8) -> bool {
    let (start, end) = span(k, len);
    match (len, &end[..]) {
        (0, _) => candidate == &start[..],
        (3, _) => candidate >= &start[..],
        (_, end) => candidate >= &start[..] && candidate < end,
    }
}

#[derive(Default)]
struct Model {
    /// The key map at each revision; index 0 unused, 1 is empty.
    states: Vec<BTreeMap<Bytes, KeyValue>>,
    /// The events of each revision (same indexing).
    events: Vec<Vec<Event>>,
    compacted: i64,
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            events: vec![Vec::new(), Vec::new()],
            compacted: 0,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    /// Whether the branch writes a key twice (etcd's rule, flat).
    fn duplicate(writes: &[Write]) -> bool {
        let puts: Vec<u8> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Put { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        let twice = puts.iter().enumerate().any(|(i, k)| puts[..i].contains(k));
        let deleted = puts.iter().any(|&p| {
            writes.iter().any(|w| match w {
                Write::Delete { key, len } => in_span(&key_bytes(p), *key, *len),
                _ => false,
            })
        });
        twice || deleted
    }

    /// Runs a txn; returns the expected result.
    fn txn(
        &mut self,
        compare_key: u8,
        version: i64,
        success: &[Write],
        failure: &[Write],
    ) -> Result<(bool, Vec<ResponseOp>), MvccError> {
        if Model::duplicate(success) || Model::duplicate(failure) {
            return Err(MvccError::DuplicateKey);
        }
        let before = self.states.last().cloned().unwrap_or_default();
        let held = before.get(&key(compare_key)).map_or(0, |kv| kv.version) == version;
        let branch = if held { success } else { failure };
        if branch
            .iter()
            .any(|w| matches!(w, Write::Put { lease: 9, .. }))
        {
            return Err(MvccError::LeaseNotFound);
        }
        let rev = self.current() + 1;
        let mut state = before;
        let mut events = Vec::new();
        let mut responses = Vec::new();
        for w in branch {
            let view = if events.is_empty() { rev - 1 } else { rev };
            responses.push(apply(w, &mut state, &mut events, rev, view));
        }
        if !events.is_empty() {
            self.states.push(state);
            self.events.push(events);
        }
        Ok((held, responses))
    }

    fn read(&self, revision: i64, k: u8, len: u8) -> Result<Vec<KeyValue>, MvccError> {
        if revision > self.current() {
            return Err(MvccError::FutureRevision);
        }
        let at = if revision <= 0 {
            self.current()
        } else {
            revision
        };
        if at < self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        Ok(self.states[at as usize]
            .values()
            .filter(|kv| in_span(&kv.key, k, len))
            .cloned()
            .collect())
    }

    fn replay(&self, start: i64, k: u8, len: u8) -> Result<Vec<Event>, MvccError> {
        if self.compacted > 0 && start <= self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        let from = start.max(0) as usize;
        Ok(self
            .events
            .iter()
            .skip(from)
            .flatten()
            .filter(|e| in_span(&e.kv.key, k, len))
            .cloned()
            .collect())
    }

    fn compact(&mut self, revision: i64) -> Result<i64, MvccError> {
        if revision <= self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        if revision > self.current() {
            return Err(MvccError::FutureRevision);
        }
        self.compacted = revision;
        Ok(self.current())
    }
}

fn key_bytes(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

/// One operation on the model's state inside a txn at revision `rev`;
/// `view` is the revision a read at "now" reports.
fn apply(
    w: &Write,
    state: &mut BTreeMap<Bytes, KeyValue>,
    events: &mut Vec<Event>,
    rev: i64,
    view: i64,
) -> ResponseOp {
    match w {
        Write::Put {
            key: k,
            value,
            lease,
        } => {
            let prev = state.get(&key(*k)).cloned();
            let kv = KeyValue {
                key: key(*k),
                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                mod_revision: rev,
                version: prev.as_ref().map_or(1, |p| p.version + 1),
                value: Bytes::from(vec![*value]),
                lease: *lease,
            };
            state.insert(key(*k), kv.clone());
            events.push(Event {
                kind: EventKind::Put,
                kv,
                prev_kv: prev,
            });
            ResponseOp::Put(PutResponse {
                prev_kv: None,
                revision: rev,
            })
        }
        Write::Delete { key: k, len } => {
            let doomed: Vec<KeyValue> = state
                .values()
                .filter(|kv| in_span(&kv.key, *k, *len))
                .cloned()
                .collect();
            for prev in &doomed {
                state.remove(&prev.key);
                events.push(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: prev.key.clone(),
                        mod_revision: rev,
                        ..KeyValue::default()
                    },
                    prev_kv: Some(prev.clone()),
                });
            }
            let seen = if events.is_empty() { view } else { rev };
            ResponseOp::DeleteRange(DeleteRangeResponse {
                deleted: doomed.len() as i64,
                prev_kvs: Vec::new(),
                revision: seen,
            })
        }
        Write::Get { key: k } => {
            let kvs: Vec<KeyValue> = state.get(&key(*k)).cloned().into_iter().collect();
            ResponseOp::Range(RangeResponse {
                count: kvs.len() as i64,
                kvs,
                more: false,
                revision: view,
            })
        }
    }
}

fn request(w: &Write) -> RequestOp {
    match w {
        Write::Put {
            key: k,
            value,
            lease,
        } => RequestOp::Put(PutRequest {
            lease: *lease,
            ..PutRequest::new(key(*k), vec![*value])
        }),
        Write::Delete { key: k, len } => {
            let (start, end) = span(*k, *len);
            RequestOp::DeleteRange(DeleteRangeRequest::range(start, end))
        }
        Write::Get { key: k } => RequestOp::Range(RangeRequest::key(key(*k))),
    }
}

/// Every read the model can check: each range shape at every revision
/// from just below the compacted one to just above the current one.
fn same_reads(store: &MvccStore, other: &MvccStore) {
    for rev in store.compacted_revision() - 1..=store.current_revision() + 1 {
        for (k, len) in [(0, 0), (0, 3), (1, 2)] {
            let (start, end) = span(k, len);
            let request = RangeRequest {
                revision: rev,
                ..RangeRequest::range(start, end)
            };
            assert_eq!(store.range(&request), other.range(&request), "rev {rev}");
        }
    }
}

fn check_step(store: &mut MvccStore, model: &mut Model, step: &Step) {
    match step {
        Step::Txn {
            compare_key,
            version,
            success,
            failure,
        } => {
            let request = TxnRequest {
                compare: vec![Compare::key(
                    key(*compare_key),
                    CompareTarget::Version(*version),
                    CompareResult::Equal,
                )],
                success: success.iter().map(request).collect(),
                failure: failure.iter().map(request).collect(),
            };
            let expected = model.txn(*compare_key, *version, success, failure);
            let got = store.txn(&request, &lease_exists);
            match (expected, got) {
                (Ok((held, responses)), Ok(applied)) => {
                    assert_eq!(applied.response.succeeded, held);
                    assert_eq!(applied.response.responses, responses);
                    assert_eq!(applied.response.revision, model.current());
                    let rev = model.current() as usize;
                    let events = if applied.events.is_empty() {
                        Vec::new()
                    } else {
                        model.events[rev].clone()
                    };
                    assert_eq!(applied.events, events);
                }
                (Err(e), Err(g)) => assert_eq!(e, g),
                (e, g) => panic!("model {e:?}, store {g:?}"),
            }
        }
        Step::Compact { back } => {
            let rev = model.current() - back;
            assert_eq!(store.compact(rev), model.compact(rev));
        }
        Step::Read { back, key: k, len } => {
            let rev = model.current() - back;
            let (start, end) = span(*k, *len);
            let request = RangeRequest {
                revision: rev,
                ..RangeRequest::range(start, end)
            };
            let got = store.range(&request).map(|r| {
                assert_eq!(r.count as usize, r.kvs.len());
                assert_eq!(r.revision, model.current());
                r.kvs
            });
            assert_eq!(got, model.read(rev, *k, *len), "read at {rev}");
        }
        Step::Replay { back, key: k, len } => {
            let start = model.current() - back;
            let (from, end) = span(*k, *len);
            assert_eq!(
                store.events_since(start, &from, &end),
                model.replay(start, *k, *len),
                "replay from {start}"
            );
        }
        Step::Snapshot => {
            let mut bytes = Vec::new();
            store.snapshot().write_to(&mut bytes).unwrap();
            let restored = MvccStore::restore(&mut &bytes[..]).unwrap();
            assert_eq!(&restored, store);
            same_reads(store, &restored);
            assert_eq!(restored.size_bytes(), store.size_bytes());
            assert_eq!(restored.leased_keys(), store.leased_keys());
            // Go on with the restored store: it must behave the same.
            *store = restored;
        }
    }
    assert_eq!(store.current_revision(), model.current());
    assert_eq!(store.compacted_revision(), model.compacted);
    assert_eq!(store.size_bytes(), recomputed_size(store));
    let leased: Vec<(i64, Bytes)> = {
        let mut pairs: Vec<(i64, Bytes)> = model.states[model.current() as usize]
            .values()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.lease, kv.key.clone()))
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(store.leased_keys(), leased);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn store_matches_the_model(steps in prop::collection::vec(step(), 1..60)) {
        let mut store = MvccStore::new();
        let mut model = Model::new();
        for step in &steps {
            check_step(&mut store, &mut model, step);
        }
        // Every past revision still readable agrees with the model.
        for rev in model.compacted.max(1)..=model.current() {
            let got = store.range(&RangeRequest { revision: rev, ..RangeRequest::range(b("\0"), b("\0")) });
            let want = model.read(rev, 0, 3).map(|_| ());
            prop_assert_eq!(got.as_ref().map(|_| ()), want.as_ref().map(|_| ()));
            let all: Vec<KeyValue> = model.states[rev as usize].values().cloned().collect();
            prop_assert_eq!(got.unwrap().kvs, all);
        }
    }
}
