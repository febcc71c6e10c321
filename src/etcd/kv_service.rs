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
use super::propose::{propose, unexpected};
use super::store::{EtcdQuery, EtcdQueryResult, EtcdResponse, EtcdStore, Operation};
use crate::kv::{QuotaReservation, SpaceQuota};
use crate::mvcc;
use crate::node::{Consistency, NodeHandle};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The KV service of one node.
#[derive(Debug, Clone)]
pub struct KvService {
    node: NodeHandle<EtcdStore>,
    cluster_id: u64,
    quota: Option<Arc<SpaceQuota>>,
}

impl KvService {
    /// The service of `node`, a member of cluster `cluster_id`, admitting
    /// every write.
    pub fn new(node: NodeHandle<EtcdStore>, cluster_id: u64) -> KvService {
        KvService {
            node,
            cluster_id,
            quota: None,
        }
    }

    /// The same service admitting puts (and txns that put) against
    /// `quota`, as etcd's `--quota-backend-bytes` does: refused with
    /// `RESOURCE_EXHAUSTED` "etcdserver: mvcc: database space exceeded"
    /// while the NOSPACE alarm is raised or when the write would raise it.
    pub fn with_quota(mut self, quota: Arc<SpaceQuota>) -> KvService {
        self.quota = Some(quota);
        self
    }

    /// Admits a write of `key_bytes` of keys and `value_bytes` of values;
    /// hold the reservation until the write is answered.
    fn admit(
        &self,
        key_bytes: usize,
        value_bytes: usize,
    ) -> Result<Option<QuotaReservation<'_>>, Status> {
        match &self.quota {
            None => Ok(None),
            Some(quota) => quota
                .admit_put(key_bytes, value_bytes)
                .map(Some)
                .map_err(|_| {
                    Status::resource_exhausted("etcdserver: mvcc: database space exceeded")
                }),
        }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(header_of(&self.node, self.cluster_id, revision))
    }
}

/// The key and value bytes a txn's puts may write: the larger branch,
/// nested txns included (only one branch runs).
fn txn_put_bytes(txn: &pb::TxnRequest) -> (usize, usize) {
    let branch = |ops: &[pb::RequestOp]| {
        ops.iter().fold((0usize, 0usize), |(keys, values), op| {
            use pb::request_op::Request;
            let (k, v) = match &op.request {
                Some(Request::RequestPut(put)) => (put.key.len(), put.value.len()),
                Some(Request::RequestTxn(nested)) => txn_put_bytes(nested),
                _ => (0, 0),
            };
            (keys.saturating_add(k), values.saturating_add(v))
        })
    };
    let success = branch(&txn.success);
    let failure = branch(&txn.failure);
    if success.0 + success.1 >= failure.0 + failure.1 {
        success
    } else {
        failure
    }
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
        let header = self.header(answer.revision);
        Ok(Response::new(convert::range_response(answer, header)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        mvcc::validate_put(&convert::put_request(request.clone()))
            .map_err(|e| convert::mvcc_status(&e))?;
        let _admitted = self.admit(request.key.len(), request.value.len())?;
        let EtcdResponse::Put(answer) = propose(&self.node, Operation::Put(request)).await? else {
            return Err(unexpected("put"));
        };
        let header = self.header(answer.revision);
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
            propose(&self.node, Operation::DeleteRange(request)).await?
        else {
            return Err(unexpected("delete"));
        };
        let header = self.header(answer.revision);
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
        let (key_bytes, value_bytes) = txn_put_bytes(&request);
        let _admitted = if key_bytes + value_bytes > 0 {
            self.admit(key_bytes, value_bytes)?
        } else {
            None
        };
        let EtcdResponse::Txn(answer) = propose(&self.node, Operation::Txn(request)).await? else {
            return Err(unexpected("txn"));
        };
        let header = self.header(answer.revision);
        Ok(Response::new(convert::txn_response(answer, header)))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let request = request.into_inner();
        let EtcdResponse::Compacted { revision } =
            propose(&self.node, Operation::Compaction(request)).await?
        else {
            return Err(unexpected("compaction"));
        };
        Ok(Response::new(pb::CompactionResponse {
            header: self.header(revision),
        }))
    }
}
