//! Whole-node tests of a 3-node cluster under faults and options: a
//! partitioned follower catching up, the leader's early appends,
//! a node without a quorum refusing requests,
//! back-pressure from a tiny in-flight budget, a leader crash under load, a full restart from disk,
//! and a data directory of another cluster.

mod node_common;

use node_common::*;
use ringraft::KvStore;
use ringraft::node::bootstrap::BootError;
use ringraft::node::{Consistency, InProcessNetwork, Node, NodeError};
use ringraft::raft::DropReason;

/// Writes `count` keys `{prefix}{n}` through `writer`; returns the
/// highest acknowledged index.
async fn write_keys(cluster: &Cluster, writer: u64, prefix: &str, count: usize) -> u64 {
    let mut last = 0;
    for n in 0..count {
        let key = format!("{prefix}{n}");
        last = last.max(put(cluster.node(writer), key.as_bytes(), b"v").await);
    }
    last
}

async fn assert_has_keys(cluster: &Cluster, id: u64, prefix: &str, count: usize) {
    scan_exactly(cluster, id, prefix, count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_follower_catches_up_after_healing() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let leader = cluster.leader().await;
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap_or(1);
    cluster.network.isolate(follower);
    let last = write_keys(&cluster, leader, "p", 30).await;
    assert!(cluster.node(follower).applied_index() < last);
    cluster.network.heal();
    wait_applied(cluster.node(follower), last).await;
    assert_has_keys(&cluster, follower, "p", 30).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_leader_appends_keep_every_node_consistent() {
    let cluster = Cluster::with_config(&[1, 2, 3], |config| config.send_appends_early = true);
    cluster.leader().await;
    let mut last = 0;
    for id in [1, 2, 3] {
        last = last.max(write_keys(&cluster, id, &format!("e{id}-"), 10).await);
    }
    for id in [1, 2, 3] {
        wait_applied(cluster.node(id), last).await;
        assert_has_keys(&cluster, id, "e", 30).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_in_flight_budget_still_completes_concurrent_writes() {
    // One Ready in flight at a time: every other request waits its turn.
    let cluster = Cluster::with_config(&[1, 2, 3], |config| config.max_inflight_bytes = 1);
    let leader = cluster.leader().await;
    let mut tasks = Vec::new();
    for n in 0..64 {
        let node = cluster.node(leader).clone();
        tasks.push(tokio::spawn(async move {
            put(&node, format!("c{n:02}").as_bytes(), b"v").await
        }));
    }
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.expect("writer task"));
    }
    for id in [1, 2, 3] {
        wait_applied(cluster.node(id), last).await;
        assert_has_keys(&cluster, id, "c", 64).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarts_from_disk_with_the_same_state() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let leader = cluster.leader().await;
    let last = write_keys(&cluster, leader, "r", 20).await;
    cluster.node(leader).delete(b"r0").await.expect("delete");
    for id in [1, 2, 3] {
        cluster.stop(id).await;
    }
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    cluster.leader().await;
    for id in [1, 2, 3] {
        wait_applied(cluster.node(id), last).await;
        assert_eq!(
            get(cluster.node(id), b"r0", Consistency::Linearizable).await,
            None
        );
        assert_eq!(
            get(cluster.node(id), b"r19", Consistency::Linearizable).await,
            Some(b"v".to_vec())
        );
        assert_has_keys(&cluster, id, "r", 19).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let network = InProcessNetwork::new();
    let (transport, inbox) = network.endpoint(1);
    let node = Node::start(
        config(1, dir.path(), &[1]),
        KvStore::new(),
        transport,
        inbox,
    )
    .expect("start");
    put(&node, b"k", b"v").await;
    node.shutdown().await.expect("shutdown");

    let mut other = config(1, dir.path(), &[1]);
    other.cluster_id = CLUSTER_ID + 1;
    let (transport, inbox) = network.endpoint(1);
    match Node::start(other, KvStore::new(), transport, inbox) {
        Err(NodeError::Boot(error)) => {
            assert!(
                matches!(*error, BootError::IdentityMismatch { .. }),
                "unexpected boot error: {error}"
            );
        }
        Err(error) => panic!("unexpected error: {error}"),
        Ok(_) => panic!("a foreign data directory was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crash_under_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let old_leader = cluster.leader().await;
    // Concurrent writers through the leader; the crash lands mid-stream.
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let node = cluster.node(old_leader).clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..1000 {
                let key = format!("w{writer}-{n:04}");
                match node.put(key.as_bytes(), b"v").await {
                    Ok(_) => acknowledged.push(key),
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    cluster.crash(old_leader).await;
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("writer task"));
    }
    assert!(!acknowledged.is_empty(), "some writes were acknowledged");
    eprintln!("acknowledged before the crash: {}", acknowledged.len());

    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    let survivors: Vec<u64> = cluster.nodes.keys().copied().collect();
    for &id in &survivors {
        // One linearizable read makes this node current; then read locally.
        get(cluster.node(id), b"none", Consistency::Linearizable).await;
        for key in &acknowledged {
            assert_eq!(
                get(cluster.node(id), key.as_bytes(), Consistency::Serializable).await,
                Some(b"v".to_vec()),
                "node {id} lost acknowledged {key}"
            );
        }
    }
    let last = put(cluster.node(new_leader), b"after-crash", b"v").await;
    cluster.start(old_leader);
    wait_applied(cluster.node(old_leader), last).await;
    for key in &acknowledged {
        assert_eq!(
            get(
                cluster.node(old_leader),
                key.as_bytes(),
                Consistency::Serializable
            )
            .await,
            Some(b"v".to_vec()),
            "restarted node {old_leader} misses {key}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_quorum_refuses_writes_and_linearizable_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let network = InProcessNetwork::new();
    let (transport, inbox) = network.endpoint(1);
    // One of three voters, alone: it can never learn of a leader.
    let node = Node::start(
        config(1, dir.path(), &[1, 2, 3]),
        KvStore::new(),
        transport,
        inbox,
    )
    .expect("start");
    for _ in 0..3 {
        match node.put(b"k", b"v").await {
            Err(NodeError::NotLeader { leader_hint: None }) => {}
            other => panic!("a write without a leader answered {other:?}"),
        }
        match node.get(b"k", Consistency::Linearizable).await {
            Err(NodeError::NotLeader { leader_hint: None }) => {}
            other => panic!("a linearizable read without a leader answered {other:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        node.get(b"k", Consistency::Serializable)
            .await
            .expect("local read"),
        None
    );
    let status = node.status().await.expect("status");
    assert_eq!(status.leader, None);
    assert_eq!(status.voters, vec![1, 2, 3]);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_quorum_refuses_proposals_past_the_uncommitted_limit() {
    let cluster = Cluster::with_config(&[1, 2, 3], |config| {
        config.max_uncommitted_entries_bytes = 16 * 1024;
        // A leader cut off steps down after an election timeout (check
        // quorum); the writes below must all reach it while it leads.
        config.election_tick = 100;
    });
    let leader = cluster.leader().await;
    for follower in [1, 2, 3].into_iter().filter(|&id| id != leader) {
        cluster.network.cut(leader, follower);
    }
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..200u32 {
        let node = cluster.node(leader).clone();
        writes.spawn(async move { node.put(format!("u{n}").as_bytes(), &[7u8; 1024]).await });
    }
    let mut over_limit = 0;
    let mut other_outcomes = Vec::new();
    while let Some(outcome) = writes.join_next().await {
        match outcome.expect("write task") {
            Err(NodeError::ProposalDropped {
                reason: DropReason::UncommittedSizeLimit,
            }) => over_limit += 1,
            other => other_outcomes.push(format!("{other:?}")),
        }
    }
    // 16 KiB of 1 KiB values: at most 17 are taken (one more is always
    // accepted while nothing is uncommitted), every other one refused.
    assert!(
        over_limit >= 200 - 17,
        "only {over_limit} of 200 writes were refused by the 16 KiB uncommitted limit; \
         the others: {other_outcomes:?}"
    );
    cluster.network.heal();
    cluster.shutdown().await;
}
