//! `ringraft serve` as separate processes on loopback: a 3-node cluster
//! replicating writes, kill -9 of the leader with re-election and catch-up,
//! and growing to a 4th member with `--join` then removing it. Repeated
//! kill/restart cycles under concurrent load are `server_crash.rs`.

mod server_common;

use server_common::*;
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Raft randomizes the election timeout in [T, 2T): the longest one.
fn max_election_timeout() -> Duration {
    Duration::from_millis(2 * ELECTION_TICKS * TICK_MS)
}

fn clients(cluster: &ProcCluster) -> Vec<SocketAddr> {
    cluster.procs.values().map(|p| p.client).collect()
}

/// Waits until the running nodes other than `old` agree on a new leader;
/// returns it and how long that took.
fn wait_new_leader(cluster: &mut ProcCluster, old: u64) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        if let Some(leader) = cluster.agreed_leader().filter(|&l| l != old) {
            return (leader, started.elapsed());
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no new leader after killing {old}\n{}",
            cluster.dump_logs()
        );
        sleep(Duration::from_millis(10));
    }
}

#[test]
fn three_processes_replicate_and_survive_a_leader_kill() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let writer = cluster.proc(leader).client;
    let response = http(writer, "PUT", "/v1/kv/greeting", b"hello").expect("PUT");
    assert_eq!(response.status, 200, "{}", response.text());
    for id in [1, 2, 3] {
        let response = http(cluster.proc(id).client, "GET", "/v1/kv/greeting", b"").expect("GET");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"hello"[..]),
            "linearizable GET on node {id}"
        );
    }
    // A write sent to a follower is forwarded to the leader.
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap_or(1);
    let response = http(
        cluster.proc(follower).client,
        "PUT",
        "/v1/kv/via",
        b"follower",
    )
    .expect("PUT on a follower");
    assert_eq!(response.status, 200, "{}", response.text());

    cluster.procs.get_mut(&leader).expect("leader").kill();
    let (new_leader, took) = wait_new_leader(&mut cluster, leader);
    eprintln!("new leader {new_leader} {took:?} after killing leader {leader}");
    assert!(
        took <= 3 * max_election_timeout(),
        "new leader {new_leader} after {took:?}, more than 3 election timeouts"
    );
    let response = http(
        cluster.proc(new_leader).client,
        "PUT",
        "/v1/kv/after",
        b"kill",
    )
    .expect("PUT after the kill");
    assert_eq!(response.status, 200, "{}", response.text());
    cluster.restart(leader);
    wait_value(cluster.proc(leader).client, "after", b"kill");
    wait_value(cluster.proc(leader).client, "via", b"follower");
}

#[test]
fn a_fourth_process_joins_and_is_removed() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let leader_addr = cluster.proc(leader).client;
    put_retrying(&[leader_addr], "before", b"join");
    let mut fourth = Proc::new(4, cluster.root.path());
    let body = format!(r#"{{"id":4,"peer_url":"{}","learner":false}}"#, fourth.peer);
    let response = http(leader_addr, "POST", "/v1/members", body.as_bytes()).expect("add");
    assert_eq!(response.status, 200, "{}", response.text());
    let initial = format!("{},4={}", cluster.initial(), fourth.peer);
    fourth.start(&initial, &["--join"]);
    wait_value(fourth.client, "before", b"join");
    put_retrying(&[leader_addr], "after", b"join");
    wait_value(fourth.client, "after", b"join");
    let members = http(fourth.client, "GET", "/v1/members", b"").expect("members");
    assert_eq!(members.status, 200);
    let ids: Vec<u64> = members.json()["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 4, "{}", members.text());

    let leader = cluster.leader();
    let response =
        http(cluster.proc(leader).client, "DELETE", "/v1/members/4", b"").expect("remove");
    assert_eq!(response.status, 200, "{}", response.text());
    let response =
        http(cluster.proc(leader).client, "DELETE", "/v1/members/4", b"").expect("remove");
    assert_eq!(response.status, 404, "{}", response.text());
    fourth.terminate();
    put_retrying(&clients(&cluster), "after", b"removal");
    let members = http(cluster.proc(leader).client, "GET", "/v1/members", b"").expect("members");
    assert_eq!(
        members.json()["members"].as_array().map(Vec::len),
        Some(3),
        "{}",
        members.text()
    );
}
