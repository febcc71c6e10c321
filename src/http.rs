//! The client HTTP API of a node.
//!
//! Owns: [`router`], which turns an [`HttpState`] (a [`NodeHandle`], the
//! initial cluster's peer URLs, an optional Prometheus handle,
//! [`HttpLimits`] and an optional [`SpaceQuota`]) into an axum [`Router`]
//! for the server binary to serve with `axum::serve` on the client port;
//! how HTTP requests map onto the handle's calls; how keys and values
//! travel in URLs and JSON; which status code each [`NodeError`] becomes;
//! admitting puts against the quota and reporting its alarm.
//!
//! Guarantees: never panics on input; every error answer is JSON with at
//! least `{"error":"…"}`; a request beyond a limit is refused before
//! anything is proposed, so it is never partially written; a value whose
//! `Content-Length` is beyond the limit is refused without buffering any
//! of it, and a chunked one as soon as it passes the limit (at most the
//! limit is ever buffered); the rest of a refused body is read and
//! dropped up to 4 MiB (or 5 s), so that clients that write the whole
//! body before reading the answer see the 413 rather than a reset
//! connection. Every call to the node ends within its request timeout.
//! With a quota, no put is proposed that the quota refuses (it is checked
//! here, where etcd checks it, and never in apply).
//!
//! May not touch: raft, the state machine or storage; everything goes
//! through [`NodeHandle`]. It binds no socket and installs no metrics
//! recorder: that is the server binary's business.
//!
//! # Endpoints
//!
//! | method | path | success | errors |
//! | --- | --- | --- | --- |
//! | `PUT` | `/v1/kv/{key}` (body: the raw value) | 200 `{"index":N}` | 400 bad key, 413 key or value too large, 503, 507 (quota exceeded, or storage failed) |
//! | `GET` | `/v1/kv/{key}[?consistency=serializable\|linearizable\|lease]` | 200 raw value, `application/octet-stream` | 400 bad key or consistency, 404 no such key, 413 key too large, 503, 507 |
//! | `DELETE` | `/v1/kv/{key}` | 200 `{"index":N}` (also when the key did not exist) | 400 bad key, 413 key too large, 503, 507 |
//! | `GET` | `/v1/kv?prefix=P[&start=K][&limit=N][&consistency=…]` | 200 `[{"key":B64,"value":B64}, …]` in key order, from the first key ≥ `K` under `P`; header `Ringraft-Next-Start` when keys were left out | 400 bad prefix, start, limit or consistency, 413 prefix or start too large, 503, 507 |
//! | `GET` | `/v1/members` | 200 `{"members":[{"id":N,"peer_url":"…","learner":bool,"is_leader":bool}],"leader":N\|null}` | 503, 507 |
//! | `POST` | `/v1/members` (JSON `{"id":N,"peer_url":"…","learner":bool}`) | 200 `{"index":N}` | 400 bad JSON or id 0, 409 already a member, 503 another change still being applied, 413 body over 64 KiB, 503, 507 |
//! | `DELETE` | `/v1/members/{id}` | 200 `{"index":N}` | 400 bad id, 404 not a member, 409 last voter, 503, 507 |
//! | `POST` | `/v1/members/{id}/promote` | 200 `{"index":N}` | 400 bad id, 404 not a learner nor a voter, 409 already a voter, 503, 507 |
//! | `POST` | `/v1/leader/transfer` (JSON `{"to":N}`) | 200 `{"leader":N}` once this node sees `N` lead | 400 bad JSON, 404 `N` is not a voter, 413 body over 64 KiB, 503, 507 |
//! | `GET` | `/v1/status` | 200 `{"id","leader","term","commit","applied","snapshot_index","first_index","role","voters","learners","alarms","state_bytes","quota_bytes"}` | 503, 507 |
//! | `GET` | `/health` | 200 `{"health":"true"}` when the node answers and knows a leader | 503 `{"health":"false","error":"…"}` |
//! | `GET` | `/metrics` | 200 Prometheus text | 404 when the server passed no Prometheus handle |
//!
//! Any other path answers 404 and any other method 405, both with a JSON
//! error body.
//!
//! # Who may do what
//!
//! When the listener requires client certificates, it attaches the
//! certificate's [`ClientIdentity`] to each request, and
//! [`HttpState::access`] decides before any handler runs
//! ([`crate::access`]): `GET`s need `read`, puts and deletes of keys
//! `write`, membership changes and leader transfers `admin`. A refusal is
//! 403 `{"error":"permission denied: …","missing_permission":"write"}`.
//! Without client certificates there is no identity and nothing is
//! checked.
//!
//! # Keys, values and their encodings
//!
//! - `{key}` is one path segment, percent-decoded to bytes: `%FF` is the
//!   byte 0xFF, `%2F` a slash inside the key (an unencoded `/` ends the
//!   segment, so `/v1/kv/a/b` is no endpoint: 404), `+` is a plus sign.
//!   A `%` not followed by two hex digits is 400, an empty key is 400, a
//!   key longer than [`HttpLimits::max_key_bytes`] (4 KiB) is 413.
//! - Query parameters are form-encoded: percent-decoded, `+` is a space.
//!   `prefix` is bytes like a key (missing or empty: every key); `limit`
//!   is a decimal in `1..=max_scan_limit` (default 1000, at most 10000);
//!   other values are 400. `start` is bytes like a key (missing or empty:
//!   from the prefix on). Unknown parameters are ignored.
//! - A value is the request body as is, at most
//!   [`HttpLimits::max_value_bytes`] (1.5 MiB; beyond: 413), and a GET
//!   answers it as is.
//! - In JSON (the prefix scan), keys and values are always standard
//!   base64 with padding (as etcd's JSON gateway shows them), so that any
//!   bytes round-trip and a client never has to guess which form it got.
//! - Node ids are JSON numbers; in a path, decimal or `0x`-prefixed hex.
//! - `peer_url` in `GET /v1/members` is the address announced when the
//!   member was added, else the one the server passed for the initial
//!   cluster, else `""`.
//!
//! # Prefix scans in pages
//!
//! A scan returns at most `limit` pairs and at most
//! [`HttpLimits::max_scan_bytes`] (4 MiB) of keys and values, counted
//! before base64; a first pair larger than that is returned alone, so a
//! scan always progresses. When it left keys out (by either cap), the
//! response carries the header `Ringraft-Next-Start`: the first key not
//! returned, percent-encoded; sending it back as `start=` (verbatim, with
//! the same `prefix`) returns the next page, so following the header until
//! it is absent visits every key under the prefix exactly once (keys
//! written meanwhile may or may not be seen, as with any paged scan). The
//! body stays a JSON array, as before pages existed.
//!
//! # Space quota and the NOSPACE alarm
//!
//! With a [`SpaceQuota`] (the server's `--quota-backend-bytes`), a put
//! whose key, value and per-pair overhead
//! ([`crate::kv::PAIR_OVERHEAD_BYTES`]) would take the state (plus the puts
//! this node admitted that are still in flight) past the quota is refused
//! with 507 and `{"error":"quota exceeded: …"}`, and raises the NOSPACE
//! alarm. While the alarm is raised every put is refused alike (etcd's
//! NOSPACE rule); reads and deletes work. The alarm clears by itself once
//! the state is at or below 90% of the quota (checked at every put,
//! delete, status and metrics request; so a single put too large for the
//! room left, refused while the state is below that mark, raises it only
//! until the next request). An overwrite counts its whole new
//! pair, as in etcd: the old value's size is not known without a read.
//! `GET /v1/status` shows `"alarms":["NOSPACE"]` (else `[]`),
//! `"state_bytes"` and `"quota_bytes"`; `/metrics` shows
//! `ringraft_server_state_size_bytes`, `ringraft_server_quota_backend_bytes`
//! and `ringraft_server_alarm_nospace` (0 or 1). Each node admits against
//! its own applied state, so the alarm is per node. Over the MVCC store
//! (`ringraft serve`) the size counts every stored version and tombstone
//! until a compaction drops them, as etcd's does: deletes then lift the
//! alarm only once a compaction (a client's, or the automatic one) ran.
//!
//! # Consistency and writes on followers
//!
//! Reads are linearizable by default (raft ReadIndex: the leader confirms
//! it still leads, this node waits until it applied that far), so a read
//! on any node sees every write acknowledged before it;
//! `?consistency=serializable` reads this node's state as it is, without
//! asking the leader; `?consistency=lease` is answered by the leader from
//! its lease without a heartbeat round (400 unless the server runs with
//! `--lease-reads`; see `NodeConfig::lease_reads` for its clock
//! assumption). `GET /v1/members` reads this node's view
//! (serializable), so that it answers without a leader.
//!
//! A write sent to a follower is not redirected (no 307): the follower
//! proposes it, raft forwards the proposal to the leader, and the answer
//! comes once the entry applied on the follower itself. A follower that
//! knows no leader answers 503 `NotLeader`.
//!
//! # Errors
//!
//! | node error | status | why |
//! | --- | --- | --- |
//! | `NotLeader` | 503, `Retry-After: 1`, body adds `"leader": hint\|null` | no leader now; an election is short |
//! | `Timeout` | 503, `Retry-After: 1` | usually no leader within the request timeout; a write may still apply later (put and delete are idempotent, a membership change retried answers 409 or 404) |
//! | `ProposalDropped` | 503, `Retry-After: 1` | refused for now, e.g. during a leader transfer |
//! | `Stopped` | 503 | this node is gone; retry on another |
//! | `UnknownMember` | 404 | |
//! | `InvalidMembership` | 409 | the request conflicts with the current membership, not malformed |
//! | `MembershipChangePending` | 503, `Retry-After: 1` | an earlier membership change is still being applied on the leader (the request waited for it until the request timeout) |
//! | `LeaseReadsDisabled` | 400 | `?consistency=lease` on a server without `--lease-reads` |
//! | `Storage` | 507 | the disk failed (full: `ENOSPC`, or `EIO`): the node stopped, and every request (reads too) answers this until the process is restarted; the message names the file and the OS error; nothing unsynced was acknowledged |
//! | (no node error: the quota refused a put) | 507 | the message starts with `quota exceeded:`; only puts get it, the node serves on, and deleting keys lifts it (see above) |
//! | any other | 500 | a bug or a node that could not boot |
//!
//! Malformed JSON, a missing or non-JSON `Content-Type`, a missing or
//! mistyped field and an unknown field are all 400 (not axum's 415/422):
//! a client has one code to look for.

use crate::access::{AccessPolicy, ClientIdentity, Denied, Permission};
use crate::kv::{KvStore, QuotaError, SpaceQuota};
use crate::node::{Consistency, NodeError, NodeHandle, NodeStatus};
use crate::state_machine::StateMachine;
pub use crate::v1_store::{V1Error, V1Store};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Default [`HttpLimits::max_key_bytes`]: 4 KiB.
pub const DEFAULT_MAX_KEY_BYTES: usize = 4 * 1024;
/// Default [`HttpLimits::max_value_bytes`]: 1.5 MiB (etcd's request limit).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1536 * 1024;
/// Default [`HttpLimits::default_scan_limit`].
pub const DEFAULT_SCAN_LIMIT: usize = 1000;
/// Default [`HttpLimits::max_scan_limit`].
pub const DEFAULT_MAX_SCAN_LIMIT: usize = 10_000;
/// Default [`HttpLimits::max_json_body_bytes`].
pub const DEFAULT_MAX_JSON_BODY_BYTES: usize = 64 * 1024;
/// Default [`HttpLimits::max_scan_bytes`]: 4 MiB of keys and values (about
/// 5.3 MiB of base64 in JSON).
pub const DEFAULT_MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// The response header of a prefix scan that left keys out: the first key
/// not returned, percent-encoded, to send back as the `start` parameter.
pub const NEXT_START_HEADER: &str = "ringraft-next-start";

/// What the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest key (and scan prefix), in bytes; beyond: 413.
    pub max_key_bytes: usize,
    /// Longest value, in bytes; beyond: 413.
    pub max_value_bytes: usize,
    /// Pairs a prefix scan returns when no `limit` is given.
    pub default_scan_limit: usize,
    /// Largest `limit` a prefix scan accepts; beyond: 400.
    pub max_scan_limit: usize,
    /// Largest JSON request body (membership, leader transfer); beyond: 413.
    pub max_json_body_bytes: usize,
    /// Keys and values a prefix scan returns at most, in bytes (before
    /// base64); a first pair larger than this is returned alone.
    pub max_scan_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            default_scan_limit: DEFAULT_SCAN_LIMIT,
            max_scan_limit: DEFAULT_MAX_SCAN_LIMIT,
            max_json_body_bytes: DEFAULT_MAX_JSON_BODY_BYTES,
            max_scan_bytes: DEFAULT_MAX_SCAN_BYTES,
        }
    }
}

/// Everything the API serves from.
pub struct HttpState<S: StateMachine = KvStore> {
    /// The node.
    pub node: NodeHandle<S>,
    /// Peer URLs of the initial cluster (node id → URL), shown for members
    /// the member directory has no address for (initial members were not
    /// added by a change that carried one).
    pub initial_peer_urls: BTreeMap<u64, String>,
    /// What `GET /metrics` renders; `None` makes it 404.
    pub metrics: Option<PrometheusHandle>,
    /// What requests may carry.
    pub limits: HttpLimits,
    /// The space quota puts are admitted against (and its NOSPACE alarm);
    /// `None` admits every put and reports no state size.
    pub quota: Option<Arc<SpaceQuota>>,
    /// Who may do what, checked against the [`ClientIdentity`] the
    /// listener attaches to a request (none: unchecked).
    pub access: AccessPolicy,
}

impl<S: StateMachine> Clone for HttpState<S> {
    fn clone(&self) -> HttpState<S> {
        HttpState {
            node: self.node.clone(),
            initial_peer_urls: self.initial_peer_urls.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits,
            quota: self.quota.clone(),
            access: self.access.clone(),
        }
    }
}

impl<S: StateMachine> std::fmt::Debug for HttpState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("node", &self.node)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<S: V1Store> HttpState<S> {
    /// A state for `node` with no initial peer URLs, no metrics, the
    /// default limits and no quota.
    pub fn new(node: NodeHandle<S>) -> HttpState<S> {
        HttpState {
            node,
            initial_peer_urls: BTreeMap::new(),
            metrics: None,
            limits: HttpLimits::default(),
            quota: None,
            access: AccessPolicy::default(),
        }
    }
}

type Shared<S> = State<Arc<HttpState<S>>>;

/// The API's routes (see the module doc), ready for `axum::serve`.
pub fn router<S: V1Store>(state: HttpState<S>) -> Router {
    let json_limit = state.limits.max_json_body_bytes;
    let state = Arc::new(state);
    Router::new()
        .route("/v1/kv", get(scan::<S>))
        // The `{key}` route needs a non-empty segment; without this an
        // empty key would be "no such endpoint" rather than a bad key.
        .route("/v1/kv/", any(empty_key))
        .route(
            "/v1/kv/{key}",
            get(get_key::<S>).put(put_key::<S>).delete(delete_key::<S>),
        )
        .route("/v1/members", get(list_members::<S>).post(add_member::<S>))
        .route("/v1/members/{id}", delete(remove_member::<S>))
        .route("/v1/members/{id}/promote", post(promote_member::<S>))
        .route("/v1/leader/transfer", post(transfer_leader::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/health", get(health::<S>))
        .route("/metrics", get(metrics::<S>))
        .fallback(no_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        // Bounds the JSON extractors; values are read by `read_value` with
        // their own limit.
        .layer(DefaultBodyLimit::max(json_limit))
        // Outermost: a refused request reads no body and reaches no handler.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_access::<S>,
        ))
        .with_state(state)
}

/// Refuses, with 403, a request its client's identity is not allowed
/// (see [`crate::access`]).
async fn check_access<S: V1Store>(
    State(state): Shared<S>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let identity = request.extensions().get::<ClientIdentity>();
    match state
        .access
        .check(identity, request.method(), request.uri().path())
    {
        Ok(()) => next.run(request).await,
        Err(denied) => ApiError::forbidden(&denied).into_response(),
    }
}

/// An error answer: `{"error":…}` (plus `"leader"` for `NotLeader`).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    /// `Some` only for `NotLeader`, whose body carries the hint even when
    /// it is null.
    leader: Option<Option<u64>>,
    retry_after: bool,
    /// Not logged: expected in normal operation and logged elsewhere (a
    /// quota refusal; the alarm logs when it is raised).
    quiet: bool,
    /// The level a 403 lacked.
    missing_permission: Option<Permission>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_permission: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            leader: None,
            retry_after: false,
            quiet: false,
            missing_permission: None,
        }
    }

    fn forbidden(denied: &Denied) -> ApiError {
        ApiError {
            missing_permission: Some(denied.needs),
            ..ApiError::new(StatusCode::FORBIDDEN, denied.to_string())
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn retry_later(mut self) -> ApiError {
        self.retry_after = true;
        self
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> ApiError {
        let message = error.to_string();
        let unavailable = |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
        // Listed one by one so that a new variant needs a decision here.
        match error {
            NodeError::NotLeader { leader_hint } => ApiError {
                leader: Some(leader_hint),
                ..unavailable(message).retry_later()
            },
            NodeError::Timeout => {
                unavailable(format!("{message}; a write may still apply")).retry_later()
            }
            NodeError::ProposalDropped { .. } => unavailable(message).retry_later(),
            NodeError::Stopped | NodeError::Panicked { .. } => unavailable(message),
            NodeError::UnknownMember { .. } => ApiError::not_found(message),
            NodeError::InvalidMembership { .. } => ApiError::new(StatusCode::CONFLICT, message),
            NodeError::MembershipChangePending => unavailable(message).retry_later(),
            NodeError::LeaseReadsDisabled => ApiError::bad_request(message),
            NodeError::Storage(_) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, message),
            NodeError::Boot(_)
            | NodeError::Raft(_)
            | NodeError::RaftLog(_)
            | NodeError::NoRuntime
            | NodeError::StateMachine(_)
            | NodeError::CommandDecode(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        }
    }
}

impl From<V1Error> for ApiError {
    fn from(error: V1Error) -> ApiError {
        match error {
            V1Error::Node(error) => ApiError::from(error),
            // A plain put or delete is never refused by a store; if one
            // is, it is a bug to report, not the client's fault.
            V1Error::Refused(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(error: QuotaError) -> ApiError {
        ApiError {
            quiet: true,
            ..ApiError::new(StatusCode::INSUFFICIENT_STORAGE, error.to_string())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let message = rejection.body_text();
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(message)
        } else {
            ApiError::bad_request(message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error()
            && self.status != StatusCode::SERVICE_UNAVAILABLE
            && !self.quiet
        {
            tracing::warn!(status = %self.status, error = %self.message, "http request failed");
        }
        let body = ErrorBody {
            error: &self.message,
            leader: self.leader,
            missing_permission: self.missing_permission.map(Permission::name),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Decodes `%XX` escapes to bytes; `plus_is_space` for form-encoded query
/// strings. `None` when a `%` is not followed by two hex digits.
fn percent_decode(input: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let high = hex_digit(*bytes.get(at + 1)?)?;
                let low = hex_digit(*bytes.get(at + 2)?)?;
                out.push(high << 4 | low);
                at += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    Some(out)
}

/// Encodes bytes for a URL query value: every byte but ASCII letters,
/// digits and `-._~` becomes `%XX`, so that [`percent_decode`] gives the
/// bytes back whatever they are.
fn percent_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The key of a `/v1/kv/{key}` request, from the raw path: axum's `Path`
/// decodes to UTF-8 and would refuse a key such as `%FF`.
fn key_of(uri: &Uri, limits: &HttpLimits) -> Result<Vec<u8>, ApiError> {
    // The route matched one non-empty segment, so it is the last one
    // (also when the router is nested under a prefix).
    let segment = uri.path().rsplit('/').next().unwrap_or_default();
    let key = percent_decode(segment, false)
        .ok_or_else(|| ApiError::bad_request("invalid percent-encoding in the key"))?;
    check_key(&key, limits, "key")?;
    if key.is_empty() {
        return Err(ApiError::bad_request("empty key"));
    }
    Ok(key)
}

fn check_key(key: &[u8], limits: &HttpLimits, what: &str) -> Result<(), ApiError> {
    if key.len() > limits.max_key_bytes {
        return Err(ApiError::too_large(format!(
            "{what} of {} bytes exceeds the limit of {} bytes",
            key.len(),
            limits.max_key_bytes
        )));
    }
    Ok(())
}

/// The decoded query parameters (first occurrence of each name wins).
fn query_params(uri: &Uri) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ApiError> {
    let mut params = BTreeMap::new();
    for pair in uri.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let invalid = || ApiError::bad_request("invalid percent-encoding in the query");
        let name = percent_decode(name, true).ok_or_else(invalid)?;
        let value = percent_decode(value, true).ok_or_else(invalid)?;
        params.entry(name).or_insert(value);
    }
    Ok(params)
}

fn consistency_of(params: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<Consistency, ApiError> {
    match params.get(b"consistency".as_slice()).map(Vec::as_slice) {
        None | Some(b"linearizable") => Ok(Consistency::Linearizable),
        Some(b"serializable") => Ok(Consistency::Serializable),
        Some(b"lease") => Ok(Consistency::Lease),
        Some(other) => Err(ApiError::bad_request(format!(
            "consistency must be linearizable, lease or serializable, not {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// How much of a refused value body is read and thrown away, so that a
/// client that writes its whole body before reading the answer (most
/// simple clients do) gets the 413 rather than a connection reset; a
/// larger body gets the 413 and a closed connection (Go's net/http does
/// the same with 256 KiB).
const MAX_DISCARD_BYTES: u64 = 4 * 1024 * 1024;

/// How long a refused body is read and thrown away at most, so that a
/// slow client cannot hold the refusal open.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// The next frame of `body`: its data, or `None` for a trailers frame.
async fn next_frame(body: &mut Body) -> Option<Result<Option<Bytes>, axum::Error>> {
    let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
    Some(frame.map(|frame| frame.into_data().ok()))
}

/// Reads a value body, refusing it as soon as it is known to be too large
/// so that it is never buffered whole nor proposed.
async fn read_value(request: Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("value exceeds the limit of {max} bytes"));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    let mut body: Body = request.into_body();
    if declared.is_some_and(|length| length > max as u64) {
        discard(&mut body, declared).await;
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |length| length.min(max as u64) as usize);
    let mut value = Vec::with_capacity(capacity);
    while let Some(frame) = next_frame(&mut body).await {
        let frame =
            frame.map_err(|error| ApiError::bad_request(format!("reading the body: {error}")))?;
        if let Some(data) = frame {
            if value.len().saturating_add(data.len()) > max {
                discard(&mut body, None).await;
                return Err(too_large());
            }
            value.extend_from_slice(&data);
        }
    }
    Ok(value)
}

/// Reads and drops the rest of a refused body, within
/// [`MAX_DISCARD_BYTES`] and [`DISCARD_TIMEOUT`]; `rest` is what the client
/// declared, when known.
async fn discard(body: &mut Body, rest: Option<u64>) {
    if rest.is_some_and(|rest| rest > MAX_DISCARD_BYTES) {
        return;
    }
    let drain = async {
        let mut discarded = 0u64;
        while discarded <= MAX_DISCARD_BYTES {
            match next_frame(body).await {
                Some(Ok(data)) => {
                    discarded += data.map_or(0, |data| data.len() as u64);
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    // Running out of time only means the connection closes after the 413.
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
}

#[derive(Serialize)]
struct IndexBody {
    index: u64,
}

async fn put_key<S: V1Store>(
    State(state): Shared<S>,
    request: Request,
) -> Result<Json<IndexBody>, ApiError> {
    let key = key_of(request.uri(), &state.limits)?;
    let value = read_value(request, state.limits.max_value_bytes).await?;
    // Admitted here, not in apply (as etcd does): the quota is this node's
    // setting, and apply must stay alike on every member. The reservation
    // is held until the put finished, so that concurrent puts on this node
    // count each other.
    let _reservation = match &state.quota {
        Some(quota) => Some(quota.admit_put(key.len(), value.len())?),
        None => None,
    };
    let index = S::put(&state.node, &key, Bytes::from(value)).await?;
    Ok(Json(IndexBody { index }))
}

async fn get_key<S: V1Store>(State(state): Shared<S>, uri: Uri) -> Result<Response, ApiError> {
    let key = key_of(&uri, &state.limits)?;
    let consistency = consistency_of(&query_params(&uri)?)?;
    match S::get(&state.node, &key, consistency).await? {
        Some(value) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            value,
        )
            .into_response()),
        None => Err(ApiError::not_found("key not found")),
    }
}

async fn delete_key<S: V1Store>(
    State(state): Shared<S>,
    uri: Uri,
) -> Result<Json<IndexBody>, ApiError> {
    let key = key_of(&uri, &state.limits)?;
    let index = S::delete(&state.node, &key).await?;
    // The delete applied here: the alarm may clear now rather than at the
    // next put.
    if let Some(quota) = &state.quota {
        quota.refresh();
    }
    Ok(Json(IndexBody { index }))
}

async fn empty_key() -> ApiError {
    ApiError::bad_request("empty key")
}

#[derive(Serialize)]
struct PairBody {
    key: String,
    value: String,
}

async fn scan<S: V1Store>(State(state): Shared<S>, uri: Uri) -> Result<Response, ApiError> {
    let params = query_params(&uri)?;
    let consistency = consistency_of(&params)?;
    let prefix = params
        .get(b"prefix".as_slice())
        .cloned()
        .unwrap_or_default();
    check_key(&prefix, &state.limits, "prefix")?;
    let start = params.get(b"start".as_slice()).cloned().unwrap_or_default();
    check_key(&start, &state.limits, "start")?;
    let max = state.limits.max_scan_limit;
    let limit = match params.get(b"limit".as_slice()) {
        None => state.limits.default_scan_limit.min(max),
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(|text| text.parse::<usize>().ok())
            .filter(|limit| (1..=max).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be a number from 1 to {max}"))
            })?,
    };
    let page = S::scan_page(
        &state.node,
        &prefix,
        &start,
        limit,
        state.limits.max_scan_bytes,
        consistency,
    )
    .await?;
    let pairs: Vec<PairBody> = page
        .pairs
        .into_iter()
        .map(|(key, value)| PairBody {
            key: BASE64.encode(key),
            value: BASE64.encode(value),
        })
        .collect();
    let mut response = Json(pairs).into_response();
    // In a header, so that the body stays the array it always was.
    if let Some(next) = page.next {
        let next = HeaderValue::from_str(&percent_encode(&next))
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
        response.headers_mut().insert(NEXT_START_HEADER, next);
    }
    Ok(response)
}

#[derive(Serialize)]
struct MemberBody {
    id: u64,
    peer_url: String,
    /// The client URL the member published (empty until it did).
    client_url: String,
    learner: bool,
    is_leader: bool,
}

#[derive(Serialize)]
struct MembersBody {
    members: Vec<MemberBody>,
    leader: Option<u64>,
}

async fn list_members<S: V1Store>(State(state): Shared<S>) -> Result<Json<MembersBody>, ApiError> {
    let status = state.node.status().await?;
    let addresses = state
        .node
        .member_addresses(Consistency::Serializable)
        .await?;
    let client_urls = state
        .node
        .member_client_urls(Consistency::Serializable)
        .await?;
    let peer_url = |id: u64| {
        addresses
            .get(&id)
            .filter(|url| !url.is_empty())
            .or_else(|| state.initial_peer_urls.get(&id))
            .cloned()
            .unwrap_or_default()
    };
    let voters = status.voters.iter().map(|&id| (id, false));
    let learners = status.learners.iter().map(|&id| (id, true));
    let mut members: Vec<MemberBody> = voters
        .chain(learners)
        .map(|(id, learner)| MemberBody {
            id,
            peer_url: peer_url(id),
            client_url: client_urls.get(&id).cloned().unwrap_or_default(),
            learner,
            is_leader: status.leader == Some(id),
        })
        .collect();
    members.sort_by_key(|member| member.id);
    Ok(Json(MembersBody {
        members,
        leader: status.leader,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberRequest {
    id: u64,
    #[serde(default)]
    peer_url: String,
    #[serde(default)]
    learner: bool,
}

async fn add_member<S: V1Store>(
    State(state): Shared<S>,
    request: Result<Json<AddMemberRequest>, JsonRejection>,
) -> Result<Json<IndexBody>, ApiError> {
    let Json(request) = request?;
    if request.id == 0 {
        return Err(ApiError::bad_request("node id 0 is reserved"));
    }
    let index = if request.learner {
        state
            .node
            .add_learner(request.id, &request.peer_url)
            .await?
    } else {
        state.node.add_member(request.id, &request.peer_url).await?
    };
    Ok(Json(IndexBody { index }))
}

/// A node id from a path: decimal or `0x` hex (the form error messages
/// print), never 0.
fn member_id(path: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(raw) = path.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let parsed = match raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => raw.parse::<u64>().ok(),
    };
    parsed
        .filter(|&id| id != 0)
        .ok_or_else(|| ApiError::bad_request(format!("{raw:?} is not a node id")))
}

async fn remove_member<S: V1Store>(
    State(state): Shared<S>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<IndexBody>, ApiError> {
    let id = member_id(path)?;
    let index = state.node.remove_member(id).await?;
    Ok(Json(IndexBody { index }))
}

async fn promote_member<S: V1Store>(
    State(state): Shared<S>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<IndexBody>, ApiError> {
    let id = member_id(path)?;
    let index = state.node.promote(id).await?;
    Ok(Json(IndexBody { index }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    to: u64,
}

#[derive(Serialize)]
struct TransferBody {
    leader: u64,
}

async fn transfer_leader<S: V1Store>(
    State(state): Shared<S>,
    request: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<TransferBody>, ApiError> {
    let Json(TransferRequest { to }) = request?;
    state.node.transfer_leader(to).await?;
    Ok(Json(TransferBody { leader: to }))
}

#[derive(Serialize)]
struct StatusBody {
    id: u64,
    leader: Option<u64>,
    term: u64,
    commit: u64,
    applied: u64,
    snapshot_index: u64,
    first_index: u64,
    /// etcd's names (`StateLeader`, `StateFollower`, ...).
    role: String,
    voters: Vec<u64>,
    learners: Vec<u64>,
    /// This node's raised alarms (`"NOSPACE"`), as etcd names them.
    alarms: Vec<&'static str>,
    /// The key-value state's size as the quota counts it (null without a
    /// quota).
    state_bytes: Option<u64>,
    /// The quota (null without one).
    quota_bytes: Option<u64>,
}

impl StatusBody {
    fn new(status: NodeStatus, quota: Option<&SpaceQuota>) -> StatusBody {
        StatusBody {
            id: status.id,
            leader: status.leader,
            term: status.term,
            commit: status.commit,
            applied: status.applied,
            snapshot_index: status.snapshot_index,
            first_index: status.first_index,
            role: status.role.to_string(),
            voters: status.voters,
            learners: status.learners,
            alarms: match quota {
                Some(quota) if quota.refresh() => vec![NOSPACE_ALARM],
                _ => Vec::new(),
            },
            state_bytes: quota.map(SpaceQuota::state_bytes),
            quota_bytes: quota.map(SpaceQuota::quota_bytes),
        }
    }
}

/// The name of the alarm a full quota raises, etcd's.
const NOSPACE_ALARM: &str = "NOSPACE";

async fn status<S: V1Store>(State(state): Shared<S>) -> Result<Json<StatusBody>, ApiError> {
    let status = state.node.status().await?;
    Ok(Json(StatusBody::new(status, state.quota.as_deref())))
}

#[derive(Serialize)]
struct HealthBody {
    health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn health<S: V1Store>(State(state): Shared<S>) -> Response {
    // Without a leader the node can serve neither writes nor linearizable
    // reads, so a load balancer should send clients elsewhere.
    let problem = match state.node.status().await {
        Ok(status) if status.leader.is_some() => None,
        Ok(_) => Some("no leader".to_string()),
        Err(error) => Some(error.to_string()),
    };
    match problem {
        None => (
            StatusCode::OK,
            Json(HealthBody {
                health: "true",
                error: None,
            }),
        )
            .into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthBody {
                health: "false",
                error: Some(error),
            }),
        )
            .into_response(),
    }
}

async fn metrics<S: V1Store>(State(state): Shared<S>) -> Result<Response, ApiError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server exports no metrics"))?;
    if let Some(quota) = &state.quota {
        publish_quota_gauges(state.node.id(), quota);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response())
}

/// Sets the quota's gauges from its state now. Done when `/metrics` is
/// rendered rather than on every apply, which would put the recorder on the
/// apply path for a value only a scrape reads.
fn publish_quota_gauges(node_id: u64, quota: &SpaceQuota) {
    use crate::metrics::{ALARM_NOSPACE, NODE_LABEL, QUOTA_BACKEND_BYTES, STATE_SIZE_BYTES};
    let node = node_id.to_string();
    let alarm = if quota.refresh() { 1.0 } else { 0.0 };
    // Bytes as f64: exact up to 2^53 bytes.
    metrics::gauge!(STATE_SIZE_BYTES, NODE_LABEL => node.clone()).set(quota.state_bytes() as f64);
    metrics::gauge!(QUOTA_BACKEND_BYTES, NODE_LABEL => node.clone())
        .set(quota.quota_bytes() as f64);
    metrics::gauge!(ALARM_NOSPACE, NODE_LABEL => node).set(alarm);
}

async fn no_endpoint() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_yields_bytes() {
        assert_eq!(
            percent_decode("a%00%ff%2F+", false),
            Some(b"a\0\xff/+".to_vec())
        );
        assert_eq!(percent_decode("a+b%2B", true), Some(b"a b+".to_vec()));
        assert_eq!(percent_decode("", false), Some(Vec::new()));
    }

    #[test]
    fn percent_encoding_round_trips_any_bytes() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let encoded = percent_encode(&every_byte);
        assert!(encoded.is_ascii());
        assert!(HeaderValue::from_str(&encoded).is_ok(), "fits a header");
        // As a query value, where `+` would be a space.
        assert_eq!(percent_decode(&encoded, true), Some(every_byte));
        assert_eq!(percent_encode(b"a/b c+~"), "a%2Fb%20c%2B~");
    }

    #[test]
    fn bad_percent_encoding_is_refused() {
        for bad in ["%", "%4", "%G0", "a%zz", "%%"] {
            assert_eq!(percent_decode(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn key_limits() {
        let limits = HttpLimits {
            max_key_bytes: 3,
            ..HttpLimits::default()
        };
        let uri = |path: &str| path.parse::<Uri>().unwrap_or_default();
        assert_eq!(
            key_of(&uri("/v1/kv/a%2Fb"), &limits).ok(),
            Some(b"a/b".to_vec())
        );
        let too_long = key_of(&uri("/v1/kv/abcd"), &limits).err().map(|e| e.status);
        assert_eq!(too_long, Some(StatusCode::PAYLOAD_TOO_LARGE));
        let bad = key_of(&uri("/v1/kv/%zz"), &limits).err().map(|e| e.status);
        assert_eq!(bad, Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn query_first_occurrence_wins_and_consistency_is_checked() {
        let uri: Uri = "/v1/kv?prefix=a+b&prefix=c&consistency=serializable"
            .parse()
            .unwrap_or_default();
        let params = query_params(&uri).ok().unwrap_or_default();
        assert_eq!(params.get(b"prefix".as_slice()), Some(&b"a b".to_vec()));
        assert_eq!(
            consistency_of(&params).ok(),
            Some(Consistency::Serializable)
        );
        let uri: Uri = "/v1/kv?consistency=strong".parse().unwrap_or_default();
        let params = query_params(&uri).ok().unwrap_or_default();
        assert!(consistency_of(&params).is_err());
    }

    #[tokio::test]
    async fn a_value_is_cut_at_the_limit_with_or_without_a_length() {
        let status = |result: Result<Vec<u8>, ApiError>| result.err().map(|e| e.status);
        let unsized_body = |len: usize| Request::new(Body::from(vec![1u8; len]));
        assert_eq!(
            read_value(unsized_body(10), 10).await.ok(),
            Some(vec![1; 10])
        );
        assert_eq!(
            status(read_value(unsized_body(11), 10).await),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        // A declared length beyond the limit is refused before reading.
        let mut declared = unsized_body(1);
        declared
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(
            status(read_value(declared, 10).await),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn node_errors_map_to_status_codes() {
        let code = |error: NodeError| ApiError::from(error).status;
        assert_eq!(
            code(NodeError::NotLeader { leader_hint: None }),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(code(NodeError::Timeout), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code(NodeError::Stopped), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            code(NodeError::UnknownMember { node_id: 9 }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(NodeError::InvalidMembership {
                reason: String::new()
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            code(NodeError::MembershipChangePending),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(code(NodeError::LeaseReadsDisabled), StatusCode::BAD_REQUEST);
        assert_eq!(
            code(NodeError::RaftLog(String::new())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
