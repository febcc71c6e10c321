//! Latency recording shared by a run's clients.
//!
//! Owns: [`Latencies`], HDR histograms of operation latency in
//! microseconds, sharded so that clients rarely contend, with an interval
//! view (since the last [`Latencies::take_interval`], for the progress
//! line) and a total.
//! Guarantees: every recorded latency lands in exactly one interval and,
//! once taken, in the total; values beyond the histogram's range are
//! clamped to its maximum (one hour), never dropped; a value below 1 µs
//! counts as 1 µs.
//! May not touch: what an operation is or when it counts (the runner
//! decides).

use super::error::BenchError;
use hdrhistogram::Histogram;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Largest latency the histograms hold, in microseconds (one hour).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits of the histograms.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Most shards (clients share them round-robin).
const MAX_SHARDS: usize = 32;

/// An empty latency histogram with the bench's bounds.
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

/// Microseconds of `duration`, at least 1, at most [`MAX_LATENCY_US`].
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

/// Adds `from` into `into` (equal bounds: never fails; a failure would
/// only lose the merge, never panic).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for value in from.iter_recorded() {
            into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }
}

#[derive(Debug)]
struct Shard {
    interval: Histogram<u64>,
}

/// Sharded latency histograms of one run.
#[derive(Debug)]
pub struct Latencies {
    /// An empty histogram to clone (creating one can fail, cloning not).
    empty: Histogram<u64>,
    shards: Vec<Mutex<Shard>>,
    total: Mutex<Histogram<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking client cannot leave a histogram half-updated in a way
    // that matters: take the data as it is.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Latencies {
    /// Histograms for `clients` clients.
    pub fn new(clients: usize) -> Result<Latencies, BenchError> {
        let empty = new_histogram()?;
        let shards = clients.clamp(1, MAX_SHARDS);
        Ok(Latencies {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        interval: empty.clone(),
                    })
                })
                .collect(),
            total: Mutex::new(empty.clone()),
            empty,
        })
    }

    /// Records one operation of client `client`.
    pub fn record(&self, client: usize, latency: Duration) {
        let shard = &self.shards[client % self.shards.len()];
        lock(shard).interval.saturating_record(micros(latency));
    }

    /// Latencies recorded since the last call; they move into the total.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut interval = self.empty.clone();
        for shard in &self.shards {
            let mut shard = lock(shard);
            merge(&mut interval, &shard.interval);
            shard.interval.reset();
        }
        merge(&mut lock(&self.total), &interval);
        interval
    }

    /// Every latency recorded (takes the current interval first).
    pub fn total(&self) -> Histogram<u64> {
        self.take_interval();
        lock(&self.total).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_reaches_the_total_once() {
        let latencies = Latencies::new(100).expect("histograms");
        for client in 0..100 {
            latencies.record(client, Duration::from_micros(10 + client as u64));
        }
        let first = latencies.take_interval();
        assert_eq!(first.len(), 100);
        latencies.record(3, Duration::from_nanos(10));
        latencies.record(4, Duration::from_secs(10_000));
        let total = latencies.total();
        assert_eq!(total.len(), 102);
        assert_eq!(total.min(), 1, "below 1 µs counts as 1 µs");
        assert!(total.max() >= MAX_LATENCY_US - MAX_LATENCY_US / 1000);
        assert_eq!(latencies.take_interval().len(), 0);
        assert_eq!(latencies.total().len(), 102);
    }

    #[test]
    fn micros_clamps() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_micros(1500)), 1500);
        assert_eq!(micros(Duration::MAX), MAX_LATENCY_US);
    }
}
