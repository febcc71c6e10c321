//! Whole-node tests: real data directories, the persistence actor, the
//! raft and apply actors, over the in-process transport with a fast tick.
//! Every wait polls with a generous deadline; nothing asserts on timing.

mod node_common;

use node_common::*;
use ringraft::node::{Consistency, NodeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_put_get_delete_scan_and_restart() {
    let mut cluster = Cluster::new(&[1]);
    assert_eq!(cluster.leader().await, 1);
    let node = cluster.node(1).clone();

    let first = put(&node, b"user/a", b"1").await;
    let second = put(&node, b"user/b", b"2").await;
    assert!(second > first, "indexes increase: {first} then {second}");
    put(&node, b"other/c", b"3").await;
    put(&node, b"user/a", b"1bis").await;
    let deleted = node.delete(b"user/b").await.expect("delete");
    assert!(node.applied_index() >= deleted);

    for consistency in [Consistency::Linearizable, Consistency::Serializable] {
        assert_eq!(
            get(&node, b"user/a", consistency).await,
            Some(b"1bis".to_vec())
        );
        assert_eq!(get(&node, b"user/b", consistency).await, None);
        let scanned = node
            .scan_prefix(b"user/", 10, consistency)
            .await
            .expect("scan");
        assert_eq!(scanned, vec![(b"user/a".to_vec(), b"1bis".to_vec())]);
    }
    let status = node.status().await.expect("status");
    assert_eq!(status.voters, vec![1]);
    assert!(status.applied >= deleted && status.commit >= deleted);

    // Restart from the data directory: the same state.
    cluster.stop(1).await;
    assert!(matches!(
        node.put(b"k", b"v").await,
        Err(NodeError::Stopped)
    ));
    cluster.start(1);
    let node = cluster.node(1).clone();
    assert_eq!(cluster.leader().await, 1);
    wait_applied(&node, deleted).await;
    assert_eq!(
        get(&node, b"user/a", Consistency::Linearizable).await,
        Some(b"1bis".to_vec())
    );
    assert_eq!(get(&node, b"user/b", Consistency::Linearizable).await, None);
    assert_eq!(
        get(&node, b"other/c", Consistency::Serializable).await,
        Some(b"3".to_vec())
    );
    let after = put(&node, b"user/d", b"4").await;
    assert!(after > deleted);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_writes_on_any_node_are_readable_everywhere() {
    let cluster = Cluster::new(&[1, 2, 3]);
    cluster.leader().await;
    let mut last = 0;
    for id in [1, 2, 3] {
        for n in 0..5 {
            let key = format!("k{id}-{n}");
            last = last.max(put(cluster.node(id), key.as_bytes(), b"v").await);
        }
    }
    for id in [1, 2, 3] {
        let node = cluster.node(id);
        wait_applied(node, last).await;
        for writer in [1, 2, 3] {
            for n in 0..5 {
                let key = format!("k{writer}-{n}");
                assert_eq!(
                    get(node, key.as_bytes(), Consistency::Serializable).await,
                    Some(b"v".to_vec()),
                    "node {id} misses {key}"
                );
            }
        }
        let all = node
            .scan_prefix(b"k", 100, Consistency::Serializable)
            .await
            .expect("scan");
        assert_eq!(all.len(), 15);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_read_on_a_follower_returns_the_latest_acknowledged_write() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let leader = cluster.leader().await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    for round in 0..10u32 {
        let value = round.to_be_bytes();
        put(cluster.node(leader), b"register", &value).await;
        for &follower in &followers {
            assert_eq!(
                get(
                    cluster.node(follower),
                    b"register",
                    Consistency::Linearizable
                )
                .await,
                Some(value.to_vec()),
                "follower {follower}, round {round}"
            );
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shutdown_and_reelection_lose_no_acknowledged_write() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let old_leader = cluster.leader().await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let key = format!("before-{n}");
        put(cluster.node(old_leader), key.as_bytes(), b"v").await;
        acknowledged.push(key);
    }

    cluster.stop(old_leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    let survivors: Vec<u64> = cluster.nodes.keys().copied().collect();
    let mut last = 0;
    for n in 0..20 {
        let key = format!("after-{n}");
        let writer = survivors[n % survivors.len()];
        last = put(cluster.node(writer), key.as_bytes(), b"v").await;
        acknowledged.push(key);
    }
    for &id in &survivors {
        for key in &acknowledged {
            assert_eq!(
                get(cluster.node(id), key.as_bytes(), Consistency::Linearizable).await,
                Some(b"v".to_vec()),
                "node {id} lost {key}"
            );
        }
    }

    // The old leader restarts from its data directory and catches up.
    cluster.start(old_leader);
    let restarted = cluster.node(old_leader).clone();
    wait_applied(&restarted, last).await;
    for key in &acknowledged {
        assert_eq!(
            get(&restarted, key.as_bytes(), Consistency::Serializable).await,
            Some(b"v".to_vec()),
            "restarted node {old_leader} misses {key}"
        );
    }
    cluster.shutdown().await;
}
