//! Pins the encodings of the wire and disk types to hand-checked bytes, so a
//! change that breaks compatibility with etcd's files fails here.

use super::*;
use prost::Message as _;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn hard_state_encodes_like_etcd() {
    let hs = HardState {
        term: 1,
        vote: 2,
        commit: 3,
    };
    assert_eq!(hex(&hs.encode_to_vec()), "08 01 10 02 18 03");
}

#[test]
fn zero_hard_state_still_encodes_every_field() {
    // gogoproto marshals non-nullable proto2 fields even when zero.
    assert_eq!(
        hex(&HardState::default().encode_to_vec()),
        "08 00 10 00 18 00"
    );
}

#[test]
fn entry_encodes_like_etcd() {
    let e = Entry::new(1, 2, b"ab".to_vec());
    assert_eq!(hex(&e.encode_to_vec()), "08 00 10 01 18 02 22 02 61 62");
}

#[test]
fn entry_without_data_omits_data_field() {
    let e = Entry::new(1, 2, Vec::new());
    assert_eq!(hex(&e.encode_to_vec()), "08 00 10 01 18 02");
}

#[test]
fn conf_change_entry_with_multibyte_term() {
    let e = Entry {
        entry_type: EntryType::EntryConfChange as i32,
        term: 300,
        index: 1,
        data: Vec::new().into(),
    };
    assert_eq!(hex(&e.encode_to_vec()), "08 01 10 ac 02 18 01");
}

#[test]
fn message_encodes_like_etcd() {
    let m = Message {
        msg_type: MessageType::MsgApp as i32,
        to: 2,
        from: 1,
        term: 5,
        log_term: 4,
        index: 10,
        entries: vec![Entry::new(5, 11, b"x".to_vec())],
        commit: 9,
        ..Default::default()
    };
    assert_eq!(
        hex(&m.encode_to_vec()),
        "08 03 10 02 18 01 20 05 28 04 30 0a \
         3a 09 08 00 10 05 18 0b 22 01 78 \
         40 09 50 00 58 00 68 00"
    );
}

#[test]
fn message_with_snapshot_and_context_round_trips() {
    let m = Message {
        msg_type: MessageType::MsgSnap as i32,
        to: 3,
        from: 1,
        term: 7,
        snapshot: Some(Snapshot {
            data: vec![1, 2, 3],
            metadata: SnapshotMetadata {
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    ..Default::default()
                },
                index: 100,
                term: 6,
            },
        }),
        context: b"ctx".to_vec(),
        responses: vec![Message {
            msg_type: MessageType::MsgAppResp as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let decoded = Message::decode(m.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, m);
    assert_eq!(decoded.msg_type(), MessageType::MsgSnap);
}

#[test]
fn message_type_values_are_etcds() {
    let expected = [
        (MessageType::MsgHup, 0),
        (MessageType::MsgBeat, 1),
        (MessageType::MsgProp, 2),
        (MessageType::MsgApp, 3),
        (MessageType::MsgAppResp, 4),
        (MessageType::MsgVote, 5),
        (MessageType::MsgVoteResp, 6),
        (MessageType::MsgSnap, 7),
        (MessageType::MsgHeartbeat, 8),
        (MessageType::MsgHeartbeatResp, 9),
        (MessageType::MsgUnreachable, 10),
        (MessageType::MsgSnapStatus, 11),
        (MessageType::MsgCheckQuorum, 12),
        (MessageType::MsgTransferLeader, 13),
        (MessageType::MsgTimeoutNow, 14),
        (MessageType::MsgReadIndex, 15),
        (MessageType::MsgReadIndexResp, 16),
        (MessageType::MsgPreVote, 17),
        (MessageType::MsgPreVoteResp, 18),
        (MessageType::MsgStorageAppend, 19),
        (MessageType::MsgStorageAppendResp, 20),
        (MessageType::MsgStorageApply, 21),
        (MessageType::MsgStorageApplyResp, 22),
        (MessageType::MsgForgetLeader, 23),
    ];
    for (ty, value) in expected {
        assert_eq!(ty as i32, value, "{ty:?}");
        assert_eq!(MessageType::try_from(value), Ok(ty));
    }
    assert!(MessageType::try_from(24).is_err());
}

#[test]
fn unknown_message_type_decodes_but_is_detectable() {
    // A peer of a newer version may send a type we do not know: decoding must
    // not fail or panic, and the caller must be able to tell.
    let bytes = [0x08, 0x63, 0x10, 0x01];
    let m = Message::decode(&bytes[..]).expect("decodes");
    assert_eq!(m.msg_type, 99);
    assert!(MessageType::try_from(m.msg_type).is_err());
}

#[test]
fn conf_state_repeated_fields_are_unpacked() {
    let cs = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..Default::default()
    };
    assert_eq!(hex(&cs.encode_to_vec()), "08 01 08 02 08 03 10 04 28 00");
}

#[test]
fn conf_state_decodes_packed_voters_too() {
    // Field 1, wire type 2 (packed): 0a 03 01 02 03.
    let cs = ConfState::decode(&[0x0a, 0x03, 0x01, 0x02, 0x03][..]).expect("decodes");
    assert_eq!(cs.voters, vec![1, 2, 3]);
}

#[test]
fn snapshot_encodes_metadata_even_without_data() {
    let s = Snapshot {
        data: Vec::new(),
        metadata: SnapshotMetadata {
            conf_state: ConfState {
                voters: vec![1],
                ..Default::default()
            },
            index: 10,
            term: 2,
        },
    };
    assert_eq!(
        hex(&s.encode_to_vec()),
        "12 0a 0a 04 08 01 28 00 10 0a 18 02"
    );
}

#[test]
fn wal_record_encodes_like_etcd() {
    let r = walpb::Record {
        record_type: 2,
        crc: 0x1234_5678,
        data: vec![1, 2],
    };
    assert_eq!(
        hex(&r.encode_to_vec()),
        "08 02 10 f8 ac d1 91 01 1a 02 01 02"
    );
}

#[test]
fn wal_crc_record_without_data() {
    let r = walpb::Record {
        record_type: 4,
        crc: 0,
        data: Vec::new(),
    };
    assert_eq!(hex(&r.encode_to_vec()), "08 04 10 00");
}

#[test]
fn wal_snapshot_without_conf_state() {
    let s = walpb::Snapshot {
        index: 5,
        term: 1,
        conf_state: None,
    };
    assert_eq!(hex(&s.encode_to_vec()), "08 05 10 01");
}

#[test]
fn snap_file_payload_encodes_like_etcd() {
    let s = snappb::Snapshot {
        crc: 7,
        data: vec![9],
    };
    assert_eq!(hex(&s.encode_to_vec()), "08 07 12 01 09");
}

#[test]
fn metadata_encodes_like_etcd() {
    let m = Metadata {
        node_id: 1,
        cluster_id: 0x1000,
    };
    assert_eq!(hex(&m.encode_to_vec()), "08 01 10 80 20");
}

#[test]
fn conf_change_v2_round_trips() {
    let cc = ConfChangeV2 {
        transition: ConfChangeTransition::ConfChangeTransitionJointExplicit as i32,
        changes: vec![
            ConfChangeSingle {
                change_type: ConfChangeType::ConfChangeAddNode as i32,
                node_id: 4,
            },
            ConfChangeSingle {
                change_type: ConfChangeType::ConfChangeRemoveNode as i32,
                node_id: 2,
            },
        ],
        context: b"c".to_vec(),
    };
    assert_eq!(
        hex(&cc.encode_to_vec()),
        "08 02 12 04 08 00 10 04 12 04 08 01 10 02 1a 01 63"
    );
    assert_eq!(ConfChangeV2::decode(cc.encode_to_vec().as_slice()), Ok(cc));
}

#[test]
fn conf_change_encodes_like_etcd() {
    let cc = ConfChange {
        id: 1,
        change_type: ConfChangeType::ConfChangeAddLearnerNode as i32,
        node_id: 5,
        context: Vec::new(),
    };
    assert_eq!(hex(&cc.encode_to_vec()), "08 01 10 03 18 05");
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    // 08 00 | 10 01 | 18 02 | 22 06 61 62 63 64 65 66: cuts at the field
    // boundaries 2, 4 and 6 are valid (shorter) messages; every other cut
    // lands inside a field and must be refused.
    let e = Entry::new(1, 2, b"abcdef".to_vec()).encode_to_vec();
    for cut in 1..e.len() {
        let result = Entry::decode(&e[..cut]);
        if [2, 4, 6].contains(&cut) {
            assert!(result.is_ok(), "cut at field boundary {cut}: {result:?}");
        } else {
            assert!(result.is_err(), "cut at {cut} decoded as {result:?}");
        }
    }
}
