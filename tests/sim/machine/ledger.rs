//! The ledger of `examples/ledger` in the simulation: a state machine
//! that is not a key-value store. Clients transfer between a few accounts
//! (some transfers refused: insufficient funds, an unknown account, the
//! same account) and read balances.
//!
//! Owns: a run's accounts and initial balance, the clients' transfers
//! (about a third refused, alike on every member), the reference (each
//! account's balance after every index, and whether each transfer was
//! accepted, by a model of its own), the invariant (the total of all
//! balances is the genesis total, on every node at every step).
//! The linearizability of ledger reads is checked in real time by the
//! workload (a linearizable read is served at an index no lower than any
//! operation that completed before it began); there is no end-of-run
//! history search.
//! May not touch: the nodes.

use super::{ClientOp, History, Reference, SimMachine};
use crate::ledger::{Account, Command, Ledger, Query, QueryResult, TransferError};
use crate::rng::SimRng;
use std::collections::BTreeMap;

/// The name in summaries.
pub const NAME: &str = "ledger";

/// A run's accounts `0..accounts`, each starting with `initial`.
#[derive(Debug, Clone, Copy)]
pub struct LedgerParams {
    pub accounts: u64,
    pub initial: u64,
}

impl LedgerParams {
    fn total(&self) -> u64 {
        self.accounts * self.initial
    }
}

impl SimMachine for Ledger {
    const NAME: &'static str = NAME;
    const HAS_INVARIANT: bool = true;
    type Params = LedgerParams;
    type Reference = LedgerReference;
    type History = NoHistory;

    fn draw_params(rng: &mut SimRng) -> LedgerParams {
        LedgerParams {
            accounts: rng.range(3, 8),
            initial: rng.range(50, 500),
        }
    }

    fn genesis(params: &LedgerParams) -> Ledger {
        Ledger::new(params.accounts, params.initial)
    }

    fn reference(params: &LedgerParams) -> LedgerReference {
        LedgerReference {
            params: *params,
            balances: vec![params.initial; params.accounts as usize],
            history: vec![Vec::new(); params.accounts as usize],
            accepted: BTreeMap::new(),
        }
    }

    fn history(_params: &LedgerParams) -> NoHistory {
        NoHistory
    }

    fn next_op(
        params: &LedgerParams,
        _client: usize,
        writes: &mut u64,
        rng: &mut SimRng,
    ) -> ClientOp<Ledger> {
        // One account in fifty is unknown (refused alike everywhere).
        let account = |rng: &mut SimRng| {
            if rng.chance(20) {
                params.accounts
            } else {
                rng.below(params.accounts)
            }
        };
        let query = |rng: &mut SimRng, account: Account| match rng.below(10) {
            0..6 => Query::All,
            6..9 => Query::Balance(account),
            _ => Query::Total,
        };
        match rng.below(100) {
            0..50 => {
                *writes += 1;
                let from = account(rng);
                // Another account, but one transfer in thirty to itself.
                let to = if rng.chance(33) || params.accounts < 2 {
                    from
                } else {
                    let other = account(rng);
                    if other == from {
                        (from + 1) % params.accounts
                    } else {
                        other
                    }
                };
                // Mostly up to half a genesis balance; one in ten larger
                // than any genesis balance (refused unless the account
                // grew).
                let amount = if rng.chance(100) {
                    rng.range(params.initial, 2 * params.initial)
                } else {
                    rng.range(1, params.initial / 2)
                };
                ClientOp::Write(Command::Transfer { from, to, amount })
            }
            50..80 => {
                let a = account(rng);
                ClientOp::Read(query(rng, a))
            }
            _ => {
                let a = account(rng);
                ClientOp::LocalRead(query(rng, a))
            }
        }
    }

    fn invariant(params: &LedgerParams, ledger: &Ledger) -> Result<(), String> {
        let balances = ledger.balances();
        let sum: u128 = balances.values().map(|&b| u128::from(b)).sum();
        if sum != u128::from(params.total()) || ledger.total() != params.total() {
            return Err(format!(
                "ledger invariant: balances sum to {sum} (total() says {}), the genesis total is {} ({} accounts × {})",
                ledger.total(),
                params.total(),
                params.accounts,
                params.initial
            ));
        }
        if balances.len() as u64 != params.accounts
            || balances.keys().copied().ne(0..params.accounts)
        {
            return Err(format!(
                "ledger invariant: accounts {:?}, genesis made 0..{}",
                balances.keys().collect::<Vec<_>>(),
                params.accounts
            ));
        }
        Ok(())
    }

    fn refused(response: &Result<(), TransferError>) -> bool {
        response.is_err()
    }
}

/// The ledger at every index of the agreed log, by a model of its own.
#[derive(Debug)]
pub struct LedgerReference {
    params: LedgerParams,
    /// The balances after the last committed transfer.
    balances: Vec<u64>,
    /// Each account's balance changes: (index, balance after).
    history: Vec<Vec<(u64, u64)>>,
    /// Whether the transfer at each index was accepted.
    accepted: BTreeMap<u64, bool>,
}

impl LedgerReference {
    /// Account `account`'s balance once `index` is applied.
    fn balance_at(&self, account: Account, index: u64) -> Option<u64> {
        let history = self.history.get(usize::try_from(account).ok()?)?;
        let after = history.partition_point(|(at, _)| *at <= index);
        Some(
            history[..after]
                .last()
                .map_or(self.params.initial, |(_, b)| *b),
        )
    }

    fn balances_at(&self, index: u64) -> BTreeMap<Account, u64> {
        (0..self.params.accounts)
            .map(|a| (a, self.balance_at(a, index).unwrap_or_default()))
            .collect()
    }
}

impl Reference<Ledger> for LedgerReference {
    fn commit(&mut self, index: u64, command: &Command) -> Result<(), String> {
        let Command::Transfer { from, to, amount } = *command;
        let known = |a: Account| a < self.params.accounts;
        let accepted =
            from != to && known(from) && known(to) && self.balances[from as usize] >= amount;
        self.accepted.insert(index, accepted);
        if accepted {
            self.balances[from as usize] -= amount;
            self.balances[to as usize] += amount;
            for account in [from, to] {
                let balance = self.balances[account as usize];
                self.history[account as usize].push((index, balance));
            }
        }
        Ok(())
    }

    fn check_state(&self, index: u64, ledger: &Ledger) -> Result<(), String> {
        let balances = ledger.balances();
        let same = balances.len() as u64 == self.params.accounts
            && balances
                .iter()
                .all(|(&account, &balance)| self.balance_at(account, index) == Some(balance));
        if !same {
            return Err(format!(
                "balances {balances:?}, the agreed log gives {:?}",
                self.balances_at(index)
            ));
        }
        Ok(())
    }

    fn check_response(
        &self,
        index: u64,
        response: &Result<(), TransferError>,
    ) -> Result<(), String> {
        let accepted = self.accepted.get(&index);
        if accepted != Some(&response.is_ok()) {
            return Err(format!(
                "response {response:?}, the agreed log {} the transfer at index {index}",
                match accepted {
                    Some(true) => "accepts",
                    Some(false) => "refuses",
                    None => "has no",
                }
            ));
        }
        Ok(())
    }

    fn check_query(&self, index: u64, query: &Query, result: &QueryResult) -> Result<(), String> {
        let expected = match *query {
            Query::Balance(account) => QueryResult::Balance(self.balance_at(account, index)),
            Query::Total => QueryResult::Total(self.params.total()),
            Query::All => QueryResult::All(self.balances_at(index)),
        };
        if *result != expected {
            return Err(format!(
                "{query:?} returned {result:?}, the state at {index} gives {expected:?}"
            ));
        }
        Ok(())
    }
}

/// No end-of-run history search (reads are checked as they complete).
#[derive(Debug)]
pub struct NoHistory;

impl History<Ledger> for NoHistory {
    fn write(&mut self, _client: u64, _call_us: u64, _ret_us: Option<u64>, _command: &Command) {}

    fn read(
        &mut self,
        _client: u64,
        _call_us: u64,
        _ret_us: u64,
        _query: &Query,
        _result: &QueryResult,
    ) {
    }

    fn len(&self) -> usize {
        0
    }

    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
