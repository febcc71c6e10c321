//! The key-value state machine: commands, ordering rules, snapshots, and a
//! model-based property test.

use super::*;
use proptest::prelude::*;

#[test]
fn put_get_delete() {
    let mut kv = KvStore::new();
    assert_eq!(
        kv.apply(1, &KvCommand::put(b"a", b"1")),
        Ok(ApplyOutcome::Put { replaced: false })
    );
    assert_eq!(kv.get(b"a"), Some(&b"1"[..]));
    assert_eq!(
        kv.apply(2, &KvCommand::put(b"a", b"2")),
        Ok(ApplyOutcome::Put { replaced: true })
    );
    assert_eq!(kv.get(b"a"), Some(&b"2"[..]));
    assert_eq!(
        kv.apply(3, &KvCommand::delete(b"a")),
        Ok(ApplyOutcome::Deleted { existed: true })
    );
    assert_eq!(kv.get(b"a"), None);
    assert_eq!(
        kv.apply(4, &KvCommand::delete(b"a")),
        Ok(ApplyOutcome::Deleted { existed: false })
    );
    assert_eq!(kv.applied_index(), 4);
}

#[test]
fn empty_entries_only_advance_the_applied_index() {
    let mut kv = KvStore::new();
    assert_eq!(kv.apply(1, &[]), Ok(ApplyOutcome::NoOp));
    assert_eq!(kv.apply_no_op(2), Ok(ApplyOutcome::NoOp));
    assert_eq!(kv.applied_index(), 2);
    assert!(kv.is_empty());
}

#[test]
fn replayed_entries_are_ignored() {
    let mut kv = KvStore::new();
    kv.apply(1, &KvCommand::put(b"a", b"1")).expect("apply");
    kv.apply(2, &KvCommand::put(b"a", b"2")).expect("apply");
    assert_eq!(
        kv.apply(1, &KvCommand::put(b"a", b"1")),
        Ok(ApplyOutcome::AlreadyApplied)
    );
    assert_eq!(kv.get(b"a"), Some(&b"2"[..]));
}

#[test]
fn a_gap_is_refused_and_changes_nothing() {
    let mut kv = KvStore::new();
    kv.apply(1, &KvCommand::put(b"a", b"1")).expect("apply");
    assert_eq!(
        kv.apply(3, &KvCommand::put(b"b", b"1")),
        Err(KvError::Gap {
            index: 3,
            applied: 1,
            first_missing: 2
        })
    );
    assert_eq!(kv.applied_index(), 1);
    assert_eq!(kv.get(b"b"), None);
}

#[test]
fn undecodable_command_is_skipped_deterministically() {
    let mut a = KvStore::new();
    let mut b = KvStore::new();
    for kv in [&mut a, &mut b] {
        let outcome = kv.apply(1, &[0xff, 0xff, 0xff]).expect("apply");
        assert!(matches!(outcome, ApplyOutcome::Rejected { .. }));
        assert_eq!(
            kv.apply(2, &KvCommand { operation: None }.encode_to_vec()),
            Ok(ApplyOutcome::NoOp),
            "an empty command encodes to no bytes: a no-op"
        );
        kv.apply(3, &KvCommand::put(b"k", b"v")).expect("apply");
    }
    assert_eq!(a, b);
    assert_eq!(a.applied_index(), 3);
}

#[test]
fn scan_prefix_in_key_order_with_limit() {
    let mut kv = KvStore::new();
    let keys: [&[u8]; 6] = [b"b/2", b"a", b"b/1", b"b", b"c", b"b/3"];
    for (i, key) in keys.iter().enumerate() {
        kv.apply(i as u64 + 1, &KvCommand::put(key, b"v"))
            .expect("apply");
    }
    let scanned: Vec<Vec<u8>> = kv
        .scan_prefix(b"b/", 10)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        scanned,
        vec![b"b/1".to_vec(), b"b/2".to_vec(), b"b/3".to_vec()]
    );
    assert_eq!(kv.scan_prefix(b"b", 2).len(), 2);
    assert_eq!(kv.scan_prefix(b"", 100).len(), 6);
    assert!(kv.scan_prefix(b"z", 10).is_empty());
    // A prefix of 0xff bytes must not overflow anything.
    assert!(kv.scan_prefix(&[0xff, 0xff], 10).is_empty());
}

#[test]
fn snapshot_round_trips() {
    let mut kv = KvStore::new();
    kv.apply(1, &KvCommand::put(b"x", b"1")).expect("apply");
    kv.apply(2, &KvCommand::put(b"y", &[0u8; 100]))
        .expect("apply");
    kv.apply(3, &KvCommand::delete(b"x")).expect("apply");
    let restored = KvStore::restore(&kv.snapshot()).expect("restore");
    assert_eq!(restored, kv);
    assert_eq!(restored.applied_index(), 3);
}

#[test]
fn member_directory_follows_changes_and_snapshots() {
    let mut kv = KvStore::new();
    let add = |node_id: u64, peer_url: &str| MemberChange::Added {
        node_id,
        peer_url: peer_url.to_string(),
    };
    kv.apply_member_changes(1, &[add(1, "10.0.0.1:7380")])
        .expect("apply");
    kv.apply_member_changes(2, &[add(2, "10.0.0.2:7380")])
        .expect("apply");
    // A promotion carries no address: the known one stays.
    kv.apply_member_changes(3, &[add(2, "")]).expect("apply");
    kv.apply_member_changes(4, &[MemberChange::Removed { node_id: 1 }])
        .expect("apply");
    // Replayed after a restart: ignored.
    assert_eq!(
        kv.apply_member_changes(2, &[MemberChange::Removed { node_id: 2 }]),
        Ok(ApplyOutcome::AlreadyApplied)
    );
    let expected: BTreeMap<u64, String> = [(2, "10.0.0.2:7380".to_string())].into();
    assert_eq!(kv.members(), &expected);
    assert_eq!(kv.applied_index(), 4);
    let restored = KvStore::restore(&kv.snapshot()).expect("restore");
    assert_eq!(restored.members(), &expected);
    assert_eq!(restored, kv);
}

#[test]
fn snapshot_encoding_matches_the_derived_encoder() {
    let mut kv = KvStore::new();
    assert_eq!(kv.snapshot(), KvSnapshot::default().encode_to_vec());
    kv.apply(1, &KvCommand::put(b"a", b"")).expect("apply");
    kv.apply(2, &KvCommand::put(b"", b"empty key"))
        .expect("apply");
    kv.apply(3, &KvCommand::put(&[0xff; 300], &[7; 200]))
        .expect("apply");
    kv.apply_member_changes(
        4,
        &[MemberChange::Added {
            node_id: 9,
            peer_url: "10.0.0.9:7380".to_string(),
        }],
    )
    .expect("apply");
    let derived = KvSnapshot {
        applied_index: 4,
        pairs: vec![
            KvPair {
                key: vec![],
                value: b"empty key".to_vec(),
            },
            KvPair {
                key: b"a".to_vec(),
                value: vec![],
            },
            KvPair {
                key: vec![0xff; 300],
                value: vec![7; 200],
            },
        ],
        members: vec![MemberAddress {
            node_id: 9,
            peer_url: "10.0.0.9:7380".to_string(),
        }],
    };
    assert_eq!(kv.snapshot(), derived.encode_to_vec());
}

#[test]
fn snapshot_of_empty_store_round_trips() {
    let kv = KvStore::new();
    assert_eq!(KvStore::restore(&kv.snapshot()), Ok(kv));
}

#[test]
fn corrupt_snapshots_are_refused() {
    assert!(matches!(
        KvStore::restore(&[0x12, 0x05, 0x0a]),
        Err(KvError::SnapshotDecode { .. })
    ));
    let unordered = KvSnapshot {
        applied_index: 2,
        members: vec![],
        pairs: vec![
            KvPair {
                key: b"b".to_vec(),
                value: vec![],
            },
            KvPair {
                key: b"a".to_vec(),
                value: vec![],
            },
        ],
    };
    assert_eq!(
        KvStore::restore(&unordered.encode_to_vec()),
        Err(KvError::SnapshotUnordered { position: 1 })
    );
}

#[test]
fn command_encoding_is_stable() {
    // Entries written by one version must apply identically in the next.
    assert_eq!(
        KvCommand::put(b"k", b"v"),
        vec![0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']
    );
    assert_eq!(KvCommand::delete(b"k"), vec![0x12, 0x03, 0x0a, 0x01, b'k']);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Garbage,
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..16).prop_map(Op::Delete),
        1 => Just(Op::Garbage),
        1 => Just(Op::Snapshot),
    ]
}

proptest! {
    #[test]
    fn store_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..200)) {
        let mut kv = KvStore::new();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            match *op {
                Op::Put(k, v) => {
                    kv.apply(index, &KvCommand::put(&[k], &[v])).expect("apply");
                    model.insert(vec![k], vec![v]);
                }
                Op::Delete(k) => {
                    kv.apply(index, &KvCommand::delete(&[k])).expect("apply");
                    model.remove(&vec![k]);
                }
                Op::Garbage => {
                    kv.apply(index, &[0x0a, 0xff]).expect("apply");
                }
                Op::Snapshot => {
                    kv.apply_no_op(index).expect("apply");
                    kv = KvStore::restore(&kv.snapshot()).expect("restore");
                }
            }
            prop_assert_eq!(kv.applied_index(), index);
        }
        let all: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        prop_assert_eq!(kv.scan_prefix(b"", usize::MAX), all);
    }
}
