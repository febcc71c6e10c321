//! The node's framing of the data of the entries it proposes: which node
//! and request a command came from, so that the apply actor can answer the
//! waiting caller when the entry applies.
//!
//! Owns: [`RequestId`], the proposal header, the context of a
//! membership change ([`member_context`]), and the record a member
//! publishes of itself ([`MemberAttributes`]).
//!
//! Guarantees: the data of a proposal is
//!
//! | bytes | field | meaning |
//! | --- | --- | --- |
//! | 1 | tag | `0x01`, a proposal framed by this module |
//! | 1–10 | origin node | uvarint, the proposing node's id |
//! | 1–10 | request sequence | uvarint, the node's per-boot sequence |
//! | rest | command | the state machine's encoding of the command |
//!
//! Data that does not start with the tag carries no request id and is the
//! command as it is: entries written by other tools, and entries of earlier
//! ringraft versions, whose key-value commands carried the id as protobuf
//! fields 14 and 15 at their end (a protobuf message never starts with
//! `0x01`, which would be field 0; the key-value codec skips the trailing
//! fields). A tagged header that does not decode is refused alike on every
//! member. Sequences start from the wall clock in nanoseconds, so ids of a
//! previous life of the node (replayed after a restart) do not collide with
//! new ones.
//!
//! A membership change carries the same id, and the new members' peer
//! addresses, in its `context` (a small protobuf, [`member_context`]).
//!
//! A member's attributes (its client URL, for every member's directory, as
//! etcd's members publish theirs) travel as a normal entry whose data is
//!
//! | bytes | field | meaning |
//! | --- | --- | --- |
//! | 1 | tag | `0x02`, a member's attributes |
//! | rest | attributes | protobuf [`MemberAttributes`]: node id (1), client URL (2) |
//!
//! The node applies such an entry itself; it never reaches the state
//! machine (a proposal of a command always starts with `0x01`, and a
//! protobuf message never starts with `0x02`, field 0).
//!
//! May not touch: the meaning of the command (the state machine's).

use prost::Message as _;
use prost::encoding::{decode_varint, encode_varint};

/// The first byte of a proposal framed by this module.
pub const PROPOSAL_TAG: u8 = 0x01;

/// The first byte of a member's attributes record.
pub const ATTRIBUTES_TAG: u8 = 0x02;

/// What a member publishes of itself through the log.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemberAttributes {
    /// The member.
    #[prost(uint64, tag = "1")]
    pub node_id: u64,
    /// Where its clients connect (`scheme://host:port`; empty: none).
    #[prost(string, tag = "2")]
    pub client_url: String,
}

/// The data of an entry publishing `attributes`.
pub fn attributes_record(attributes: &MemberAttributes) -> Vec<u8> {
    let mut data = vec![ATTRIBUTES_TAG];
    data.extend_from_slice(&attributes.encode_to_vec());
    data
}

/// The attributes an entry's data publishes: `None` when the data is not
/// such a record, an error when it is one that does not decode.
pub fn attributes_of(data: &[u8]) -> Option<Result<MemberAttributes, HeaderError>> {
    let (&ATTRIBUTES_TAG, rest) = data.split_first()? else {
        return None;
    };
    Some(MemberAttributes::decode(rest).map_err(|error| HeaderError {
        reason: format!("member attributes: {error}"),
    }))
}

/// Who proposed an entry: the node and its request sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// The proposing node.
    pub node_id: u64,
    /// The node's sequence number for the request.
    pub seq: u64,
}

/// A proposal's data, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal<'a> {
    /// The request id, when the data carries one.
    pub id: Option<RequestId>,
    /// The encoded command.
    pub command: &'a [u8],
}

/// A tagged header that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proposal header does not decode: {reason}")]
pub struct HeaderError {
    /// What was wrong.
    pub reason: String,
}

/// Starts the data of a proposal by request `id`: the header, with room
/// for a command of about `command_capacity` bytes to be appended.
pub fn proposal_header(id: RequestId, command_capacity: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + 20 + command_capacity);
    data.push(PROPOSAL_TAG);
    encode_varint(id.node_id, &mut data);
    encode_varint(id.seq, &mut data);
    data
}

/// Splits an entry's data into its request id and command.
pub fn split(data: &[u8]) -> Result<Proposal<'_>, HeaderError> {
    let Some((&PROPOSAL_TAG, mut rest)) = data.split_first() else {
        return Ok(Proposal {
            id: None,
            command: data,
        });
    };
    let mut field = |name: &str| {
        decode_varint(&mut rest).map_err(|error| HeaderError {
            reason: format!("{name}: {error}"),
        })
    };
    let node_id = field("origin node")?;
    let seq = field("request sequence")?;
    Ok(Proposal {
        id: (node_id != 0).then_some(RequestId { node_id, seq }),
        command: rest,
    })
}

/// The request id carried by an entry's data, if any.
pub fn request_id(data: &[u8]) -> Option<RequestId> {
    split(data).ok().and_then(|proposal| proposal.id)
}

/// What a membership change carries in its context.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct MemberContext {
    /// The peer address of the one member a single change adds.
    #[prost(string, tag = "1")]
    peer_url: String,
    /// The proposing node (0: none).
    #[prost(uint64, tag = "14")]
    origin_node: u64,
    /// The proposing node's request sequence.
    #[prost(uint64, tag = "15")]
    request_seq: u64,
    /// The peer addresses of the members a change of several adds.
    #[prost(message, repeated, tag = "2")]
    peers: Vec<PeerAddress>,
}

/// One added member's address in a membership change's context.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct PeerAddress {
    #[prost(uint64, tag = "1")]
    node_id: u64,
    #[prost(string, tag = "2")]
    peer_url: String,
}

/// The context of a membership change proposed by request `id`, adding
/// the members in `peers` (id, peer address; the address may be empty
/// when not known or not needed).
pub fn member_context(peers: &[(u64, String)], id: RequestId) -> Vec<u8> {
    let context = MemberContext {
        peer_url: match peers {
            [(_, url)] => url.clone(),
            _ => String::new(),
        },
        origin_node: id.node_id,
        request_seq: id.seq,
        peers: peers
            .iter()
            .map(|(node_id, peer_url)| PeerAddress {
                node_id: *node_id,
                peer_url: peer_url.clone(),
            })
            .collect(),
    };
    context.encode_to_vec()
}

/// The request id a membership change's context carries, if any.
pub fn member_request_id(context: &[u8]) -> Option<RequestId> {
    let context = MemberContext::decode(context).ok()?;
    (context.origin_node != 0).then_some(RequestId {
        node_id: context.origin_node,
        seq: context.request_seq,
    })
}

/// The peer address a membership change's context announces for member
/// `node_id` (empty when it has none or does not decode: another writer's
/// change).
pub fn member_peer_url(context: &[u8], node_id: u64) -> String {
    let Ok(context) = MemberContext::decode(context) else {
        return String::new();
    };
    if let Some(peer) = context.peers.iter().find(|p| p.node_id == node_id) {
        return peer.peer_url.clone();
    }
    // A single change written before the list existed names no id.
    if context.peers.is_empty() {
        return context.peer_url;
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_proposal_splits_into_id_and_command() {
        let id = RequestId {
            node_id: 3,
            seq: 1 << 60,
        };
        let mut data = proposal_header(id, 3);
        data.extend_from_slice(b"cmd");
        let proposal = split(&data).expect("decodes");
        assert_eq!(proposal.id, Some(id));
        assert_eq!(proposal.command, b"cmd");
        assert_eq!(request_id(&data), Some(id));
    }

    #[test]
    fn untagged_data_is_the_command_without_id() {
        // A key-value command of an earlier version: field 1, then the id
        // as fields 14 and 15.
        let legacy = [0x0a, 0x02, 0x0a, 0x00, 0x70, 0x03, 0x78, 0x09];
        let proposal = split(&legacy).expect("untagged");
        assert_eq!(proposal.id, None);
        assert_eq!(proposal.command, &legacy[..]);
        assert_eq!(split(&[]).expect("empty").command, b"");
    }

    #[test]
    fn a_truncated_header_is_refused() {
        assert!(split(&[PROPOSAL_TAG]).is_err());
        assert!(split(&[PROPOSAL_TAG, 0x05, 0xff]).is_err());
    }

    #[test]
    fn member_context_carries_id_and_addresses() {
        let id = RequestId { node_id: 2, seq: 9 };
        let context = member_context(&[(4, "127.0.0.1:7380".to_string())], id);
        assert_eq!(member_request_id(&context), Some(id));
        assert_eq!(member_peer_url(&context, 4), "127.0.0.1:7380");
        let several = member_context(&[(4, "a:1".to_string()), (5, "b:2".to_string())], id);
        assert_eq!(member_peer_url(&several, 5), "b:2");
        assert_eq!(member_peer_url(&several, 6), "");
        assert_eq!(member_peer_url(&[0xff], 4), "");
        assert_eq!(member_request_id(&[0xff]), None);
    }
}
