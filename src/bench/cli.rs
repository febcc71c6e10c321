//! The `ringraft bench` command line.
//!
//! Owns: [`BenchArgs`] (the clap definition of every flag) and turning it
//! into validated [`BenchOptions`].
//! Guarantees: exactly one of `--embedded`, `--target`, `--raw-fsync`;
//! flags that only make sense for one mode are refused with the others
//! (never silently ignored); durations are humantime (`5s`, `500ms`).
//! May not touch: running anything.

use super::error::BenchError;
use super::options::{
    BenchOptions, EmbeddedOptions, ReadConsistency, Stop, Target, Workload, parse_duration,
};
use crate::persist::BackendChoice;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Persistence backend of the embedded nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendFlag {
    /// io_uring when it works here, else std.
    Auto,
    /// io_uring (tokio-uring); fails where unavailable.
    Uring,
    /// pwrite + fdatasync.
    Std,
}

/// Read consistency on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyFlag {
    /// ReadIndex: reflects every write acknowledged before the read.
    Linearizable,
    /// The answering node's local state.
    Serializable,
}

/// Load generator: writes (and reads) against an in-process cluster, running
/// ringraft servers, or etcd (JSON gateway or gRPC); prints throughput and
/// latency.
#[derive(Args, Debug, Clone)]
#[command(group(
    clap::ArgGroup::new("mode")
        .required(true)
        .args(["embedded", "target", "raw_fsync"])
))]
pub struct BenchArgs {
    /// Start a cluster in this process (real data directories in a
    /// temporary directory, real fdatasync, in-process transport).
    #[arg(long)]
    pub embedded: bool,
    /// Drive running servers: `http://host:port[,host:port…]` (ringraft's
    /// HTTP API), `etcd://host:port[,…]` (etcd's v3 JSON gateway) or
    /// `grpc://host:port[,…]` (etcd's v3 gRPC KV API, plaintext HTTP/2:
    /// etcd or ringraft, the same client code).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// No server: pwrite + fdatasync of one value at a time on a
    /// preallocated file, per client (the disk's floor).
    #[arg(long)]
    pub raw_fsync: bool,
    /// Voters of the embedded cluster.
    #[arg(long, default_value_t = 1)]
    pub nodes: u64,
    /// Concurrent clients (each one operation at a time; over HTTP and gRPC
    /// one keep-alive connection each).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Operations each client keeps in flight on its connection (closed
    /// loop; --embedded and grpc:// only): 1 waits for each answer before
    /// the next request.
    #[arg(long, default_value_t = 1, value_name = "DEPTH")]
    pub pipeline: usize,
    /// Bytes per written value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Keys are drawn uniformly from this many.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// How long to measure (`10s`, `500ms`, `1m`).
    #[arg(long, value_parser = parse_duration, conflicts_with = "ops")]
    pub duration: Option<Duration>,
    /// Measure this many acknowledged operations instead of a duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Run this long before measuring (not counted).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Share of operations that are reads, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub read_ratio: f64,
    /// Consistency of the reads.
    #[arg(long, value_enum, default_value = "linearizable")]
    pub read_consistency: ConsistencyFlag,
    /// Open loop: this many operations per second in total, at fixed
    /// intervals; latency counts from each operation's scheduled time.
    #[arg(long, value_name = "OPS_PER_SEC")]
    pub rate: Option<f64>,
    /// Persistence backend of the embedded nodes.
    #[arg(long, value_enum)]
    pub backend: Option<BackendFlag>,
    /// Whether the embedded leader sends its appends before its own fsync
    /// (`--send-appends-early=false`: after it); default: the node's
    /// default (on).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub send_appends_early: Option<bool>,
    /// Embedded nodes snapshot every this many applied entries (default:
    /// the node's default).
    #[arg(long)]
    pub snapshot_count: Option<u64>,
    /// Parent of the temporary data directory (--embedded, --raw-fsync);
    /// default: the system temporary directory, or /var/tmp if that is a
    /// tmpfs.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Report this server process's CPU time per operation (Linux /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Seed of the key and read/write choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run the clients on a tokio runtime of their own with this many
    /// threads, and report the nodes' CPU time apart from the clients'
    /// (--embedded); 0 shares the nodes' runtime.
    #[arg(long, default_value_t = 0)]
    pub client_threads: usize,
    /// Print the summary as one JSON object.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the summary as CSV (a header line, then the row).
    #[arg(long)]
    pub csv: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Default measurement when neither `--duration` nor `--ops` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl BenchArgs {
    /// The validated options.
    pub fn options(&self) -> Result<BenchOptions, BenchError> {
        let target = if self.embedded {
            Target::Embedded(EmbeddedOptions {
                nodes: self.nodes,
                backend: match self.backend.unwrap_or(BackendFlag::Auto) {
                    BackendFlag::Auto => BackendChoice::Auto,
                    BackendFlag::Uring => BackendChoice::Uring,
                    BackendFlag::Std => BackendChoice::Std,
                },
                send_appends_early: self
                    .send_appends_early
                    .unwrap_or(ringraft_default_send_appends_early()),
                data_dir: self.data_dir.clone(),
                snapshot_count: self.snapshot_count,
            })
        } else if let Some(url) = &self.target {
            Target::parse_url(url)?
        } else {
            Target::RawFsync {
                dir: self.data_dir.clone(),
            }
        };
        let embedded = matches!(target, Target::Embedded(_));
        let only_embedded = [
            ("--backend", self.backend.is_some()),
            ("--send-appends-early", self.send_appends_early.is_some()),
            ("--snapshot-count", self.snapshot_count.is_some()),
            ("--nodes", self.nodes != 1),
        ];
        if !embedded && let Some((flag, _)) = only_embedded.iter().find(|(_, given)| *given) {
            return Err(BenchError::option(
                flag,
                format!(
                    "only applies to --embedded (a {} target is configured where it runs)",
                    target.kind()
                ),
            ));
        }
        if matches!(target, Target::Http(_) | Target::Etcd(_) | Target::Grpc(_))
            && self.data_dir.is_some()
        {
            return Err(BenchError::option(
                "--data-dir",
                "only applies to --embedded and --raw-fsync",
            ));
        }
        if matches!(target, Target::RawFsync { .. }) && self.rate.is_some() {
            return Err(BenchError::option(
                "--rate",
                "not supported with --raw-fsync",
            ));
        }
        let options = BenchOptions {
            target,
            workload: Workload {
                value_size: self.value_size,
                key_space: self.key_space,
                read_ratio: self.read_ratio,
                read_consistency: match self.read_consistency {
                    ConsistencyFlag::Linearizable => ReadConsistency::Linearizable,
                    ConsistencyFlag::Serializable => ReadConsistency::Serializable,
                },
            },
            clients: self.clients,
            pipeline: self.pipeline,
            stop: match (self.ops, self.duration) {
                (Some(ops), _) => Stop::Ops(ops),
                (None, Some(duration)) => Stop::Duration(duration),
                (None, None) => Stop::Duration(DEFAULT_DURATION),
            },
            warmup: self.warmup,
            rate: self.rate,
            progress: !self.quiet,
            server_pid: self.server_pid,
            seed: self.seed,
            client_threads: self.client_threads,
        };
        options.validate()?;
        Ok(options)
    }
}

/// The node's own default for early appends.
fn ringraft_default_send_appends_early() -> bool {
    crate::node::NodeConfig::new(1, 1, std::path::PathBuf::new(), &[1]).send_appends_early
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchOptions, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.bench.options().map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_defaults() {
        let options = parse(&["--embedded", "--nodes", "3", "--duration", "5s"]).expect("valid");
        assert_eq!(options.stop, Stop::Duration(Duration::from_secs(5)));
        assert_eq!(options.clients, 16);
        assert_eq!(options.workload.value_size, 256);
        let Target::Embedded(embedded) = options.target else {
            panic!("embedded");
        };
        assert_eq!(embedded.nodes, 3);
        assert_eq!(embedded.backend, BackendChoice::Auto);
        let options = parse(&["--embedded"]).expect("valid");
        assert_eq!(options.stop, Stop::Duration(DEFAULT_DURATION));
    }

    #[test]
    fn one_mode_and_its_own_flags() {
        assert!(parse(&[]).is_err(), "a mode is required");
        assert!(parse(&["--embedded", "--target", "http://a:1"]).is_err());
        assert!(parse(&["--embedded", "--ops", "5", "--duration", "1s"]).is_err());
        let refused = parse(&["--target", "http://a:1", "--backend", "std"]).expect_err("refused");
        assert!(refused.contains("--backend"), "{refused}");
        let refused = parse(&["--target", "etcd://a:1", "--nodes", "3"]).expect_err("refused");
        assert!(refused.contains("--nodes"), "{refused}");
        assert!(parse(&["--target", "http://a:1", "--data-dir", "/x"]).is_err());
        assert!(parse(&["--target", "grpc://a:1", "--data-dir", "/x"]).is_err());
        let refused = parse(&["--target", "grpc://a:1", "--backend", "std"]).expect_err("refused");
        assert!(refused.contains("--backend"), "{refused}");
        let options =
            parse(&["--target", "grpc://127.0.0.1:2379", "--read-ratio", "1"]).expect("valid");
        assert!(matches!(options.target, Target::Grpc(_)));
        assert_eq!(options.workload.read_ratio, 1.0);
        assert!(parse(&["--raw-fsync", "--rate", "10"]).is_err());
        assert!(parse(&["--embedded", "--json", "--csv"]).is_err());
        assert!(parse(&["--embedded", "--duration", "soon"]).is_err());
        let options = parse(&[
            "--target",
            "etcd://127.0.0.1:2379",
            "--ops",
            "100",
            "--read-ratio",
            "0.5",
            "--read-consistency",
            "serializable",
            "--rate",
            "1000",
        ])
        .expect("valid");
        assert_eq!(options.stop, Stop::Ops(100));
        assert_eq!(options.rate, Some(1000.0));
        assert_eq!(
            options.workload.read_consistency,
            ReadConsistency::Serializable
        );
        assert!(matches!(options.target, Target::Etcd(_)));
    }
}
