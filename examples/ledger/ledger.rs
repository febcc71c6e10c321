//! A bank ledger replicated by ringraft: a complete, small
//! [`StateMachine`] that is not a key-value store.
//!
//! Owns: the balances of a fixed set of accounts, `0..accounts`, all
//! created at genesis by [`Ledger::new`] with the same balance; the binary
//! codec of [`Command`]s; the snapshot format.
//!
//! Guarantees:
//! - the total of all balances never changes: a transfer moves money and
//!   never creates or destroys it, and [`StateMachine::restore`] refuses a
//!   snapshot whose accounts or total differ from the genesis ones;
//! - a refused transfer (unknown account, insufficient funds, same
//!   account) is its response, `Err(TransferError)`, decided alike on
//!   every member, and changes nothing;
//! - nothing here panics on input: bad command bytes are a
//!   [`DecodeError`], bad snapshot bytes a [`LedgerError`] (and the ledger
//!   is left as it was).
//!
//! Formats, every integer a little-endian u64:
//! - a command: tag byte 1 (transfer), then from, to, amount (25 bytes);
//! - a snapshot: the account count, then (account, balance) per account in
//!   ascending order; no checksum (the node frames and checks the bytes).
//!
//! May not touch: anything of the node (membership, indexes, files).

// Shared by the example and tests/ledger_node.rs; each uses a part.
#![allow(dead_code)]

use ringraft::{Committed, DecodeError, StateMachine, WriteSnapshot};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// An account number.
pub type Account = u64;

/// What proposers ask the ledger to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Move `amount` from account `from` to account `to`.
    Transfer {
        from: Account,
        to: Account,
        amount: u64,
    },
}

const TAG_TRANSFER: u8 = 1;
const TRANSFER_LEN: usize = 1 + 3 * 8;

/// Why a transfer was refused (its response; the ledger is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("account {0} does not exist")]
    UnknownAccount(Account),
    #[error("account {account} holds {balance}, cannot send {amount}")]
    InsufficientFunds {
        account: Account,
        balance: u64,
        amount: u64,
    },
    #[error("a transfer from account {0} to itself")]
    SameAccount(Account),
}

/// What a reader asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// One account's balance.
    Balance(Account),
    /// The sum of all balances (constant unless something is broken).
    Total,
    /// Every balance.
    All,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// `None` for an unknown account.
    Balance(Option<u64>),
    Total(u64),
    All(BTreeMap<Account, u64>),
}

/// A snapshot the ledger cannot take (fatal for the node).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("reading the snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot of {len} bytes, expected {expected} (account count {count})")]
    Length {
        len: usize,
        expected: usize,
        count: u64,
    },
    #[error("snapshot names account {found} at position {position}, expected {position}")]
    Accounts { position: u64, found: Account },
    #[error("snapshot balances sum to {found}, the genesis total is {expected}")]
    Total { found: u128, expected: u64 },
}

/// The replicated ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    balances: BTreeMap<Account, u64>,
    /// The genesis total, which every state must keep.
    genesis_total: u64,
}

impl Ledger {
    /// Accounts `0..accounts`, each holding `initial_balance`.
    ///
    /// # Panics
    /// If the total does not fit in a u64.
    pub fn new(accounts: u64, initial_balance: u64) -> Ledger {
        let genesis_total = accounts
            .checked_mul(initial_balance)
            .expect("the genesis total fits in a u64");
        Ledger {
            balances: (0..accounts).map(|a| (a, initial_balance)).collect(),
            genesis_total,
        }
    }

    /// The sum of all balances.
    pub fn total(&self) -> u64 {
        // Never overflows: every state sums to the genesis total.
        self.balances.values().sum()
    }

    /// Every balance.
    pub fn balances(&self) -> &BTreeMap<Account, u64> {
        &self.balances
    }

    /// Executes one command (what `apply` does for each; public so that
    /// tests can run a local model).
    pub fn execute(&mut self, command: Command) -> Result<(), TransferError> {
        let Command::Transfer { from, to, amount } = command;
        if from == to {
            return Err(TransferError::SameAccount(from));
        }
        let balance = *self
            .balances
            .get(&from)
            .ok_or(TransferError::UnknownAccount(from))?;
        if !self.balances.contains_key(&to) {
            return Err(TransferError::UnknownAccount(to));
        }
        if balance < amount {
            return Err(TransferError::InsufficientFunds {
                account: from,
                balance,
                amount,
            });
        }
        self.balances.insert(from, balance - amount);
        // Cannot overflow: it stays below the genesis total.
        *self.balances.entry(to).or_default() += amount;
        Ok(())
    }

    fn expected_snapshot_len(&self) -> usize {
        8 + 16 * self.balances.len()
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A point-in-time copy of the balances.
#[derive(Debug, Clone)]
pub struct LedgerSnapshot {
    balances: BTreeMap<Account, u64>,
}

impl WriteSnapshot for LedgerSnapshot {
    fn write_snapshot(self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(8 + 16 * self.balances.len());
        bytes.extend_from_slice(&(self.balances.len() as u64).to_le_bytes());
        for (account, balance) in &self.balances {
            bytes.extend_from_slice(&account.to_le_bytes());
            bytes.extend_from_slice(&balance.to_le_bytes());
        }
        out.write_all(&bytes)
    }
}

impl StateMachine for Ledger {
    type Command = Command;
    type Response = Result<(), TransferError>;
    type Query = Query;
    type QueryResult = QueryResult;
    type Snapshot = LedgerSnapshot;
    type Error = LedgerError;

    fn encode_command(command: &Command, out: &mut Vec<u8>) {
        let Command::Transfer { from, to, amount } = *command;
        out.push(TAG_TRANSFER);
        for word in [from, to, amount] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
        match bytes {
            [] => Err(DecodeError::new("empty command")),
            [TAG_TRANSFER, ..] if bytes.len() == TRANSFER_LEN => Ok(Command::Transfer {
                from: u64_at(bytes, 1),
                to: u64_at(bytes, 9),
                amount: u64_at(bytes, 17),
            }),
            [TAG_TRANSFER, ..] => Err(DecodeError::new(format!(
                "a transfer is {TRANSFER_LEN} bytes, not {}",
                bytes.len()
            ))),
            [tag, ..] => Err(DecodeError::new(format!("unknown command tag {tag}"))),
        }
    }

    fn apply(
        &mut self,
        commands: Vec<Committed<Command>>,
    ) -> Result<Vec<Result<(), TransferError>>, LedgerError> {
        Ok(commands
            .into_iter()
            .map(|c| self.execute(c.command))
            .collect())
    }

    fn query(&self, query: Query) -> QueryResult {
        match query {
            Query::Balance(account) => QueryResult::Balance(self.balances.get(&account).copied()),
            Query::Total => QueryResult::Total(self.total()),
            Query::All => QueryResult::All(self.balances.clone()),
        }
    }

    fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            balances: self.balances.clone(),
        }
    }

    fn restore(&mut self, snapshot: &mut dyn Read) -> Result<(), LedgerError> {
        // The account set is fixed at genesis, so the length is known: read
        // one byte more to notice trailing garbage, never more.
        let expected = self.expected_snapshot_len();
        let mut bytes = Vec::with_capacity(expected + 1);
        snapshot.take(expected as u64 + 1).read_to_end(&mut bytes)?;
        let count = if bytes.len() >= 8 {
            u64_at(&bytes, 0)
        } else {
            0
        };
        if bytes.len() != expected || count != self.balances.len() as u64 {
            return Err(LedgerError::Length {
                len: bytes.len(),
                expected,
                count,
            });
        }
        let mut balances = BTreeMap::new();
        let mut total: u128 = 0;
        for position in 0..count {
            let at = 8 + 16 * position as usize;
            let (account, balance) = (u64_at(&bytes, at), u64_at(&bytes, at + 8));
            if account != position {
                return Err(LedgerError::Accounts {
                    position,
                    found: account,
                });
            }
            total += u128::from(balance);
            balances.insert(account, balance);
        }
        if total != u128::from(self.genesis_total) {
            return Err(LedgerError::Total {
                found: total,
                expected: self.genesis_total,
            });
        }
        self.balances = balances;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(from: Account, to: Account, amount: u64) -> Command {
        Command::Transfer { from, to, amount }
    }

    fn encoded(command: &Command) -> Vec<u8> {
        let mut out = Vec::new();
        Ledger::encode_command(command, &mut out);
        out
    }

    fn snapshot_bytes(ledger: &Ledger) -> Vec<u8> {
        let mut out = Vec::new();
        ledger
            .snapshot()
            .write_snapshot(&mut out)
            .expect("write to a Vec");
        out
    }

    #[test]
    fn commands_round_trip_through_the_codec() {
        for command in [
            transfer(0, 1, 5),
            transfer(u64::MAX, 7, u64::MAX),
            transfer(3, 3, 0),
        ] {
            let bytes = encoded(&command);
            assert_eq!(bytes.len(), TRANSFER_LEN);
            assert_eq!(Ledger::decode_command(&bytes), Ok(command));
        }
    }

    #[test]
    fn bad_command_bytes_are_decode_errors() {
        let good = encoded(&transfer(1, 2, 3));
        let mut unknown_tag = good.clone();
        unknown_tag[0] = 9;
        let mut long = good.clone();
        long.push(0);
        for bad in [
            &[][..],
            &good[..TRANSFER_LEN - 1],
            &good[..1],
            &long,
            &unknown_tag,
        ] {
            assert!(Ledger::decode_command(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn refused_transfers_change_nothing() {
        let mut ledger = Ledger::new(3, 10);
        assert_eq!(ledger.execute(transfer(0, 1, 4)), Ok(()));
        let before = ledger.clone();
        assert_eq!(
            ledger.execute(transfer(0, 2, 7)),
            Err(TransferError::InsufficientFunds {
                account: 0,
                balance: 6,
                amount: 7
            })
        );
        assert_eq!(
            ledger.execute(transfer(0, 3, 1)),
            Err(TransferError::UnknownAccount(3))
        );
        assert_eq!(
            ledger.execute(transfer(5, 0, 1)),
            Err(TransferError::UnknownAccount(5))
        );
        assert_eq!(
            ledger.execute(transfer(1, 1, 1)),
            Err(TransferError::SameAccount(1))
        );
        assert_eq!(ledger, before);
        assert_eq!(
            ledger.balances().values().copied().collect::<Vec<_>>(),
            [6, 14, 10]
        );
        assert_eq!(ledger.total(), 30);
        let committed = vec![Committed {
            index: 7,
            command: transfer(1, 2, 14),
        }];
        assert_eq!(ledger.apply(committed).expect("apply"), [Ok(())]);
        assert_eq!(
            ledger.query(Query::Balance(2)),
            QueryResult::Balance(Some(24))
        );
        assert_eq!(ledger.query(Query::Total), QueryResult::Total(30));
    }

    #[test]
    fn a_snapshot_restores_an_equal_ledger() {
        let mut ledger = Ledger::new(5, 100);
        for n in 0..50 {
            let _ = ledger.execute(transfer(n % 5, (n * 3 + 1) % 5, n * 7 % 40));
        }
        let at_view = ledger.clone();
        let view = ledger.snapshot();
        let (&rich, _) = ledger
            .balances()
            .iter()
            .max_by_key(|(_, b)| **b)
            .expect("accounts");
        ledger
            .execute(transfer(rich, (rich + 1) % 5, 1))
            .expect("transfer after the view");
        let mut bytes = Vec::new();
        view.write_snapshot(&mut bytes).expect("write");
        let mut restored = Ledger::new(5, 100);
        restored.restore(&mut bytes.as_slice()).expect("restore");
        // The view was taken before the last transfer.
        assert_eq!(restored, at_view);
        assert_ne!(restored, ledger);
        assert_eq!(restored.total(), 500);
    }

    #[test]
    fn malformed_snapshots_are_refused_and_change_nothing() {
        let mut source = Ledger::new(4, 25);
        source.execute(transfer(0, 3, 20)).expect("transfer");
        let bytes = snapshot_bytes(&source);
        let fresh = Ledger::new(4, 25);
        let mut target = fresh.clone();
        for len in 0..bytes.len() {
            let result = target.restore(&mut &bytes[..len]);
            assert!(
                matches!(result, Err(LedgerError::Length { .. })),
                "{len}: {result:?}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            target.restore(&mut trailing.as_slice()),
            Err(LedgerError::Length { .. })
        ));
        let mut inflated = bytes.clone();
        inflated[16] += 1; // account 0's balance
        assert!(matches!(
            target.restore(&mut inflated.as_slice()),
            Err(LedgerError::Total { .. })
        ));
        let mut renamed = bytes.clone();
        renamed[24] = 9; // the second account's number
        assert!(matches!(
            target.restore(&mut renamed.as_slice()),
            Err(LedgerError::Accounts { .. })
        ));
        let other_genesis = snapshot_bytes(&Ledger::new(5, 20));
        assert!(target.restore(&mut other_genesis.as_slice()).is_err());
        assert_eq!(target, fresh);
        target
            .restore(&mut bytes.as_slice())
            .expect("the intact snapshot restores");
        assert_eq!(target, source);
    }
}
