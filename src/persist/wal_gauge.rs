//! The `ringraft_wal_segments` gauge: how many WAL segment files the WAL
//! directory holds.
//!
//! Owns: counting segment files (by name, as the WAL lists them) and
//! setting the gauge with the persistence actor's `node` label.
//! Guarantees: never fails its caller: a directory that cannot be read is
//! logged at debug level and the gauge keeps its last value. Called at the
//! actor's start and after every cut and purge, which are rare (one per
//! filled segment, one per snapshot), so a directory read is cheap enough.
//! May not touch: the files themselves.

use crate::metrics::{NODE_LABEL, WAL_SEGMENTS};
use crate::wal::segment_name::list_segments;
use std::path::Path;

/// Sets the gauge to the number of segment files in `dir`.
pub(crate) fn record_wal_segments(dir: &Path, node_id: u64) {
    match list_segments(dir) {
        Ok(segments) => {
            metrics::gauge!(WAL_SEGMENTS, NODE_LABEL => node_id.to_string())
                .set(segments.len() as f64);
        }
        Err(error) => {
            tracing::debug!(dir = %dir.display(), %error, "cannot count WAL segments");
        }
    }
}
