//! Bad input against a real `ringraft serve` process: garbage and hostile
//! frames on the peer port, bad HTTP requests on the client port. Each gets
//! its documented answer and the node keeps serving. Also `ringraft serve`
//! with no arguments, as the README's first command runs it.

mod server_common;

use ringraft::server::cluster_id_of;
use ringraft::server::config::DEFAULT_CLUSTER_TOKEN;
use ringraft::transport::tcp::{MAGIC, PROTOCOL_VERSION};
use server_common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A valid connection preamble from `from` to `to` of the default cluster.
fn preamble(from: u64, to: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&cluster_id_of(DEFAULT_CLUSTER_TOKEN).to_be_bytes());
    bytes.extend_from_slice(&from.to_be_bytes());
    bytes.extend_from_slice(&to.to_be_bytes());
    bytes
}

/// Sends `bytes` to the peer port and reports whether the node closed the
/// connection (EOF or reset) within a few seconds.
fn closed_after(peer: SocketAddr, bytes: &[u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect(peer) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(bytes);
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => {
            error.kind() != std::io::ErrorKind::WouldBlock
                && error.kind() != std::io::ErrorKind::TimedOut
        }
    }
}

fn assert_serving(client: SocketAddr, key: &str) {
    let response = http(client, "PUT", &format!("/v1/kv/{key}"), b"still").expect("PUT");
    assert_eq!(response.status, 200, "{}", response.text());
    let response = http(client, "GET", &format!("/v1/kv/{key}"), b"").expect("GET");
    assert_eq!(response.body, b"still");
}

#[test]
fn hostile_peer_traffic_is_refused_and_the_node_keeps_serving() {
    // Node 3 is a member, so a preamble from it passes and the frames after
    // it are what gets checked; it is stopped, so its frames come only from
    // this test. Nodes 1 and 2 keep a quorum.
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    cluster.procs.get_mut(&3).expect("node 3").kill();
    cluster.leader();
    let node = cluster.proc(1);
    let (peer, client) = (node.peer, node.client);
    assert_serving(client, "k0");

    let mut huge_frame = preamble(3, 1);
    huge_frame.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut truncated = preamble(3, 1);
    truncated.extend_from_slice(&100u32.to_be_bytes());
    truncated.extend_from_slice(&[8, 3, 16]);
    let mut garbage_frame = preamble(3, 1);
    garbage_frame.extend_from_slice(&8u32.to_be_bytes());
    garbage_frame.extend_from_slice(&[0xff; 8]);
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "garbage",
            b"\x00\x01garbage that is no preamble at all....".to_vec(),
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("an unknown peer id", preamble(7, 1)),
        ("a preamble for another node", preamble(3, 2)),
        ("a frame claiming 4 GiB", huge_frame),
        ("a truncated frame", truncated),
        ("an undecodable frame", garbage_frame),
    ];
    for (n, (what, bytes)) in cases.iter().enumerate() {
        let closed = closed_after(peer, bytes);
        // A truncated frame leaves the node waiting for the rest; our
        // side's close ends it. Every other case is closed by the node.
        if *what != "a truncated frame" {
            assert!(closed, "{what}: the node kept the connection open");
        }
        assert!(
            cluster.procs.get_mut(&1).is_some_and(Proc::running),
            "{what} killed the node"
        );
        assert_serving(client, &format!("after{n}"));
    }
}

#[test]
fn bad_http_requests_get_their_documented_errors() {
    let mut cluster = ProcCluster::start(&[1]);
    cluster.leader();
    let client = cluster.proc(1).client;

    let too_big = vec![b'x'; 1536 * 1024 + 1];
    let response = http(client, "PUT", "/v1/kv/big", &too_big).expect("oversized PUT");
    assert_eq!(response.status, 413, "{}", response.text());
    let response = http(client, "GET", "/v1/kv/big", b"").expect("GET");
    assert_eq!(
        response.status, 404,
        "an oversized value was partly written"
    );

    let long_key = "k".repeat(4097);
    let response = http(client, "PUT", &format!("/v1/kv/{long_key}"), b"v").expect("PUT");
    assert_eq!(response.status, 413, "{}", response.text());

    let response = http(client, "POST", "/v1/members", b"{\"id\":").expect("POST");
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json()["error"].is_string(), "{}", response.text());

    let response = http(client, "DELETE", "/v1/members/99", b"").expect("DELETE");
    assert_eq!(response.status, 404, "{}", response.text());

    // Keys are bytes, percent-decoded: invalid UTF-8 round-trips.
    let response = http(client, "PUT", "/v1/kv/%FF%00k", b"binary").expect("PUT");
    assert_eq!(response.status, 200, "{}", response.text());
    let response = http(client, "GET", "/v1/kv/%FF%00k", b"").expect("GET");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"binary"[..])
    );
    let response = http(client, "GET", "/v1/kv/%ZZ", b"").expect("GET");
    assert_eq!(response.status, 400, "{}", response.text());

    assert!(cluster.procs.get_mut(&1).is_some_and(Proc::running));
    assert_serving(client, "end");
}

#[test]
fn serve_without_arguments_runs_the_embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log");
    let mut child = Command::new(BINARY)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ringraft");
    let client = SocketAddr::from(([127, 0, 0, 1], 7379));
    wait_healthy(client);
    let response = http(client, "PUT", "/v1/kv/readme", b"works").expect("PUT");
    assert_eq!(response.status, 200, "{}", response.text());
    let response = http(client, "GET", "/v1/kv/readme", b"").expect("GET");
    assert_eq!(response.body, b"works");
    assert!(dir.path().join("ringraft-data").join("wal").is_dir());
    // SIGTERM: a graceful stop, exit status 0.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status}");
}
