//! The node: the actors of DESIGN.md wired together for an embedding tokio
//! program. So far only boot ([`bootstrap`]) exists; the raft actor, the
//! apply actor, the embedding handle and the in-process transport are the
//! rest of the node issue.
//!
//! Owns: turning a data directory into a running node.
//! May not touch: file formats (`wal`, `snap`) and the raft core's rules.

pub mod bootstrap;
