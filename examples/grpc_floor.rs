//! The cost floor of an etcd v3 gRPC put on this machine's stack: etcd's
//! KV service over tonic and hyper's HTTP/2 server, as `ringraft serve`
//! runs them, but a put is answered at once — no raft, no disk, no store.
//!
//! Not a server anyone should use: `benches/grpc-floor.sh` drives it with
//! `ringraft bench --target grpc://…` to measure what the gRPC transport
//! alone costs per put (client and server CPU), so that the throughput a
//! real server could reach with this client on this machine is a measured
//! bound rather than a guess.
//!
//! Usage: `cargo run --release --example grpc_floor -- 127.0.0.1:23999`

use ringraft::etcd::pb::etcdserverpb as pb;
use ringraft::etcd::pb::etcdserverpb::kv_server::{Kv, KvServer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use tonic::{Request, Response, Status};

/// Counts revisions so that answers look like a store's.
#[derive(Default)]
struct FloorKv {
    revision: AtomicI64,
}

impl FloorKv {
    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: 1,
            member_id: 1,
            revision,
            raft_term: 1,
        })
    }
}

#[tonic::async_trait]
impl Kv for FloorKv {
    async fn range(
        &self,
        _request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let revision = self.revision.load(Ordering::Relaxed);
        Ok(Response::new(pb::RangeResponse {
            header: self.header(revision),
            ..pb::RangeResponse::default()
        }))
    }

    async fn put(
        &self,
        _request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let revision = self.revision.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Response::new(pb::PutResponse {
            header: self.header(revision),
            prev_kv: None,
        }))
    }

    async fn delete_range(
        &self,
        _request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("the floor answers puts and ranges"))
    }

    async fn txn(
        &self,
        _request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        Err(Status::unimplemented("the floor answers puts and ranges"))
    }

    async fn compact(
        &self,
        _request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Err(Status::unimplemented("the floor answers puts and ranges"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:23999".to_string())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let service = KvServer::new(FloorKv::default());
    eprintln!("grpc floor on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let builder =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = builder.serve_connection(io, service).await {
                eprintln!("connection ended: {error}");
            }
        });
    }
}
