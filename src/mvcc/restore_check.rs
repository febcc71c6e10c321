//! The rules a restored snapshot must satisfy, checked record by record as
//! they arrive, and the store built from them. They are the store's own
//! invariants: keys in strictly increasing order, each key's versions in
//! increasing revision order starting with a put; versions and create
//! revisions following the generation rules; nothing at or below the
//! compacted revision but a key's first (live) version; every revision
//! above the compacted one present with sub-revisions 0, 1, 2…; nothing
//! above the current revision.

use super::MvccStore;
use super::history::{KeyHistory, Record};
use super::lease_index::LeaseIndex;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// The store under construction.
pub(crate) struct Builder {
    current: i64,
    compacted: i64,
    keys: BTreeMap<Bytes, Vec<Record>>,
    /// The key being filled (the last one received).
    last: Option<(Bytes, Vec<Record>)>,
    revisions: BTreeSet<(i64, i64)>,
    records: u64,
}

impl Builder {
    pub fn new(current: i64, compacted: i64) -> Result<Builder, String> {
        if current < 1 || compacted < 0 || compacted > current {
            return Err(format!(
                "revisions out of order: current {current}, compacted {compacted}"
            ));
        }
        Ok(Builder {
            current,
            compacted,
            keys: BTreeMap::new(),
            last: None,
            revisions: BTreeSet::new(),
            records: 0,
        })
    }

    /// How many version records were accepted.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Accepts the next version record.
    pub fn add(&mut self, key: Bytes, record: Record) -> Result<(), String> {
        if key.is_empty() {
            return Err("empty key".into());
        }
        let same_key = self.last.as_ref().is_some_and(|(k, _)| *k == key);
        if !same_key {
            if self.last.as_ref().is_some_and(|(k, _)| *k > key) {
                return Err("keys not in strictly increasing order".into());
            }
            self.flush();
            self.last = Some((key, Vec::new()));
        }
        let versions = self.last.as_mut().map(|(_, v)| v);
        let prev = versions.as_ref().and_then(|v| v.last());
        check_version(&record, prev, self.current, self.compacted)?;
        if !self.revisions.insert((record.main, record.sub)) {
            return Err(format!(
                "revision {}.{} appears twice",
                record.main, record.sub
            ));
        }
        if let Some(v) = versions {
            v.push(record);
        }
        self.records += 1;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some((key, mut versions)) = self.last.take() {
            // Most keys have one version: without this each list would
            // keep the capacity of four that a push gives.
            versions.shrink_to_fit();
            self.keys.insert(key, versions);
        }
    }

    /// Checks the end frame's counts and the revision sequence; builds the
    /// store.
    pub fn finish(mut self, records: u64, keys: u64) -> Result<MvccStore, String> {
        self.flush();
        if records != self.records || keys != self.keys.len() as u64 {
            return Err(format!(
                "end frame counts {records} records and {keys} keys, the snapshot holds {} and {}",
                self.records,
                self.keys.len()
            ));
        }
        self.check_sequence()?;
        Ok(self.build())
    }

    /// Every revision above the compacted one (and above 1, the fresh
    /// store's) up to the current one has sub-revisions 0, 1, 2… and
    /// nothing else.
    fn check_sequence(&self) -> Result<(), String> {
        let floor = self.compacted.max(1);
        let mut next = (floor + 1, 0);
        for &(main, sub) in self.revisions.range((floor + 1, i64::MIN)..) {
            let same_txn = (main, sub) == next;
            let next_txn = next.1 > 0 && (main, sub) == (next.0 + 1, 0);
            if !(same_txn || next_txn) {
                return Err(format!(
                    "revision {main}.{sub} found where {}.{} was due",
                    next.0, next.1
                ));
            }
            next = (main, sub + 1);
        }
        if self.current > floor && (next.0 != self.current || next.1 == 0) {
            return Err(format!(
                "no record at the current revision {}",
                self.current
            ));
        }
        Ok(())
    }

    fn build(self) -> MvccStore {
        let mut store = MvccStore::new();
        store.current = self.current;
        store.compacted = self.compacted;
        let mut leases = LeaseIndex::default();
        for (key, versions) in self.keys {
            store.size += versions.iter().map(|r| r.size(&key)).sum::<u64>();
            if let Some(live) = versions.last().filter(|r| !r.tombstone) {
                leases.attach(live.lease, &key);
            }
            store.keys.insert(key, KeyHistory::from_records(versions));
        }
        store.leases = leases;
        store
    }
}

/// The rules for one version given the key's previous one.
fn check_version(
    r: &Record,
    prev: Option<&Record>,
    current: i64,
    compacted: i64,
) -> Result<(), String> {
    if r.main < 2 || r.main > current || r.sub < 0 {
        return Err(format!(
            "revision {}.{} outside 2..={current}",
            r.main, r.sub
        ));
    }
    if let Some(p) = prev {
        if r.main <= p.main {
            return Err(format!(
                "revision {} not above the key's previous {}",
                r.main, p.main
            ));
        }
        if r.main <= compacted {
            return Err(format!(
                "second version at {} at or below the compacted revision {compacted}",
                r.main
            ));
        }
    }
    if r.tombstone {
        return check_tombstone(r, prev);
    }
    check_put(r, prev)
}

fn check_tombstone(r: &Record, prev: Option<&Record>) -> Result<(), String> {
    if r.create_revision != 0 || r.version != 0 || r.lease != 0 || !r.value.is_empty() {
        return Err("tombstone with a value, version, lease or create revision".into());
    }
    match prev {
        Some(p) if !p.tombstone => Ok(()),
        _ => Err("tombstone of a key that does not exist".into()),
    }
}

fn check_put(r: &Record, prev: Option<&Record>) -> Result<(), String> {
    let (create, version) = (r.create_revision, r.version);
    let fine = match prev {
        // The first kept version: its generation may have begun earlier.
        None => {
            version >= 1
                && create >= 1
                && create <= r.main
                && ((version == 1) == (create == r.main))
        }
        Some(p) if p.tombstone => version == 1 && create == r.main,
        Some(p) => p.version.checked_add(1) == Some(version) && create == p.create_revision,
    };
    if fine {
        return Ok(());
    }
    Err(format!(
        "version {version} with create revision {create} at revision {} does not follow the key's history",
        r.main
    ))
}
