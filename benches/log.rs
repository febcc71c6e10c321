//! Micro-benchmarks of the raft log's hot paths: appending proposals to the
//! unstable tail, moving them to `MemoryStorage` once persisted, and reading
//! size-limited slices for MsgApp.
//!
//! Run: `cargo bench --bench log`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringraft::raft::{MemoryStorage, NO_LIMIT, RaftLog};
use ringraft::raftpb::Entry;
use std::hint::black_box;

const BATCH: u64 = 64;

fn batch(first_index: u64, payload_bytes: usize) -> Vec<Entry> {
    (first_index..first_index + BATCH)
        .map(|index| Entry::new(1, index, vec![0xab; payload_bytes]))
        .collect()
}

/// Append a batch, hand it out, persist it into MemoryStorage, mark it stable:
/// the life of a proposal batch in the raft actor, without the disk.
fn append_persist_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/append_persist");
    for payload_bytes in [16usize, 256] {
        group.throughput(Throughput::Elements(BATCH));
        group.bench_with_input(
            BenchmarkId::from_parameter(payload_bytes),
            &payload_bytes,
            |b, &payload_bytes| {
                let mut log = RaftLog::new(MemoryStorage::new()).expect("log");
                b.iter(|| {
                    let entries = batch(log.last_index() + 1, payload_bytes);
                    let last = log.append(&entries);
                    let handed_out = log.next_unstable_entries().to_vec();
                    log.accept_unstable();
                    log.store_mut().append(&handed_out).expect("append");
                    log.stable_to(last, 1);
                    log.commit_to(last);
                    log.applied_to(last);
                    // Keep memory bounded like the snapshot path would.
                    if last > 100_000 {
                        log.store_mut().compact(last - 1_000).expect("compact");
                    }
                    black_box(last)
                });
            },
        );
    }
    group.finish();
}

/// A 256 KiB-limited slice spanning storage and the unstable tail, as a
/// leader builds a MsgApp for a follower.
fn slice_for_msg_app(c: &mut Criterion) {
    let mut log = RaftLog::new(MemoryStorage::new()).expect("log");
    let stored = batch(1, 256);
    log.store_mut().append(&stored).expect("append");
    let mut log = RaftLog::new(log.store().clone()).expect("log");
    log.append(&batch(BATCH + 1, 256));
    c.bench_function("log/slice_256KiB_limit", |b| {
        b.iter(|| black_box(log.slice(BATCH / 2, BATCH + BATCH / 2, 256 * 1024)))
    });
    c.bench_function("log/slice_no_limit", |b| {
        b.iter(|| black_box(log.slice(1, 2 * BATCH + 1, NO_LIMIT)))
    });
}

criterion_group!(benches, append_persist_cycle, slice_for_msg_app);
criterion_main!(benches);
