//! How a watch's events are cut into responses: a history catch-up into
//! responses of at most [`HISTORY_REVISIONS_PER_RESPONSE`] revisions, and,
//! for a watch that asked for `fragment`, a response too large for one
//! message into fragments.
//!
//! Owns: where the cuts fall. Guarantees: every event is in exactly one
//! piece, in the order given; a history piece never splits the events of
//! one revision (a client that does not reassemble sees whole
//! transactions); a fragment holds at least one event, so one event larger
//! than the limit still goes, alone. May not touch: which events a watch
//! gets (the watch service's).

use super::pb::mvccpb::Event;
use prost::Message;

/// Revisions of history sent in one response at most (etcd's
/// `watchBatchMaxRevs`): a watch from an old revision on a long history
/// gets it in many bounded messages, not one that may pass what the
/// client accepts.
pub const HISTORY_REVISIONS_PER_RESPONSE: usize = 1000;

/// The size a response may reach before a watch that asked for
/// `fragment` gets it in pieces: etcd's default `--max-request-bytes`
/// (1.5 MiB), which is what etcd fragments at.
pub const FRAGMENT_BYTES: usize = 1536 * 1024;

/// `events` (in revision order) in pieces of at most `max_revisions`
/// distinct mod revisions each.
pub fn by_revisions(events: Vec<Event>, max_revisions: usize) -> Vec<Vec<Event>> {
    let max_revisions = max_revisions.max(1);
    let mut pieces: Vec<Vec<Event>> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut revisions_in_current = 0;
    let mut last_revision = None;
    for event in events {
        let revision = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        if last_revision != Some(revision) {
            if revisions_in_current == max_revisions {
                pieces.push(std::mem::take(&mut current));
                revisions_in_current = 0;
            }
            revisions_in_current += 1;
            last_revision = Some(revision);
        }
        current.push(event);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// `events` in fragments whose encoded events stay within `limit_bytes`
/// (each holds at least one event). One piece when they all fit.
pub fn fragments(events: Vec<Event>, limit_bytes: usize) -> Vec<Vec<Event>> {
    let mut pieces: Vec<Vec<Event>> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut current_bytes = 0;
    for event in events {
        // The field's tag and length prefix are part of the message too.
        let bytes = event.encoded_len() + 10;
        if !current.is_empty() && current_bytes + bytes > limit_bytes {
            pieces.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(event);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::pb::mvccpb::KeyValue;

    fn event(revision: i64, value_bytes: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: format!("k{revision}").into_bytes().into(),
                mod_revision: revision,
                value: vec![b'v'; value_bytes].into(),
                ..KeyValue::default()
            }),
            ..Event::default()
        }
    }

    fn revisions(pieces: &[Vec<Event>]) -> Vec<Vec<i64>> {
        pieces
            .iter()
            .map(|piece| {
                piece
                    .iter()
                    .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn history_is_cut_between_revisions_never_inside_one() {
        // Revision 3 holds three events (one transaction).
        let events = [2, 3, 3, 3, 4, 5].map(|r| event(r, 1)).to_vec();
        let pieces = by_revisions(events, 2);
        assert_eq!(revisions(&pieces), vec![vec![2, 3, 3, 3], vec![4, 5]]);
        let pieces = by_revisions([2, 3, 4].map(|r| event(r, 1)).to_vec(), 1);
        assert_eq!(revisions(&pieces), vec![vec![2], vec![3], vec![4]]);
        assert!(by_revisions(Vec::new(), 5).is_empty());
        let pieces = by_revisions([2, 3].map(|r| event(r, 1)).to_vec(), 1000);
        assert_eq!(revisions(&pieces), vec![vec![2, 3]]);
    }

    #[test]
    fn fragments_stay_within_the_limit_and_keep_every_event_once() {
        let events: Vec<Event> = (1..=10).map(|r| event(r, 600)).collect();
        let pieces = fragments(events, 1500);
        assert_eq!(
            revisions(&pieces),
            vec![vec![1, 2], vec![3, 4], vec![5, 6], vec![7, 8], vec![9, 10]]
        );
        for piece in &pieces {
            let bytes: usize = piece.iter().map(|e| e.encoded_len() + 10).sum();
            assert!(bytes <= 1500, "{bytes}");
        }
        // One event over the limit still goes, alone.
        let pieces = fragments(vec![event(1, 10), event(2, 5000), event(3, 10)], 1000);
        assert_eq!(revisions(&pieces), vec![vec![1], vec![2], vec![3]]);
        // Everything fits: one piece.
        let pieces = fragments((1..=3).map(|r| event(r, 10)).collect(), FRAGMENT_BYTES);
        assert_eq!(revisions(&pieces), vec![vec![1, 2, 3]]);
    }
}
