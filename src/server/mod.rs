//! The `ringraft serve` process: a node with the TCP transport between
//! peers and the HTTP API for clients.
//!
//! Owns: binding the peer and client listeners, starting the transport,
//! the node and the HTTP server in the right order, telling the transport
//! where every member is (initial cluster, then the replicated member
//! directory), wiring the space quota (`--quota-backend-bytes`) to the
//! store's size, the Prometheus recorder's upkeep, and the orderly stop
//! (HTTP first, then the node's graceful shutdown, then the transport).
//! Guarantees: a bad configuration, an address in use, or a data
//! directory of another node or cluster is an error before anything
//! listens for clients; a stop requested by the caller's `shutdown` future
//! drains the node (everything acknowledged was durable before). A node
//! that stops by itself — a storage failure (a full disk, a failed
//! fdatasync), a panic in one of its actors, the state machine's error —
//! ends [`run`] with that cause: the HTTP API and the transport stop and
//! `ringraft serve` exits 1 with one log line naming it, as etcd exits,
//! so that a supervisor restarts it (on a full disk, after space is
//! freed) rather than a zombie answering errors. Until then, requests the
//! HTTP API still takes are answered with the cause (507 for storage).
//! May not touch: raft, storage or HTTP details (their modules' business).

pub mod client_listener;
pub mod config;
pub mod data_format;
mod descriptors;
// Public only for the fuzz target (`fuzz/fuzz_targets/h2_authority.rs`).
#[doc(hidden)]
pub mod h2_authority;
mod publish;
pub mod restore;

pub use config::{ServeConfig, ServeConfigError, cluster_id_of, parse_initial_cluster};
pub use descriptors::raise_descriptor_limit;

use crate::etcd::{EtcdServices, EtcdStore};
use crate::http::{HttpState, router};
use crate::kv::SpaceQuota;
use crate::node::{Consistency, Node, NodeError, NodeHandle, Transport};
use crate::transport::{TcpConfig, TcpTransport, TcpTransportError};
use client_listener::ClientTlsSetup;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(#[from] ServeConfigError),
    /// The data directory cannot be created.
    #[error(transparent)]
    DataDir(#[from] crate::storage::DataDirError),
    /// The data directory holds another format.
    #[error(transparent)]
    DataFormat(#[from] data_format::DataFormatError),
    /// A listener cannot bind.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// "peers" or "clients".
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
    /// A certificate, key or CA file is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The transport refused to start.
    #[error("transport: {0}")]
    Transport(#[from] TcpTransportError),
    /// The node failed to start or stopped with an error.
    #[error("node: {0}")]
    Node(#[from] NodeError),
}

/// How often the Prometheus recorder's histograms are compacted.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A running server (see [`start`]).
#[derive(Debug)]
pub struct Server {
    /// The node.
    pub node: NodeHandle<EtcdStore>,
    /// Where peers connect (the bound address, useful with port 0).
    pub peer_addr: SocketAddr,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    transport: Arc<TcpTransport>,
    http: tokio::task::JoinHandle<()>,
    http_stop: watch::Sender<bool>,
}

/// Starts a server per `config`; `metrics` is what `GET /metrics` renders.
pub async fn start(
    config: &ServeConfig,
    metrics: Option<PrometheusHandle>,
) -> Result<Server, ServeError> {
    config.validate()?;
    // Certificates are checked before anything is created or bound.
    let client_tls = match &config.client_tls {
        Some(tls) => Some(ClientTlsSetup {
            config: crate::tls::client_port_server_config(tls)?,
            client_cert_auth: tls.client_cert_auth,
        }),
        None => None,
    };
    let peer_tls = match &config.peer_tls {
        Some(tls) => Some(tls.load(config.node_id)?),
        None => None,
    };
    // Durably (its parent fsynced); the node locks it when it boots.
    crate::storage::create_data_dir(&config.data_dir)?;
    data_format::check_or_mark(&config.data_dir)?;
    let peer_listener = bind("peers", config.listen_peer)?;
    let client_listener = bind("clients", config.listen_client)?;
    let peer_addr = local_addr("peers", &peer_listener, config.listen_peer)?;
    let client_addr = local_addr("clients", &client_listener, config.listen_client)?;

    let transport = Arc::new(TcpTransport::new(
        config.node_id,
        config.cluster_id(),
        TcpConfig {
            tls: peer_tls,
            ..TcpConfig::default()
        },
    )?);
    for (&id, url) in &config.initial_cluster {
        transport.add_peer(id, url);
    }
    let (inbox_sender, inbox) =
        crate::transport::peer_inbox(crate::transport::DEFAULT_PEER_INBOX_CAPACITY);
    transport.listen(peer_listener, inbox_sender)?;

    let node_config = config.node_config();
    let node_transport: Arc<dyn Transport> = transport.clone();
    let store = EtcdStore::new();
    // Taken before the store moves into the node: the HTTP layer admits
    // puts against the size without a round trip through the node, the
    // watch service follows the applied events, and headers report the
    // applied revision.
    let state_size = store.state_size();
    let feed = store.watch_feed();
    let revision = store.applied_revision();
    let lease_deadlines = store.lease_deadlines();
    // Boot replays the WAL: off the runtime's worker threads.
    let node =
        tokio::task::spawn_blocking(move || Node::start(node_config, store, node_transport, inbox))
            .await
            .map_err(|_| NodeError::Stopped)??;
    learn_member_directory(&node, &transport).await;

    if let Some(handle) = &metrics {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut upkeep = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
            loop {
                upkeep.tick().await;
                handle.run_upkeep();
            }
        });
    }
    let mut state = HttpState::new(node.clone());
    state.initial_peer_urls = config.initial_cluster.clone();
    state.metrics = metrics;
    let quota = Arc::new(SpaceQuota::new(config.quota_bytes(), state_size));
    state.quota = Some(Arc::clone(&quota));
    state.access = config.client_permissions.clone();
    let scheme = if config.client_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let cluster_id = config.cluster_id();
    let client_url = advertised_client_url(config, scheme, client_addr);
    let headers = crate::etcd::HeaderSource::new(node.clone(), cluster_id, revision.clone());
    let services = EtcdServices {
        kv: crate::etcd::KvService::new(node.clone(), cluster_id).with_quota(Arc::clone(&quota)),
        watch: crate::etcd::WatchService::new(node.clone(), feed, cluster_id)
            .with_progress_interval(config.watch_progress_interval),
        lease: crate::etcd::LeaseService::new(headers.clone(), lease_deadlines.clone()),
        cluster: crate::etcd::ClusterService::new(
            headers.clone(),
            config.initial_cluster.clone(),
            client_url.clone(),
        ),
        maintenance: crate::etcd::MaintenanceService::new(headers, Some(quota)),
    };
    let grpc = crate::etcd::grpc_routes(services, config.client_permissions.clone());
    // Ends by itself when the node stops.
    let _compactor = crate::etcd::compactor::spawn(node.clone(), revision, config.auto_compaction);
    let _lessor = crate::etcd::lessor::spawn(node.clone(), lease_deadlines);
    // Ends by itself once the URL shows, or when the node stops.
    let _publisher = publish::spawn(node.clone(), client_url);
    let (http_stop, stopped) = watch::channel(false);
    let http = client_listener::spawn(
        client_listener,
        router(state),
        Some(grpc),
        client_tls,
        config.client_limits,
        stopped,
    );
    tracing::info!(
        node = config.node_id,
        %peer_addr,
        %client_addr,
        data_dir = %config.data_dir.display(),
        path = ?node.boot_report().path,
        "ringraft serving"
    );
    Ok(Server {
        node,
        peer_addr,
        client_addr,
        transport,
        http,
        http_stop,
    })
}

impl Server {
    /// Stops taking client requests, shuts the node down gracefully, then
    /// the transport. Returns the node's failure, if it had one.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.http_stop.send(true);
        // The listener task only ends; a panic in it is the runtime's report.
        let _ = self.http.await;
        let node_outcome = self.node.shutdown().await;
        self.transport.shutdown();
        Ok(node_outcome?)
    }
}

/// Runs a server until `shutdown` completes, then stops it gracefully; or
/// until the node stops by itself (a storage failure, a panic in one of
/// its actors), then stops the rest and returns that cause, so that the
/// process exits rather than serving errors.
pub async fn run(
    config: &ServeConfig,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let server = start(config, metrics).await?;
    let node = server.node.clone();
    tokio::select! {
        () = shutdown => {
            tracing::info!(node = config.node_id, "stopping");
            server.stop().await
        }
        stopped = node.stopped() => {
            let cause = stopped.err().unwrap_or(NodeError::Stopped);
            tracing::error!(node = config.node_id, %cause, "the node stopped by itself; exiting");
            // The node's outcome is `cause`, already reported.
            let _ = server.stop().await;
            Err(ServeError::Node(cause))
        }
    }
}

/// Pending connections the kernel queues for a listener. std's 128 is
/// soon full when a client listener is at its connection cap, and then
/// the kernel drops new SYNs and clients stall in retransmits.
const LISTEN_BACKLOG: u32 = 1024;

fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let error = |source| ServeError::Bind { what, addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(error)?;
    // As std's bind does: a restarted server may reuse its port at once.
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|source| ServeError::Bind { what, addr, source })
}

/// The client URL this member publishes: `--advertise-client-url`, or the
/// listener's address (said to be of no use to other hosts when it is a
/// wildcard address).
fn advertised_client_url(config: &ServeConfig, scheme: &str, client_addr: SocketAddr) -> String {
    if let Some(url) = &config.advertise_client_url {
        return url.clone();
    }
    if client_addr.ip().is_unspecified() {
        tracing::warn!(
            %client_addr,
            "clients listen on a wildcard address: the client URL this member publishes \
             names no host others can dial; set --advertise-client-url"
        );
    }
    format!("{scheme}://{client_addr}")
}

/// Members added after the initial cluster are known by the replicated
/// member directory (restored from the snapshot at boot; changes after it
/// reach the transport as raft re-applies them).
async fn learn_member_directory(node: &NodeHandle<EtcdStore>, transport: &TcpTransport) {
    match node.member_addresses(Consistency::Serializable).await {
        Ok(directory) => {
            for (id, url) in directory {
                if !url.is_empty() {
                    transport.add_peer(id, &url);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "member directory unavailable at start"),
    }
}
