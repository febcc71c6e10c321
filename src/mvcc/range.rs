//! Reads: a key or range at a revision, in etcd's apply order — fetch (the
//! limit pushed down only without sort order and filters), filter by
//! mod/create revision, sort, truncate to the limit.

use super::MvccStore;
use super::error::MvccError;
use super::span::KeySpan;
use super::types::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};
use std::cmp::Ordering;

impl MvccStore {
    /// The revision a read asking for `requested` uses, when "now" is
    /// `view`: 0 or below means `view`; above it is a future revision;
    /// below the compacted revision is compacted (at it is fine).
    pub(crate) fn read_revision(&self, requested: i64, view: i64) -> Result<i64, MvccError> {
        if requested > view {
            return Err(MvccError::FutureRevision);
        }
        let revision = if requested <= 0 { view } else { requested };
        if revision < self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        Ok(revision)
    }

    /// A read as of `view` (the current revision, or a write
    /// transaction's own); the response carries `view` as its revision.
    pub(crate) fn range_in_view(
        &self,
        request: &RangeRequest,
        view: i64,
    ) -> Result<RangeResponse, MvccError> {
        let revision = self.read_revision(request.revision, view)?;
        let (mut kvs, count) = self.fetch(request, revision);
        filter(&mut kvs, request);
        sort(&mut kvs, request);
        let limit = positive(request.limit);
        let more = limit.is_some_and(|l| kvs.len() > l);
        if let Some(l) = limit {
            kvs.truncate(l);
        }
        if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value = Default::default());
        }
        Ok(RangeResponse {
            kvs,
            count,
            more,
            revision: view,
        })
    }

    /// The live keys of the range at `revision` (at most `limit + 1` of
    /// them when the limit may be pushed down, none for `count_only`) and
    /// how many there are in all.
    fn fetch(&self, request: &RangeRequest, revision: i64) -> (Vec<KeyValue>, i64) {
        let span = KeySpan::new(&request.key, &request.range_end);
        let keep = fetch_limit(request);
        let mut kvs = Vec::new();
        let mut count = 0;
        for (key, history) in span.entries(&self.keys) {
            let Some(record) = history.live_at(revision) else {
                continue;
            };
            count += 1;
            if keep.is_none_or(|k| kvs.len() < k) {
                kvs.push(record.key_value(key));
            }
        }
        (kvs, count)
    }
}

/// How many keys to materialise: etcd fetches `limit + 1` (one more tells
/// `more`) only when no sort order and no filter is asked, everything
/// otherwise; nothing for `count_only`.
fn fetch_limit(request: &RangeRequest) -> Option<usize> {
    if request.count_only {
        return Some(0);
    }
    let filtered = request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    if request.sort_order != SortOrder::None || filtered {
        return None;
    }
    positive(request.limit).map(|l| l.saturating_add(1))
}

/// A limit as a count; 0 and negative mean none.
fn positive(limit: i64) -> Option<usize> {
    usize::try_from(limit).ok().filter(|&l| l > 0)
}

/// Drops the keys outside the mod/create revision bounds (0: no bound).
fn filter(kvs: &mut Vec<KeyValue>, r: &RangeRequest) {
    let within =
        |value: i64, min: i64, max: i64| (max == 0 || value <= max) && (min == 0 || value >= min);
    kvs.retain(|kv| {
        within(kv.mod_revision, r.min_mod_revision, r.max_mod_revision)
            && within(
                kv.create_revision,
                r.min_create_revision,
                r.max_create_revision,
            )
    });
}

/// Sorts as etcd does: a target other than the key with no order means
/// ascending. The sort is stable (ties stay in key order) where etcd's Go
/// sort is not, so that every member answers alike.
fn sort(kvs: &mut [KeyValue], r: &RangeRequest) {
    let order = match (r.sort_order, r.sort_target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match r.sort_target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        _ => kvs.sort_by(by),
    }
}
