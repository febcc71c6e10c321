//! The one source of randomness of a simulated run.
//!
//! Owns: [`SimRng`], a thin layer of helpers over the raft core's own
//! SplitMix64 generator (`ringraft::raft::rng::Rng`), so that a seed fixes
//! every choice the simulation makes: scheduling, the network, the disk,
//! the clients, the faults, and (through the seeds it derives) the raft
//! cores' election timeouts.
//! Guarantees: the same seed gives the same sequence on every machine and
//! every run; nothing here reads the clock or the OS's randomness.
//! May not touch: anything but its own state.

use ringraft::raft::rng::Rng;

/// A seeded generator with the helpers the simulation needs.
#[derive(Debug, Clone)]
pub struct SimRng {
    inner: Rng,
}

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        // Mixed once so that neighbouring seeds start far apart.
        let mut inner = Rng::new(seed ^ 0x5eed_5eed_5eed_5eed);
        inner.next_u64();
        SimRng { inner }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A number in `[0, bound)` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.inner.below(bound)
    }

    /// A number in `[low, high]`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A uniformly chosen element of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.below(items.len() as u64) as usize])
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
