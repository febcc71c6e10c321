//! Watches by etcd's own client, `etcdctl watch` 3.4, across a leader kill
//! on 3 `ringraft serve` processes: every watcher delivers every write in
//! revision order, none lost and none twice, whether it watches through a
//! follower that stays up, through the leader that is killed and restarted
//! (etcd's client resumes the watch from the revision after the last one
//! it saw), or through every member.
//!
//! The writer puts keys nobody writes twice, through a random live
//! member's HTTP API, before, during and after the kill; a put that failed
//! may or may not have been applied. The truth is the final range over the
//! prefix: each watcher's events must be exactly those keys, ordered by
//! `mod_revision`, and every acknowledged put must be among them.

mod etcd_common;
mod server_common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use etcd_common::{etcdctl, etcdctl_command};
use server_common::{DEADLINE, ProcCluster, http, wait_healthy};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, Instant};

/// The prefix every watched write goes under.
const PREFIX: &str = "w.";

/// One watch event as etcdctl printed it: key and `mod_revision`.
type Event = (String, u64);

/// A running `etcdctl watch -w json --prefix` and the events it printed.
struct Watcher {
    name: &'static str,
    child: Child,
    events: Arc<Mutex<Vec<Event>>>,
    reader: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Watches [`PREFIX`] from `start_revision` through `endpoints`.
    fn start(name: &'static str, endpoints: &[SocketAddr], start_revision: u64) -> Watcher {
        let rev = format!("--rev={start_revision}");
        let mut child = etcdctl_command(endpoints, &["watch", "-w", "json", "--prefix", &rev])
            .arg(PREFIX)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl watch starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = watch_events(&line);
                sink.lock().expect("events").extend(parsed);
            }
        });
        Watcher {
            name,
            child,
            events,
            reader: Some(reader),
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    /// Stops etcdctl and returns everything it printed.
    fn stop(mut self) -> Vec<Event> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.events()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (key, mod_revision) of each event in one line of `etcdctl watch -w
/// json` (a JSON WatchResponse; a line that is not one has none). Only
/// puts are expected: a delete event fails the test.
fn watch_events(line: &str) -> Vec<Event> {
    let Ok(response) = serde_json::from_str::<serde_json::Value>(line) else {
        return Vec::new();
    };
    let Some(events) = response["Events"].as_array() else {
        return Vec::new();
    };
    events
        .iter()
        .map(|event| {
            assert!(
                event.get("type").is_none(),
                "only puts were made, got {event}"
            );
            key_and_revision(&event["kv"])
        })
        .collect()
}

/// The key (base64 in etcdctl's JSON) and `mod_revision` of a JSON
/// KeyValue.
fn key_and_revision(kv: &serde_json::Value) -> Event {
    let key = kv["key"].as_str().expect("a key");
    let key = BASE64
        .decode(key)
        .expect("base64 key (Go's []byte in JSON)");
    let key = String::from_utf8(key).expect("utf-8 key");
    let revision = kv["mod_revision"].as_u64().expect("a mod_revision");
    (key, revision)
}

/// Every key under [`PREFIX`] with its `mod_revision`, ordered by
/// revision: a linearizable range through `endpoints`.
fn final_range(endpoints: &[SocketAddr]) -> Vec<Event> {
    let out = etcdctl(endpoints, &["get", "--prefix", PREFIX, "-w", "json"]);
    assert!(out.success, "final range failed: {}", out.stderr);
    let response: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON range");
    let mut keys: Vec<Event> = response["kvs"]
        .as_array()
        .map(|kvs| kvs.iter().map(key_and_revision).collect())
        .unwrap_or_default();
    keys.sort_by_key(|&(_, revision)| revision);
    keys
}

/// Puts `w.<n>` through random live members until `stop`; returns the
/// keys whose put was acknowledged.
fn write_until(
    clients: Vec<(u64, SocketAddr)>,
    down: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let live: Vec<SocketAddr> = {
            let down = down.lock().expect("down");
            clients
                .iter()
                .filter(|(id, _)| !down.contains(id))
                .map(|&(_, addr)| addr)
                .collect()
        };
        let addr = live[n as usize % live.len()];
        let key = format!("{PREFIX}{n:06}");
        let response = http(addr, "PUT", &format!("/v1/kv/{key}"), b"v");
        if response.is_ok_and(|r| r.status == 200) {
            acknowledged.push(key);
        } else {
            // Unknown outcome (or not sent): the final range decides.
            sleep(Duration::from_millis(50));
        }
        sleep(Duration::from_millis(5));
    }
    acknowledged
}

/// The first revision of the watched history: a put through etcdctl.
fn first_revision(endpoints: &[SocketAddr]) -> u64 {
    let out = etcdctl(endpoints, &["put", "-w", "json", "w.000000", "first"]);
    assert!(out.success, "first put failed: {}", out.stderr);
    let response: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON put");
    response["header"]["revision"]
        .as_u64()
        .expect("a header revision")
}

#[test]
fn watches_deliver_every_write_once_in_order_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let followers: Vec<u64> = cluster
        .procs
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    // A restarted process keeps its ports.
    let addrs: std::collections::BTreeMap<u64, SocketAddr> =
        cluster.procs.values().map(|p| (p.id, p.client)).collect();
    let client = |id: u64| addrs[&id];
    let all: Vec<SocketAddr> = cluster.procs.values().map(|p| p.client).collect();

    let start = first_revision(&all);
    let watchers = [
        Watcher::start("on a follower", &[client(followers[0])], start),
        Watcher::start("on the leader", &[client(leader)], start),
        Watcher::start("on every member", &all, start),
    ];

    let down = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let clients = cluster.procs.values().map(|p| (p.id, p.client)).collect();
        let (down, stop) = (Arc::clone(&down), Arc::clone(&stop));
        thread::spawn(move || write_until(clients, down, stop))
    };

    sleep(Duration::from_secs(2));
    down.lock().expect("down").insert(leader);
    cluster.procs.get_mut(&leader).expect("leader").kill();
    // A new leader, writes through it, then the old one back.
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader, "a new leader after the kill");
    sleep(Duration::from_secs(3));
    cluster.restart(leader);
    wait_healthy(client(leader));
    down.lock().expect("down").remove(&leader);
    sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.join().expect("writer");

    let truth = final_range(&all);
    let truth_keys: BTreeSet<&str> = truth.iter().map(|(key, _)| key.as_str()).collect();
    assert!(acknowledged.len() > 20, "the load made progress");
    for key in &acknowledged {
        assert!(
            truth_keys.contains(key.as_str()),
            "acknowledged {key} is lost{}",
            cluster.dump_logs()
        );
    }
    assert_eq!(truth.first().map(|(_, rev)| *rev), Some(start));

    for watcher in watchers {
        let name = watcher.name;
        let deadline = Instant::now() + DEADLINE;
        while watcher.events().len() < truth.len() && Instant::now() < deadline {
            sleep(Duration::from_millis(100));
        }
        let events = watcher.stop();
        eprintln!(
            "watcher {name}: {} events; history {} keys, {} puts acknowledged",
            events.len(),
            truth.len(),
            acknowledged.len()
        );
        for pair in events.windows(2) {
            assert!(
                pair[0].1 < pair[1].1,
                "watcher {name}: {pair:?} out of order or repeated"
            );
        }
        assert_eq!(
            events,
            truth,
            "watcher {name} saw {} events of {}: not the history{}",
            events.len(),
            truth.len(),
            cluster.dump_logs()
        );
    }
}
