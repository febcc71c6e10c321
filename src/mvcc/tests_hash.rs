//! Hashes (`hash.rs`): the documented byte layout, that every field of a
//! version and every part of the state counts, that equal histories hash
//! equal (also restored from a snapshot), that a hash at an older revision
//! is the hash of the store as it was then (compacted the same), and the
//! errors for future and compacted revisions.

use super::tests::{b, no_lease};
use super::*;
use bytes::Bytes;
use proptest::prelude::*;

fn any_lease(_: i64) -> bool {
    true
}

fn put(s: &mut MvccStore, k: &str, v: &str) {
    s.put(&PutRequest::new(b(k), b(v)), &no_lease).unwrap();
}

fn put_lease(s: &mut MvccStore, k: &str, v: &str, lease: i64) {
    let request = PutRequest {
        lease,
        ..PutRequest::new(b(k), b(v))
    };
    s.put(&request, &any_lease).unwrap();
}

fn del(s: &mut MvccStore, k: &str) {
    s.delete_range(&DeleteRangeRequest::key(b(k))).unwrap();
}

fn hash(s: &MvccStore) -> u32 {
    s.hash_kv(0).unwrap().hash
}

/// Puts, a two-key txn (sub-revisions 0 and 1), a tombstone, a lease.
fn sample() -> MvccStore {
    let mut s = MvccStore::new();
    put(&mut s, "b", "1"); // 2
    let txn = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new(b("c"), b("x"))),
            RequestOp::Put(PutRequest::new(b("a"), b("y"))),
        ],
        ..TxnRequest::default()
    };
    s.txn(&txn, &no_lease).unwrap(); // 3.0 c, 3.1 a
    put(&mut s, "b", "2"); // 4
    del(&mut s, "c"); // 5
    put_lease(&mut s, "d", "leased", 7); // 6
    s
}

/// The bytes the module documentation specifies for HashKV at `revision`,
/// built from the stored versions ([`MvccStore::stored_versions`], not
/// the hash's own walk), sorted by key then revision.
fn documented_bytes(s: &MvccStore, revision: i64) -> Vec<u8> {
    let mut versions = s.stored_versions(revision);
    versions.sort_by(|x, y| (&x.kv.key, x.main, x.sub).cmp(&(&y.kv.key, y.main, y.sub)));
    let mut out = Vec::new();
    for v in versions {
        out.extend_from_slice(&(v.kv.key.len() as u64).to_le_bytes());
        out.extend_from_slice(&v.kv.key);
        out.extend_from_slice(&v.main.to_le_bytes());
        out.extend_from_slice(&v.sub.to_le_bytes());
        out.push(u8::from(v.tombstone));
        out.extend_from_slice(&v.kv.create_revision.to_le_bytes());
        out.extend_from_slice(&v.kv.version.to_le_bytes());
        out.extend_from_slice(&v.kv.lease.to_le_bytes());
        out.extend_from_slice(&(v.kv.value.len() as u64).to_le_bytes());
        out.extend_from_slice(&v.kv.value);
    }
    out
}

#[test]
fn hashes_are_the_crc32c_of_the_documented_bytes() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283, "CRC-32C");
    let s = sample();
    for revision in 1..=s.current_revision() {
        let expected = crc32c::crc32c(&documented_bytes(&s, revision));
        assert_eq!(s.hash_kv(revision).unwrap().hash, expected, "at {revision}");
    }
    assert_eq!(MvccStore::new().hash_kv(0).unwrap().hash, 0, "empty");

    let mut state = documented_bytes(&s, s.current_revision());
    state.extend_from_slice(&6i64.to_le_bytes());
    state.extend_from_slice(&0i64.to_le_bytes());
    state.extend_from_slice(&2u64.to_le_bytes());
    for (id, ttl) in [(-3i64, 5i64), (7, 60)] {
        state.extend_from_slice(&id.to_le_bytes());
        state.extend_from_slice(&ttl.to_le_bytes());
    }
    assert_eq!(
        s.hash_state(&[(7, 60), (-3, 5)]),
        crc32c::crc32c(&state),
        "leases by id, whatever order they come in"
    );
}

#[test]
fn equal_histories_hash_equal() {
    let (x, y) = (sample(), sample());
    assert_eq!(x.hash_kv(0), y.hash_kv(0));
    assert_ne!(hash(&x), 0);
    let leases = [(7, 60)];
    assert_eq!(x.hash_state(&leases), y.hash_state(&leases));
    let answer = x.hash_kv(0).unwrap();
    assert_eq!(
        (
            answer.revision,
            answer.current_revision,
            answer.compact_revision
        ),
        (6, 6, 0)
    );
}

#[test]
fn a_changed_value_an_extra_version_a_tombstone_or_a_lease_changes_the_hash() {
    let base = sample();
    let mut changed_value = MvccStore::new();
    let mut extra_version = sample();
    let mut tombstone = sample();
    let mut other_lease = MvccStore::new();
    for s in [&mut changed_value, &mut other_lease] {
        put(s, "b", "1");
        let txn = TxnRequest {
            success: vec![
                RequestOp::Put(PutRequest::new(b("c"), b("x"))),
                RequestOp::Put(PutRequest::new(b("a"), b("y"))),
            ],
            ..TxnRequest::default()
        };
        s.txn(&txn, &no_lease).unwrap();
    }
    put(&mut changed_value, "b", "3");
    del(&mut changed_value, "c");
    put_lease(&mut changed_value, "d", "leased", 7);
    put(&mut other_lease, "b", "2");
    del(&mut other_lease, "c");
    put_lease(&mut other_lease, "d", "leased", 8);
    put(&mut extra_version, "a", "y");
    del(&mut tombstone, "a");
    for (name, s) in [
        ("a changed value", &changed_value),
        ("an extra version", &extra_version),
        ("a tombstone", &tombstone),
        ("another lease", &other_lease),
    ] {
        assert_ne!(hash(s), hash(&base), "{name}");
        assert_ne!(s.hash_state(&[]), base.hash_state(&[]), "{name}");
    }
    // The same revisions and versions: only the value, or only the lease.
    assert_eq!(changed_value.current_revision(), base.current_revision());
    assert_eq!(other_lease.current_revision(), base.current_revision());
}

/// A named change to one stored version.
type FieldChange = (&'static str, fn(&mut super::history::Record));

#[test]
fn every_field_of_a_version_counts() {
    let base = sample();
    let changes: [FieldChange; 7] = [
        ("main", |r| r.main += 1),
        ("sub", |r| r.sub += 1),
        ("tombstone", |r| r.tombstone = !r.tombstone),
        ("create revision", |r| r.create_revision += 1),
        ("version", |r| r.version += 1),
        ("lease", |r| r.lease += 1),
        ("value", |r| r.value = Bytes::from_static(b"other")),
    ];
    for (field, change) in changes {
        let mut s = base.clone();
        let history = s.keys.get_mut(&b("b")).unwrap();
        change(&mut history.records_mut()[1]);
        assert_ne!(hash(&s), hash(&base), "{field}");
    }
    // The key itself: the same versions under another key.
    let mut renamed = base.clone();
    let history = renamed.keys.remove(&b("b")).unwrap();
    renamed.keys.insert(b("bb"), history);
    assert_ne!(hash(&renamed), hash(&base), "key");
}

#[test]
fn the_state_hash_counts_revisions_compaction_and_leases() {
    let mut s = MvccStore::new();
    put(&mut s, "a", "1"); // 2
    put(&mut s, "b", "1"); // 3
    let before = s.hash_state(&[(1, 10)]);
    let kv_before = s.hash_kv(0).unwrap().hash;
    // Nothing of the history is forgotten at 2 (each key has one version).
    s.compact(2).unwrap();
    assert_eq!(s.hash_kv(0).unwrap().hash, kv_before, "same versions");
    assert_eq!(s.hash_kv(0).unwrap().compact_revision, 2);
    let compacted = s.hash_state(&[(1, 10)]);
    assert_ne!(compacted, before, "the compacted revision counts");
    assert_ne!(s.hash_state(&[(1, 11)]), compacted, "a TTL");
    assert_ne!(s.hash_state(&[(2, 10)]), compacted, "an id");
    assert_ne!(s.hash_state(&[]), compacted, "a lease less");
    assert_ne!(s.hash_state(&[(1, 10), (2, 10)]), compacted, "a lease more");
    // A deletion of the only key of a revision, compacted away: the
    // versions are those of a store that never wrote it, the revision not.
    let mut x = MvccStore::new();
    let mut y = MvccStore::new();
    put(&mut x, "a", "1");
    put(&mut x, "z", "1");
    del(&mut x, "z");
    x.compact(4).unwrap();
    put(&mut y, "a", "1");
    y.compact(2).unwrap();
    assert_eq!(hash(&x), hash(&y));
    assert_ne!(x.hash_state(&[]), y.hash_state(&[]), "the current revision");
}

#[test]
fn future_and_compacted_revisions_are_refused() {
    let mut s = sample();
    assert_eq!(s.hash_kv(7), Err(MvccError::FutureRevision));
    assert!(s.hash_kv(1).is_ok(), "never compacted: every revision");
    assert_eq!(s.hash_kv(1).unwrap().hash, 0, "nothing at revision 1");
    s.compact(4).unwrap();
    for revision in [1, 3, 4] {
        assert_eq!(
            s.hash_kv(revision),
            Err(MvccError::Compacted {
                compact_revision: 4
            }),
            "at {revision}"
        );
    }
    assert_eq!(s.hash_kv(5).unwrap().revision, 5);
    s.compact(6).unwrap();
    assert_eq!(
        s.hash_kv(0).unwrap().revision,
        6,
        "0 is the current revision, even when compacted at it"
    );
    assert!(s.hash_kv(6).is_err());
}

#[test]
fn a_store_restored_from_its_snapshot_hashes_the_same() {
    let mut s = sample();
    s.compact(3).unwrap();
    put(&mut s, "a", "later");
    let mut bytes = Vec::new();
    s.snapshot().write_to(&mut bytes).unwrap();
    let restored = MvccStore::restore(&mut &bytes[..]).unwrap();
    for revision in [0, 4, 5, 6, 7] {
        assert_eq!(
            restored.hash_kv(revision),
            s.hash_kv(revision),
            "{revision}"
        );
    }
    let leases = [(7, 60)];
    assert_eq!(restored.hash_state(&leases), s.hash_state(&leases));
}

/// One write of the random histories: a put (with a lease or none) or a
/// deletion of one key; or a compaction `back` revisions behind the
/// current one.
#[derive(Debug, Clone)]
enum Step {
    Put { key: u8, value: u8, lease: i64 },
    Delete { key: u8 },
    Compact { back: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..5u8, 0..3u8, 0..3i64).prop_map(|(key, value, lease)| Step::Put { key, value, lease }),
        2 => (0..5u8).prop_map(|key| Step::Delete { key }),
        1 => (0..6i64).prop_map(|back| Step::Compact { back }),
    ]
}

/// Applies a write step; compactions are the caller's.
fn write(s: &mut MvccStore, step: &Step) {
    match *step {
        Step::Put { key, value, lease } => {
            let request = PutRequest {
                lease,
                ..PutRequest::new(vec![b'a' + key], vec![value])
            };
            s.put(&request, &any_lease).unwrap();
        }
        Step::Delete { key } => {
            s.delete_range(&DeleteRangeRequest::key(vec![b'a' + key]))
                .unwrap();
        }
        Step::Compact { .. } => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every revision the store can still hash equals the hash of a store
    /// that applied only the writes up to it and was compacted at the same
    /// revision; a restored store hashes as the original at every revision.
    #[test]
    fn a_hash_at_an_older_revision_is_the_hash_of_the_store_as_it_was(
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let mut s = MvccStore::new();
        // The store's revision after each write step.
        let mut writes: Vec<(Step, i64)> = Vec::new();
        for step in &steps {
            if let Step::Compact { back } = *step {
                let _ = s.compact(s.current_revision() - back);
            } else {
                write(&mut s, step);
                writes.push((step.clone(), s.current_revision()));
            }
        }
        let mut bytes = Vec::new();
        s.snapshot().write_to(&mut bytes).unwrap();
        let restored = MvccStore::restore(&mut &bytes[..]).unwrap();
        prop_assert_eq!(restored.hash_state(&[(1, 5)]), s.hash_state(&[(1, 5)]));
        for revision in 1..=s.current_revision() {
            let answer = s.hash_kv(revision);
            prop_assert_eq!(&restored.hash_kv(revision), &answer);
            if s.compacted_revision() > 0 && revision <= s.compacted_revision() {
                prop_assert!(answer.is_err());
                continue;
            }
            let mut then = MvccStore::new();
            for (step, _) in writes.iter().filter(|(_, after)| *after <= revision) {
                write(&mut then, step);
            }
            prop_assert_eq!(then.current_revision(), revision);
            if s.compacted_revision() > 0 {
                then.compact(s.compacted_revision()).unwrap();
            }
            let answer = answer.unwrap();
            prop_assert_eq!(answer.hash, then.hash_kv(0).unwrap().hash, "at {}", revision);
            prop_assert_eq!(answer.hash, crc32c::crc32c(&documented_bytes(&s, revision)));
        }
    }
}
