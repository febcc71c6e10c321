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
//! [`store`] is the MVCC store as a state machine (etcd's requests as
//! commands) that `ringraft serve` runs; [`v1_store`] serves the HTTP
//! `/v1` API over the same store, so both APIs see one key space.
//! Served: KV ([`kv_service`]), Watch ([`watch_service`]), Lease
//! ([`lease_service`]; leases are replicated in the store, see
//! [`leases`], and expired by the leader's [`lessor`]), the Cluster
//! service ([`cluster_service`]) and the Maintenance service's Status,
//! Alarm, Defragment, MoveLeader, Hash, HashKV and Snapshot
//! ([`maintenance_service`]; the backup's format in [`backup`]);
//! [`convert`] maps between the wire types and the store's.
//!
//! May not touch: raft, storage, TLS (the listener's), the `/v1` API.

pub mod backup;
pub mod cluster_service;
pub mod compactor;
pub mod convert;
pub mod header;
pub mod kv_service;
pub mod lease_service;
pub mod lease_snapshot;
pub mod leases;
pub mod lessor;
pub mod maintenance_service;
mod propose;
mod snapshot_stream;
pub mod store;
pub mod v1_store;
mod watch_batches;
pub mod watch_service;

pub use cluster_service::ClusterService;
pub use kv_service::KvService;
pub use lease_service::LeaseService;
pub use leases::LeaseDeadlines;
pub use store::{AppliedRevision, EtcdStore, WatchFeed};
pub use watch_service::WatchService;

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

/// The services of one node running the [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdServices {
    /// Range, Put, DeleteRange, Txn, Compact.
    pub kv: KvService,
    /// Watch.
    pub watch: WatchService,
    /// Leases.
    pub lease: LeaseService,
    /// Membership.
    pub cluster: ClusterService,
    /// Status, alarms, defragment, leader moves, hashes.
    pub maintenance: MaintenanceService,
}

/// The gRPC services of the client port, as the router the client
/// listener hands gRPC requests to. Every call is first checked against
/// `access` with the identity of the client's certificate (the levels of
/// `crate::access`); a refusal is `PERMISSION_DENIED` naming what is
/// missing.
pub fn grpc_routes(services: EtcdServices, access: AccessPolicy) -> axum::Router {
    use pb::etcdserverpb::cluster_server::ClusterServer;
    use pb::etcdserverpb::kv_server::KvServer;
    use pb::etcdserverpb::lease_server::LeaseServer;
    use pb::etcdserverpb::maintenance_server::MaintenanceServer;
    use pb::etcdserverpb::watch_server::WatchServer;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(KvServer::new(services.kv));
    routes.add_service(WatchServer::new(services.watch));
    routes.add_service(LeaseServer::new(services.lease));
    routes.add_service(ClusterServer::new(services.cluster));
    routes.add_service(MaintenanceServer::new(services.maintenance));
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
