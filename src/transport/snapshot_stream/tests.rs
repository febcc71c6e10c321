use super::*;
use crate::raftpb::{Snapshot, SnapshotMetadata};
use std::time::Duration;
use tokio::io::{DuplexStream, duplex};

const LEADER: u64 = 1;
const FOLLOWER: u64 = 2;

fn limits(stall_ms: u64) -> StreamLimits {
    StreamLimits {
        stall_timeout: Duration::from_millis(stall_ms),
        max_message_bytes: 1024 * 1024,
        chunk_bytes: 1000,
    }
}

fn state(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn msg_snap(bytes: &[u8]) -> Message {
    let reference = StateFileRef {
        index: 17,
        size_bytes: bytes.len() as u64,
        crc32c: crc32c::crc32c(bytes),
    };
    Message {
        msg_type: MessageType::MsgSnap as i32,
        from: LEADER,
        to: FOLLOWER,
        snapshot: Some(Snapshot {
            data: reference.encode_data(),
            metadata: SnapshotMetadata {
                index: 17,
                term: 3,
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// A receiver on `stream` whose node side is handed back to the test.
fn spawn_receiver(
    mut stream: DuplexStream,
    limits: StreamLimits,
) -> (
    tokio::task::JoinHandle<Result<(), SnapshotTransferError>>,
    mpsc::UnboundedReceiver<IncomingSnapshot>,
) {
    let (sink, incoming) = mpsc::unbounded_channel();
    let task =
        tokio::spawn(
            async move { receive(&mut stream, LEADER, FOLLOWER, &limits, Some(sink)).await },
        );
    (task, incoming)
}

async fn collect(incoming: &mut IncomingSnapshot) -> Vec<u8> {
    let mut received = Vec::new();
    while let Some(chunk) = incoming.chunks.recv().await {
        assert!(chunk.len() <= 1000, "chunks keep their size");
        received.extend_from_slice(&chunk);
    }
    received
}

#[tokio::test]
async fn the_sender_finishes_only_after_the_receivers_confirmation() {
    let bytes = state(10_500);
    let (mut leader_end, follower_end) = duplex(4096);
    let (receiver, mut incoming) = spawn_receiver(follower_end, limits(5_000));
    let message = msg_snap(&bytes);
    let sending = {
        let bytes = bytes.clone();
        tokio::spawn(async move {
            send(
                LEADER,
                &mut leader_end,
                &message,
                &mut bytes.as_slice(),
                &limits(5_000),
            )
            .await
        })
    };
    let mut snapshot = incoming.recv().await.expect("handed to the node");
    assert_eq!(
        snapshot.message.snapshot.as_ref().map(|s| s.metadata.index),
        Some(17)
    );
    assert_eq!(collect(&mut snapshot).await, bytes);
    // Every byte arrived, yet the node has not confirmed: no Finish yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!sending.is_finished(), "finished before the confirmation");
    snapshot.outcome.send(Ok(())).expect("transport waits");
    sending.await.expect("joined").expect("confirmed");
    receiver.await.expect("joined").expect("received");
}

#[tokio::test]
async fn a_refusal_by_the_node_fails_the_sender_with_its_reason() {
    let bytes = state(3000);
    let (mut leader_end, follower_end) = duplex(4096);
    let (receiver, mut incoming) = spawn_receiver(follower_end, limits(5_000));
    let message = msg_snap(&bytes);
    let sending = tokio::spawn(async move {
        send(
            LEADER,
            &mut leader_end,
            &message,
            &mut bytes.as_slice(),
            &limits(5_000),
        )
        .await
    });
    let mut snapshot = incoming.recv().await.expect("handed to the node");
    collect(&mut snapshot).await;
    snapshot
        .outcome
        .send(Err("disk full".into()))
        .expect("transport waits");
    match sending.await.expect("joined") {
        Err(SnapshotTransferError::Refused { reason, .. }) => assert_eq!(reason, "disk full"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(receiver.await.expect("joined").is_err());
}

/// Copies `from` to `to`, flipping the byte at `flip_at` (counted from the
/// start of the stream).
async fn relay_flipping(mut from: DuplexStream, mut to: DuplexStream, flip_at: usize) {
    let (mut from_read, mut from_write) = tokio::io::split(&mut from);
    let (mut to_read, mut to_write) = tokio::io::split(&mut to);
    let forward = async {
        let mut seen = 0usize;
        let mut buffer = [0u8; 512];
        loop {
            let n = match from_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if (seen..seen + n).contains(&flip_at) {
                buffer[flip_at - seen] ^= 0x40;
            }
            seen += n;
            if to_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let back = async {
        let _ = tokio::io::copy(&mut to_read, &mut from_write).await;
    };
    tokio::join!(forward, back);
}

#[tokio::test]
async fn a_chunk_damaged_in_flight_fails_both_sides() {
    let bytes = state(5000);
    let message = msg_snap(&bytes);
    let frame_len = 4 + message.encoded_len();
    let (mut leader_end, relay_in) = duplex(4096);
    let (relay_out, follower_end) = duplex(4096);
    // Inside the third chunk's data: frame, then chunks of 8 + 1000 bytes.
    let flip_at = frame_len + 2 * 1008 + 8 + 500;
    tokio::spawn(relay_flipping(relay_in, relay_out, flip_at));
    let (receiver, mut incoming) = spawn_receiver(follower_end, limits(5_000));
    let sending = tokio::spawn(async move {
        send(
            LEADER,
            &mut leader_end,
            &message,
            &mut bytes.as_slice(),
            &limits(5_000),
        )
        .await
    });
    let mut snapshot = incoming.recv().await.expect("handed to the node");
    let received = collect(&mut snapshot).await;
    assert_eq!(received.len(), 2000, "the two good chunks, not the bad one");
    match receiver.await.expect("joined") {
        Err(SnapshotTransferError::Refused { reason, .. }) => {
            assert!(reason.contains("chunk 2 checksum mismatch"), "{reason}")
        }
        other => panic!("expected a checksum refusal, got {other:?}"),
    }
    match sending.await.expect("joined") {
        Err(SnapshotTransferError::Refused { reason, .. }) => {
            assert!(reason.contains("checksum mismatch"), "{reason}")
        }
        other => panic!("expected the sender to fail, got {other:?}"),
    }
}

#[tokio::test]
async fn a_receiver_that_stops_reading_stalls_the_sender() {
    let bytes = state(50_000);
    let message = msg_snap(&bytes);
    // The far end is held open but never read: writes stop progressing.
    let (mut leader_end, _silent) = duplex(1024);
    let started = Instant::now();
    let outcome = send(
        LEADER,
        &mut leader_end,
        &message,
        &mut bytes.as_slice(),
        &limits(200),
    )
    .await;
    assert!(
        matches!(outcome, Err(SnapshotTransferError::Stalled { .. })),
        "{outcome:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_sender_that_goes_quiet_stalls_the_receiver_and_the_node_sees_a_short_file() {
    let bytes = state(5000);
    let message = msg_snap(&bytes);
    let (mut leader_end, follower_end) = duplex(64 * 1024);
    let (receiver, mut incoming) = spawn_receiver(follower_end, limits(200));
    let mut frame = (message.encoded_len() as u32).to_be_bytes().to_vec();
    message.encode_raw(&mut frame);
    leader_end.write_all(&frame).await.expect("frame");
    let mut snapshot = incoming.recv().await.expect("handed to the node");
    match receiver.await.expect("joined") {
        Err(SnapshotTransferError::Stalled { what, .. }) => assert_eq!(what, "waiting for a chunk"),
        other => panic!("expected a stall, got {other:?}"),
    }
    assert!(
        collect(&mut snapshot).await.is_empty(),
        "the chunk channel closed"
    );
}

#[tokio::test]
async fn a_msg_snap_without_a_state_file_reference_is_refused() {
    let mut message = msg_snap(b"abc");
    if let Some(snapshot) = message.snapshot.as_mut() {
        snapshot.data = b"RRSN inline state".to_vec();
    }
    let (mut leader_end, follower_end) = duplex(4096);
    let (receiver, mut incoming) = spawn_receiver(follower_end, limits(1000));
    let mut frame = (message.encoded_len() as u32).to_be_bytes().to_vec();
    message.encode_raw(&mut frame);
    leader_end.write_all(&frame).await.expect("frame");
    assert!(matches!(
        receiver.await.expect("joined"),
        Err(SnapshotTransferError::Refused { .. })
    ));
    assert!(incoming.try_recv().is_err(), "nothing reached the node");
    let mut status = [0u8; 1];
    leader_end.read_exact(&mut status).await.expect("status");
    assert_eq!(status[0], 1, "refused");
}
