//! What a target must provide to be benchmarked.
//!
//! Owns: the [`Driver`] and [`Client`] traits and [`OpFailure`].
//! Guarantees (every implementation): a [`Client`] issues one operation at
//! a time (several clients made by [`Client::share`] multiplex one
//! connection) and answers `Ok` only when the target acknowledged it (a write
//! durable and applied, a read answered); a failure says why and leaves
//! the client usable for the next operation (it reconnects or finds the
//! leader again itself); [`Driver::counters`] never fails the run, it
//! answers what it could read.
//! May not touch: timing and counting (the runner's business).

use super::error::BenchError;
use super::scrape::Counters;
use super::workload::Op;
use std::future::Future;
use std::time::Duration;

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpFailure(pub String);

/// One client: one connection (or handle) to the target.
pub trait Client: Send + 'static {
    /// Performs `op` and waits for its acknowledgement.
    fn execute(&mut self, op: Op) -> impl Future<Output = Result<(), OpFailure>> + Send;

    /// Another client on this one's connection, whose operations run
    /// concurrently with this one's (`--pipeline`); `None` when the
    /// connection carries one operation at a time.
    fn share(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// How long an operation may take before this client itself answers
    /// it with a failure; `None` when it may wait for ever. The runner
    /// adds its own timeout ([`super::runner::OP_TIMEOUT`]) only where this
    /// does not already bound the wait: a second timer per operation costs
    /// the client CPU that the bench would count as the target's.
    fn gives_up_after(&self) -> Option<Duration> {
        None
    }
}

/// A target under load.
pub trait Driver: Send + Sync + 'static {
    /// Its clients.
    type Client: Client;

    /// Client number `index` (connected, ready for its first operation).
    fn client(&self, index: usize)
    -> impl Future<Output = Result<Self::Client, BenchError>> + Send;

    /// The target's counters now (fsyncs, entries, position); unknown
    /// fields are `None`.
    fn counters(&self) -> impl Future<Output = Counters> + Send;
}
