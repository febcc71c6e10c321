//! Leader proposal throughput of the pure raft core: a 3-node cluster in
//! memory (no disk, no threads), every Ready persisted at once into
//! `MemoryStorage` and every message delivered. Measures what the consensus
//! core costs per proposal, the ceiling the node's actors work under.
//!
//! Run: `cargo bench --bench raft`.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::Network;

/// Proposals made before the network is run to quiescence: a burst as a
/// loaded leader sees between two Ready loops.
const BURST: usize = 64;

fn leader_proposals(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft/propose_commit_3_nodes");
    for payload_bytes in [16usize, 256] {
        group.throughput(Throughput::Elements(BURST as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{payload_bytes}B")),
            &payload_bytes,
            |b, &payload_bytes| {
                let mut net = Network::new(&[1, 2, 3]);
                net.elect(1);
                let payload = vec![0x5a; payload_bytes];
                b.iter(|| {
                    for _ in 0..BURST {
                        net.node_mut(1)
                            .raw
                            .propose(payload.clone())
                            .expect("leader accepts");
                    }
                    net.stabilize();
                    compact_applied(&mut net);
                });
            },
        );
    }
    group.finish();
}

/// Keeps memory flat over millions of iterations, as the node's snapshots
/// would: compact every node's storage to well below its applied index.
fn compact_applied(net: &mut Network) {
    for node in net.nodes.values_mut() {
        let applied = node.applied_index;
        node.applied.clear();
        if applied > 20_000 {
            let storage = node.raw.store_mut();
            let _ = storage.compact(applied - 10_000);
        }
    }
}

criterion_group!(benches, leader_proposals);
criterion_main!(benches);
