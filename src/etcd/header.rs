//! The `ResponseHeader` every etcd response carries: cluster id, member
//! id, revision and raft term.
//!
//! Owns: building headers ([`HeaderSource`], [`header_of`]) and turning
//! node errors into gRPC statuses with etcd's codes ([`status_of`]).
//! Guarantees: building a header asks nobody (the term is the node's
//! published one, the revision the store's published one or the one the
//! operation produced), so a header costs no round trip through the raft
//! actor on the hot path; a header is built after the operation it
//! reports on completed, so its term is at least the one the operation
//! was persisted in. May not touch: what the services do.

use super::pb::etcdserverpb::ResponseHeader;
use super::store::{AppliedRevision, EtcdStore};
use crate::node::{NodeError, NodeHandle};
use crate::state_machine::StateMachine;
use tonic::Status;

/// What a header is made from: the node, the cluster id and the store's
/// applied revision.
#[derive(Debug, Clone)]
pub struct HeaderSource {
    node: NodeHandle<EtcdStore>,
    cluster_id: u64,
    revision: AppliedRevision,
}

impl HeaderSource {
    /// Headers of `node`, a member of cluster `cluster_id`, whose store
    /// publishes its revision on `revision`.
    pub fn new(
        node: NodeHandle<EtcdStore>,
        cluster_id: u64,
        revision: AppliedRevision,
    ) -> HeaderSource {
        HeaderSource {
            node,
            cluster_id,
            revision,
        }
    }

    /// The node the services act on.
    pub fn node(&self) -> &NodeHandle<EtcdStore> {
        &self.node
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The header of a response, as of now (the store's applied revision).
    pub fn header(&self) -> ResponseHeader {
        header_of(&self.node, self.cluster_id, self.revision.get())
    }
}

/// The header of a response of `node`, a member of cluster `cluster_id`,
/// reporting `revision` and the node's persisted term.
pub fn header_of<S: StateMachine>(
    node: &NodeHandle<S>,
    cluster_id: u64,
    revision: i64,
) -> ResponseHeader {
    ResponseHeader {
        cluster_id,
        member_id: node.id(),
        revision,
        raft_term: node.term(),
    }
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
