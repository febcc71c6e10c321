//! Reading counters out of Prometheus text exposition (a server's
//! `/metrics`, or the embedded recorder's rendering).
//!
//! Owns: [`sum_of`], the sum over every label set of one sample name, and
//! [`Counters`], the few numbers a run compares before and after.
//! Guarantees: matches the sample name exactly (`x_count` is not
//! `x_count_total`); comments, blank lines and malformed lines are
//! skipped, never a panic; `None` when the name has no sample.
//! May not touch: how the text was fetched.

/// The sum of every sample named `name` (all label sets), or `None` if
/// there is none.
pub fn sum_of(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value_part = if let Some(labels) = rest.strip_prefix('{') {
            // Label values may contain `}` only inside quotes.
            match end_of_labels(labels) {
                Some(end) => &labels[end + 1..],
                None => continue,
            }
        } else if rest.starts_with([' ', '\t']) {
            rest
        } else {
            continue; // a longer name sharing the prefix
        };
        let Some(value) = value_part.split_whitespace().next() else {
            continue;
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => match other.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        *sum.get_or_insert(0.0) += value;
    }
    sum
}

/// Byte offset of the `}` closing a label set (the text after `{`).
fn end_of_labels(labels: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// What a run reads from a target before and after the measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// WAL fdatasyncs so far.
    pub fsyncs: Option<f64>,
    /// Seconds spent in those fsyncs (the fsync histogram's sum).
    pub fsync_seconds: Option<f64>,
    /// Entries made durable (ringraft) or committed (etcd) so far.
    pub entries: Option<f64>,
    /// The state machine's position: applied index (ringraft) or
    /// revision (etcd).
    pub position: Option<u64>,
    /// Raft messages between nodes so far (embedded: the in-process
    /// network's count).
    pub messages: Option<f64>,
}

impl Counters {
    /// `after - self`, field by field (`None` where either is unknown; a
    /// counter that went backwards, as after a restart, is unknown too).
    pub fn delta(&self, after: &Counters) -> Counters {
        let f = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        };
        Counters {
            fsyncs: f(self.fsyncs, after.fsyncs),
            fsync_seconds: f(self.fsync_seconds, after.fsync_seconds),
            entries: f(self.entries, after.entries),
            messages: f(self.messages, after.messages),
            position: match (self.position, after.position) {
                (Some(a), Some(b)) => b.checked_sub(a),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP ringraft_disk_wal_fsync_duration_seconds Time of one fdatasync.
# TYPE ringraft_disk_wal_fsync_duration_seconds histogram
ringraft_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 3
ringraft_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 5
ringraft_disk_wal_fsync_duration_seconds_sum 0.0123
ringraft_disk_wal_fsync_duration_seconds_count 5
ringraft_disk_wal_fsync_duration_seconds_count_total 999
etcd_server_proposals_committed_total{node="1",weird="a}b\"c"} 10
etcd_server_proposals_committed_total{node="2"} 32 1700000000
broken_metric{node="1" 7
not_a_number NaNx
"#;

    #[test]
    fn sums_exact_names_over_label_sets() {
        assert_eq!(
            sum_of(TEXT, "ringraft_disk_wal_fsync_duration_seconds_count"),
            Some(5.0)
        );
        assert_eq!(
            sum_of(TEXT, "ringraft_disk_wal_fsync_duration_seconds_sum"),
            Some(0.0123)
        );
        assert_eq!(
            sum_of(TEXT, "ringraft_disk_wal_fsync_duration_seconds_bucket"),
            Some(8.0)
        );
        assert_eq!(
            sum_of(TEXT, "etcd_server_proposals_committed_total"),
            Some(42.0)
        );
        assert_eq!(sum_of(TEXT, "broken_metric"), None);
        assert_eq!(sum_of(TEXT, "not_a_number"), None);
        assert_eq!(sum_of(TEXT, "absent"), None);
        assert_eq!(sum_of("", "x"), None);
    }

    #[test]
    fn deltas_are_unknown_when_a_side_is() {
        let before = Counters {
            fsyncs: Some(10.0),
            fsync_seconds: Some(1.0),
            entries: None,
            position: Some(5),
            messages: Some(7.0),
        };
        let after = Counters {
            fsyncs: Some(15.0),
            fsync_seconds: Some(1.5),
            entries: Some(3.0),
            position: Some(4),
            messages: Some(9.0),
        };
        let d = before.delta(&after);
        assert_eq!(d.fsyncs, Some(5.0));
        assert_eq!(d.fsync_seconds, Some(0.5));
        assert_eq!(d.entries, None);
        assert_eq!(d.messages, Some(2.0));
        assert_eq!(d.position, None, "went backwards");
    }
}
