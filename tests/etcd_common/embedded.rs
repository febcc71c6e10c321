//! A one-node ringraft cluster inside the test process, over a fresh
//! `EtcdStore`, serving the gRPC services a test chooses on a loopback
//! listener (the client listener `ringraft serve` uses) — for tests that
//! drive etcd's services with etcdctl or a gRPC client without starting a
//! server process.

use ringraft::etcd::store::EtcdStore;
use ringraft::server::client_listener::{self, ClientLimits};
use ringraft::{InProcessNetwork, Node, NodeConfig, NodeHandle};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::RoutesBuilder;

/// The node, its listener's address, and what stops them.
pub struct EmbeddedNode {
    pub node: NodeHandle<EtcdStore>,
    pub endpoint: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Starts node 1 of cluster `cluster_id` in a temporary directory, waits
/// until it leads, and serves the services `services` adds. `parts` takes
/// what the services need from the store (its watch feed, applied
/// revision, lease deadlines) before the node owns it.
pub async fn start_embedded<T>(
    cluster_id: u64,
    parts: impl FnOnce(&EtcdStore) -> T,
    services: impl FnOnce(&NodeHandle<EtcdStore>, T, &mut RoutesBuilder),
) -> EmbeddedNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = NodeConfig::new(1, cluster_id, dir.path().join("data"), &[1]);
    let network = InProcessNetwork::new();
    let (transport, inbox) = network.endpoint(1);
    let store = EtcdStore::new();
    let store_parts = parts(&store);
    let node = Node::start(config, store, transport, inbox).expect("node starts");
    while node.status().await.expect("status").leader.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut routes = RoutesBuilder::default();
    services(&node, store_parts, &mut routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = listener.local_addr().expect("address");
    let (stop, stopped) = watch::channel(false);
    let server = client_listener::spawn(
        listener,
        axum::Router::new(),
        Some(routes.routes().into_axum_router()),
        None,
        ClientLimits::default(),
        stopped,
    );
    EmbeddedNode {
        node,
        endpoint,
        stop,
        server,
        _dir: dir,
    }
}

impl EmbeddedNode {
    /// Stops the listener and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}
