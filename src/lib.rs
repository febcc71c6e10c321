//! ringraft: a raft storage service in the architecture of etcd's server,
//! embedded in a tokio program with the user's own state machine.
//!
//! An embedder needs what the crate root re-exports:
//!
//! - [`StateMachine`] (with [`WriteSnapshot`], [`Committed`],
//!   [`DecodeError`]): the user's replicated state, its codec, reads and
//!   streamed snapshots;
//! - [`Node::start`] and the [`NodeHandle`] it returns: `propose`, `read`
//!   with a [`Consistency`], membership ([`MembershipChange`]), status,
//!   shutdown; configured by [`NodeConfig`], failing with [`NodeError`];
//! - a [`Transport`]: [`InProcessNetwork`] for nodes in one process,
//!   [`TcpTransport`] between processes;
//! - [`KvStore`]: the built-in key-value state machine behind the HTTP API;
//!   [`StateRole`] is the role a [`NodeStatus`] reports.
//!
//! The modules for those who go further: [`raft`] (the consensus core,
//! usable on its own, with [`raftpb`], its wire and disk types), [`wal`]
//! and [`snap`] (etcd-compatible durable storage), [`server`] and [`http`]
//! (the `ringraft serve` process), [`tls`] (certificates, rustls
//! configurations and the peer identity rule; peer TLS for a
//! [`TcpTransport`] is `transport::TcpConfig::tls`), [`metrics`] (every
//! metric's name).
//! The architecture, formats and invariants are in `docs/design.md`.
//!
//! Modules hidden from the documentation (`persist`, `storage`, `bench`,
//! `linearizability`) are public only for the integration tests, the
//! simulation and the `ringraft` binary; they are not a stable interface.

#![warn(missing_docs)]

#[doc(hidden)]
pub mod access;
pub mod bench;
pub mod etcd;
mod free_memory;
pub mod http;
pub mod kv;
#[doc(hidden)]
pub mod linearizability;
pub mod metrics;
pub mod mvcc;
pub mod node;
#[doc(hidden)]
pub mod persist;
pub mod raft;
pub mod raftpb;
pub mod server;
pub mod snap;
mod state_machine;
#[doc(hidden)]
pub mod storage;
pub mod tls;
pub mod transport;
mod v1_store;
pub mod wal;

pub use kv::KvStore;
pub use node::{
    BootPath, BootReport, Consistency, MembershipChange, NewMember, Node, NodeConfig, NodeError,
    NodeHandle, NodeStatus,
};
pub use raft::StateRole;
pub use state_machine::{Committed, DecodeError, StateMachine, WriteSnapshot};
pub use transport::{InProcessNetwork, PeerInbox, TcpTransport, Transport, TransportError};
