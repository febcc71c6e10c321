//! One write transaction in progress: every change gets the main revision
//! `current + 1` and the next sub-revision, is appended to the key's
//! history at once (so a later read of the same transaction sees it), and
//! yields its event. [`Writer::finish`] bumps the store's revision only if
//! something changed; [`Writer::abort`] takes every change back, so a
//! request that fails midway leaves no trace.

use super::MvccStore;
use super::history::Record;
use super::types::{Event, EventKind, KeyValue};
use bytes::Bytes;

/// The changes of one write transaction, applied to the store as made.
pub(crate) struct Writer<'s> {
    store: &'s mut MvccStore,
    /// The store's revision when the transaction began.
    begin: i64,
    events: Vec<Event>,
    /// Keys changed, in order (for `abort`).
    touched: Vec<Bytes>,
}

impl<'s> Writer<'s> {
    pub fn new(store: &'s mut MvccStore) -> Writer<'s> {
        let begin = store.current;
        Writer {
            store,
            begin,
            events: Vec::new(),
            touched: Vec::new(),
        }
    }

    /// The store as the transaction sees it.
    pub fn store(&self) -> &MvccStore {
        self.store
    }

    /// The revision a read at "now" uses inside the transaction: its own
    /// revision once it changed something (etcd's `beginRev + 1`).
    pub fn view_revision(&self) -> i64 {
        if self.events.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    /// The key's live state as the transaction sees it.
    pub fn live(&self, key: &[u8]) -> Option<KeyValue> {
        let (key, history) = self.store.keys.get_key_value(key)?;
        let latest = history.latest().filter(|r| !r.tombstone)?;
        Some(latest.key_value(key))
    }

    /// Sets `key` (a new generation if it does not exist).
    pub fn put(&mut self, key: &Bytes, value: Bytes, lease: i64) {
        let prev = self.live(key);
        let main = self.begin + 1;
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (main, 1),
        };
        let record = Record {
            main,
            sub: self.events.len() as i64,
            tombstone: false,
            create_revision,
            version,
            lease,
            value,
        };
        if let Some(p) = &prev {
            self.store.leases.detach(p.lease, key);
        }
        self.store.leases.attach(lease, key);
        self.append(key, record, EventKind::Put, prev);
    }

    /// Deletes `key` if it exists; returns whether it did.
    pub fn delete(&mut self, key: &Bytes) -> bool {
        let Some(prev) = self.live(key) else {
            return false;
        };
        let record = Record {
            main: self.begin + 1,
            sub: self.events.len() as i64,
            tombstone: true,
            create_revision: 0,
            version: 0,
            lease: 0,
            value: Bytes::new(),
        };
        self.store.leases.detach(prev.lease, key);
        self.append(key, record, EventKind::Delete, Some(prev));
        true
    }

    fn append(&mut self, key: &Bytes, record: Record, kind: EventKind, prev: Option<KeyValue>) {
        let kv = record.key_value(key);
        self.store.size += record.size(key);
        let history = self.store.keys.entry(key.clone()).or_default();
        history.records_mut().push(record);
        self.touched.push(key.clone());
        self.events.push(Event {
            kind,
            kv,
            prev_kv: prev,
        });
    }

    /// Ends the transaction: the store's revision moves on if anything
    /// changed. Returns the events in revision order.
    pub fn finish(self) -> Vec<Event> {
        if !self.events.is_empty() {
            self.store.current = self.begin + 1;
        }
        self.events
    }

    /// Takes back every change, newest first, restoring sizes and lease
    /// attachments.
    pub fn abort(mut self) {
        let touched = std::mem::take(&mut self.touched);
        for key in touched.iter().rev() {
            self.undo_last(key);
        }
    }

    fn undo_last(&mut self, key: &Bytes) {
        let Some(history) = self.store.keys.get_mut(key) else {
            return;
        };
        let Some(undone) = history.records_mut().pop() else {
            return;
        };
        self.store.size -= undone.size(key);
        self.store.leases.detach(undone.lease, key);
        match history.latest().filter(|r| !r.tombstone) {
            Some(restored) => self.store.leases.attach(restored.lease, key),
            None if history.records().is_empty() => {
                self.store.keys.remove(key);
            }
            None => {}
        }
    }
}
