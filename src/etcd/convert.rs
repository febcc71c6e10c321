//! Between etcd's wire types (`pb`) and the MVCC store's plain types
//! (`crate::mvcc`), both ways, and MVCC errors as etcd's gRPC statuses.
//!
//! Owns: the field-by-field mapping and checking enum values a client
//! sent. Guarantees: an enum value etcd does not define is refused with
//! `INVALID_ARGUMENT` naming the field, never guessed; a compare reads the
//! operand its target names (another operand counts as the zero value, as
//! etcd's getters do). May not touch: what the operations do.

use super::pb::etcdserverpb as pb;
use super::pb::mvccpb;
use crate::mvcc;
use tonic::Status;

fn bad_enum(field: &str, value: i32) -> Status {
    Status::invalid_argument(format!("etcdserver: {field} {value} is not a known value"))
}

/// A Range request.
pub fn range_request(request: pb::RangeRequest) -> Result<mvcc::RangeRequest, Status> {
    let sort_order = match pb::range_request::SortOrder::try_from(request.sort_order) {
        Ok(pb::range_request::SortOrder::None) => mvcc::SortOrder::None,
        Ok(pb::range_request::SortOrder::Ascend) => mvcc::SortOrder::Ascend,
        Ok(pb::range_request::SortOrder::Descend) => mvcc::SortOrder::Descend,
        Err(_) => return Err(bad_enum("sort_order", request.sort_order)),
    };
    let sort_target = match pb::range_request::SortTarget::try_from(request.sort_target) {
        Ok(pb::range_request::SortTarget::Key) => mvcc::SortTarget::Key,
        Ok(pb::range_request::SortTarget::Version) => mvcc::SortTarget::Version,
        Ok(pb::range_request::SortTarget::Create) => mvcc::SortTarget::Create,
        Ok(pb::range_request::SortTarget::Mod) => mvcc::SortTarget::Mod,
        Ok(pb::range_request::SortTarget::Value) => mvcc::SortTarget::Value,
        Err(_) => return Err(bad_enum("sort_target", request.sort_target)),
    };
    Ok(mvcc::RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: request.revision,
        sort_order,
        sort_target,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    })
}

/// A Put request.
pub fn put_request(request: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// A DeleteRange request.
pub fn delete_request(request: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// A Txn request, nested txns included.
pub fn txn_request(request: pb::TxnRequest) -> Result<mvcc::TxnRequest, Status> {
    Ok(mvcc::TxnRequest {
        compare: request
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: request
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: request
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

fn request_op(op: pb::RequestOp) -> Result<mvcc::RequestOp, Status> {
    use pb::request_op::Request;
    match op.request {
        Some(Request::RequestRange(range)) => Ok(mvcc::RequestOp::Range(range_request(range)?)),
        Some(Request::RequestPut(put)) => Ok(mvcc::RequestOp::Put(put_request(put))),
        Some(Request::RequestDeleteRange(delete)) => {
            Ok(mvcc::RequestOp::DeleteRange(delete_request(delete)))
        }
        Some(Request::RequestTxn(txn)) => Ok(mvcc::RequestOp::Txn(txn_request(txn)?)),
        None => Err(Status::invalid_argument(
            "etcdserver: a txn operation holds no request",
        )),
    }
}

fn compare(compare: pb::Compare) -> Result<mvcc::Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => mvcc::CompareResult::Equal,
        Ok(CompareResult::Greater) => mvcc::CompareResult::Greater,
        Ok(CompareResult::Less) => mvcc::CompareResult::Less,
        Ok(CompareResult::NotEqual) => mvcc::CompareResult::NotEqual,
        Err(_) => return Err(bad_enum("compare result", compare.result)),
    };
    let union = compare.target_union;
    let number = |pick: fn(&TargetUnion) -> Option<i64>| union.as_ref().and_then(pick).unwrap_or(0);
    let target = match CompareTarget::try_from(compare.target) {
        Ok(CompareTarget::Version) => mvcc::CompareTarget::Version(number(|u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Create) => mvcc::CompareTarget::Create(number(|u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => mvcc::CompareTarget::Mod(number(|u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => mvcc::CompareTarget::Lease(number(|u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Value) => mvcc::CompareTarget::Value(match &union {
            Some(TargetUnion::Value(value)) => value.clone(),
            _ => bytes::Bytes::new(),
        }),
        Err(_) => return Err(bad_enum("compare target", compare.target)),
    };
    Ok(mvcc::Compare {
        key: compare.key,
        range_end: compare.range_end,
        target,
        result,
    })
}

/// A key-value as etcd sends it.
pub fn key_value(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A watch event as etcd sends it.
pub fn event(event: mvcc::Event) -> mvccpb::Event {
    let kind = match event.kind {
        mvcc::EventKind::Put => mvccpb::event::EventType::Put,
        mvcc::EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(key_value(event.kv)),
        prev_kv: event.prev_kv.map(key_value),
    }
}

/// The header of a response inside a txn: etcd fills only its revision.
fn inner_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..pb::ResponseHeader::default()
    })
}

/// A Range response under `header`.
pub fn range_response(
    response: mvcc::RangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

/// A Put response under `header`.
pub fn put_response(
    response: mvcc::PutResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: response.prev_kv.map(key_value),
    }
}

/// A DeleteRange response under `header`.
pub fn delete_response(
    response: mvcc::DeleteRangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// A Txn response under `header`; its inner responses carry their own
/// revisions.
pub fn txn_response(
    response: mvcc::TxnResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = response
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                mvcc::ResponseOp::Range(r) => {
                    let revision = r.revision;
                    Response::ResponseRange(range_response(r, inner_header(revision)))
                }
                mvcc::ResponseOp::Put(r) => {
                    let revision = r.revision;
                    Response::ResponsePut(put_response(r, inner_header(revision)))
                }
                mvcc::ResponseOp::DeleteRange(r) => {
                    let revision = r.revision;
                    Response::ResponseDeleteRange(delete_response(r, inner_header(revision)))
                }
                mvcc::ResponseOp::Txn(r) => {
                    let revision = r.revision;
                    Response::ResponseTxn(txn_response(r, inner_header(revision)))
                }
            }),
        })
        .collect();
    pb::TxnResponse {
        header,
        succeeded: response.succeeded,
        responses,
    }
}

/// The gRPC status etcd answers an MVCC error with (etcdctl prints the
/// message).
pub fn mvcc_status(error: &mvcc::MvccError) -> Status {
    use mvcc::MvccError;
    let message = error.to_string();
    match error {
        // etcd's gRPC messages carry its server's prefix on these too.
        MvccError::Compacted { .. } | MvccError::FutureRevision => {
            Status::out_of_range(format!("etcdserver: {message}"))
        }
        MvccError::LeaseNotFound => Status::not_found(message),
        MvccError::LeaseExists => Status::failed_precondition(message),
        MvccError::KeyNotFound
        | MvccError::ValueProvided
        | MvccError::LeaseProvided
        | MvccError::DuplicateKey
        | MvccError::EmptyKey
        | MvccError::TooManyOps => Status::invalid_argument(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tonic::Code;

    #[test]
    fn unknown_enum_values_are_refused_not_guessed() {
        let request = pb::RangeRequest {
            key: Bytes::from_static(b"a"),
            sort_order: 7,
            ..pb::RangeRequest::default()
        };
        let refused = range_request(request).expect_err("sort order 7");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains("sort_order 7"));
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                target: 9,
                key: Bytes::from_static(b"a"),
                ..pb::Compare::default()
            }],
            ..pb::TxnRequest::default()
        };
        assert!(txn_request(txn).is_err());
    }

    #[test]
    fn a_compare_reads_the_operand_its_target_names() {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let converted = compare(pb::Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Mod as i32,
            key: Bytes::from_static(b"k"),
            target_union: Some(TargetUnion::ModRevision(5)),
            range_end: Bytes::from_static(b"l"),
        })
        .expect("valid");
        assert_eq!(converted.target, mvcc::CompareTarget::Mod(5));
        assert_eq!(converted.result, mvcc::CompareResult::Greater);
        assert_eq!(converted.range_end, Bytes::from_static(b"l"));
        // Another operand than the target's counts as zero, as etcd's
        // getters read it.
        let mismatched = compare(pb::Compare {
            target: CompareTarget::Version as i32,
            key: Bytes::from_static(b"k"),
            target_union: Some(TargetUnion::Value(Bytes::from_static(b"x"))),
            ..pb::Compare::default()
        })
        .expect("valid");
        assert_eq!(mismatched.target, mvcc::CompareTarget::Version(0));
    }

    #[test]
    fn txn_responses_nest_with_their_revisions() {
        let inner = mvcc::TxnResponse {
            succeeded: false,
            responses: vec![mvcc::ResponseOp::Put(mvcc::PutResponse {
                prev_kv: None,
                revision: 4,
            })],
            revision: 4,
        };
        let outer = txn_response(
            mvcc::TxnResponse {
                succeeded: true,
                responses: vec![mvcc::ResponseOp::Txn(inner)],
                revision: 4,
            },
            None,
        );
        let Some(pb::response_op::Response::ResponseTxn(nested)) = &outer.responses[0].response
        else {
            panic!("a nested txn response");
        };
        assert_eq!(nested.header.as_ref().map(|h| h.revision), Some(4));
        assert!(!nested.succeeded);
        assert_eq!(nested.responses.len(), 1);
    }

    #[test]
    fn mvcc_errors_get_etcds_codes_and_messages() {
        let status = mvcc_status(&mvcc::MvccError::Compacted {
            compact_revision: 3,
        });
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(
            mvcc_status(&mvcc::MvccError::LeaseNotFound).code(),
            Code::NotFound
        );
        assert_eq!(
            mvcc_status(&mvcc::MvccError::DuplicateKey).code(),
            Code::InvalidArgument
        );
    }
}
