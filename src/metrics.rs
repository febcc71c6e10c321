//! Every ringraft metric, declared in one place, and its export to
//! Prometheus.
//!
//! Owns: the metric names (the `pub const`s below), the table [`METRICS`]
//! giving each one its type, unit, labels, description and histogram
//! buckets, the label names ([`NODE_LABEL`], [`PEER_LABEL`]), registering
//! the descriptions ([`describe_all`]), registering every series of a node
//! or a peer link up front ([`register_node`], [`register_peer`]) so that a
//! scrape shows it before it first moves, and the Prometheus recorder's
//! setup (buckets from the table, [`install_prometheus`]).
//! Guarantees: nothing else in the crate invents a metric name (the actors
//! record through the `metrics` facade with these constants; the
//! `dashboard_queries` test checks that `dashboards/` uses only these
//! names); every name starts with `ringraft_` and keeps etcd's meaning
//! where etcd has the metric; duration buckets start at 10 µs (our fsyncs
//! take about 0.25 ms, and etcd's 1 ms lowest bucket would put all of them
//! in one bucket); [`install_prometheus`] installs the process-wide
//! recorder at most once and fails rather than panics.
//! May not touch: what is measured or when (the actors and the transport
//! record; the space quota's three gauges are set by `crate::http` from
//! its `SpaceQuota` each time it renders `/metrics`, so that a scrape sees
//! them exact without the apply path touching the recorder), the HTTP
//! endpoint (`crate::http` serves what
//! [`PrometheusHandle::render`] returns).
//!
//! # Labels
//!
//! Every series carries `node`: the id (in decimal) of the node that
//! recorded it, so several nodes in one process (tests, benches, an
//! embedding program) stay apart in one recorder. The persistence actor
//! learns it from [`crate::persist::PersistConfig::node_id`], the TCP
//! transport from its own node id. The `ringraft_network_peer_*` series
//! come from the TCP transport (the in-process transport of tests and
//! benches records none) and also carry `peer`: the id of the other end.
//! A `ringraft serve` process runs one node and serves its metrics on its
//! own client port (`GET /metrics`), so under Prometheus `instance` and
//! `node` name the same thing; the dashboard filters on both.
//!
//! # Embedding
//!
//! The metrics go through the `metrics` facade, so they reach whatever
//! recorder the application installed:
//! - Prometheus text: call [`install_prometheus`] before starting nodes,
//!   serve [`PrometheusHandle::render`] and run
//!   [`PrometheusHandle::run_upkeep`] every few seconds;
//! - an application combining recorders: [`prometheus_builder`] gives the
//!   recorder with our buckets, not installed (`build_recorder`);
//! - any other recorder: install it, then call [`describe_all`] for the
//!   descriptions and units. Series are registered when a node starts, so
//!   install the recorder before that.

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Label on every series: the id of the node that recorded it, in decimal.
pub const NODE_LABEL: &str = "node";

/// Label on peer traffic series: the id of the peer, in decimal.
pub const PEER_LABEL: &str = "peer";

/// The labels of node series.
const NODE: &[&str] = &[NODE_LABEL];

/// The labels of peer series.
const NODE_PEER: &[&str] = &[NODE_LABEL, PEER_LABEL];

/// Bucket bounds of duration histograms, in seconds: 10 µs to 10 s.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of count histograms (Readies or entries per fsync).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

// --- persistence actor (disk) ---

/// Histogram: time of one WAL `fdatasync`, as etcd's
/// `etcd_disk_wal_fsync_duration_seconds`.
pub const WAL_FSYNC_DURATION_SECONDS: &str = "ringraft_disk_wal_fsync_duration_seconds";
/// Histogram: time of writing one batch of WAL frames (all its chunks).
pub const WAL_WRITE_DURATION_SECONDS: &str = "ringraft_disk_wal_write_duration_seconds";
/// Counter: bytes of WAL frames written, as etcd's
/// `etcd_disk_wal_write_bytes_total`.
pub const WAL_WRITE_BYTES_TOTAL: &str = "ringraft_disk_wal_write_bytes_total";
/// Histogram: time of saving one snapshot file durably (write, fsync,
/// rename, directory fsync), as etcd's
/// `etcd_debugging_snap_save_total_duration_seconds`.
pub const SNAPSHOT_SAVE_DURATION_SECONDS: &str = "ringraft_disk_snapshot_save_duration_seconds";
/// Histogram: Readies made durable by one fsync (group commit's batch).
pub const READIES_PER_FSYNC: &str = "ringraft_persist_readies_per_fsync";
/// Histogram: raft entries made durable by one fsync.
pub const ENTRIES_PER_FSYNC: &str = "ringraft_persist_entries_per_fsync";
/// Gauge: requests waiting in the persistence queue when the actor takes
/// a batch.
pub const PERSIST_QUEUE_DEPTH: &str = "ringraft_persist_queue_depth";
/// Gauge: WAL segment files in the WAL directory, set at start and after
/// every cut and purge.
pub const WAL_SEGMENTS: &str = "ringraft_wal_segments";

// --- raft and apply actors (server) ---

/// Counter: entries committed (as this node learned it), as etcd's
/// `etcd_server_proposals_committed_total`.
pub const PROPOSALS_COMMITTED_TOTAL: &str = "ringraft_server_proposals_committed_total";
/// Counter: entries applied to the state machine, as etcd's
/// `etcd_server_proposals_applied_total`.
pub const PROPOSALS_APPLIED_TOTAL: &str = "ringraft_server_proposals_applied_total";
/// Gauge: proposals of this node's clients waiting to apply, as etcd's
/// `etcd_server_proposals_pending`.
pub const PROPOSALS_PENDING: &str = "ringraft_server_proposals_pending";
/// Counter: proposals raft refused (no leader, dropped), as etcd's
/// `etcd_server_proposals_failed_total`.
pub const PROPOSALS_FAILED_TOTAL: &str = "ringraft_server_proposals_failed_total";
/// Counter: leader changes this node saw, as etcd's
/// `etcd_server_leader_changes_seen_total`.
pub const LEADER_CHANGES_SEEN_TOTAL: &str = "ringraft_server_leader_changes_seen_total";
/// Gauge: 1 when this node knows a leader, else 0.
pub const HAS_LEADER: &str = "ringraft_server_has_leader";
/// Gauge: 1 when this node is the leader, else 0.
pub const IS_LEADER: &str = "ringraft_server_is_leader";
/// Counter: MsgHeartbeat sends the transport refused, as etcd's
/// `etcd_server_heartbeat_send_failures_total`.
pub const HEARTBEAT_SEND_FAILURES_TOTAL: &str = "ringraft_server_heartbeat_send_failures_total";
/// Counter: apply batches slower than 100 ms, as etcd's
/// `etcd_server_slow_apply_total`.
pub const SLOW_APPLY_TOTAL: &str = "ringraft_server_slow_apply_total";
/// Histogram: time the raft actor spends handing out one Ready or
/// releasing acknowledged ones.
pub const READY_HANDLING_DURATION_SECONDS: &str = "ringraft_raft_ready_handling_duration_seconds";
/// Histogram: time of applying one batch of committed entries.
pub const APPLY_DURATION_SECONDS: &str = "ringraft_apply_duration_seconds";
/// Counter: snapshots of the state machine this node made (one every
/// `snapshot_count` applied entries).
pub const SNAPSHOT_COUNT: &str = "ringraft_snapshot_count";
/// Histogram: time of encoding the state machine into a snapshot.
pub const SNAPSHOT_CREATE_DURATION_SECONDS: &str = "ringraft_snapshot_create_duration_seconds";
/// Histogram: time of restoring the state machine from a snapshot.
pub const SNAPSHOT_APPLY_DURATION_SECONDS: &str = "ringraft_snapshot_apply_duration_seconds";
/// Counter: state file bytes this node streamed to followers (chunks
/// written, whether or not the transfer then succeeded).
pub const SNAPSHOT_SENT_BYTES_TOTAL: &str = "ringraft_snapshot_sent_bytes_total";
/// Counter: state file bytes this node received in checked chunks.
pub const SNAPSHOT_RECEIVED_BYTES_TOTAL: &str = "ringraft_snapshot_received_bytes_total";
/// Histogram: time of a snapshot transfer to a follower, from connecting
/// to the follower's confirmation that the file is durable.
pub const SNAPSHOT_SEND_DURATION_SECONDS: &str = "ringraft_snapshot_send_duration_seconds";
/// Histogram: time of receiving a snapshot, from its first frame to the
/// confirmation sent back.
pub const SNAPSHOT_RECEIVE_DURATION_SECONDS: &str = "ringraft_snapshot_receive_duration_seconds";
/// Gauge: snapshot transfers this node is sending.
pub const SNAPSHOT_SENDS_IN_FLIGHT: &str = "ringraft_snapshot_sends_in_flight";
/// Gauge: snapshot transfers this node is receiving.
pub const SNAPSHOT_RECEIVES_IN_FLIGHT: &str = "ringraft_snapshot_receives_in_flight";
/// Counter: snapshot transfers to followers that failed (reported to raft
/// as `Failure`).
pub const SNAPSHOT_SEND_FAILURES_TOTAL: &str = "ringraft_snapshot_send_failures_total";
/// Counter: snapshot transfers this node refused or lost midway.
pub const SNAPSHOT_RECEIVE_FAILURES_TOTAL: &str = "ringraft_snapshot_receive_failures_total";

// --- space quota (HTTP layer, `crate::kv::SpaceQuota`) ---

/// Gauge: size of the key-value state in bytes (keys and values plus a
/// fixed overhead per pair, `crate::kv::PAIR_OVERHEAD_BYTES`), what the
/// quota counts; etcd's nearest is `etcd_mvcc_db_total_size_in_bytes`.
pub const STATE_SIZE_BYTES: &str = "ringraft_server_state_size_bytes";
/// Gauge: the space quota in bytes (`--quota-backend-bytes`), as etcd's
/// `etcd_server_quota_backend_bytes`.
pub const QUOTA_BACKEND_BYTES: &str = "ringraft_server_quota_backend_bytes";
/// Gauge: 1 while this node's NOSPACE alarm is raised (writes refused for
/// space), else 0.
pub const ALARM_NOSPACE: &str = "ringraft_server_alarm_nospace";

// --- TCP transport (network) ---

/// Counter: bytes written to a peer's connection (frames with their length
/// prefixes; not the preamble), as etcd's
/// `etcd_network_peer_sent_bytes_total`.
pub const PEER_SENT_BYTES_TOTAL: &str = "ringraft_network_peer_sent_bytes_total";
/// Counter: bytes of valid frames received from a peer (with their length
/// prefixes), as etcd's `etcd_network_peer_received_bytes_total`.
pub const PEER_RECEIVED_BYTES_TOTAL: &str = "ringraft_network_peer_received_bytes_total";
/// Counter: messages written to a peer's connection.
pub const PEER_SENT_MESSAGES_TOTAL: &str = "ringraft_network_peer_sent_messages_total";
/// Counter: messages to a peer dropped instead of sent (refused by `send`,
/// or lost with a connection), as etcd's
/// `etcd_network_peer_sent_failures_total`.
pub const PEER_SEND_FAILURES_TOTAL: &str = "ringraft_network_peer_send_failures_total";
/// Histogram: from writing a MsgHeartbeat to a peer's connection to the
/// arrival of its MsgHeartbeatResp (see `crate::transport::tcp`); only a
/// leader sends heartbeats, so only a leader's series move. etcd's
/// `etcd_network_peer_round_trip_time_seconds` (a dedicated prober) has the
/// same meaning.
pub const PEER_ROUND_TRIP_TIME_SECONDS: &str = "ringraft_network_peer_round_trip_time_seconds";

/// The type of a metric, as Prometheus names it in `# TYPE` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Set to a value.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

impl MetricType {
    /// The word of the Prometheus text format: `counter`, `gauge`,
    /// `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// The declaration of one metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricSpec {
    /// The full name, `ringraft_...`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub metric_type: MetricType,
    /// The unit of its values.
    pub unit: Unit,
    /// The labels every series carries, in this order.
    pub labels: &'static [&'static str],
    /// Bucket upper bounds of a histogram; empty for other types.
    pub buckets: &'static [f64],
    /// One line for humans (the `# HELP` text).
    pub description: &'static str,
}

impl MetricSpec {
    const fn counter(name: &'static str, unit: Unit, description: &'static str) -> MetricSpec {
        MetricSpec {
            name,
            metric_type: MetricType::Counter,
            unit,
            labels: NODE,
            buckets: &[],
            description,
        }
    }

    const fn gauge(name: &'static str, description: &'static str) -> MetricSpec {
        MetricSpec {
            name,
            metric_type: MetricType::Gauge,
            unit: Unit::Count,
            labels: NODE,
            buckets: &[],
            description,
        }
    }

    const fn bytes_gauge(name: &'static str, description: &'static str) -> MetricSpec {
        MetricSpec {
            unit: Unit::Bytes,
            ..MetricSpec::gauge(name, description)
        }
    }

    const fn seconds(name: &'static str, description: &'static str) -> MetricSpec {
        MetricSpec {
            name,
            metric_type: MetricType::Histogram,
            unit: Unit::Seconds,
            labels: NODE,
            buckets: DURATION_BUCKETS_SECONDS,
            description,
        }
    }

    const fn per_fsync(name: &'static str, description: &'static str) -> MetricSpec {
        MetricSpec {
            name,
            metric_type: MetricType::Histogram,
            unit: Unit::Count,
            labels: NODE,
            buckets: COUNT_BUCKETS,
            description,
        }
    }

    const fn per_peer(self) -> MetricSpec {
        MetricSpec {
            labels: NODE_PEER,
            ..self
        }
    }

    /// Whether its series carry the `peer` label.
    pub fn is_per_peer(&self) -> bool {
        self.labels.contains(&PEER_LABEL)
    }
}

/// Every ringraft metric.
pub const METRICS: &[MetricSpec] = &[
    // persistence actor
    MetricSpec::seconds(
        WAL_FSYNC_DURATION_SECONDS,
        "Time of one fdatasync of the WAL.",
    ),
    MetricSpec::seconds(
        WAL_WRITE_DURATION_SECONDS,
        "Time of writing one batch of WAL frames.",
    ),
    MetricSpec::counter(
        WAL_WRITE_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of WAL frames written.",
    ),
    MetricSpec::seconds(
        SNAPSHOT_SAVE_DURATION_SECONDS,
        "Time of saving one snapshot file durably (write, fsync, rename, directory fsync).",
    ),
    MetricSpec::per_fsync(
        READIES_PER_FSYNC,
        "Raft Readies made durable by one WAL fsync (group commit).",
    ),
    MetricSpec::per_fsync(
        ENTRIES_PER_FSYNC,
        "Raft entries made durable by one WAL fsync.",
    ),
    MetricSpec::gauge(
        PERSIST_QUEUE_DEPTH,
        "Requests waiting for the persistence actor when it takes a batch.",
    ),
    MetricSpec::gauge(WAL_SEGMENTS, "WAL segment files in the WAL directory."),
    // raft and apply actors
    MetricSpec::counter(
        PROPOSALS_COMMITTED_TOTAL,
        Unit::Count,
        "Raft entries committed, as this node learned it.",
    ),
    MetricSpec::counter(
        PROPOSALS_APPLIED_TOTAL,
        Unit::Count,
        "Raft entries applied to the state machine.",
    ),
    MetricSpec::gauge(
        PROPOSALS_PENDING,
        "Proposals of this node's clients waiting to apply.",
    ),
    MetricSpec::counter(
        PROPOSALS_FAILED_TOTAL,
        Unit::Count,
        "Proposals refused by raft (no leader, dropped).",
    ),
    MetricSpec::counter(
        LEADER_CHANGES_SEEN_TOTAL,
        Unit::Count,
        "Leader changes this node saw.",
    ),
    MetricSpec::gauge(HAS_LEADER, "1 when this node knows a leader, else 0."),
    MetricSpec::gauge(IS_LEADER, "1 when this node is the leader, else 0."),
    MetricSpec::counter(
        HEARTBEAT_SEND_FAILURES_TOTAL,
        Unit::Count,
        "Heartbeats the transport refused to send.",
    ),
    MetricSpec::counter(
        SLOW_APPLY_TOTAL,
        Unit::Count,
        "Apply batches slower than 100 ms.",
    ),
    MetricSpec::seconds(
        READY_HANDLING_DURATION_SECONDS,
        "Time the raft actor spends handing out or releasing Readies.",
    ),
    MetricSpec::seconds(
        APPLY_DURATION_SECONDS,
        "Time of applying one batch of committed entries.",
    ),
    MetricSpec::counter(
        SNAPSHOT_COUNT,
        Unit::Count,
        "Snapshots of the state machine this node made.",
    ),
    MetricSpec::seconds(
        SNAPSHOT_CREATE_DURATION_SECONDS,
        "Time of encoding the state machine into a snapshot.",
    ),
    MetricSpec::seconds(
        SNAPSHOT_APPLY_DURATION_SECONDS,
        "Time of restoring the state machine from a snapshot.",
    ),
    MetricSpec::counter(
        SNAPSHOT_SENT_BYTES_TOTAL,
        Unit::Bytes,
        "State file bytes streamed to followers in snapshot transfers.",
    ),
    MetricSpec::counter(
        SNAPSHOT_RECEIVED_BYTES_TOTAL,
        Unit::Bytes,
        "State file bytes received in checked snapshot chunks.",
    ),
    MetricSpec::seconds(
        SNAPSHOT_SEND_DURATION_SECONDS,
        "Time of a successful snapshot transfer to a follower, up to its confirmation.",
    ),
    MetricSpec::seconds(
        SNAPSHOT_RECEIVE_DURATION_SECONDS,
        "Time of receiving a snapshot, up to the confirmation sent back.",
    ),
    MetricSpec::gauge(
        SNAPSHOT_SENDS_IN_FLIGHT,
        "Snapshot transfers this node is sending.",
    ),
    MetricSpec::gauge(
        SNAPSHOT_RECEIVES_IN_FLIGHT,
        "Snapshot transfers this node is receiving.",
    ),
    MetricSpec::counter(
        SNAPSHOT_SEND_FAILURES_TOTAL,
        Unit::Count,
        "Snapshot transfers to followers that failed.",
    ),
    MetricSpec::counter(
        SNAPSHOT_RECEIVE_FAILURES_TOTAL,
        Unit::Count,
        "Snapshot transfers this node refused or lost midway.",
    ),
    // space quota
    MetricSpec::bytes_gauge(
        STATE_SIZE_BYTES,
        "Size of the key-value state (keys, values and a fixed overhead per pair).",
    ),
    MetricSpec::bytes_gauge(
        QUOTA_BACKEND_BYTES,
        "Space quota of the key-value state (--quota-backend-bytes).",
    ),
    MetricSpec::gauge(
        ALARM_NOSPACE,
        "1 while the NOSPACE alarm is raised (writes refused for space), else 0.",
    ),
    // TCP transport
    MetricSpec::counter(
        PEER_SENT_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of raft message frames written to a peer.",
    )
    .per_peer(),
    MetricSpec::counter(
        PEER_RECEIVED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of valid raft message frames received from a peer.",
    )
    .per_peer(),
    MetricSpec::counter(
        PEER_SENT_MESSAGES_TOTAL,
        Unit::Count,
        "Raft messages written to a peer.",
    )
    .per_peer(),
    MetricSpec::counter(
        PEER_SEND_FAILURES_TOTAL,
        Unit::Count,
        "Raft messages to a peer dropped instead of sent.",
    )
    .per_peer(),
    MetricSpec::seconds(
        PEER_ROUND_TRIP_TIME_SECONDS,
        "Time from writing a heartbeat to a peer to receiving its response.",
    )
    .per_peer(),
];

/// The declaration of `name`, if it is a ringraft metric.
pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|spec| spec.name == name)
}

/// Registers the description and unit of every ringraft metric with the
/// installed recorder.
pub fn describe_all() {
    for spec in METRICS {
        match spec.metric_type {
            MetricType::Counter => {
                metrics::describe_counter!(spec.name, spec.unit, spec.description);
            }
            MetricType::Gauge => {
                metrics::describe_gauge!(spec.name, spec.unit, spec.description);
            }
            MetricType::Histogram => {
                metrics::describe_histogram!(spec.name, spec.unit, spec.description);
            }
        }
    }
}

/// Registers the series of node `node_id` with the installed recorder
/// (every metric that carries only the `node` label), without changing a
/// value, so that a scrape shows them (counters at 0, empty histograms)
/// before they first move. The node calls it at start.
pub fn register_node(node_id: u64) {
    let node = node_id.to_string();
    for spec in METRICS.iter().filter(|spec| !spec.is_per_peer()) {
        register(spec, &[(NODE_LABEL, node.clone())]);
    }
}

/// Registers the series of node `node_id`'s link to `peer` (every metric
/// with the `peer` label). The TCP transport calls it when it learns a
/// peer.
pub fn register_peer(node_id: u64, peer: u64) {
    let labels = [
        (NODE_LABEL, node_id.to_string()),
        (PEER_LABEL, peer.to_string()),
    ];
    for spec in METRICS.iter().filter(|spec| spec.is_per_peer()) {
        register(spec, &labels);
    }
}

fn register(spec: &MetricSpec, labels: &[(&'static str, String)]) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(key, value)| metrics::Label::new(*key, value.clone()))
        .collect();
    // Creating a handle registers the series; dropping it keeps it.
    match spec.metric_type {
        MetricType::Counter => drop(metrics::counter!(spec.name, labels)),
        MetricType::Gauge => drop(metrics::gauge!(spec.name, labels)),
        MetricType::Histogram => drop(metrics::histogram!(spec.name, labels)),
    }
}

/// A Prometheus recorder with every histogram's buckets from [`METRICS`],
/// not installed (tests, or an application combining recorders).
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for spec in METRICS
        .iter()
        .filter(|spec| spec.metric_type == MetricType::Histogram)
    {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(spec.name.to_string()), spec.buckets)?;
    }
    Ok(builder)
}

/// Installs the process-wide Prometheus recorder and describes every
/// metric. Fails if a recorder is already installed. The caller runs
/// [`PrometheusHandle::run_upkeep`] now and then (the server does, every
/// few seconds) so that histograms do not grow without bound.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = prometheus_builder()?.install_recorder()?;
    describe_all();
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn metrics_table_is_consistent() {
        let mut names = HashSet::new();
        for spec in METRICS {
            assert!(names.insert(spec.name), "{} declared twice", spec.name);
            assert!(spec.name.starts_with("ringraft_"), "{}", spec.name);
            assert!(
                spec.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                spec.name
            );
            assert_eq!(spec.labels.first(), Some(&NODE_LABEL), "{}", spec.name);
            assert!(!spec.description.is_empty(), "{}", spec.name);
            match spec.metric_type {
                MetricType::Histogram => {
                    assert!(!spec.buckets.is_empty(), "{} has no buckets", spec.name);
                    assert!(
                        spec.buckets.windows(2).all(|w| w[0] < w[1]),
                        "{} buckets not increasing",
                        spec.name
                    );
                }
                _ => assert!(spec.buckets.is_empty(), "{} has buckets", spec.name),
            }
            if spec.unit == Unit::Seconds {
                assert!(spec.name.ends_with("_seconds"), "{}", spec.name);
                assert_eq!(spec.buckets, DURATION_BUCKETS_SECONDS, "{}", spec.name);
            }
            if spec.name.ends_with("_total") {
                assert_eq!(spec.metric_type, MetricType::Counter, "{}", spec.name);
            }
        }
        assert_eq!(
            spec(WAL_FSYNC_DURATION_SECONDS).map(|s| s.unit),
            Some(Unit::Seconds)
        );
        assert!(spec("ringraft_nope").is_none());
    }

    #[test]
    fn duration_buckets_resolve_nvme_fsyncs() {
        // A 0.25 ms fsync must not share its bucket with a 1 ms one.
        assert!(DURATION_BUCKETS_SECONDS[0] <= 0.000_01);
        assert!(
            DURATION_BUCKETS_SECONDS
                .iter()
                .any(|b| *b > 0.000_25 && *b < 0.001)
        );
    }

    #[test]
    fn prometheus_renders_every_registered_metric_with_its_type() {
        let recorder = prometheus_builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            register_node(7);
            register_peer(7, 8);
        });
        let text = handle.render();
        for spec in METRICS {
            let type_line = format!("# TYPE {} {}", spec.name, spec.metric_type.as_str());
            assert!(
                text.contains(&type_line),
                "missing {type_line:?} in\n{text}"
            );
        }
        assert!(
            text.contains(
                r#"ringraft_disk_wal_fsync_duration_seconds_bucket{node="7",le="0.00001"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"ringraft_network_peer_sent_bytes_total{node="7",peer="8"} 0"#),
            "{text}"
        );
    }
}
