//! Linearizability checking of client histories against the key-value
//! model of [`crate::kv`]: a Wing–Gong search with memoization, in the
//! manner of porcupine (Horn and Kroening's P-compositionality over Lowe's
//! algorithm).
//!
//! Owns: the history types ([`Operation`], [`Input`], [`Output`]), the
//! verdict ([`CheckResult`], with an [`Explanation`] of a violation), the
//! search budget ([`Budget`]), the sequential model of one key (a register
//! that is absent or holds bytes; put sets it, delete clears it, get reads
//! it, compare-and-swap sets it only if it holds the expected value and
//! otherwise reads it, as an etcd transaction comparing the value does) and
//! the [`HistoryRecorder`] test clients use to record what they did.
//!
//! Guarantees: [`check`] answers [`CheckResult::Ok`] only if the whole
//! history is linearizable, and [`CheckResult::Illegal`] only if it is not:
//! the search is exhaustive, so a budget running out gives
//! [`CheckResult::Timeout`], never a guess. Every key starts absent. Two
//! operations are ordered in real time only if one responded strictly
//! before the other was invoked (equal timestamps count as concurrent). A
//! put, delete or compare-and-swap whose outcome is unknown may take effect
//! at any point after its invocation (a compare-and-swap only where the key
//! holds its expected value), or never. A compare-and-swap answered
//! [`Output::Ok`] swapped; answered [`Output::Value`], it did not and is
//! checked as a get of that value. Malformed input (a get answered with
//! `Ok`, a failed compare-and-swap that found its expected value, a
//! response before its invocation) gives [`CheckResult::Invalid`]; nothing
//! here panics on input.
//!
//! May not touch: the cluster, the network, files, or the real [`crate::kv`]
//! store: it reads histories and nothing else. Prefix scans are not modelled
//! (they span keys; checking them would need a whole-store model).
//!
//! # Algorithm
//!
//! The key-value model is a set of independent registers, so the history is
//! split by key and each key's sub-history is checked on its own (a history
//! is linearizable iff every key's is). For one key, the calls and responses
//! are sorted by time into a doubly linked list; a depth-first search picks,
//! among the calls before the first remaining response, one whose effect
//! the register model accepts, removes it (and its response) from the list
//! and goes on, backtracking when a response is reached with its call still
//! in the list. Every configuration reached (the set of operations
//! linearized, as a bitset, plus the register's value) is remembered, and a
//! configuration seen before is not searched again. On top of that (each
//! is sound and keeps the search complete; the brute-force comparison in
//! `tests/linearizability.rs`, on histories with and without
//! compare-and-swaps, checks the combination):
//!
//! - a get that reads the current value and may come next is linearized at
//!   once, without trying alternatives (moving a read earlier cannot hurt:
//!   it changes no state and nothing real-time-before it is left). A
//!   failed compare-and-swap is such a read; a swap changes the state, so
//!   it never gets this treatment;
//! - a put or delete with unknown outcome whose resulting value nothing
//!   reads is dropped (placing it never helps: in a linearization, what
//!   follows it either reads its value or overwrites it, so if nothing
//!   reads it, leaving it out changes no result). "Reads" counts gets,
//!   failed compare-and-swaps (which returned the value) and swaps of any
//!   outcome expecting the value (an unknown put of V may be what lets a
//!   swap from V succeed, even when no get ever returned V); the same
//!   holds for an unknown swap whose written value nothing reads. A write
//!   whose value something reads is only tried when such a reader (again
//!   including swaps from the value, of any outcome) may come next (it has
//!   no deadline, so in any linearization it can be moved later, to just
//!   before the operation after it, which reads its value or else it could
//!   be left out; that operation was already among those that may come
//!   next, an unknown write having no response in the list);
//! - an unknown write or swap that alone writes a value (not "absent",
//!   which the key starts as) some acknowledged operation read (a get, a
//!   failed compare-and-swap, a swap from it) did happen, before the first
//!   such operation responded (something wrote the value before it was
//!   read, and nothing else writes it), and is searched as if acknowledged
//!   at that time. Unknown swaps do not count as such readers (they may
//!   not have happened). A swap from a value to itself is rewritten first:
//!   acknowledged, it is a read of that value; unknown, it is dropped (it
//!   changes nothing); so every swap left writes a value it does not read,
//!   and each writer counted could have introduced the value;
//! - of unknown writes with the same effect only the earliest invoked
//!   unplaced one is tried (it can stand in for any later one: same
//!   result, no deadline, invoked no later). For swaps the effect includes
//!   the expected value: an unknown swap only stands in for one with the
//!   same expected and written values (a swap is accepted in fewer states
//!   than a put of its value, so the two are never interchanged);
//! - a configuration where some unplaced get (or acknowledged swap) needs
//!   a value that is not the current one and that no unplaced write or
//!   swap (of any outcome) writes is abandoned at once (this is what keeps
//!   illegal histories with many concurrent clients tractable: a wrong
//!   early choice is noticed as soon as it strands a read, not when the
//!   search reaches that read). A swap writing V is a writer of V here; a
//!   swap of unknown outcome needs nothing (it may never happen);
//! - candidates are tried in a useful order: the operation with the
//!   earliest response if it is a write or a swap, or the writes of the
//!   value it reads (or swaps from); then writes that other pending gets
//!   and swaps read; then by earliest response (the order changes how soon
//!   a linearization is found, never whether one is);
//! - a get (or failed compare-and-swap) returning a value no put or swap
//!   on its key wrote fails at once, and so does an acknowledged swap from
//!   such a value (the key never holds it); an unknown swap from one is
//!   dropped (it cannot have happened).
//!
//! Costs, measured (release build, shared 2-core machine): a
//! 2,000-operation history of 3 clients on 10 keys checks in about a
//! millisecond; 10,000 operations of 20 clients all on one key in tens of
//! milliseconds. Illegal histories need an exhaustive search: on one key,
//! with up to 10 clients and 10% unknown writes, at most about 10 s for
//! 4,000 operations (usually milliseconds); with 20 clients on one key,
//! many exhaust the default budget ([`CheckResult::Timeout`], never a
//! wrong verdict). The ignored test `stress_single_key_contention` prints
//! these numbers.

mod recorder;
mod search;
#[cfg(test)]
mod tests;

pub use recorder::{HistoryRecorder, Token};

use search::{ABSENT, Effect, KeyOp, Meter, Outcome};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value written.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Read `key` (a linearizable read).
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Compare-and-swap, as an etcd transaction `if value(key) == expected
    /// then put key = value else range key`: if `key` holds `expected`
    /// (`None`: the key is absent), set it to `value`; otherwise change
    /// nothing and return what it holds.
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value the key must hold for the swap (`None`: absent).
        expected: Option<Vec<u8>>,
        /// The value written if it does.
        value: Vec<u8>,
    },
}

impl Input {
    /// The key the operation is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Input::Put { key, .. }
            | Input::Delete { key }
            | Input::Get { key }
            | Input::Cas { key, .. } => key,
        }
    }
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// A put or delete was acknowledged, or a compare-and-swap swapped: it
    /// took effect between its invocation and its response (a
    /// compare-and-swap read its `expected` and wrote its `value`).
    Ok,
    /// No answer (timed out, connection lost, node killed): a put, delete
    /// or compare-and-swap may have taken effect at any point after its
    /// invocation (a compare-and-swap only at a point where the key held
    /// its `expected`), or never. Its response time is ignored (it is
    /// +infinity). A get with this output has no effect and is ignored.
    Unknown,
    /// A get's answer: the value, or `None` if the key was absent. For a
    /// compare-and-swap: it did not swap, and read this value (which must
    /// differ from its `expected`); it behaves exactly like a get.
    Value(Option<Vec<u8>>),
}

/// One operation of a history: who, when, what, and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client that issued it (informative only: real-time order comes
    /// from the timestamps).
    pub client: u64,
    /// When it was invoked (nanoseconds or any logical clock shared by all
    /// clients).
    pub call: u64,
    /// When its response arrived, on the same clock (ignored when the
    /// output is [`Output::Unknown`]).
    pub ret: u64,
    /// The request.
    pub input: Input,
    /// The response.
    pub output: Output,
}

impl Operation {
    /// An acknowledged put.
    pub fn put(
        client: u64,
        call: u64,
        ret: u64,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Put {
                key: key.into(),
                value: value.into(),
            },
            output: Output::Ok,
        }
    }

    /// A put whose outcome is unknown.
    pub fn put_unknown(
        client: u64,
        call: u64,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret: u64::MAX,
            input: Input::Put {
                key: key.into(),
                value: value.into(),
            },
            output: Output::Unknown,
        }
    }

    /// An acknowledged delete.
    pub fn delete(client: u64, call: u64, ret: u64, key: impl Into<Vec<u8>>) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Delete { key: key.into() },
            output: Output::Ok,
        }
    }

    /// A delete whose outcome is unknown.
    pub fn delete_unknown(client: u64, call: u64, key: impl Into<Vec<u8>>) -> Operation {
        Operation {
            client,
            call,
            ret: u64::MAX,
            input: Input::Delete { key: key.into() },
            output: Output::Unknown,
        }
    }

    /// A get that found `value`.
    pub fn get(
        client: u64,
        call: u64,
        ret: u64,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Get { key: key.into() },
            output: Output::Value(Some(value.into())),
        }
    }

    /// A get that found the key absent.
    pub fn get_none(client: u64, call: u64, ret: u64, key: impl Into<Vec<u8>>) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Get { key: key.into() },
            output: Output::Value(None),
        }
    }
}

impl Operation {
    /// A compare-and-swap that swapped: `key` held `expected` (`None`:
    /// absent) and now holds `value`. (An absent expectation needs its
    /// type spelled out: `None::<&str>`.)
    pub fn cas(
        client: u64,
        call: u64,
        ret: u64,
        key: impl Into<Vec<u8>>,
        expected: Option<impl Into<Vec<u8>>>,
        value: impl Into<Vec<u8>>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Cas {
                key: key.into(),
                expected: expected.map(Into::into),
                value: value.into(),
            },
            output: Output::Ok,
        }
    }

    /// A compare-and-swap that did not swap because it found `found`
    /// (`None`: absent) instead of `expected`.
    pub fn cas_failed(
        client: u64,
        call: u64,
        ret: u64,
        key: impl Into<Vec<u8>>,
        expected: Option<impl Into<Vec<u8>>>,
        value: impl Into<Vec<u8>>,
        found: Option<impl Into<Vec<u8>>>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret,
            input: Input::Cas {
                key: key.into(),
                expected: expected.map(Into::into),
                value: value.into(),
            },
            output: Output::Value(found.map(Into::into)),
        }
    }

    /// A compare-and-swap whose outcome is unknown.
    pub fn cas_unknown(
        client: u64,
        call: u64,
        key: impl Into<Vec<u8>>,
        expected: Option<impl Into<Vec<u8>>>,
        value: impl Into<Vec<u8>>,
    ) -> Operation {
        Operation {
            client,
            call,
            ret: u64::MAX,
            input: Input::Cas {
                key: key.into(),
                expected: expected.map(Into::into),
                value: value.into(),
            },
            output: Output::Unknown,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        match &self.input {
            Input::Put { key, value } => {
                write!(f, "put({}, {})", Bytes(key), Bytes(value))?;
            }
            Input::Delete { key } => write!(f, "delete({})", Bytes(key))?,
            Input::Get { key } => write!(f, "get({})", Bytes(key))?,
            Input::Cas {
                key,
                expected,
                value,
            } => write!(
                f,
                "cas({}, {}→{})",
                Bytes(key),
                Value(expected.as_deref()),
                Bytes(value)
            )?,
        }
        match &self.output {
            Output::Unknown => write!(f, " [{}, ∞) → unknown", self.call),
            Output::Ok => write!(f, " [{}, {}] → ok", self.call, self.ret),
            Output::Value(value) => {
                write!(
                    f,
                    " [{}, {}] → {}",
                    self.call,
                    self.ret,
                    Value(value.as_deref())
                )
            }
        }
    }
}

/// Bytes shown as an escaped string.
struct Bytes<'a>(&'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// A register value shown as an escaped string or `absent`.
struct Value<'a>(Option<&'a [u8]>);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => Bytes(bytes).fmt(f),
            None => f.write_str("absent"),
        }
    }
}

/// How much searching [`check_with_budget`] may do before giving up with
/// [`CheckResult::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (one step: one candidate operation considered, or one
    /// backtrack), summed over all keys.
    pub max_steps: u64,
    /// Wall-clock time for the whole check, if bounded.
    pub max_time: Option<Duration>,
}

impl Budget {
    /// The budget of [`check`]: 20 million steps, no time limit, so the
    /// verdict does not depend on the machine's speed. Ordinary histories
    /// need a few steps per operation; the whole budget is several seconds
    /// and a few hundred MB of cache at worst (an illegal 2,000-operation
    /// history of 20 clients all on one key needed 10–15 million).
    pub const DEFAULT: Budget = Budget {
        max_steps: 20_000_000,
        max_time: None,
    };

    /// No bound at all: the check may take exponential time.
    pub const fn unlimited() -> Budget {
        Budget {
            max_steps: u64::MAX,
            max_time: None,
        }
    }

    /// At most `max_steps` steps.
    pub const fn steps(max_steps: u64) -> Budget {
        Budget {
            max_steps,
            max_time: None,
        }
    }

    /// At most `max_time` of wall-clock time.
    pub const fn time(max_time: Duration) -> Budget {
        Budget {
            max_steps: u64::MAX,
            max_time: Some(max_time),
        }
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::DEFAULT
    }
}

/// Why one key's sub-history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The longest sequence of this key's operations the search could
    /// linearize (indexes into the history, in linearization order).
    pub prefix: Vec<usize>,
    /// The key's value after that prefix (`None`: absent).
    pub value_after_prefix: Option<Vec<u8>>,
    /// The operations that could not be placed after the prefix: first
    /// those that could come next (invoked before the earliest response
    /// still missing), each of which either disagrees with the value or
    /// leaves the rest impossible to order; then any later gets that no
    /// remaining write can satisfy (they return a value that is not the
    /// current one and that no operation left writes).
    pub unplaced: Vec<usize>,
    /// The operation whose deadline forced the search back: the
    /// acknowledged operation with the earliest response not in the prefix
    /// (or an unknown write that must have happened because a get returned
    /// its value, whose deadline is that get's response).
    pub blocking: Option<usize>,
    /// A readable account of the above.
    pub summary: String,
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable: no order of `key`'s operations
    /// agrees with their results and their real-time order.
    Illegal {
        /// The key whose operations cannot be ordered (the first such key
        /// in byte order).
        key: Vec<u8>,
        /// What the search found.
        explanation: Box<Explanation>,
    },
    /// The budget ran out while searching `key`: no verdict.
    Timeout {
        /// The key being searched.
        key: Vec<u8>,
        /// Steps used in all.
        steps: u64,
    },
    /// An operation is malformed; nothing was checked.
    Invalid {
        /// Its index in the history.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl CheckResult {
    /// Whether the verdict is [`CheckResult::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the verdict is [`CheckResult::Illegal`].
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal { .. })
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => f.write_str("linearizable"),
            CheckResult::Illegal { key, explanation } => write!(
                f,
                "not linearizable on key {}: {}",
                Bytes(key),
                explanation.summary
            ),
            CheckResult::Timeout { key, steps } => write!(
                f,
                "no verdict: the budget ran out after {steps} steps while checking key {}",
                Bytes(key)
            ),
            CheckResult::Invalid { index, reason } => {
                write!(f, "malformed operation #{index}: {reason}")
            }
        }
    }
}

/// Checks `history` with the [`Budget::DEFAULT`] budget.
pub fn check(history: &[Operation]) -> CheckResult {
    check_with_budget(history, Budget::DEFAULT)
}

/// Checks `history`, giving up with [`CheckResult::Timeout`] once `budget`
/// is spent. Keys are checked in byte order; the first illegal key stops
/// the check.
pub fn check_with_budget(history: &[Operation], budget: Budget) -> CheckResult {
    let mut keys: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        match validate(op) {
            Err(reason) => return CheckResult::Invalid { index, reason },
            Ok(false) => {}
            Ok(true) => keys.entry(op.input.key()).or_default().push(index),
        }
    }
    let mut meter = Meter::new(budget);
    for (key, indexes) in keys {
        let prepared = match KeyHistory::prepare(history, &indexes) {
            Ok(prepared) => prepared,
            Err(explanation) => {
                return CheckResult::Illegal {
                    key: key.to_vec(),
                    explanation: Box::new(explanation),
                };
            }
        };
        match search::search(&prepared.ops, &mut meter) {
            Outcome::Linearizable => {}
            Outcome::OutOfBudget => {
                return CheckResult::Timeout {
                    key: key.to_vec(),
                    steps: meter.used(),
                };
            }
            Outcome::Illegal { prefix, state } => {
                return CheckResult::Illegal {
                    key: key.to_vec(),
                    explanation: Box::new(prepared.explain(history, key, &prefix, state)),
                };
            }
        }
    }
    CheckResult::Ok
}

/// Whether `op` takes part in the check (`Ok(false)`: a get with unknown
/// outcome, which has no effect), or why it is malformed.
fn validate(op: &Operation) -> Result<bool, String> {
    if let Input::Cas { expected, .. } = &op.input {
        // A compare-and-swap answers either way: swapped (Ok) or the value
        // it found, which cannot be the one it expected.
        return match &op.output {
            Output::Unknown => Ok(true),
            Output::Value(found) if found == expected => Err(format!(
                "a compare-and-swap did not swap although it found its expected value {}",
                Value(found.as_deref())
            )),
            Output::Ok | Output::Value(_) if op.ret < op.call => Err(format!(
                "response at {} before invocation at {}",
                op.ret, op.call
            )),
            Output::Ok | Output::Value(_) => Ok(true),
        };
    }
    let write = !matches!(op.input, Input::Get { .. });
    match (&op.output, write) {
        (Output::Unknown, false) => Ok(false),
        (Output::Unknown, true) => Ok(true),
        (Output::Ok, false) => Err("a get answered Ok instead of a value".to_string()),
        (Output::Value(_), true) => {
            Err("a put or delete answered with a value instead of Ok".to_string())
        }
        (Output::Ok, true) | (Output::Value(_), false) if op.ret < op.call => Err(format!(
            "response at {} before invocation at {}",
            op.ret, op.call
        )),
        (Output::Ok, true) | (Output::Value(_), false) => Ok(true),
    }
}

/// One key's operations in the search's terms: values interned to small
/// numbers, unknown writes nobody read dropped, those that must have
/// happened given a deadline, and the order the search numbers them in
/// (with a deadline by invocation, then the rest by invocation, which keeps
/// the sets of linearized operations compact).
struct KeyHistory<'a> {
    ops: Vec<KeyOp>,
    /// For each of `ops`, its index in the history.
    origin: Vec<usize>,
    /// Value number `n` (n ≥ 1) is `values[n - 1]`; 0 is "absent".
    values: Vec<&'a [u8]>,
    /// Whether the key's sub-history holds a compare-and-swap (only the
    /// wording of explanations depends on it).
    swaps: bool,
}

impl<'a> KeyHistory<'a> {
    /// The key's sub-history, or why it fails before any search: a get or
    /// a failed compare-and-swap returning a value no put (or
    /// compare-and-swap) on the key wrote, or an acknowledged swap from
    /// such a value.
    fn prepare(history: &'a [Operation], indexes: &[usize]) -> Result<KeyHistory<'a>, Explanation> {
        let mut numbers: HashMap<&'a [u8], u32> = HashMap::new();
        let mut values: Vec<&'a [u8]> = Vec::new();
        let mut swaps = false;
        for op in indexes.iter().filter_map(|&i| history.get(i)) {
            let written = match (&op.input, &op.output) {
                (Input::Put { value, .. }, _) => value,
                (Input::Cas { .. }, Output::Value(_)) => {
                    swaps = true;
                    continue;
                }
                (Input::Cas { value, .. }, _) => {
                    swaps = true;
                    value
                }
                _ => continue,
            };
            numbers.entry(written.as_slice()).or_insert_with(|| {
                values.push(written.as_slice());
                u32::try_from(values.len()).unwrap_or(u32::MAX)
            });
        }
        let number = |value: &Option<Vec<u8>>| match value {
            None => Some(ABSENT),
            Some(bytes) => numbers.get(bytes.as_slice()).copied(),
        };
        // For each value some acknowledged operation read (a get, a failed
        // compare-and-swap, a swap from it): the earliest such response.
        let mut first_read: HashMap<u32, u64> = HashMap::new();
        // The values some operation may read, including swaps with unknown
        // outcome (which may need the value to have been written).
        let mut read: HashSet<u32> = HashSet::new();
        let mut ops = Vec::with_capacity(indexes.len());
        let mut origin = Vec::with_capacity(indexes.len());
        for &index in indexes {
            let Some(op) = history.get(index) else {
                continue;
            };
            let known = op.output != Output::Unknown;
            let effect = match (&op.input, &op.output) {
                (Input::Put { value, .. }, _) => {
                    Effect::Write(numbers.get(value.as_slice()).copied().unwrap_or(ABSENT))
                }
                (Input::Delete { .. }, _) => Effect::Write(ABSENT),
                (Input::Get { .. } | Input::Cas { .. }, Output::Value(found)) => {
                    match number(found) {
                        Some(number) => Effect::Read(number),
                        None => {
                            let verb = if matches!(op.input, Input::Get { .. }) {
                                "returned"
                            } else {
                                "did not swap, finding"
                            };
                            return Err(never_written(history, index, verb, found, swaps));
                        }
                    }
                }
                (Input::Get { .. }, _) => continue,
                (
                    Input::Cas {
                        expected, value, ..
                    },
                    _,
                ) => {
                    let value = numbers.get(value.as_slice()).copied().unwrap_or(ABSENT);
                    match number(expected) {
                        // The key never holds the expected value: an
                        // acknowledged swap is impossible, an unknown one
                        // did not happen.
                        None if known => {
                            return Err(never_written(
                                history,
                                index,
                                "swapped from",
                                expected,
                                swaps,
                            ));
                        }
                        None => continue,
                        // A swap to the value it expects changes nothing:
                        // acknowledged, it is a read; unknown, it may be
                        // left out.
                        Some(expected) if expected == value && known => Effect::Read(expected),
                        Some(expected) if expected == value => continue,
                        Some(expected) => Effect::Swap { expected, value },
                    }
                }
            };
            if let Some(number) = effect.reads() {
                read.insert(number);
                if known {
                    let first = first_read.entry(number).or_insert(op.ret);
                    *first = (*first).min(op.ret);
                }
            }
            ops.push(KeyOp {
                call: op.call,
                ret: known.then_some(op.ret),
                effect,
            });
            origin.push(index);
        }
        // An unknown write (or swap) that alone writes a value some
        // acknowledged operation read (not "absent", which the key starts
        // as) did happen, before the first such operation responded: that
        // is its deadline, as if acknowledged. (A swap writing the value it
        // reads was turned into a read above, so it does not count as a
        // writer here: every writer left can introduce its value.)
        let mut writers: HashMap<u32, usize> = HashMap::new();
        for op in &ops {
            if let Some(number) = op.effect.writes() {
                *writers.entry(number).or_default() += 1;
            }
        }
        for op in &mut ops {
            if op.ret.is_none()
                && let Some(number) = op.effect.writes()
                && number != ABSENT
                && writers.get(&number) == Some(&1)
                && let Some(&deadline) = first_read.get(&number)
            {
                op.ret = Some(deadline.max(op.call));
            }
        }
        // An unknown write (or swap) whose value nothing reads (no get, no
        // failed compare-and-swap, no swap from it) can always be left out:
        // the value it would leave is never observed before the next write.
        let mut order: Vec<usize> = (0..ops.len())
            .filter(|&i| {
                let op = &ops[i];
                op.ret.is_some() || op.effect.writes().is_some_and(|n| read.contains(&n))
            })
            .collect();
        order.sort_by_key(|&i| (ops[i].ret.is_none(), ops[i].call, origin[i]));
        Ok(KeyHistory {
            ops: order.iter().map(|&i| ops[i]).collect(),
            origin: order.iter().map(|&i| origin[i]).collect(),
            values,
            swaps,
        })
    }

    /// The value numbered `number`, as bytes (`None`: absent).
    fn value(&self, number: u32) -> Option<&'a [u8]> {
        let position = usize::try_from(number).ok()?.checked_sub(1)?;
        self.values.get(position).copied()
    }

    /// Builds the explanation of a failed search whose deepest configuration
    /// linearized `prefix` (positions in `ops`) leaving the value `state`.
    fn explain(
        &self,
        history: &[Operation],
        key: &[u8],
        prefix: &[usize],
        state: u32,
    ) -> Explanation {
        let placed: HashSet<usize> = prefix.iter().copied().collect();
        let blocking = (0..self.ops.len())
            .filter(|i| !placed.contains(i))
            .filter_map(|i| self.ops[i].ret.map(|ret| (ret, self.origin[i], i)))
            .min()
            .map(|(_, _, i)| i);
        let deadline = blocking.and_then(|i| self.ops[i].ret).unwrap_or(u64::MAX);
        let mut unplaced: Vec<usize> = (0..self.ops.len())
            .filter(|i| !placed.contains(i) && self.ops[*i].call <= deadline)
            .collect();
        unplaced.sort_by_key(|&i| (self.ops[i].call, self.origin[i]));
        // Reads (and acknowledged swaps) that no longer can be placed at
        // all: they need a value that is not the current one and that no
        // remaining write writes.
        let writable: HashSet<u32> = (0..self.ops.len())
            .filter(|i| !placed.contains(i))
            .filter_map(|i| self.ops[i].effect.writes())
            .collect();
        let stranded: Vec<usize> = (0..self.ops.len())
            .filter(|i| !placed.contains(i) && !unplaced.contains(i))
            .filter(|&i| {
                let op = &self.ops[i];
                op.ret.is_some()
                    && op
                        .effect
                        .reads()
                        .is_some_and(|number| number != state && !writable.contains(&number))
            })
            .collect();
        let value = self.value(state);
        let describe = |i: usize| -> String {
            let index = self.origin[i];
            match history.get(index) {
                Some(op) => format!("#{index} {op}"),
                None => format!("#{index}"),
            }
        };
        let mut summary = format!(
            "{} of the {} operations on key {} linearize",
            prefix.len(),
            self.ops.len(),
            Bytes(key)
        );
        if !prefix.is_empty() {
            let shown = prefix.len().min(3);
            let last: Vec<String> = prefix[prefix.len() - shown..]
                .iter()
                .map(|&i| describe(i))
                .collect();
            summary.push_str(&format!(
                " (ending {}{})",
                if prefix.len() > shown { "… " } else { "" },
                last.join(", ")
            ));
        }
        summary.push_str(&format!(", leaving the value {}", Value(value)));
        if let Some(i) = blocking {
            let inferred = history
                .get(self.origin[i])
                .is_some_and(|op| op.output == Output::Unknown);
            let by = if inferred && self.swaps {
                format!("by {deadline}, when an operation that read its value responded")
            } else if inferred {
                format!("by {deadline}, when a get that returned its value responded")
            } else {
                "by its response".to_string()
            };
            summary.push_str(&format!(
                "; {} must take effect {by}, but none of the operations that may come next fits:",
                describe(i)
            ));
        }
        const SHOWN: usize = 8;
        for &i in unplaced.iter().take(SHOWN) {
            let why = match self.ops[i].effect {
                Effect::Read(number) if number != state => {
                    format!(
                        "reads {} but the value is {}",
                        Value(self.value(number)),
                        Value(value)
                    )
                }
                Effect::Read(_) => {
                    "reads the value, but then the rest cannot be ordered".to_string()
                }
                Effect::Swap { expected, .. } if expected != state => {
                    format!(
                        "swaps from {} but the value is {}",
                        Value(self.value(expected)),
                        Value(value)
                    )
                }
                Effect::Write(_) | Effect::Swap { .. } => {
                    "then the rest cannot be ordered".to_string()
                }
            };
            summary.push_str(&format!(" {} ({why});", describe(i)));
        }
        if unplaced.len() > SHOWN {
            summary.push_str(&format!(" and {} more;", unplaced.len() - SHOWN));
        }
        if !stranded.is_empty() {
            summary.push_str(if self.swaps {
                " and these can no longer be placed at all (no remaining write writes what they read):"
            } else {
                " and these can no longer be placed at all (no remaining write writes what they return):"
            });
            for &i in stranded.iter().take(SHOWN) {
                summary.push_str(&format!(" {};", describe(i)));
            }
            if stranded.len() > SHOWN {
                summary.push_str(&format!(" and {} more;", stranded.len() - SHOWN));
            }
        }
        Explanation {
            prefix: prefix.iter().map(|&i| self.origin[i]).collect(),
            value_after_prefix: value.map(<[u8]>::to_vec),
            unplaced: unplaced
                .iter()
                .chain(&stranded)
                .map(|&i| self.origin[i])
                .collect(),
            blocking: blocking.map(|i| self.origin[i]),
            summary,
        }
    }
}

/// The explanation for a get at `index` that returned `value` (or a
/// compare-and-swap that found it, or swapped from it: `verb` says which),
/// which no put (or compare-and-swap, if the key has any: `swaps`) on its
/// key wrote.
fn never_written(
    history: &[Operation],
    index: usize,
    verb: &str,
    value: &Option<Vec<u8>>,
    swaps: bool,
) -> Explanation {
    let op = history
        .get(index)
        .map_or_else(String::new, |op| format!(" {op}"));
    Explanation {
        prefix: Vec::new(),
        value_after_prefix: None,
        unplaced: vec![index],
        blocking: Some(index),
        summary: format!(
            "#{index}{op} {verb} {}, a value no {} on this key wrote",
            Value(value.as_deref()),
            if swaps {
                "put or compare-and-swap"
            } else {
                "put"
            }
        ),
    }
}
