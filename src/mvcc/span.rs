//! The key interval a request names with `key` and `range_end`, by etcd's
//! rule: an empty `range_end` is the single key, `[0]` is every key >=
//! `key` (so `key = [0], range_end = [0]` is every key), anything else the
//! half-open interval `[key, range_end)` (empty if `range_end <= key`).

use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A key interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// Exactly one key.
    Single(&'a [u8]),
    /// Every key >= the bound.
    From(&'a [u8]),
    /// `[start, end)`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeySpan<'a> {
    /// The interval of `key` and `range_end`.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeySpan<'a> {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::From(key),
            end => KeySpan::Between(key, end),
        }
    }

    /// Whether `k` lies in the interval.
    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeySpan::Single(key) => k == key,
            KeySpan::From(start) => k >= start,
            KeySpan::Between(start, end) => k >= start && k < end,
        }
    }

    /// The entries of `map` whose keys lie in the interval, in key order.
    pub fn entries<'m, V>(
        &self,
        map: &'m BTreeMap<Bytes, V>,
    ) -> Box<dyn Iterator<Item = (&'m Bytes, &'m V)> + 'm> {
        match *self {
            KeySpan::Single(key) => Box::new(map.get_key_value(key).into_iter()),
            KeySpan::From(start) => {
                Box::new(map.range::<[u8], _>((Bound::Included(start), Bound::Unbounded)))
            }
            // BTreeMap::range panics on a reversed interval.
            KeySpan::Between(start, end) if end <= start => Box::new(std::iter::empty()),
            KeySpan::Between(start, end) => {
                Box::new(map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))))
            }
        }
    }
}
