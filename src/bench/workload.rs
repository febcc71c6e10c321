//! The operations a bench client issues: which key, read or write.
//!
//! Owns: [`OpGenerator`] (a seeded, per-client stream of [`Op`]s), the key
//! format and the value bytes.
//! Guarantees: deterministic for a seed and client index; keys are
//! uniform over the key space, printable ASCII (no escaping needed in a
//! URL or JSON), and the same across targets, so ringraft and etcd see the
//! same workload.
//! May not touch: how an operation is sent (the drivers do that).

use super::options::Workload;

/// What a client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Write the workload's value to the key.
    Write,
    /// Read the key.
    Read,
}

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Read or write.
    pub kind: OpKind,
    /// Index of the key in the key space.
    pub key: u64,
}

/// The bytes of key number `index`: `bench-` and its decimal digits,
/// zero-padded to ten.
pub fn key_bytes(index: u64) -> Vec<u8> {
    match key_array(index) {
        Some(key) => key.to_vec(),
        None => format!("bench-{index:010}").into_bytes(),
    }
}

/// [`key_bytes`] without an allocation, for indexes of at most ten digits
/// (every key space the bench takes in practice); `None` past that. The
/// embedded client builds a key per operation on the path it measures.
pub fn key_array(index: u64) -> Option<[u8; 16]> {
    const PREFIX: &[u8; 6] = b"bench-";
    if index >= 10_000_000_000 {
        return None;
    }
    let mut key = [b'0'; 16];
    key[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut rest = index;
    for digit in key[PREFIX.len()..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    Some(key)
}

/// A value of `size` bytes (a repeating printable pattern).
pub fn value_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// SplitMix64: small, fast, good enough to spread keys.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One client's stream of operations.
#[derive(Debug, Clone)]
pub struct OpGenerator {
    rng: SplitMix64,
    key_space: u64,
    read_ratio: f64,
}

impl OpGenerator {
    /// The stream of client `client` under `seed`.
    pub fn new(workload: &Workload, seed: u64, client: usize) -> OpGenerator {
        let mut rng = SplitMix64(seed ^ (client as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        rng.next();
        OpGenerator {
            rng,
            key_space: workload.key_space.max(1),
            read_ratio: workload.read_ratio,
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let kind = if self.read_ratio > 0.0 && self.rng.unit() < self.read_ratio {
            OpKind::Read
        } else {
            OpKind::Write
        };
        // Multiply-shift: uniform enough for any key space below 2^32,
        // and no modulo bias worth measuring above.
        let key = ((u128::from(self.rng.next()) * u128::from(self.key_space)) >> 64) as u64;
        Op { kind, key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::options::ReadConsistency;

    fn workload(read_ratio: f64, key_space: u64) -> Workload {
        Workload {
            value_size: 8,
            key_space,
            read_ratio,
            read_consistency: ReadConsistency::Linearizable,
        }
    }

    #[test]
    fn keys_stay_in_the_key_space_and_reads_follow_the_ratio() {
        let mut ops = OpGenerator::new(&workload(0.25, 10), 7, 3);
        let mut reads = 0;
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let op = ops.next_op();
            assert!(op.key < 10);
            seen[op.key as usize] = true;
            if op.kind == OpKind::Read {
                reads += 1;
            }
        }
        assert!(seen.iter().all(|&s| s), "every key drawn");
        assert!((2_200..2_800).contains(&reads), "{reads} reads of 10000");
        let mut writes_only = OpGenerator::new(&workload(0.0, 1), 7, 0);
        assert!((0..1000).all(|_| writes_only.next_op()
            == Op {
                kind: OpKind::Write,
                key: 0
            }));
    }

    #[test]
    fn streams_are_deterministic_and_differ_between_clients() {
        let w = workload(0.5, 1 << 40);
        let a: Vec<Op> = {
            let mut g = OpGenerator::new(&w, 1, 0);
            (0..100).map(|_| g.next_op()).collect()
        };
        let b: Vec<Op> = {
            let mut g = OpGenerator::new(&w, 1, 0);
            (0..100).map(|_| g.next_op()).collect()
        };
        let c: Vec<Op> = {
            let mut g = OpGenerator::new(&w, 1, 1);
            (0..100).map(|_| g.next_op()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn keys_and_values_have_their_format() {
        assert_eq!(key_bytes(42), b"bench-0000000042");
        assert_eq!(key_bytes(0), b"bench-0000000000");
        assert_eq!(key_bytes(9_999_999_999), b"bench-9999999999");
        assert_eq!(key_bytes(10_000_000_000), b"bench-10000000000");
        assert_eq!(key_array(10_000_000_000), None);
        for index in [1, 7, 10, 99, 123_456_789, 4_294_967_296] {
            assert_eq!(
                key_array(index).map(|k| k.to_vec()),
                Some(format!("bench-{index:010}").into_bytes())
            );
        }
        assert_eq!(value_bytes(3), b"abc");
        assert_eq!(value_bytes(0), b"");
        assert_eq!(value_bytes(30).len(), 30);
    }
}
