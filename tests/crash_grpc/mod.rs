//! The crash test's gRPC clients: etcd's v3 API on the same cluster and the
//! same shared keys as the HTTP clients, so that both APIs contend in one
//! history.
//!
//! Each client thread runs its own single-threaded tokio runtime with one
//! lazily connected tonic channel per node, and does, on a random node:
//! compare-and-swap transactions (`Txn { compare: value == expected, or
//! create_revision == 0 for "absent"; success: put; failure: range }`,
//! recorded as [`Input::Cas`]: swapped, or not swapped and what the
//! failure branch read), linearizable ranges of one key (recorded as gets)
//! and plain puts. The expected value of a swap is what this client last
//! saw on that key, so that swaps often succeed and often race.
//!
//! Any error of a write is an unknown outcome (which is always sound: it
//! may or may not have applied), a failed range is dropped. A status no
//! correct server gives during crashes (anything but UNAVAILABLE, UNKNOWN
//! for a transport error, CANCELLED or DEADLINE_EXCEEDED) is kept as
//! unexpected and fails the test.

use super::{ClientStats, Load, millis, shared_key};
use ringraft::etcd::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use ringraft::etcd::pb::etcdserverpb::kv_client::KvClient;
use ringraft::etcd::pb::etcdserverpb::request_op::Request;
use ringraft::etcd::pb::etcdserverpb::response_op::Response;
use ringraft::etcd::pb::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest,
};
use ringraft::linearizability::{Input, Output, Token};
use ringraft::raft::rng::Rng;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Longer than the servers' request timeout, so that a server's answer
/// usually arrives before the client gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// One gRPC client thread until the load stops.
pub fn run_grpc_client(client: u64, load: &Load, seed: u64) -> ClientStats {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for a gRPC client");
    // The channels are made inside the runtime: a lazy channel needs its
    // reactor.
    runtime.block_on(async { GrpcClient::new(client, load, seed).run().await })
}

struct GrpcClient<'a> {
    client: u64,
    load: &'a Load,
    rng: Rng,
    nodes: Vec<KvClient<Channel>>,
    /// The value this client last saw on each shared key (`None`: absent).
    last_seen: HashMap<String, Option<Vec<u8>>>,
    stats: ClientStats,
}

impl<'a> GrpcClient<'a> {
    fn new(client: u64, load: &'a Load, seed: u64) -> GrpcClient<'a> {
        let nodes = load
            .addrs
            .iter()
            .map(|addr| {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .expect("a node's URL")
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(CALL_TIMEOUT)
                    .connect_lazy();
                KvClient::new(channel)
            })
            .collect();
        GrpcClient {
            client,
            load,
            rng: Rng::new(seed),
            nodes,
            last_seen: HashMap::new(),
            stats: ClientStats::default(),
        }
    }

    async fn run(mut self) -> ClientStats {
        let mut seq = 0u64;
        while !self.load.stop.load(Ordering::Relaxed) {
            seq += 1;
            let key = shared_key(self.rng.below(super::SHARED_KEYS as u64));
            let node = self.rng.below(self.nodes.len() as u64) as usize;
            let value = format!("g{}-{seq}", self.client).into_bytes();
            let ok = match self.rng.below(100) {
                0..55 => self.swap(node, key, value).await,
                55..80 => self.range(node, key).await,
                _ => self.put(node, key, value).await,
            };
            if !ok {
                tokio::time::sleep(millis(&mut self.rng, 10, 50)).await;
            }
        }
        self.stats
    }

    /// A compare-and-swap from the value last seen; false on an error.
    async fn swap(&mut self, node: usize, key: String, value: Vec<u8>) -> bool {
        let expected = self.last_seen.get(&key).cloned().flatten();
        self.stats.swaps += 1;
        let input = Input::Cas {
            key: key.clone().into_bytes(),
            expected: expected.clone(),
            value: value.clone(),
        };
        let token = self.load.recorder.invoke(self.client, input);
        let request = cas_request(&key, expected.as_deref(), &value);
        match self.nodes[node].txn(request).await {
            Ok(response) => {
                let response = response.into_inner();
                if response.succeeded {
                    self.stats.swaps_swapped += 1;
                    self.wrote(token, key, value);
                } else {
                    let found = match response.responses.first().and_then(|r| r.response.as_ref()) {
                        Some(Response::ResponseRange(range)) => value_of(range),
                        other => {
                            self.stats
                                .unexpected
                                .push(format!("txn failure branch answered {other:?}"));
                            None
                        }
                    };
                    self.stats.swaps_refused += 1;
                    self.read(token, key, found);
                }
                true
            }
            Err(status) => {
                self.stats.unknown_writes += 1;
                self.failed(token, "txn", &status);
                false
            }
        }
    }

    /// A linearizable range of one key, recorded as a get.
    async fn range(&mut self, node: usize, key: String) -> bool {
        self.stats.gets += 1;
        let token = self.load.recorder.invoke(
            self.client,
            Input::Get {
                key: key.clone().into_bytes(),
            },
        );
        let request = RangeRequest {
            key: key.clone().into_bytes().into(),
            ..RangeRequest::default()
        };
        match self.nodes[node].range(request).await {
            Ok(response) => {
                let found = value_of(&response.into_inner());
                if found.is_some() {
                    self.stats.gets_found += 1;
                } else {
                    self.stats.gets_absent += 1;
                }
                self.read(token, key, found);
                true
            }
            Err(status) => {
                self.stats.failed_gets += 1;
                self.failed(token, "range", &status);
                false
            }
        }
    }

    /// A plain put.
    async fn put(&mut self, node: usize, key: String, value: Vec<u8>) -> bool {
        self.stats.puts += 1;
        let input = Input::Put {
            key: key.clone().into_bytes(),
            value: value.clone(),
        };
        let token = self.load.recorder.invoke(self.client, input);
        let request = PutRequest {
            key: key.clone().into_bytes().into(),
            value: value.clone().into(),
            ..PutRequest::default()
        };
        match self.nodes[node].put(request).await {
            Ok(_) => {
                self.stats.acknowledged_puts += 1;
                self.wrote(token, key, value);
                true
            }
            Err(status) => {
                self.stats.unknown_writes += 1;
                self.failed(token, "put", &status);
                false
            }
        }
    }

    /// Records an acknowledged write (a put, a swap that swapped) of
    /// `value` to `key`.
    fn wrote(&mut self, token: Token, key: String, value: Vec<u8>) {
        self.load.recorder.complete(token, Output::Ok);
        self.load.acknowledged.fetch_add(1, Ordering::Relaxed);
        self.last_seen.insert(key, Some(value));
    }

    /// Records what a read (a range, a swap that did not swap) found.
    fn read(&mut self, token: Token, key: String, found: Option<Vec<u8>>) {
        self.last_seen.insert(key, found.clone());
        self.load.recorder.complete(token, Output::Value(found));
    }

    /// Records a failed call as unknown (a write may still apply; a read
    /// is dropped), counts it by its status, and keeps a status no correct
    /// server gives here.
    fn failed(&mut self, token: Token, call: &str, status: &Status) {
        self.load.recorder.complete_unknown(token);
        let cause = format!("grpc {call} {:?}", status.code());
        let entry = self.stats.failures.entry(cause).or_default();
        entry.0 += 1;
        let expected = matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
        );
        if !expected {
            self.stats.unexpected.push(format!("grpc {call}: {status}"));
        }
    }
}

/// The value a range of one key found (`None`: absent).
fn value_of(range: &RangeResponse) -> Option<Vec<u8>> {
    range.kvs.first().map(|kv| kv.value.to_vec())
}

/// `if key == expected (absent: create_revision == 0) then put value else
/// range key`.
fn cas_request(key: &str, expected: Option<&[u8]>, value: &[u8]) -> TxnRequest {
    let key_bytes = bytes::Bytes::from(key.as_bytes().to_vec());
    let compare = match expected {
        Some(expected) => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key_bytes.clone(),
            target_union: Some(TargetUnion::Value(expected.to_vec().into())),
            ..Compare::default()
        },
        None => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key_bytes.clone(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            ..Compare::default()
        },
    };
    let put = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key_bytes.clone(),
            value: value.to_vec().into(),
            ..PutRequest::default()
        })),
    };
    let range = RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key_bytes,
            ..RangeRequest::default()
        })),
    };
    TxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: vec![range],
    }
}
