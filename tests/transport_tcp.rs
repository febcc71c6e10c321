//! The TCP transport end to end over loopback: ordered delivery both ways,
//! reconnecting to a peer that starts late or restarts, refusing bad input
//! on the listening socket (each case closes that connection and the
//! transport keeps serving a good peer), a full queue, removing a peer,
//! size limits and the traffic metrics (with the round-trip time of
//! heartbeats).
//!
//! Raw sockets build the preamble and frames by hand from the format in
//! `ringraft::transport::tcp`'s docs, so these tests also pin that format.
//! Timeouts here only keep a broken build from hanging; nothing asserts
//! speed.

use ringraft::metrics::{
    PEER_RECEIVED_BYTES_TOTAL, PEER_ROUND_TRIP_TIME_SECONDS, PEER_SEND_FAILURES_TOTAL,
    PEER_SENT_BYTES_TOTAL, PEER_SENT_MESSAGES_TOTAL,
};
use ringraft::raftpb::{Message, MessageType, Snapshot};
use ringraft::transport::{
    PeerInbox, TcpConfig, TcpTransport, Transport, TransportError, peer_inbox,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLUSTER: u64 = 0xc1c1;
/// Long enough that only a hung test reaches it.
const HANG: Duration = Duration::from_secs(30);

fn config() -> TcpConfig {
    TcpConfig {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        ..TcpConfig::default()
    }
}

struct Node {
    transport: TcpTransport,
    inbox: PeerInbox,
    addr: SocketAddr,
}

async fn start_on(id: u64, addr: SocketAddr, config: TcpConfig) -> Node {
    // The address may still be held by a listener being torn down.
    let listener = tokio::time::timeout(HANG, async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("address free again");
    let transport = TcpTransport::new(id, CLUSTER, config).expect("transport");
    let (sender, inbox) = peer_inbox(1024);
    let addr = transport.listen(listener, sender).expect("listens");
    Node {
        transport,
        inbox,
        addr,
    }
}

async fn start(id: u64) -> Node {
    start_on(id, "127.0.0.1:0".parse().expect("address"), config()).await
}

/// Two nodes, 1 and 2, that know each other.
async fn pair() -> (Node, Node) {
    let one = start(1).await;
    let two = start(2).await;
    one.transport.add_peer(2, &two.addr.to_string());
    two.transport.add_peer(1, &format!("http://{}", one.addr));
    (one, two)
}

fn app(from: u64, to: u64, index: u64) -> Message {
    Message {
        msg_type: MessageType::MsgApp as i32,
        from,
        to,
        term: 3,
        index,
        context: index.to_be_bytes().to_vec(),
        ..Default::default()
    }
}

fn heartbeat(from: u64, to: u64) -> Message {
    Message {
        msg_type: MessageType::MsgHeartbeat as i32,
        from,
        to,
        ..Default::default()
    }
}

/// The next MsgApp in `inbox`; heartbeats (probes) are skipped.
async fn next_app(inbox: &mut PeerInbox) -> Message {
    tokio::time::timeout(HANG, async {
        loop {
            let message = inbox.recv().await.expect("inbox open");
            if message.msg_type == MessageType::MsgApp as i32 {
                return message;
            }
        }
    })
    .await
    .expect("a message arrives")
}

/// Sends heartbeats, as raft would keep doing, until one arrives.
async fn connect(from: &Node, to: &mut Node) {
    let (from_id, to_id) = (from.transport.node_id(), to.transport.node_id());
    tokio::time::timeout(HANG, async {
        loop {
            let _ = from.transport.send(heartbeat(from_id, to_id));
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(message) = to.inbox.try_recv() {
                if message.msg_type == MessageType::MsgHeartbeat as i32 {
                    return;
                }
            }
        }
    })
    .await
    .expect("peer reached");
}

/// Sends MsgApp `index` from 1 to 2 and checks it arrives.
async fn still_serves(one: &Node, two: &mut Node, index: u64) {
    one.transport.send(app(1, 2, index)).expect("queued");
    assert_eq!(next_app(&mut two.inbox).await.index, index);
}

fn preamble(cluster: u64, from: u64, to: u64) -> Vec<u8> {
    let mut bytes = b"RRFT".to_vec();
    bytes.extend(ringraft::transport::tcp::PROTOCOL_VERSION.to_be_bytes());
    bytes.extend([0, 0]);
    bytes.extend(cluster.to_be_bytes());
    bytes.extend(from.to_be_bytes());
    bytes.extend(to.to_be_bytes());
    bytes
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(body.len())
        .expect("small frame")
        .to_be_bytes()
        .to_vec();
    bytes.extend(body);
    bytes
}

fn encode(message: &Message) -> Vec<u8> {
    prost::Message::encode_to_vec(message)
}

/// Waits for the far end to close `stream` (EOF or reset); the listener
/// never writes, so any data is a failure too.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANG, stream.read(&mut buf))
        .await
        .expect("connection closed rather than left open");
    match read {
        Ok(0) => {}
        Ok(n) => panic!("listener wrote {n} bytes"),
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "unexpected error {error}"
        ),
    }
}

/// Opens a raw connection to node 2, writes `bytes` (optionally closing
/// the write side after), expects the connection closed, then checks that
/// node 1 still reaches node 2.
async fn refused(bytes: Vec<u8>, half_close: bool) {
    let (one, mut two) = pair().await;
    connect(&one, &mut two).await;
    let mut raw = TcpStream::connect(two.addr).await.expect("raw connect");
    // The listener may close before all of it is written.
    let _ = raw.write_all(&bytes).await;
    if half_close {
        let _ = raw.shutdown().await;
    }
    assert_closed(&mut raw).await;
    still_serves(&one, &mut two, 7).await;
    still_serves(&one, &mut two, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_order_both_ways() {
    let (mut one, mut two) = pair().await;
    connect(&one, &mut two).await;
    connect(&two, &mut one).await;
    for index in 1..=500 {
        one.transport.send(app(1, 2, index)).expect("queued");
        two.transport.send(app(2, 1, index)).expect("queued");
    }
    for index in 1..=500 {
        let at_two = next_app(&mut two.inbox).await;
        assert_eq!((at_two.from, at_two.to, at_two.index), (1, 2, index));
        assert_eq!(at_two.context, index.to_be_bytes());
        let at_one = next_app(&mut one.inbox).await;
        assert_eq!((at_one.from, at_one.to, at_one.index), (2, 1, index));
    }
    assert!(one.transport.is_connected(2));
    assert!(two.transport.is_connected(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_at_first_is_reached_once_it_starts() {
    let one = start(1).await;
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = reserved.local_addr().expect("address");
    drop(reserved);
    one.transport.add_peer(2, &format!("http://{addr}"));
    // Once a connect failed, the peer is known to be down.
    tokio::time::timeout(HANG, async {
        while one.transport.send(heartbeat(1, 2)) != Err(TransportError::Unreachable(2)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("send reports the peer unreachable");
    assert!(!one.transport.is_connected(2));

    let mut two = start_on(2, addr, config()).await;
    two.transport.add_peer(1, &one.addr.to_string());
    connect(&one, &mut two).await;
    assert!(one.transport.is_connected(2));
    still_serves(&one, &mut two, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_after_the_listener_restarts() {
    let (one, mut two) = pair().await;
    connect(&one, &mut two).await;
    still_serves(&one, &mut two, 1).await;

    let addr = two.addr;
    drop(two);
    let mut two = start_on(2, addr, config()).await;
    two.transport.add_peer(1, &one.addr.to_string());
    connect(&one, &mut two).await;
    for index in 2..=50 {
        one.transport.send(app(1, 2, index)).expect("queued");
    }
    for index in 2..=50 {
        assert_eq!(next_app(&mut two.inbox).await.index, index);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_built_connection_is_accepted() {
    let (one, mut two) = pair().await;
    let mut raw = TcpStream::connect(two.addr).await.expect("raw connect");
    let mut bytes = preamble(CLUSTER, 1, 2);
    bytes.extend(frame(&encode(&app(1, 2, 41))));
    bytes.extend(frame(&encode(&app(1, 2, 42))));
    raw.write_all(&bytes).await.expect("written");
    assert_eq!(next_app(&mut two.inbox).await.index, 41);
    assert_eq!(next_app(&mut two.inbox).await.index, 42);
    // A clean close at a frame boundary is fine too.
    raw.shutdown().await.expect("half close");
    assert_closed(&mut raw).await;
    connect(&one, &mut two).await;
    still_serves(&one, &mut two, 43).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frames_are_keepalives_and_carry_no_message() {
    let (_one, mut two) = pair().await;
    let mut raw = TcpStream::connect(two.addr).await.expect("raw connect");
    let mut bytes = preamble(CLUSTER, 1, 2);
    bytes.extend(frame(&[]));
    bytes.extend(frame(&encode(&app(1, 2, 51))));
    bytes.extend(frame(&[]));
    bytes.extend(frame(&encode(&app(1, 2, 52))));
    raw.write_all(&bytes).await.expect("written");
    assert_eq!(next_app(&mut two.inbox).await.index, 51);
    assert_eq!(next_app(&mut two.inbox).await.index, 52);
}

fn quick_idle_config() -> TcpConfig {
    TcpConfig {
        keepalive_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_inbound_connection_is_closed_after_the_idle_timeout() {
    let any = "127.0.0.1:0".parse().expect("address");
    let two = start_on(2, any, quick_idle_config()).await;
    two.transport.add_peer(1, "127.0.0.1:1");
    let mut raw = TcpStream::connect(two.addr).await.expect("raw connect");
    raw.write_all(&preamble(CLUSTER, 1, 2))
        .await
        .expect("preamble written");
    let opened = Instant::now();
    assert_closed(&mut raw).await;
    // Closed between one and two idle timeouts after the last frame (the
    // preamble counts as none); only the lower bound is certain.
    assert!(opened.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_with_nothing_to_send_sends_keepalive_frames() {
    let any = "127.0.0.1:0".parse().expect("address");
    let one = start_on(1, any, quick_idle_config()).await;
    let listener = TcpListener::bind(any).await.expect("bind");
    one.transport
        .add_peer(2, &listener.local_addr().expect("address").to_string());
    let (mut raw, _) = tokio::time::timeout(HANG, listener.accept())
        .await
        .expect("the writer connects")
        .expect("accepted");
    let mut got = [0u8; 32];
    raw.read_exact(&mut got).await.expect("preamble");
    assert_eq!(got.to_vec(), preamble(CLUSTER, 1, 2));
    // Nothing is sent: what arrives must be empty frames, several of them
    // (one per 100 ms keepalive interval).
    for _ in 0..5 {
        let mut header = [0u8; 4];
        tokio::time::timeout(HANG, raw.read_exact(&mut header))
            .await
            .expect("a keepalive arrives")
            .expect("read");
        assert_eq!(header, [0; 4], "a quiet writer sent something else");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_refused() {
    let garbage: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
    refused(garbage, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_is_refused() {
    refused(b"GET / HTTP/1.1\r\n\r\n".to_vec(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_version_is_refused() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    bytes[5] = 9;
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_id_is_refused() {
    refused(preamble(CLUSTER + 1, 1, 2), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preamble_for_another_node_is_refused() {
    refused(preamble(CLUSTER, 1, 3), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sender_is_refused() {
    let mut bytes = preamble(CLUSTER, 99, 2);
    bytes.extend(frame(&encode(&app(99, 2, 1))));
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_preamble_is_refused() {
    refused(preamble(CLUSTER, 1, 2)[..20].to_vec(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_is_refused() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    let whole = frame(&encode(&app(1, 2, 1)));
    bytes.extend(&whole[..whole.len() - 3]);
    refused(bytes, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_claiming_4_gib_is_refused_at_once() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    // Only the length: the listener must not wait for (or allocate) a body.
    bytes.extend(u32::MAX.to_be_bytes());
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_non_snapshot_frame_is_refused() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    // Over the 16 MiB message limit, under the snapshot limit, and not a
    // MsgSnap (type 3 = MsgApp).
    bytes.extend((17u32 * 1024 * 1024).to_be_bytes());
    bytes.extend([0x08, 0x03, 0x10, 0x02]);
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_frame_is_refused() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    // Key of field 1 with wire type 7, which does not exist.
    bytes.extend(frame(&[0x0f, 0x00, 0x00]));
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_another_sender_is_refused() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    bytes.extend(frame(&encode(&app(3, 2, 1))));
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_another_node_is_refused() {
    let mut bytes = preamble(CLUSTER, 1, 2);
    bytes.extend(frame(&encode(&app(1, 3, 1))));
    refused(bytes, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_instead_of_blocking() {
    let one = start_on(
        1,
        "127.0.0.1:0".parse().expect("address"),
        TcpConfig {
            queue_capacity: 4,
            max_batch_bytes: 64 * 1024,
            // The stalled peer must not be given up on during the test.
            write_timeout: Duration::from_secs(600),
            ..config()
        },
    )
    .await;
    // A peer that accepts the connection and never reads: once the socket
    // buffers are full the writer is stuck and the queue fills.
    let stalled = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    one.transport
        .add_peer(2, &stalled.local_addr().expect("address").to_string());
    let (_held, _) = stalled.accept().await.expect("writer connects");
    // The accept completes with the TCP handshake; the writer counts as
    // connected once it has also written its preamble.
    let connected_by = tokio::time::Instant::now() + Duration::from_secs(10);
    while !one.transport.is_connected(2) {
        assert!(
            tokio::time::Instant::now() < connected_by,
            "never connected"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut big = app(1, 2, 0);
    big.context = vec![0xab; 1024 * 1024];
    let mut accepted = 0;
    let refusal = loop {
        match one.transport.send(big.clone()) {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 10_000, "queue never filled");
    };
    assert_eq!(refusal, TransportError::QueueFull(2));
    assert!(one.transport.is_connected(2), "refused while connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_peer_stops_sending() {
    let one = start(1).await;
    let fake_two = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    one.transport
        .add_peer(2, &fake_two.local_addr().expect("address").to_string());
    one.transport.send(app(1, 2, 5)).expect("queued");
    let (mut raw, _) = tokio::time::timeout(HANG, fake_two.accept())
        .await
        .expect("writer connects")
        .expect("accepted");

    let mut head = [0u8; 32];
    raw.read_exact(&mut head).await.expect("preamble");
    assert_eq!(head.to_vec(), preamble(CLUSTER, 1, 2));
    let mut len = [0u8; 4];
    raw.read_exact(&mut len).await.expect("frame length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    raw.read_exact(&mut body).await.expect("frame body");
    let message: Message = prost::Message::decode(body.as_slice()).expect("decodes");
    assert_eq!(message, app(1, 2, 5));

    one.transport.remove_peer(2);
    assert_eq!(
        one.transport.send(app(1, 2, 6)),
        Err(TransportError::Unreachable(2))
    );
    // The writer is gone and its connection closed.
    assert_closed(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_peer_closes_its_inbound_connections() {
    let (one, mut two) = pair().await;
    connect(&one, &mut two).await;
    let mut raw = TcpStream::connect(two.addr).await.expect("raw connect");
    let mut bytes = preamble(CLUSTER, 1, 2);
    bytes.extend(frame(&encode(&app(1, 2, 9))));
    raw.write_all(&bytes).await.expect("written");
    assert_eq!(next_app(&mut two.inbox).await.index, 9);
    two.transport.remove_peer(1);
    assert_closed(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_their_limit_are_refused_when_sent() {
    let small = TcpConfig {
        max_message_bytes: 1024,
        max_snapshot_bytes: 64 * 1024,
        ..config()
    };
    let one = start_on(1, "127.0.0.1:0".parse().expect("address"), small.clone()).await;
    let mut two = start_on(2, "127.0.0.1:0".parse().expect("address"), small).await;
    one.transport.add_peer(2, &two.addr.to_string());
    two.transport.add_peer(1, &one.addr.to_string());
    connect(&one, &mut two).await;

    let mut too_big = app(1, 2, 1);
    too_big.context = vec![1; 2048];
    assert_eq!(
        one.transport.send(too_big),
        Err(TransportError::Dropped { from: 1, to: 2 })
    );
    let snap = |bytes: usize| Message {
        msg_type: MessageType::MsgSnap as i32,
        from: 1,
        to: 2,
        snapshot: Some(Snapshot {
            data: vec![2; bytes],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        one.transport.send(snap(128 * 1024)),
        Err(TransportError::Dropped { from: 1, to: 2 })
    );
    // A snapshot over the message limit but under its own goes through.
    one.transport.send(snap(32 * 1024)).expect("queued");
    let received = tokio::time::timeout(HANG, async {
        loop {
            let message = two.inbox.recv().await.expect("inbox open");
            if message.msg_type == MessageType::MsgSnap as i32 {
                return message;
            }
        }
    })
    .await
    .expect("snapshot arrives");
    assert_eq!(received, snap(32 * 1024));
    // The connection survived it.
    still_serves(&one, &mut two, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_everything() {
    let (one, mut two) = pair().await;
    connect(&one, &mut two).await;
    let mut raw = TcpStream::connect(two.addr).await.expect("raw connect");
    raw.write_all(&preamble(CLUSTER, 1, 2))
        .await
        .expect("written");
    two.transport.shutdown();
    assert_closed(&mut raw).await;
    assert_eq!(
        two.transport.send(app(2, 1, 1)),
        Err(TransportError::Unreachable(1))
    );
    // The listener is closed: connecting fails (or is closed at once).
    let addr = two.addr;
    tokio::time::timeout(HANG, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return,
                Ok(mut stream) => {
                    let mut buf = [0u8; 1];
                    if matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {
                        // Accepted by a backlog that is being torn down;
                        // try again until the port is gone.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    })
    .await
    .expect("listener closed");
    // Node 1 notices and stops queueing.
    tokio::time::timeout(HANG, async {
        while one.transport.is_connected(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("disconnect noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_counted_per_peer() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let mut counts = Counts {
        snapshotter: recorder.snapshotter(),
        totals: HashMap::new(),
        samples: HashMap::new(),
    };
    // This test binary's only recorder; the other tests' counters either
    // predate it (no-ops) or use other peer ids.
    recorder.install().expect("first recorder in this binary");

    let one = start(101).await;
    let mut two = start(102).await;
    one.transport.add_peer(102, &two.addr.to_string());
    two.transport.add_peer(101, &one.addr.to_string());
    connect(&one, &mut two).await;
    let probes = counts.get(PEER_SENT_MESSAGES_TOTAL, "102");
    for index in 1..=10 {
        one.transport.send(app(101, 102, index)).expect("queued");
    }
    for index in 1..=10 {
        assert_eq!(next_app(&mut two.inbox).await.index, index);
    }
    let frame_bytes: u64 = (1..=10)
        .map(|index| 4 + encode(&app(101, 102, index)).len() as u64)
        .sum();
    // The writer counts after its write returns, which may be after the
    // frames arrived.
    tokio::time::timeout(HANG, async {
        while counts.get(PEER_SENT_MESSAGES_TOTAL, "102") < probes + 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("sends counted");
    let sent = counts.get(PEER_SENT_BYTES_TOTAL, "102");
    let received = counts.get(PEER_RECEIVED_BYTES_TOTAL, "101");
    assert!(sent >= frame_bytes, "sent {sent} < {frame_bytes}");
    assert!(
        received >= frame_bytes,
        "received {received} < {frame_bytes}"
    );

    // A heartbeat of term 7 answered by the peer: one round trip timed,
    // under node 101's label for peer 102 (the probes of term 0 before it
    // are never answered and are forgotten).
    let mut beat = heartbeat(101, 102);
    beat.term = 7;
    let before = Instant::now();
    one.transport.send(beat).expect("queued");
    tokio::time::timeout(HANG, async {
        loop {
            let message = two.inbox.recv().await.expect("inbox open");
            if message.msg_type == MessageType::MsgHeartbeat as i32 && message.term == 7 {
                return;
            }
        }
    })
    .await
    .expect("heartbeat arrives");
    let answer = Message {
        msg_type: MessageType::MsgHeartbeatResp as i32,
        from: 102,
        to: 101,
        term: 7,
        ..Default::default()
    };
    two.transport.send(answer).expect("queued");
    let round_trips = tokio::time::timeout(HANG, async {
        loop {
            let samples = counts.histogram(PEER_ROUND_TRIP_TIME_SECONDS, "101", "102");
            if !samples.is_empty() {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("round trip recorded");
    assert_eq!(round_trips.len(), 1, "{round_trips:?}");
    assert!(
        round_trips[0] > 0.0 && round_trips[0] <= before.elapsed().as_secs_f64(),
        "{round_trips:?}"
    );

    let failures = counts.get(PEER_SEND_FAILURES_TOTAL, "102");
    two.transport.shutdown();
    tokio::time::timeout(HANG, async {
        while one.transport.send(app(101, 102, 11)).is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("refused once the peer is gone");
    assert!(counts.get(PEER_SEND_FAILURES_TOTAL, "102") > failures);
}

/// Counter totals and histogram samples; the debugging recorder resets
/// what it reports on every snapshot, so they are added up here.
struct Counts {
    snapshotter: metrics_util::debugging::Snapshotter,
    totals: HashMap<(String, String), u64>,
    /// By name, node label and peer label.
    samples: HashMap<(String, String, String), Vec<f64>>,
}

impl Counts {
    fn take(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let label = |name: &str| {
                key.labels()
                    .find(|label| label.key() == name)
                    .map(|label| label.value().to_string())
            };
            let (Some(node), Some(peer)) = (label("node"), label("peer")) else {
                continue;
            };
            match value {
                metrics_util::debugging::DebugValue::Counter(count) => {
                    *self
                        .totals
                        .entry((key.name().to_string(), peer))
                        .or_default() += count;
                }
                metrics_util::debugging::DebugValue::Histogram(values) => {
                    self.samples
                        .entry((key.name().to_string(), node, peer))
                        .or_default()
                        .extend(values.iter().map(|v| v.0));
                }
                metrics_util::debugging::DebugValue::Gauge(_) => {}
            }
        }
    }

    fn histogram(&mut self, name: &str, node: &str, peer: &str) -> Vec<f64> {
        self.take();
        self.samples
            .get(&(name.to_string(), node.to_string(), peer.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn get(&mut self, name: &str, peer: &str) -> u64 {
        self.take();
        self.totals
            .get(&(name.to_string(), peer.to_string()))
            .copied()
            .unwrap_or(0)
    }
}
