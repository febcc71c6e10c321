//! etcd's KV service (Range, Put, DeleteRange, Txn, Compact) over a node
//! running the [`EtcdStore`].
//!
//! Owns: checking a request as etcd's server does before proposing it
//! (`crate::mvcc`'s validation: empty keys, `ignore_value` with a value,
//! txn shape and size), proposing writes, serving reads at the asked
//! consistency, and building responses with headers. Guarantees: a write
//! is answered once applied, with the revision it produced; a Range is
//! linearizable unless it asks for `serializable` (then this member's
//! state, as etcd); a refused request changes nothing and gets etcd's code
//! and message. May not touch: the store's rules, raft.

use super::convert;
use super::header::{header_of, status_of};
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::kv_server::Kv;
use super::store::{
    EtcdCommand, EtcdCommandError, EtcdQuery, EtcdQueryResult, EtcdResponse, EtcdStore, Operation,
};
use crate::mvcc;
use crate::node::{Consistency, NodeHandle};
use tonic::{Request, Response, Status};

/// The KV service of one node.
#[derive(Debug, Clone)]
pub struct KvService {
    node: NodeHandle<EtcdStore>,
    cluster_id: u64,
}

impl KvService {
    /// The service of `node`, a member of cluster `cluster_id`.
    pub fn new(node: NodeHandle<EtcdStore>, cluster_id: u64) -> KvService {
        KvService { node, cluster_id }
    }

    async fn header(&self, revision: i64) -> Result<Option<pb::ResponseHeader>, Status> {
        Ok(Some(
            header_of(&self.node, self.cluster_id, revision).await?,
        ))
    }

    async fn propose(&self, operation: Operation) -> Result<EtcdResponse, Status> {
        let command = EtcdCommand {
            operation: Some(operation),
        };
        match self.node.propose(command).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(EtcdCommandError::Mvcc(error))) => Err(convert::mvcc_status(&error)),
            Ok(Err(EtcdCommandError::Invalid(message))) => Err(Status::invalid_argument(message)),
            Err(error) => Err(status_of(&error)),
        }
    }
}

fn unexpected(what: &str) -> Status {
    Status::internal(format!(
        "etcdserver: the store answered a {what} with another kind"
    ))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = request.into_inner();
        let consistency = if request.serializable {
            Consistency::Serializable
        } else {
            Consistency::Linearizable
        };
        let range = convert::range_request(request)?;
        mvcc::validate_range(&range).map_err(|e| convert::mvcc_status(&e))?;
        let answer = self
            .node
            .read(EtcdQuery::Range(range), consistency)
            .await
            .map_err(|e| status_of(&e))?;
        let EtcdQueryResult::Range(answer) = answer else {
            return Err(unexpected("range"));
        };
        let answer = answer.map_err(|e| convert::mvcc_status(&e))?;
        let header = self.header(answer.revision).await?;
        Ok(Response::new(convert::range_response(answer, header)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        mvcc::validate_put(&convert::put_request(request.clone()))
            .map_err(|e| convert::mvcc_status(&e))?;
        let EtcdResponse::Put(answer) = self.propose(Operation::Put(request)).await? else {
            return Err(unexpected("put"));
        };
        let header = self.header(answer.revision).await?;
        Ok(Response::new(convert::put_response(answer, header)))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        mvcc::validate_delete_range(&convert::delete_request(request.clone()))
            .map_err(|e| convert::mvcc_status(&e))?;
        let EtcdResponse::DeleteRange(answer) =
            self.propose(Operation::DeleteRange(request)).await?
        else {
            return Err(unexpected("delete"));
        };
        let header = self.header(answer.revision).await?;
        Ok(Response::new(convert::delete_response(answer, header)))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let request = request.into_inner();
        let txn = convert::txn_request(request.clone())?;
        mvcc::validate_txn(&txn, mvcc::DEFAULT_MAX_TXN_OPS)
            .map_err(|e| convert::mvcc_status(&e))?;
        let EtcdResponse::Txn(answer) = self.propose(Operation::Txn(request)).await? else {
            return Err(unexpected("txn"));
        };
        let header = self.header(answer.revision).await?;
        Ok(Response::new(convert::txn_response(answer, header)))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let request = request.into_inner();
        let EtcdResponse::Compacted { revision } =
            self.propose(Operation::Compaction(request)).await?
        else {
            return Err(unexpected("compaction"));
        };
        Ok(Response::new(pb::CompactionResponse {
            header: self.header(revision).await?,
        }))
    }
}
