//! The `ResponseHeader` every etcd response carries: cluster id, member
//! id, revision and raft term.
//!
//! Owns: building headers ([`HeaderSource`]) and turning node errors into
//! gRPC statuses with etcd's codes ([`status_of`]). Guarantees: a header
//! is read after the operation it reports on completed, so its term is at
//! least the one the operation ran in. May not touch: what the services do.
//!
//! The revision is, until the MVCC store serves the key-value API, the
//! node's applied raft index: it rises with every write as etcd's revision
//! does, but is not etcd's count of key-value transactions.

use super::pb::etcdserverpb::ResponseHeader;
use crate::kv::KvStore;
use crate::node::{NodeError, NodeHandle};
use crate::state_machine::StateMachine;
use tonic::Status;

/// What a header is made from: the node and the cluster id.
#[derive(Debug, Clone)]
pub struct HeaderSource {
    node: NodeHandle<KvStore>,
    cluster_id: u64,
}

impl HeaderSource {
    /// Headers of `node`, a member of cluster `cluster_id`.
    pub fn new(node: NodeHandle<KvStore>, cluster_id: u64) -> HeaderSource {
        HeaderSource { node, cluster_id }
    }

    /// The node the services act on.
    pub fn node(&self) -> &NodeHandle<KvStore> {
        &self.node
    }

    /// The header of a response, read now.
    pub async fn header(&self) -> Result<ResponseHeader, Status> {
        let revision = i64::try_from(self.node.applied_index()).unwrap_or(i64::MAX);
        header_of(&self.node, self.cluster_id, revision).await
    }
}

/// The header of a response of `node`, a member of cluster `cluster_id`,
/// reporting `revision`; the raft term is read now.
pub async fn header_of<S: StateMachine>(
    node: &NodeHandle<S>,
    cluster_id: u64,
    revision: i64,
) -> Result<ResponseHeader, Status> {
    let status = node.status().await.map_err(|e| status_of(&e))?;
    Ok(ResponseHeader {
        cluster_id,
        member_id: node.id(),
        revision,
        raft_term: status.term,
    })
}

/// The gRPC status of a node error, with the code etcd uses for the same
/// condition; the message is the node's (it names what failed).
pub fn status_of(error: &NodeError) -> Status {
    let message = format!("etcdserver: {error}");
    match error {
        NodeError::NotLeader { .. }
        | NodeError::Timeout
        | NodeError::ProposalDropped { .. }
        | NodeError::MembershipChangePending
        | NodeError::Stopped => Status::unavailable(message),
        NodeError::UnknownMember { .. } => Status::not_found(message),
        NodeError::InvalidMembership { .. } => Status::failed_precondition(message),
        NodeError::LeaseReadsDisabled => Status::invalid_argument(message),
        NodeError::Storage(_) => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn node_errors_get_etcds_codes() {
        let code = |error: NodeError| status_of(&error).code();
        assert_eq!(code(NodeError::Timeout), Code::Unavailable);
        assert_eq!(
            code(NodeError::NotLeader { leader_hint: None }),
            Code::Unavailable
        );
        assert_eq!(
            code(NodeError::UnknownMember { node_id: 9 }),
            Code::NotFound
        );
        assert_eq!(code(NodeError::MembershipChangePending), Code::Unavailable);
        assert_eq!(code(NodeError::RaftLog(String::new())), Code::Internal);
        let message = status_of(&NodeError::UnknownMember { node_id: 9 })
            .message()
            .to_string();
        assert!(message.starts_with("etcdserver: "), "{message}");
    }
}
