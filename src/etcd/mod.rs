//! etcd's v3 gRPC API on the client port, so that etcdctl and etcd's
//! client libraries work against ringraft.
//!
//! Owns: the wire types and service stubs generated from the project's
//! own definitions of etcd's format (`proto/etcd/*.proto`, compiled by
//! `build.rs` with protox and tonic; see [`pb`]), the services built on
//! them, and the [`grpc_routes`] the client listener serves beside the
//! HTTP `/v1` API (one port, told apart by HTTP version and content type,
//! as etcd does).
//!
//! Served so far: the Cluster service ([`cluster_service`]) and the
//! Maintenance service's Status, Alarm, Defragment and MoveLeader
//! ([`maintenance_service`]). The key-value, watch and lease services and
//! Hash, HashKV and Snapshot come with the MVCC store (issue 20); until
//! then a client calling them gets `UNIMPLEMENTED`, which is gRPC's answer
//! for a method the server does not serve. [`store`] is that MVCC store as a
//! state machine (etcd's requests as commands), [`convert`] maps between the
//! wire types and the store's, and [`kv_service`] and [`watch_service`]
//! serve KV and Watch over a node running it (tested embedded with
//! etcdctl); `ringraft serve` does not run
//! that store yet: the `/v1` API has to move onto it first.
//!
//! May not touch: raft, storage, TLS (the listener's), the `/v1` API.

pub mod cluster_service;
pub mod convert;
pub mod header;
pub mod kv_service;
pub mod maintenance_service;
pub mod store;
pub mod watch_service;

pub use cluster_service::ClusterService;

use crate::access::{AccessPolicy, ClientIdentity};
use axum::extract::State;
pub use header::HeaderSource;
pub use maintenance_service::MaintenanceService;
use std::sync::Arc;

/// The generated wire types and service stubs: `mvccpb` (key-values and
/// events) and `etcdserverpb` (requests, responses and the services).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// etcd's `mvccpb` package.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// etcd's `etcdserverpb` package.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// The gRPC services of the client port, as the router the client
/// listener hands gRPC requests to. Every call is first checked against
/// `access` with the identity of the client's certificate (the levels of
/// `crate::access`); a refusal is `PERMISSION_DENIED` naming what is
/// missing.
pub fn grpc_routes(
    cluster: ClusterService,
    maintenance: MaintenanceService,
    access: AccessPolicy,
) -> axum::Router {
    use pb::etcdserverpb::cluster_server::ClusterServer;
    use pb::etcdserverpb::maintenance_server::MaintenanceServer;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(ClusterServer::new(cluster));
    routes.add_service(MaintenanceServer::new(maintenance));
    routes
        .routes()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            check_access,
        ))
}

async fn check_access(
    State(access): State<Arc<AccessPolicy>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let identity = request.extensions().get::<ClientIdentity>();
    match access.check(identity, request.method(), request.uri().path()) {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            tonic::Status::permission_denied(format!("etcdserver: {denied}")).into_http()
        }
    }
}
