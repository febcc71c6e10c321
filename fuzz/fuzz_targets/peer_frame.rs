//! The peer connection reader (preamble parse, frame reads, `Message`
//! decode) of the real TCP transport, fed over loopback: one transport
//! (node 1 of cluster `CLUSTER`, knowing peer 2) listens for the whole
//! process; each input is one inbound connection. A panic in the
//! transport's tasks aborts the process (libfuzzer-sys's panic hook), a
//! connection the transport neither closes nor finishes within 10 s is a
//! hang, and libFuzzer's `-malloc_limit_mb` catches a length prefix that
//! allocates what it claims. The input's bytes are also decoded directly
//! as length-prefixed frames, `Message` by `Message`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use ringraft::raftpb::Message;
use ringraft::transport::{TcpConfig, TcpTransport, Transport as _};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const CLUSTER: u64 = 0x00c0_ffee;
const LIMIT: u32 = 64 * 1024;

struct Target {
    runtime: Runtime,
    addr: SocketAddr,
    _transport: TcpTransport,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (transport, addr) = runtime.block_on(async {
            let config = TcpConfig {
                max_message_bytes: LIMIT,
                max_snapshot_bytes: 4 * LIMIT,
                ..TcpConfig::default()
            };
            let transport = TcpTransport::new(1, CLUSTER, config).expect("transport");
            // Peer 2 is known (so its preamble is accepted); nothing listens
            // at its address, its writer just keeps backing off.
            transport.add_peer(2, "127.0.0.1:9");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let (inbox, mut received) = ringraft::transport::peer_inbox(1024);
            let addr = transport.listen(listener, inbox).expect("listen");
            tokio::spawn(async move { while received.recv().await.is_some() {} });
            (transport, addr)
        });
        Target {
            runtime,
            addr,
            _transport: transport,
        }
    })
}

fn preamble(cluster: u64, from: u64, to: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(b"RRFT");
    bytes.extend_from_slice(&ringraft::transport::tcp::PROTOCOL_VERSION.to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&cluster.to_be_bytes());
    bytes.extend_from_slice(&from.to_be_bytes());
    bytes.extend_from_slice(&to.to_be_bytes());
    bytes
}

/// Splits `bytes` into u32-length-prefixed frames and decodes each.
fn decode_frames(mut bytes: &[u8]) {
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        bytes = &bytes[4..];
        let body = &bytes[..len.min(bytes.len())];
        bytes = &bytes[body.len()..];
        if let Ok(message) = Message::decode(body) {
            let again = Message::decode(message.encode_to_vec().as_slice())
                .expect("a re-encoded message decodes");
            assert_eq!(again, message, "message changed in a round trip");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte says whether a valid preamble from peer 2 comes first
    // (to reach the frames) or the input is the whole connection.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut wire = if mode & 1 == 0 {
        preamble(CLUSTER, 2, 1)
    } else {
        Vec::new()
    };
    wire.extend_from_slice(rest);
    decode_frames(if mode & 1 == 0 { rest } else { &[] });
    let target = target();
    target.runtime.block_on(async {
        let exchange = async {
            let mut stream = TcpStream::connect(target.addr).await?;
            // The transport may close early (an error): that is fine.
            let _ = stream.write_all(&wire).await;
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 64];
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return Ok::<(), std::io::Error>(()),
                    Ok(_) => panic!("the transport wrote on an inbound connection"),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(result) => result.expect("connect to the transport"),
            Err(_) => panic!("the transport kept a finished connection open for 10 s"),
        }
    });
});
