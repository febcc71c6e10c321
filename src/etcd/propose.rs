//! Proposing an etcd operation on behalf of a gRPC service, and answering
//! its failure the way etcd does.
//!
//! Owns: [`propose`] (the command from an [`Operation`], its raft round
//! trip, and the mapping of a node error or a command's failure to a
//! gRPC status) and [`unexpected`] (the status for a store answer of
//! another kind than the operation asked for). Guarantees: a command's
//! failure gets the code and message etcd gives it (`convert`), a node
//! error the code of `status_of`. May not touch: what the services do
//! with a success.

use super::convert;
use super::header::status_of;
use super::store::{EtcdCommand, EtcdCommandError, EtcdResponse, EtcdStore, Operation};
use crate::node::NodeHandle;
use tonic::Status;

/// Proposes `operation` on `node`; its response once applied here.
pub async fn propose(
    node: &NodeHandle<EtcdStore>,
    operation: Operation,
) -> Result<EtcdResponse, Status> {
    let command = EtcdCommand {
        operation: Some(operation),
    };
    let applied = node.propose(command).await.map_err(|e| status_of(&e))?;
    match applied.outcome {
        Ok(response) => Ok(response),
        Err(EtcdCommandError::Mvcc(error)) => Err(convert::mvcc_status(&error)),
        Err(EtcdCommandError::Invalid(message)) => Err(Status::invalid_argument(message)),
    }
}

/// The status for a store that answered a `what` with another kind of
/// response (a bug, never the client's doing).
pub fn unexpected(what: &str) -> Status {
    Status::internal(format!(
        "etcdserver: the store answered a {what} with another kind"
    ))
}
