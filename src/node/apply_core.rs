//! The apply actor's rules with no IO and no runtime in it: committed
//! entries through the [`Applier`] in log order, proposers answered, reads
//! served once the state is recent enough, and when a snapshot is due. The
//! tokio apply actor (`super::apply_actor`) drives it in production; the
//! simulation (`tests/sim`) drives the same code.
//!
//! Owns: the [`Applier`] (and so the user's state machine), the proposers
//! waiting for their entries (by [`RequestId`]), the reads waiting for an
//! applied index, and the snapshot cadence.
//!
//! Guarantees (effects go out through [`ApplyIo`]):
//! - entries apply in the order given, each once (the applier refuses a
//!   gap);
//! - after every batch, and after a restore, the applied index is
//!   published ([`ApplyIo::applied`]) before anyone is answered, so a
//!   caller that got its answer sees `applied ≥` its index;
//! - a proposer is answered with its entry's outcome only after the entry
//!   applied here;
//! - a read with read index `i` is served only once `applied ≥ i`, in read
//!   index order;
//! - a snapshot is due when the [`SnapshotPolicy`] says so (every
//!   `snapshot_count` entries for a small state; a large state also waits
//!   for log bytes), and as soon as anything applied after a member was
//!   added (a new member can accept only a snapshot whose configuration
//!   names it) or when the node booted from a snapshot peers cannot be
//!   sent.
//!
//! May not touch: raft, files, channels — the driver's. Restoring from a
//! snapshot's state is the driver's too (it knows where the state is);
//! it tells the core with [`ApplyCore::restored`].

use super::applier::Applier;
use super::envelope::RequestId;
use super::error::NodeError;
use super::snapshot_policy::SnapshotPolicy;
use crate::state_machine::StateMachine;
use std::collections::{BTreeMap, HashMap};

/// The apply side's effects, carried out by its driver. `P` is what waits
/// for a proposal, `R` what waits for a read.
pub trait ApplyIo<S: StateMachine, P, R> {
    /// The applier moved (a batch applied, or a snapshot restored): publish
    /// its applied index.
    fn applied(&mut self, applier: &Applier<S>);
    /// `proposer`'s entry applied at `index` with `outcome`.
    fn answer(&mut self, proposer: P, index: u64, outcome: Result<S::Response, NodeError>);
    /// Serve `reader` from the state as applied now.
    fn serve(&mut self, reader: R, applier: &Applier<S>);
    /// The node stops: tell `proposer` why.
    fn fail_proposer(&mut self, proposer: P, error: NodeError);
    /// The node stops: tell `reader` why.
    fn fail_reader(&mut self, reader: R, error: NodeError);
    /// Whether the proposer gave up.
    fn proposer_gone(&self, proposer: &P) -> bool;
    /// Whether the reader gave up.
    fn reader_gone(&self, reader: &R) -> bool;
}

/// The apply actor's state and rules.
pub struct ApplyCore<S: StateMachine, P, R> {
    applier: Applier<S>,
    waiters: HashMap<RequestId, P>,
    /// By (read index, arrival), so that reads are served in index order.
    reads: BTreeMap<(u64, u64), R>,
    read_seq: u64,
    /// When a snapshot is due.
    snapshot_policy: SnapshotPolicy,
    last_snapshot_index: u64,
    /// A member was added since the last snapshot.
    member_added: bool,
    /// Take a snapshot at the first chance.
    snapshot_soon: bool,
}

impl<S: StateMachine, P, R> ApplyCore<S, P, R> {
    /// A core over `applier` (as boot left it, at its last snapshot);
    /// `snapshot_soon` asks for a snapshot as soon as anything applies.
    pub fn new(applier: Applier<S>, snapshot_policy: SnapshotPolicy, snapshot_soon: bool) -> Self {
        let last_snapshot_index = applier.applied_index();
        ApplyCore {
            applier,
            waiters: HashMap::new(),
            reads: BTreeMap::new(),
            read_seq: 0,
            snapshot_policy,
            last_snapshot_index,
            member_added: false,
            snapshot_soon,
        }
    }

    /// The applier.
    pub fn applier(&self) -> &Applier<S> {
        &self.applier
    }

    /// The applier, for the driver to restore it from a snapshot's state
    /// (then [`ApplyCore::restored`]).
    pub fn applier_mut(&mut self) -> &mut Applier<S> {
        &mut self.applier
    }

    /// Proposers waiting for an entry.
    pub fn waiting_proposers(&self) -> usize {
        self.waiters.len()
    }

    /// Answer each proposer when the entry carrying its id applies.
    pub fn register(&mut self, proposers: Vec<(RequestId, P)>) {
        self.waiters.extend(proposers);
    }

    /// Applies `entries` (next in log order), publishes the applied
    /// index, answers their proposers and serves the reads now due.
    pub fn apply<I: ApplyIo<S, P, R>>(
        &mut self,
        entries: Vec<crate::raftpb::Entry>,
        io: &mut I,
    ) -> Result<(), NodeError> {
        let payload_bytes: usize = entries.iter().map(|entry| entry.data.len()).sum();
        let batch = self.applier.apply(entries)?;
        self.snapshot_policy.applied(payload_bytes as u64);
        self.member_added |= batch.member_added;
        io.applied(&self.applier);
        for (id, index, outcome) in batch.outcomes {
            if let Some(proposer) = self.waiters.remove(&id) {
                io.answer(proposer, index, outcome);
            }
        }
        self.serve_reads(io);
        Ok(())
    }

    /// Serve `reader` once applied ≥ `index` (0: at once).
    pub fn read<I: ApplyIo<S, P, R>>(&mut self, index: u64, reader: R, io: &mut I) {
        if index <= self.applier.applied_index() {
            io.serve(reader, &self.applier);
        } else {
            self.read_seq += 1;
            self.reads.insert((index, self.read_seq), reader);
        }
    }

    /// Whether a snapshot at `index` is newer than the state (older ones
    /// are not restored).
    pub fn needs_restore(&self, index: u64) -> bool {
        index > self.applier.applied_index()
    }

    /// The driver restored the applier from the snapshot at `index`, whose
    /// state took `state_bytes`.
    pub fn restored<I: ApplyIo<S, P, R>>(&mut self, index: u64, state_bytes: u64, io: &mut I) {
        self.last_snapshot_index = index;
        self.snapshot_policy.reset();
        self.snapshot_policy.state_written(state_bytes);
        io.applied(&self.applier);
        self.serve_reads(io);
    }

    /// Whether a snapshot is due; if so, it counts as taken at the applied
    /// index, which is returned (the driver takes it from the applier).
    pub fn snapshot_due(&mut self) -> Option<u64> {
        let applied = self.applier.applied_index();
        let since_last = applied - self.last_snapshot_index;
        let due = self.snapshot_policy.due(since_last)
            || ((self.member_added || self.snapshot_soon) && since_last > 0);
        if !self.snapshot_policy.enabled() || !due {
            return None;
        }
        self.snapshot_policy.reset();
        self.member_added = false;
        self.snapshot_soon = false;
        self.last_snapshot_index = applied;
        Some(applied)
    }

    /// The snapshot last due was written; its state took `state_bytes`.
    pub fn snapshot_written(&mut self, state_bytes: u64) {
        self.snapshot_policy.state_written(state_bytes);
    }

    /// The index of the last snapshot taken or restored.
    pub fn last_snapshot_index(&self) -> u64 {
        self.last_snapshot_index
    }

    /// Forgets proposers and readers that gave up.
    pub fn sweep<I: ApplyIo<S, P, R>>(&mut self, io: &I) {
        self.waiters
            .retain(|_, proposer| !io.proposer_gone(proposer));
        self.reads.retain(|_, reader| !io.reader_gone(reader));
    }

    /// The node stops: every waiter is told `error`.
    pub fn fail_all<I: ApplyIo<S, P, R>>(&mut self, error: &NodeError, io: &mut I) {
        for (_, proposer) in self.waiters.drain() {
            io.fail_proposer(proposer, error.clone());
        }
        for (_, reader) in std::mem::take(&mut self.reads) {
            io.fail_reader(reader, error.clone());
        }
    }

    fn serve_reads<I: ApplyIo<S, P, R>>(&mut self, io: &mut I) {
        let applied = self.applier.applied_index();
        while let Some(entry) = self.reads.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            io.serve(entry.remove(), &self.applier);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvCommand, KvStore};
    use crate::raftpb::Entry;

    const MIB: u64 = 1024 * 1024;

    /// Effects nobody waits for.
    struct NoWaiters;

    impl ApplyIo<KvStore, (), ()> for NoWaiters {
        fn applied(&mut self, _: &Applier<KvStore>) {}
        fn answer(&mut self, _: (), _: u64, _: Result<crate::kv::KvResponse, NodeError>) {}
        fn serve(&mut self, _: (), _: &Applier<KvStore>) {}
        fn fail_proposer(&mut self, _: (), _: NodeError) {}
        fn fail_reader(&mut self, _: (), _: NodeError) {}
        fn proposer_gone(&self, _: &()) -> bool {
            false
        }
        fn reader_gone(&self, _: &()) -> bool {
            false
        }
    }

    /// Applies `count` puts of `value_bytes` each after what applied; the
    /// applied index at which a snapshot first came due, if one did.
    fn put_until_due(
        core: &mut ApplyCore<KvStore, (), ()>,
        count: u64,
        value_bytes: usize,
    ) -> Option<u64> {
        for _ in 0..count {
            let index = core.applier().applied_index() + 1;
            let mut data = Vec::new();
            let key = format!("k{index}");
            KvStore::encode_command(
                &KvCommand::put(key.as_bytes(), &vec![7; value_bytes]),
                &mut data,
            );
            core.apply(vec![Entry::new(1, index, data)], &mut NoWaiters)
                .expect("applies");
            if let Some(at) = core.snapshot_due() {
                return Some(at);
            }
        }
        None
    }

    #[test]
    fn a_small_state_snapshots_every_count_entries() {
        let policy = SnapshotPolicy::new(10, 0);
        let mut core = ApplyCore::new(Applier::new(KvStore::new()), policy, false);
        assert_eq!(put_until_due(&mut core, 100, 16), Some(10));
        core.snapshot_written(MIB);
        assert_eq!(put_until_due(&mut core, 100, 16), Some(20));
    }

    #[test]
    fn once_the_state_file_is_large_small_entries_wait_for_the_count_multiple() {
        let policy = SnapshotPolicy::new(10, 0);
        let mut core = ApplyCore::new(Applier::new(KvStore::new()), policy, false);
        assert_eq!(put_until_due(&mut core, 100, 16), Some(10));
        core.snapshot_written(64 * MIB);
        assert_eq!(put_until_due(&mut core, 1000, 16), Some(110));
        assert_eq!(core.last_snapshot_index(), 110);
    }

    #[test]
    fn large_entries_make_a_snapshot_due_once_they_weigh_the_state() {
        let policy = SnapshotPolicy::new(10, 9 * MIB);
        let mut core = ApplyCore::new(Applier::new(KvStore::new()), policy, false);
        // 9 MiB of state: 18 entries of 512 KiB weigh as much.
        assert_eq!(put_until_due(&mut core, 100, 512 * 1024), Some(18));
    }

    #[test]
    fn a_restore_counts_from_the_restored_snapshot() {
        let policy = SnapshotPolicy::new(10, 0);
        let mut core = ApplyCore::new(Applier::new(KvStore::new()), policy, false);
        assert_eq!(put_until_due(&mut core, 5, 16), None);
        let snapshot = core.applier().snapshot().into_bytes().expect("snapshot");
        let policy = SnapshotPolicy::new(10, 0);
        let mut restored = ApplyCore::new(Applier::new(KvStore::new()), policy, false);
        restored
            .applier_mut()
            .restore(5, &mut snapshot.as_slice())
            .expect("restores");
        restored.restored(5, 64 * MIB, &mut NoWaiters);
        assert_eq!(restored.last_snapshot_index(), 5);
        assert_eq!(put_until_due(&mut restored, 1000, 16), Some(105));
    }
}
