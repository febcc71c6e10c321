//! etcd's Lease service (LeaseGrant, LeaseRevoke, LeaseKeepAlive,
//! LeaseTimeToLive, LeaseLeases) over a node running the [`EtcdStore`].
//!
//! Owns: checking lease requests as etcd's server does, choosing the id of
//! a grant that leaves it to the server, proposing grants, revocations and
//! renewals, and answering with etcd's fields, codes and messages.
//! Guarantees: a grant, revocation or renewal is answered once applied;
//! TimeToLive and Leases are linearizable reads of the replicated table,
//! and the remaining TTL is this member's deadline (set when it applied
//! the last renewal; see `super::leases`). May not touch: the store's
//! rules, raft, expiry (`super::lessor`).
//!
//! As etcd: a TTL below the minimum is raised to it, one above
//! [`super::leases::MAX_TTL_SECONDS`] is `OUT_OF_RANGE` "etcdserver: too large lease
//! TTL"; an id that exists is `FAILED_PRECONDITION` "etcdserver: lease
//! already exists"; an unknown lease is `NOT_FOUND` "etcdserver: requested
//! lease not found" for a revocation, a keep-alive answer with TTL 0, and
//! a TimeToLive answer with TTL -1. Unlike etcd, a keep-alive is a raft
//! proposal (etcd renews on the leader alone and checkpoints remaining
//! TTLs): the renewal is then known to every member, so a new leader
//! neither forgets nor extends it.

use super::header::{HeaderSource, status_of};
use super::leases::{LeaseDeadlines, granted_ttl};
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::lease_server::Lease;
use super::propose::{propose, unexpected};
use super::store::{
    EtcdQuery, EtcdQueryResult, EtcdResponse, EtcdStore, LeaseGrant, LeaseRenew, LeaseRevoke,
    Operation,
};
use crate::mvcc::MvccError;
use crate::node::{Consistency, NodeHandle};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How many times a grant whose server-chosen id collided is tried with
/// another id (a collision of two random 63-bit ids is already unlikely).
const GRANT_ATTEMPTS: usize = 3;

/// Keep-alive answers a client may fall behind by before its stream
/// waits.
const KEEP_ALIVE_OUTBOUND: usize = 16;

/// The Lease service of one node.
#[derive(Debug, Clone)]
pub struct LeaseService {
    headers: HeaderSource,
    deadlines: LeaseDeadlines,
}

impl LeaseService {
    /// The service of the node behind `headers`, whose store sets
    /// `deadlines` ([`EtcdStore::lease_deadlines`]).
    pub fn new(headers: HeaderSource, deadlines: LeaseDeadlines) -> LeaseService {
        LeaseService { headers, deadlines }
    }

    fn node(&self) -> &NodeHandle<EtcdStore> {
        self.headers.node()
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(super::header::header_of(
            self.node(),
            self.headers.cluster_id(),
            revision,
        ))
    }

    async fn read(&self, query: EtcdQuery) -> Result<EtcdQueryResult, Status> {
        self.node()
            .read(query, Consistency::Linearizable)
            .await
            .map_err(|e| status_of(&e))
    }
}

/// Proposes `operation` on `node`; a refusal is etcd's status.
/// A fresh lease id: positive and not 0, random so that members choosing
/// ids at once do not collide (etcd derives them from the member id and
/// a clock; the apply refuses a taken id either way).
fn random_lease_id() -> i64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    let id = (hasher.finish() >> 1) as i64;
    if id == 0 { 1 } else { id }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        if granted_ttl(request.ttl).is_none() {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        let chosen_by_server = request.id == 0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let id = if chosen_by_server {
                random_lease_id()
            } else {
                request.id
            };
            let grant = LeaseGrant {
                id,
                ttl: request.ttl,
            };
            match propose(self.node(), Operation::LeaseGrant(grant)).await {
                Ok(EtcdResponse::LeaseGranted { id, ttl, revision }) => {
                    return Ok(Response::new(pb::LeaseGrantResponse {
                        header: self.header(revision),
                        id,
                        ttl,
                        error: String::new(),
                    }));
                }
                Ok(_) => return Err(unexpected("lease grant")),
                Err(status)
                    if chosen_by_server
                        && attempts < GRANT_ATTEMPTS
                        && status.message() == MvccError::LeaseExists.to_string() => {}
                Err(status) => return Err(status),
            }
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let EtcdResponse::LeaseRevoked(revoked) =
            propose(self.node(), Operation::LeaseRevoke(LeaseRevoke { id })).await?
        else {
            return Err(unexpected("lease revocation"));
        };
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.header(revoked.revision),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (outbound, responses) = mpsc::channel(KEEP_ALIVE_OUTBOUND);
        let service = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let id = request.id;
                let answer =
                    match propose(service.node(), Operation::LeaseRenew(LeaseRenew { id })).await {
                        Ok(EtcdResponse::LeaseRenewed { ttl, revision }) => {
                            Ok(pb::LeaseKeepAliveResponse {
                                header: service.header(revision),
                                id,
                                ttl,
                            })
                        }
                        Ok(_) => Err(unexpected("lease renewal")),
                        // etcd answers an unknown lease with TTL 0.
                        Err(status) if status.message() == MvccError::LeaseNotFound.to_string() => {
                            Ok(pb::LeaseKeepAliveResponse {
                                header: Some(service.headers.header()),
                                id,
                                ttl: 0,
                            })
                        }
                        Err(status) => Err(status),
                    };
                let failed = answer.is_err();
                if outbound.send(answer).await.is_err() || failed {
                    // The client went, or the renewal failed: the stream
                    // ends (etcd ends it on an error too).
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let EtcdQueryResult::Lease(info, revision) = self
            .read(EtcdQuery::Lease {
                id: request.id,
                keys: request.keys,
            })
            .await?
        else {
            return Err(unexpected("lease read"));
        };
        let header = self.header(revision);
        let Some(info) = info else {
            return Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: -1,
                ..pb::LeaseTimeToLiveResponse::default()
            }));
        };
        // The read ran after this member applied everything committed, so
        // it knows the deadline of a lease the table holds.
        let ttl = self
            .deadlines
            .remaining_seconds(request.id, Instant::now())
            .unwrap_or(info.granted_ttl);
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header,
            id: request.id,
            ttl,
            granted_ttl: info.granted_ttl,
            keys: info.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let EtcdQueryResult::Leases(ids, revision) = self.read(EtcdQuery::Leases).await? else {
            return Err(unexpected("lease listing"));
        };
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.header(revision),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_chosen_ids_are_positive_and_differ() {
        let ids: std::collections::BTreeSet<i64> = (0..1000).map(|_| random_lease_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|&id| id > 0));
    }
}
