//! The node: the actors wired together for an embedding tokio program,
//! generic over the user's [`StateMachine`].
//!
//! - `bootstrap`: turns a data directory into the state a node starts
//!   from;
//! - `raft_actor`: owns `RawNode` and `MemoryStorage`, pipelines Readies
//!   to the persistence actor (`crate::persist`, its own OS thread), with
//!   `in_flight` (the Readies not yet released) and `membership`
//!   (checking, proposing and applying configuration changes, with the
//!   `conf_history` a snapshot takes its configuration from);
//! - `apply_actor`: applies committed entries to the state machine through
//!   the `applier`, completes proposals, serves reads, takes snapshots;
//! - `handle`: the embedding API ([`NodeHandle`]);
//! - `mailbox`: what the parts say to each other; `envelope`: request ids
//!   in entries; `config`, `error`: settings and errors (metric names are
//!   `crate::metrics`'s).
//!
//! Messages between nodes go through a [`Transport`] (`crate::transport`).
//! `applier`, `bootstrap`, `conf_history` and `envelope` are public, hidden from the
//! documentation, for the simulation and the integration tests.
//!
//! Owns: turning a data directory into a running node ([`Node::start`]).
//! May not touch: file formats (`wal`, `snap`) and the raft core's rules.

#[doc(hidden)]
pub mod applier;
mod apply_actor;
#[doc(hidden)]
pub mod apply_core;
mod background;
#[doc(hidden)]
pub mod bootstrap;
#[doc(hidden)]
pub mod conf_history;
mod config;
#[doc(hidden)]
pub mod envelope;
mod error;
mod handle;
mod in_flight;
mod mailbox;
mod membership;
mod raft_actor;
#[doc(hidden)]
pub mod raft_core;
mod snapshot_files;
#[doc(hidden)]
pub mod snapshot_policy;
mod snapshot_transfer;
mod test_panic;

pub use crate::transport::{InProcessNetwork, PeerInbox, Transport, TransportError};
pub use bootstrap::{BootPath, NewMember};
pub use config::{
    DEFAULT_MAX_INFLIGHT_BYTES, DEFAULT_SNAPSHOT_CATCHUP_ENTRIES, DEFAULT_SNAPSHOT_COUNT,
    NodeConfig,
};
pub use error::{ApplyError, NodeError, SharedStateMachineError};
pub use handle::{BootReport, NodeHandle};
pub use mailbox::{Consistency, MembershipChange, NodeStatus};

use crate::persist::PersistActor;
use crate::raft::RawNode;
use crate::state_machine::StateMachine;
use applier::Applier;
use apply_actor::{ApplyActor, ApplyOutputs};
use raft_actor::{RaftActor, RaftActorParts};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Starting a node.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Boots from `config.data_dir`: restores
    /// `state_machine` (given empty) from the newest snapshot, if any,
    /// starts the persistence actor on its own thread, and spawns the raft
    /// and apply actors on the caller's tokio runtime, which replay the
    /// WAL's committed entries after the snapshot. `transport` sends to
    /// peers; `peers` receives their messages. Boot reads the data
    /// directory on the calling thread, so a caller on a busy runtime may
    /// prefer `spawn_blocking`.
    ///
    /// The runtime needs its time and IO drivers (`enable_all`, as
    /// `#[tokio::main]` and `Runtime::new` have): the raft actor ticks on
    /// tokio's timer and hears the persistence thread through a socket
    /// (`persist::progress`), and tokio panics when either is disabled.
    pub fn start<S: StateMachine>(
        config: NodeConfig,
        state_machine: S,
        transport: Arc<dyn Transport>,
        peers: PeerInbox,
    ) -> Result<NodeHandle<S>, NodeError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NodeError::NoRuntime)?;
        let boot_config = config.boot_config()?;
        let snap_dir = boot_config.data_dir.snap_dir.clone();
        let booted = bootstrap::boot(&boot_config)?;
        let mut applier = Applier::new(state_machine);
        let mut inline_snapshot = false;
        let mut state_bytes = 0;
        if booted.applied > 0 {
            let snapshot = booted.memory.last_snapshot();
            inline_snapshot = snapshot_files::state_file_of(snapshot).is_none();
            state_bytes = snapshot_files::state_bytes(snapshot);
            snapshot_files::restore(&mut applier, &snap_dir, snapshot)
                .map_err(bootstrap::BootError::from)?;
        }
        // Reading the WAL and the snapshot left freed buffers behind in this
        // thread's allocator arena; a large state would keep them resident.
        crate::free_memory::return_free_memory();
        let raw = RawNode::new(&config.raft_config(booted.applied), booted.memory)?;
        let (wal, snapshotter, data_dir_lock) = booted.storage.into_parts();
        // The raft actor must never block on the queue: it bounds the bytes
        // in flight itself (`max_inflight_bytes`).
        let mut persist_config = config.persist.clone();
        persist_config.queue_capacity = None;
        persist_config.node_id = config.node_id;
        // Every series of this node shows from the first scrape on.
        crate::metrics::register_node(config.node_id);
        let persist = PersistActor::start(wal, snapshotter, persist_config)
            .map_err(|e| NodeError::Storage(Arc::new(e)))?;

        let boot_report = BootReport {
            path: booted.path,
            snapshot_index: booted.applied,
            wal_entries_replayed: booted.wal_entries,
        };
        let (apply_sender, apply_inbox) = mpsc::unbounded_channel();
        let (applied_sender, applied) = watch::channel(applier.applied_index());
        let (snapshot_sender, snapshots) = mpsc::unbounded_channel();
        let outputs = ApplyOutputs {
            applied: applied_sender,
            snapshots: snapshot_sender,
        };
        let apply_actor = ApplyActor::new(
            config.node_id,
            applier,
            apply_inbox,
            outputs,
            apply_actor::SnapshotSettings {
                count: config.snapshot_count,
                state_bytes,
                dir: snap_dir.clone(),
                soon: inline_snapshot,
                pacing: crate::snap::state_file::WritePacing::at(
                    config.snapshot_write_bytes_per_second,
                ),
            },
        );
        let test_panic = test_panic::TestPanic::from_env();
        let apply_task = runtime.spawn(apply_actor.with_test_panic(test_panic).run());

        let (request_sender, requests) = mpsc::channel(config.request_queue_capacity.max(1));
        let (control_sender, control) = mpsc::unbounded_channel();
        let weak_apply = apply_sender.downgrade();
        let failure = Arc::new(std::sync::OnceLock::new());
        let term = Arc::new(std::sync::atomic::AtomicU64::new(raw.raft.term));
        let parts = RaftActorParts {
            raw,
            persist,
            transport,
            peers,
            requests,
            control,
            apply: apply_sender,
            applied: applied.clone(),
            apply_task,
            snapshots,
            boot_snapshot_index: boot_report.snapshot_index,
            failure: Arc::clone(&failure),
            term: Arc::clone(&term),
            snap_dir,
            data_dir_lock,
            test_panic,
        };
        let actor = RaftActor::new(parts, &config);
        let raft_task = runtime.spawn(actor.run());
        // Watches the raft actor (which joins the apply actor and the
        // persistence actor when it ends): however it ends, a panic
        // included, the cause is published for the handle.
        let (stopped_sender, stopped) = watch::channel(None);
        let published = Arc::clone(&failure);
        let task = runtime.spawn(async move {
            let outcome = raft_task
                .await
                .unwrap_or_else(|join| Err(NodeError::task_ended("raft", join)));
            if let Err(error) = &outcome {
                let _ = published.set(error.clone());
            }
            stopped_sender.send_replace(Some(outcome.clone()));
            outcome
        });
        Ok(NodeHandle::new(handle::HandleParts {
            id: config.node_id,
            requests: request_sender,
            control: control_sender,
            apply: weak_apply,
            applied,
            term,
            timeout: config.request_timeout,
            task,
            boot_report,
            failure,
            stopped,
        }))
    }
}
