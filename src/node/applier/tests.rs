//! The applier with the key-value store: request ids, skipped entries,
//! gaps, membership, and snapshot framing.

use super::*;
use crate::kv::{KvCommand, KvOutcome, KvStore};
use crate::raftpb::{ConfChange, ConfChangeType};

fn proposal(index: u64, id: RequestId, command: &KvCommand) -> Entry {
    let mut data = envelope::proposal_header(id, 0);
    KvStore::encode_command(command, &mut data);
    Entry::new(1, index, data)
}

fn conf_change_entry(index: u64, cc: &ConfChange) -> Entry {
    Entry {
        entry_type: EntryType::EntryConfChange as i32,
        term: 1,
        index,
        data: cc.encode_to_vec().into(),
    }
}

fn add_member(index: u64, node_id: u64, peer_url: &str) -> Entry {
    let cc = ConfChange {
        change_type: ConfChangeType::ConfChangeAddNode as i32,
        node_id,
        context: envelope::member_context(
            &[(node_id, peer_url.to_string())],
            RequestId { node_id: 1, seq: 1 },
        ),
        ..Default::default()
    };
    conf_change_entry(index, &cc)
}

const ID: RequestId = RequestId { node_id: 1, seq: 7 };

#[test]
fn commands_apply_in_order_and_answer_their_ids() {
    let mut applier = Applier::new(KvStore::new());
    let batch = applier
        .apply(vec![
            Entry::new(1, 1, Vec::new()),
            proposal(2, ID, &KvCommand::put(b"a", b"1")),
            proposal(
                3,
                RequestId { node_id: 2, seq: 1 },
                &KvCommand::delete(b"a"),
            ),
        ])
        .expect("applies");
    assert_eq!(applier.applied_index(), 3);
    assert_eq!(batch.outcomes.len(), 2);
    let (id, index, response) = &batch.outcomes[0];
    assert_eq!((*id, *index), (ID, 2));
    let response = response.as_ref().expect("a response");
    assert_eq!(response.outcome, KvOutcome::Put { replaced: false });
    assert!(
        matches!(&batch.outcomes[1].2, Ok(r) if r.outcome == KvOutcome::Deleted { existed: true })
    );
    assert_eq!(applier.state().get(b"a"), None);
}

#[test]
fn replayed_entries_are_skipped_and_a_gap_is_refused() {
    let mut applier = Applier::new(KvStore::new());
    applier
        .apply(vec![proposal(1, ID, &KvCommand::put(b"a", b"1"))])
        .expect("applies");
    let replay = applier
        .apply(vec![proposal(1, ID, &KvCommand::put(b"a", b"2"))])
        .expect("skipped");
    assert!(replay.outcomes.is_empty());
    assert_eq!(applier.state().get(b"a"), Some(&b"1"[..]));
    let gap = applier.apply(vec![proposal(3, ID, &KvCommand::put(b"b", b"1"))]);
    assert!(matches!(
        gap,
        Err(ApplyError::Gap {
            index: 3,
            applied: 1
        })
    ));
    assert_eq!(applier.applied_index(), 1);
}

#[test]
fn an_undecodable_command_is_skipped_alike_and_its_proposer_told() {
    let mut applier = Applier::new(KvStore::new());
    let mut data = envelope::proposal_header(ID, 0);
    data.extend_from_slice(&[0xff, 0xff, 0xff]);
    let batch = applier
        .apply(vec![Entry::new(1, 1, data), Entry::new(1, 2, vec![0x01])])
        .expect("skipped");
    assert_eq!(applier.applied_index(), 2);
    assert!(applier.state().is_empty());
    assert!(matches!(
        &batch.outcomes[..],
        [(id, 1, Err(NodeError::CommandDecode(_)))] if *id == ID
    ));
}

#[test]
fn legacy_commands_without_a_header_still_apply() {
    // An earlier version appended the request id as protobuf fields 14/15.
    let mut data = KvCommand::put(b"k", b"v").encode_to_vec();
    data.extend_from_slice(&[0x70, 0x03, 0x78, 0x09]);
    let mut applier = Applier::new(KvStore::new());
    let batch = applier
        .apply(vec![Entry::new(1, 1, data)])
        .expect("applies");
    assert!(batch.outcomes.is_empty());
    assert_eq!(applier.state().get(b"k"), Some(&b"v"[..]));
}

#[test]
fn snapshots_carry_state_members_and_index() {
    let mut applier = Applier::new(KvStore::new());
    let batch = applier
        .apply(vec![
            add_member(1, 2, "127.0.0.1:7382"),
            proposal(2, ID, &KvCommand::put(b"a", b"1")),
            proposal(3, ID, &KvCommand::put(b"b", b"2")),
        ])
        .expect("applies");
    assert!(batch.member_added);
    let job = applier.snapshot();
    assert_eq!(job.index(), 3);
    let data = job.into_bytes().expect("written");
    assert_eq!(&data[..4], SNAPSHOT_MAGIC);
    let mut restored = Applier::new(KvStore::new());
    restored.restore(3, &mut data.as_slice()).expect("restores");
    assert_eq!(restored.applied_index(), 3);
    assert_eq!(restored.state(), applier.state());
    assert_eq!(restored.members(), applier.members());
    assert_eq!(
        restored.members().get(&2).map(String::as_str),
        Some("127.0.0.1:7382")
    );
}

#[test]
fn malformed_snapshot_data_is_refused_with_its_reason() {
    let mut applier = Applier::new(KvStore::new());
    applier
        .apply(vec![proposal(1, ID, &KvCommand::put(b"a", b"1"))])
        .expect("applies");
    let data = applier.snapshot().into_bytes().expect("written");
    let mut target = Applier::new(KvStore::new());
    for (bad, what) in [
        (b"XXXX".to_vec(), "short"),
        ([b"NOPE".as_slice(), &data[4..]].concat(), "magic"),
        ([&data[..4], &[9u8], &data[5..]].concat(), "version"),
        (data[..data.len() - 1].to_vec(), "truncated state"),
    ] {
        let refused = target.restore(1, &mut bad.as_slice());
        assert!(refused.is_err(), "{what} was accepted");
        assert_eq!(target.applied_index(), 0, "{what} changed the index");
    }
    assert!(matches!(
        target.restore(2, &mut data.as_slice()),
        Err(ApplyError::SnapshotFormat { index: 2, .. })
    ));
}

fn attributes(index: u64, node_id: u64, client_url: &str) -> Entry {
    let data = envelope::attributes_record(&envelope::MemberAttributes {
        node_id,
        client_url: client_url.to_string(),
    });
    Entry::new(1, index, data)
}

fn remove_member(index: u64, node_id: u64) -> Entry {
    let cc = ConfChange {
        change_type: ConfChangeType::ConfChangeRemoveNode as i32,
        node_id,
        ..Default::default()
    };
    conf_change_entry(index, &cc)
}

#[test]
fn published_client_urls_apply_outside_the_state_machine_and_travel_in_snapshots() {
    let mut applier = Applier::new(KvStore::new());
    let batch = applier
        .apply(vec![
            attributes(1, 1, "http://127.0.0.1:7379"),
            attributes(2, 2, "http://127.0.0.1:7381"),
            proposal(3, ID, &KvCommand::put(b"a", b"1")),
            // A later record replaces the URL.
            attributes(4, 2, "https://10.0.0.2:2379"),
        ])
        .expect("applies");
    assert_eq!(batch.outcomes.len(), 1, "only the command answers");
    assert_eq!(applier.applied_index(), 4);
    let shown = |applier: &Applier<KvStore>| -> Vec<(u64, String)> {
        applier.client_urls().clone().into_iter().collect()
    };
    let expected = vec![
        (1, "http://127.0.0.1:7379".to_string()),
        (2, "https://10.0.0.2:2379".to_string()),
    ];
    assert_eq!(shown(&applier), expected);
    assert_eq!(applier.state().len(), 1, "no record reached the store");

    let data = applier.snapshot().into_bytes().expect("written");
    let mut restored = Applier::new(KvStore::new());
    restored.restore(4, &mut data.as_slice()).expect("restores");
    assert_eq!(shown(&restored), expected);

    // Removing a member forgets its URL; an empty URL unpublishes.
    restored
        .apply(vec![remove_member(5, 2), attributes(6, 1, "")])
        .expect("applies");
    assert!(restored.client_urls().is_empty());
}

#[test]
fn a_malformed_attributes_record_is_skipped_alike() {
    let mut applier = Applier::new(KvStore::new());
    let batch = applier
        .apply(vec![
            Entry::new(1, 1, vec![envelope::ATTRIBUTES_TAG, 0xff, 0xff]),
            attributes(2, 0, "http://nobody:1"),
            proposal(3, ID, &KvCommand::put(b"a", b"1")),
        ])
        .expect("applies");
    assert_eq!(applier.applied_index(), 3);
    assert!(applier.client_urls().is_empty());
    assert_eq!(batch.outcomes.len(), 1);
    assert!(batch.outcomes[0].2.is_ok());
}
