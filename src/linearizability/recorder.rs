//! Recording a history from concurrent test clients.
//!
//! Owns: a list of operations behind a mutex and a monotonic clock.
//! Guarantees: timestamps come from one [`Instant`], so they are comparable
//! across threads; the invocation time is read before the call is recorded
//! and the response time after the response is, so a recorded interval
//! always contains the real one (widening an interval can only make a
//! history more linearizable, never flag a correct system). Never panics,
//! even with a poisoned lock or a foreign token. May not touch: anything
//! but its own list.

use super::{CheckResult, Input, Operation, Output, check};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Distinguishes recorders, so a token is only honoured by its own.
static NEXT_RECORDER: AtomicU64 = AtomicU64::new(0);

/// An invoked operation awaiting its outcome; hand it back to
/// [`HistoryRecorder::complete`] or [`HistoryRecorder::complete_unknown`]
/// (it cannot be copied, so an operation completes once).
#[derive(Debug)]
#[must_use = "an invoked operation must be completed (or is recorded as unknown)"]
pub struct Token {
    recorder: u64,
    slot: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    client: u64,
    call: u64,
    input: Input,
    /// Response time and output, once completed.
    outcome: Option<(u64, Output)>,
}

/// A thread-safe recorder of a client history. Share it (`Arc`) between
/// client threads; each records [`HistoryRecorder::invoke`] just before
/// sending a request and completes the returned token just after the
/// response (or the failure) arrives.
#[derive(Debug)]
pub struct HistoryRecorder {
    id: u64,
    origin: Instant,
    entries: Mutex<Vec<Entry>>,
}

impl Default for HistoryRecorder {
    fn default() -> HistoryRecorder {
        HistoryRecorder::new()
    }
}

impl HistoryRecorder {
    /// An empty recorder; its clock starts now.
    pub fn new() -> HistoryRecorder {
        HistoryRecorder {
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
            origin: Instant::now(),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was created (saturating).
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `client` is about to issue `input`.
    pub fn invoke(&self, client: u64, input: Input) -> Token {
        let call = self.now();
        let mut entries = self.lock();
        entries.push(Entry {
            client,
            call,
            input,
            outcome: None,
        });
        Token {
            recorder: self.id,
            slot: entries.len() - 1,
        }
    }

    /// Records the response to the operation of `token`: [`Output::Ok`]
    /// for an acknowledged put or delete or a compare-and-swap that
    /// swapped, [`Output::Value`] for a get or for a compare-and-swap that
    /// did not swap (the value it found), [`Output::Unknown`] if the
    /// outcome is not known. A token from another recorder is ignored.
    pub fn complete(&self, token: Token, output: Output) {
        let mut entries = self.lock();
        let ret = self.now();
        if token.recorder != self.id {
            return;
        }
        if let Some(entry) = entries.get_mut(token.slot) {
            entry.outcome = Some((ret, output));
        }
    }

    /// Records that the operation of `token` ended without a known outcome
    /// (timeout, connection lost): a put, delete or compare-and-swap may
    /// or may not have happened; a get is left out of the history.
    pub fn complete_unknown(&self, token: Token) {
        self.complete(token, Output::Unknown);
    }

    /// Number of operations invoked so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was invoked yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The history so far, in invocation order. An operation not completed
    /// yet counts as unknown (as if its client had given up), so the
    /// history can be taken at any time.
    pub fn history(&self) -> Vec<Operation> {
        self.lock()
            .iter()
            .map(|entry| {
                let (ret, output) = entry.outcome.clone().unwrap_or((u64::MAX, Output::Unknown));
                Operation {
                    client: entry.client,
                    call: entry.call,
                    ret: if output == Output::Unknown {
                        u64::MAX
                    } else {
                        ret
                    },
                    input: entry.input.clone(),
                    output,
                }
            })
            .collect()
    }

    /// Checks the history so far with [`check`].
    pub fn check(&self) -> CheckResult {
        check(&self.history())
    }
}
