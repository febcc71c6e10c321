//! `ringraft serve` as separate processes on loopback: a 3-node cluster
//! replicating writes, kill -9 of the leader with re-election and catch-up,
//! ten kill/restart cycles under a steady write load losing no acknowledged
//! write, and growing to a 4th member with `--join` then removing it.

mod server_common;

use server_common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
fn ten_kill_restart_cycles_under_load_lose_no_acknowledged_write() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    cluster.leader();
    let addrs = clients(&cluster);
    let acknowledged: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        move || {
            let mut n = 0u64;
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load{n}");
                let addr = addrs[turn % addrs.len()];
                match http(addr, "PUT", &format!("/v1/kv/{key}"), key.as_bytes()) {
                    Ok(response) if response.status == 200 => {
                        let index = response.json()["index"].as_u64().unwrap_or(0);
                        acknowledged.lock().expect("lock").insert(key, index);
                        n += 1;
                    }
                    // Unknown outcome: the key may or may not be written;
                    // only acknowledged keys are checked. Move on to a new
                    // key and another node.
                    _ => {
                        n += 1;
                        turn += 1;
                        sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    });
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for cycle in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let leader = cluster.leader();
        // The leader most often, a follower now and then.
        let victim = if cycle % 3 == 2 {
            [1, 2, 3]
                .into_iter()
                .filter(|&id| id != leader)
                .nth((seed % 2) as usize)
                .unwrap_or(leader)
        } else {
            leader
        };
        let before = acknowledged.lock().expect("lock").len();
        cluster.procs.get_mut(&victim).expect("victim").kill();
        sleep(Duration::from_millis(100 + seed % 300));
        cluster.restart(victim);
        wait_healthy(cluster.proc(victim).client);
        // Writes keep flowing between kills.
        let deadline = Instant::now() + DEADLINE;
        while acknowledged.lock().expect("lock").len() < before + 5 {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: writes stopped\n{}",
                cluster.dump_logs()
            );
            sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > 50,
        "only {} writes",
        acknowledged.len()
    );
    eprintln!("{} acknowledged writes across 10 kills", acknowledged.len());
    let leader = cluster.leader();
    let reader = cluster.proc(leader).client;
    for key in acknowledged.keys() {
        let response = http(reader, "GET", &format!("/v1/kv/{key}"), b"").expect("GET");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, key.as_bytes()),
            "acknowledged write {key} lost\n{}",
            cluster.dump_logs()
        );
    }
    // Every node ends with every acknowledged write.
    let (last_key, _) = acknowledged
        .iter()
        .max_by_key(|(_, index)| **index)
        .expect("writes");
    for id in [1, 2, 3] {
        wait_value(cluster.proc(id).client, last_key, last_key.as_bytes());
    }
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
