//! The names of the TCP transport's peer traffic metrics, in one place, with
//! their descriptions.
//!
//! Owns: the metric names [`super::tcp`] records through the `metrics`
//! facade, the label they carry ([`PEER_LABEL`]), and [`describe_metrics`],
//! which registers their units and descriptions.
//! Guarantees: every name carries the `ringraft_` prefix and means what
//! etcd's `etcd_network_peer_*` metric of the same suffix means, so a later
//! `src/metrics.rs` can absorb this file unchanged; the `peer` label is the
//! peer's node id as a decimal string.
//! May not touch: exporters or the recorder's installation.

use metrics::{Unit, describe_counter};

/// Label on every metric here: the peer's node id, in decimal.
pub const PEER_LABEL: &str = "peer";

/// Counter: bytes written to a peer's connection (frames with their length
/// prefixes; the connection preamble is not counted).
pub const PEER_SENT_BYTES_TOTAL: &str = "ringraft_network_peer_sent_bytes_total";

/// Counter: bytes of valid frames received from a peer (with their length
/// prefixes).
pub const PEER_RECEIVED_BYTES_TOTAL: &str = "ringraft_network_peer_received_bytes_total";

/// Counter: messages written to a peer's connection.
pub const PEER_SENT_MESSAGES_TOTAL: &str = "ringraft_network_peer_sent_messages_total";

/// Counter: messages to a peer that were dropped instead of sent: refused by
/// `send` (queue full, peer disconnected, too large) or lost with a
/// connection that failed before or while writing them.
pub const PEER_SEND_FAILURES_TOTAL: &str = "ringraft_network_peer_send_failures_total";

/// Registers the units and descriptions of every metric above with the
/// installed recorder. Call once after installing it.
pub fn describe_metrics() {
    describe_counter!(
        PEER_SENT_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of raft message frames written to a peer."
    );
    describe_counter!(
        PEER_RECEIVED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of valid raft message frames received from a peer."
    );
    describe_counter!(
        PEER_SENT_MESSAGES_TOTAL,
        Unit::Count,
        "Raft messages written to a peer."
    );
    describe_counter!(
        PEER_SEND_FAILURES_TOTAL,
        Unit::Count,
        "Raft messages to a peer dropped instead of sent."
    );
}
