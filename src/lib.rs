//! ringraft: a raft storage service in the architecture of etcd's server.
//!
//! - [`raft`]: the consensus core (etcd's raft design) and [`raftpb`], its
//!   wire and disk types;
//! - [`wal`], [`snap`], [`storage`]: the etcd-compatible durable storage;
//! - [`persist`]: the persistence actor (group-committed fsyncs);
//! - [`node`]: the raft and apply actors and the embedding API
//!   ([`node::NodeHandle`]), over the replicated [`kv`] store;
//! - [`transport`]: how nodes send raft messages to each other;
//! - [`http`]: the client HTTP API of a node (an axum router);
//! - [`server`]: the `ringraft serve` process (TCP transport + HTTP API),
//!   and [`metrics`]: every metric declared once, exported to Prometheus;
//! - [`linearizability`]: checking recorded client histories (for tests);
//! - [`bench`]: `ringraft bench`, the load generator (in process, over
//!   HTTP, or against etcd).

#![warn(missing_docs)]

pub mod bench;
pub mod http;
pub mod kv;
pub mod linearizability;
pub mod metrics;
pub mod node;
pub mod persist;
pub mod raft;
pub mod raftpb;
pub mod server;
pub mod snap;
pub mod storage;
pub mod transport;
pub mod wal;
