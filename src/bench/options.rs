//! What a bench run is asked to do: the target, the workload, how long, how
//! fast.
//!
//! Owns: [`BenchOptions`] and its parts ([`Target`], [`Workload`], [`Stop`],
//! [`Endpoint`]), parsing `--target` URLs, and checking options against
//! each other ([`BenchOptions::validate`]).
//! Guarantees: plain data; a validated [`BenchOptions`] has at least one
//! client, a nonzero stop condition, a read ratio in `[0, 1]`, a positive
//! rate if any, and options that apply to its target only.
//! May not touch: anything at run time.

use super::error::BenchError;
use crate::node::Consistency;
use crate::persist::BackendChoice;
use std::path::PathBuf;
use std::time::Duration;

/// Where the load goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A cluster started in this process (`--embedded`).
    Embedded(EmbeddedOptions),
    /// Running `ringraft serve` processes through their HTTP API.
    Http(Vec<Endpoint>),
    /// Running etcd servers through their v3 JSON gateway.
    Etcd(Vec<Endpoint>),
    /// Any etcd v3 gRPC endpoint (etcd, or ringraft's client port) through
    /// the KV service, plaintext HTTP/2.
    Grpc(Vec<Endpoint>),
    /// No server: `write` + `fdatasync` of one value at a time on a file
    /// (`--raw-fsync`), the floor a durable write can reach on this disk.
    RawFsync {
        /// Where the file goes (a temporary file in this directory).
        dir: Option<PathBuf>,
    },
}

impl Target {
    /// A short name: `embedded`, `http`, `etcd`, `grpc`, `raw-fsync`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Embedded(_) => "embedded",
            Target::Http(_) => "http",
            Target::Etcd(_) => "etcd",
            Target::Grpc(_) => "grpc",
            Target::RawFsync { .. } => "raw-fsync",
        }
    }

    /// Parses `--target`: `http://host:port[,host:port…]`,
    /// `etcd://host:port[,…]` or `grpc://host:port[,…]`; each
    /// comma-separated element may repeat the scheme, and may end with a
    /// `/`.
    pub fn parse_url(text: &str) -> Result<Target, BenchError> {
        let refuse = |reason: &str| BenchError::Target {
            target: text.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            refuse("expected http://host:port, etcd://host:port or grpc://host:port")
        })?;
        if !["http", "etcd", "grpc"].contains(&scheme) {
            return Err(refuse(
                "the scheme must be http (ringraft's /v1), etcd (etcd's v3 JSON gateway) \
                 or grpc (any etcd v3 gRPC endpoint, plaintext)",
            ));
        }
        let mut endpoints = Vec::new();
        for element in rest.split(',').map(str::trim) {
            let element = element
                .strip_prefix(&format!("{scheme}://"))
                .unwrap_or(element);
            let element = element.strip_suffix('/').unwrap_or(element);
            endpoints.push(Endpoint::parse(element).map_err(|reason| refuse(&reason))?);
        }
        Ok(match scheme {
            "http" => Target::Http(endpoints),
            "etcd" => Target::Etcd(endpoints),
            _ => Target::Grpc(endpoints),
        })
    }
}

/// One server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if text.is_empty() {
            return Err("an empty address".to_string());
        }
        if text.contains('/') {
            return Err(format!("{text:?}: a path is not allowed, give host:port"));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: expected host:port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!("{text:?}: the host is empty"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: the port is not a number in 1..=65535"))?;
        if port == 0 {
            return Err(format!("{text:?}: port 0"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` as a URI authority (`[v6]:port` for IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

/// The in-process cluster of `--embedded`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedOptions {
    /// Voters (1..=7).
    pub nodes: u64,
    /// Persistence backend of every node.
    pub backend: BackendChoice,
    /// The leader sends appends before its own fsync.
    pub send_appends_early: bool,
    /// Parent of the temporary data directories (`None`: the system
    /// temporary directory, or `/var/tmp` when that is a tmpfs).
    pub data_dir: Option<PathBuf>,
    /// Snapshot every this many applied entries (`None`: the node's
    /// default).
    pub snapshot_count: Option<u64>,
}

/// Read consistency of the workload's reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Linearizable (ReadIndex; etcd's default).
    Linearizable,
    /// Serializable (local state).
    Serializable,
}

impl ReadConsistency {
    /// The node API's consistency.
    pub fn node(self) -> Consistency {
        match self {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Serializable => Consistency::Serializable,
        }
    }

    /// `linearizable` or `serializable`.
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Serializable => "serializable",
        }
    }
}

/// What each client does.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Bytes of each written value.
    pub value_size: usize,
    /// Keys are drawn uniformly from this many.
    pub key_space: u64,
    /// Share of operations that are reads, in `[0, 1]`.
    pub read_ratio: f64,
    /// Consistency of the reads.
    pub read_consistency: ReadConsistency,
}

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (measured from the end of the warm-up).
    Duration(Duration),
    /// After this many acknowledged operations.
    Ops(u64),
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Where the load goes.
    pub target: Target,
    /// What the clients do.
    pub workload: Workload,
    /// Concurrent clients (each one operation at a time; over HTTP or gRPC each
    /// has its own keep-alive connection).
    pub clients: usize,
    /// Operations each client keeps in flight on its one connection (or
    /// node handle): 1 is the plain closed loop; more pipelines, which only
    /// targets that multiplex a connection take (embedded, gRPC).
    pub pipeline: usize,
    /// When to stop.
    pub stop: Stop,
    /// Operations not measured before the run (time).
    pub warmup: Duration,
    /// Open loop: this many operations per second in total, scheduled at
    /// fixed intervals; latency counts from the scheduled time.
    pub rate: Option<f64>,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// A server process on this machine whose CPU time (from
    /// `/proc/PID/stat`) is reported per operation.
    pub server_pid: Option<u32>,
    /// Seed of the key and operation choices.
    pub seed: u64,
    /// Run the clients on a runtime of their own with this many threads
    /// (named `bench-client`), so that their CPU time is measured apart
    /// from the nodes'; 0: on the nodes' runtime (the default, comparable
    /// with older binaries).
    pub client_threads: usize,
}

/// Largest accepted `--clients`.
pub const MAX_CLIENTS: usize = 100_000;
/// Largest accepted `--pipeline`.
pub const MAX_PIPELINE: usize = 1024;
/// Largest accepted `--value-size` (ringraft's and etcd's 1.5 MiB request
/// limit).
pub const MAX_VALUE_SIZE: usize = 1536 * 1024;

impl BenchOptions {
    /// Checks the options against each other.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(BenchError::option(
                "--clients",
                format!("must be in 1..={MAX_CLIENTS}"),
            ));
        }
        if self.workload.value_size > MAX_VALUE_SIZE {
            return Err(BenchError::option(
                "--value-size",
                format!("at most {MAX_VALUE_SIZE} bytes"),
            ));
        }
        if self.workload.key_space == 0 {
            return Err(BenchError::option("--key-space", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.workload.read_ratio) {
            return Err(BenchError::option("--read-ratio", "must be in [0, 1]"));
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => {
                return Err(BenchError::option("--duration", "must be more than 0"));
            }
            Stop::Ops(0) => return Err(BenchError::option("--ops", "must be at least 1")),
            _ => {}
        }
        self.validate_pipeline()?;
        if self.client_threads > 64 {
            return Err(BenchError::option("--client-threads", "at most 64"));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(BenchError::option("--rate", "must be a positive number"));
        }
        match &self.target {
            Target::Embedded(embedded) => {
                if !(1..=7).contains(&embedded.nodes) {
                    return Err(BenchError::option("--nodes", "must be in 1..=7"));
                }
            }
            Target::RawFsync { .. } => {
                if self.workload.read_ratio > 0.0 {
                    return Err(BenchError::option(
                        "--read-ratio",
                        "--raw-fsync only writes",
                    ));
                }
                if self.workload.value_size == 0 {
                    return Err(BenchError::option(
                        "--value-size",
                        "--raw-fsync needs at least one byte to write",
                    ));
                }
            }
            Target::Http(endpoints) | Target::Etcd(endpoints) | Target::Grpc(endpoints) => {
                if endpoints.is_empty() {
                    return Err(BenchError::option("--target", "no endpoint"));
                }
            }
        }
        Ok(())
    }

    /// `--pipeline`: in range, closed loop only, and only where one
    /// connection carries several operations at once.
    fn validate_pipeline(&self) -> Result<(), BenchError> {
        if self.pipeline == 0 || self.pipeline > MAX_PIPELINE {
            return Err(BenchError::option(
                "--pipeline",
                format!("must be in 1..={MAX_PIPELINE}"),
            ));
        }
        if self.pipeline == 1 {
            return Ok(());
        }
        if self.rate.is_some() {
            return Err(BenchError::option(
                "--pipeline",
                "is for the closed loop; --rate already lets a client's operations overlap its schedule",
            ));
        }
        match self.target {
            Target::Embedded(_) | Target::Grpc(_) => Ok(()),
            _ => Err(BenchError::option(
                "--pipeline",
                "needs --embedded or grpc:// (an HTTP/1.1 connection carries one request at a time)",
            )),
        }
    }

    /// Client loops in all: `clients × pipeline`.
    pub fn loops(&self) -> usize {
        self.clients.saturating_mul(self.pipeline)
    }
}

/// Parses a duration such as `5s`, `500ms`, `1m 30s` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: Target) -> BenchOptions {
        BenchOptions {
            target,
            workload: Workload {
                value_size: 256,
                key_space: 1000,
                read_ratio: 0.0,
                read_consistency: ReadConsistency::Linearizable,
            },
            clients: 4,
            pipeline: 1,
            stop: Stop::Ops(10),
            warmup: Duration::ZERO,
            rate: None,
            progress: false,
            server_pid: None,
            seed: 1,
            client_threads: 0,
        }
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse_url("http://127.0.0.1:7379").ok(),
            Some(Target::Http(vec![Endpoint {
                host: "127.0.0.1".into(),
                port: 7379
            }]))
        );
        let Ok(Target::Http(many)) =
            Target::parse_url("http://a:1,http://b:2/, c:3").map_err(|e| e.to_string())
        else {
            panic!("three endpoints");
        };
        assert_eq!(
            many.iter().map(Endpoint::authority).collect::<Vec<_>>(),
            ["a:1", "b:2", "c:3"]
        );
        let Ok(Target::Etcd(etcd)) = Target::parse_url("etcd://[::1]:2379") else {
            panic!("etcd endpoint");
        };
        assert_eq!(etcd[0].host, "::1");
        assert_eq!(etcd[0].authority(), "[::1]:2379");
        let Ok(Target::Grpc(grpc)) =
            Target::parse_url("grpc://127.0.0.1:2379,grpc://b:2380/,c:2381")
        else {
            panic!("grpc endpoints");
        };
        assert_eq!(
            grpc.iter().map(Endpoint::authority).collect::<Vec<_>>(),
            ["127.0.0.1:2379", "b:2380", "c:2381"]
        );
        assert_eq!(Target::Grpc(grpc).kind(), "grpc");
        for bad in [
            "",
            "127.0.0.1:1",
            "https://a:1",
            "grpcs://a:1",
            "grpc://",
            "grpc://a",
            "grpc://a:1/etcdserverpb.KV",
            "grpc://a:1,http://b:2",
            "http://",
            "http://a",
            "http://a:0",
            "http://a:x",
            "http://a:1/v1",
            "http://:1",
            "http://a:1,,b:2",
        ] {
            assert!(Target::parse_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn validation_names_the_flag() {
        let embedded = Target::Embedded(EmbeddedOptions {
            nodes: 3,
            backend: BackendChoice::Auto,
            send_appends_early: false,
            data_dir: None,
            snapshot_count: None,
        });
        assert!(options(embedded.clone()).validate().is_ok());
        let flag_of = |o: BenchOptions| match o.validate() {
            Err(BenchError::Option { flag, .. }) => flag,
            other => panic!("expected an option error, got {other:?}"),
        };
        let mut o = options(embedded.clone());
        o.clients = 0;
        assert_eq!(flag_of(o), "--clients");
        let mut o = options(embedded.clone());
        o.workload.read_ratio = 1.5;
        assert_eq!(flag_of(o), "--read-ratio");
        let mut o = options(embedded.clone());
        o.stop = Stop::Ops(0);
        assert_eq!(flag_of(o), "--ops");
        let mut o = options(embedded.clone());
        o.stop = Stop::Duration(Duration::ZERO);
        assert_eq!(flag_of(o), "--duration");
        let mut o = options(embedded.clone());
        o.rate = Some(0.0);
        assert_eq!(flag_of(o), "--rate");
        let mut o = options(embedded);
        o.workload.key_space = 0;
        assert_eq!(flag_of(o), "--key-space");
        let mut o = options(Target::Embedded(EmbeddedOptions {
            nodes: 0,
            backend: BackendChoice::Auto,
            send_appends_early: false,
            data_dir: None,
            snapshot_count: None,
        }));
        o.clients = 1;
        assert_eq!(flag_of(o), "--nodes");
        let mut o = options(Target::RawFsync { dir: None });
        o.workload.read_ratio = 0.5;
        assert_eq!(flag_of(o), "--read-ratio");
    }

    #[test]
    fn pipelining_needs_a_multiplexed_connection_and_a_closed_loop() {
        let flag_of = |o: BenchOptions| match o.validate() {
            Err(BenchError::Option { flag, .. }) => flag,
            other => panic!("expected an option error, got {other:?}"),
        };
        let embedded = Target::Embedded(EmbeddedOptions {
            nodes: 1,
            backend: BackendChoice::Auto,
            send_appends_early: false,
            data_dir: None,
            snapshot_count: None,
        });
        let grpc = Target::parse_url("grpc://127.0.0.1:2379").expect("grpc url");
        let http = Target::parse_url("http://127.0.0.1:7379").expect("http url");
        for target in [embedded.clone(), grpc] {
            let mut o = options(target);
            o.pipeline = 8;
            assert!(o.validate().is_ok());
            assert_eq!(o.loops(), 32);
        }
        let mut o = options(http);
        o.pipeline = 2;
        assert_eq!(flag_of(o), "--pipeline");
        let mut o = options(Target::RawFsync { dir: None });
        o.pipeline = 2;
        assert_eq!(flag_of(o), "--pipeline");
        let mut o = options(embedded.clone());
        o.pipeline = 2;
        o.rate = Some(1000.0);
        assert_eq!(flag_of(o), "--pipeline");
        let mut o = options(embedded.clone());
        o.pipeline = 0;
        assert_eq!(flag_of(o), "--pipeline");
        let mut o = options(embedded);
        o.pipeline = MAX_PIPELINE + 1;
        assert_eq!(flag_of(o), "--pipeline");
    }
}
