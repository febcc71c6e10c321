//! The `ringraft` command line: `serve` (the default: a single node on
//! 127.0.0.1:7379 with its data in `./ringraft-data` when given no flags),
//! the `wal` tools for inspecting data directories (ours or etcd's),
//! `bench`, the load generator (`ringraft::bench`), `certs` and `restore`
//! (a data directory from an `etcdctl snapshot save` backup).
//!
//! Exit status: 0 on success (a server stopped by SIGINT/SIGTERM after a
//! graceful shutdown), 1 when the server fails or a WAL or snapshot is
//! corrupt or cannot be read, 2 on bad usage. Logs go to stderr, level from
//! `RUST_LOG` (default `info`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringraft::access::AccessPolicy;
use ringraft::etcd::compactor::AutoCompaction;
use ringraft::persist::BackendChoice;
use ringraft::raftpb::walpb;
use ringraft::server::client_listener::ClientLimits;
use ringraft::server::{ServeConfig, parse_initial_cluster};
use ringraft::snap::Snapshotter;
use ringraft::storage::DataDir;
use ringraft::tls::dev_certs::{self, DevCerts};
use ringraft::tls::{ClientTls, PeerTls, TlsFiles};
use ringraft::wal::{self, SegmentName, TornTailReport};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc instead of glibc's malloc: the hot path hands buffers from one
/// thread to another (client → raft task → persistence thread → apply
/// task), and glibc's per-thread arenas make such frees take locks and
/// consolidate; see BENCHMARKS.md for what it bought.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A raft storage service in the architecture of etcd's server.
#[derive(Parser)]
#[command(name = "ringraft", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: raft between peers over TCP, the HTTP API for clients
    /// (the default command).
    Serve(Box<ServeArgs>),
    /// Inspect write-ahead logs.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Load generator: throughput and latency of an in-process cluster,
    /// running servers (`--target http://…`), etcd (`--target etcd://…`)
    /// or any etcd v3 gRPC endpoint (`--target grpc://…`).
    Bench(Box<ringraft::bench::BenchArgs>),
    /// Development certificates: a CA, node certificates (proving their
    /// member id, for the peer and client ports) and client certificates
    /// (common name = user) in one directory. Not a PKI: use your own CA
    /// in production.
    Certs(CertsArgs),
    /// A new member's data directory from a backup that `etcdctl snapshot
    /// save` took (etcd's Maintenance Snapshot): every member of the new
    /// cluster restores the same file with its own --id and the same
    /// --initial-cluster and --cluster-token, then runs `ringraft serve`
    /// with those flags. Takes serve's flags; --data-dir must not exist or
    /// be empty.
    Restore(Box<RestoreArgs>),
}

/// `ringraft restore`.
#[derive(Args, Debug)]
struct RestoreArgs {
    /// The backup file.
    backup: PathBuf,
    #[command(flatten)]
    serve: ServeArgs,
}

/// `ringraft certs`.
#[derive(Args)]
struct CertsArgs {
    /// Where the files go (created 0700 if missing). An existing `ca.pem`
    /// and `ca-key.pem` there sign the new certificates.
    #[arg(long, default_value = "ringraft-certs")]
    dir: PathBuf,
    /// Member ids to make node certificates for (comma-separated).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<u64>,
    /// User names to make client certificates for (comma-separated).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<String>,
    /// Extra DNS names or IP addresses for every node certificate
    /// (localhost, 127.0.0.1 and ::1 are always in).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// Replace existing files, the CA included.
    #[arg(long)]
    overwrite: bool,
}

/// Persistence backend on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    /// io_uring when it works here, else std.
    Auto,
    /// io_uring (tokio-uring); fails where unavailable.
    Uring,
    /// pwrite + fdatasync.
    Std,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// This node's id.
    #[arg(long, default_value_t = 1)]
    id: u64,
    /// Data directory (WAL and snapshots; created if missing).
    #[arg(long, default_value = "ringraft-data")]
    data_dir: PathBuf,
    /// Address peers connect to.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen_peer: SocketAddr,
    /// Address clients (HTTP) connect to.
    #[arg(long, default_value = "127.0.0.1:7379")]
    listen_client: SocketAddr,
    /// The client URL this member publishes for etcd's member list
    /// (`http://host:port` or `https://host:port`; default: the
    /// --listen-client address), as etcd's --advertise-client-urls.
    #[arg(long)]
    advertise_client_url: Option<String>,
    /// Initial members, `id=host:port,...` (peer addresses). Default: this
    /// node alone at --listen-peer.
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Join a running cluster (add this member with `POST /v1/members`
    /// first); --initial-cluster then names the members to reach.
    #[arg(long)]
    join: bool,
    /// Disaster recovery: restart as the only voter, keeping every entry
    /// in this node's WAL (so every write it committed).
    #[arg(long)]
    force_new_cluster: bool,
    /// Names the cluster (its hash is the cluster id in the WAL); nodes of
    /// one cluster must share it.
    #[arg(long, default_value = ringraft::server::config::DEFAULT_CLUSTER_TOKEN)]
    cluster_token: String,
    /// Persistence backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Snapshot every this many applied entries.
    #[arg(long, default_value_t = ringraft::node::DEFAULT_SNAPSHOT_COUNT)]
    snapshot_count: u64,
    /// Entries kept in the log behind each snapshot so slow followers can
    /// catch up from the log; one further behind is sent the snapshot.
    #[arg(long, default_value_t = ringraft::node::DEFAULT_SNAPSHOT_CATCHUP_ENTRIES)]
    snapshot_catchup_entries: u64,
    /// Write snapshot state files at most this many bytes a second (0: as
    /// fast as the disk takes them), so that saving a large snapshot does
    /// not hold up the WAL's fdatasyncs.
    #[arg(long, default_value_t = ringraft::snap::state_file::DEFAULT_WRITE_BYTES_PER_SECOND)]
    snapshot_write_bytes_per_second: u64,
    /// Allow `?consistency=lease` reads, answered by the leader from its
    /// lease (assumes bounded clock drift between members; give every
    /// member the same setting).
    #[arg(long)]
    lease_reads: bool,
    /// Raft tick, in milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Ticks without a leader before an election.
    #[arg(long, default_value_t = 10)]
    election_ticks: usize,
    /// Ticks between leader heartbeats.
    #[arg(long, default_value_t = 1)]
    heartbeat_ticks: usize,
    /// How long a client request may wait, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Warn about WAL fdatasyncs slower than this, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    slow_fsync_warning_ms: u64,
    /// WAL segment size (each segment is preallocated to it), in bytes;
    /// etcd's fixed 64 MB by default, at least 65536.
    #[arg(long, default_value_t = ringraft::wal::DEFAULT_SEGMENT_SIZE_BYTES)]
    wal_segment_size_bytes: u64,
    /// Space quota of the key-value state, in bytes (keys, values and 64
    /// bytes per pair): a put that would pass it is refused with 507 and
    /// raises the NOSPACE alarm until deletes and a compaction bring the
    /// state to 90% of it (old versions count until compacted).
    /// 0 means the default (2 GiB, etcd's).
    #[arg(long, default_value_t = ringraft::server::config::DEFAULT_QUOTA_BACKEND_BYTES)]
    quota_backend_bytes: u64,
    /// How old versions of keys are compacted away: `revision` keeps the
    /// last --auto-compaction-retention revisions (checked every 5 s),
    /// `periodic` about --auto-compaction-retention of history.
    #[arg(long, default_value = "revision", value_parser = ["revision", "periodic"])]
    auto_compaction_mode: String,
    /// Revisions to keep (revision mode), or a duration such as 90s, 30m,
    /// 1h or a number of hours (periodic mode); 0 turns automatic
    /// compaction off (etcd's default).
    #[arg(long, default_value = "10000")]
    auto_compaction_retention: String,
    /// How often a watch created with `progress_notify` that got no events
    /// is told the revision it is up to, in milliseconds (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes).
    #[arg(long, default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    watch_progress_notify_interval_ms: u64,
    /// Client connections open at once, at most; the descriptor limit
    /// (`ulimit -n`, less 128 kept for the node itself) may lower it.
    /// Beyond it, new connections wait in the kernel's queue.
    #[arg(long, default_value_t = ClientLimits::default().max_connections)]
    max_client_connections: usize,
    /// Serve clients over TLS with this PEM certificate (chain); needs
    /// --key-file. Plaintext is then refused.
    #[arg(long, requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The PEM private key of --cert-file.
    #[arg(long, requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, requires = "cert_file")]
    trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by --trusted-ca-file; its
    /// common name is the client's identity (see --client-permission).
    #[arg(long, requires = "trusted_ca_file")]
    client_cert_auth: bool,
    /// With --client-cert-auth: what a client certificate's common name
    /// may do, `NAME=read|write|admin` (comma-separated or repeated).
    /// Levels include the lower ones; once any is given, a name not listed
    /// may do nothing. None given: every certificate the trusted CA signed
    /// is an administrator.
    #[arg(long, value_delimiter = ',')]
    client_permission: Vec<String>,
    /// PEM certificate of this member on the peer port, for both
    /// directions; it must prove this member's id (a URI SAN
    /// `ringraft://member/<id>`, as `ringraft certs` makes). With
    /// --peer-key-file and --peer-trusted-ca-file: every peer connection is
    /// mutual TLS, and plaintext peers are refused.
    #[arg(long, requires_all = ["peer_key_file", "peer_trusted_ca_file"])]
    peer_cert_file: Option<PathBuf>,
    /// The PEM private key of --peer-cert-file.
    #[arg(long, requires = "peer_cert_file")]
    peer_key_file: Option<PathBuf>,
    /// PEM CA certificates every peer's certificate must chain to.
    #[arg(long, requires = "peer_cert_file")]
    peer_trusted_ca_file: Option<PathBuf>,
}

impl ServeArgs {
    fn config(&self) -> Result<ServeConfig, String> {
        let initial_cluster = match &self.initial_cluster {
            Some(text) => parse_initial_cluster(text).map_err(|e| e.to_string())?,
            None => [(self.id, self.listen_peer.to_string())].into(),
        };
        Ok(ServeConfig {
            node_id: self.id,
            data_dir: self.data_dir.clone(),
            listen_peer: self.listen_peer,
            listen_client: self.listen_client,
            advertise_client_url: self.advertise_client_url.clone(),
            initial_cluster,
            join: self.join,
            force_new_cluster: self.force_new_cluster,
            cluster_token: self.cluster_token.clone(),
            backend: match self.backend {
                BackendArg::Auto => BackendChoice::Auto,
                BackendArg::Uring => BackendChoice::Uring,
                BackendArg::Std => BackendChoice::Std,
            },
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            snapshot_write_bytes_per_second: self.snapshot_write_bytes_per_second,
            lease_reads: self.lease_reads,
            tick_interval: Duration::from_millis(self.tick_ms),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            slow_fsync_warning: Duration::from_millis(self.slow_fsync_warning_ms),
            wal_segment_size_bytes: self.wal_segment_size_bytes,
            quota_backend_bytes: self.quota_backend_bytes,
            auto_compaction: AutoCompaction::parse(
                &self.auto_compaction_mode,
                &self.auto_compaction_retention,
            )
            .map_err(|reason| format!("--auto-compaction-retention: {reason}"))?,
            watch_progress_interval: Duration::from_millis(self.watch_progress_notify_interval_ms),
            client_limits: ClientLimits {
                max_connections: self.max_client_connections,
                ..ClientLimits::default()
            },
            client_tls: self.client_tls(),
            peer_tls: self.peer_tls(),
            client_permissions: AccessPolicy::parse(
                self.client_permission.iter().map(String::as_str),
            )
            .map_err(|reason| format!("--client-permission: {reason}"))?,
        })
    }
}

impl ServeArgs {
    fn peer_tls(&self) -> Option<PeerTls> {
        Some(PeerTls {
            cert_file: self.peer_cert_file.clone()?,
            key_file: self.peer_key_file.clone()?,
            trusted_ca_file: self.peer_trusted_ca_file.clone()?,
        })
    }

    fn client_tls(&self) -> Option<ClientTls> {
        let (cert_file, key_file) = (self.cert_file.clone()?, self.key_file.clone()?);
        Some(ClientTls {
            files: TlsFiles {
                cert_file,
                key_file,
                trusted_ca_file: self.trusted_ca_file.clone(),
            },
            client_cert_auth: self.client_cert_auth,
        })
    }
}

#[derive(Subcommand)]
enum WalCommand {
    /// Print every record of a WAL as one JSON object a line.
    Dump {
        /// A WAL directory, or a data directory (`<dir>/wal`, or etcd's
        /// `<dir>/member/wal`).
        path: PathBuf,
    },
    /// Check a data directory: the newest usable snapshot and the WAL from it
    /// on. Exits 1 with the error if anything is corrupt.
    Verify {
        /// A data directory (ours: `wal/` and `snap/`; etcd's: `member/wal/`
        /// and `member/snap/`), or a WAL directory with `snap/` beside it.
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // No subcommand: `serve` with every default.
        None => match Cli::try_parse_from(["ringraft", "serve"]).map(|cli| cli.command) {
            Ok(Some(Command::Serve(args))) => serve(&args),
            Ok(_) => Err("the default command is not serve".to_string()),
            Err(error) => Err(error.to_string()),
        },
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Wal(WalCommand::Dump { path })) => dump(&path),
        Some(Command::Wal(WalCommand::Verify { data_dir })) => verify(&data_dir),
        Some(Command::Bench(args)) => ringraft::bench::main(&args).map_err(|e| e.to_string()),
        Some(Command::Certs(args)) => certs(&args),
        Some(Command::Restore(args)) => restore(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    init_logging();
    let config = args.config()?;
    match ringraft::server::raise_descriptor_limit() {
        Ok(limit) => tracing::debug!(limit, "file descriptor limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the file descriptor limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    runtime.block_on(async {
        let metrics = match ringraft::metrics::install_prometheus() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics disabled");
                None
            }
        };
        ringraft::server::run(&config, metrics, stop_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

/// `ringraft restore`: builds the data directory and says what it holds.
fn restore(args: &RestoreArgs) -> Result<(), String> {
    init_logging();
    let config = args.serve.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let restored = runtime
        .block_on(ringraft::server::restore::restore(&config, &args.backup))
        .map_err(|e| e.to_string())?;
    println!(
        "restored {} into {} (revision {}, snapshot at raft index {}); start it with `ringraft serve` and the same flags",
        args.backup.display(),
        restored.data_dir.display(),
        restored.revision,
        restored.snapshot_index
    );
    Ok(())
}

/// `ringraft certs`: writes the files and lists them.
fn certs(args: &CertsArgs) -> Result<(), String> {
    if args.nodes.is_empty() && args.clients.is_empty() {
        return Err("ringraft certs: give --nodes and/or --clients".into());
    }
    let written = dev_certs::generate(&DevCerts {
        dir: args.dir.clone(),
        nodes: args.nodes.clone(),
        hosts: args.hosts.clone(),
        clients: args.clients.clone(),
        overwrite: args.overwrite,
    })
    .map_err(|e| e.to_string())?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM (or at once if they cannot be watched,
/// which would leave the process unstoppable but by SIGKILL).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot watch SIGINT/SIGTERM");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// The WAL and snapshot directories for a path naming either a WAL directory
/// or a data directory.
fn resolve(path: &Path) -> Result<DataDir, String> {
    // Not a directory of segments (a data directory, or a missing path
    // the reader then reports by name).
    let holds_segments = wal::segment_name::list_segments(path).is_ok_and(|s| !s.is_empty());
    if !holds_segments {
        return DataDir::detect(path).map_err(|e| e.to_string());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut layout = DataDir::detect(parent).map_err(|e| e.to_string())?;
    layout.wal_dir = path.to_path_buf();
    layout.snap_dir = parent.join("snap");
    Ok(layout)
}

fn dump(path: &Path) -> Result<(), String> {
    let wal_dir = resolve(path)?.wal_dir;
    let end = wal::dump(&wal_dir, |record| println!("{}", record.to_json()))
        .map_err(|e| e.to_string())?;
    if let Some(torn) = end.torn_tail {
        warn_torn(&torn);
    }
    Ok(())
}

/// Reads the state file a snapshot refers to, if it refers to one, and
/// checks its size and CRC.
fn verify_state_file(
    snap_dir: &Path,
    snapshot: &ringraft::raftpb::Snapshot,
) -> Result<Option<ringraft::snap::StateFileRef>, String> {
    let reference = ringraft::snap::StateFileRef::decode_data(&snapshot.data)
        .map_err(|e| format!("snapshot at index {}: {e}", snapshot.metadata.index))?;
    let Some(reference) = reference else {
        return Ok(None);
    };
    ringraft::snap::StateFileReader::open(snap_dir, reference)
        .and_then(|reader| reader.finish())
        .map_err(|e| e.to_string())?;
    Ok(Some(reference))
}

fn verify(path: &Path) -> Result<(), String> {
    let data_dir = resolve(path)?;
    let markers = wal::valid_snapshot_entries(&data_dir.wal_dir).map_err(|e| e.to_string())?;
    let snapshotter = Snapshotter::read_only(&data_dir.snap_dir);
    let snapshot = snapshotter
        .load_newest_available_reporting(&markers, |broken| {
            eprintln!("warning: skipping broken snapshot: {broken}");
        })
        .map_err(|e| e.to_string())?;
    let at = snapshot
        .as_ref()
        .map_or_else(walpb::Snapshot::default, |s| walpb::Snapshot {
            index: s.metadata.index,
            term: s.metadata.term,
            conf_state: None,
        });
    let report = wal::verify(&data_dir.wal_dir, &at).map_err(|e| e.to_string())?;
    if let Some(torn) = &report.torn_tail {
        warn_torn(torn);
    }
    let state_file = match &snapshot {
        Some(s) => verify_state_file(&data_dir.snap_dir, s)?,
        None => None,
    };
    let snapshot_json = match (&snapshot, state_file) {
        (Some(s), Some(state)) => format!(
            "{{\"index\":{},\"term\":{},\"state_file\":{{\"name\":{},\"bytes\":{}}}}}",
            s.metadata.index,
            s.metadata.term,
            wal::dump::json_string(&state.file_name()),
            state.size_bytes
        ),
        (Some(s), None) => format!(
            "{{\"index\":{},\"term\":{}}}",
            s.metadata.index, s.metadata.term
        ),
        (None, _) => "null".to_string(),
    };
    let hs = report.hard_state;
    println!(
        "{{\"ok\":true,\"wal_dir\":{},\"node_id\":{},\"cluster_id\":{},\"snapshot\":{snapshot_json},\"hard_state\":{{\"term\":{},\"vote\":{},\"commit\":{}}},\"entries\":{},\"last_index\":{},\"segments\":[{}],\"torn_tail\":{}}}",
        wal::dump::json_string(&data_dir.wal_dir.to_string_lossy()),
        report.metadata.node_id,
        report.metadata.cluster_id,
        hs.term,
        hs.vote,
        hs.commit,
        report.entry_count,
        report
            .last_index
            .map_or("null".to_string(), |i| i.to_string()),
        segment_list(&report.segments),
        report
            .torn_tail
            .as_ref()
            .map_or("null".to_string(), torn_json),
    );
    Ok(())
}

fn segment_list(segments: &[SegmentName]) -> String {
    segments
        .iter()
        .map(|s| format!("\"{}\"", s.file_name()))
        .collect::<Vec<_>>()
        .join(",")
}

fn torn_json(torn: &TornTailReport) -> String {
    format!(
        "{{\"path\":{},\"offset\":{},\"reason\":{}}}",
        wal::dump::json_string(&torn.path.to_string_lossy()),
        torn.offset,
        wal::dump::json_string(&torn.reason)
    )
}

fn warn_torn(torn: &TornTailReport) {
    eprintln!(
        "warning: {}: torn write at byte {} ({}); the data before it is intact and opening the WAL repairs it",
        torn.path.display(),
        torn.offset,
        torn.reason
    );
}
