//! Concrete cases for every rule of the store (see the module
//! documentation); the model-based property test is in `tests_model.rs`,
//! snapshots in `tests_snapshot.rs`.

use super::write::Writer;
use super::*;
use bytes::Bytes;

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(super) fn no_lease(_: i64) -> bool {
    false
}

fn leases_1_2(id: i64) -> bool {
    id == 1 || id == 2
}

fn put(s: &mut MvccStore, k: &str, v: &str) -> i64 {
    s.put(&PutRequest::new(b(k), b(v)), &no_lease)
        .unwrap()
        .response
        .revision
}

fn put_lease(s: &mut MvccStore, k: &str, v: &str, lease: i64) -> Applied<PutResponse> {
    let request = PutRequest {
        lease,
        ..PutRequest::new(b(k), b(v))
    };
    s.put(&request, &leases_1_2).unwrap()
}

fn del(s: &mut MvccStore, k: &str) -> Applied<DeleteRangeResponse> {
    s.delete_range(&DeleteRangeRequest::key(b(k))).unwrap()
}

fn get_at(s: &MvccStore, k: &str, revision: i64) -> Result<Option<KeyValue>, MvccError> {
    let request = RangeRequest {
        revision,
        ..RangeRequest::key(b(k))
    };
    s.range(&request).map(|r| r.kvs.into_iter().next())
}

fn get(s: &MvccStore, k: &str) -> Option<KeyValue> {
    get_at(s, k, 0).unwrap()
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn all() -> RangeRequest {
    RangeRequest::range(vec![0u8], vec![0u8])
}

fn txn(s: &mut MvccStore, t: TxnRequest) -> Result<Applied<TxnResponse>, MvccError> {
    s.txn(&t, &leases_1_2)
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest::new(b(k), b(v)))
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest::range(b(k), b(end)))
}

fn op_get(k: &str) -> RequestOp {
    RequestOp::Range(RangeRequest::key(b(k)))
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult) -> Compare {
    Compare::key(b(k), target, result)
}

/// The size by its definition, from the stored versions.
pub(super) fn recomputed_size(s: &MvccStore) -> u64 {
    s.keys
        .iter()
        .flat_map(|(k, h)| h.records().iter().map(move |r| r.size(k)))
        .sum()
}

#[test]
fn fresh_store_is_at_revision_one_and_empty() {
    let s = MvccStore::new();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compacted_revision(), 0);
    assert_eq!(s.size_bytes(), 0);
    let r = s.range(&all()).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more, r.revision), (0, 0, false, 1));
}

#[test]
fn puts_take_the_next_revision_and_count_versions() {
    let mut s = MvccStore::new();
    assert_eq!(put(&mut s, "a", "1"), 2);
    assert_eq!(put(&mut s, "a", "2"), 3);
    assert_eq!(put(&mut s, "b", "x"), 4);
    let a = get(&s, "a").unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, a.version, &a.value[..]),
        (2, 3, 2, &b"2"[..])
    );
    let bk = get(&s, "b").unwrap();
    assert_eq!((bk.create_revision, bk.mod_revision, bk.version), (4, 4, 1));
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn a_delete_ends_the_generation_and_old_revisions_still_see_it() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "1"); // 2
    put(&mut s, "a", "2"); // 3
    let d = del(&mut s, "a"); // 4
    assert_eq!((d.response.deleted, d.response.revision), (1, 4));
    assert_eq!(get(&s, "a"), None);
    put(&mut s, "a", "3"); // 5
    let a = get(&s, "a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));
    let old = get_at(&s, "a", 3).unwrap().unwrap();
    assert_eq!((old.version, &old.value[..]), (2, &b"2"[..]));
    assert_eq!(get_at(&s, "a", 4).unwrap(), None);
    assert_eq!(get_at(&s, "a", 1).unwrap(), None);
}

#[test]
fn deleting_nothing_keeps_the_revision() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "1");
    let d = del(&mut s, "zz");
    assert_eq!((d.response.deleted, d.response.revision), (0, 2));
    assert!(d.events.is_empty());
    assert_eq!(s.current_revision(), 2);
}

#[test]
fn future_and_compacted_reads_fail_with_etcds_messages() {
    let mut s = MvccStore::new();
    for v in ["1", "2", "3", "4"] {
        put(&mut s, "a", v); // 2..=5
    }
    let future = get_at(&s, "a", 6).unwrap_err();
    assert_eq!(future, MvccError::FutureRevision);
    assert_eq!(
        future.to_string(),
        "mvcc: required revision is a future revision"
    );
    s.compact(4).unwrap();
    let compacted = get_at(&s, "a", 3).unwrap_err();
    assert_eq!(
        compacted,
        MvccError::Compacted {
            compact_revision: 4
        }
    );
    assert_eq!(
        compacted.to_string(),
        "mvcc: required revision has been compacted"
    );
    // At the compacted revision itself the read works.
    assert_eq!(&get_at(&s, "a", 4).unwrap().unwrap().value[..], b"3");
    // A negative revision means the current one.
    assert_eq!(&get_at(&s, "a", -1).unwrap().unwrap().value[..], b"4");
}

#[test]
fn range_end_rules() {
    let mut s = MvccStore::new();
    for k in ["a", "b", "c", "d"] {
        put(&mut s, k, "v");
    }
    let q = |s: &MvccStore, k: &[u8], e: &[u8]| {
        keys(
            &s.range(&RangeRequest::range(k.to_vec(), e.to_vec()))
                .unwrap()
                .kvs,
        )
    };
    assert_eq!(q(&s, b"b", b""), ["b"]);
    assert_eq!(q(&s, b"b", b"d"), ["b", "c"]);
    assert_eq!(q(&s, b"b", b"\0"), ["b", "c", "d"]);
    assert_eq!(q(&s, b"\0", b"\0"), ["a", "b", "c", "d"]);
    assert!(q(&s, b"c", b"b").is_empty(), "a reversed range is empty");
    assert!(q(&s, b"bb", b"").is_empty());
    assert_eq!(
        s.range(&RangeRequest::key(Bytes::new())).unwrap_err(),
        MvccError::EmptyKey
    );
}

/// Keys a..e; versions a:1 b:3 c:2 d:1 e:2, values descending.
fn sort_fixture() -> MvccStore {
    let mut s = MvccStore::new();
    for (k, n, v) in [
        ("a", 1, "5"),
        ("b", 3, "4"),
        ("c", 2, "3"),
        ("d", 1, "2"),
        ("e", 2, "1"),
    ] {
        for _ in 0..n {
            put(&mut s, k, v);
        }
    }
    s
}

#[test]
fn limit_count_and_more() {
    let s = sort_fixture();
    let r = s.range(&RangeRequest { limit: 2, ..all() }).unwrap();
    assert_eq!(
        (keys(&r.kvs), r.count, r.more),
        (vec!["a".into(), "b".into()], 5, true)
    );
    let r = s.range(&RangeRequest { limit: 5, ..all() }).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (5, 5, false));
    let r = s
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..all()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 5, false));
    let r = s
        .range(&RangeRequest {
            keys_only: true,
            ..all()
        })
        .unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version > 0));
}

#[test]
fn sort_orders_and_targets() {
    let s = sort_fixture();
    let sorted = |order, target| {
        keys(
            &s.range(&RangeRequest {
                sort_order: order,
                sort_target: target,
                ..all()
            })
            .unwrap()
            .kvs,
        )
    };
    use SortOrder::*;
    use SortTarget::*;
    assert_eq!(sorted(Descend, Key), ["e", "d", "c", "b", "a"]);
    // Ties stay in key order, also descending.
    assert_eq!(sorted(Descend, Version), ["b", "c", "e", "a", "d"]);
    assert_eq!(sorted(Ascend, Version), ["a", "d", "c", "e", "b"]);
    // No order with a target other than the key: ascending.
    assert_eq!(sorted(None, Value), ["e", "d", "c", "b", "a"]);
    assert_eq!(sorted(Ascend, Create), ["a", "b", "c", "d", "e"]);
    assert_eq!(sorted(Descend, Mod), ["e", "d", "c", "b", "a"]);
}

#[test]
fn sorted_limit_truncates_after_sorting_but_unordered_pushes_the_limit_down() {
    let s = sort_fixture();
    let r = s
        .range(&RangeRequest {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Version,
            limit: 2,
            ..all()
        })
        .unwrap();
    assert_eq!(
        (keys(&r.kvs), r.count, r.more),
        (vec!["b".into(), "c".into()], 5, true)
    );
    // etcd 3.4: without a sort order the limit is pushed down (limit + 1
    // keys fetched in key order: a, b, c), then sorted by the target.
    let r = s
        .range(&RangeRequest {
            sort_target: SortTarget::Version,
            limit: 2,
            ..all()
        })
        .unwrap();
    assert_eq!(
        (keys(&r.kvs), r.count, r.more),
        (vec!["a".into(), "c".into()], 5, true)
    );
}

#[test]
fn revision_filters_apply_before_the_limit_and_leave_count_alone() {
    let s = sort_fixture(); // mod revisions: a2 b5 c7 d8 e10; create a2 b3 c6 d8 e9
    let r = s
        .range(&RangeRequest {
            min_mod_revision: 5,
            max_mod_revision: 8,
            ..all()
        })
        .unwrap();
    assert_eq!(
        (keys(&r.kvs), r.count),
        (vec!["b".into(), "c".into(), "d".into()], 5)
    );
    let r = s
        .range(&RangeRequest {
            min_create_revision: 3,
            max_create_revision: 8,
            limit: 2,
            ..all()
        })
        .unwrap();
    assert_eq!((keys(&r.kvs), r.more), (vec!["b".into(), "c".into()], true));
    let r = s
        .range(&RangeRequest {
            min_create_revision: 9,
            limit: 2,
            ..all()
        })
        .unwrap();
    assert_eq!(
        (keys(&r.kvs), r.more, r.count),
        (vec!["e".into()], false, 5)
    );
}

#[test]
fn put_flags_and_their_errors() {
    let mut s = MvccStore::new();
    let ignore_value = PutRequest {
        ignore_value: true,
        ..PutRequest::new(b("a"), Bytes::new())
    };
    let missing = s.put(&ignore_value, &no_lease).unwrap_err();
    assert_eq!(missing.to_string(), "etcdserver: key not found");
    let with_value = PutRequest {
        ignore_value: true,
        ..PutRequest::new(b("a"), b("v"))
    };
    let provided = s.put(&with_value, &no_lease).unwrap_err();
    assert_eq!(provided.to_string(), "etcdserver: value is provided");
    let with_lease = PutRequest {
        ignore_lease: true,
        lease: 1,
        ..PutRequest::new(b("a"), b("v"))
    };
    let provided = s.put(&with_lease, &leases_1_2).unwrap_err();
    assert_eq!(provided.to_string(), "etcdserver: lease is provided");
    let unknown = put_lease_err(&mut s, 7);
    assert_eq!(unknown.to_string(), "etcdserver: requested lease not found");
    assert_eq!(s.current_revision(), 1, "failed puts change nothing");

    put_lease(&mut s, "a", "v1", 1);
    // ignore_value keeps the value, sets the lease.
    let keep_value = PutRequest {
        ignore_value: true,
        lease: 2,
        prev_kv: true,
        ..PutRequest::new(b("a"), Bytes::new())
    };
    let applied = s.put(&keep_value, &leases_1_2).unwrap();
    let prev = applied.response.prev_kv.unwrap();
    assert_eq!((&prev.value[..], prev.lease), (&b"v1"[..], 1));
    let a = get(&s, "a").unwrap();
    assert_eq!((&a.value[..], a.lease, a.version), (&b"v1"[..], 2, 2));
    // ignore_lease keeps the lease, sets the value.
    let keep_lease = PutRequest {
        ignore_lease: true,
        ..PutRequest::new(b("a"), b("v2"))
    };
    let applied = s.put(&keep_lease, &no_lease).unwrap();
    assert_eq!(applied.response.prev_kv, None, "prev_kv only when asked");
    let a = get(&s, "a").unwrap();
    assert_eq!((&a.value[..], a.lease), (&b"v2"[..], 2));
}

fn put_lease_err(s: &mut MvccStore, lease: i64) -> MvccError {
    let request = PutRequest {
        lease,
        ..PutRequest::new(b("a"), b("v"))
    };
    s.put(&request, &leases_1_2).unwrap_err()
}

#[test]
fn lease_attachments_follow_the_current_versions() {
    let mut s = MvccStore::new();
    put_lease(&mut s, "a", "v", 1);
    put_lease(&mut s, "b", "v", 1);
    put_lease(&mut s, "c", "v", 2);
    assert_eq!(s.keys_of_lease(1), [b("a"), b("b")]);
    put_lease(&mut s, "b", "v", 2); // moves b to lease 2
    put(&mut s, "c", "v"); // detaches c
    assert_eq!(s.keys_of_lease(1), [b("a")]);
    assert_eq!(s.leased_keys(), [(1, b("a")), (2, b("b"))]);
    del(&mut s, "a");
    assert!(s.keys_of_lease(1).is_empty());
    put_lease(&mut s, "a", "v", 2);
    let before = s.current_revision();
    let revoked = s.revoke_lease(2);
    assert_eq!(revoked.response.deleted, 2);
    assert_eq!(
        revoked.response.revision,
        before + 1,
        "one revision for all"
    );
    assert_eq!(keys(&revoked.response.prev_kvs), ["a", "b"]);
    let subs: Vec<_> = revoked
        .events
        .iter()
        .map(|e| (e.kind, e.kv.mod_revision))
        .collect();
    assert_eq!(subs, [(EventKind::Delete, before + 1); 2]);
    assert!(s.leased_keys().is_empty());
    assert_eq!(s.revoke_lease(2).response.revision, before + 1);
}

#[test]
fn delete_range_returns_prev_kvs_and_tombstone_events() {
    let mut s = MvccStore::new();
    for k in ["a", "b", "c"] {
        put(&mut s, k, k); // 2, 3, 4
    }
    let request = DeleteRangeRequest {
        prev_kv: true,
        ..DeleteRangeRequest::range(b("a"), b("c"))
    };
    let applied = s.delete_range(&request).unwrap();
    assert_eq!(applied.response.deleted, 2);
    assert_eq!(keys(&applied.response.prev_kvs), ["a", "b"]);
    let e = &applied.events[1];
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!(
        e.kv,
        KeyValue {
            key: b("b"),
            mod_revision: 5,
            ..KeyValue::default()
        }
    );
    assert_eq!(e.prev_kv.as_ref().unwrap().mod_revision, 3);
    assert_eq!(keys(&s.range(&all()).unwrap().kvs), ["c"]);
    assert_eq!(s.range(&all()).unwrap().count, 1);
}

#[test]
fn txn_compares_choose_the_branch() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "1"); // 2
    let t = |c: Compare| TxnRequest {
        compare: vec![c],
        success: vec![op_get("a")],
        failure: vec![],
    };
    use CompareResult::*;
    use CompareTarget::*;
    let cases = [
        (cmp("a", Value(b("1")), Equal), true),
        (cmp("a", Value(b("0")), Greater), true),
        (cmp("a", Version(1), Equal), true),
        (cmp("a", Create(2), Equal), true),
        (cmp("a", Mod(3), Less), true),
        (cmp("a", Lease(0), Equal), true),
        (cmp("a", Version(1), NotEqual), false),
        // A missing key compares as zero values...
        (cmp("x", Version(0), Equal), true),
        (cmp("x", Create(0), Equal), true),
        (cmp("x", Mod(1), Less), true),
        (cmp("x", Lease(0), Equal), true),
        // ...but a value compare on it is always false.
        (cmp("x", Value(Bytes::new()), Equal), false),
        (cmp("x", Value(b("z")), NotEqual), false),
    ];
    for (c, expected) in cases {
        let applied = txn(&mut s, t(c.clone())).unwrap();
        assert_eq!(applied.response.succeeded, expected, "{c:?}");
        assert_eq!(
            applied.response.revision, 2,
            "a read-only txn keeps the revision"
        );
    }
}

#[test]
fn txn_range_compares_need_every_existing_key() {
    let mut s = MvccStore::new();
    put(&mut s, "k1", "v");
    put(&mut s, "k2", "v");
    put(&mut s, "k2", "v"); // k2 at version 2
    let range_cmp = |start: &str, end: &str, v: i64| Compare {
        key: b(start),
        range_end: b(end),
        target: CompareTarget::Version(v),
        result: CompareResult::Greater,
    };
    let run = |s: &mut MvccStore, c| {
        txn(
            s,
            TxnRequest {
                compare: vec![c],
                ..TxnRequest::default()
            },
        )
        .unwrap()
        .response
        .succeeded
    };
    assert!(run(&mut s, range_cmp("k", "l", 0)));
    assert!(!run(&mut s, range_cmp("k", "l", 1)), "k1 is at version 1");
    assert!(run(&mut s, range_cmp("k2", "l", 1)));
    // No key in the range: zero values (version 0 > -1 holds).
    assert!(run(&mut s, range_cmp("x", "y", -1)));
    assert!(!run(&mut s, range_cmp("x", "y", 0)));
}

#[test]
fn txn_writes_share_one_revision_and_later_reads_see_them() {
    let mut s = MvccStore::new();
    put(&mut s, "c", "old"); // 2
    let applied = txn(
        &mut s,
        TxnRequest {
            compare: vec![],
            success: vec![
                op_get("a"),
                op_put("a", "1"),
                op_get("a"),
                op_put("b", "2"),
                op_del("c", ""),
                RequestOp::Range(RangeRequest {
                    revision: 2,
                    ..RangeRequest::key(b("c"))
                }),
            ],
            failure: vec![],
        },
    )
    .unwrap();
    let r = &applied.response;
    assert!(r.succeeded);
    assert_eq!(r.revision, 3);
    let revs: Vec<i64> = s
        .events_since(3, b"\0", b"\0")
        .unwrap()
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(revs, [3; 3]);
    let ResponseOp::Range(first) = &r.responses[0] else {
        panic!("{:?}", r.responses[0])
    };
    assert_eq!((first.kvs.len(), first.revision), (0, 2));
    let ResponseOp::Range(second) = &r.responses[2] else {
        panic!("{:?}", r.responses[2])
    };
    assert_eq!((&second.kvs[0].value[..], second.revision), (&b"1"[..], 3));
    let ResponseOp::Put(p) = &r.responses[1] else {
        panic!()
    };
    assert_eq!(p.revision, 3);
    let ResponseOp::DeleteRange(d) = &r.responses[4] else {
        panic!()
    };
    assert_eq!(d.deleted, 1);
    let ResponseOp::Range(past) = &r.responses[5] else {
        panic!()
    };
    assert_eq!(
        &past.kvs[0].value[..],
        b"old",
        "a past read ignores the txn"
    );
    let kinds: Vec<_> = applied
        .events
        .iter()
        .map(|e| (e.kind, &e.kv.key[..]))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Put, &b"a"[..]),
            (EventKind::Put, &b"b"[..]),
            (EventKind::Delete, &b"c"[..])
        ]
    );
    // Sub-revisions 0, 1, 2 in the stored versions.
    let subs: Vec<i64> = ["a", "b", "c"]
        .iter()
        .map(|k| s.keys[&b(k)].latest().unwrap().sub)
        .collect();
    assert_eq!(subs, [0, 1, 2]);
}

#[test]
fn txn_changing_nothing_keeps_the_revision() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "1");
    let applied = txn(
        &mut s,
        TxnRequest {
            success: vec![op_del("x", ""), op_get("a")],
            ..TxnRequest::default()
        },
    )
    .unwrap();
    assert_eq!(applied.response.revision, 2);
    assert!(applied.events.is_empty());
    assert_eq!(s.current_revision(), 2);
}

#[test]
fn nested_txn_compares_see_the_store_before_the_txn() {
    let mut s = MvccStore::new();
    let nested = TxnRequest {
        compare: vec![cmp("a", CompareTarget::Version(0), CompareResult::Equal)],
        success: vec![op_put("then", "1")],
        failure: vec![op_put("else", "1")],
    };
    let applied = txn(
        &mut s,
        TxnRequest {
            success: vec![op_put("a", "1"), RequestOp::Txn(nested)],
            ..TxnRequest::default()
        },
    )
    .unwrap();
    // "a" did not exist before the txn, so the nested compare held.
    let ResponseOp::Txn(inner) = &applied.response.responses[1] else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(inner.revision, 2);
    assert!(get(&s, "then").is_some());
    assert!(get(&s, "else").is_none());
    assert_eq!(get(&s, "then").unwrap().mod_revision, 2, "one revision");
}

#[test]
fn duplicate_writes_in_a_txn_are_refused_before_anything_applies() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "0");
    let nested = |success, failure| {
        RequestOp::Txn(TxnRequest {
            compare: vec![],
            success,
            failure,
        })
    };
    let refused = [
        vec![op_put("k", "1"), op_put("k", "2")],
        vec![op_put("k", "1"), op_del("j", "l")],
        vec![op_del("a", "\0"), op_put("k", "1")],
        vec![op_put("k", "1"), nested(vec![op_put("k", "2")], vec![])],
        vec![op_put("k", "1"), nested(vec![], vec![op_put("k", "2")])],
        vec![op_del("k", ""), nested(vec![op_put("k", "2")], vec![])],
        vec![nested(vec![op_del("k", "")], vec![]), op_put("k", "2")],
    ];
    for success in refused {
        let request = TxnRequest {
            success: success.clone(),
            ..TxnRequest::default()
        };
        let e = txn(&mut s, request).unwrap_err();
        assert_eq!(
            e.to_string(),
            "etcdserver: duplicate key given in txn request"
        );
        // Also in the branch not taken.
        let request = TxnRequest {
            failure: success,
            ..TxnRequest::default()
        };
        assert_eq!(txn(&mut s, request).unwrap_err(), MvccError::DuplicateKey);
    }
    assert_eq!(s.current_revision(), 2);
    let allowed = [
        vec![nested(vec![op_put("k", "1")], vec![op_put("k", "2")])],
        vec![op_del("a", "c"), op_del("b", "d")],
        vec![op_put("k", "1"), op_del("l", "m")],
    ];
    for success in allowed {
        let request = TxnRequest {
            success,
            ..TxnRequest::default()
        };
        txn(&mut s, request).unwrap();
    }
}

#[test]
fn a_failing_operation_fails_the_whole_txn() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "0");
    let before = s.clone();
    let ignore_missing = RequestOp::Put(PutRequest {
        ignore_value: true,
        ..PutRequest::new(b("missing"), Bytes::new())
    });
    let bad_lease = RequestOp::Put(PutRequest {
        lease: 7,
        ..PutRequest::new(b("y"), b("1"))
    });
    let future_read = RequestOp::Range(RangeRequest {
        revision: 3,
        ..RangeRequest::key(b("a"))
    });
    for (bad, expected) in [
        (ignore_missing, MvccError::KeyNotFound),
        (bad_lease, MvccError::LeaseNotFound),
        (future_read, MvccError::FutureRevision),
    ] {
        let request = TxnRequest {
            success: vec![op_put("x", "1"), op_del("a", ""), bad],
            ..TxnRequest::default()
        };
        assert_eq!(txn(&mut s, request).unwrap_err(), expected);
        assert_eq!(s, before);
    }
}

#[test]
fn an_aborted_writer_leaves_the_store_as_it_was() {
    let mut s = MvccStore::new();
    put_lease(&mut s, "a", "1", 1);
    put(&mut s, "b", "1");
    let before = s.clone();
    let mut writer = Writer::new(&mut s);
    writer.put(&b("a"), b("2"), 2);
    writer.delete(&b("b"));
    writer.put(&b("c"), b("3"), 1);
    writer.abort();
    assert_eq!(s, before);
}

#[test]
fn txn_shape_checks() {
    let mut s = MvccStore::new();
    let too_many = TxnRequest {
        success: vec![op_get("a"), op_get("b"), op_get("c")],
        ..TxnRequest::default()
    };
    assert_eq!(validate_txn(&too_many, 2), Err(MvccError::TooManyOps));
    assert_eq!(validate_txn(&too_many, 3), Ok(()));
    assert_eq!(
        MvccError::TooManyOps.to_string(),
        "etcdserver: too many operations in txn request"
    );
    let empty_key = TxnRequest {
        compare: vec![cmp("", CompareTarget::Version(0), CompareResult::Equal)],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut s, empty_key).unwrap_err(), MvccError::EmptyKey);
    let nested_flags = TxnRequest {
        failure: vec![RequestOp::Txn(TxnRequest {
            success: vec![RequestOp::Put(PutRequest {
                ignore_value: true,
                ..PutRequest::new(b("k"), b("v"))
            })],
            ..TxnRequest::default()
        })],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(&mut s, nested_flags).unwrap_err(),
        MvccError::ValueProvided
    );
}

#[test]
fn compaction_keeps_the_newest_version_at_or_below_and_drops_ended_generations() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "1"); // 2
    put(&mut s, "a", "2"); // 3
    put(&mut s, "b", "1"); // 4
    del(&mut s, "b"); // 5
    put(&mut s, "a", "3"); // 6
    put(&mut s, "c", "1"); // 7
    assert_eq!(s.compact(5), Ok(7));
    assert_eq!(s.compacted_revision(), 5);
    let a: Vec<i64> = s.keys[&b("a")].records().iter().map(|r| r.main).collect();
    assert_eq!(a, [3, 6]);
    assert!(
        !s.keys.contains_key(&b("b")[..]),
        "b's generation ended at 5"
    );
    assert_eq!(s.size_bytes(), recomputed_size(&s));
    assert_eq!(&get_at(&s, "a", 5).unwrap().unwrap().value[..], b"2");
    assert_eq!(get_at(&s, "b", 5).unwrap(), None);
    assert!(matches!(
        get_at(&s, "a", 4),
        Err(MvccError::Compacted {
            compact_revision: 5
        })
    ));
    assert_eq!(
        s.compact(5),
        Err(MvccError::Compacted {
            compact_revision: 5
        })
    );
    assert_eq!(s.compact(8), Err(MvccError::FutureRevision));
    // A put after compaction continues a kept generation.
    put(&mut s, "a", "4");
    assert_eq!(get(&s, "a").unwrap().version, 4);
    assert_eq!(get(&s, "a").unwrap().create_revision, 2);
    // Compacting at the current revision is allowed.
    assert!(s.compact(8).is_ok());
    assert_eq!(s.range(&all()).unwrap().count, 2);
}

#[test]
fn events_since_replays_what_the_writes_returned() {
    let mut s = MvccStore::new();
    let mut returned = Vec::new();
    returned.extend(put_lease(&mut s, "a", "1", 1).events);
    returned.extend(
        s.put(&PutRequest::new(b("b"), b("1")), &no_lease)
            .unwrap()
            .events,
    );
    returned.extend(
        txn(
            &mut s,
            TxnRequest {
                success: vec![op_put("a", "2"), op_del("b", "")],
                ..TxnRequest::default()
            },
        )
        .unwrap()
        .events,
    );
    returned.extend(del(&mut s, "a").events);
    returned.extend(
        s.put(&PutRequest::new(b("a"), b("3")), &no_lease)
            .unwrap()
            .events,
    );
    assert_eq!(s.events_since(0, b"\0", b"\0").unwrap(), returned);
    assert_eq!(s.events_since(1, b"\0", b"\0").unwrap(), returned);
    let from_4: Vec<Event> = returned
        .iter()
        .filter(|e| e.kv.mod_revision >= 4 && &e.kv.key[..] == b"a")
        .cloned()
        .collect();
    assert_eq!(s.events_since(4, b"a", b"").unwrap(), from_4);
    let put_a2 = &returned[2];
    assert_eq!(put_a2.kind, EventKind::Put);
    assert_eq!(put_a2.prev_kv.as_ref().unwrap().value, b("1"));
    let delete_a = &returned[4];
    assert_eq!(delete_a.prev_kv.as_ref().unwrap().value, b("2"));
    assert_eq!(returned[5].prev_kv, None, "a new generation has no prev_kv");
    s.compact(4).unwrap();
    assert_eq!(
        s.events_since(4, b"a", b""),
        Err(MvccError::Compacted {
            compact_revision: 4
        })
    );
    assert_eq!(s.events_since(5, b"\0", b"\0").unwrap(), returned[4..]);
}

#[test]
fn size_counts_every_stored_version() {
    let mut s = MvccStore::new();
    put(&mut s, "ab", "xyz");
    put(&mut s, "ab", "q");
    del(&mut s, "ab");
    let expected = (2 + 3 + 64) + (2 + 1 + 64) + (2 + 64);
    assert_eq!(s.size_bytes(), expected);
    assert_eq!(VERSION_OVERHEAD_BYTES, 64);
    s.compact(4).unwrap();
    assert_eq!(s.size_bytes(), 0);
}

#[test]
fn stored_versions_come_in_revision_order() {
    let mut s = MvccStore::new();
    put(&mut s, "b", "1"); // 2
    let t = TxnRequest {
        success: vec![op_put("c", "1"), op_put("a", "1")],
        ..TxnRequest::default()
    };
    txn(&mut s, t).unwrap(); // 3.0 c, 3.1 a
    del(&mut s, "b"); // 4
    let order: Vec<(i64, i64, bool, String)> = s
        .stored_versions(4)
        .into_iter()
        .map(|v| (v.main, v.sub, v.tombstone, keys(&[v.kv])[0].clone()))
        .collect();
    assert_eq!(
        order,
        [
            (2, 0, false, "b".into()),
            (3, 0, false, "c".into()),
            (3, 1, false, "a".into()),
            (4, 0, true, "b".into())
        ]
    );
    assert_eq!(s.stored_versions(2).len(), 1);
}

#[test]
fn a_snapshot_view_is_send_and_static() {
    fn send_static<T: Send + 'static>(_: &T) {}
    send_static(&MvccStore::new().snapshot());
    send_static(&MvccStore::new());
}
