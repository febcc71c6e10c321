//! Driving running `ringraft serve` processes through their HTTP API
//! (`--target http://host:port[,…]`).
//!
//! Owns: [`HttpDriver`]: client `i` keeps one keep-alive connection to
//! endpoint `i mod n`; writes are `PUT /v1/kv/{key}` with the raw value,
//! reads `GET /v1/kv/{key}?consistency=…`; the counters come from each
//! endpoint's `/metrics` (fsyncs and entries per fsync, summed over the
//! endpoints) and the first endpoint's `/v1/status` (applied index).
//! Guarantees: a write counts only on `200` (the entry applied on that
//! node, durable on a quorum); a read on `200` or `404` (answered: the
//! key may not have been written yet). Any other answer is a failure
//! with its status and body.
//! May not touch: the server (it only sends requests).

use super::driver::{Client, Driver, OpFailure};
use super::error::BenchError;
use super::http_conn::{Connection, get_text};
use super::options::{Endpoint, Workload};
use super::scrape::{Counters, sum_of};
use super::workload::{Op, OpKind, key_bytes, value_bytes};
use crate::metrics::{ENTRIES_PER_FSYNC, WAL_FSYNC_DURATION_SECONDS};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};

/// Drives ringraft servers over HTTP.
#[derive(Debug)]
pub struct HttpDriver {
    endpoints: Vec<Endpoint>,
    value: Bytes,
    consistency: &'static str,
}

impl HttpDriver {
    /// A driver for `endpoints`; checks that each answers `/v1/status`.
    pub async fn new(
        endpoints: Vec<Endpoint>,
        workload: &Workload,
    ) -> Result<HttpDriver, BenchError> {
        for endpoint in &endpoints {
            get_text(endpoint, "/v1/status")
                .await
                .map_err(|reason| BenchError::Endpoint {
                    endpoint: endpoint.to_string(),
                    reason: format!("not a ringraft server? {reason}"),
                })?;
        }
        Ok(HttpDriver {
            endpoints,
            value: Bytes::from(value_bytes(workload.value_size)),
            consistency: workload.read_consistency.name(),
        })
    }
}

/// One client's connection.
#[derive(Debug)]
pub struct HttpClient {
    connection: Connection,
    value: Bytes,
    consistency: &'static str,
}

fn failure(what: &str, status: StatusCode, body: &[u8]) -> OpFailure {
    let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    OpFailure(format!("{what}: {status}: {body}"))
}

impl Client for HttpClient {
    async fn execute(&mut self, op: Op) -> Result<(), OpFailure> {
        // Keys are ASCII letters, digits and '-': no escaping needed.
        let key = String::from_utf8_lossy(&key_bytes(op.key)).into_owned();
        match op.kind {
            OpKind::Write => {
                let path = format!("/v1/kv/{key}");
                let (status, body) = self
                    .connection
                    .request(Method::PUT, &path, None, self.value.clone())
                    .await
                    .map_err(OpFailure)?;
                if status == StatusCode::OK {
                    Ok(())
                } else {
                    Err(failure("PUT", status, &body))
                }
            }
            OpKind::Read => {
                let path = format!("/v1/kv/{key}?consistency={}", self.consistency);
                let (status, body) = self
                    .connection
                    .request(Method::GET, &path, None, Bytes::new())
                    .await
                    .map_err(OpFailure)?;
                if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    Err(failure("GET", status, &body))
                }
            }
        }
    }
}

/// The applied index in a `/v1/status` answer.
fn applied_of(status_json: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(status_json)
        .ok()?
        .get("applied")?
        .as_u64()
}

impl Driver for HttpDriver {
    type Client = HttpClient;

    async fn client(&self, index: usize) -> Result<HttpClient, BenchError> {
        let endpoint = &self.endpoints[index % self.endpoints.len()];
        let connection =
            Connection::connect(endpoint)
                .await
                .map_err(|reason| BenchError::Endpoint {
                    endpoint: endpoint.to_string(),
                    reason,
                })?;
        Ok(HttpClient {
            connection,
            value: self.value.clone(),
            consistency: self.consistency,
        })
    }

    async fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        let fsync_count = format!("{WAL_FSYNC_DURATION_SECONDS}_count");
        let fsync_sum = format!("{WAL_FSYNC_DURATION_SECONDS}_sum");
        let entries_sum = format!("{ENTRIES_PER_FSYNC}_sum");
        let mut all = true;
        let (mut fsyncs, mut seconds, mut entries) = (0.0, 0.0, 0.0);
        for endpoint in &self.endpoints {
            match get_text(endpoint, "/metrics").await {
                Ok(text) => {
                    // A server that has not synced yet has no sample:
                    // that is 0, not unknown.
                    fsyncs += sum_of(&text, &fsync_count).unwrap_or(0.0);
                    seconds += sum_of(&text, &fsync_sum).unwrap_or(0.0);
                    entries += sum_of(&text, &entries_sum).unwrap_or(0.0);
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
            counters.position = get_text(first, "/v1/status")
                .await
                .ok()
                .and_then(|text| applied_of(&text));
        }
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_index_from_status() {
        assert_eq!(
            applied_of(r#"{"id":1,"leader":1,"term":2,"commit":10,"applied":9}"#),
            Some(9)
        );
        assert_eq!(applied_of("not json"), None);
        assert_eq!(applied_of(r#"{"applied":"9"}"#), None);
    }
}
