//! One HTTP request through the real client API router (`http::router`)
//! against a single-node cluster started once per process: no panic (a
//! panic in any of the node's tasks aborts the process through
//! libfuzzer-sys's panic hook), no request that takes over 10 s, no 5xx
//! other than the node's documented 503/507 answers.
//!
//! Input: byte 0 picks the method, then the path and query up to the first
//! `\n`, then the body.
#![no_main]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use ringraft::http::{HttpState, router};
use ringraft::KvStore;
use ringraft::node::{InProcessNetwork, Node, NodeConfig, NodeHandle};
use ringraft::persist::BackendChoice;
use ringraft::raft::StateRole;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

struct Target {
    runtime: Runtime,
    router: Router,
    _node: NodeHandle<KvStore>,
    _network: InProcessNetwork,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        // tmpfs when there is one: fdatasync there costs nothing.
        let parent = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("ringraft-fuzz-http-")
            .tempdir_in(parent)
            .expect("data directory");
        let network = InProcessNetwork::new();
        let node = runtime.block_on(async {
            let mut config = NodeConfig::new(1, 0xf022, dir.path().join("node1"), &[1]);
            config.tick_interval = Duration::from_millis(10);
            config.persist.backend = BackendChoice::Std;
            config.snapshot_count = 1000;
            let (transport, inbox) = network.endpoint(1);
            let node = Node::start(config, KvStore::new(), transport, inbox).expect("node starts");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(status) = node.status().await
                    && status.role == StateRole::Leader
                {
                    break;
                }
                assert!(Instant::now() < deadline, "no leader within 30 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            node
        });
        let router = router(HttpState::new(node.clone()));
        Target {
            runtime,
            router,
            _node: node,
            _network: network,
            _dir: dir,
        }
    })
}

const METHODS: [Method; 6] = [
    Method::GET,
    Method::PUT,
    Method::DELETE,
    Method::POST,
    Method::HEAD,
    Method::PATCH,
];

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(method) % METHODS.len()].clone();
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (uri, body) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let Ok(uri) = std::str::from_utf8(uri) else {
        return;
    };
    // Only what an HTTP/1 server would hand the router: an origin-form URI.
    let Ok(uri) = axum::http::Uri::try_from(uri) else {
        return;
    };
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return;
    }
    // Membership changes would take the one-node cluster's quorum away
    // (every later write would then only time out): leave them out.
    if uri.path().starts_with("/v1/members") && method != Method::GET {
        return;
    }
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let target = target();
    let status = target.runtime.block_on(async {
        let answer = async {
            let response = target
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            let _ = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await;
            status
        };
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("the request took over 10 s")
    });
    assert!(
        !status.is_server_error()
            || status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::INSUFFICIENT_STORAGE,
        "server error {status}"
    );
});
