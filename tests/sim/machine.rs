//! What the simulation needs to know of a state machine to run and check
//! it: [`SimMachine`], implemented for the built-in `KvStore` (`kv`) and for
//! the ledger of `examples/ledger` (`ledger`).
//!
//! Owns: the per-machine parts of a run: its parameters (drawn from the
//! seed), the genesis state, the clients' next operation, the invariant a
//! state must keep, the reference model the checker builds from the agreed
//! log ([`Reference`]), and the history checked at the end ([`History`]).
//! Everything else (the node, raft, disk, network, faults, the agreed log,
//! membership, convergence) is the same code for every machine.
//!
//! Guarantees: a reference is built from the agreed log with its own model
//! of the machine (not the machine's code), so that comparing the two is a
//! check of both the node's apply path and the machine.
//! May not touch: the nodes.

pub mod kv;
pub mod ledger;

use crate::rng::SimRng;
use ringraft::StateMachine;
use std::fmt::Debug;

/// Which state machine a run replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The key-value store on every seed.
    Kv,
    /// The ledger on every seed.
    Ledger,
    /// Alternating by seed: even seeds the key-value store, odd the ledger.
    Both,
}

impl Choice {
    /// `RINGRAFT_SIM_STATE_MACHINE=kv|ledger|both` (default both).
    pub fn from_env() -> Result<Choice, String> {
        match std::env::var("RINGRAFT_SIM_STATE_MACHINE").as_deref() {
            Err(_) | Ok("both") | Ok("") => Ok(Choice::Both),
            Ok("kv") => Ok(Choice::Kv),
            Ok("ledger") => Ok(Choice::Ledger),
            Ok(other) => Err(format!(
                "RINGRAFT_SIM_STATE_MACHINE={other}: expected kv, ledger or both"
            )),
        }
    }

    /// The environment setting that selects this choice (None: the
    /// default).
    pub fn env_value(self) -> Option<&'static str> {
        match self {
            Choice::Kv => Some("kv"),
            Choice::Ledger => Some("ledger"),
            Choice::Both => None,
        }
    }

    /// The machine seed `seed` runs.
    pub fn machine(self, seed: u64) -> &'static str {
        match self {
            Choice::Kv => kv::NAME,
            Choice::Ledger => ledger::NAME,
            Choice::Both if seed % 2 == 0 => kv::NAME,
            Choice::Both => ledger::NAME,
        }
    }
}

/// A client's next operation.
#[derive(Debug, Clone)]
pub enum ClientOp<S: StateMachine> {
    /// Propose a command.
    Write(S::Command),
    /// A linearizable read (ReadIndex).
    Read(S::Query),
    /// A serializable read of the node's state as it stands.
    LocalRead(S::Query),
}

/// A state machine the simulation can run and check.
pub trait SimMachine:
    StateMachine<Command: Clone + Debug, Response: Debug, Query: Clone + Debug, QueryResult: Debug>
    + Clone
    + PartialEq
    + Debug
{
    /// The name in summaries and reproduce commands.
    const NAME: &'static str;
    /// Whether [`SimMachine::invariant`] checks anything (it then runs on
    /// every node at every step, besides after every change).
    const HAS_INVARIANT: bool;
    /// What a run draws from its seed (key space, accounts).
    type Params: Clone + Debug;
    /// The reference model the checker keeps.
    type Reference: Reference<Self>;
    /// The history the clients record, checked at the end.
    type History: History<Self>;

    /// Draws a run's parameters.
    fn draw_params(rng: &mut SimRng) -> Self::Params;
    /// The state every node starts from (and restores into).
    fn genesis(params: &Self::Params) -> Self;
    /// The reference at index 0.
    fn reference(params: &Self::Params) -> Self::Reference;
    /// An empty history.
    fn history(params: &Self::Params) -> Self::History;
    /// Client `client`'s next operation; `writes` counts its writes (to
    /// make written values unique).
    fn next_op(
        params: &Self::Params,
        client: usize,
        writes: &mut u64,
        rng: &mut SimRng,
    ) -> ClientOp<Self>;
    /// The invariant every state must keep, whatever the log.
    fn invariant(_params: &Self::Params, _state: &Self) -> Result<(), String> {
        Ok(())
    }
    /// Whether a response says the machine refused the command (counted).
    fn refused(_response: &Self::Response) -> bool {
        false
    }
}

/// The state implied by the agreed log, at every index.
pub trait Reference<S: StateMachine> {
    /// The command committed at `index` (the next index with a command;
    /// decoded by the machine's own codec) extends the reference.
    fn commit(&mut self, index: u64, command: &S::Command) -> Result<(), String>;
    /// `state` must equal the reference once `index` is applied.
    fn check_state(&self, index: u64, state: &S) -> Result<(), String>;
    /// The response to the command at `index` must be what the reference
    /// decided.
    fn check_response(&self, index: u64, response: &S::Response) -> Result<(), String>;
    /// `result` must answer `query` on the reference once `index` is
    /// applied.
    fn check_query(
        &self,
        index: u64,
        query: &S::Query,
        result: &S::QueryResult,
    ) -> Result<(), String>;
}

/// The clients' history, for a check at the end.
pub trait History<S: StateMachine> {
    /// A write, acknowledged at `ret_us`, or of unknown outcome (`None`).
    fn write(&mut self, client: u64, call_us: u64, ret_us: Option<u64>, command: &S::Command);
    /// A linearizable read that returned `result`.
    fn read(
        &mut self,
        client: u64,
        call_us: u64,
        ret_us: u64,
        query: &S::Query,
        result: &S::QueryResult,
    );
    /// Operations recorded.
    fn len(&self) -> usize;
    /// Checks the history; the error says why it is not acceptable.
    fn check(&self) -> Result<(), String>;
}
