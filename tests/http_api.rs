//! The client HTTP API (`ringraft::http`) served with `axum::serve` on
//! 127.0.0.1 in front of in-process nodes, talked to over real HTTP/1.1
//! connections: the key-value endpoints and their edge cases (bytes keys,
//! limits, malformed requests), membership, leader transfer, status,
//! health under isolation, and metrics.

mod node_common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use node_common::*;
use ringraft::http::{HttpState, router};
use ringraft::node::Consistency;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};

/// Serves the API of `state` on an ephemeral loopback port.
async fn serve(state: HttpState) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    addr
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn error(&self) -> String {
        let body = self.json();
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {body}"))
            .to_string()
    }
}

/// One request on a fresh connection. `path` goes on the wire as is, so
/// percent-encoding is the test's own.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "GET", path, None, Bytes::new()).await
}

async fn put(addr: SocketAddr, path: &str, value: impl Into<Bytes>) -> Reply {
    call(addr, "PUT", path, None, value).await
}

async fn delete(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "DELETE", path, None, Bytes::new()).await
}

async fn post_json(addr: SocketAddr, path: &str, body: Value) -> Reply {
    call(
        addr,
        "POST",
        path,
        Some("application/json"),
        body.to_string(),
    )
    .await
}

/// Repeats `request` while it answers 503 (no leader yet, an election
/// under way), within the deadline.
async fn until_available<F, Fut>(what: &str, mut request: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = request().await;
        if reply.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            return reply;
        }
        assert_eq!(reply.headers.get(header::RETRY_AFTER).is_some(), {
            let error = reply.error();
            !error.contains("stopped")
        });
        eprintln!("{what}: 503 {}", reply.error());
        sleep(Duration::from_millis(50)).await;
    }
}

fn index_of(reply: &Reply) -> u64 {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["index"]
        .as_u64()
        .unwrap_or_else(|| panic!("no index in {}", reply.json()))
}

fn decoded(text: &Value) -> Vec<u8> {
    BASE64
        .decode(text.as_str().expect("a base64 string"))
        .expect("valid base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_endpoints_on_one_node() {
    let cluster = Cluster::new(&[1]);
    cluster.leader().await;
    let addr = serve(HttpState::new(cluster.node(1).clone())).await;

    // Round trip.
    let written = index_of(&put(addr, "/v1/kv/hello", "world").await);
    assert!(written > 0);
    let reply = get(addr, "/v1/kv/hello").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(&reply.body[..], b"world");
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    let reply = get(addr, "/v1/kv/hello?consistency=serializable").await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &b"world"[..])
    );
    let reply = get(addr, "/v1/kv/hello?consistency=linearizable").await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &b"world"[..])
    );
    let reply = get(addr, "/v1/kv/hello?consistency=strong").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error().contains("consistency"));

    let deleted = index_of(&delete(addr, "/v1/kv/hello").await);
    assert!(deleted > written);
    let reply = get(addr, "/v1/kv/hello").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "key not found");
    assert_eq!(
        get(addr, "/v1/kv/never-written?consistency=serializable")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Deleting what is not there is still a write.
    index_of(&delete(addr, "/v1/kv/never-written").await);

    // Keys are bytes: percent-decoded, case-insensitive hex, %2F inside.
    index_of(&put(addr, "/v1/kv/%00%FF", vec![1u8, 2, 3]).await);
    let reply = get(addr, "/v1/kv/%00%ff").await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &[1u8, 2, 3][..])
    );
    let node = cluster.node(1);
    assert_eq!(
        node.get(&[0x00, 0xff], Consistency::Serializable)
            .await
            .expect("get"),
        Some(vec![1, 2, 3])
    );
    index_of(&put(addr, "/v1/kv/dir%2Fname+x", "v").await);
    assert_eq!(
        node.get(b"dir/name+x", Consistency::Serializable)
            .await
            .expect("get"),
        Some(b"v".to_vec())
    );
    // A raw slash ends the segment: not a key route.
    let reply = get(addr, "/v1/kv/dir/name+x").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "no such endpoint");

    for bad in ["/v1/kv/%ZZ", "/v1/kv/ab%2", "/v1/kv/%"] {
        let reply = put(addr, bad, "v").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(reply.error().contains("percent"), "{bad}");
        assert_eq!(get(addr, bad).await.status, StatusCode::BAD_REQUEST);
    }
    let reply = put(addr, "/v1/kv/", "v").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "empty key");

    // Unknown paths and methods answer JSON too.
    let reply = call(addr, "PATCH", "/v1/kv/x", None, Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    reply.error();
    let reply = get(addr, "/v2/keys").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    reply.error();

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_scan_shows_bytes_as_base64_and_honours_the_limit() {
    let cluster = Cluster::new(&[1]);
    cluster.leader().await;
    let addr = serve(HttpState::new(cluster.node(1).clone())).await;
    for n in 1..=5 {
        index_of(&put(addr, &format!("/v1/kv/p%2F{n}"), format!("v{n}")).await);
    }
    index_of(&put(addr, "/v1/kv/q", "other").await);
    index_of(&put(addr, "/v1/kv/p%2F%FF", vec![0xfeu8]).await);

    let reply = get(addr, "/v1/kv?prefix=p%2F&limit=3").await;
    assert_eq!(reply.status, StatusCode::OK);
    let pairs = reply.json();
    let pairs = pairs.as_array().expect("a list");
    assert_eq!(pairs.len(), 3);
    for (n, pair) in (1..=3).zip(pairs) {
        assert_eq!(decoded(&pair["key"]), format!("p/{n}").into_bytes());
        assert_eq!(decoded(&pair["value"]), format!("v{n}").into_bytes());
    }

    let reply = get(addr, "/v1/kv?prefix=p/&consistency=serializable").await;
    let pairs = reply.json();
    let pairs = pairs.as_array().expect("a list");
    assert_eq!(pairs.len(), 6, "{pairs:?}");
    let last = pairs.last().expect("a pair");
    assert_eq!(decoded(&last["key"]), b"p/\xff".to_vec());
    assert_eq!(decoded(&last["value"]), vec![0xfe]);

    // No prefix: every key.
    let reply = get(addr, "/v1/kv").await;
    assert_eq!(reply.json().as_array().map(Vec::len), Some(7));

    for bad in [
        "limit=0",
        "limit=10001",
        "limit=abc",
        "limit=-1",
        "prefix=%G0",
    ] {
        let reply = get(addr, &format!("/v1/kv?{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        reply.error();
    }
    let long_prefix = "k".repeat(4097);
    let reply = get(addr, &format!("/v1/kv?prefix={long_prefix}")).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_oversized_keys_and_values_without_writing() {
    let cluster = Cluster::new(&[1]);
    cluster.leader().await;
    let addr = serve(HttpState::new(cluster.node(1).clone())).await;

    let key = "k".repeat(4096);
    index_of(&put(addr, &format!("/v1/kv/{key}"), "v").await);
    let long_key = "k".repeat(4097);
    let reply = put(addr, &format!("/v1/kv/{long_key}"), "v").await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error().contains("key"));
    let reply = get(addr, &format!("/v1/kv/{long_key}")).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let max = 1536 * 1024;
    let applied = cluster.node(1).applied_index();
    let reply = put(addr, "/v1/kv/big", vec![7u8; max + 1]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error().contains("value"));
    assert_eq!(get(addr, "/v1/kv/big").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        cluster.node(1).applied_index(),
        applied,
        "nothing was proposed"
    );

    index_of(&put(addr, "/v1/kv/big", vec![7u8; max]).await);
    let reply = get(addr, "/v1/kv/big").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), max);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_membership_requests_are_refused() {
    let cluster = Cluster::new(&[1]);
    cluster.leader().await;
    let addr = serve(HttpState::new(cluster.node(1).clone())).await;

    let json = Some("application/json");
    let cases: [(Option<&str>, &str); 6] = [
        (json, "{not json"),
        (json, ""),
        (None, r#"{"id":4}"#),
        (Some("text/plain"), r#"{"id":4}"#),
        (json, r#"{"id":"four"}"#),
        (json, r#"{"id":4,"is_learner":true}"#),
    ];
    for (content_type, body) in cases {
        let reply = call(addr, "POST", "/v1/members", content_type, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{content_type:?} {body}"
        );
        reply.error();
    }
    let reply = post_json(addr, "/v1/members", json!({"id": 0})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = post_json(addr, "/v1/members", json!({"id": 1})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "already a member");
    let huge = json!({"id": 4, "peer_url": "x".repeat(100 * 1024)});
    let reply = post_json(addr, "/v1/members", huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let reply = delete(addr, "/v1/members/99").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.error().contains("not a member"));
    assert_eq!(
        delete(addr, "/v1/members/0x63").await.status,
        StatusCode::NOT_FOUND
    );
    for bad in ["abc", "0", "-1", "0xZZ"] {
        let reply = delete(addr, &format!("/v1/members/{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let reply = delete(addr, "/v1/members/1").await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "the last voter");
    let reply = call(addr, "POST", "/v1/members/99/promote", None, Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = call(addr, "POST", "/v1/members/1/promote", None, Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "already a voter");
    let reply = post_json(addr, "/v1/leader/transfer", json!({"to": 99})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = post_json(addr, "/v1/leader/transfer", json!({"leader": 1})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Status, health, and no metrics without a handle.
    let reply = get(addr, "/v1/status").await;
    assert_eq!(reply.status, StatusCode::OK);
    let status = reply.json();
    assert_eq!(status["id"], 1);
    assert_eq!(status["leader"], 1);
    assert_eq!(status["role"], "StateLeader");
    assert_eq!(status["voters"], json!([1]));
    assert_eq!(status["learners"], json!([]));
    assert!(status["commit"].as_u64() >= Some(1));
    let reply = get(addr, "/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"health": "true"}));
    assert_eq!(get(addr, "/metrics").await.status, StatusCode::NOT_FOUND);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_over_http() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let leader = cluster.leader().await;
    let initial: BTreeMap<u64, String> = [1, 2, 3]
        .into_iter()
        .map(|id| (id, format!("http://127.0.0.1:{}", 2379 + id)))
        .collect();
    let mut addrs = BTreeMap::new();
    for id in [1, 2, 3] {
        let mut state = HttpState::new(cluster.node(id).clone());
        state.initial_peer_urls = initial.clone();
        addrs.insert(id, serve(state).await);
    }
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let (writer, reader) = (followers[0], followers[1]);

    // A write on a follower is forwarded by raft; a linearizable read on
    // another node sees it.
    let reply = until_available("put on a follower", || {
        put(addrs[&writer], "/v1/kv/from-follower", "yes")
    })
    .await;
    index_of(&reply);
    let reply = until_available("get", || get(addrs[&reader], "/v1/kv/from-follower")).await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &b"yes"[..])
    );

    for id in [1, 2, 3] {
        let reply = get(addrs[&id], "/v1/status").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["leader"], leader);
        assert_eq!(reply.json()["voters"], json!([1, 2, 3]));
        assert_eq!(get(addrs[&id], "/health").await.status, StatusCode::OK);
    }

    let members = get(addrs[&reader], "/v1/members").await.json();
    assert_eq!(members["leader"], leader);
    let list = members["members"].as_array().expect("members");
    assert_eq!(list.len(), 3);
    for (member, id) in list.iter().zip([1u64, 2, 3]) {
        assert_eq!(member["id"], id);
        assert_eq!(member["peer_url"], initial[&id]);
        assert_eq!(member["learner"], false);
        assert_eq!(member["is_leader"], id == leader);
    }

    // Leader transfer to a follower, then membership through the new
    // leader.
    let target = writer;
    let reply = until_available("transfer", || {
        post_json(addrs[&leader], "/v1/leader/transfer", json!({"to": target}))
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    assert_eq!(reply.json(), json!({"leader": target}));
    assert_eq!(cluster.leader().await, target);
    let leader = target;

    let learner = json!({"id": 4, "peer_url": "http://127.0.0.1:9", "learner": true});
    let reply = until_available("add learner", || {
        post_json(addrs[&leader], "/v1/members", learner.clone())
    })
    .await;
    let added = index_of(&reply);
    let reply = post_json(addrs[&leader], "/v1/members", learner.clone()).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    for id in [1, 2, 3] {
        wait_applied(cluster.node(id), added).await;
        let members = get(addrs[&id], "/v1/members").await.json();
        let list = members["members"].as_array().expect("members");
        assert_eq!(list.len(), 4);
        assert_eq!(
            list[3],
            json!({"id": 4, "peer_url": "http://127.0.0.1:9", "client_url": "", "learner": true, "is_leader": false}),
            "a member that has not published its client URL shows an empty one"
        );
        assert_eq!(members["leader"], leader);
    }
    let reply = get(addrs[&leader], "/v1/status").await.json();
    assert_eq!(reply["learners"], json!([4]));

    // Promote and remove it again (it never ran: three of four voters are
    // still a quorum).
    let reply = until_available("promote", || {
        call(
            addrs[&leader],
            "POST",
            "/v1/members/4/promote",
            None,
            Bytes::new(),
        )
    })
    .await;
    index_of(&reply);
    let members = get(addrs[&leader], "/v1/members").await.json();
    assert_eq!(members["members"][3]["learner"], false);
    let reply = until_available("remove", || delete(addrs[&leader], "/v1/members/4")).await;
    index_of(&reply);
    assert_eq!(
        delete(addrs[&leader], "/v1/members/4").await.status,
        StatusCode::NOT_FOUND
    );

    // An isolated leader steps down (check-quorum): its health turns 503,
    // the others elect a new leader and stay healthy.
    cluster.network.isolate(leader);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = get(addrs[&leader], "/health").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.json()["health"], "false");
            reply.error();
            break;
        }
        assert!(Instant::now() < deadline, "isolated node still healthy");
        sleep(Duration::from_millis(50)).await;
    }
    let other = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap_or(1);
    let deadline = Instant::now() + DEADLINE;
    while get(addrs[&other], "/health").await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the majority elects no leader");
        sleep(Duration::from_millis(50)).await;
    }
    // A write on the isolated node fails with a retryable 503.
    let reply = put(addrs[&leader], "/v1/kv/lost", "x").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    cluster.network.heal();
    cluster.leader().await;
    let reply = until_available("health after healing", || get(addrs[&leader], "/health")).await;
    assert_eq!(reply.status, StatusCode::OK);

    cluster.shutdown().await;
}

/// The only test that installs a global recorder: the nodes record through
/// the `metrics` facade, so their samples reach the handle only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_renders_the_nodes_metrics() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("install the recorder");
    let cluster = Cluster::new(&[1]);
    cluster.leader().await;
    let mut state = HttpState::new(cluster.node(1).clone());
    state.metrics = Some(handle);
    let addr = serve(state).await;
    index_of(&put(addr, "/v1/kv/m", "v").await);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = get(addr, "/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply.headers[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|t| t.starts_with("text/plain"))
        );
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        if text.contains("ringraft_server_proposals_applied_total") {
            break;
        }
        assert!(Instant::now() < deadline, "no node metrics in {text}");
        sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}
