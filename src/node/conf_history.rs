//! The configuration after each applied membership change, so that a
//! snapshot at any applied index gets the configuration as of that index.
//!
//! Owns: [`ConfHistory`].
//! Guarantees: never empty (it starts from the configuration of the boot
//! snapshot, or of the newest installed one); pruning keeps the newest
//! configuration at or below the pruning index.
//! May not touch: raft (the raft actor and the simulation feed it what raft
//! returned).

use crate::raftpb::ConfState;
use std::collections::VecDeque;

/// (index, configuration after the change at that index), in index order.
#[derive(Debug, Clone)]
pub struct ConfHistory {
    changes: VecDeque<(u64, ConfState)>,
}

impl ConfHistory {
    /// A history whose only configuration is `conf_state`, as of `index`
    /// (a snapshot's, or 0).
    pub fn new(index: u64, conf_state: ConfState) -> ConfHistory {
        ConfHistory {
            changes: VecDeque::from([(index, conf_state)]),
        }
    }

    /// The change at `index` produced `conf_state`.
    pub fn record(&mut self, index: u64, conf_state: ConfState) {
        self.changes.push_back((index, conf_state));
    }

    /// The configuration as of `index` (after every change at or below it).
    pub fn at(&self, index: u64) -> ConfState {
        self.changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .or(self.changes.front())
            .map(|(_, conf)| conf.clone())
            .unwrap_or_default()
    }

    /// A snapshot at `index` was made: configurations older than the one
    /// in force at `index` are not needed any more.
    pub fn prune_through(&mut self, index: u64) {
        while self.changes.len() > 1 && self.changes[1].0 <= index {
            self.changes.pop_front();
        }
    }

    /// A snapshot from the leader replaced the log: its configuration is
    /// the only one known.
    pub fn reset(&mut self, index: u64, conf_state: ConfState) {
        *self = ConfHistory::new(index, conf_state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_configuration_in_force_at_an_index_survives_pruning() {
        let mut history = ConfHistory::new(5, voters(&[1]));
        history.record(8, voters(&[1, 2]));
        history.record(12, voters(&[1, 2, 3]));
        assert_eq!(history.at(7), voters(&[1]));
        assert_eq!(history.at(8), voters(&[1, 2]));
        assert_eq!(history.at(20), voters(&[1, 2, 3]));
        history.prune_through(10);
        assert_eq!(history.at(10), voters(&[1, 2]));
        assert_eq!(
            history.at(3),
            voters(&[1, 2]),
            "older than kept: the oldest kept"
        );
        history.reset(30, voters(&[4]));
        assert_eq!(history.at(12), voters(&[4]));
    }
}
