//! What a run (or many runs) did, for the summary a run prints.
//!
//! Owns: the counters of faults injected and operations checked.
//! Guarantees: plain counters; [`Stats::add`] sums runs.
//! May not touch: anything else.

/// Counters of one or more runs.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub seeds: u64,
    pub steps: u64,
    pub crashes: u64,
    pub crashes_mid_snapshot: u64,
    pub tails_lost: u64,
    pub tails_kept: u64,
    pub tails_torn: u64,
    pub tails_holed: u64,
    pub torn_tails_repaired: u64,
    pub partitions: u64,
    pub one_way_cuts: u64,
    pub heals: u64,
    pub snapshots_saved: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
    /// Membership changes applied at the node that proposed them (found by
    /// the request id in their context).
    pub membership_changes_applied: u64,
    pub nodes_removed: u64,
    pub transfers: u64,
    pub writes_acknowledged: u64,
    pub writes_unknown: u64,
    /// Acknowledged writes the state machine refused (its response says
    /// so: a ledger transfer without funds), decided alike everywhere.
    pub writes_refused_by_state_machine: u64,
    pub linearizable_reads: u64,
    pub serializable_reads: u64,
    pub linearizable_ops_checked: u64,
    pub messages_sent: u64,
    pub messages_lost: u64,
    pub messages_duplicated: u64,
    pub fdatasyncs: u64,
    pub stalls: u64,
    /// Passes in which client requests waited because the Readies in
    /// flight held the back-pressure budget.
    pub requests_held: u64,
    /// Checks of the machine's invariant at the end of a step (one per
    /// running node; it is also checked after every apply and restore).
    pub invariant_checks: u64,
}

impl Stats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Stats) {
        macro_rules! sum {
            ($($field:ident),*) => { $(self.$field += other.$field;)* };
        }
        sum!(
            seeds,
            steps,
            crashes,
            crashes_mid_snapshot,
            tails_lost,
            tails_kept,
            tails_torn,
            tails_holed,
            torn_tails_repaired,
            partitions,
            one_way_cuts,
            heals,
            snapshots_saved,
            snapshots_installed,
            membership_changes,
            membership_changes_applied,
            nodes_removed,
            transfers,
            writes_acknowledged,
            writes_unknown,
            writes_refused_by_state_machine,
            linearizable_reads,
            serializable_reads,
            linearizable_ops_checked,
            messages_sent,
            messages_lost,
            messages_duplicated,
            fdatasyncs,
            stalls,
            requests_held,
            invariant_checks
        );
    }

    /// A short multi-line summary.
    pub fn summary(&self) -> String {
        format!(
            "seeds {} × steps: {} steps in all\n\
             faults: crashes {} (mid-snapshot {}; unsynced WAL tail lost {}, kept {}, torn {}, \
             holed {}; torn tails repaired {}), partitions {}, one-way cuts {}, heals {}, \
             membership changes {} (applied at their proposer {}; nodes removed {}), leader transfers {}\n\
             snapshots saved {}, installed from a leader {}; fdatasyncs {}\n\
             client: writes acknowledged {} (refused by the state machine {}), unknown {}; \
             linearizable reads {}, serializable reads {} (all checked against the reference); \
             history ops checked for linearizability {}; invariant checks at step ends {}\n\
             network: sent {}, lost {}, duplicated {}; convergence stalls {}; \
             client requests held by back-pressure {}",
            self.seeds,
            self.steps,
            self.crashes,
            self.crashes_mid_snapshot,
            self.tails_lost,
            self.tails_kept,
            self.tails_torn,
            self.tails_holed,
            self.torn_tails_repaired,
            self.partitions,
            self.one_way_cuts,
            self.heals,
            self.membership_changes,
            self.membership_changes_applied,
            self.nodes_removed,
            self.transfers,
            self.snapshots_saved,
            self.snapshots_installed,
            self.fdatasyncs,
            self.writes_acknowledged,
            self.writes_refused_by_state_machine,
            self.writes_unknown,
            self.linearizable_reads,
            self.serializable_reads,
            self.linearizable_ops_checked,
            self.invariant_checks,
            self.messages_sent,
            self.messages_lost,
            self.messages_duplicated,
            self.stalls,
            self.requests_held
        )
    }
}
