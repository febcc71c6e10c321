//! `ringraft bench`: a load generator for ringraft (in process, over
//! HTTP or over etcd's v3 gRPC API) and for etcd, measured the same way.
//!
//! - [`cli`]: the command line ([`BenchArgs`]);
//! - [`options`]: what a run is asked to do ([`BenchOptions`]);
//! - [`workload`]: which keys, reads or writes;
//! - [`driver`]: what a target provides ([`Driver`], [`Client`]);
//! - [`embedded`], [`http_target`], [`etcd_target`], [`grpc_target`],
//!   [`raw_fsync`]: the targets; [`http_conn`]: their keep-alive HTTP connections;
//! - [`runner`]: client tasks, closed or open loop, progress, the
//!   measurement window;
//! - [`histogram`], [`summary`]: latencies and the [`Report`];
//! - [`scrape`], [`cpu`]: fsync counts from Prometheus text, CPU clocks;
//! - [`error`] holds [`BenchError`].
//!
//! Owns: running one bench end to end ([`run`]) and printing it
//! ([`main`]).
//! Guarantees: every number in a [`Report`] was measured in that run (or
//! is `null`); an embedded run removes its data directories; a failed run
//! is an error, never a panic.
//! May not touch: the node, persistence, raft and transport internals
//! (only their public APIs: [`crate::node::NodeHandle`],
//! [`crate::node::Node::start`], the metric names).

pub mod cli;
pub mod cpu;
pub mod driver;
pub mod embedded;
pub mod error;
pub mod etcd_target;
pub mod grpc_target;
pub mod histogram;
pub mod http_conn;
pub mod http_target;
pub mod options;
pub mod raw_fsync;
pub mod runner;
pub mod scrape;
pub mod summary;
pub mod workload;

pub use cli::BenchArgs;
pub use driver::{Client, Driver, OpFailure};
pub use error::BenchError;
pub use options::{BenchOptions, Stop, Target};
pub use summary::{CSV_HEADER, Report};

use embedded::{EmbeddedCluster, backend_name};
use etcd_target::EtcdDriver;
use grpc_target::GrpcDriver;
use http_target::HttpDriver;
use runner::Measured;
use std::sync::Arc;
use summary::{LatencySummary, per_second, ratio};

/// Runs one bench per `options` on a new tokio runtime (this thread
/// blocks until it is done).
pub fn run(options: &BenchOptions) -> Result<Report, BenchError> {
    options.validate()?;
    if let Target::RawFsync { dir } = &options.target {
        let measured = raw_fsync::run(options, dir.as_deref())?;
        return Ok(report(options, &measured));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    runtime.block_on(async {
        let measured = match &options.target {
            Target::Embedded(embedded) => {
                let cluster = Arc::new(EmbeddedCluster::start(embedded, &options.workload).await?);
                let measured = runner::run(Arc::clone(&cluster), options).await;
                // Every client task has ended: the cluster is ours again.
                match Arc::try_unwrap(cluster) {
                    Ok(cluster) => cluster.shutdown().await?,
                    Err(_) => {
                        return Err(BenchError::Task(
                            "the cluster is still shared after the run".to_string(),
                        ));
                    }
                }
                measured?
            }
            Target::Http(endpoints) => {
                let driver = HttpDriver::new(endpoints.clone(), &options.workload).await?;
                runner::run(Arc::new(driver), options).await?
            }
            Target::Etcd(endpoints) => {
                let driver = EtcdDriver::new(endpoints.clone(), &options.workload).await?;
                runner::run(Arc::new(driver), options).await?
            }
            Target::Grpc(endpoints) => {
                let driver = GrpcDriver::new(endpoints.clone(), &options.workload).await?;
                runner::run(Arc::new(driver), options).await?
            }
            Target::RawFsync { .. } => {
                return Err(BenchError::Task(
                    "raw fsync runs without a runtime".to_string(),
                ));
            }
        };
        Ok(report(options, &measured))
    })
}

/// The report of a measurement.
pub fn report(options: &BenchOptions, measured: &Measured) -> Report {
    let latency = LatencySummary::of(&measured.latencies);
    let ops = latency.count;
    let per_op_us =
        |cpu: std::time::Duration| ratio(Some(cpu.as_secs_f64() * 1e6), Some(ops as f64));
    let (nodes, backend, early) = match &options.target {
        Target::Embedded(e) => (
            Some(e.nodes),
            Some(backend_name(e.backend).to_string()),
            Some(e.send_appends_early),
        ),
        _ => (None, None, None),
    };
    let endpoints = match &options.target {
        Target::Http(endpoints) | Target::Etcd(endpoints) | Target::Grpc(endpoints) => {
            endpoints.iter().map(ToString::to_string).collect()
        }
        _ => Vec::new(),
    };
    let counters = measured.counters;
    Report {
        target: options.target.kind().to_string(),
        endpoints,
        nodes,
        backend,
        send_appends_early: early,
        clients: options.clients,
        pipeline: options.pipeline,
        value_size: options.workload.value_size,
        key_space: options.workload.key_space,
        read_ratio: options.workload.read_ratio,
        read_consistency: options.workload.read_consistency.name().to_string(),
        rate: options.rate,
        duration_s: measured.elapsed.as_secs_f64(),
        ops,
        acknowledged: measured.acknowledged,
        writes: measured.writes,
        reads: measured.reads,
        errors: measured.errors,
        ops_per_sec: per_second(ops, measured.elapsed),
        mean_ms: latency.mean_ms,
        p50_ms: latency.p50_ms,
        p90_ms: latency.p90_ms,
        p99_ms: latency.p99_ms,
        p999_ms: latency.p999_ms,
        max_ms: latency.max_ms,
        fsyncs: counters.fsyncs.map(|f| f.round() as u64),
        fsync_mean_ms: ratio(counters.fsync_seconds.map(|s| s * 1000.0), counters.fsyncs),
        entries_per_fsync: ratio(counters.entries, counters.fsyncs),
        log_entries: counters.position,
        // One node sends nothing: no messages to count per op.
        messages_per_op: match nodes {
            Some(n) if n > 1 => ratio(counters.messages, Some(ops as f64)),
            _ => None,
        },
        cpu_seconds: measured.cpu.as_secs_f64(),
        cpu_us_per_op: per_op_us(measured.cpu),
        server_cpu_us_per_op: measured.server_cpu.and_then(per_op_us),
        client_cpu_us_per_op: measured.client_cpu.and_then(per_op_us),
        node_cpu_us_per_op: match (&options.target, measured.client_cpu) {
            (Target::Embedded(_), Some(clients)) => per_op_us(measured.cpu.saturating_sub(clients)),
            _ => None,
        },
        first_error: measured
            .stalled
            .clone()
            .or_else(|| measured.first_error.clone()),
    }
}

/// `ringraft bench`: runs, prints the summary (text, `--json` or
/// `--csv`) on stdout; an error when nothing succeeded.
pub fn main(args: &BenchArgs) -> Result<(), BenchError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Fails only when a subscriber is already set (embedding): keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let options = args.options()?;
    let report = run(&options)?;
    if args.json {
        println!("{}", report.to_json());
    } else if args.csv {
        println!("{CSV_HEADER}");
        println!("{}", report.csv_row());
    } else {
        print!("{}", report.to_text());
    }
    if report.ops == 0 {
        return Err(BenchError::NothingSucceeded {
            errors: report.errors,
            last: report.first_error.unwrap_or_default(),
        });
    }
    Ok(())
}
