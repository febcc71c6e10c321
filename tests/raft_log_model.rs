//! Model-based property test of the raft log: random sequences of appends
//! (with truncation), pipelined hand-outs and in-order persistence
//! acknowledgements, commits, applies, compactions and size-limited slices
//! are run against `RaftLog<MemoryStorage>` and against a plain `Vec` model.
//! After every step the log must read exactly like the model.

use proptest::prelude::*;
use ringraft::raft::storage::limited_len;
use ringraft::raft::{MemoryStorage, NO_LIMIT, RaftLog, Storage, StorageError};
use ringraft::raftpb::Entry;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    /// Append `count` entries of a new term, starting `back` entries before
    /// the end (clamped to just after the commit index).
    Append { back: u64, count: u64, size: u8 },
    /// Hand the next unstable entries out for persistence.
    HandOut,
    /// The oldest handed-out batch became durable.
    Persist,
    /// Commit `fraction`/255 of the way from commit to last index.
    Commit { fraction: u8 },
    /// Apply everything committed and durable (with asynchronous
    /// persistence only durable entries may be applied, which also keeps
    /// compaction below the unstable tail).
    Apply,
    /// Compact storage `fraction`/255 of the way up to the applied index.
    Compact { fraction: u8 },
    /// Read a slice with a size limit.
    Slice { from: u8, to: u8, max_size: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..4, 1u64..5, any::<u8>()).prop_map(|(back, count, size)| Op::Append { back, count, size }),
        2 => Just(Op::HandOut),
        2 => Just(Op::Persist),
        2 => any::<u8>().prop_map(|fraction| Op::Commit { fraction }),
        1 => Just(Op::Apply),
        1 => any::<u8>().prop_map(|fraction| Op::Compact { fraction }),
        2 => (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(from, to, max_size)| Op::Slice { from, to, max_size }),
    ]
}

struct Harness {
    log: RaftLog<MemoryStorage>,
    /// Every entry ever in the log that has not been truncated, from index 1.
    model: Vec<Entry>,
    /// Batches handed out and not yet acknowledged, in WAL order.
    in_flight: VecDeque<Vec<Entry>>,
    term: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            log: RaftLog::new(MemoryStorage::new()).expect("log"),
            model: Vec::new(),
            in_flight: VecDeque::new(),
            term: 0,
        }
    }

    fn last_index(&self) -> u64 {
        self.model.len() as u64
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Append { back, count, size } => {
                self.term += 1;
                let from = self
                    .last_index()
                    .saturating_sub(back)
                    .max(self.log.committed)
                    + 1;
                let entries: Vec<Entry> = (from..from + count)
                    .map(|index| Entry::new(self.term, index, vec![size; size as usize % 40]))
                    .collect();
                let last = self.log.append(&entries);
                self.model.truncate(from as usize - 1);
                self.model.extend(entries);
                assert_eq!(last, self.last_index());
            }
            Op::HandOut => {
                let batch = self.log.next_unstable_entries().to_vec();
                self.log.accept_unstable();
                if !batch.is_empty() {
                    self.in_flight.push_back(batch);
                }
                assert!(self.log.next_unstable_entries().is_empty());
            }
            Op::Persist => {
                if let Some(batch) = self.in_flight.pop_front() {
                    self.log.store_mut().append(&batch).expect("storage append");
                    let last = batch.last().expect("non-empty batch");
                    self.log.stable_to(last.index, last.term);
                }
            }
            Op::Commit { fraction } => {
                let committed = self.log.committed;
                let span = self.last_index() - committed;
                self.log.commit_to(committed + span * fraction as u64 / 255);
            }
            Op::Apply => {
                let appliable = self.log.max_appliable_index(false);
                if appliable > self.log.applied {
                    self.log.applied_to(appliable);
                }
            }
            Op::Compact { fraction } => {
                let first = self.log.store().first_index().expect("first");
                let stored_last = self.log.store().last_index().expect("last");
                let limit = self.log.applied.min(stored_last);
                if limit >= first {
                    let target = first + (limit - first) * fraction as u64 / 255;
                    // Storage may hold a stale suffix shadowed by unstable
                    // entries; compact only entries the model agrees with.
                    let stored_term = self.log.store().term(target).expect("term");
                    if stored_term == self.model[target as usize - 1].term {
                        self.log.store_mut().compact(target).expect("compact");
                    }
                }
            }
            Op::Slice { from, to, max_size } => self.check_slice(from, to, max_size),
        }
    }

    fn check_slice(&self, from: u8, to: u8, max_size: u16) {
        let first = self.log.first_index();
        let end = self.last_index() + 1;
        let low = first + (end - first) * from as u64 / 255;
        let high = low + (end - low) * to as u64 / 255;
        let max_size = if max_size == u16::MAX {
            NO_LIMIT
        } else {
            max_size as u64
        };
        let got = self.log.slice(low, high, max_size).expect("slice");
        let range = &self.model[low as usize - 1..high as usize - 1];
        let want = &range[..limited_len(range, max_size)];
        assert_eq!(got, want, "slice [{low}, {high}) limit {max_size}");
    }

    fn check(&self) {
        let log = &self.log;
        assert_eq!(log.last_index(), self.last_index());
        let first = log.first_index();
        assert_eq!(log.all_entries(), self.model[first as usize - 1..]);
        for index in first..=self.last_index() {
            assert_eq!(
                log.term(index),
                Ok(self.model[index as usize - 1].term),
                "term({index})"
            );
        }
        if first > 1 {
            assert_eq!(
                log.term(first - 2),
                Err(StorageError::Compacted { first_index: first })
            );
        }
        assert!(log.applied <= log.committed && log.committed <= log.last_index());
        let unstable = &log.unstable;
        assert!(unstable.offset <= unstable.offset_in_progress);
        assert!(unstable.offset_in_progress <= unstable.offset + unstable.entries.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn raft_log_reads_like_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.step(op);
            harness.check();
        }
        // Drain: everything handed out and persisted leaves nothing unstable.
        harness.step(&Op::HandOut);
        while !harness.in_flight.is_empty() {
            harness.step(&Op::Persist);
            harness.check();
        }
        prop_assert!(harness.log.unstable_entries().is_empty());
    }
}
