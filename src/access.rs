//! Who may do what on the client API: the permission levels, the policy
//! that grants them to client identities, and which level each endpoint
//! needs.
//!
//! Owns: [`Permission`], [`AccessPolicy`], [`ClientIdentity`] and
//! [`required_permission`], the one table of what each endpoint needs.
//! Guarantees: the levels are ordered (`read` < `write` < `admin`; a
//! higher one includes the lower); an identity the policy does not name is
//! granted nothing once any identity is named; without client certificate
//! authentication there is no identity and nothing is checked (whoever
//! reaches the port controls the cluster, as the README says); a refusal
//! names the identity, the level it has and the level the request needs.
//! May not touch: TLS (the listener verifies certificates and attaches the
//! identity) or the node.

use axum::http::Method;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What a client may do; each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Reads: keys, scans, members, status, health, metrics.
    Read,
    /// Reads, puts and deletes of keys.
    Write,
    /// Everything, including membership changes and leader transfers.
    Admin,
}

impl Permission {
    /// The level's name, as flags and error messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(text: &str) -> Result<Permission, String> {
        match text {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            other => Err(format!(
                "unknown permission {other:?} (read, write or admin)"
            )),
        }
    }
}

/// The identity a verified client certificate proves: its subject's
/// common name (as etcd takes the user name from it); empty when the
/// certificate has none. Attached to each request by the listener when
/// client certificates are required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity(pub String);

/// Which identities get which level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Identity (certificate common name) → its level. Empty: every
    /// certificate the trusted CA signed is an administrator (the CA is the
    /// only gate), as etcd without auth enabled.
    pub grants: BTreeMap<String, Permission>,
}

/// A request refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: {identity:?} {has}, but {method} {path} needs {needs}", has = match granted { Some(level) => format!("may {level}"), None => "has no permission".to_string() })]
pub struct Denied {
    /// The client's identity.
    pub identity: String,
    /// What it was granted, if anything.
    pub granted: Option<Permission>,
    /// What the request needs.
    pub needs: Permission,
    /// The request's method.
    pub method: Method,
    /// The request's path.
    pub path: String,
}

impl AccessPolicy {
    /// A policy granting `grants`, parsed from `NAME=LEVEL` items (the
    /// `--client-permission` flag's form).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<AccessPolicy, String> {
        let mut grants = BTreeMap::new();
        for item in items {
            let (name, level) = item
                .rsplit_once('=')
                .ok_or_else(|| format!("{item:?}: expected NAME=read|write|admin"))?;
            if name.is_empty() {
                return Err(format!("{item:?}: the identity is empty"));
            }
            let level = level.parse().map_err(|e| format!("{item:?}: {e}"))?;
            if grants.insert(name.to_string(), level).is_some() {
                return Err(format!("{item:?}: {name:?} is named twice"));
            }
        }
        Ok(AccessPolicy { grants })
    }

    /// What `identity` was granted: `None` for a certificate the policy
    /// does not name, when it names any.
    pub fn granted(&self, identity: &str) -> Option<Permission> {
        if self.grants.is_empty() {
            return Some(Permission::Admin);
        }
        self.grants.get(identity).copied()
    }

    /// Whether `identity` (none without client certificate authentication)
    /// may send `method` to `path`.
    pub fn check(
        &self,
        identity: Option<&ClientIdentity>,
        method: &Method,
        path: &str,
    ) -> Result<(), Denied> {
        let Some(ClientIdentity(identity)) = identity else {
            return Ok(());
        };
        let needs = required_permission(method, path);
        let granted = self.granted(identity);
        if granted.is_some_and(|level| level >= needs) {
            return Ok(());
        }
        Err(Denied {
            identity: identity.clone(),
            granted,
            needs,
            method: method.clone(),
            path: path.to_string(),
        })
    }
}

/// The level a request needs. Membership and leadership changes are
/// administration; changing keys is writing; everything else, unknown
/// paths included (so that probing them needs an identity), is reading.
pub fn required_permission(method: &Method, path: &str) -> Permission {
    if let Some(rpc) = path.strip_prefix("/etcdserverpb.") {
        return grpc_permission(rpc);
    }
    let reads = method == Method::GET || method == Method::HEAD;
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under("/v1/members") || under("/v1/leader") {
        if reads {
            Permission::Read
        } else {
            Permission::Admin
        }
    } else if under("/v1/kv") && !reads {
        Permission::Write
    } else {
        Permission::Read
    }
}

/// The level an etcd gRPC method (`Service/Method`) needs: reading
/// methods `read`; methods that change keys or leases `write` (a `Txn`
/// needs it whatever it holds); membership, leadership, compaction,
/// alarms, defragmentation, the whole-store Snapshot and hashes `admin`
/// (as etcd's auth requires). Unknown methods: `read`.
fn grpc_permission(rpc: &str) -> Permission {
    match rpc {
        "KV/Put"
        | "KV/DeleteRange"
        | "KV/Txn"
        | "Lease/LeaseGrant"
        | "Lease/LeaseRevoke"
        | "Lease/LeaseKeepAlive" => Permission::Write,
        "KV/Compact"
        | "Cluster/MemberAdd"
        | "Cluster/MemberRemove"
        | "Cluster/MemberUpdate"
        | "Cluster/MemberPromote"
        | "Maintenance/Alarm"
        | "Maintenance/Defragment"
        | "Maintenance/MoveLeader"
        | "Maintenance/Snapshot"
        | "Maintenance/Hash"
        | "Maintenance/HashKV" => Permission::Admin,
        _ => Permission::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str) -> ClientIdentity {
        ClientIdentity(name.to_string())
    }

    #[test]
    fn grpc_methods_need_the_documented_levels() {
        let needs = |path: &str| required_permission(&Method::POST, path);
        assert_eq!(needs("/etcdserverpb.KV/Range"), Permission::Read);
        assert_eq!(needs("/etcdserverpb.KV/Put"), Permission::Write);
        assert_eq!(needs("/etcdserverpb.KV/Txn"), Permission::Write);
        assert_eq!(needs("/etcdserverpb.KV/Compact"), Permission::Admin);
        assert_eq!(needs("/etcdserverpb.Watch/Watch"), Permission::Read);
        assert_eq!(
            needs("/etcdserverpb.Lease/LeaseKeepAlive"),
            Permission::Write
        );
        assert_eq!(
            needs("/etcdserverpb.Lease/LeaseTimeToLive"),
            Permission::Read
        );
        assert_eq!(needs("/etcdserverpb.Cluster/MemberList"), Permission::Read);
        assert_eq!(needs("/etcdserverpb.Cluster/MemberAdd"), Permission::Admin);
        assert_eq!(needs("/etcdserverpb.Maintenance/Status"), Permission::Read);
        assert_eq!(
            needs("/etcdserverpb.Maintenance/Snapshot"),
            Permission::Admin
        );
        assert_eq!(needs("/etcdserverpb.Maintenance/HashKV"), Permission::Admin);
        assert_eq!(
            needs("/etcdserverpb.Maintenance/MoveLeader"),
            Permission::Admin
        );
    }

    #[test]
    fn endpoints_need_the_documented_levels() {
        let cases = [
            (Method::GET, "/v1/kv/a", Permission::Read),
            (Method::GET, "/v1/kv", Permission::Read),
            (Method::PUT, "/v1/kv/a", Permission::Write),
            (Method::DELETE, "/v1/kv/a", Permission::Write),
            (Method::GET, "/v1/members", Permission::Read),
            (Method::POST, "/v1/members", Permission::Admin),
            (Method::DELETE, "/v1/members/2", Permission::Admin),
            (Method::POST, "/v1/members/2/promote", Permission::Admin),
            (Method::POST, "/v1/leader/transfer", Permission::Admin),
            (Method::GET, "/v1/status", Permission::Read),
            (Method::GET, "/health", Permission::Read),
            (Method::GET, "/metrics", Permission::Read),
            // A path that only starts like an endpoint is not under it.
            (Method::POST, "/v1/membersx", Permission::Read),
            (Method::PUT, "/v1/kvx", Permission::Read),
        ];
        for (method, path, needs) in cases {
            assert_eq!(required_permission(&method, path), needs, "{method} {path}");
        }
    }

    #[test]
    fn levels_include_the_lower_ones_and_unnamed_identities_get_nothing() {
        let policy = AccessPolicy::parse(["alice=admin", "bob=write", "carol=read"]).unwrap();
        let put = (Method::PUT, "/v1/kv/k");
        let add = (Method::POST, "/v1/members");
        let get = (Method::GET, "/v1/kv/k");
        assert!(
            policy
                .check(Some(&identity("alice")), &add.0, add.1)
                .is_ok()
        );
        assert!(policy.check(Some(&identity("bob")), &put.0, put.1).is_ok());
        assert!(policy.check(Some(&identity("bob")), &get.0, get.1).is_ok());
        let denied = policy
            .check(Some(&identity("bob")), &add.0, add.1)
            .unwrap_err();
        assert_eq!(denied.needs, Permission::Admin);
        assert_eq!(denied.granted, Some(Permission::Write));
        let denied = policy
            .check(Some(&identity("carol")), &put.0, put.1)
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "permission denied: \"carol\" may read, but PUT /v1/kv/k needs write"
        );
        let denied = policy
            .check(Some(&identity("mallory")), &get.0, get.1)
            .unwrap_err();
        assert_eq!(denied.granted, None);
        assert!(denied.to_string().contains("has no permission"));
    }

    #[test]
    fn no_grants_make_every_certificate_an_administrator_and_no_identity_is_unchecked() {
        let policy = AccessPolicy::default();
        assert!(
            policy
                .check(Some(&identity("anyone")), &Method::POST, "/v1/members")
                .is_ok()
        );
        let strict = AccessPolicy::parse(["alice=read"]).unwrap();
        assert!(strict.check(None, &Method::POST, "/v1/members").is_ok());
    }

    #[test]
    fn bad_grants_are_refused_with_the_item() {
        for (item, want) in [
            ("alice", "expected NAME=read|write|admin"),
            ("=read", "the identity is empty"),
            ("alice=root", "unknown permission \"root\""),
        ] {
            let error = AccessPolicy::parse([item]).unwrap_err();
            assert!(error.contains(want), "{item}: {error}");
        }
        let error = AccessPolicy::parse(["a=read", "a=write"]).unwrap_err();
        assert!(error.contains("named twice"), "{error}");
    }
}
