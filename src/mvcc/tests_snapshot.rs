//! Snapshots: round trips (also written on another thread while the store
//! goes on), determinism, and restore of damaged or forged input: every
//! truncation and every single-bit flip of a snapshot, frames with valid
//! checksums but broken rules, lengths that claim too much.

use super::format::{FORMAT_VERSION, MAGIC, TAG_END, TAG_HEADER, TAG_VERSION, frame_crc};
use super::tests::{b, no_lease};
use super::*;
use bytes::Bytes;
use proptest::prelude::*;

fn lease_1(id: i64) -> bool {
    id == 1
}

/// A store with live keys, older versions, a tombstone, a lease and a
/// compaction.
fn sample() -> MvccStore {
    let mut s = MvccStore::new();
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "x")] {
        s.put(&PutRequest::new(b(k), b(v)), &no_lease).unwrap();
    }
    s.delete_range(&DeleteRangeRequest::key(b("b"))).unwrap();
    s.compact(3).unwrap();
    let leased = PutRequest {
        lease: 1,
        ..PutRequest::new(b("d"), b("leased"))
    };
    s.put(&leased, &lease_1).unwrap();
    s.put(&PutRequest::new(b("b"), b("again")), &no_lease)
        .unwrap();
    s
}

fn bytes_of(s: &MvccStore) -> Vec<u8> {
    let mut out = Vec::new();
    s.snapshot().write_to(&mut out).unwrap();
    out
}

#[test]
fn round_trip_gives_an_equal_store() {
    for s in [MvccStore::new(), sample()] {
        let bytes = bytes_of(&s);
        let restored = MvccStore::restore(&mut &bytes[..]).unwrap();
        assert_eq!(restored, s);
        assert_eq!(restored.size_bytes(), s.size_bytes());
        assert_eq!(restored.leased_keys(), s.leased_keys());
        assert_eq!(bytes_of(&restored), bytes, "same store, same bytes");
    }
}

#[test]
fn a_view_is_written_on_another_thread_while_the_store_goes_on() {
    let mut s = sample();
    let frozen = s.clone();
    let view = s.snapshot();
    let writer = std::thread::spawn(move || {
        let mut out = Vec::new();
        view.write_to(&mut out).map(|_| out)
    });
    s.put(&PutRequest::new(b("a"), b("later")), &no_lease)
        .unwrap();
    s.compact(s.current_revision()).unwrap();
    let bytes = writer.join().unwrap().unwrap();
    assert_eq!(MvccStore::restore(&mut &bytes[..]).unwrap(), frozen);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = bytes_of(&sample());
    for len in 0..bytes.len() {
        let result = MvccStore::restore(&mut &bytes[..len]);
        assert!(result.is_err(), "truncated to {len} restored");
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    let bytes = bytes_of(&sample());
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let result = MvccStore::restore(&mut &damaged[..]);
        assert!(result.is_err(), "bit {bit} flipped restored");
    }
}

#[test]
fn wrong_magic_version_and_trailing_data() {
    let bytes = bytes_of(&sample());
    let mut other = bytes.clone();
    other[0] = b'X';
    assert!(matches!(
        MvccStore::restore(&mut &other[..]),
        Err(SnapshotError::BadMagic { .. })
    ));
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        MvccStore::restore(&mut &newer[..]),
        Err(SnapshotError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    let e = MvccStore::restore(&mut &longer[..]).unwrap_err();
    assert!(
        matches!(e, SnapshotError::TrailingData { offset } if offset == bytes.len() as u64),
        "{e}"
    );
    let e = MvccStore::restore(&mut &bytes[..20]).unwrap_err();
    assert!(
        matches!(e, SnapshotError::Truncated { offset: 20, .. }),
        "{e}"
    );
}

/// Builds snapshots frame by frame, with valid checksums.
struct Forge(Vec<u8>);

impl Forge {
    fn new(current: i64, compacted: i64) -> Forge {
        let mut f = Forge(MAGIC.to_vec());
        f.0.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let mut body = current.to_le_bytes().to_vec();
        body.extend_from_slice(&compacted.to_le_bytes());
        f.frame(TAG_HEADER, &body)
    }

    fn frame(mut self, tag: u8, body: &[u8]) -> Forge {
        let len = body.len() as u32;
        self.0.push(tag);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0
            .extend_from_slice(&frame_crc(tag, len, &[body]).to_le_bytes());
        self.0.extend_from_slice(body);
        self
    }

    /// A version record: (key, main, sub, tombstone, create, version).
    fn version(
        self,
        key: &str,
        main: i64,
        sub: i64,
        tombstone: bool,
        create: i64,
        version: i64,
    ) -> Forge {
        let mut body = (key.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(key.as_bytes());
        for v in [main, sub] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.push(u8::from(tombstone));
        for v in [create, version, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let value: &[u8] = if tombstone { b"" } else { b"v" };
        body.extend_from_slice(&(value.len() as u32).to_le_bytes());
        body.extend_from_slice(value);
        self.frame(TAG_VERSION, &body)
    }

    fn end(self, records: u64, keys: u64) -> Vec<u8> {
        let mut body = records.to_le_bytes().to_vec();
        body.extend_from_slice(&keys.to_le_bytes());
        self.frame(TAG_END, &body).0
    }
}

fn invalid(bytes: Vec<u8>) -> String {
    match MvccStore::restore(&mut &bytes[..]) {
        Err(SnapshotError::Invalid { reason, .. }) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn forged_snapshots_that_break_the_rules_are_refused() {
    // The reference: a=put@2, a=put@3, b=put@4, b=tombstone@5.
    let good = Forge::new(5, 0)
        .version("a", 2, 0, false, 2, 1)
        .version("a", 3, 0, false, 2, 2)
        .version("b", 4, 0, false, 4, 1)
        .version("b", 5, 0, true, 0, 0)
        .end(4, 2);
    let s = MvccStore::restore(&mut &good[..]).unwrap();
    assert_eq!(s.current_revision(), 5);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Forge::new(3, 0)
                .version("b", 2, 0, false, 2, 1)
                .version("a", 3, 0, false, 3, 1)
                .end(2, 2),
            "increasing",
        ),
        (
            Forge::new(3, 0)
                .version("a", 2, 0, false, 2, 1)
                .version("a", 3, 0, false, 2, 3)
                .end(2, 1),
            "does not follow",
        ),
        (
            Forge::new(2, 0).version("a", 2, 0, true, 0, 0).end(1, 1),
            "does not exist",
        ),
        (
            Forge::new(4, 0)
                .version("a", 2, 0, false, 2, 1)
                .version("b", 4, 0, false, 4, 1)
                .end(2, 2),
            "was due",
        ),
        (
            Forge::new(3, 0).version("a", 2, 0, false, 2, 1).end(1, 1),
            "current revision",
        ),
        (
            Forge::new(2, 0).version("a", 2, 0, false, 2, 1).end(2, 1),
            "end frame counts",
        ),
        (
            Forge::new(4, 3)
                .version("a", 2, 0, false, 2, 1)
                .version("a", 3, 0, false, 2, 2)
                .version("a", 4, 0, false, 2, 3)
                .end(3, 1),
            "compacted",
        ),
        (
            Forge::new(2, 0).version("a", 3, 0, false, 3, 1).end(1, 1),
            "outside",
        ),
        (Forge::new(1, 2).end(0, 0), "revisions out of order"),
        (
            Forge::new(1, 0).frame(7, b"").end(0, 0),
            "unknown frame tag",
        ),
        (
            Forge::new(1, 0).frame(TAG_END, &[0; 15]).0,
            "ends inside a field",
        ),
        (
            Forge::new(1, 0).frame(TAG_END, &[0; 17]).0,
            "after the last field",
        ),
    ];
    for (bytes, expected) in cases {
        let reason = invalid(bytes);
        assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
    }
}

#[test]
fn a_length_claiming_too_much_is_refused_before_reading() {
    let mut bytes = Forge::new(1, 0).0;
    bytes.push(TAG_VERSION);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let reason = invalid(bytes);
    assert!(reason.contains("exceeds the limit"), "{reason}");
    // Under the limit but beyond the input: truncated, without having
    // allocated the claim.
    let mut bytes = Forge::new(1, 0).0;
    bytes.push(TAG_VERSION);
    bytes.extend_from_slice(&(60u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(
        MvccStore::restore(&mut &bytes[..]),
        Err(SnapshotError::Truncated { .. })
    ));
}

/// Random stores: puts (some leased), deletions, compactions.
fn random_store(ops: &[(u8, u8, u8)]) -> MvccStore {
    let mut s = MvccStore::new();
    for &(kind, k, v) in ops {
        let key = Bytes::from(vec![b'a' + k % 5]);
        match kind % 6 {
            0..=2 => {
                let request = PutRequest {
                    lease: i64::from(v % 2),
                    ..PutRequest::new(key, vec![v; usize::from(v % 7)])
                };
                s.put(&request, &lease_1).unwrap();
            }
            3 | 4 => {
                s.delete_range(&DeleteRangeRequest::key(key)).unwrap();
            }
            _ => {
                let rev = s.current_revision() - i64::from(v % 3);
                let _ = s.compact(rev);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_stores_round_trip_and_damage_is_refused(
        ops in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..40),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let s = random_store(&ops);
        let bytes = bytes_of(&s);
        let restored = MvccStore::restore(&mut &bytes[..]).unwrap();
        prop_assert_eq!(&restored, &s);
        let cut = cut.index(bytes.len());
        prop_assert!(MvccStore::restore(&mut &bytes[..cut]).is_err());
        let bit = flip.index(bytes.len() * 8);
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(MvccStore::restore(&mut &damaged[..]).is_err());
    }
}
