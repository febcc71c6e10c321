//! Driving running etcd servers through their v3 HTTP/JSON gateway
//! (`--target etcd://host:port[,…]`), with the same workload as ringraft.
//!
//! Owns: [`EtcdDriver`]: client `i` keeps one keep-alive connection to
//! endpoint `i mod n`; writes are `POST /v3/kv/put`
//! `{"key":B64,"value":B64}`, reads `POST /v3/kv/range`
//! `{"key":B64,"serializable":bool}`; the counters come from each
//! endpoint's `/metrics` (`etcd_disk_wal_fsync_duration_seconds_count`,
//! `etcd_server_proposals_committed_total`) and the first endpoint's
//! revision (a range on a key the bench never writes).
//! Guarantees: an operation counts only on `200` (etcd answers a put once
//! applied, durable on a quorum; a range of a missing key is a `200` with
//! no `kvs`). Any other answer is a failure with its status and body.
//! May not touch: the server (it only sends requests).
//!
//! The gateway decodes the JSON and calls etcd's gRPC service over a
//! loopback connection inside the etcd process, so each request costs etcd
//! more than a native gRPC client would; a comparison through it is the
//! HTTP/JSON cost of both servers, not etcd's gRPC ceiling.

use super::driver::{Client, Driver, OpFailure};
use super::error::BenchError;
use super::http_conn::{Connection, get_text, post_json};
use super::options::{Endpoint, Workload};
use super::scrape::{Counters, sum_of};
use super::workload::{Op, OpKind, key_bytes, value_bytes};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::body::Bytes;
use hyper::{Method, StatusCode};

/// etcd's WAL fsync histogram's sample count.
pub const ETCD_FSYNC_COUNT: &str = "etcd_disk_wal_fsync_duration_seconds_count";
/// etcd's WAL fsync histogram's sum, seconds.
pub const ETCD_FSYNC_SUM: &str = "etcd_disk_wal_fsync_duration_seconds_sum";
/// etcd's count of committed raft entries.
pub const ETCD_PROPOSALS_COMMITTED: &str = "etcd_server_proposals_committed_total";
/// The key read for the revision (never written by the bench).
const REVISION_PROBE_KEY: &[u8] = b"ringraft-bench-revision-probe";

/// Drives etcd through its JSON gateway.
#[derive(Debug)]
pub struct EtcdDriver {
    endpoints: Vec<Endpoint>,
    value_b64: String,
    serializable: bool,
}

fn range_json(key: &[u8], serializable: bool) -> String {
    format!(
        "{{\"key\":\"{}\",\"serializable\":{serializable}}}",
        BASE64.encode(key)
    )
}

/// The revision in a range answer's header (a JSON string: int64 in
/// grpc-gateway's JSON).
fn revision_of(answer: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let revision = value.get("header")?.get("revision")?;
    revision
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| revision.as_u64())
}

impl EtcdDriver {
    /// A driver for `endpoints`; checks that each answers a range.
    pub async fn new(
        endpoints: Vec<Endpoint>,
        workload: &Workload,
    ) -> Result<EtcdDriver, BenchError> {
        for endpoint in &endpoints {
            let answer = post_json(
                endpoint,
                "/v3/kv/range",
                range_json(REVISION_PROBE_KEY, false),
            )
            .await
            .map_err(|reason| BenchError::Endpoint {
                endpoint: endpoint.to_string(),
                reason: format!("not an etcd v3 JSON gateway? {reason}"),
            })?;
            if revision_of(&answer).is_none() {
                return Err(BenchError::Endpoint {
                    endpoint: endpoint.to_string(),
                    reason: format!(
                        "a range answered without a revision: {}",
                        String::from_utf8_lossy(&answer)
                    ),
                });
            }
        }
        Ok(EtcdDriver {
            endpoints,
            value_b64: BASE64.encode(value_bytes(workload.value_size)),
            serializable: workload.read_consistency
                == super::options::ReadConsistency::Serializable,
        })
    }
}

/// One client's connection.
#[derive(Debug)]
pub struct EtcdClient {
    connection: Connection,
    value_b64: String,
    serializable: bool,
}

impl Client for EtcdClient {
    async fn execute(&mut self, op: Op) -> Result<(), OpFailure> {
        let key = key_bytes(op.key);
        let (path, body) = match op.kind {
            OpKind::Write => (
                "/v3/kv/put",
                format!(
                    "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                    BASE64.encode(&key),
                    self.value_b64
                ),
            ),
            OpKind::Read => ("/v3/kv/range", range_json(&key, self.serializable)),
        };
        let (status, answer) = self
            .connection
            .request(
                Method::POST,
                path,
                Some("application/json"),
                Bytes::from(body),
            )
            .await
            .map_err(OpFailure)?;
        if status == StatusCode::OK {
            Ok(())
        } else {
            let answer = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            Err(OpFailure(format!("POST {path}: {status}: {answer}")))
        }
    }
}

impl Driver for EtcdDriver {
    type Client = EtcdClient;

    async fn client(&self, index: usize) -> Result<EtcdClient, BenchError> {
        let endpoint = &self.endpoints[index % self.endpoints.len()];
        let connection =
            Connection::connect(endpoint)
                .await
                .map_err(|reason| BenchError::Endpoint {
                    endpoint: endpoint.to_string(),
                    reason,
                })?;
        Ok(EtcdClient {
            connection,
            value_b64: self.value_b64.clone(),
            serializable: self.serializable,
        })
    }

    async fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        let mut all = true;
        let (mut fsyncs, mut seconds, mut entries) = (0.0, 0.0, 0.0);
        for endpoint in &self.endpoints {
            match get_text(endpoint, "/metrics").await {
                Ok(text) => {
                    fsyncs += sum_of(&text, ETCD_FSYNC_COUNT).unwrap_or(0.0);
                    seconds += sum_of(&text, ETCD_FSYNC_SUM).unwrap_or(0.0);
                    entries += sum_of(&text, ETCD_PROPOSALS_COMMITTED).unwrap_or(0.0);
                }
                Err(reason) => {
                    eprintln!("warning: fsync counts unknown: {reason}");
                    all = false;
                }
            }
        }
        if all {
            counters.fsyncs = Some(fsyncs);
            counters.fsync_seconds = Some(seconds);
            counters.entries = Some(entries);
        }
        if let Some(first) = self.endpoints.first() {
            counters.position =
                post_json(first, "/v3/kv/range", range_json(REVISION_PROBE_KEY, false))
                    .await
                    .ok()
                    .and_then(|answer| revision_of(&answer));
        }
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_from_a_range_answer() {
        let answer = br#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"42","raft_term":"2"}}"#;
        assert_eq!(revision_of(answer), Some(42));
        assert_eq!(revision_of(br#"{"header":{"revision":7}}"#), Some(7));
        assert_eq!(revision_of(b"{}"), None);
        assert_eq!(revision_of(b"garbage"), None);
    }

    #[test]
    fn range_body_is_base64_json() {
        assert_eq!(
            range_json(b"k", true),
            r#"{"key":"aw==","serializable":true}"#
        );
    }
}
