//! The result of a run: the numbers, and how they are printed.
//!
//! Owns: [`Report`] (what `--json` prints, field for field), the latency
//! summary math ([`LatencySummary`], [`per_second`], [`ratio`]), and the
//! human, JSON and CSV renderings.
//! Guarantees: percentiles come from one HDR histogram of every counted
//! operation, so `p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max`; `ops` is the number of
//! latencies in that histogram; a quantity that was not measured is `null`
//! (JSON) or empty (CSV), never a made-up zero; ratios with a zero
//! denominator are `null`.
//! May not touch: how the numbers are measured.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// Latency percentiles of a histogram in microseconds, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Latencies in the histogram.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of `histogram` (microseconds); all zero when empty.
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return LatencySummary {
                count: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        // hdrhistogram reports the highest equivalent value of a bucket
        // for a quantile and for max; both are monotone in the quantile.
        LatencySummary {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// `count` per second over `elapsed` (0 for an empty interval).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `numerator / denominator`, `None` when the denominator is zero or
/// either side is unknown.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// Everything a run measured, and the options it ran with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `embedded`, `http`, `etcd` or `raw-fsync`.
    pub target: String,
    /// Endpoints of a remote target (`host:port`).
    pub endpoints: Vec<String>,
    /// Voters of an embedded cluster.
    pub nodes: Option<u64>,
    /// Persistence backend of an embedded cluster.
    pub backend: Option<String>,
    /// Whether an embedded leader sent appends before its own fsync.
    pub send_appends_early: Option<bool>,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations each client kept in flight (1: one at a time).
    pub pipeline: usize,
    /// Bytes per written value.
    pub value_size: usize,
    /// Keys drawn from.
    pub key_space: u64,
    /// Share of reads.
    pub read_ratio: f64,
    /// Consistency of the reads.
    pub read_consistency: String,
    /// Open-loop rate (operations per second), `null` for a closed loop.
    pub rate: Option<f64>,
    /// Measured wall time, seconds (from the start of measurement until
    /// the last counted operation was answered).
    pub duration_s: f64,
    /// Operations counted: latencies in the histogram.
    pub ops: u64,
    /// Operations the clients saw acknowledged (must equal `ops`).
    pub acknowledged: u64,
    /// Acknowledged writes.
    pub writes: u64,
    /// Acknowledged reads (a read of a key never written counts: it was
    /// answered).
    pub reads: u64,
    /// Operations that failed (not counted in `ops`).
    pub errors: u64,
    /// `ops / duration_s`.
    pub ops_per_sec: f64,
    /// Mean latency.
    pub mean_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// 99.9th percentile latency.
    pub p999_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// WAL fdatasyncs during the measurement, summed over every node (or
    /// server) measured; `null` when the target does not tell.
    pub fsyncs: Option<u64>,
    /// Mean time of those fdatasyncs, milliseconds (the fsync histogram's
    /// sum over its count; for etcd from
    /// `etcd_disk_wal_fsync_duration_seconds`).
    pub fsync_mean_ms: Option<f64>,
    /// Raft entries made durable per fdatasync (for etcd, and grpc against
    /// etcd: entries committed per fsync, from
    /// `etcd_server_proposals_committed_total`).
    pub entries_per_fsync: Option<f64>,
    /// Log entries the target's state machine applied during the
    /// measurement (embedded and http: the measured node's applied index;
    /// etcd and grpc: the first endpoint's revision); with no other client, equal to `writes` plus
    /// any entries raft added itself (an election's empty entry).
    pub log_entries: Option<u64>,
    /// Raft messages between the nodes per counted operation (embedded
    /// only: the in-process network's count; `null` elsewhere).
    pub messages_per_op: Option<f64>,
    /// CPU time (user + system) of this process during the measurement,
    /// seconds: clients and nodes for `embedded`, only the load generator
    /// for a remote target.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per counted operation, microseconds.
    pub cpu_us_per_op: Option<f64>,
    /// CPU time of `--server-pid` per counted operation, microseconds.
    pub server_cpu_us_per_op: Option<f64>,
    /// With `--client-threads`: the client threads' CPU time per counted
    /// operation, microseconds.
    pub client_cpu_us_per_op: Option<f64>,
    /// With `--client-threads` (embedded): this process's CPU time outside
    /// the client threads (the nodes: raft, persistence, apply, io_uring
    /// workers) per counted operation, microseconds.
    pub node_cpu_us_per_op: Option<f64>,
    /// The first failure a client saw, if any.
    pub first_error: Option<String>,
}

/// Columns of [`Report::csv_row`].
pub const CSV_HEADER: &str = "target,nodes,backend,send_appends_early,clients,value_size,key_space,read_ratio,rate,duration_s,ops,errors,ops_per_sec,mean_ms,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,fsyncs,entries_per_fsync,log_entries,cpu_us_per_op,server_cpu_us_per_op,fsync_mean_ms,client_cpu_us_per_op,node_cpu_us_per_op,pipeline,messages_per_op";

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(String::new, |v| v.to_string())
}

fn opt_f(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(String::new, |v| format!("{v:.decimals$}"))
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// One JSON object (no trailing newline).
    pub fn to_json(&self) -> String {
        // Serializing plain numbers, strings and options cannot fail; NaN
        // and infinities are never produced (ratios check their
        // denominators) and would become `null`.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// One CSV line matching [`CSV_HEADER`] (no field contains a comma).
    pub fn csv_row(&self) -> String {
        [
            self.target.clone(),
            opt(self.nodes),
            self.backend.clone().unwrap_or_default(),
            opt(self.send_appends_early),
            self.clients.to_string(),
            self.value_size.to_string(),
            self.key_space.to_string(),
            self.read_ratio.to_string(),
            opt_f(self.rate, 1),
            format!("{:.3}", self.duration_s),
            self.ops.to_string(),
            self.errors.to_string(),
            format!("{:.1}", self.ops_per_sec),
            format!("{:.3}", self.mean_ms),
            format!("{:.3}", self.p50_ms),
            format!("{:.3}", self.p90_ms),
            format!("{:.3}", self.p99_ms),
            format!("{:.3}", self.p999_ms),
            format!("{:.3}", self.max_ms),
            opt(self.fsyncs),
            opt_f(self.entries_per_fsync, 2),
            opt(self.log_entries),
            opt_f(self.cpu_us_per_op, 2),
            opt_f(self.server_cpu_us_per_op, 2),
            opt_f(self.fsync_mean_ms, 3),
            opt_f(self.client_cpu_us_per_op, 2),
            opt_f(self.node_cpu_us_per_op, 2),
            self.pipeline.to_string(),
            opt_f(self.messages_per_op, 2),
        ]
        .join(",")
    }

    /// The summary for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut setup = format!("ringraft bench: {}", self.target);
        if let Some(nodes) = self.nodes {
            let _ = write!(setup, ", {nodes} node{}", if nodes == 1 { "" } else { "s" });
        }
        if let Some(backend) = &self.backend {
            let _ = write!(setup, ", backend {backend}");
        }
        if let Some(early) = self.send_appends_early {
            let _ = write!(setup, ", early send {}", if early { "on" } else { "off" });
        }
        if !self.endpoints.is_empty() {
            let _ = write!(setup, " {}", self.endpoints.join(","));
        }
        let _ = writeln!(out, "{setup}");
        let mix = if self.read_ratio > 0.0 {
            format!(
                "{:.0}% {} reads",
                self.read_ratio * 100.0,
                self.read_consistency
            )
        } else {
            "writes only".to_string()
        };
        let lp = match (self.rate, self.pipeline) {
            (Some(rate), _) => format!("open loop at {rate:.0} ops/s"),
            (None, 1) => "closed loop".to_string(),
            (None, depth) => format!("closed loop, {depth} in flight per client"),
        };
        let _ = writeln!(
            out,
            "  workload     {} clients, {} B values, {} keys, {mix}, {lp}",
            self.clients,
            self.value_size,
            thousands(self.key_space)
        );
        let _ = writeln!(out, "  duration     {:.2} s", self.duration_s);
        let _ = writeln!(
            out,
            "  operations   {} (writes {}, reads {}), errors {}",
            thousands(self.ops),
            thousands(self.writes),
            thousands(self.reads),
            thousands(self.errors)
        );
        let _ = writeln!(
            out,
            "  throughput   {} ops/s",
            thousands(self.ops_per_sec.round() as u64)
        );
        let _ = writeln!(
            out,
            "  latency      p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (mean {:.3} ms)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        );
        match (self.fsyncs, self.entries_per_fsync) {
            (Some(fsyncs), per) => {
                let mut per = per.map_or_else(
                    || "entries per fsync unknown".to_string(),
                    |p| format!("{p:.1} entries per fsync"),
                );
                if let Some(mean) = self.fsync_mean_ms {
                    let _ = write!(per, ", {mean:.3} ms each on average");
                }
                let scope = match self.target.as_str() {
                    "embedded" => "; all nodes",
                    "raw-fsync" => "",
                    _ => "; all endpoints",
                };
                let _ = writeln!(out, "  fsyncs       {} ({per}{scope})", thousands(fsyncs));
            }
            (None, _) => {
                let _ = writeln!(
                    out,
                    "  fsyncs       unknown (the target does not export them)"
                );
            }
        }
        if let Some(entries) = self.log_entries {
            let _ = writeln!(out, "  log entries  {}", thousands(entries));
        }
        if let Some(messages) = self.messages_per_op {
            let _ = writeln!(
                out,
                "  messages     {messages:.2} raft messages between nodes per op"
            );
        }
        let who = match self.target.as_str() {
            "embedded" => "this process: clients and nodes",
            "raw-fsync" => "this process: the write loop",
            _ => "this process: the load generator only",
        };
        let _ = writeln!(
            out,
            "  cpu          {:.2} s, {} per op ({who})",
            self.cpu_seconds,
            self.cpu_us_per_op
                .map_or_else(|| "-".to_string(), |c| format!("{c:.1} µs"))
        );
        if let (Some(node), Some(client)) = (self.node_cpu_us_per_op, self.client_cpu_us_per_op) {
            let _ = writeln!(
                out,
                "  cpu split    nodes {node:.1} µs, clients {client:.1} µs per op (--client-threads)"
            );
        }
        if let Some(server) = self.server_cpu_us_per_op {
            let _ = writeln!(out, "  server cpu   {server:.1} µs per op (--server-pid)");
        }
        if let Some(error) = &self.first_error {
            let _ = writeln!(out, "  first error  {error}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::histogram::new_histogram;

    #[test]
    fn percentiles_are_ordered_and_in_milliseconds() {
        let mut h = new_histogram().expect("histogram");
        for us in 1..=10_000u64 {
            h.record(us).expect("in range");
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 10_000);
        assert!(s.p50_ms <= s.p90_ms && s.p90_ms <= s.p99_ms);
        assert!(s.p99_ms <= s.p999_ms && s.p999_ms <= s.max_ms);
        // 3 significant digits: within 0.1% of the exact quantiles.
        assert!((s.p50_ms - 5.0).abs() <= 0.01, "{}", s.p50_ms);
        assert!((s.p99_ms - 9.9).abs() <= 0.01, "{}", s.p99_ms);
        assert!((s.max_ms - 10.0).abs() <= 0.01, "{}", s.max_ms);
        assert!((s.mean_ms - 5.0005).abs() <= 0.01, "{}", s.mean_ms);
    }

    #[test]
    fn one_slow_operation_shows_only_in_the_tail() {
        let mut h = new_histogram().expect("histogram");
        h.record_n(100, 999).expect("in range");
        h.record(50_000).expect("in range");
        let s = LatencySummary::of(&h);
        assert!((s.p50_ms - 0.1).abs() < 1e-3);
        assert!((s.p99_ms - 0.1).abs() < 1e-3);
        assert!((s.p999_ms - 0.1).abs() < 1e-3, "999 of 1000 at 0.1 ms");
        assert!((s.max_ms - 50.0).abs() < 0.05);
    }

    #[test]
    fn empty_histogram_summarizes_to_zero() {
        let s = LatencySummary::of(&new_histogram().expect("histogram"));
        assert_eq!(s.count, 0);
        assert_eq!(s.max_ms, 0.0);
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(ratio(Some(10.0), Some(4.0)), Some(2.5));
        assert_eq!(ratio(Some(10.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    fn report() -> Report {
        Report {
            target: "embedded".into(),
            endpoints: vec![],
            nodes: Some(1),
            backend: Some("auto".into()),
            send_appends_early: Some(false),
            clients: 4,
            pipeline: 1,
            value_size: 256,
            key_space: 10_000,
            read_ratio: 0.0,
            read_consistency: "linearizable".into(),
            rate: None,
            duration_s: 2.0,
            ops: 100,
            acknowledged: 100,
            writes: 100,
            reads: 0,
            errors: 0,
            ops_per_sec: 50.0,
            mean_ms: 1.0,
            p50_ms: 1.0,
            p90_ms: 1.5,
            p99_ms: 2.0,
            p999_ms: 2.0,
            max_ms: 2.0,
            fsyncs: Some(10),
            fsync_mean_ms: Some(0.5),
            entries_per_fsync: Some(10.0),
            log_entries: Some(100),
            messages_per_op: None,
            cpu_seconds: 0.5,
            cpu_us_per_op: Some(5000.0),
            server_cpu_us_per_op: None,
            client_cpu_us_per_op: None,
            node_cpu_us_per_op: None,
            first_error: None,
        }
    }

    #[test]
    fn json_has_the_promised_fields_and_null_for_unknowns() {
        let mut r = report();
        r.fsyncs = None;
        r.entries_per_fsync = None;
        let value: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        for field in ["ops_per_sec", "p50_ms", "p99_ms", "p999_ms"] {
            assert!(value[field].is_number(), "{field}");
        }
        assert!(value["fsyncs"].is_null());
        assert!(value["entries_per_fsync"].is_null());
        assert!(value.get("fsyncs").is_some(), "present even when unknown");
    }

    #[test]
    fn csv_row_matches_the_header() {
        let r = report();
        let row = r.csv_row();
        assert_eq!(
            row.split(',').count(),
            CSV_HEADER.split(',').count(),
            "{row}"
        );
        assert!(row.starts_with("embedded,1,auto,false,4,256,10000,0,,2.000,100,0,50.0,"));
        assert!(r.to_text().contains("throughput   50 ops/s"));
    }
}
