//! The key-value state machine: commands, snapshots through the
//! `StateMachine` interface, and a model-based property test.

use super::*;
use proptest::prelude::*;

fn snapshot_bytes(kv: &KvStore) -> Vec<u8> {
    let mut out = Vec::new();
    kv.snapshot().write_snapshot(&mut out).expect("written");
    out
}

fn restored(data: &[u8]) -> Result<KvStore, KvError> {
    let mut kv = KvStore::new();
    kv.restore(&mut &data[..])?;
    Ok(kv)
}

#[test]
fn put_get_delete() {
    let mut kv = KvStore::new();
    assert_eq!(
        kv.execute(KvCommand::put(b"a", b"1")),
        KvOutcome::Put { replaced: false }
    );
    assert_eq!(kv.get(b"a"), Some(&b"1"[..]));
    assert_eq!(
        kv.execute(KvCommand::put(b"a", b"2")),
        KvOutcome::Put { replaced: true }
    );
    assert_eq!(kv.get(b"a"), Some(&b"2"[..]));
    assert_eq!(
        kv.execute(KvCommand::delete(b"a")),
        KvOutcome::Deleted { existed: true }
    );
    assert_eq!(kv.get(b"a"), None);
    assert_eq!(
        kv.execute(KvCommand::delete(b"a")),
        KvOutcome::Deleted { existed: false }
    );
}

#[test]
fn apply_answers_each_command_with_its_index() {
    let mut kv = KvStore::new();
    let responses = kv
        .apply(vec![
            Committed {
                index: 5,
                command: KvCommand::put(b"a", b"1"),
            },
            Committed {
                index: 6,
                command: KvCommand { operation: None },
            },
            Committed {
                index: 7,
                command: KvCommand::delete(b"a"),
            },
        ])
        .expect("applies");
    let got: Vec<(u64, KvOutcome)> = responses
        .into_iter()
        .map(|r| (r.index, r.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, KvOutcome::Put { replaced: false }),
            (6, KvOutcome::Rejected),
            (7, KvOutcome::Deleted { existed: true }),
        ]
    );
}

#[test]
fn commands_round_trip_through_the_codec_and_garbage_is_refused() {
    let mut bytes = Vec::new();
    KvStore::encode_command(&KvCommand::put(b"k", b"v"), &mut bytes);
    assert_eq!(
        KvStore::decode_command(&bytes),
        Ok(KvCommand::put(b"k", b"v"))
    );
    assert!(KvStore::decode_command(&[0xff, 0xff, 0xff]).is_err());
}

#[test]
fn scan_prefix_in_key_order_with_limit() {
    let mut kv = KvStore::new();
    let keys: [&[u8]; 6] = [b"b/2", b"a", b"b/1", b"b", b"c", b"b/3"];
    for key in keys {
        kv.execute(KvCommand::put(key, b"v"));
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
fn snapshot_round_trips_and_is_a_valid_kv_snapshot_message() {
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"x", b"1"));
    kv.execute(KvCommand::put(b"y", &[0u8; 100]));
    kv.execute(KvCommand::put(b"", b"empty key"));
    kv.execute(KvCommand::put(b"z", b""));
    let data = snapshot_bytes(&kv);
    assert_eq!(restored(&data).expect("restores"), kv);
    // The stream is `repeated KvPair pairs = 2` of one message.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Whole {
        #[prost(message, repeated, tag = "2")]
        pairs: Vec<KvPair>,
    }
    let whole = Whole::decode(data.as_slice()).expect("decodes as one message");
    assert_eq!(whole.pairs.len(), 4);
    assert_eq!(
        restored(&snapshot_bytes(&KvStore::new())).expect("empty"),
        KvStore::new()
    );
}

#[test]
fn a_view_is_point_in_time() {
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"a", b"1"));
    let view = kv.snapshot();
    kv.execute(KvCommand::put(b"a", b"2"));
    let mut out = Vec::new();
    view.write_snapshot(&mut out).expect("written");
    assert_eq!(restored(&out).expect("restores").get(b"a"), Some(&b"1"[..]));
}

#[test]
fn corrupt_snapshots_are_refused_and_leave_the_store_unchanged() {
    let pair = |key: &[u8]| {
        let mut record = vec![0x12];
        let body = KvPair {
            key: key.to_vec(),
            value: vec![1],
        }
        .encode_to_vec();
        record.push(body.len() as u8);
        record.extend_from_slice(&body);
        record
    };
    let unordered = [pair(b"b"), pair(b"a")].concat();
    assert!(matches!(
        restored(&unordered),
        Err(KvError::Unordered { position: 1 })
    ));
    let twice = [pair(b"a"), pair(b"a")].concat();
    assert!(matches!(
        restored(&twice),
        Err(KvError::Unordered { position: 1 })
    ));
    let ok = pair(b"a");
    assert!(matches!(
        restored(&ok[..ok.len() - 1]),
        Err(KvError::Decode { .. })
    ));
    assert!(
        matches!(restored(&[0x0a, 0x00]), Err(KvError::Decode { .. })),
        "wrong field"
    );
    assert!(restored(&[0x12]).is_err(), "length missing");
    assert!(
        restored(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err(),
        "huge length"
    );
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"keep", b"me"));
    assert!(kv.restore(&mut &unordered[..]).is_err());
    assert_eq!(kv.get(b"keep"), Some(&b"me"[..]));
}

#[test]
fn command_encoding_is_stable() {
    // Entries written by one version must apply identically in the next.
    assert_eq!(
        KvCommand::put(b"k", b"v").encode_to_vec(),
        vec![0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']
    );
    assert_eq!(
        KvCommand::delete(b"k").encode_to_vec(),
        vec![0x12, 0x03, 0x0a, 0x01, b'k']
    );
}

#[test]
fn encode_put_writes_the_bytes_of_the_derived_encoder() {
    let value = vec![7u8; 300];
    for (key, value) in [
        (&b"k"[..], &b"v"[..]),
        (b"", b"v"),
        (b"k", b""),
        (b"", b""),
        (b"long", value.as_slice()),
    ] {
        let mut out = vec![0xaa];
        encode_put(key, value, &mut out);
        assert_eq!(
            out[1..],
            KvCommand::put(key, value).encode_to_vec()[..],
            "{key:?}"
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..16).prop_map(Op::Delete),
        1 => Just(Op::Snapshot),
    ]
}

proptest! {
    #[test]
    fn store_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..200)) {
        let mut kv = KvStore::new();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in &ops {
            match *op {
                Op::Put(k, v) => {
                    kv.execute(KvCommand::put(&[k], &[v]));
                    model.insert(vec![k], vec![v]);
                }
                Op::Delete(k) => {
                    kv.execute(KvCommand::delete(&[k]));
                    model.remove(&vec![k]);
                }
                Op::Snapshot => kv = restored(&snapshot_bytes(&kv)).expect("restore"),
            }
        }
        let all: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        prop_assert_eq!(kv.scan_prefix(b"", usize::MAX), all);
    }
}
