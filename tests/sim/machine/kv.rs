//! The built-in key-value store in the simulation: clients put, delete and
//! get a few keys; the reference keeps each key's writes by index; the
//! history is checked for linearizability by the Wing–Gong checker over a
//! key-value register model.
//!
//! Owns: the key space of a run, the values clients write (unique over
//! the run: `c<client>-<n>`, so a read names the write it saw), the
//! reference of every key and of every command's outcome.
//! May not touch: the nodes.

use super::{ClientOp, History, Reference, SimMachine};
use crate::rng::SimRng;
use ringraft::kv::{
    KvCommand, KvOutcome, KvQuery, KvQueryResult, KvResponse, KvStore, Operation as KvOperation,
    ScanPage,
};
use ringraft::linearizability::{Budget, CheckResult, Operation, check_with_budget};
use std::collections::BTreeMap;

/// The name in summaries.
pub const NAME: &str = "kv";
/// Search budget of the linearizability check (steps).
const LINEARIZABILITY_BUDGET_STEPS: u64 = 5_000_000;

/// A run's key space.
#[derive(Debug, Clone)]
pub struct KvParams {
    pub keys: Vec<Vec<u8>>,
}

impl SimMachine for KvStore {
    const NAME: &'static str = NAME;
    const HAS_INVARIANT: bool = false;
    type Params = KvParams;
    type Reference = KvReference;
    type History = KvHistory;

    fn draw_params(rng: &mut SimRng) -> KvParams {
        let key_count = rng.range(3, 8);
        KvParams {
            keys: (0..key_count)
                .map(|k| format!("k{k}").into_bytes())
                .collect(),
        }
    }

    fn genesis(_params: &KvParams) -> KvStore {
        KvStore::new()
    }

    fn reference(params: &KvParams) -> KvReference {
        KvReference {
            key_history: params
                .keys
                .iter()
                .map(|k| (k.clone(), Vec::new()))
                .collect(),
            outcomes: BTreeMap::new(),
        }
    }

    fn history(_params: &KvParams) -> KvHistory {
        KvHistory::default()
    }

    fn next_op(
        params: &KvParams,
        client: usize,
        writes: &mut u64,
        rng: &mut SimRng,
    ) -> ClientOp<KvStore> {
        let key = params.keys[rng.below(params.keys.len() as u64) as usize].clone();
        match rng.below(100) {
            0..35 => {
                *writes += 1;
                let value = format!("c{client}-{writes}").into_bytes();
                ClientOp::Write(KvCommand::put(&key, &value))
            }
            35..45 => ClientOp::Write(KvCommand::delete(&key)),
            45..80 => ClientOp::Read(KvQuery::Get(key)),
            _ => ClientOp::LocalRead(KvQuery::Get(key)),
        }
    }

    fn refused(response: &KvResponse) -> bool {
        response.outcome == KvOutcome::Rejected
    }
}

/// Each key's writes in the agreed log: (index, value; `None` = deleted).
type KeyHistory = Vec<(u64, Option<Vec<u8>>)>;

/// The key-value state at every index of the agreed log.
#[derive(Debug)]
pub struct KvReference {
    key_history: BTreeMap<Vec<u8>, KeyHistory>,
    /// What each command did, by index.
    outcomes: BTreeMap<u64, KvOutcome>,
}

impl KvReference {
    /// The value of `key` once `index` is applied.
    fn value_at(&self, key: &[u8], index: u64) -> Option<&[u8]> {
        let history = self.key_history.get(key)?;
        let after = history.partition_point(|(at, _)| *at <= index);
        history[..after]
            .last()
            .and_then(|(_, value)| value.as_deref())
    }

    fn present(&self, key: &[u8]) -> bool {
        self.key_history
            .get(key)
            .and_then(|h| h.last())
            .is_some_and(|(_, v)| v.is_some())
    }
}

fn shown(value: Option<&[u8]>) -> Option<String> {
    value.map(|v| v.escape_ascii().to_string())
}

impl Reference<KvStore> for KvReference {
    fn commit(&mut self, index: u64, command: &KvCommand) -> Result<(), String> {
        let (key, value) = match &command.operation {
            Some(KvOperation::Put(put)) => (put.key.as_ref(), Some(put.value.to_vec())),
            Some(KvOperation::Delete(delete)) => (delete.key.as_ref(), None),
            None => {
                self.outcomes.insert(index, KvOutcome::Rejected);
                return Ok(());
            }
        };
        let existed = self.present(key);
        let outcome = match value {
            Some(_) => KvOutcome::Put { replaced: existed },
            None => KvOutcome::Deleted { existed },
        };
        self.outcomes.insert(index, outcome);
        match self.key_history.get_mut(key) {
            Some(history) => {
                history.push((index, value));
                Ok(())
            }
            None => Err(format!("entry {index} writes a key no client uses")),
        }
    }

    fn check_state(&self, index: u64, kv: &KvStore) -> Result<(), String> {
        let mut present = 0;
        for key in self.key_history.keys() {
            let expected = self.value_at(key, index);
            present += usize::from(expected.is_some());
            if kv.get(key) != expected {
                return Err(format!(
                    "key {} is {:?}, the agreed log gives {:?}",
                    key.escape_ascii(),
                    shown(kv.get(key)),
                    shown(expected)
                ));
            }
        }
        if kv.len() != present {
            return Err(format!(
                "holds {} keys, the agreed log gives {present}",
                kv.len()
            ));
        }
        Ok(())
    }

    fn check_response(&self, index: u64, response: &KvResponse) -> Result<(), String> {
        let expected = self.outcomes.get(&index);
        if response.index != index || expected != Some(&response.outcome) {
            return Err(format!(
                "response {response:?}, the agreed log gives {expected:?} at index {index}"
            ));
        }
        Ok(())
    }

    fn check_query(
        &self,
        index: u64,
        query: &KvQuery,
        result: &KvQueryResult,
    ) -> Result<(), String> {
        let expected = match query {
            KvQuery::Get(key) => {
                KvQueryResult::Value(self.value_at(key, index).map(<[u8]>::to_vec))
            }
            KvQuery::ScanPrefix {
                prefix,
                start,
                limit,
                max_bytes,
            } => {
                let mut page = ScanPage::default();
                let mut bytes = 0usize;
                let live = self
                    .key_history
                    .keys()
                    .filter(|key| key.starts_with(prefix) && *key >= start)
                    .filter_map(|key| self.value_at(key, index).map(|value| (key, value)));
                for (key, value) in live {
                    let size = key.len() + value.len();
                    if page.pairs.len() >= *limit
                        || (!page.pairs.is_empty() && bytes + size > *max_bytes)
                    {
                        page.next = Some(key.clone());
                        break;
                    }
                    bytes += size;
                    page.pairs.push((key.clone(), value.to_vec()));
                }
                KvQueryResult::Pairs(page)
            }
        };
        if *result != expected {
            return Err(format!(
                "{query:?} returned {result:?}, the state at {index} gives {expected:?}"
            ));
        }
        Ok(())
    }
}

/// The operations for the Wing–Gong checker.
#[derive(Debug, Default)]
pub struct KvHistory {
    operations: Vec<Operation>,
}

impl History<KvStore> for KvHistory {
    fn write(&mut self, client: u64, call_us: u64, ret_us: Option<u64>, command: &KvCommand) {
        let operation = match (&command.operation, ret_us) {
            (Some(KvOperation::Put(put)), Some(ret)) => {
                Operation::put(client, call_us, ret, put.key.to_vec(), put.value.to_vec())
            }
            (Some(KvOperation::Put(put)), None) => {
                Operation::put_unknown(client, call_us, put.key.to_vec(), put.value.to_vec())
            }
            (Some(KvOperation::Delete(delete)), Some(ret)) => {
                Operation::delete(client, call_us, ret, delete.key.to_vec())
            }
            (Some(KvOperation::Delete(delete)), None) => {
                Operation::delete_unknown(client, call_us, delete.key.to_vec())
            }
            (None, _) => return,
        };
        self.operations.push(operation);
    }

    fn read(
        &mut self,
        client: u64,
        call_us: u64,
        ret_us: u64,
        query: &KvQuery,
        result: &KvQueryResult,
    ) {
        let (KvQuery::Get(key), KvQueryResult::Value(value)) = (query, result) else {
            return;
        };
        self.operations.push(match value {
            Some(value) => Operation::get(client, call_us, ret_us, key.clone(), value.clone()),
            None => Operation::get_none(client, call_us, ret_us, key.clone()),
        });
    }

    fn len(&self) -> usize {
        self.operations.len()
    }

    fn check(&self) -> Result<(), String> {
        match check_with_budget(
            &self.operations,
            Budget::steps(LINEARIZABILITY_BUDGET_STEPS),
        ) {
            CheckResult::Ok => Ok(()),
            other => Err(format!(
                "linearizability ({} operations): {other}",
                self.operations.len()
            )),
        }
    }
}
