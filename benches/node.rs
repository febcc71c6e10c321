//! Whole nodes in one process: client writes per second and per-put
//! latency through `NodeHandle<KvStore>::put` on the leader.
//!
//! Each configuration starts a cluster once (data directories in the system
//! temporary directory on the real disk, real fdatasync, the default
//! persistence backend, the in-process transport, 10 ms ticks), waits for a
//! leader, runs every criterion sample against it and shuts it down at the
//! end. Values are 256 B, keys spread over 10,000 keys.
//!
//! - `node/1_node/<p>_proposers/early_send_off`
//! - `node/3_nodes/<p>_proposers/early_send_{off,on}`
//!
//! with `p` = 1 or 256 closed-loop proposers (tokio tasks, each calling
//! `put` on the leader and awaiting it before the next) and
//! `NodeConfig::send_appends_early` off and on (for one node it changes
//! nothing, so only off). One criterion iteration is a fixed number of puts
//! spread across the proposers (`Throughput::Elements`). Every put's
//! latency (from the first attempt to its answer, retries included) goes
//! into an HDR histogram; at the end of each group a markdown table of
//! writes per second (median over the samples) and p50 / p99 latency over
//! every put of the measured samples (warm-up excluded) is printed to
//! stdout.
//!
//! Run: `cargo bench --bench node` (about a minute and a half);
//! `RINGRAFT_BENCH_QUICK=1 cargo bench --bench node` for a short run.

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use hdrhistogram::Histogram;
use ringraft::KvStore;
use ringraft::node::{InProcessNetwork, Node, NodeConfig, NodeError, NodeHandle};
use ringraft::raft::StateRole;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const VALUE_BYTES: usize = 256;
const KEY_SPACE: u64 = 10_000;
const CLUSTER_ID: u64 = 0x6265_6e63;
/// How long to wait for a leader, and for one put including its retries.
const DEADLINE: Duration = Duration::from_secs(30);
/// Largest latency the histograms hold, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Criterion samples per configuration (its minimum).
const SAMPLES: usize = 10;

/// One benchmark configuration.
#[derive(Debug, Clone, Copy)]
struct Setup {
    nodes: u64,
    proposers: usize,
    early: bool,
}

impl Setup {
    fn id(&self) -> BenchmarkId {
        let early = if self.early { "on" } else { "off" };
        BenchmarkId::new(
            format!("{}_proposers", self.proposers),
            format!("early_send_{early}"),
        )
    }

    fn label(&self) -> String {
        let nodes = if self.nodes == 1 { "node" } else { "nodes" };
        let proposers = if self.proposers == 1 {
            "proposer"
        } else {
            "proposers"
        };
        let early = if self.early { "on" } else { "off" };
        format!(
            "{} {nodes}, {} {proposers}, early send {early}",
            self.nodes, self.proposers
        )
    }

    /// Puts in one criterion iteration: enough that every proposer has
    /// one, and a few dozen for a single proposer.
    fn puts_per_iteration(&self) -> u64 {
        (self.proposers as u64).max(32)
    }
}

fn quick() -> bool {
    std::env::var_os("RINGRAFT_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

fn node_config(id: u64, dir: &std::path::Path, voters: &[u64], early: bool) -> NodeConfig {
    let mut config = NodeConfig::new(id, CLUSTER_ID, dir.to_path_buf(), voters);
    config.tick_interval = Duration::from_millis(10);
    // 200–400 ms election timeout: quick to elect, and a loaded 2-core
    // machine does not lose its leader to a late heartbeat.
    config.election_tick = 20;
    config.heartbeat_tick = 1;
    config.send_appends_early = early;
    config
}

/// A running cluster: its runtime, data directories and handles.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    nodes: Vec<NodeHandle<KvStore>>,
    leader: NodeHandle<KvStore>,
    _network: InProcessNetwork,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start(setup: Setup) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let voters: Vec<u64> = (1..=setup.nodes).collect();
        let network = InProcessNetwork::new();
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        {
            let _enter = runtime.enter();
            for &id in &voters {
                let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("data directory");
                let (transport, inbox) = network.endpoint(id);
                let config = node_config(id, dir.path(), &voters, setup.early);
                nodes.push(
                    Node::start(config, KvStore::new(), transport, inbox).expect("node starts"),
                );
                dirs.push(dir);
            }
        }
        let leader = runtime.block_on(wait_for_leader(&nodes));
        Cluster {
            runtime,
            nodes,
            leader,
            _network: network,
            _dirs: dirs,
        }
    }

    fn shutdown(self) {
        self.runtime.block_on(async {
            for node in &self.nodes {
                if let Err(error) = node.shutdown().await {
                    eprintln!("node {} stopped with an error: {error}", node.id());
                }
            }
        });
    }
}

/// Polls `status()` until every node names the same leader and that node
/// says it leads.
async fn wait_for_leader(nodes: &[NodeHandle<KvStore>]) -> NodeHandle<KvStore> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut statuses = Vec::new();
        for node in nodes {
            if let Ok(status) = node.status().await {
                statuses.push(status);
            }
        }
        if statuses.len() == nodes.len() {
            let leader = statuses[0].leader;
            let agreed = statuses.iter().all(|s| s.leader == leader);
            let leads = statuses
                .iter()
                .any(|s| Some(s.id) == leader && s.role == StateRole::Leader);
            if let (true, true, Some(leader)) = (agreed, leads, leader)
                && let Some(node) = nodes.iter().find(|n| n.id() == leader)
            {
                return node.clone();
            }
        }
        assert!(Instant::now() < deadline, "no leader within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn retryable(error: &NodeError) -> bool {
    matches!(
        error,
        NodeError::NotLeader { .. } | NodeError::Timeout | NodeError::ProposalDropped { .. }
    )
}

/// What one `iter_custom` call (one warm-up step or one sample) measured.
struct Call {
    latency_us: Histogram<u64>,
    writes_per_second: f64,
}

/// What the calls of one configuration collected.
struct Record {
    setup: Setup,
    calls: Vec<Call>,
    /// Failed attempts that were retried, in every call.
    retries: u64,
}

impl Record {
    fn new(setup: Setup) -> Record {
        Record {
            setup,
            calls: Vec::new(),
            retries: 0,
        }
    }

    /// Criterion runs the warm-up first, then one call per sample: the
    /// last `SAMPLES` calls are the measured samples.
    fn measured(&self) -> &[Call] {
        &self.calls[self.calls.len().saturating_sub(SAMPLES)..]
    }

    fn latency_us(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for call in self.measured() {
            all.add(&call.latency_us)
                .expect("histograms of equal bounds");
        }
        all
    }

    fn median_rate(&self) -> f64 {
        let mut rates: Vec<f64> = self
            .measured()
            .iter()
            .map(|c| c.writes_per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => 0.0,
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("histogram bounds")
}

/// Runs `puts` puts through `proposers` closed-loop tasks on the leader;
/// returns the wall time and adds every put's latency to `record`.
fn run_puts(cluster: &Cluster, record: &mut Record, puts: u64) -> Duration {
    let proposers = record.setup.proposers;
    let next = Arc::new(AtomicU64::new(0));
    let value: Arc<[u8]> = vec![0xab; VALUE_BYTES].into();
    let started = Instant::now();
    let results = cluster.runtime.block_on(async {
        let tasks: Vec<_> = (0..proposers)
            .map(|_| {
                let leader = cluster.leader.clone();
                let next = Arc::clone(&next);
                let value = Arc::clone(&value);
                tokio::spawn(async move {
                    let mut latency_us = new_histogram();
                    let mut retries = 0u64;
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= puts {
                            break;
                        }
                        let key = format!("key{:05}", (n * 7919) % KEY_SPACE);
                        let begun = Instant::now();
                        loop {
                            match leader.put(key.as_bytes(), &value).await {
                                Ok(_) => break,
                                Err(error) if retryable(&error) && begun.elapsed() < DEADLINE => {
                                    retries += 1;
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                Err(error) => panic!("put on node {} failed: {error}", leader.id()),
                            }
                        }
                        let micros = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latency_us.saturating_record(micros.max(1));
                    }
                    (latency_us, retries)
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.expect("proposer task"));
        }
        results
    });
    let elapsed = started.elapsed();
    let mut call = Call {
        latency_us: new_histogram(),
        writes_per_second: puts as f64 / elapsed.as_secs_f64(),
    };
    for (latency_us, retries) in results {
        call.latency_us
            .add(&latency_us)
            .expect("histograms of equal bounds");
        record.retries += retries;
    }
    record.calls.push(call);
    elapsed
}

fn format_latency(micros: u64) -> String {
    if micros >= 10_000 {
        format!("{:.1} ms", micros as f64 / 1000.0)
    } else {
        format!("{:.2} ms", micros as f64 / 1000.0)
    }
}

fn format_rate(rate: f64) -> String {
    if rate >= 1000.0 {
        format!("{:.1}k", rate / 1000.0)
    } else {
        format!("{rate:.0}")
    }
}

fn print_table(group: &str, records: &[Record]) {
    if records.iter().all(|r| r.calls.is_empty()) {
        return;
    }
    println!();
    println!(
        "{group}: writes/s = median over the {SAMPLES} samples of puts / wall time; \
         latency of every put in those samples (warm-up excluded)"
    );
    println!();
    println!("| configuration | writes/s | p50 | p99 | max | puts | retries |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for record in records {
        let h = record.latency_us();
        if h.is_empty() {
            continue;
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            record.setup.label(),
            format_rate(record.median_rate()),
            format_latency(h.value_at_quantile(0.50)),
            format_latency(h.value_at_quantile(0.99)),
            format_latency(h.max()),
            h.len(),
            record.retries,
        );
    }
    println!();
}

fn bench_group(c: &mut Criterion, name: &str, setups: &[Setup]) {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(SAMPLES);
    if quick() {
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(1500));
    } else {
        group.warm_up_time(Duration::from_secs(2));
        group.measurement_time(Duration::from_secs(8));
    }
    let mut records = Vec::new();
    for &setup in setups {
        let cluster = Cluster::start(setup);
        let mut record = Record::new(setup);
        let per_iteration = setup.puts_per_iteration();
        group.throughput(Throughput::Elements(per_iteration));
        group.bench_function(setup.id(), |b| {
            b.iter_custom(|iters| run_puts(&cluster, &mut record, iters * per_iteration));
        });
        cluster.shutdown();
        records.push(record);
    }
    group.finish();
    print_table(name, &records);
}

fn one_node(c: &mut Criterion) {
    let setups = [1, 256].map(|proposers| Setup {
        nodes: 1,
        proposers,
        early: false,
    });
    bench_group(c, "node/1_node", &setups);
}

fn three_nodes(c: &mut Criterion) {
    let mut setups = Vec::new();
    for proposers in [1, 256] {
        for early in [false, true] {
            setups.push(Setup {
                nodes: 3,
                proposers,
                early,
            });
        }
    }
    bench_group(c, "node/3_nodes", &setups);
}

criterion_group!(benches, one_node, three_nodes);
criterion_main!(benches);
