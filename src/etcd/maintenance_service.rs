//! etcd's Maintenance service: Status, Alarm, Defragment, MoveLeader,
//! Hash, HashKV and Snapshot (streamed by `snapshot_stream`, in the
//! format of [`super::backup`]).
//!
//! Owns: mapping the node's status, the space quota's alarm and the
//! store's hashes onto etcd's messages. Guarantees: Status reads this
//! node's own view (etcd's does too: `etcdctl endpoint status` asks each
//! endpoint); Hash and HashKV hash this member's applied state (a
//! serializable read, no raft round trip: comparing members is their
//! point, so each must answer for itself), with the numbers documented in
//! `crate::mvcc`'s `hash.rs` — HashKV the stored versions up to the asked
//! revision (0: the current one), with the compacted revision beside it;
//! Hash the whole replicated state (versions, revisions, leases). A
//! revision above the current one or at or below the compacted one gets
//! etcd's `OUT_OF_RANGE` and message; the header carries the store's
//! current revision at the read, as etcd's does. The NOSPACE
//! alarm is the quota's, re-evaluated on every read, and clears by itself
//! once the state is back under 90% of the quota, so DEACTIVATE only asks
//! for that re-evaluation; ACTIVATE is refused (an operator cannot raise
//! the quota's alarm by hand). May not touch: the quota's rules (`kv`).

use super::convert::mvcc_status;
use super::header::{HeaderSource, header_of, status_of};
use super::pb::etcdserverpb::alarm_request::AlarmAction;
use super::pb::etcdserverpb::maintenance_server::Maintenance;
use super::pb::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use super::propose::unexpected;
use super::store::{EtcdQuery, EtcdQueryResult};
use crate::kv::SpaceQuota;
use crate::node::Consistency;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The version Status reports: the etcd API level ringraft speaks, with
/// ringraft's own version as a pre-release tag, so tools that parse it as
/// a semantic version read an etcd 3.4 API.
pub fn reported_version() -> String {
    format!("3.4.0-ringraft.{}", env!("CARGO_PKG_VERSION"))
}

/// The Maintenance service of one node.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    headers: HeaderSource,
    quota: Option<Arc<SpaceQuota>>,
}

impl MaintenanceService {
    /// The service of the node behind `headers`, with its space quota.
    pub fn new(headers: HeaderSource, quota: Option<Arc<SpaceQuota>>) -> MaintenanceService {
        MaintenanceService { headers, quota }
    }

    /// Answers `query` from this member's applied state.
    async fn read(&self, query: EtcdQuery) -> Result<EtcdQueryResult, Status> {
        self.headers
            .node()
            .read(query, Consistency::Serializable)
            .await
            .map_err(|e| status_of(&e))
    }

    /// The header of a response reporting `revision`.
    fn header(&self, revision: i64) -> super::pb::etcdserverpb::ResponseHeader {
        header_of(self.headers.node(), self.headers.cluster_id(), revision)
    }

    /// The alarms raised on this member now.
    fn alarms(&self) -> Vec<AlarmMember> {
        match &self.quota {
            Some(quota) if quota.refresh() => vec![AlarmMember {
                member_id: self.headers.node().id(),
                alarm: AlarmType::Nospace as i32,
            }],
            _ => Vec::new(),
        }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let request = request.into_inner();
        if request.action == AlarmAction::Activate as i32 {
            return Err(Status::invalid_argument(
                "etcdserver: alarms are raised by the space quota, not by hand",
            ));
        }
        Ok(Response::new(AlarmResponse {
            header: Some(self.headers.header()),
            alarms: self.alarms(),
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let node = self.headers.node();
        let status = node.status().await.map_err(|e| status_of(&e))?;
        let state_bytes = self.quota.as_ref().map_or(0, |quota| quota.state_bytes());
        let state_bytes = i64::try_from(state_bytes).unwrap_or(i64::MAX);
        let errors = self
            .alarms()
            .iter()
            .map(|_| "NOSPACE: the space quota is exhausted".to_string())
            .collect();
        Ok(Response::new(StatusResponse {
            header: Some(self.headers.header()),
            version: reported_version(),
            db_size: state_bytes,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit,
            raft_term: status.term,
            raft_applied_index: status.applied,
            errors,
            db_size_in_use: state_bytes,
            is_learner: status.learners.contains(&status.id),
        }))
    }

    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        // The state lives in memory and in snapshot files written whole:
        // there is no database file to defragment.
        Ok(Response::new(DefragmentResponse {
            header: Some(self.headers.header()),
        }))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let EtcdQueryResult::Hash(hash, revision) = self.read(EtcdQuery::Hash).await? else {
            return Err(unexpected("hash"));
        };
        Ok(Response::new(HashResponse {
            header: Some(self.header(revision)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let EtcdQueryResult::HashKv(answer) = self.read(EtcdQuery::HashKv { revision }).await?
        else {
            return Err(unexpected("hash_kv"));
        };
        let answer = answer.map_err(|e| mvcc_status(&e))?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.header(answer.current_revision)),
            hash: answer.hash,
            compact_revision: answer.compact_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let chunks = super::snapshot_stream::snapshot_stream(&self.headers).await?;
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let node = self.headers.node();
        let status = node.status().await.map_err(|e| status_of(&e))?;
        if !status.voters.contains(&target) {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        node.transfer_leader(target)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.headers.header()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_version_is_an_etcd_3_4_semantic_version() {
        let version = reported_version();
        assert!(version.starts_with("3.4.0-ringraft."), "{version}");
        assert!(!version.contains(' '));
    }
}
