//! Automatic compaction of the MVCC store (etcd's
//! `--auto-compaction-mode` and `--auto-compaction-retention`), so that a
//! store whose keys are overwritten does not keep every old version.
//!
//! Owns: [`AutoCompaction`] (the setting and its parsing) and the task
//! ([`spawn`]) that proposes a compaction when one is due. Guarantees: only
//! the leader proposes (a follower's task only watches), through raft like
//! any client's Compact, so every member compacts at the same revision;
//! a compaction is never proposed at or below the store's compacted
//! revision of the last one this task proposed, and never above the
//! applied revision. A failed proposal (no leader, a revision someone
//! compacted past) is logged and tried again at the next check.
//! May not touch: the store's rules (a compaction is an ordinary command).
//!
//! - `revision` mode, retention `N`: every [`REVISION_CHECK_INTERVAL`],
//!   compact at `current − N` when that is above the last compaction. etcd
//!   checks every 5 minutes; a few seconds keeps the history of a busy
//!   store (tens of thousands of writes a second) from growing for minutes.
//! - `periodic` mode, retention `R`: the revision is sampled every `R/10`
//!   (at least every second), and the revision sampled `R` ago is
//!   compacted at: history of about the last `R` stays readable, as in
//!   etcd 3.4.

use super::pb::etcdserverpb as pb;
use super::store::{AppliedRevision, EtcdCommand, EtcdStore, Operation};
use crate::node::NodeHandle;
use crate::raft::StateRole;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often the revision mode checks whether a compaction is due.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest sampling period of the periodic mode.
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// When old versions are compacted away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Never (a client compacts with the Compact call).
    Off,
    /// Keep the last this many revisions.
    Revision(u64),
    /// Keep about this long of history.
    Periodic(Duration),
}

/// The default: keep the last 10,000 revisions. etcd's default is off; a
/// store that `/v1` users overwrite, who never see history, should not
/// grow with every overwrite until the quota refuses writes.
pub const DEFAULT_AUTO_COMPACTION: AutoCompaction = AutoCompaction::Revision(10_000);

impl AutoCompaction {
    /// Parses etcd's pair of flags: `mode` is `revision` or `periodic`;
    /// `retention` is a count of revisions in revision mode, and in
    /// periodic mode a duration (`90s`, `30m`, `1h`) or a bare number of
    /// hours, as etcd takes it. A retention of 0 turns compaction off.
    pub fn parse(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let retention = retention.trim();
        match mode {
            "revision" => {
                let count: u64 = retention.parse().map_err(|_| {
                    format!("revision mode needs a count of revisions, not {retention:?}")
                })?;
                Ok(if count == 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Revision(count)
                })
            }
            "periodic" => {
                let period = parse_period(retention).ok_or_else(|| {
                    format!(
                        "periodic mode needs a duration such as 90s, 30m, 1h or a number of hours, not {retention:?}"
                    )
                })?;
                Ok(if period.is_zero() {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Periodic(period)
                })
            }
            other => Err(format!(
                "unknown mode {other:?}: expected revision or periodic"
            )),
        }
    }
}

fn parse_period(text: &str) -> Option<Duration> {
    if let Ok(hours) = text.parse::<f64>() {
        return (hours.is_finite() && hours >= 0.0)
            .then(|| Duration::from_secs_f64(hours * 3600.0));
    }
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit_seconds = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    (number.is_finite() && number >= 0.0).then(|| Duration::from_secs_f64(number * unit_seconds))
}

/// The revision to compact at, if one is due, in revision mode.
fn revision_due(current: i64, retention: u64, last: i64) -> Option<i64> {
    let target = current.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
    (target > last && target >= 1).then_some(target)
}

/// The periodic mode's samples: `(when, revision)`, oldest first.
#[derive(Debug, Default)]
struct Samples(VecDeque<(Instant, i64)>);

impl Samples {
    /// Records `revision` at `now`; returns the newest revision sampled at
    /// least `retention` ago (dropping the samples older than it).
    fn record(&mut self, now: Instant, revision: i64, retention: Duration) -> Option<i64> {
        self.0.push_back((now, revision));
        let mut due = None;
        while let Some(&(when, sampled)) = self.0.front() {
            if now.duration_since(when) < retention {
                break;
            }
            due = Some(sampled);
            self.0.pop_front();
        }
        due
    }
}

/// Starts the compactor of `node` (whose store publishes `revision`); it
/// ends when the node stops.
pub fn spawn(
    node: NodeHandle<EtcdStore>,
    revision: AppliedRevision,
    setting: AutoCompaction,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = match setting {
        AutoCompaction::Off => return None,
        AutoCompaction::Revision(_) => REVISION_CHECK_INTERVAL,
        AutoCompaction::Periodic(retention) => (retention / 10).max(MIN_SAMPLE_INTERVAL),
    };
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples = Samples::default();
        let mut last = 0i64;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = node.stopped() => return,
            }
            let current = revision.get();
            let due = match setting {
                AutoCompaction::Off => None,
                AutoCompaction::Revision(retention) => revision_due(current, retention, last),
                AutoCompaction::Periodic(retention) => samples
                    .record(Instant::now(), current, retention)
                    .filter(|&sampled| sampled > last && sampled >= 1),
            };
            let Some(target) = due else { continue };
            let leads = matches!(node.status().await, Ok(s) if s.role == StateRole::Leader);
            if !leads {
                continue;
            }
            match compact(&node, target).await {
                Ok(()) => {
                    tracing::info!(node = node.id(), revision = target, "auto-compacted");
                    last = target;
                }
                Err(reason) => {
                    tracing::warn!(node = node.id(), revision = target, %reason, "auto-compaction failed; retrying at the next check");
                }
            }
        }
    }))
}

async fn compact(node: &NodeHandle<EtcdStore>, revision: i64) -> Result<(), String> {
    let command = EtcdCommand {
        operation: Some(Operation::Compaction(pb::CompactionRequest {
            revision,
            physical: false,
        })),
    };
    let applied = node.propose(command).await.map_err(|e| e.to_string())?;
    match applied.outcome {
        Ok(_) => Ok(()),
        // Someone compacted at or past it: nothing left to do.
        Err(super::store::EtcdCommandError::Mvcc(crate::mvcc::MvccError::Compacted { .. })) => {
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_flags_parse() {
        assert_eq!(
            AutoCompaction::parse("revision", "1000"),
            Ok(AutoCompaction::Revision(1000))
        );
        assert_eq!(
            AutoCompaction::parse("revision", "0"),
            Ok(AutoCompaction::Off)
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "1"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(1800)))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "90s"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(90)))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "0"),
            Ok(AutoCompaction::Off)
        );
        for (mode, retention) in [
            ("revision", "1h"),
            ("revision", "-3"),
            ("periodic", "soon"),
            ("periodic", "5d"),
            ("periodic", "-1"),
            ("daily", "1"),
        ] {
            assert!(
                AutoCompaction::parse(mode, retention).is_err(),
                "{mode} {retention}"
            );
        }
    }

    #[test]
    fn revision_mode_compacts_only_forward() {
        assert_eq!(revision_due(100, 1000, 0), None, "not enough history yet");
        assert_eq!(revision_due(1500, 1000, 0), Some(500));
        assert_eq!(revision_due(1500, 1000, 500), None, "already there");
        assert_eq!(revision_due(1501, 1000, 500), Some(501));
    }

    #[test]
    fn periodic_mode_compacts_at_the_revision_sampled_a_retention_ago() {
        let start = Instant::now();
        let retention = Duration::from_secs(10);
        let mut samples = Samples::default();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(samples.record(at(0), 5, retention), None);
        assert_eq!(samples.record(at(4), 9, retention), None);
        assert_eq!(samples.record(at(10), 20, retention), Some(5));
        assert_eq!(samples.record(at(12), 22, retention), None);
        // Both older samples are past the retention: the newer one wins.
        assert_eq!(samples.record(at(30), 40, retention), Some(22));
    }
}
