//! The names of the node's metrics (raft and apply actors), in one place,
//! with their descriptions.
//!
//! Owns: the metric names the node records through the `metrics` facade,
//! the label every one of them carries ([`NODE_LABEL`]: the node id in
//! decimal, so that several nodes in one process stay apart), and
//! [`describe_metrics`].
//! Guarantees: every name carries the `ringraft_` prefix and keeps etcd's
//! meaning where etcd has the metric (`etcd_server_*`).
//! May not touch: exporters or bucket layouts.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// The label naming the node a sample belongs to.
pub const NODE_LABEL: &str = "node";

/// Counter: entries committed (as this node learned it), as etcd's
/// `etcd_server_proposals_committed_total`.
pub const PROPOSALS_COMMITTED_TOTAL: &str = "ringraft_server_proposals_committed_total";

/// Counter: entries applied to the state machine, as etcd's
/// `etcd_server_proposals_applied_total`.
pub const PROPOSALS_APPLIED_TOTAL: &str = "ringraft_server_proposals_applied_total";

/// Gauge: proposals of this node's clients waiting to apply, as etcd's
/// `etcd_server_proposals_pending`.
pub const PROPOSALS_PENDING: &str = "ringraft_server_proposals_pending";

/// Counter: proposals raft refused (no leader, dropped), as etcd's
/// `etcd_server_proposals_failed_total`.
pub const PROPOSALS_FAILED_TOTAL: &str = "ringraft_server_proposals_failed_total";

/// Counter: leader changes this node saw, as etcd's
/// `etcd_server_leader_changes_seen_total`.
pub const LEADER_CHANGES_SEEN_TOTAL: &str = "ringraft_server_leader_changes_seen_total";

/// Gauge: 1 when this node knows a leader, else 0.
pub const HAS_LEADER: &str = "ringraft_server_has_leader";

/// Gauge: 1 when this node is the leader, else 0.
pub const IS_LEADER: &str = "ringraft_server_is_leader";

/// Histogram: time the raft actor spends handing out one Ready or
/// releasing acknowledged ones.
pub const READY_HANDLING_DURATION_SECONDS: &str = "ringraft_raft_ready_handling_duration_seconds";

/// Histogram: time of applying one batch of committed entries.
pub const APPLY_DURATION_SECONDS: &str = "ringraft_apply_duration_seconds";

/// Counter: apply batches slower than the slow-apply threshold, as etcd's
/// `etcd_server_slow_apply_total`.
pub const SLOW_APPLY_TOTAL: &str = "ringraft_server_slow_apply_total";

/// Counter: snapshots of the state machine this node made.
pub const SNAPSHOT_COUNT: &str = "ringraft_snapshot_count";

/// Histogram: time of encoding the state machine into a snapshot.
pub const SNAPSHOT_CREATE_DURATION_SECONDS: &str = "ringraft_snapshot_create_duration_seconds";

/// Histogram: time of restoring the state machine from a snapshot.
pub const SNAPSHOT_APPLY_DURATION_SECONDS: &str = "ringraft_snapshot_apply_duration_seconds";

/// Registers the units and descriptions of every metric above with the
/// installed recorder. Call once after installing it.
pub fn describe_metrics() {
    describe_counter!(
        PROPOSALS_COMMITTED_TOTAL,
        Unit::Count,
        "Raft entries committed, as this node learned it."
    );
    describe_counter!(
        PROPOSALS_APPLIED_TOTAL,
        Unit::Count,
        "Raft entries applied to the state machine."
    );
    describe_gauge!(
        PROPOSALS_PENDING,
        Unit::Count,
        "Proposals of this node's clients waiting to apply."
    );
    describe_counter!(
        PROPOSALS_FAILED_TOTAL,
        Unit::Count,
        "Proposals refused by raft (no leader, dropped)."
    );
    describe_counter!(
        LEADER_CHANGES_SEEN_TOTAL,
        Unit::Count,
        "Leader changes this node saw."
    );
    describe_gauge!(HAS_LEADER, Unit::Count, "1 when this node knows a leader.");
    describe_gauge!(IS_LEADER, Unit::Count, "1 when this node is the leader.");
    describe_histogram!(
        READY_HANDLING_DURATION_SECONDS,
        Unit::Seconds,
        "Time the raft actor spends handing out or releasing Readies."
    );
    describe_histogram!(
        APPLY_DURATION_SECONDS,
        Unit::Seconds,
        "Time of applying one batch of committed entries."
    );
    describe_counter!(
        SLOW_APPLY_TOTAL,
        Unit::Count,
        "Apply batches slower than 100 ms."
    );
    describe_counter!(
        SNAPSHOT_COUNT,
        Unit::Count,
        "Snapshots of the state machine this node made."
    );
    describe_histogram!(
        SNAPSHOT_CREATE_DURATION_SECONDS,
        Unit::Seconds,
        "Time of encoding the state machine into a snapshot."
    );
    describe_histogram!(
        SNAPSHOT_APPLY_DURATION_SECONDS,
        Unit::Seconds,
        "Time of restoring the state machine from a snapshot."
    );
}
