//! `GET /metrics` of real `ringraft serve` processes under write load,
//! parsed as Prometheus text: every metric `src/metrics.rs` declares is
//! there with its declared type, on every node, with the `node` label (and
//! one `peer` series per other member for the peer metrics), nothing
//! undeclared is, and the counters and histograms that writes drive moved
//! between two scrapes.
//!
//! Three processes (peer metrics need peers) with a small
//! `--snapshot-count`, so that snapshots are made and saved during the
//! load too.

mod server_common;

use prometheus_parse::{Sample, Scrape, Value};
use ringraft::metrics::{self, METRICS, MetricSpec, MetricType, NODE_LABEL, PEER_LABEL};
use server_common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

const NODES: [u64; 3] = [1, 2, 3];
/// Snapshot every this many applied entries.
const SNAPSHOT_COUNT: u64 = 40;
/// Writes between the two scrapes: a few snapshots' worth.
const WRITES: usize = 3 * SNAPSHOT_COUNT as usize;

/// Counters that a write load moves on every node.
const MOVE_ON_EVERY_NODE: &[&str] = &[
    metrics::PROPOSALS_COMMITTED_TOTAL,
    metrics::PROPOSALS_APPLIED_TOTAL,
    metrics::WAL_WRITE_BYTES_TOTAL,
    metrics::SNAPSHOT_COUNT,
    metrics::PEER_SENT_BYTES_TOTAL,
    metrics::PEER_RECEIVED_BYTES_TOTAL,
    metrics::PEER_SENT_MESSAGES_TOTAL,
];

/// Histograms that a write load moves on every node.
const OBSERVED_ON_EVERY_NODE: &[&str] = &[
    metrics::WAL_FSYNC_DURATION_SECONDS,
    metrics::WAL_WRITE_DURATION_SECONDS,
    metrics::READIES_PER_FSYNC,
    metrics::ENTRIES_PER_FSYNC,
    metrics::SNAPSHOT_SAVE_DURATION_SECONDS,
    metrics::READY_HANDLING_DURATION_SECONDS,
    metrics::APPLY_DURATION_SECONDS,
    metrics::SNAPSHOT_CREATE_DURATION_SECONDS,
];

/// Counters of events a healthy run need not have (failures, slowness,
/// elections after the first); present, but not required to move.
const EVENT_COUNTERS: &[&str] = &[
    metrics::PROPOSALS_FAILED_TOTAL,
    metrics::LEADER_CHANGES_SEEN_TOTAL,
    metrics::HEARTBEAT_SEND_FAILURES_TOTAL,
    metrics::SLOW_APPLY_TOTAL,
    metrics::PEER_SEND_FAILURES_TOTAL,
    // Snapshot transfers happen only when a follower falls behind the
    // compacted log (tests/server_large_state.rs moves them).
    metrics::SNAPSHOT_SENT_BYTES_TOTAL,
    metrics::SNAPSHOT_RECEIVED_BYTES_TOTAL,
    metrics::SNAPSHOT_SEND_FAILURES_TOTAL,
    metrics::SNAPSHOT_RECEIVE_FAILURES_TOTAL,
];

/// One node's scrape, by metric name.
struct Scraped {
    node: u64,
    text: String,
    samples: BTreeMap<String, Vec<Sample>>,
    docs: BTreeMap<String, String>,
}

impl Scraped {
    fn take(node: u64, addr: SocketAddr) -> Scraped {
        let response = http(addr, "GET", "/metrics", b"").expect("GET /metrics");
        assert_eq!(response.status, 200, "node {node}: {}", response.text());
        let text = response.text();
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_string())))
            .expect("Prometheus text format");
        let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for sample in scrape.samples {
            samples
                .entry(sample.metric.clone())
                .or_default()
                .push(sample);
        }
        Scraped {
            node,
            text,
            samples,
            docs: scrape.docs.into_iter().collect(),
        }
    }

    /// The series of `spec` on this node, checked for type and labels.
    fn series(&self, spec: &MetricSpec) -> Vec<&Sample> {
        let node = self.node;
        let series: Vec<&Sample> = self
            .samples
            .get(spec.name)
            .map(|samples| samples.iter().collect())
            .unwrap_or_default();
        assert!(
            !series.is_empty(),
            "node {node}: {} missing from /metrics:\n{}",
            spec.name,
            self.text
        );
        for sample in &series {
            let type_ok = matches!(
                (&sample.value, spec.metric_type),
                (Value::Counter(_), MetricType::Counter)
                    | (Value::Gauge(_), MetricType::Gauge)
                    | (Value::Histogram(_), MetricType::Histogram)
            );
            assert!(
                type_ok,
                "node {node}: {} is declared a {} but scraped as {:?}",
                spec.name,
                spec.metric_type.as_str(),
                sample.value
            );
            let mut labels: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            labels.sort_unstable();
            let mut declared = spec.labels.to_vec();
            declared.sort_unstable();
            assert_eq!(labels, declared, "node {node}: labels of {}", spec.name);
            assert_eq!(
                sample.labels.get(NODE_LABEL),
                Some(node.to_string().as_str()),
                "node {node}: {} carries another node's label",
                spec.name
            );
        }
        assert!(
            self.docs.get(spec.name).is_some_and(|doc| !doc.is_empty()),
            "node {node}: {} has no HELP line",
            spec.name
        );
        series
    }

    /// The counter's value, or a histogram's observation count, summed
    /// over its series.
    fn total(&self, spec: &MetricSpec) -> f64 {
        self.series(spec)
            .iter()
            .map(|sample| match &sample.value {
                Value::Counter(value) | Value::Gauge(value) => *value,
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|bucket| bucket.less_than.is_infinite())
                    .map_or(0.0, |bucket| bucket.count),
                other => panic!("unexpected {other:?}"),
            })
            .sum()
    }

    fn gauge(&self, name: &str) -> f64 {
        let spec = metrics::spec(name).expect("declared");
        self.total(spec)
    }
}

fn spec(name: &str) -> &'static MetricSpec {
    metrics::spec(name).unwrap_or_else(|| panic!("{name} is not declared"))
}

fn scrape_all(cluster: &ProcCluster) -> Vec<Scraped> {
    NODES
        .iter()
        .map(|&id| Scraped::take(id, cluster.proc(id).client))
        .collect()
}

#[test]
fn every_declared_metric_is_scraped_with_its_type_and_moves_under_load() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut procs: BTreeMap<u64, Proc> = NODES
        .iter()
        .map(|&id| (id, Proc::new(id, root.path())))
        .collect();
    let initial = initial_cluster(procs.values());
    let snapshot_count = SNAPSHOT_COUNT.to_string();
    for proc in procs.values_mut() {
        proc.start(&initial, &["--snapshot-count", &snapshot_count]);
    }
    let mut cluster = ProcCluster { root, procs };
    cluster.leader();
    let _logs = DumpLogsOnPanic(&cluster);
    let clients: Vec<SocketAddr> = NODES.iter().map(|&id| cluster.proc(id).client).collect();
    for &client in &clients {
        wait_healthy(client);
    }
    put_retrying(&clients, "warm-up", b"w");

    let before = scrape_all(&cluster);
    // Every classification is explicit, so a new counter must be placed.
    for spec in METRICS
        .iter()
        .filter(|spec| spec.metric_type == MetricType::Counter)
    {
        assert!(
            MOVE_ON_EVERY_NODE.contains(&spec.name) || EVENT_COUNTERS.contains(&spec.name),
            "{} is neither a load counter nor an event counter here",
            spec.name
        );
    }
    for scraped in &before {
        check_declared_and_only_declared(scraped);
    }

    // Writes to every node (followers forward to the leader) and a few
    // linearizable reads (ReadIndex heartbeats).
    let started = Instant::now();
    for i in 0..WRITES {
        let target = [clients[i % clients.len()]];
        put_retrying(
            &target,
            &format!("key-{i:04}"),
            format!("value-{i}").as_bytes(),
        );
        if i % 20 == 0 {
            let read = http(
                clients[(i + 1) % clients.len()],
                "GET",
                &format!("/v1/kv/key-{i:04}"),
                b"",
            )
            .expect("GET");
            assert_eq!(read.status, 200, "{}", read.text());
        }
    }
    let last = format!("key-{:04}", WRITES - 1);
    let last_value = format!("value-{}", WRITES - 1);
    for &client in &clients {
        wait_value(client, &last, last_value.as_bytes());
    }
    // Heartbeats (every tick) answered at least once after the load.
    sleep(Duration::from_millis(10 * TICK_MS).saturating_sub(started.elapsed()));
    let after = scrape_all(&cluster);

    for (old, new) in before.iter().zip(&after) {
        let node = new.node;
        check_declared_and_only_declared(new);
        for &name in MOVE_ON_EVERY_NODE {
            let (was, is) = (old.total(spec(name)), new.total(spec(name)));
            assert!(is > was, "node {node}: {name} did not move ({was} -> {is})");
        }
        for &name in OBSERVED_ON_EVERY_NODE {
            let (was, is) = (old.total(spec(name)), new.total(spec(name)));
            assert!(
                is > was,
                "node {node}: {name} observed nothing ({was} -> {is})"
            );
        }
        // Counters never go down.
        for spec in METRICS
            .iter()
            .filter(|spec| spec.metric_type == MetricType::Counter)
        {
            assert!(
                new.total(spec) >= old.total(spec),
                "node {node}: {} went down",
                spec.name
            );
        }
        assert_eq!(
            new.gauge(metrics::HAS_LEADER),
            1.0,
            "node {node}: has_leader"
        );
        assert!(
            new.gauge(metrics::WAL_SEGMENTS) >= 1.0,
            "node {node}: WAL segments"
        );
        assert!(
            new.total(spec(metrics::LEADER_CHANGES_SEEN_TOTAL)) >= 1.0,
            "node {node}: saw no leader elected"
        );
    }
    let leaders: Vec<&Scraped> = after
        .iter()
        .filter(|scraped| scraped.gauge(metrics::IS_LEADER) == 1.0)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one node says it leads");
    let leader_scrape = leaders[0];
    let leader = leader_scrape.node;
    // Only the leader sends heartbeats, so only its round trips are timed:
    // one series per follower, each with observations.
    for sample in leader_scrape.series(spec(metrics::PEER_ROUND_TRIP_TIME_SECONDS)) {
        let Value::Histogram(buckets) = &sample.value else {
            unreachable!("checked by series()")
        };
        let count = buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map_or(0.0, |b| b.count);
        assert!(
            count > 0.0,
            "leader {leader}: no round trip to {:?} timed",
            sample.labels.get(PEER_LABEL)
        );
    }
}

/// Prints the servers' logs when the test fails.
struct DumpLogsOnPanic<'a>(&'a ProcCluster);

impl Drop for DumpLogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.dump_logs());
        }
    }
}

/// Every declared metric is there (one series per other member for the
/// peer metrics), and every `ringraft_` series is declared.
fn check_declared_and_only_declared(scraped: &Scraped) {
    let node = scraped.node;
    for spec in METRICS {
        let series = scraped.series(spec);
        let expected = if spec.is_per_peer() {
            NODES.len() - 1
        } else {
            1
        };
        assert_eq!(
            series.len(),
            expected,
            "node {node}: series of {}",
            spec.name
        );
        if spec.is_per_peer() {
            let mut peers: Vec<&str> = series
                .iter()
                .filter_map(|s| s.labels.get(PEER_LABEL))
                .collect();
            peers.sort_unstable();
            let mut others: Vec<String> = NODES
                .iter()
                .filter(|&&id| id != node)
                .map(u64::to_string)
                .collect();
            others.sort_unstable();
            assert_eq!(peers, others, "node {node}: peers of {}", spec.name);
        }
    }
    for name in scraped.samples.keys() {
        let base = ["_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(metrics::spec)
                    .filter(|spec| spec.metric_type == MetricType::Histogram)
            })
            .map_or(name.as_str(), |spec| spec.name);
        assert!(
            metrics::spec(base).is_some(),
            "node {node}: {name} is exported but not declared in src/metrics.rs"
        );
    }
}
