//! etcd's Cluster service: MemberList, MemberAdd (voters and learners),
//! MemberRemove, MemberPromote, MemberUpdate.
//!
//! Owns: mapping the node's membership onto etcd's `Member` messages and
//! choosing the id of a member added through it. Guarantees: a change is
//! answered only once applied (the node's membership calls wait for it),
//! with the members as they are then; a member is shown with a name
//! (`ringraft-<id>`, so etcdctl calls it started), its peer URL from the
//! replicated member directory, or the initial cluster's for the initial
//! members, and the client URL it published through the log
//! (`server::publish`; a member that has not yet published shows none,
//! except this node, which knows its own). May not touch: how membership
//! changes are made (the node's).
//!
//! etcd chooses a new member's id itself, from its peer URLs, the cluster
//! and the time; so does this service (a hash of the same), and the new
//! member is then started with `ringraft serve --id <that id> --join`. A
//! member has exactly one peer URL here. MemberUpdate changes it through
//! raft (an `UpdateNode` configuration change carrying the new address):
//! every member's directory and transport take it as the change applies,
//! and the member is then restarted listening there.

use super::header::{HeaderSource, status_of};
use super::pb::etcdserverpb::cluster_server::Cluster;
use super::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::node::{Consistency, NodeError};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use tonic::{Request, Response, Status};

/// The Cluster service of one node.
#[derive(Debug, Clone)]
pub struct ClusterService {
    headers: HeaderSource,
    /// Peer URLs of the initial members (the directory holds only members
    /// added later).
    initial_peer_urls: BTreeMap<u64, String>,
    /// This node's client URL, shown before its published record applied.
    own_client_url: String,
}

impl ClusterService {
    /// The service of the node behind `headers`.
    pub fn new(
        headers: HeaderSource,
        initial_peer_urls: BTreeMap<u64, String>,
        own_client_url: String,
    ) -> ClusterService {
        ClusterService {
            headers,
            initial_peer_urls,
            own_client_url,
        }
    }

    /// Every member, voters and learners, in id order.
    async fn members(&self) -> Result<Vec<Member>, Status> {
        let node = self.headers.node();
        let status = node.status().await.map_err(|e| status_of(&e))?;
        let directory = node
            .member_addresses(Consistency::Serializable)
            .await
            .map_err(|e| status_of(&e))?;
        let client_urls = node
            .member_client_urls(Consistency::Serializable)
            .await
            .map_err(|e| status_of(&e))?;
        let voters = status.voters.iter().map(|&id| (id, false));
        let learners = status.learners.iter().map(|&id| (id, true));
        let mut members: Vec<Member> = voters
            .chain(learners)
            .map(|(id, is_learner)| {
                let peer_url = directory
                    .get(&id)
                    .filter(|url| !url.is_empty())
                    .or_else(|| self.initial_peer_urls.get(&id))
                    .cloned();
                self.member(id, peer_url, client_urls.get(&id), is_learner)
            })
            .collect();
        members.sort_by_key(|member| member.id);
        Ok(members)
    }

    /// Member `id` as etcd shows it; its client URL is the one it
    /// published, or for this node (before its record applied) its own.
    fn member(
        &self,
        id: u64,
        peer_url: Option<String>,
        client_url: Option<&String>,
        is_learner: bool,
    ) -> Member {
        let client_urls = match client_url {
            Some(url) => vec![url.clone()],
            None if id == self.headers.node().id() => vec![self.own_client_url.clone()],
            None => Vec::new(),
        };
        Member {
            id,
            name: format!("ringraft-{id}"),
            peer_ur_ls: peer_url.into_iter().map(|url| with_scheme(&url)).collect(),
            client_ur_ls: client_urls,
            is_learner,
        }
    }
}

/// The status of a failed membership change: etcd's "member not found"
/// for a member that is not there, else the node error's status.
fn membership_status(error: &NodeError) -> Status {
    match error {
        NodeError::UnknownMember { .. } => Status::not_found("etcdserver: member not found"),
        other => status_of(other),
    }
}

/// etcd shows URLs with their scheme; ringraft's are `host:port`.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// `http://host:port/…` or `host:port` → `host:port`, as the transport
/// dials it.
fn without_scheme(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split_once('/')
        .map_or(rest, |(authority, _)| authority)
}

/// A new member id from its peer URL, the cluster and the time, as etcd
/// derives one; never 0 and never one of `taken`.
fn new_member_id(peer_url: &str, cluster_id: u64, taken: &[Member]) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut salt = 0u64;
    loop {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write(peer_url.as_bytes());
        hasher.write_u64(cluster_id);
        hasher.write_u128(nanos);
        hasher.write_u64(salt);
        let id = hasher.finish();
        if id != 0 && taken.iter().all(|member| member.id != id) {
            return id;
        }
        salt += 1;
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let request = request.into_inner();
        let [peer_url] = request.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument(
                "etcdserver: a ringraft member has exactly one peer URL",
            ));
        };
        let address = without_scheme(peer_url);
        let members = self.members().await?;
        if members
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| without_scheme(u) == address))
        {
            return Err(Status::failed_precondition(
                "etcdserver: Peer URLs already exists",
            ));
        }
        let header = self.headers.header();
        let id = new_member_id(address, header.cluster_id, &members);
        let node = self.headers.node();
        let added = if request.is_learner {
            node.add_learner(id, address).await
        } else {
            node.add_member(id, address).await
        };
        added.map_err(|e| status_of(&e))?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.headers.header()),
            member: Some(self.member(id, Some(address.to_string()), None, request.is_learner)),
            members: self.members().await?,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        self.headers
            .node()
            .remove_member(id)
            .await
            .map_err(|error| membership_status(&error))?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.headers.header()),
            members: self.members().await?,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let request = request.into_inner();
        let [peer_url] = request.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument(
                "etcdserver: a ringraft member has exactly one peer URL",
            ));
        };
        let address = without_scheme(peer_url);
        let members = self.members().await?;
        if !members.iter().any(|m| m.id == request.id) {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        if members.iter().any(|m| {
            m.id != request.id && m.peer_ur_ls.iter().any(|u| without_scheme(u) == address)
        }) {
            return Err(Status::failed_precondition(
                "etcdserver: Peer URLs already exists",
            ));
        }
        self.headers
            .node()
            .update_peer_url(request.id, address)
            .await
            .map_err(|error| membership_status(&error))?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.headers.header()),
            members: self.members().await?,
        }))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let members = self.members().await?;
        Ok(Response::new(MemberListResponse {
            header: Some(self.headers.header()),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let members = self.members().await?;
        match members.iter().find(|m| m.id == id) {
            None => return Err(Status::not_found("etcdserver: member not found")),
            Some(member) if !member.is_learner => {
                return Err(Status::failed_precondition(
                    "etcdserver: can only promote a learner member",
                ));
            }
            Some(_) => {}
        }
        self.headers
            .node()
            .promote(id)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.headers.header()),
            members: self.members().await?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_gain_and_lose_their_scheme() {
        assert_eq!(with_scheme("127.0.0.1:7380"), "http://127.0.0.1:7380");
        assert_eq!(with_scheme("https://a:1"), "https://a:1");
        assert_eq!(without_scheme("http://127.0.0.1:7380/"), "127.0.0.1:7380");
        assert_eq!(without_scheme("127.0.0.1:7380"), "127.0.0.1:7380");
    }

    #[test]
    fn new_member_ids_avoid_zero_and_taken_ids() {
        let first = new_member_id("127.0.0.1:1", 7, &[]);
        assert_ne!(first, 0);
        let taken = [Member {
            id: first,
            ..Member::default()
        }];
        // Another call may draw the same time; it must still not collide.
        let second = new_member_id("127.0.0.1:1", 7, &taken);
        assert_ne!(second, first);
        assert_ne!(second, 0);
    }
}
