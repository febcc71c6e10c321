//! Driving any etcd v3 gRPC endpoint, etcd or ringraft
//! (`--target grpc://host:port[,…]`), with one client code for both.
//!
//! Owns: [`GrpcDriver`] and [`GrpcClient`]: client `i` has its own
//! HTTP/2 connection (a tonic [`Channel`]) to endpoint `i mod n`; writes
//! are `KV.Put{key, value}`, reads `KV.Range{key, serializable}` per the
//! workload's read consistency; the counters come from each endpoint's
//! `/metrics` over HTTP/1.1 on the same port (etcd's names,
//! `etcd_disk_wal_fsync_duration_seconds` and
//! `etcd_server_proposals_committed_total`, where the endpoint has them,
//! else ringraft's, as [`super::http_target`] reads them) and the first
//! endpoint's revision (a linearizable range on a key the bench never
//! writes).
//! Guarantees: an operation counts only on an `OK` status (a put is
//! answered once applied and durable on a quorum; a range of a missing key
//! is `OK` with no `kvs`); any other status is a failure naming the call,
//! the code and the server's message. A failed call leaves the client
//! usable: the channel reconnects by itself. [`GrpcDriver::new`] refuses
//! an endpoint that does not answer a range, with why.
//! May not touch: the server (it only sends requests), the generated code
//! in [`crate::etcd::pb`] (it only uses it).
//!
//! One connection per client, not a few shared ones: the HTTP driver and
//! the JSON-gateway driver give each client its own keep-alive
//! connection, so this one does too, and a comparison across targets at
//! the same `--clients` has the same number of connections. (etcd's own
//! `benchmark` tool multiplexes clients over `--conns` connections, 1 by
//! default; with `--conns` equal to `--clients` it matches this.) HTTP/2
//! multiplexing would let fewer connections carry the same clients, but
//! then the server's per-connection costs would differ between targets.
//!
//! Plaintext only (HTTP/2 without TLS, "h2c"): TLS is out of scope here;
//! a server that requires it refuses the connection and
//! [`GrpcDriver::new`] says so.

use super::driver::{Client, Driver, OpFailure};
use super::error::BenchError;
use super::etcd_target::{ETCD_FSYNC_COUNT, ETCD_FSYNC_SUM, ETCD_PROPOSALS_COMMITTED};
use super::http_conn::get_text;
use super::options::{Endpoint, ReadConsistency, Workload};
use super::scrape::{Counters, sum_of};
use super::workload::{Op, OpKind, key_bytes, value_bytes};
use crate::etcd::pb::etcdserverpb::kv_client::KvClient;
use crate::etcd::pb::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use crate::metrics::{ENTRIES_PER_FSYNC, WAL_FSYNC_DURATION_SECONDS};
use bytes::Bytes;
use std::time::Duration;
use tonic::transport::Channel;

/// The key read for the revision (never written by the bench; the same
/// key as the JSON-gateway driver's).
const REVISION_PROBE_KEY: &[u8] = b"ringraft-bench-revision-probe";
/// Longest a TCP connect + HTTP/2 handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the driver's own ranges (the start-up check, the revision) may
/// take; the clients' operations have the runner's timeout instead.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives etcd v3 gRPC endpoints.
#[derive(Debug)]
pub struct GrpcDriver {
    endpoints: Vec<Endpoint>,
    value: Bytes,
    serializable: bool,
    /// A connection to the first endpoint for the revision (not one of
    /// the clients', so reading counters never waits behind their calls).
    probe: KvClient<Channel>,
}

/// An error and its causes, `a: b: c` (tonic's transport errors say only
/// "transport error" at the top; the cause is below).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A failed call as the runner records it: the call, the code, the
/// server's message (at most 200 characters) and, for a failure on this
/// side (a broken connection), its causes.
fn status_failure(call: &str, status: &tonic::Status) -> String {
    let message = status.message();
    let message = match message.char_indices().nth(200) {
        Some((cut, _)) => &message[..cut],
        None => message,
    };
    let mut text = format!("{call}: {:?}", status.code());
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some(cause) = std::error::Error::source(status) {
        let causes = error_chain(cause);
        if !text.ends_with(&causes) {
            text.push_str(": ");
            text.push_str(&causes);
        }
    }
    text
}

/// Opens one HTTP/2 connection to `endpoint` (plaintext).
async fn connect(endpoint: &Endpoint) -> Result<KvClient<Channel>, BenchError> {
    let refuse = |reason: String| BenchError::Endpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    let channel = Channel::from_shared(format!("http://{}", endpoint.authority()))
        .map_err(|e| refuse(format!("not a valid URI: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| refuse(format!("cannot connect over HTTP/2: {}", error_chain(&e))))?;
    Ok(KvClient::new(channel))
}

/// A range of the probe key; its header's revision.
async fn revision(kv: &mut KvClient<Channel>) -> Result<u64, String> {
    let request = RangeRequest {
        key: Bytes::from_static(REVISION_PROBE_KEY),
        ..RangeRequest::default()
    };
    let answer: RangeResponse = tokio::time::timeout(PROBE_TIMEOUT, kv.range(request))
        .await
        .map_err(|_| format!("Range: no answer within {PROBE_TIMEOUT:?}"))?
        .map_err(|status| status_failure("Range", &status))?
        .into_inner();
    let revision = answer
        .header
        .map(|header| header.revision)
        .ok_or_else(|| "Range: answered without a header".to_string())?;
    // etcd's revision starts at 1; a negative one is not etcd's API.
    u64::try_from(revision).map_err(|_| format!("Range: negative revision {revision}"))
}

impl GrpcDriver {
    /// A driver for `endpoints`; checks that each answers a range with a
    /// revision.
    pub async fn new(
        endpoints: Vec<Endpoint>,
        workload: &Workload,
    ) -> Result<GrpcDriver, BenchError> {
        let mut probe = None;
        for endpoint in &endpoints {
            let mut kv = connect(endpoint).await?;
            revision(&mut kv)
                .await
                .map_err(|reason| BenchError::Endpoint {
                    endpoint: endpoint.to_string(),
                    reason: format!("not an etcd v3 gRPC endpoint with the KV service? {reason}"),
                })?;
            probe.get_or_insert(kv);
        }
        let probe = probe.ok_or_else(|| BenchError::option("--target", "no endpoint"))?;
        Ok(GrpcDriver {
            endpoints,
            value: Bytes::from(value_bytes(workload.value_size)),
            serializable: workload.read_consistency == ReadConsistency::Serializable,
            probe,
        })
    }
}

/// One client's connection.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    kv: KvClient<Channel>,
    value: Bytes,
    serializable: bool,
}

impl Client for GrpcClient {
    async fn execute(&mut self, op: Op) -> Result<(), OpFailure> {
        let key = Bytes::from(key_bytes(op.key));
        match op.kind {
            OpKind::Write => {
                let request = PutRequest {
                    key,
                    value: self.value.clone(),
                    ..PutRequest::default()
                };
                self.kv
                    .put(request)
                    .await
                    .map(drop)
                    .map_err(|status| OpFailure(status_failure("Put", &status)))
            }
            OpKind::Read => {
                let request = RangeRequest {
                    key,
                    serializable: self.serializable,
                    ..RangeRequest::default()
                };
                self.kv
                    .range(request)
                    .await
                    .map(drop)
                    .map_err(|status| OpFailure(status_failure("Range", &status)))
            }
        }
    }

    fn share(&self) -> Option<GrpcClient> {
        // A clone of a tonic client opens another HTTP/2 stream on the
        // same connection.
        Some(self.clone())
    }
}

/// This endpoint's fsyncs, fsync seconds and entries from its `/metrics`
/// text: etcd's names when it has them, else ringraft's.
fn counts_of(metrics: &str) -> (f64, f64, f64) {
    if let Some(fsyncs) = sum_of(metrics, ETCD_FSYNC_COUNT) {
        return (
            fsyncs,
            sum_of(metrics, ETCD_FSYNC_SUM).unwrap_or(0.0),
            sum_of(metrics, ETCD_PROPOSALS_COMMITTED).unwrap_or(0.0),
        );
    }
    // A server that has not synced yet has no sample: that is 0, not
    // unknown.
    (
        sum_of(metrics, &format!("{WAL_FSYNC_DURATION_SECONDS}_count")).unwrap_or(0.0),
        sum_of(metrics, &format!("{WAL_FSYNC_DURATION_SECONDS}_sum")).unwrap_or(0.0),
        sum_of(metrics, &format!("{ENTRIES_PER_FSYNC}_sum")).unwrap_or(0.0),
    )
}

impl Driver for GrpcDriver {
    type Client = GrpcClient;

    async fn client(&self, index: usize) -> Result<GrpcClient, BenchError> {
        let endpoint = &self.endpoints[index % self.endpoints.len()];
        Ok(GrpcClient {
            kv: connect(endpoint).await?,
            value: self.value.clone(),
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
                    let (f, s, e) = counts_of(&text);
                    fsyncs += f;
                    seconds += s;
                    entries += e;
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
        let mut probe = self.probe.clone();
        counters.position = revision(&mut probe).await.ok();
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_names_first_then_ringraft_names() {
        let etcd = "etcd_disk_wal_fsync_duration_seconds_count 7\n\
                    etcd_disk_wal_fsync_duration_seconds_sum 0.5\n\
                    etcd_server_proposals_committed_total 30\n";
        assert_eq!(counts_of(etcd), (7.0, 0.5, 30.0));
        let ringraft = format!(
            "{WAL_FSYNC_DURATION_SECONDS}_count 4\n\
             {WAL_FSYNC_DURATION_SECONDS}_sum 0.25\n\
             {ENTRIES_PER_FSYNC}_sum 12\n"
        );
        assert_eq!(counts_of(&ringraft), (4.0, 0.25, 12.0));
        assert_eq!(counts_of(""), (0.0, 0.0, 0.0), "no sample yet is 0");
    }

    #[test]
    fn failures_name_call_code_and_message() {
        let status = tonic::Status::resource_exhausted("etcdserver: mvcc: database space exceeded");
        assert_eq!(
            status_failure("Put", &status),
            "Put: ResourceExhausted: etcdserver: mvcc: database space exceeded"
        );
        assert_eq!(
            status_failure("Range", &tonic::Status::unimplemented("")),
            "Range: Unimplemented"
        );
        let long = tonic::Status::internal("é".repeat(500));
        assert_eq!(
            status_failure("Range", &long).chars().count(),
            "Range: Internal: ".len() + 200
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_an_endpoint_error() {
        // A port that was free a moment ago: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let endpoint = Endpoint {
            host: "127.0.0.1".to_string(),
            port,
        };
        let workload = Workload {
            value_size: 8,
            key_space: 10,
            read_ratio: 0.0,
            read_consistency: ReadConsistency::Linearizable,
        };
        match GrpcDriver::new(vec![endpoint], &workload).await {
            Err(BenchError::Endpoint { endpoint, reason }) => {
                assert_eq!(endpoint, format!("127.0.0.1:{port}"));
                assert!(reason.contains("cannot connect"), "{reason}");
            }
            other => panic!("expected an endpoint error, got {other:?}"),
        }
    }
}
