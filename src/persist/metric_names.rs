//! The names of the persistence actor's metrics, in one place, with their
//! descriptions.
//!
//! Owns: the metric names the actor records through the `metrics` facade and
//! [`describe_metrics`], which registers their units and descriptions.
//! Guarantees: every name carries the `ringraft_` prefix and follows
//! DESIGN.md's metrics section (etcd's meaning where etcd has the metric),
//! so a later `src/metrics.rs` can absorb this file unchanged.
//! May not touch: exporters or bucket layouts (the exporter's setup chooses
//! buckets; they must start in the tens of microseconds for NVMe).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Histogram: time of one WAL `fdatasync`, as etcd's
/// `etcd_disk_wal_fsync_duration_seconds`.
pub const WAL_FSYNC_DURATION_SECONDS: &str = "ringraft_disk_wal_fsync_duration_seconds";

/// Histogram: time of writing one batch of WAL frames (all its page chunks).
pub const WAL_WRITE_DURATION_SECONDS: &str = "ringraft_disk_wal_write_duration_seconds";

/// Counter: bytes of WAL frames written, as etcd's
/// `etcd_disk_wal_write_bytes_total`.
pub const WAL_WRITE_BYTES_TOTAL: &str = "ringraft_disk_wal_write_bytes_total";

/// Histogram: Readies made durable by one fsync (group commit's batch size).
pub const READIES_PER_FSYNC: &str = "ringraft_persist_readies_per_fsync";

/// Histogram: raft entries made durable by one fsync.
pub const ENTRIES_PER_FSYNC: &str = "ringraft_persist_entries_per_fsync";

/// Gauge: requests waiting in the persistence actor's queue when it takes a
/// batch.
pub const QUEUE_DEPTH: &str = "ringraft_persist_queue_depth";

/// Histogram: time of saving one snapshot file (write, fsync, rename,
/// directory fsync), as etcd's `etcd_debugging_snap_save_total_duration_seconds`.
pub const SNAPSHOT_SAVE_DURATION_SECONDS: &str = "ringraft_snap_save_duration_seconds";

/// Registers the units and descriptions of every metric above with the
/// installed recorder. Call once after installing it.
pub fn describe_metrics() {
    describe_histogram!(
        WAL_FSYNC_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one fdatasync of the WAL."
    );
    describe_histogram!(
        WAL_WRITE_DURATION_SECONDS,
        Unit::Seconds,
        "Time of writing one batch of WAL frames."
    );
    describe_counter!(
        WAL_WRITE_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of WAL frames written."
    );
    describe_histogram!(
        READIES_PER_FSYNC,
        Unit::Count,
        "Raft Readies made durable by one WAL fsync (group commit)."
    );
    describe_histogram!(
        ENTRIES_PER_FSYNC,
        Unit::Count,
        "Raft entries made durable by one WAL fsync."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Requests waiting for the persistence actor when it takes a batch."
    );
    describe_histogram!(
        SNAPSHOT_SAVE_DURATION_SECONDS,
        Unit::Seconds,
        "Time of saving one snapshot file durably."
    );
}
