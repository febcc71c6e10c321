//! The linearizability checker on whole histories: hand-made linearizable
//! and non-linearizable histories with their verdicts, a differential test
//! against a brute-force checker on small random histories, histories
//! generated from a real sequential execution with random overlapping
//! timing (always linearizable) and mutations of them (never), the recorder
//! in front of the real `KvStore` shared by threads, and a timing of a
//! 3-client, 2,000-op history; each with compare-and-swaps too (the
//! brute force models them, so the differential tests check the search's
//! pruning with swaps present). RINGRAFT_LIN_CASES=… sets the number of
//! cases of the brute-force comparisons.

use proptest::prelude::*;
use ringraft::kv::{KvCommand, KvStore};
use ringraft::linearizability::{
    Budget, CheckResult, HistoryRecorder, Input, Operation, Output, check, check_with_budget,
};
use ringraft::raft::rng::Rng;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn put(client: u64, call: u64, ret: u64, key: &str, value: &str) -> Operation {
    Operation::put(client, call, ret, key, value)
}

fn get(client: u64, call: u64, ret: u64, key: &str, value: &str) -> Operation {
    Operation::get(client, call, ret, key, value)
}

fn get_none(client: u64, call: u64, ret: u64, key: &str) -> Operation {
    Operation::get_none(client, call, ret, key)
}

fn delete(client: u64, call: u64, ret: u64, key: &str) -> Operation {
    Operation::delete(client, call, ret, key)
}

fn cas(
    client: u64,
    call: u64,
    ret: u64,
    key: &str,
    expected: Option<&str>,
    value: &str,
) -> Operation {
    Operation::cas(client, call, ret, key, expected, value)
}

fn cas_failed(
    client: u64,
    call: u64,
    ret: u64,
    key: &str,
    expected: Option<&str>,
    value: &str,
    found: Option<&str>,
) -> Operation {
    Operation::cas_failed(client, call, ret, key, expected, value, found)
}

fn cas_unknown(
    client: u64,
    call: u64,
    key: &str,
    expected: Option<&str>,
    value: &str,
) -> Operation {
    Operation::cas_unknown(client, call, key, expected, value)
}

#[track_caller]
fn assert_ok(history: &[Operation]) {
    let result = check(history);
    assert_eq!(result, CheckResult::Ok, "{result}");
}

/// Asserts the history is illegal on `key`; returns the verdict for more
/// checks.
#[track_caller]
fn assert_illegal(history: &[Operation], key: &str) -> CheckResult {
    let result = check(history);
    match &result {
        CheckResult::Illegal { key: bad, .. } => {
            assert_eq!(bad.as_slice(), key.as_bytes(), "{result}");
        }
        other => panic!("expected illegal on {key}, got {other}"),
    }
    eprintln!("{result}");
    result
}

// ---------------------------------------------------------------------------
// Linearizable histories.

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&[]);
}

#[test]
fn sequential_history() {
    assert_ok(&[
        get_none(1, 0, 1, "x"),
        put(1, 2, 3, "x", "1"),
        get(2, 4, 5, "x", "1"),
        put(2, 6, 7, "x", "2"),
        get(1, 8, 9, "x", "2"),
        delete(1, 10, 11, "x"),
        get_none(2, 12, 13, "x"),
        put(1, 14, 15, "x", "1"),
        get(2, 16, 17, "x", "1"),
    ]);
}

#[test]
fn concurrent_puts_read_in_either_order() {
    for winner in ["1", "2"] {
        assert_ok(&[
            put(1, 0, 10, "x", "1"),
            put(2, 2, 12, "x", "2"),
            get(3, 20, 30, "x", winner),
            get(1, 40, 50, "x", winner),
        ]);
    }
    // Reads overlapping both puts may even see both orders... one at a time.
    assert_ok(&[
        put(1, 0, 100, "x", "1"),
        put(2, 0, 100, "x", "2"),
        get(3, 10, 20, "x", "1"),
        get(3, 30, 40, "x", "2"),
    ]);
}

#[test]
fn read_overlapping_a_write_sees_old_or_new() {
    for seen in ["old", "new"] {
        assert_ok(&[
            put(1, 0, 1, "x", "old"),
            put(1, 10, 20, "x", "new"),
            get(2, 12, 18, "x", seen),
        ]);
    }
    // A key never written read during its first put.
    assert_ok(&[put(1, 10, 20, "x", "new"), get_none(2, 5, 15, "x")]);
    // Two overlapping reads: the first sees new, the later-invoked one old
    // is fine as long as they overlap each other.
    assert_ok(&[
        put(1, 0, 1, "x", "old"),
        put(1, 10, 40, "x", "new"),
        get(2, 12, 22, "x", "new"),
        get(3, 20, 30, "x", "old"),
    ]);
}

#[test]
fn unknown_put_seen_or_never_seen() {
    // Seen, long after its client gave up.
    assert_ok(&[
        put(1, 0, 1, "x", "1"),
        Operation::put_unknown(2, 5, "x", "2"),
        get(3, 1_000, 1_001, "x", "1"),
        get(3, 2_000, 2_001, "x", "2"),
        get(1, 3_000, 3_001, "x", "2"),
    ]);
    // Never seen.
    assert_ok(&[
        put(1, 0, 1, "x", "1"),
        Operation::put_unknown(2, 5, "x", "2"),
        get(3, 1_000, 1_001, "x", "1"),
        get(1, 3_000, 3_001, "x", "1"),
    ]);
    // Seen by a read overlapping its invocation.
    assert_ok(&[
        Operation::put_unknown(2, 5, "x", "2"),
        get(3, 0, 6, "x", "2"),
    ]);
}

#[test]
fn deletes() {
    // Delete, concurrent get sees either.
    for seen in [None, Some("1")] {
        let read = match seen {
            Some(value) => get(2, 12, 14, "x", value),
            None => get_none(2, 12, 14, "x"),
        };
        assert_ok(&[put(1, 0, 1, "x", "1"), delete(1, 10, 20, "x"), read]);
    }
    // An unknown delete may have happened or not.
    assert_ok(&[
        put(1, 0, 1, "x", "1"),
        Operation::delete_unknown(1, 10, "x"),
        get(2, 20, 21, "x", "1"),
        get_none(2, 30, 31, "x"),
    ]);
    // Deleting an absent key is fine.
    assert_ok(&[delete(1, 0, 1, "x"), get_none(1, 2, 3, "x")]);
}

#[test]
fn keys_are_independent() {
    assert_ok(&[
        put(1, 0, 10, "x", "1"),
        put(2, 0, 10, "y", "1"),
        get(3, 20, 21, "y", "1"),
        get_none(3, 22, 23, "z"),
        get(3, 24, 25, "x", "1"),
    ]);
}

#[test]
fn unknown_gets_are_ignored() {
    let mut lost = get(2, 20, 21, "x", "anything");
    lost.output = Output::Unknown;
    assert_ok(&[put(1, 0, 1, "x", "1"), lost, get(3, 30, 31, "x", "1")]);
}

// ---------------------------------------------------------------------------
// Non-linearizable histories.

#[test]
fn stale_read_after_a_completed_write() {
    let result = assert_illegal(
        &[
            put(1, 0, 10, "x", "1"),
            put(1, 20, 30, "x", "2"),
            get(2, 40, 50, "x", "1"),
        ],
        "x",
    );
    let CheckResult::Illegal { explanation, .. } = result else {
        unreachable!()
    };
    assert_eq!(explanation.prefix, vec![0, 1]);
    assert_eq!(explanation.value_after_prefix.as_deref(), Some(&b"2"[..]));
    assert_eq!(explanation.blocking, Some(2));
    assert_eq!(explanation.unplaced, vec![2]);
    assert!(
        explanation
            .summary
            .contains("reads \"1\" but the value is \"2\""),
        "{}",
        explanation.summary
    );
}

#[test]
fn reads_see_new_then_old() {
    // The write is concurrent with both reads, but the reads are ordered.
    let result = assert_illegal(
        &[
            put(1, 0, 1, "x", "old"),
            put(1, 10, 100, "x", "new"),
            get(2, 20, 30, "x", "new"),
            get(3, 40, 50, "x", "old"),
        ],
        "x",
    );
    let CheckResult::Illegal { explanation, .. } = result else {
        unreachable!()
    };
    // The late read of the old value is named.
    assert!(explanation.unplaced.contains(&3), "{explanation:?}");
}

#[test]
fn value_never_written() {
    let result = assert_illegal(
        &[
            put(1, 0, 10, "x", "1"),
            put(2, 0, 10, "y", "ghost"),
            get(2, 20, 30, "x", "ghost"),
        ],
        "x",
    );
    let CheckResult::Illegal { explanation, .. } = result else {
        unreachable!()
    };
    assert_eq!(explanation.unplaced, vec![2]);
}

#[test]
fn old_value_read_after_a_completed_delete() {
    assert_illegal(
        &[
            put(1, 0, 1, "x", "1"),
            delete(1, 10, 20, "x"),
            get(2, 30, 40, "x", "1"),
        ],
        "x",
    );
}

#[test]
fn absent_read_after_a_completed_put() {
    assert_illegal(&[put(1, 0, 1, "x", "1"), get_none(2, 2, 3, "x")], "x");
}

#[test]
fn unknown_write_seen_then_unseen() {
    assert_illegal(
        &[
            put(1, 0, 10, "x", "1"),
            Operation::put_unknown(2, 5, "x", "2"),
            get(3, 20, 30, "x", "2"),
            get(3, 40, 50, "x", "1"),
        ],
        "x",
    );
}

#[test]
fn concurrent_puts_read_in_both_orders_after_both_completed() {
    assert_illegal(
        &[
            put(1, 0, 10, "x", "1"),
            put(2, 0, 10, "x", "2"),
            get(3, 20, 30, "x", "1"),
            get(3, 40, 50, "x", "2"),
        ],
        "x",
    );
}

#[test]
fn only_the_bad_key_is_reported() {
    assert_illegal(
        &[
            put(1, 0, 10, "a", "1"),
            get(2, 20, 30, "a", "1"),
            put(1, 0, 10, "b", "1"),
            put(1, 20, 30, "b", "2"),
            get(2, 40, 50, "b", "1"),
            put(1, 0, 10, "c", "1"),
            get(2, 20, 30, "c", "1"),
        ],
        "b",
    );
}

#[test]
fn malformed_operations_are_reported_not_panicked_on() {
    let mut get_ok = get_none(1, 0, 1, "x");
    get_ok.output = Output::Ok;
    let result = check(&[put(1, 0, 1, "x", "1"), get_ok]);
    assert!(
        matches!(result, CheckResult::Invalid { index: 1, .. }),
        "{result}"
    );
    let result = check(&[put(1, 9, 1, "x", "1")]);
    assert!(
        matches!(result, CheckResult::Invalid { index: 0, .. }),
        "{result}"
    );
}

#[test]
fn a_pathological_history_times_out_within_its_budget() {
    // 30 concurrent puts of distinct values, then reads that no order
    // explains: the search must visit every subset before giving up.
    let mut history: Vec<Operation> = (0..30)
        .map(|i| put(i, 0, 100, "x", &i.to_string()))
        .collect();
    history.push(get(99, 200, 201, "x", "0"));
    history.push(get(99, 300, 301, "x", "1"));
    let started = Instant::now();
    let result = check_with_budget(&history, Budget::steps(200_000));
    assert_eq!(
        result,
        CheckResult::Timeout {
            key: b"x".to_vec(),
            steps: 200_000
        }
    );
    let result = check_with_budget(&history, Budget::time(std::time::Duration::from_millis(50)));
    assert!(matches!(result, CheckResult::Timeout { .. }), "{result}");
    eprintln!("two timeouts in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Compare-and-swap.

#[test]
fn cas_sequential_history() {
    assert_ok(&[
        cas(1, 0, 1, "x", None, "a"),
        cas_failed(2, 2, 3, "x", None, "b", Some("a")),
        cas(2, 4, 5, "x", Some("a"), "b"),
        get(1, 6, 7, "x", "b"),
        delete(1, 8, 9, "x"),
        cas_failed(2, 10, 11, "x", Some("b"), "c", None),
        cas(2, 12, 13, "x", None, "c"),
        get(1, 14, 15, "x", "c"),
    ]);
}

#[test]
fn cas_race_one_wins_one_fails_reading_the_winner() {
    for expected in [Some("0"), None] {
        let initial: Vec<Operation> = expected
            .map(|value| put(3, 0, 1, "x", value))
            .into_iter()
            .collect();
        let mut history = initial.clone();
        history.extend([
            cas(1, 10, 20, "x", expected, "a"),
            cas_failed(2, 11, 19, "x", expected, "b", Some("a")),
            get(3, 30, 31, "x", "a"),
        ]);
        assert_ok(&history);
        // The loser cannot have read the winner's value before the winner
        // was invoked.
        let mut history = initial.clone();
        history.extend([
            cas(1, 10, 20, "x", expected, "a"),
            cas_failed(2, 2, 5, "x", expected, "b", Some("a")),
        ]);
        assert_illegal(&history, "x");
        // Nor can the winner's value be gone without another write.
        let mut history = initial;
        history.extend([
            cas(1, 10, 20, "x", expected, "a"),
            cas_failed(2, 11, 19, "x", expected, "b", Some("a")),
            get(3, 30, 31, "x", "b"),
        ]);
        assert_illegal(&history, "x");
    }
}

#[test]
fn cas_two_winners_from_the_same_value_is_illegal() {
    let result = assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            cas(1, 10, 20, "x", Some("0"), "a"),
            cas(2, 10, 20, "x", Some("0"), "b"),
        ],
        "x",
    );
    let CheckResult::Illegal { explanation, .. } = result else {
        unreachable!()
    };
    assert!(
        explanation.summary.contains("swaps from \"0\""),
        "{}",
        explanation.summary
    );
    // From absent, too.
    assert_illegal(
        &[
            cas(1, 10, 20, "x", None, "a"),
            cas(2, 10, 20, "x", None, "b"),
        ],
        "x",
    );
    // A write of the expected value between them makes it legal...
    assert_ok(&[
        put(1, 0, 1, "x", "0"),
        cas(1, 10, 20, "x", Some("0"), "a"),
        put(3, 10, 20, "x", "0"),
        cas(2, 10, 20, "x", Some("0"), "b"),
    ]);
    // ... even one of unknown outcome that no get returned: it may be
    // what let the second swap succeed.
    assert_ok(&[
        put(1, 0, 1, "x", "0"),
        cas(1, 10, 20, "x", Some("0"), "a"),
        Operation::put_unknown(3, 10, "x", "0"),
        cas(2, 30, 40, "x", Some("0"), "b"),
    ]);
    // ... but not one that responded before both were invoked.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            put(3, 2, 3, "x", "0"),
            cas(1, 10, 20, "x", Some("0"), "a"),
            cas(2, 10, 20, "x", Some("0"), "b"),
        ],
        "x",
    );
}

#[test]
fn cas_failed_reading_a_value_never_current_is_illegal() {
    // "0" was overwritten before the swap was invoked.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            put(1, 2, 3, "x", "1"),
            cas_failed(2, 10, 20, "x", Some("1"), "2", Some("0")),
        ],
        "x",
    );
    // The key was written before: it cannot be absent.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            cas_failed(2, 10, 20, "x", Some("1"), "2", None),
        ],
        "x",
    );
    // A value nothing wrote.
    let result = assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            cas_failed(2, 10, 20, "x", Some("0"), "2", Some("ghost")),
        ],
        "x",
    );
    let CheckResult::Illegal { explanation, .. } = result else {
        unreachable!()
    };
    assert_eq!(explanation.unplaced, vec![1]);
    // While a write of it is in flight, it may well have been current.
    assert_ok(&[
        put(1, 0, 1, "x", "0"),
        put(1, 2, 30, "x", "1"),
        cas_failed(2, 10, 20, "x", Some("1"), "2", Some("0")),
    ]);
}

#[test]
fn cas_swapped_from_a_value_never_current_is_illegal() {
    // At every point the swap may take effect, the value is "1".
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            put(1, 2, 3, "x", "1"),
            cas(2, 10, 20, "x", Some("0"), "2"),
        ],
        "x",
    );
    assert_illegal(
        &[put(1, 0, 1, "x", "0"), cas(2, 10, 20, "x", None, "2")],
        "x",
    );
    // A value nothing wrote.
    assert_illegal(&[cas(2, 10, 20, "x", Some("ghost"), "2")], "x");
    // A concurrent overwrite leaves a point where it held.
    assert_ok(&[
        put(1, 0, 1, "x", "0"),
        put(1, 12, 13, "x", "1"),
        cas(2, 10, 20, "x", Some("0"), "2"),
    ]);
    // ... and the value it leaves is what later reads see.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            put(1, 12, 13, "x", "1"),
            cas(2, 10, 20, "x", Some("0"), "2"),
            get(3, 30, 31, "x", "2"),
        ],
        "x",
    );
}

#[test]
fn cas_unknown_seen_only_if_its_expected_value_could_hold() {
    // It found "0" and wrote "s", seen later.
    assert_ok(&[
        put(1, 0, 1, "x", "0"),
        cas_unknown(2, 5, "x", Some("0"), "s"),
        get(3, 100, 101, "x", "s"),
    ]);
    // "0" was gone before it was invoked: it cannot have swapped.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            put(1, 2, 3, "x", "1"),
            cas_unknown(2, 5, "x", Some("0"), "s"),
            get(3, 100, 101, "x", "s"),
        ],
        "x",
    );
    // "0" was never there at all.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "1"),
            cas_unknown(2, 5, "x", Some("0"), "s"),
            get(3, 100, 101, "x", "s"),
        ],
        "x",
    );
    // Absent is expected; the key was written before it was invoked.
    assert_illegal(
        &[
            put(1, 0, 1, "x", "1"),
            cas_unknown(2, 5, "x", None, "s"),
            get(3, 100, 101, "x", "s"),
        ],
        "x",
    );
    // An unknown put of "0" (which no get returned) may have made it
    // possible.
    assert_ok(&[
        put(1, 0, 1, "x", "1"),
        Operation::put_unknown(3, 4, "x", "0"),
        cas_unknown(2, 5, "x", Some("0"), "s"),
        get(3, 100, 101, "x", "s"),
    ]);
    // It held "0" only until a put of "1" that then must come before the
    // swap, which leaves "s", not "1".
    assert_illegal(
        &[
            put(1, 0, 1, "x", "0"),
            cas_unknown(2, 5, "x", Some("0"), "s"),
            put(1, 10, 11, "x", "1"),
            get(3, 100, 101, "x", "s"),
            get(3, 110, 111, "x", "1"),
        ],
        "x",
    );
    // Never seen: it may not have happened at all.
    assert_ok(&[
        put(1, 0, 1, "x", "0"),
        cas_unknown(2, 5, "x", Some("0"), "s"),
        get(3, 100, 101, "x", "0"),
    ]);
}

#[test]
fn cas_failed_with_its_expected_value_is_invalid() {
    for expected in [Some("0"), None] {
        let result = check(&[
            put(1, 0, 1, "y", "0"),
            cas_failed(2, 10, 20, "x", expected, "a", expected),
        ]);
        let CheckResult::Invalid { index, reason } = &result else {
            panic!("expected invalid, got {result}");
        };
        assert_eq!(*index, 1);
        assert!(reason.contains("expected"), "{reason}");
    }
    // A failed swap answered before its invocation is invalid too.
    let result = check(&[cas_failed(2, 20, 10, "x", None, "a", Some("b"))]);
    assert!(
        matches!(result, CheckResult::Invalid { index: 0, .. }),
        "{result}"
    );
}

#[test]
fn cas_is_displayed() {
    let op = cas_failed(2, 10, 20, "x", None, "a", Some("b"));
    assert_eq!(
        op.to_string(),
        "client 2 cas(\"x\", absent→\"a\") [10, 20] → \"b\""
    );
    let op = cas(2, 10, 20, "x", Some("0"), "a");
    assert_eq!(
        op.to_string(),
        "client 2 cas(\"x\", \"0\"→\"a\") [10, 20] → ok"
    );
    let op = cas_unknown(2, 10, "x", Some("0"), "a");
    assert_eq!(
        op.to_string(),
        "client 2 cas(\"x\", \"0\"→\"a\") [10, ∞) → unknown"
    );
}

// ---------------------------------------------------------------------------
// Differential test against a brute-force checker.

/// Brute force over the whole store (no partitioning, no entry list, no
/// ordering heuristics or pruning; only a memo of failed states): is there
/// an order of all acknowledged operations, plus any subset of the unknown
/// ones, that respects real time and the sequential store?
fn brute_force(history: &[Operation]) -> bool {
    type Store = BTreeMap<Vec<u8>, Vec<u8>>;
    struct Brute<'a> {
        ops: Vec<&'a Operation>,
        failed: HashSet<(u64, Store)>,
    }
    fn ret(op: &Operation) -> u64 {
        if op.output == Output::Unknown {
            u64::MAX
        } else {
            op.ret
        }
    }
    impl Brute<'_> {
        fn go(&mut self, done: u64, store: &Store) -> bool {
            let ops = &self.ops;
            if (0..ops.len()).all(|i| done & (1 << i) != 0 || ops[i].output == Output::Unknown) {
                return true;
            }
            if self.failed.contains(&(done, store.clone())) {
                return false;
            }
            for i in 0..self.ops.len() {
                if done & (1 << i) != 0 {
                    continue;
                }
                let op = self.ops[i];
                // Every op that responded before this one's invocation must
                // already be placed.
                let ready = (0..self.ops.len())
                    .all(|j| done & (1 << j) != 0 || j == i || ret(self.ops[j]) >= op.call);
                if !ready {
                    continue;
                }
                let mut next = store.clone();
                let legal = match (&op.input, &op.output) {
                    (Input::Put { key, value }, _) => {
                        next.insert(key.clone(), value.clone());
                        true
                    }
                    (Input::Delete { key }, _) => {
                        next.remove(key);
                        true
                    }
                    (Input::Get { key }, Output::Value(value)) => store.get(key) == value.as_ref(),
                    (Input::Get { .. }, _) => false,
                    // Did not swap: a read of what it found.
                    (Input::Cas { key, .. }, Output::Value(found)) => {
                        store.get(key) == found.as_ref()
                    }
                    // Swapped (or, unknown, may have): only from `expected`.
                    (
                        Input::Cas {
                            key,
                            expected,
                            value,
                        },
                        _,
                    ) => {
                        next.insert(key.clone(), value.clone());
                        store.get(key) == expected.as_ref()
                    }
                };
                if legal && self.go(done | (1 << i), &next) {
                    return true;
                }
            }
            self.failed.insert((done, store.clone()));
            false
        }
    }
    let ops: Vec<&Operation> = history
        .iter()
        .filter(|op| !(matches!(op.input, Input::Get { .. }) && op.output == Output::Unknown))
        .collect();
    assert!(ops.len() <= 64, "brute force takes at most 64 operations");
    Brute {
        ops,
        failed: HashSet::new(),
    }
    .go(0, &BTreeMap::new())
}

fn small_op() -> impl Strategy<Value = Operation> {
    (
        0u64..3,
        0u64..12,
        0u64..6,
        prop::sample::select(vec!["a", "b"]),
        0u8..10,
        0u8..4,
        0u8..10,
    )
        .prop_map(|(client, call, duration, key, kind, value, outcome)| {
            let value = ["1", "2", "3", "4"][usize::from(value)];
            let ret = call + duration;
            let mut op = match kind {
                0..=3 => put(client, call, ret, key, value),
                4 => delete(client, call, ret, key),
                5..=7 => get(client, call, ret, key, value),
                _ => get_none(client, call, ret, key),
            };
            if outcome < 2 {
                op.output = Output::Unknown;
                op.ret = u64::MAX;
            }
            op
        })
}

/// A compare-and-swap as `small_op` makes them: same keys and values,
/// expecting absent one time in five; swapped, failed (finding another
/// value or absent) or unknown.
fn small_swap() -> impl Strategy<Value = Operation> {
    (
        0u64..3,
        0u64..12,
        0u64..6,
        prop::sample::select(vec!["a", "b"]),
        0usize..5,
        0usize..4,
        0usize..5,
        0u8..10,
    )
        .prop_map(
            |(client, call, duration, key, expected, value, found, outcome)| {
                // Index 4 is absent.
                let values = [Some("1"), Some("2"), Some("3"), Some("4"), None];
                let expected = values[expected];
                let value = ["1", "2", "3", "4"][value];
                let ret = call + duration;
                match outcome {
                    0..=2 => cas_unknown(client, call, key, expected, value),
                    3..=6 => cas(client, call, ret, key, expected, value),
                    _ => {
                        // Never what it expected (that would be malformed).
                        let found = if values[found] == expected {
                            values[(found + 1) % values.len()]
                        } else {
                            values[found]
                        };
                        cas_failed(client, call, ret, key, expected, value, found)
                    }
                }
            },
        )
}

/// How many cases the brute-force comparisons run: `default`, or
/// RINGRAFT_LIN_CASES=… for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("RINGRAFT_LIN_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// The checker (with no budget) and the brute force agree on `history`.
fn agrees_with_brute_force(history: &[Operation]) -> Result<(), TestCaseError> {
    let expected = brute_force(history);
    let result = check_with_budget(history, Budget::unlimited());
    prop_assert_eq!(result.is_ok(), expected, "{}\n{:#?}", result, history);
    prop_assert!(result.is_ok() || result.is_illegal(), "{}", result);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3_000)))]

    #[test]
    fn agrees_with_brute_force_on_small_histories(
        history in prop::collection::vec(small_op(), 0..8)
    ) {
        agrees_with_brute_force(&history)?;
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories_with_swaps(
        history in prop::collection::vec(
            prop_oneof![3 => small_op(), 2 => small_swap()],
            0..9,
        )
    ) {
        agrees_with_brute_force(&history)?;
    }
}

// ---------------------------------------------------------------------------
// Histories from a real sequential execution with overlapping timing.

/// `true` in `percent` cases out of 100.
fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

/// A history of `clients` clients, each issuing `ops_per_client` operations
/// one after another on `keys` keys, with random durations; every operation
/// takes effect at a random point of its interval, and the outputs are
/// those of running the operations in the order of those points on a real
/// `KvStore`. `unknown_percent` of the writes lose their answer: those take
/// effect at any point after their invocation (even after the client moved
/// on), or not at all. Values are unique per put.
fn generate(
    seed: u64,
    clients: u64,
    ops_per_client: u64,
    keys: u64,
    unknown_percent: u64,
) -> Vec<Operation> {
    generate_with(seed, clients, ops_per_client, keys, unknown_percent, false)
}

/// [`generate`], with compare-and-swaps among the operations if `swaps`
/// (three in thirteen; each writes a fresh value): at its point, a swap
/// expects the value the key then holds in 60% of the cases (and swaps),
/// another one otherwise (and fails, finding the current value). Without
/// swaps, the same as `generate` (the same random draws).
fn generate_with(
    seed: u64,
    clients: u64,
    ops_per_client: u64,
    keys: u64,
    unknown_percent: u64,
    swaps: bool,
) -> Vec<Operation> {
    let mut rng = Rng::new(seed);
    let mut guesses = Rng::new(seed ^ 0x5a5a_5a5a);
    // (linearization point, tie-break, op, applied?)
    let mut planned: Vec<(u64, u64, Operation, bool)> = Vec::new();
    let mut next_value = 0u64;
    for client in 0..clients {
        let mut now = rng.below(10);
        for _ in 0..ops_per_client {
            let call = now + rng.below(5);
            let duration = rng.below(30);
            let ret = call + duration;
            let key = format!("k{}", rng.below(keys));
            let mut op = match rng.below(if swaps { 13 } else { 10 }) {
                0..=3 => {
                    next_value += 1;
                    put(client, call, ret, &key, &format!("v{next_value}"))
                }
                4 => delete(client, call, ret, &key),
                5..=9 => get_none(client, call, ret, &key),
                // The expected value is filled in at the swap's point.
                _ => {
                    next_value += 1;
                    cas(client, call, ret, &key, None, &format!("v{next_value}"))
                }
            };
            let mut point = call + rng.below(duration + 1);
            let mut applied = true;
            if !matches!(op.input, Input::Get { .. }) && chance(&mut rng, unknown_percent) {
                op.output = Output::Unknown;
                op.ret = u64::MAX;
                applied = chance(&mut rng, 60);
                point = call + rng.below(400);
            }
            planned.push((point, rng.next_u64(), op, applied));
            now = ret;
        }
    }
    planned.sort_by_key(|(point, tie, _, _)| (*point, *tie));
    let mut store = KvStore::new();
    let mut history = Vec::with_capacity(planned.len());
    // Per key, the values written so far (for swaps that guess wrong).
    let mut written: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for (_, _, mut op, applied) in planned {
        if let Input::Cas {
            key,
            expected,
            value,
        } = &mut op.input
        {
            let current = store.get(key).map(<[u8]>::to_vec);
            let mut wrong: Vec<Option<Vec<u8>>> = written
                .get(key.as_slice())
                .into_iter()
                .flatten()
                .map(|value| Some(value.clone()))
                .chain([None, Some(b"never".to_vec())])
                .filter(|value| *value != current)
                .collect();
            *expected = if chance(&mut guesses, 60) {
                current.clone()
            } else {
                wrong.swap_remove(guesses.below(wrong.len() as u64) as usize)
            };
            let swapped = *expected == current;
            if swapped && applied {
                store.execute(KvCommand::put(key, value));
                written.entry(key.clone()).or_default().push(value.clone());
            }
            if op.output != Output::Unknown {
                op.output = if swapped {
                    Output::Ok
                } else {
                    Output::Value(current)
                };
            }
            history.push(op);
            continue;
        }
        match &op.input {
            Input::Put { key, value } if applied => {
                store.execute(KvCommand::put(key, value));
                written.entry(key.clone()).or_default().push(value.clone());
            }
            Input::Delete { key } if applied => {
                store.execute(KvCommand::delete(key));
            }
            Input::Get { key } => {
                op.output = Output::Value(store.get(key).map(<[u8]>::to_vec));
            }
            _ => {}
        }
        history.push(op);
    }
    // The checker does not care about order; shuffle a little anyway.
    history.sort_by_key(|op| (op.client, op.call));
    history
}

/// A random history (not from an execution): up to `max_ops` operations on
/// one or two keys, values from a small set (so they repeat), random
/// timings, some unknown outcomes; with compare-and-swaps if `swaps`
/// (without, the same random draws as before swaps existed). Mostly
/// illegal, sometimes not.
fn random_history(rng: &mut Rng, max_ops: u64, swaps: bool) -> Vec<Operation> {
    let keys = 1 + rng.below(2);
    (0..=rng.below(max_ops))
        .map(|_| {
            let client = rng.below(4);
            let call = rng.below(20);
            let ret = call + rng.below(8);
            let key = format!("k{}", rng.below(keys));
            let value = format!("{}", rng.below(3));
            let mut op = match rng.below(if swaps { 14 } else { 10 }) {
                0..=3 => put(client, call, ret, &key, &value),
                4 => delete(client, call, ret, &key),
                5..=7 => get(client, call, ret, &key, &value),
                8 | 9 => get_none(client, call, ret, &key),
                _ => {
                    // Expected and found: one of the values, or absent.
                    let values = [Some("0"), Some("1"), Some("2"), None];
                    let expected = values[rng.below(4) as usize];
                    if chance(rng, 50) {
                        cas(client, call, ret, &key, expected, &value)
                    } else {
                        let others: Vec<Option<&str>> =
                            values.into_iter().filter(|v| *v != expected).collect();
                        let found = others[rng.below(others.len() as u64) as usize];
                        cas_failed(client, call, ret, &key, expected, &value, found)
                    }
                }
            };
            if chance(rng, 15) {
                op.output = Output::Unknown;
                op.ret = u64::MAX;
            }
            op
        })
        .collect()
}

/// Changes a linearizable history a little: a read returns another value
/// of its key (or absent), a put writes another value of its key, or two
/// reads of a key swap answers. The result may or may not be linearizable.
fn mutate(rng: &mut Rng, history: &mut [Operation]) {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].input, Input::Get { .. }))
        .collect();
    let puts: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].input, Input::Put { .. }))
        .collect();
    let values_of = |history: &[Operation], key: &[u8]| -> Vec<Vec<u8>> {
        history
            .iter()
            .filter_map(|op| match &op.input {
                Input::Put { key: k, value } if k.as_slice() == key => Some(value.clone()),
                _ => None,
            })
            .collect()
    };
    match rng.below(4) {
        0 | 1 if !reads.is_empty() => {
            let victim = reads[rng.below(reads.len() as u64) as usize];
            let mut choices: Vec<Option<Vec<u8>>> = values_of(history, history[victim].input.key())
                .into_iter()
                .map(Some)
                .collect();
            choices.push(None);
            let choice = choices[rng.below(choices.len() as u64) as usize].clone();
            history[victim].output = Output::Value(choice);
        }
        2 if !puts.is_empty() => {
            let victim = puts[rng.below(puts.len() as u64) as usize];
            let values = values_of(history, history[victim].input.key());
            let replacement = values[rng.below(values.len() as u64) as usize].clone();
            if let Input::Put { value, .. } = &mut history[victim].input {
                *value = replacement;
            }
        }
        _ if reads.len() >= 2 => {
            let a = reads[rng.below(reads.len() as u64) as usize];
            let b = reads[rng.below(reads.len() as u64) as usize];
            if history[a].input.key() == history[b].input.key() {
                let output = history[a].output.clone();
                history[a].output = history[b].output.clone();
                history[b].output = output;
            }
        }
        _ => {}
    }
}

/// Changes a linearizable history with compare-and-swaps a little: a swap
/// that swapped fails instead (finding another value of its key, or
/// absent), a failed one swaps, a swap expects another value, or a failed
/// one finds another value; or else one of [`mutate`]'s changes. Never
/// makes a failed swap find what it expected (that would be malformed).
fn mutate_swaps(rng: &mut Rng, history: &mut [Operation]) {
    let swaps: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].input, Input::Cas { .. }))
        .collect();
    if swaps.is_empty() || chance(rng, 30) {
        mutate(rng, history);
        return;
    }
    let victim = swaps[rng.below(swaps.len() as u64) as usize];
    // The values of the victim's key, and absent.
    let mut choices: Vec<Option<Vec<u8>>> = vec![None];
    for op in history.iter() {
        match &op.input {
            Input::Put { key, value } | Input::Cas { key, value, .. }
                if key.as_slice() == history[victim].input.key() =>
            {
                choices.push(Some(value.clone()));
            }
            _ => {}
        }
    }
    let op = &mut history[victim];
    let Input::Cas { expected, .. } = &mut op.input else {
        unreachable!()
    };
    let pick = |rng: &mut Rng, exclude: &Option<Vec<u8>>| {
        let others: Vec<&Option<Vec<u8>>> = choices.iter().filter(|c| *c != exclude).collect();
        others[rng.below(others.len() as u64) as usize].clone()
    };
    match &op.output {
        Output::Ok => {
            if chance(rng, 50) {
                op.output = Output::Value(pick(rng, expected));
            } else {
                *expected = pick(rng, expected);
            }
        }
        Output::Value(_) => {
            op.output = if chance(rng, 50) {
                Output::Ok
            } else {
                Output::Value(pick(rng, expected))
            };
        }
        Output::Unknown => *expected = pick(rng, expected),
    }
}

/// Runs `cases` seeds (half random histories, half mutated generated ones,
/// with compare-and-swaps if `swaps`) through the checker and the brute
/// force, which must agree; each of the four kinds (random or mutated,
/// linearizable or not) must be common enough to count.
fn differential(cases: u64, swaps: bool) {
    // [random, mutated] x [linearizable, not]
    let mut verdicts = [[0u32; 2]; 2];
    let started = Instant::now();
    for seed in 0..cases {
        let mut rng = Rng::new(seed);
        let mutated = seed % 2 == 1;
        let history = if mutated {
            let (clients, per_client, keys) =
                (1 + rng.below(4), 1 + rng.below(5), 1 + rng.below(2));
            let mut history = generate_with(rng.next_u64(), clients, per_client, keys, 20, swaps);
            if swaps {
                mutate_swaps(&mut rng, &mut history);
            } else {
                mutate(&mut rng, &mut history);
            }
            history
        } else {
            random_history(&mut rng, 12, swaps)
        };
        let expected = brute_force(&history);
        let result = check_with_budget(&history, Budget::unlimited());
        assert_eq!(
            result.is_ok(),
            expected,
            "seed {seed}: {result}\n{history:#?}"
        );
        assert!(result.is_ok() || result.is_illegal(), "{result}");
        verdicts[usize::from(mutated)][usize::from(!expected)] += 1;
    }
    eprintln!(
        "{}random: {} linearizable, {} not; mutated: {} linearizable, {} not; in {:?}",
        if swaps { "with swaps: " } else { "" },
        verdicts[0][0],
        verdicts[0][1],
        verdicts[1][0],
        verdicts[1][1],
        started.elapsed()
    );
    for kind in verdicts {
        for count in kind {
            assert!(
                u64::from(count) >= cases / 20,
                "too few of a kind: {verdicts:?}"
            );
        }
    }
}

#[test]
fn agrees_with_brute_force_on_random_and_mutated_histories() {
    differential(u64::from(cases(20_000)), false);
}

#[test]
fn agrees_with_brute_force_on_random_and_mutated_histories_with_swaps() {
    differential(u64::from(cases(20_000)), true);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn generated_histories_are_linearizable(
        seed in any::<u64>(),
        clients in 1u64..6,
        ops_per_client in 1u64..60,
        keys in 1u64..5,
        unknown_percent in 0u64..30,
    ) {
        let history = generate(seed, clients, ops_per_client, keys, unknown_percent);
        let result = check(&history);
        prop_assert_eq!(&result, &CheckResult::Ok, "{}\n{:#?}", result, history);
    }

    #[test]
    fn generated_histories_with_swaps_are_linearizable(
        seed in any::<u64>(),
        clients in 1u64..6,
        ops_per_client in 1u64..60,
        keys in 1u64..5,
        unknown_percent in 0u64..30,
    ) {
        let history = generate_with(seed, clients, ops_per_client, keys, unknown_percent, true);
        let result = check(&history);
        prop_assert_eq!(&result, &CheckResult::Ok, "{}\n{:#?}", result, history);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_illegal(
        seed in any::<u64>(),
        clients in 1u64..6,
        ops_per_client in 5u64..60,
        keys in 1u64..5,
        unknown_percent in 0u64..30,
        pick in any::<prop::sample::Index>(),
    ) {
        let mut history = generate(seed, clients, ops_per_client, keys, unknown_percent);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].input, Input::Get { .. }))
            .collect();
        prop_assume!(!reads.is_empty());
        let victim = reads[pick.index(reads.len())];
        history[victim].output = Output::Value(Some(b"never written".to_vec()));
        let key = history[victim].input.key().to_vec();
        match check(&history) {
            CheckResult::Illegal { key: bad, explanation } => {
                prop_assert_eq!(bad, key);
                prop_assert!(explanation.unplaced.contains(&victim));
            }
            other => prop_assert!(false, "expected illegal, got {}", other),
        }
    }

    #[test]
    fn a_stale_read_after_everything_is_illegal(
        seed in any::<u64>(),
        clients in 1u64..6,
        ops_per_client in 5u64..60,
        keys in 1u64..5,
        unknown_percent in 0u64..30,
        pick in any::<prop::sample::Index>(),
    ) {
        let mut history = generate(seed, clients, ops_per_client, keys, unknown_percent);
        // An acknowledged put, then, after every operation completed, a
        // new acknowledged put on its key and a read of the old value:
        // values are unique, so nothing else can have written it back.
        let puts: Vec<usize> = (0..history.len())
            .filter(|&i| {
                matches!(history[i].input, Input::Put { .. }) && history[i].output == Output::Ok
            })
            .collect();
        prop_assume!(!puts.is_empty());
        let old = history[puts[pick.index(puts.len())]].clone();
        let Input::Put { key, value } = old.input else { unreachable!() };
        let end = history
            .iter()
            .map(|op| if op.output == Output::Unknown { op.call } else { op.ret })
            .max()
            .unwrap_or(0)
            + 1_000;
        history.push(Operation::put(9, end, end + 1, key.clone(), b"fresh".to_vec()));
        history.push(Operation::get(9, end + 2, end + 3, key.clone(), value));
        match check(&history) {
            CheckResult::Illegal { key: bad, .. } => prop_assert_eq!(bad, key),
            other => prop_assert!(false, "expected illegal, got {}", other),
        }
    }
}

// ---------------------------------------------------------------------------
// The recorder in front of the real state machine.

/// Runs `input` on `kv` atomically; a compare-and-swap as an etcd
/// transaction would (compare the value, put or read).
fn apply(kv: &mut KvStore, input: Input) -> Output {
    match input {
        Input::Put { key, value } => {
            kv.execute(KvCommand::put(&key, &value));
            Output::Ok
        }
        Input::Delete { key } => {
            kv.execute(KvCommand::delete(&key));
            Output::Ok
        }
        Input::Get { key } => Output::Value(kv.get(&key).map(<[u8]>::to_vec)),
        Input::Cas {
            key,
            expected,
            value,
        } => {
            let found = kv.get(&key).map(<[u8]>::to_vec);
            if found == expected {
                kv.execute(KvCommand::put(&key, &value));
                Output::Ok
            } else {
                Output::Value(found)
            }
        }
    }
}

#[test]
fn recorder_with_threads_racing_swaps_over_a_shared_kv_store() {
    // Each client reads a counter and swaps it for the next number (or
    // its own mark), as a lock-free increment would; answers get lost now
    // and then.
    let recorder = Arc::new(HistoryRecorder::new());
    let store = Arc::new(Mutex::new(KvStore::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|client| {
            let recorder = recorder.clone();
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(client + 1);
                let mut seen: Option<Vec<u8>> = None;
                for n in 0..300u64 {
                    let key = b"counter".to_vec();
                    let input = if rng.below(3) == 0 {
                        Input::Get { key }
                    } else {
                        Input::Cas {
                            key,
                            expected: seen.clone(),
                            value: format!("{client}-{n}").into_bytes(),
                        }
                    };
                    let token = recorder.invoke(client, input.clone());
                    let output = apply(&mut store.lock().expect("store"), input.clone());
                    match (&input, &output) {
                        (Input::Cas { value, .. }, Output::Ok) => seen = Some(value.clone()),
                        (_, Output::Value(found)) => seen = found.clone(),
                        _ => {}
                    }
                    if n % 40 == 39 {
                        recorder.complete_unknown(token);
                    } else {
                        recorder.complete(token, output);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    let mut history = recorder.history();
    let swapped = history
        .iter()
        .filter(|op| matches!(op.input, Input::Cas { .. }) && op.output == Output::Ok)
        .count();
    assert!(swapped > 10, "only {swapped} swaps succeeded");
    let result = check(&history);
    assert_eq!(result, CheckResult::Ok, "{result}");
    // Turning the last successful swap into a second winner from the same
    // expected value as the one before it is caught.
    let winners: Vec<usize> = (0..history.len())
        .filter(|&i| {
            matches!(history[i].input, Input::Cas { .. }) && history[i].output == Output::Ok
        })
        .collect();
    let (first, second) = (winners[winners.len() - 2], winners[winners.len() - 1]);
    let expected = match &history[first].input {
        Input::Cas { expected, .. } => expected.clone(),
        _ => unreachable!(),
    };
    if let Input::Cas { expected: e, .. } = &mut history[second].input {
        *e = expected;
    }
    let result = check(&history);
    assert!(result.is_illegal(), "{result}");
}

#[test]
fn recorder_with_threads_over_a_shared_kv_store() {
    let recorder = Arc::new(HistoryRecorder::new());
    let store = Arc::new(Mutex::new(KvStore::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|client| {
            let recorder = recorder.clone();
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(client + 1);
                for n in 0..500 {
                    let key = format!("k{}", rng.below(3)).into_bytes();
                    let kind = rng.below(4);
                    let input = match kind {
                        0 => Input::Put {
                            key: key.clone(),
                            value: format!("{client}-{n}").into_bytes(),
                        },
                        1 => Input::Delete { key: key.clone() },
                        _ => Input::Get { key: key.clone() },
                    };
                    let token = recorder.invoke(client, input.clone());
                    let output = apply(&mut store.lock().expect("store"), input);
                    if n % 50 == 49 {
                        // Pretend the answer got lost.
                        recorder.complete_unknown(token);
                    } else {
                        recorder.complete(token, output);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    assert_eq!(recorder.len(), 2_000);
    let started = Instant::now();
    let result = recorder.check();
    eprintln!(
        "2,000 recorded ops from 4 threads checked in {:?}",
        started.elapsed()
    );
    assert_eq!(result, CheckResult::Ok, "{result}");
}

#[test]
fn recorder_catches_a_read_from_a_stale_replica() {
    let recorder = HistoryRecorder::new();
    let mut leader = KvStore::new();
    let token = recorder.invoke(
        1,
        Input::Put {
            key: b"x".to_vec(),
            value: b"1".to_vec(),
        },
    );
    leader.execute(KvCommand::put(b"x", b"1"));
    recorder.complete(token, Output::Ok);
    let lagging = leader.clone();
    let token = recorder.invoke(
        1,
        Input::Put {
            key: b"x".to_vec(),
            value: b"2".to_vec(),
        },
    );
    leader.execute(KvCommand::put(b"x", b"2"));
    recorder.complete(token, Output::Ok);
    // A read served by a replica that has not applied the second put.
    let token = recorder.invoke(2, Input::Get { key: b"x".to_vec() });
    recorder.complete(token, Output::Value(lagging.get(b"x").map(<[u8]>::to_vec)));
    let result = recorder.check();
    assert!(result.is_illegal(), "{result}");
    eprintln!("{result}");
}

// ---------------------------------------------------------------------------
// Performance sanity.

#[test]
fn three_clients_two_thousand_ops_ten_keys_check_quickly() {
    for (clients, ops_per_client, keys, unknown) in [
        (3, 667, 10, 0),
        (3, 667, 10, 5),
        (10, 1_000, 10, 5),
        (20, 500, 1, 2),
    ] {
        let history = generate(0x5eed, clients, ops_per_client, keys, unknown);
        let started = Instant::now();
        let result = check(&history);
        let elapsed = started.elapsed();
        eprintln!(
            "{clients} clients, {} ops, {keys} keys, {unknown}% unknown writes: {result} in {elapsed:?}",
            history.len()
        );
        assert_eq!(result, CheckResult::Ok, "{result}");
    }
}

/// Not run by default (`--ignored`): single-key histories with heavy
/// contention, linearizable and mutated, with their check times. Illegal
/// ones need an exhaustive search, the checker's worst case.
#[test]
#[ignore]
fn stress_single_key_contention() {
    for unknown in [0, 10] {
        for clients in [3, 10, 20] {
            for ops in [100, 400] {
                let history = generate(0x5eed, clients, ops, 1, unknown);
                let started = Instant::now();
                let result = check(&history);
                let ok_time = started.elapsed();
                let (mut illegal, mut timeouts) = (0, 0);
                let mut worst = std::time::Duration::ZERO;
                for seed in 0..20 {
                    let mut mutated = history.clone();
                    mutate(&mut Rng::new(seed), &mut mutated);
                    let started = Instant::now();
                    let result = check(&mutated);
                    worst = worst.max(started.elapsed());
                    illegal += u32::from(result.is_illegal());
                    timeouts += u32::from(matches!(result, CheckResult::Timeout { .. }));
                }
                eprintln!(
                    "{unknown}% unknown, {clients} clients x {ops} ops on one key: {result} in \
                     {ok_time:?}; 20 mutations: {illegal} illegal, {timeouts} timeouts, worst {worst:?}"
                );
            }
        }
    }
}
