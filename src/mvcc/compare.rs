//! Txn compares, by etcd's rule: every live key of the compared range must
//! satisfy it; if none is live, the compare is made against a key of zero
//! values (version, revisions and lease 0), except that a value compare
//! on a missing key is always false (a missing value cannot be told from
//! an empty one).

use super::MvccStore;
use super::span::KeySpan;
use super::types::{Compare, CompareResult, CompareTarget, KeyValue};
use std::cmp::Ordering;

impl MvccStore {
    /// Whether `compare` holds at the current revision.
    pub(crate) fn compare_holds(&self, compare: &Compare) -> bool {
        let span = KeySpan::new(&compare.key, &compare.range_end);
        let mut any = false;
        for (key, history) in span.entries(&self.keys) {
            let Some(record) = history.live_at(self.current) else {
                continue;
            };
            any = true;
            if !holds(compare, &record.key_value(key)) {
                return false;
            }
        }
        match (any, &compare.target) {
            (true, _) => true,
            (false, CompareTarget::Value(_)) => false,
            (false, _) => holds(compare, &KeyValue::default()),
        }
    }
}

/// Whether one key's state satisfies `compare`.
fn holds(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}
