//! Replaying history for watchers: the events of a key range from a start
//! revision to now, rebuilt from the stored versions (each with the key's
//! previous state), in revision order.

use super::MvccStore;
use super::error::MvccError;
use super::history::Record;
use super::span::KeySpan;
use super::types::{Event, EventKind};
use bytes::Bytes;

impl MvccStore {
    /// Every change to `[key, range_end)` (rules of
    /// [`super::RangeRequest::range_end`]) at revisions >= `start_revision`,
    /// in (main, sub) revision order. Fails with `Compacted` when the store
    /// was compacted at or after `start_revision` (the events at the
    /// compacted revision may be partly gone: a deletion there is). A start
    /// of 0 or below replays everything kept.
    pub fn events_since(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Vec<Event>, MvccError> {
        if self.compacted > 0 && start_revision <= self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        let span = KeySpan::new(key, range_end);
        let mut found: Vec<(i64, i64, Event)> = Vec::new();
        for (key, history) in span.entries(&self.keys) {
            let records = history.records();
            for i in history.first_from(start_revision)..records.len() {
                let record = &records[i];
                found.push((record.main, record.sub, event(key, records, i)));
            }
        }
        found.sort_by_key(|(main, sub, _)| (*main, *sub));
        Ok(found.into_iter().map(|(_, _, e)| e).collect())
    }
}

/// The event of `records[i]`, with the version before it as `prev_kv` when
/// that one is live.
fn event(key: &Bytes, records: &[Record], i: usize) -> Event {
    let record = &records[i];
    let prev_kv = i
        .checked_sub(1)
        .map(|p| &records[p])
        .filter(|p| !p.tombstone)
        .map(|p| p.key_value(key));
    Event {
        kind: if record.tombstone {
            EventKind::Delete
        } else {
            EventKind::Put
        },
        kv: record.key_value(key),
        prev_kv,
    }
}
