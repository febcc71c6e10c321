//! Unit tests of the pieces: the cache key, the per-key search on tiny
//! sub-histories, the preparation of a key's operations, validation, the
//! recorder. Whole-history verdicts live in `tests/linearizability.rs`.

use super::search::{Effect, KeyOp, Meter, Outcome, search};
use super::*;

fn known(call: u64, ret: u64, effect: Effect) -> KeyOp {
    KeyOp {
        call,
        ret: Some(ret),
        effect,
    }
}

fn unknown(call: u64, effect: Effect) -> KeyOp {
    KeyOp {
        call,
        ret: None,
        effect,
    }
}

fn run(ops: &[KeyOp]) -> Outcome {
    search(ops, &mut Meter::new(Budget::unlimited()))
}

#[test]
fn linearizability_search_sequential_and_concurrent() {
    use Effect::{Read, Write};
    assert_eq!(run(&[]), Outcome::Linearizable);
    assert_eq!(
        run(&[known(0, 1, Write(1)), known(2, 3, Read(1))]),
        Outcome::Linearizable
    );
    // Two concurrent writes, then reads agreeing on either order.
    for last in [1, 2] {
        assert_eq!(
            run(&[
                known(0, 10, Write(1)),
                known(0, 10, Write(2)),
                known(20, 30, Read(last)),
                known(40, 50, Read(last)),
            ]),
            Outcome::Linearizable
        );
    }
    // ... but not flip-flopping between them.
    assert!(matches!(
        run(&[
            known(0, 10, Write(1)),
            known(0, 10, Write(2)),
            known(20, 30, Read(1)),
            known(40, 50, Read(2)),
        ]),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn linearizability_search_reports_the_deepest_prefix() {
    use Effect::{Read, Write};
    let outcome = run(&[
        known(0, 10, Write(1)),
        known(20, 30, Write(2)),
        known(40, 50, Read(1)),
    ]);
    assert_eq!(
        outcome,
        Outcome::Illegal {
            prefix: vec![0, 1],
            state: 2
        }
    );
}

#[test]
fn linearizability_search_unknown_ops_are_optional() {
    use Effect::{Read, Write};
    // Seen.
    assert_eq!(
        run(&[unknown(0, Write(1)), known(5, 6, Read(1))]),
        Outcome::Linearizable
    );
    // Not seen, even long after.
    assert_eq!(
        run(&[unknown(0, Write(1)), known(1000, 1001, Read(ABSENT))]),
        Outcome::Linearizable
    );
    // Only unknown ops: nothing to place.
    assert_eq!(run(&[unknown(0, Write(1))]), Outcome::Linearizable);
    // Seen then unseen is not possible.
    assert!(matches!(
        run(&[
            known(0, 1, Write(1)),
            unknown(2, Write(2)),
            known(10, 11, Read(2)),
            known(20, 21, Read(1)),
        ]),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn linearizability_search_equal_timestamps_are_concurrent() {
    use Effect::{Read, Write};
    // The read is invoked at the write's response time: either order.
    assert_eq!(
        run(&[known(0, 10, Write(1)), known(10, 20, Read(ABSENT))]),
        Outcome::Linearizable
    );
    assert!(matches!(
        run(&[known(0, 10, Write(1)), known(11, 20, Read(ABSENT))]),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn linearizability_meter_bounds_the_search() {
    use Effect::{Read, Write};
    // Many concurrent writes followed by impossible reads: exponential
    // without the cache, and still large with it.
    let mut ops: Vec<KeyOp> = (1..=40).map(|v| known(0, 100, Write(v))).collect();
    ops.push(known(200, 201, Read(1)));
    ops.push(known(300, 301, Read(2)));
    let mut meter = Meter::new(Budget::steps(1_000));
    assert_eq!(search(&ops, &mut meter), Outcome::OutOfBudget);
    assert_eq!(meter.used(), 1_000);
}

#[test]
fn linearizability_prepare_drops_unread_unknown_writes_and_orders_ops() {
    let history = vec![
        Operation::put_unknown(1, 0, "k", "never read"),
        Operation::put(1, 5, 6, "k", "a"),
        Operation::put_unknown(2, 1, "k", "read"),
        Operation::delete_unknown(3, 2, "k"),
        Operation::get(1, 7, 8, "k", "read"),
    ];
    let prepared = KeyHistory::prepare(&history, &[0, 1, 2, 3, 4]);
    let Ok(prepared) = prepared else {
        panic!("prepare failed");
    };
    // The unknown put whose value was read is its value's only writer: it
    // happened, by the read's response, and sorts with the acknowledged
    // ones by invocation; the unread put and the delete (no get returned
    // "absent") are dropped.
    assert_eq!(prepared.origin, vec![2, 1, 4]);
    assert_eq!(prepared.ops[0].ret, Some(8));
    // With a second writer of the value, it may not have happened.
    let mut history = history;
    history.push(Operation::put(4, 20, 21, "k", "read"));
    let Ok(prepared) = KeyHistory::prepare(&history, &[0, 1, 2, 3, 4, 5]) else {
        panic!("prepare failed");
    };
    assert_eq!(prepared.origin, vec![1, 4, 5, 2]);
    assert_eq!(prepared.ops[3].ret, None);
}

#[test]
fn linearizability_prepare_rejects_a_value_never_written() {
    let history = vec![
        Operation::put(1, 0, 1, "k", "a"),
        Operation::get(1, 2, 3, "k", "b"),
    ];
    let Err(explanation) = KeyHistory::prepare(&history, &[0, 1]) else {
        panic!("a value never written must fail");
    };
    assert_eq!(explanation.unplaced, vec![1]);
    assert!(
        explanation.summary.contains("no put"),
        "{}",
        explanation.summary
    );
}

#[test]
fn linearizability_validation_rejects_malformed_operations() {
    let mut get_ok = Operation::get_none(1, 0, 1, "k");
    get_ok.output = Output::Ok;
    let mut put_value = Operation::put(1, 0, 1, "k", "v");
    put_value.output = Output::Value(None);
    let backwards = Operation::put(1, 5, 4, "k", "v");
    for op in [get_ok, put_value, backwards] {
        assert!(validate(&op).is_err(), "{op:?}");
        assert!(matches!(
            check(std::slice::from_ref(&op)),
            CheckResult::Invalid { index: 0, .. }
        ));
    }
    // An unknown get is ignored; an unknown put's response time is ignored.
    let mut unknown_get = Operation::get_none(1, 0, 0, "k");
    unknown_get.output = Output::Unknown;
    assert_eq!(validate(&unknown_get), Ok(false));
    let mut unknown_put = Operation::put_unknown(1, 9, "k", "v");
    unknown_put.ret = 0;
    assert_eq!(validate(&unknown_put), Ok(true));
}

#[test]
fn linearizability_recorder_records_and_ignores_foreign_tokens() {
    let recorder = HistoryRecorder::new();
    let other = HistoryRecorder::new();
    let put = recorder.invoke(
        1,
        Input::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    );
    let get = recorder.invoke(2, Input::Get { key: b"k".to_vec() });
    let lost = recorder.invoke(3, Input::Delete { key: b"k".to_vec() });
    recorder.complete(put, Output::Ok);
    recorder.complete(get, Output::Value(Some(b"v".to_vec())));
    let foreign = other.invoke(9, Input::Get { key: b"k".to_vec() });
    recorder.complete(foreign, Output::Value(None));
    drop(lost);
    let history = recorder.history();
    assert_eq!(history.len(), 3);
    assert!(history[0].call <= history[1].call);
    assert_eq!(history[0].output, Output::Ok);
    assert!(history[0].ret >= history[0].call);
    assert_eq!(history[2].output, Output::Unknown);
    assert_eq!(history[2].ret, u64::MAX);
    assert_eq!(recorder.check(), CheckResult::Ok);
    assert_eq!(other.history()[0].output, Output::Unknown);
}

#[test]
fn linearizability_search_swaps_need_their_expected_value() {
    use Effect::{Read, Swap, Write};
    let swap = |expected, value| Swap { expected, value };
    // From absent, then from what it wrote.
    assert_eq!(
        run(&[
            known(0, 1, swap(ABSENT, 1)),
            known(2, 3, swap(1, 2)),
            known(4, 5, Read(2)),
        ]),
        Outcome::Linearizable
    );
    // Two concurrent swaps from the same value: one of them fails to fit.
    assert!(matches!(
        run(&[
            known(0, 1, Write(1)),
            known(2, 10, swap(1, 2)),
            known(2, 10, swap(1, 3)),
        ]),
        Outcome::Illegal { .. }
    ));
    // ... unless a write of it may come between them.
    assert_eq!(
        run(&[
            known(0, 1, Write(1)),
            known(2, 10, swap(1, 2)),
            known(2, 10, swap(1, 3)),
            unknown(2, Write(1)),
        ]),
        Outcome::Linearizable
    );
    // An unknown swap: optional, and only where its value fits.
    assert_eq!(
        run(&[unknown(0, swap(1, 2)), known(5, 6, Read(ABSENT))]),
        Outcome::Linearizable
    );
    assert!(matches!(
        run(&[unknown(0, swap(1, 2)), known(5, 6, Read(2))]),
        Outcome::Illegal { .. }
    ));
    // An unknown write that no read returns, needed by an unknown swap
    // whose value a read returns.
    assert_eq!(
        run(&[
            unknown(0, Write(1)),
            unknown(0, swap(1, 2)),
            known(5, 6, Read(2)),
        ]),
        Outcome::Linearizable
    );
    // The swap is the first operation with a response: the value it needs
    // must be written before.
    assert_eq!(
        run(&[known(3, 4, swap(1, 2)), unknown(0, Write(1))]),
        Outcome::Linearizable
    );
    assert!(matches!(
        run(&[known(3, 4, swap(1, 2)), unknown(5, Write(1))]),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn linearizability_prepare_maps_swaps() {
    let history = vec![
        Operation::put_unknown(1, 0, "k", "0"),
        Operation::cas(2, 1, 2, "k", Some("0"), "a"),
        Operation::cas_failed(3, 3, 4, "k", Some("0"), "b", Some("a")),
        Operation::cas(4, 5, 6, "k", Some("a"), "a"),
        Operation::cas_unknown(5, 7, "k", Some("a"), "a"),
        Operation::cas_unknown(6, 8, "k", Some("never"), "c"),
        Operation::cas_unknown(7, 9, "k", Some("a"), "unread"),
    ];
    let Ok(prepared) = KeyHistory::prepare(&history, &[0, 1, 2, 3, 4, 5, 6]) else {
        panic!("prepare failed");
    };
    // The unknown put is read only by the swap from its value; it alone
    // writes "0", so it happened by the swap's response. The failed swap
    // is a read of "a", the swap from "a" to "a" too; the unknown swap
    // from "a" to "a" changes nothing, the one from a value nothing wrote
    // cannot have happened, the one whose value nothing reads needs not.
    assert_eq!(prepared.origin, vec![0, 1, 2, 3]);
    assert_eq!(prepared.ops[0].ret, Some(2));
    let zero = prepared.ops[0].effect;
    let Effect::Write(zero) = zero else {
        panic!("{zero:?}")
    };
    let Effect::Swap { expected, value: a } = prepared.ops[1].effect else {
        panic!("{:?}", prepared.ops[1].effect)
    };
    assert_eq!(expected, zero);
    assert_eq!(prepared.ops[2].effect, Effect::Read(a));
    assert_eq!(prepared.ops[3].effect, Effect::Read(a));
    // An acknowledged swap from a value nothing wrote fails at once.
    let history = vec![Operation::cas(1, 0, 1, "k", Some("never"), "a")];
    let Err(explanation) = KeyHistory::prepare(&history, &[0]) else {
        panic!("a swap from a value never written must fail");
    };
    assert_eq!(explanation.unplaced, vec![0]);
    assert!(
        explanation.summary.contains("no put or compare-and-swap"),
        "{}",
        explanation.summary
    );
}

#[test]
fn linearizability_validation_of_swaps() {
    assert_eq!(
        validate(&Operation::cas(1, 0, 1, "k", None::<&str>, "v")),
        Ok(true)
    );
    assert_eq!(
        validate(&Operation::cas_unknown(1, 5, "k", Some("a"), "v")),
        Ok(true)
    );
    assert_eq!(
        validate(&Operation::cas_failed(
            1,
            0,
            1,
            "k",
            Some("a"),
            "v",
            None::<&str>
        )),
        Ok(true)
    );
    let malformed = [
        Operation::cas_failed(1, 0, 1, "k", Some("a"), "v", Some("a")),
        Operation::cas_failed(1, 0, 1, "k", None::<&str>, "v", None::<&str>),
        Operation::cas(1, 5, 4, "k", Some("a"), "v"),
    ];
    for op in malformed {
        assert!(validate(&op).is_err(), "{op:?}");
    }
}

#[test]
fn linearizability_recorder_records_swaps() {
    let recorder = HistoryRecorder::new();
    let cas = |expected: Option<&[u8]>, value: &[u8]| Input::Cas {
        key: b"k".to_vec(),
        expected: expected.map(<[u8]>::to_vec),
        value: value.to_vec(),
    };
    let won = recorder.invoke(1, cas(None, b"a"));
    recorder.complete(won, Output::Ok);
    let lost = recorder.invoke(2, cas(None, b"b"));
    recorder.complete(lost, Output::Value(Some(b"a".to_vec())));
    let gone = recorder.invoke(3, cas(Some(b"a"), b"c"));
    recorder.complete_unknown(gone);
    let history = recorder.history();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1].input.key(), b"k");
    assert_eq!(history[2].ret, u64::MAX);
    assert_eq!(recorder.check(), CheckResult::Ok);
    // A second winner from absent is caught.
    let again = recorder.invoke(4, cas(None, b"d"));
    recorder.complete(again, Output::Ok);
    assert!(recorder.check().is_illegal());
}
