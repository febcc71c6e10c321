//! The request id a node attaches to the entries it proposes, so that the
//! apply actor can complete the waiting caller when the entry applies.
//!
//! Owns: [`RequestId`] and its encoding inside an entry's data.
//!
//! Guarantees: the id travels as two extra protobuf fields (tags 14 and 15)
//! appended to the encoded [`crate::kv::KvCommand`]. Protobuf decoders skip
//! unknown fields, so `KvStore::apply` sees exactly the command and applies
//! it the same way on every member; an entry without the fields (written by
//! another tool, or a leader's empty entry) simply has no id. An id names
//! the proposing node and a per-boot sequence that starts from the wall
//! clock in nanoseconds, so ids of a previous life of the node (replayed
//! after a restart) do not collide with new ones.
//!
//! A membership change carries the same id, and the new member's peer
//! address, in its `context` ([`member_context`]).
//!
//! May not touch: the state machine's meaning of the command.

use prost::Message as _;

/// Who proposed an entry: the node and its request sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// The proposing node.
    pub node_id: u64,
    /// The node's sequence number for the request.
    pub seq: u64,
}

/// The fields appended to a command (tags chosen clear of `KvCommand`'s).
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct Envelope {
    #[prost(uint64, tag = "14")]
    origin_node: u64,
    #[prost(uint64, tag = "15")]
    request_seq: u64,
}

/// `command` (an encoded `KvCommand`) with `id` appended.
pub fn wrap(mut command: Vec<u8>, id: RequestId) -> Vec<u8> {
    let envelope = Envelope {
        origin_node: id.node_id,
        request_seq: id.seq,
    };
    // Encoding into a Vec cannot run out of space.
    command.extend_from_slice(&envelope.encode_to_vec());
    command
}

/// The request id carried by an entry's data, if any (data that does not
/// decode carries none).
pub fn request_id(data: &[u8]) -> Option<RequestId> {
    let envelope = Envelope::decode(data).ok()?;
    (envelope.origin_node != 0).then_some(RequestId {
        node_id: envelope.origin_node,
        seq: envelope.request_seq,
    })
}

/// What a membership change carries in its context besides the request
/// id.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct MemberContext {
    #[prost(string, tag = "1")]
    peer_url: String,
}

/// The context of a membership change proposed by request `id` for a
/// member reachable at `peer_url` (empty when not known or not needed).
pub fn member_context(peer_url: &str, id: RequestId) -> Vec<u8> {
    let context = MemberContext {
        peer_url: peer_url.to_string(),
    };
    wrap(context.encode_to_vec(), id)
}

/// The peer address a membership change's context announces (empty when
/// it has none or does not decode: another writer's change).
pub fn member_peer_url(context: &[u8]) -> String {
    MemberContext::decode(context)
        .map(|context| context.peer_url)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{ApplyOutcome, KvStore};

    #[test]
    fn the_state_machine_ignores_the_envelope() {
        let id = RequestId {
            node_id: 3,
            seq: 1 << 60,
        };
        let data = wrap(crate::kv::KvCommand::put(b"k", b"v"), id);
        assert_eq!(request_id(&data), Some(id));
        let mut kv = KvStore::new();
        assert_eq!(
            kv.apply(1, &data),
            Ok(ApplyOutcome::Put { replaced: false })
        );
        assert_eq!(kv.get(b"k"), Some(&b"v"[..]));
    }

    #[test]
    fn member_context_carries_id_and_address() {
        let id = RequestId { node_id: 2, seq: 9 };
        let context = member_context("127.0.0.1:7380", id);
        assert_eq!(request_id(&context), Some(id));
        assert_eq!(member_peer_url(&context), "127.0.0.1:7380");
        assert_eq!(member_peer_url(&[0xff]), "");
    }

    #[test]
    fn data_without_an_envelope_has_no_id() {
        assert_eq!(request_id(&crate::kv::KvCommand::delete(b"k")), None);
        assert_eq!(request_id(&[]), None);
        assert_eq!(request_id(&[0xff, 0xff]), None);
    }
}
