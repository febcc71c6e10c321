use super::*;
use crate::raftpb::{MessageType, Snapshot, SnapshotMetadata};
use crate::snap::StateFileRef;
use crate::snap::state_file::{WritePacing, write_state_file};
use crate::transport::InProcessNetwork;
use std::time::Instant;

fn state_file(dir: &std::path::Path, bytes: &[u8]) -> StateFileRef {
    write_state_file::<crate::snap::SnapError>(dir, 12, WritePacing::unpaced(), |out| {
        out.write_all(bytes)
            .map_err(|e| crate::snap::SnapError::io(dir, e))
    })
    .expect("state file written")
}

fn msg_snap(reference: &StateFileRef) -> Message {
    Message {
        msg_type: MessageType::MsgSnap as i32,
        from: 1,
        to: 2,
        snapshot: Some(Snapshot {
            data: reference.encode_data(),
            metadata: SnapshotMetadata {
                index: reference.index,
                term: 2,
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn finish_is_reported_only_after_the_follower_confirms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = vec![7u8; 3 * 1024 * 1024 + 5];
    let reference = state_file(dir.path(), &bytes);
    let network = InProcessNetwork::new();
    let (leader, _) = network.endpoint(1);
    let (follower, _) = network.endpoint(2);
    let (sink, mut incoming) = mpsc::unbounded_channel();
    follower.accept_snapshots(sink);
    let delivery = tokio::spawn(deliver(
        1,
        leader,
        dir.path().to_path_buf(),
        msg_snap(&reference),
        Duration::from_millis(10),
    ));
    let mut snapshot = incoming.recv().await.expect("offered to the follower");
    let mut received = 0;
    while let Some(chunk) = snapshot.chunks.recv().await {
        received += chunk.len();
    }
    assert_eq!(received, bytes.len());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!delivery.is_finished(), "reported before the confirmation");
    snapshot.outcome.send(Ok(())).expect("waiting");
    assert_eq!(delivery.await.expect("joined"), SnapshotStatus::Finish);
}

#[tokio::test]
async fn a_failed_transfer_is_reported_as_failure_after_the_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = state_file(dir.path(), b"some state");
    let network = InProcessNetwork::new();
    let (leader, _) = network.endpoint(1);
    let (follower, _) = network.endpoint(2);
    let (sink, mut incoming) = mpsc::unbounded_channel();
    follower.accept_snapshots(sink);
    let started = Instant::now();
    let delivery = tokio::spawn(deliver(
        1,
        Arc::clone(&leader),
        dir.path().to_path_buf(),
        msg_snap(&reference),
        Duration::from_millis(300),
    ));
    let snapshot = incoming.recv().await.expect("offered");
    snapshot
        .outcome
        .send(Err("checksum mismatch".into()))
        .expect("waiting");
    assert_eq!(delivery.await.expect("joined"), SnapshotStatus::Failure);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "no backoff"
    );

    // A follower that is cut off: Failure too.
    network.cut(1, 2);
    let outcome = deliver(
        1,
        leader,
        dir.path().to_path_buf(),
        msg_snap(&reference),
        Duration::ZERO,
    )
    .await;
    assert_eq!(outcome, SnapshotStatus::Failure);
}

#[test]
fn the_backoff_doubles_up_to_its_cap_and_a_success_resets_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let (events, _) = mpsc::unbounded_channel();
    let (transport, _) = InProcessNetwork::new().endpoint(1);
    let mut transfers = SnapshotTransfers::new(1, PathBuf::from("/nonexistent"), transport, events);
    let mut seen = Vec::new();
    for _ in 0..8 {
        transfers.reported(2, SnapshotStatus::Failure);
        seen.push(transfers.backoff[&2].as_secs());
    }
    assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    transfers.reported(2, SnapshotStatus::Finish);
    assert!(!transfers.backoff.contains_key(&2));
}

#[tokio::test]
async fn a_received_file_reaches_raft_only_when_complete_and_leaves_nothing_when_not() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let reference = state_file(leader_dir.path(), &bytes);
    let (events, mut reports) = mpsc::unbounded_channel();
    let (transport, _) = InProcessNetwork::new().endpoint(2);
    let transfers = SnapshotTransfers::new(2, follower_dir.path().to_path_buf(), transport, events);

    // Complete: the MsgSnap is handed on, the file is in place.
    let (chunks, chunk_queue) = mpsc::channel(4);
    let (outcome, verdict) = tokio::sync::oneshot::channel();
    transfers.receive(IncomingSnapshot {
        message: msg_snap(&reference),
        chunks: chunk_queue,
        outcome,
    });
    for chunk in bytes.chunks(1 << 20) {
        chunks.send(chunk.to_vec()).await.expect("queued");
    }
    drop(chunks);
    assert_eq!(verdict.await.expect("answered"), Ok(()));
    match reports.recv().await {
        Some(TransferEvent::Received(message)) => assert_eq!(message.to, 2),
        other => panic!("expected the MsgSnap, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(reference.path(follower_dir.path())).expect("state file"),
        bytes
    );

    // Cut short: refused, nothing handed on, no temporary file left.
    let other = StateFileRef {
        index: 20,
        ..reference
    };
    let mut message = msg_snap(&other);
    if let Some(snapshot) = message.snapshot.as_mut() {
        snapshot.metadata.index = 20;
    }
    let (chunks, chunk_queue) = mpsc::channel(4);
    let (outcome, verdict) = tokio::sync::oneshot::channel();
    transfers.receive(IncomingSnapshot {
        message,
        chunks: chunk_queue,
        outcome,
    });
    chunks.send(bytes[..1000].to_vec()).await.expect("queued");
    drop(chunks);
    assert!(verdict.await.expect("answered").is_err());
    assert!(
        reports.try_recv().is_err(),
        "an incomplete snapshot reached raft"
    );
    assert_eq!(files_in(follower_dir.path()), vec![reference.file_name()]);
}
