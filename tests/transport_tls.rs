//! The TCP transport with peer TLS over loopback: members with certificates
//! of one CA talk both ways; refused are plaintext on a TLS port, a
//! listener whose certificate proves another member than the one dialed, a
//! certificate of another CA, a client without a certificate, and a
//! certified member whose preamble claims another sender. Every refusal
//! leaves the good link serving.
//!
//! Certificates come from `ringraft::tls::dev_certs` (what `ringraft
//! certs` writes). Timeouts only keep a broken build from hanging.

use ringraft::raftpb::{Message, MessageType};
use ringraft::tls::dev_certs::{self, DevCerts};
use ringraft::tls::{PeerTls, peer_client_config};
use ringraft::transport::tcp::PROTOCOL_VERSION;
use ringraft::transport::{PeerInbox, TcpConfig, TcpTransport, Transport, peer_inbox};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLUSTER: u64 = 0x7e57;
/// Long enough that only a hung test reaches it.
const HANG: Duration = Duration::from_secs(30);

struct Node {
    transport: TcpTransport,
    inbox: PeerInbox,
    addr: SocketAddr,
}

fn certs(dir: &Path, nodes: &[u64]) {
    dev_certs::generate(&DevCerts {
        dir: dir.to_path_buf(),
        nodes: nodes.to_vec(),
        ..DevCerts::default()
    })
    .expect("development certificates");
}

fn tls_config(files: &PeerTls, id: u64) -> TcpConfig {
    TcpConfig {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        tls: Some(files.load(id).expect("peer TLS loads")),
        ..TcpConfig::default()
    }
}

async fn start(id: u64, config: TcpConfig) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let transport = TcpTransport::new(id, CLUSTER, config).expect("transport");
    let (sender, inbox) = peer_inbox(1024);
    let addr = transport.listen(listener, sender).expect("listens");
    Node {
        transport,
        inbox,
        addr,
    }
}

fn app(from: u64, to: u64, index: u64) -> Message {
    Message {
        msg_type: MessageType::MsgApp as i32,
        from,
        to,
        term: 2,
        index,
        ..Default::default()
    }
}

/// Sends MsgApp `index` from `from` until one arrives at `to` (the first
/// sends go while the link is still connecting); returns whether it did
/// within `wait`.
async fn delivered(from: &Node, to: &mut Node, index: u64, wait: Duration) -> bool {
    let (from_id, to_id) = (from.transport.node_id(), to.transport.node_id());
    tokio::time::timeout(wait, async {
        loop {
            let _ = from.transport.send(app(from_id, to_id, index));
            let next = tokio::time::timeout(Duration::from_millis(50), to.inbox.recv()).await;
            if let Ok(Some(message)) = next
                && message.index == index
            {
                return;
            }
        }
    })
    .await
    .is_ok()
}

/// Two TLS members 1 and 2 of the CA in `dir`, knowing each other.
async fn tls_pair(dir: &Path) -> (Node, Node) {
    let one = start(1, tls_config(&dev_certs::node_files(dir, 1), 1)).await;
    let two = start(2, tls_config(&dev_certs::node_files(dir, 2), 2)).await;
    one.transport.add_peer(2, &two.addr.to_string());
    two.transport.add_peer(1, &one.addr.to_string());
    (one, two)
}

/// Reads until the far end closes (a TLS alert may come first); false if
/// it stayed open.
async fn closed_by_far_end<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 256];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(HANG, closed).await.is_ok()
}

fn preamble(from: u64, to: u64) -> Vec<u8> {
    let mut bytes = b"RRFT".to_vec();
    bytes.extend(PROTOCOL_VERSION.to_be_bytes());
    bytes.extend([0, 0]);
    bytes.extend(CLUSTER.to_be_bytes());
    bytes.extend(from.to_be_bytes());
    bytes.extend(to.to_be_bytes());
    bytes
}

fn frame(message: &Message) -> Vec<u8> {
    let body = prost::Message::encode_to_vec(message);
    let mut bytes = u32::try_from(body.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    bytes.extend(body);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_one_ca_talk_both_ways_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[1, 2]);
    let (mut one, mut two) = tls_pair(dir.path()).await;
    assert!(delivered(&one, &mut two, 1, HANG).await, "1 -> 2 over TLS");
    assert!(delivered(&two, &mut one, 2, HANG).await, "2 -> 1 over TLS");
    for index in 3..50 {
        one.transport.send(app(1, 2, index)).expect("queued");
    }
    for index in 3..50 {
        let message = tokio::time::timeout(HANG, two.inbox.recv())
            .await
            .expect("arrives")
            .expect("inbox open");
        assert_eq!(message.index, index, "in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_a_tls_port_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[1, 2]);
    let (one, mut two) = tls_pair(dir.path()).await;
    let mut raw = TcpStream::connect(two.addr).await.expect("connect");
    let mut bytes = preamble(1, 2);
    bytes.extend(frame(&app(1, 2, 99)));
    let _ = raw.write_all(&bytes).await;
    assert!(closed_by_far_end(&mut raw).await);
    // A plaintext transport dialing the TLS port never gets through.
    let plain = start(3, TcpConfig::default()).await;
    two.transport.add_peer(3, &plain.addr.to_string());
    plain.transport.add_peer(2, &two.addr.to_string());
    for _ in 0..20 {
        let _ = plain.transport.send(app(3, 2, 98));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only the good member's messages arrive.
    assert!(delivered(&one, &mut two, 7, HANG).await);
    while let Ok(message) = two.inbox.try_recv() {
        assert_eq!(message.from, 1, "a message got through without TLS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_proving_another_member_than_the_one_dialed_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[1, 2, 3]);
    let mut one = start(1, tls_config(&dev_certs::node_files(dir.path(), 1), 1)).await;
    // Member 3's listener, which node 1 is told is member 2.
    let mut impostor = start(3, tls_config(&dev_certs::node_files(dir.path(), 3), 3)).await;
    impostor.transport.add_peer(1, &one.addr.to_string());
    one.transport.add_peer(2, &impostor.addr.to_string());
    for _ in 0..20 {
        let _ = one.transport.send(app(1, 2, 5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!one.transport.is_connected(2));
    assert!(
        impostor.inbox.try_recv().is_err(),
        "the impostor got a message"
    );
    // The impostor, dialing as itself, is a member 1 accepts.
    one.transport.add_peer(3, &impostor.addr.to_string());
    assert!(delivered(&impostor, &mut one, 6, HANG).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_is_refused_both_ways() {
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    certs(ours.path(), &[1, 2]);
    certs(theirs.path(), &[3]);
    let (one, mut two) = tls_pair(ours.path()).await;
    let mut stranger = start(3, tls_config(&dev_certs::node_files(theirs.path(), 3), 3)).await;
    two.transport.add_peer(3, &stranger.addr.to_string());
    stranger.transport.add_peer(2, &two.addr.to_string());
    for _ in 0..20 {
        let _ = stranger.transport.send(app(3, 2, 11));
        let _ = two.transport.send(app(2, 3, 12));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!stranger.transport.is_connected(2));
    assert!(!two.transport.is_connected(3));
    assert!(stranger.inbox.try_recv().is_err());
    assert!(delivered(&one, &mut two, 13, HANG).await);
    while let Ok(message) = two.inbox.try_recv() {
        assert_eq!(message.from, 1, "a message of another CA got through");
    }
}

/// A TLS client of `dir`'s CA, presenting `files`' certificate (or none).
async fn tls_client(
    dir: &Path,
    files: Option<&PeerTls>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = match files {
        Some(files) => peer_client_config(files).expect("client config"),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let ca = dev_certs::ca_file(dir);
            for cert in rustls_pki_types::pem::PemObject::pem_file_iter(&ca).expect("CA file") {
                roots.add(cert.expect("CA certificate")).expect("CA added");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("protocols")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    };
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[1, 2]);
    let (one, mut two) = tls_pair(dir.path()).await;
    // TLS 1.3: the client finishes its side before the server checks the
    // (missing) certificate, so the refusal shows on the first read.
    if let Ok(mut session) = tls_client(dir.path(), None, two.addr).await {
        let mut bytes = preamble(1, 2);
        bytes.extend(frame(&app(1, 2, 21)));
        let _ = session.write_all(&bytes).await;
        let _ = session.flush().await;
        assert!(closed_by_far_end(&mut session).await);
    }
    assert!(delivered(&one, &mut two, 22, HANG).await);
    while let Ok(message) = two.inbox.try_recv() {
        assert_ne!(
            message.index, 21,
            "a message without a certificate got through"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_member_claiming_another_sender_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[1, 2, 3]);
    let (one, mut two) = tls_pair(dir.path()).await;
    two.transport.add_peer(3, "127.0.0.1:1");
    // Member 1's certificate, speaking as member 3.
    let files = dev_certs::node_files(dir.path(), 1);
    let mut session = tls_client(dir.path(), Some(&files), two.addr)
        .await
        .expect("the handshake itself succeeds");
    let mut bytes = preamble(3, 2);
    bytes.extend(frame(&app(3, 2, 31)));
    let _ = session.write_all(&bytes).await;
    let _ = session.flush().await;
    assert!(closed_by_far_end(&mut session).await);
    // The same certificate speaking as itself is served.
    let mut honest = tls_client(dir.path(), Some(&files), two.addr)
        .await
        .expect("handshake");
    let mut bytes = preamble(1, 2);
    bytes.extend(frame(&app(1, 2, 32)));
    honest.write_all(&bytes).await.expect("written");
    honest.flush().await.expect("flushed");
    let message = tokio::time::timeout(HANG, two.inbox.recv())
        .await
        .expect("arrives")
        .expect("inbox open");
    assert_eq!((message.from, message.index), (1, 32));
    drop(one);
}

#[test]
fn a_node_refuses_a_certificate_that_does_not_prove_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[1]);
    let error = dev_certs::node_files(dir.path(), 1)
        .load(2)
        .expect_err("member 1's certificate for node 2");
    assert!(
        error.to_string().contains("this node is member 2"),
        "{error}"
    );
}
