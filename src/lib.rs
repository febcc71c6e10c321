//! ringraft: a raft storage service in the architecture of etcd's server.
//!
//! This crate owns the raft consensus core ([`raft`]) and its wire and disk
//! types ([`raftpb`]). The durable storage, the actors, the node and the
//! server arrive in later modules as `DESIGN.md` lays out.

#![warn(missing_docs)]

pub mod kv;
pub mod node;
pub mod persist;
pub mod raft;
pub mod raftpb;
pub mod snap;
pub mod storage;
pub mod wal;
