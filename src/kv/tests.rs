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
fn corrupt_snapshots_are_refused_and_leave_the_store_empty() {
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
    // The old state is dropped before the new one is read (so that a
    // large state is not held twice); a failure leaves nothing half-read.
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"old", b"state"));
    let size = kv.state_size();
    assert!(kv.restore(&mut &unordered[..]).is_err());
    assert!(kv.is_empty());
    assert_eq!(kv.state_bytes(), 0);
    assert_eq!(size.bytes(), 0);
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

#[test]
fn size_counts_keys_values_and_the_per_pair_overhead() {
    let mut kv = KvStore::new();
    let size = kv.state_size();
    assert_eq!((kv.state_bytes(), size.bytes()), (0, 0));
    kv.execute(KvCommand::put(b"ab", b"12345"));
    assert_eq!(kv.state_bytes(), 2 + 5 + PAIR_OVERHEAD_BYTES);
    assert_eq!(size.bytes(), kv.state_bytes(), "published");
    // An overwrite counts the new value instead of the old one.
    kv.execute(KvCommand::put(b"ab", b"1"));
    assert_eq!(kv.state_bytes(), 2 + 1 + PAIR_OVERHEAD_BYTES);
    kv.execute(KvCommand::put(b"c", &[0u8; 1000]));
    assert_eq!(kv.state_bytes(), 3 + 1001 + 2 * PAIR_OVERHEAD_BYTES);
    assert_eq!(size.bytes(), kv.state_bytes());
    // Deleting a missing key changes nothing; a present one its whole pair.
    kv.execute(KvCommand::delete(b"missing"));
    assert_eq!(kv.state_bytes(), 3 + 1001 + 2 * PAIR_OVERHEAD_BYTES);
    kv.execute(KvCommand::delete(b"c"));
    assert_eq!(kv.state_bytes(), 2 + 1 + PAIR_OVERHEAD_BYTES);
    kv.execute(KvCommand { operation: None });
    assert_eq!(kv.state_bytes(), 2 + 1 + PAIR_OVERHEAD_BYTES);
    kv.execute(KvCommand::delete(b"ab"));
    assert_eq!((kv.state_bytes(), size.bytes()), (0, 0));
    // Empty keys and values still count the overhead.
    kv.execute(KvCommand::put(b"", b""));
    assert_eq!(kv.state_bytes(), PAIR_OVERHEAD_BYTES);
}

#[test]
fn restore_keeps_the_size_and_publishes_it_on_the_handle_taken_before() {
    let mut kv = KvStore::new();
    for n in 0..50u32 {
        kv.execute(KvCommand::put(&n.to_be_bytes(), &vec![7u8; n as usize]));
    }
    let data = snapshot_bytes(&kv);
    let mut follower = KvStore::new();
    follower.execute(KvCommand::put(b"stale", &[1u8; 5000]));
    let size = follower.state_size();
    follower.restore(&mut &data[..]).expect("restores");
    assert_eq!(follower, kv);
    assert_eq!(follower.state_bytes(), kv.state_bytes());
    assert_eq!(size.bytes(), kv.state_bytes());
    let expected: u64 = (0..50u64).map(|n| 4 + n + PAIR_OVERHEAD_BYTES).sum();
    assert_eq!(kv.state_bytes(), expected);
}

#[test]
fn a_clone_has_its_own_size_handle() {
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"a", b"1"));
    let mut clone = kv.clone();
    assert_eq!(clone.state_size().bytes(), kv.state_bytes());
    clone.execute(KvCommand::put(b"b", b"2"));
    assert_eq!(kv.state_size().bytes(), 2 + PAIR_OVERHEAD_BYTES);
    assert_ne!(clone, kv);
}

#[test]
fn a_view_shares_the_values_instead_of_copying_them() {
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"big", &vec![9u8; 1 << 20]));
    let view = kv.snapshot();
    let in_store = kv.get(b"big").map(<[u8]>::as_ptr);
    let in_view = view.pairs.get(&b"big"[..]).map(|value| value.as_ptr());
    assert!(in_store.is_some());
    assert_eq!(in_store, in_view, "the view points at the store's value");
}

/// Whether `part` lies inside `whole`'s bytes.
fn points_into(part: &[u8], whole: &[u8]) -> bool {
    let range = whole.as_ptr_range();
    range.contains(&part.as_ptr()) && part.as_ptr_range().end <= range.end
}

#[test]
fn a_shared_decode_keeps_a_large_value_in_the_entry_and_copies_a_small_one() {
    for (key, value_len, sliced) in [
        (&b"k"[..], 256, true),
        (&b"k"[..], 2, false),
        (&[7u8; 200][..], 100, false),
        (&[7u8; 50][..], 100, true),
    ] {
        let value = vec![5u8; value_len];
        let mut encoded = Vec::new();
        KvStore::encode_command(&KvCommand::put(key, &value), &mut encoded);
        let buffer = Bytes::from(encoded);
        let shared = KvStore::decode_shared_command(&buffer).expect("decodes");
        assert_eq!(shared, KvStore::decode_command(&buffer).expect("decodes"));
        let Some(Operation::Put(put)) = &shared.operation else {
            panic!("a put decodes as a put");
        };
        assert_eq!(
            points_into(&put.value, &buffer),
            sliced,
            "key {} bytes, value {value_len} bytes",
            key.len()
        );
        // What the store keeps is the decoded value, and a new key is a
        // copy of its own (it would otherwise hold the entry alive).
        let mut kv = KvStore::new();
        kv.execute(shared.clone());
        let stored = kv.get(key).expect("stored");
        assert_eq!(stored, &value[..]);
        assert_eq!(points_into(stored, &buffer), sliced);
        let (stored_key, _) = kv.pairs.first_key_value().expect("one pair");
        assert!(!points_into(stored_key, &buffer));
    }
}

#[test]
fn overwriting_a_key_keeps_its_stored_copy() {
    let mut kv = KvStore::new();
    kv.execute(KvCommand::put(b"k", b"1"));
    let first = kv.pairs.first_key_value().map(|(k, _)| k.as_ptr());
    kv.execute(KvCommand::put(b"k", b"2"));
    assert_eq!(kv.pairs.first_key_value().map(|(k, _)| k.as_ptr()), first);
    assert_eq!(kv.get(b"k"), Some(&b"2"[..]));
    assert_eq!(kv.state_bytes(), pair_bytes(1, 1));
}

#[test]
fn snapshot_bytes_are_those_of_the_derived_pair_encoder() {
    // The format of earlier versions: each pair as `KvPair` in field 2.
    let cases: [(&[u8], Vec<u8>); 5] = [
        (b"k", b"v".to_vec()),
        (b"", b"empty key".to_vec()),
        (b"empty value", Vec::new()),
        (b"long", vec![3u8; 300]),
        (b"longer", vec![4u8; 70_000]),
    ];
    let mut kv = KvStore::new();
    let mut expected = BTreeMap::new();
    for (key, value) in &cases {
        kv.execute(KvCommand::put(key, value));
        expected.insert(key.to_vec(), value.clone());
    }
    let mut derived = Vec::new();
    for (key, value) in expected {
        let pair = KvPair { key, value };
        prost::encoding::encode_key(
            PAIR_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut derived,
        );
        prost::encoding::encode_varint(pair.encoded_len() as u64, &mut derived);
        pair.encode_raw(&mut derived);
    }
    assert_eq!(snapshot_bytes(&kv), derived);
}

#[test]
fn scan_pages_stop_at_the_limit_or_the_byte_cap_and_say_where_to_go_on() {
    let mut kv = KvStore::new();
    for n in 0..10u8 {
        // Keys of 3 bytes, values of 7: 10 bytes a pair.
        kv.execute(KvCommand::put(&[b'p', b'/', b'0' + n], &[n; 7]));
    }
    kv.execute(KvCommand::put(b"q", b"outside"));
    let keys = |page: &ScanPage| -> Vec<u8> { page.pairs.iter().map(|(k, _)| k[2]).collect() };

    let page = kv.scan(b"p/", b"", 3, usize::MAX);
    assert_eq!(keys(&page), b"012");
    assert_eq!(page.next, Some(b"p/3".to_vec()));
    // 25 bytes hold two pairs of 10, not three.
    let page = kv.scan(b"p/", b"p/3", 100, 25);
    assert_eq!(keys(&page), b"34");
    assert_eq!(page.next, Some(b"p/5".to_vec()));
    // Exactly at the cap: included.
    let page = kv.scan(b"p/", b"p/5", 100, 30);
    assert_eq!(keys(&page), b"567");
    // A cap below one pair still returns one.
    let page = kv.scan(b"p/", b"p/8", 100, 1);
    assert_eq!(keys(&page), b"8");
    assert_eq!(page.next, Some(b"p/9".to_vec()));
    // The last page has no next, though keys follow outside the prefix.
    let page = kv.scan(b"p/", b"p/9", 100, 1);
    assert_eq!(keys(&page), b"9");
    assert_eq!(page.next, None);
    // A start before the prefix starts at the prefix; one after it finds
    // nothing.
    assert_eq!(keys(&kv.scan(b"p/", b"a", 2, usize::MAX)), b"01");
    assert_eq!(kv.scan(b"p/", b"r", 2, usize::MAX), ScanPage::default());
    // Through the query interface.
    let query = KvQuery::ScanPrefix {
        prefix: b"p/".to_vec(),
        start: b"p/8".to_vec(),
        limit: 1,
        max_bytes: usize::MAX,
    };
    assert_eq!(
        kv.query(query),
        KvQueryResult::Pairs(ScanPage {
            pairs: vec![(b"p/8".to_vec(), vec![8; 7])],
            next: Some(b"p/9".to_vec()),
        })
    );
}

#[test]
fn the_quota_refuses_what_would_pass_it_and_the_alarm_clears_at_90_percent() {
    let mut kv = KvStore::new();
    // Twenty pairs of 1 + 99 + overhead fill it exactly.
    let pair = 100 + PAIR_OVERHEAD_BYTES;
    let quota = SpaceQuota::new(20 * pair, kv.state_size());
    let put = |kv: &mut KvStore, n: u8| kv.execute(KvCommand::put(&[n], &[0u8; 99]));
    for n in 0..20 {
        let admitted = quota.admit_put(1, 99).expect("fits");
        put(&mut kv, n);
        drop(admitted);
    }
    assert_eq!(kv.state_bytes(), quota.quota_bytes(), "exactly full");
    assert!(!quota.refresh(), "full is not past the quota");
    let refused = quota.admit_put(1, 0).expect_err("full");
    assert!(matches!(refused, QuotaError::Exceeded { .. }), "{refused}");
    assert!(refused.to_string().starts_with("quota exceeded"));
    assert!(quota.alarm());
    // One delete is not enough: the alarm holds, for every put, until the
    // state is at 90%.
    kv.execute(KvCommand::delete(&[0]));
    assert!(quota.refresh());
    let refused = quota.admit_put(1, 0).expect_err("alarm");
    assert!(matches!(refused, QuotaError::Alarm { .. }), "{refused}");
    assert!(refused.to_string().starts_with("quota exceeded"));
    kv.execute(KvCommand::delete(&[1]));
    assert_eq!(kv.state_bytes(), quota.resume_bytes(), "at 90%");
    assert!(!quota.refresh(), "cleared");
    assert!(quota.admit_put(1, 99).is_ok());
}

#[test]
fn concurrent_admissions_count_each_other_until_released() {
    let kv = KvStore::new();
    let quota = SpaceQuota::new(2 * (10 + PAIR_OVERHEAD_BYTES), kv.state_size());
    let first = quota.admit_put(1, 9).expect("fits");
    let second = quota.admit_put(1, 9).expect("fits beside the first");
    assert!(quota.admit_put(1, 9).is_err(), "two in flight fill it");
    drop((first, second));
    // The refusal raised the alarm; the store is empty, so it clears.
    assert!(quota.admit_put(1, 9).is_ok());
}

#[test]
fn a_put_too_large_for_a_roomy_store_is_refused_and_the_alarm_clears_at_the_next_check() {
    let mut kv = KvStore::new();
    let quota = SpaceQuota::new(1000, kv.state_size());
    kv.execute(KvCommand::put(b"k", &[0u8; 100]));
    let refused = quota.admit_put(1, 1000).expect_err("does not fit");
    assert!(
        refused
            .to_string()
            .contains("165 bytes, and 0 bytes of puts in flight"),
        "{refused}"
    );
    assert!(quota.alarm(), "raised by the refusal");
    assert!(!quota.refresh(), "the state is far below 90%");
    assert!(quota.admit_put(1, 100).is_ok());
}

#[test]
fn the_alarm_is_raised_when_writes_from_elsewhere_pass_the_quota() {
    let mut kv = KvStore::new();
    let quota = SpaceQuota::new(100, kv.state_size());
    // Applied without admission here (proposed through another member).
    kv.execute(KvCommand::put(b"k", &[0u8; 100]));
    assert!(quota.refresh());
    assert!(matches!(
        quota.admit_put(1, 1),
        Err(QuotaError::Alarm { .. })
    ));
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
        let expected_size: u64 = model
            .iter()
            .map(|(k, v)| pair_bytes(k.len(), v.len()))
            .sum();
        prop_assert_eq!(kv.state_bytes(), expected_size);
        prop_assert_eq!(kv.state_size().bytes(), expected_size);
        let all: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        prop_assert_eq!(kv.scan_prefix(b"", usize::MAX), all);
    }

    #[test]
    fn following_next_visits_every_key_once(
        values in proptest::collection::btree_map(any::<u8>(), 0usize..40, 0..60),
        limit in 1usize..8,
        max_bytes in 0usize..100,
    ) {
        let mut kv = KvStore::new();
        for (&key, &len) in &values {
            kv.execute(KvCommand::put(&[b'p', key], &vec![key; len]));
        }
        kv.execute(KvCommand::put(b"q", b"not under the prefix"));
        let mut seen = Vec::new();
        let mut start = Vec::new();
        loop {
            let page = kv.scan(b"p", &start, limit, max_bytes);
            prop_assert!(page.pairs.len() <= limit);
            let bytes: usize = page.pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
            prop_assert!(page.pairs.len() <= 1 || bytes <= max_bytes);
            seen.extend(page.pairs.into_iter().map(|(k, _)| k[1]));
            match page.next {
                Some(next) => start = next,
                None => break,
            }
        }
        let expected: Vec<u8> = values.keys().copied().collect();
        prop_assert_eq!(seen, expected);
    }
}
