//! Crash test of real `ringraft serve` processes: a 3-node cluster under
//! concurrent client load has nodes killed with SIGKILL and restarted,
//! cycle after cycle, and the clients' history must be linearizable with
//! every acknowledged write still there at the end.
//!
//! The load: [`CLIENTS`] threads, each doing random linearizable gets, puts
//! and deletes on [`SHARED_KEYS`] keys (so that operations really contend),
//! plus now and then a put to a key of its own that nothing overwrites,
//! each against a random node (writes to followers are forwarded by raft).
//! Every operation goes into a [`HistoryRecorder`]: an acknowledged write is
//! `Ok`, a get's 200 or 404 is its value, a write that failed after its
//! request may have reached a node (connection reset, timeout, 503) has an
//! unknown outcome, a failed get is left out, and an operation whose
//! connection was refused was never sent and is not recorded at all. A put
//! raft refused outright (503 "not the leader": it never entered a log) is
//! recorded as unknown too, and no read may ever return its value.
//! Alongside, [`GRPC_CLIENTS`] threads speak etcd's v3 API (`crash_grpc`)
//! to the same keys: compare-and-swap txns (checked with the checker's
//! compare-and-swap model), linearizable ranges and puts, so that a write
//! through one API must be seen, in order, through the other.
//!
//! The faults: [`DEFAULT_CYCLES`] cycles (`RINGRAFT_CRASH_CYCLES` to change)
//! of SIGKILL on the leader (two cycles in three) or a random follower; in
//! one cycle in six a second node is killed while the first is still down,
//! so that the cluster loses its quorum for a moment and two nodes recover
//! together. A small `--snapshot-count` makes every node snapshot and
//! compact many times, so restarts begin from a snapshot and a WAL tail;
//! a tiny `--snapshot-catchup-entries` makes the leader send a snapshot to
//! a node that was down for a few hundred milliseconds.
//!
//! At the end: the clients stop, a last write is applied everywhere, every
//! key is read on every node, linearizably and then serializably (both
//! recorded: after convergence a serializable read must see the final
//! value too), every acknowledged write to a key of its own must be read
//! back on every node, and the whole history must check
//! [`CheckResult::Ok`] within the checker's default budget (a timeout is a
//! failure). The same history is then altered in the ways a lost or
//! reordered write would show (a stale read after an acknowledged write, a
//! read of a value never written) and must check `Illegal`, so the pipeline
//! provably can fail; `a_real_history_altered_is_flagged` does the same on
//! an excerpt of a recorded run without starting any process.
//!
//! `RINGRAFT_CRASH_SEED` replays a run's choices (the seed is printed; the
//! timing of processes is not replayable). On failure the history and the
//! node logs are kept under the target's temporary directory, and the path
//! is printed.

mod crash_grpc;
mod server_common;

use ringraft::linearizability::{
    Budget, CheckResult, HistoryRecorder, Input, Operation, Output, check_with_budget,
};
use ringraft::raft::rng::Rng;
use server_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

const NODES: [u64; 3] = [1, 2, 3];
/// Kill/restart cycles unless `RINGRAFT_CRASH_CYCLES` says otherwise.
const DEFAULT_CYCLES: usize = 50;
/// Concurrent HTTP client threads.
const CLIENTS: u64 = 5;
/// Concurrent gRPC client threads (etcd's API: compare-and-swap txns,
/// ranges and puts on the same keys), after the HTTP ones.
const GRPC_CLIENTS: u64 = 2;
/// Keys every client reads and writes.
const SHARED_KEYS: usize = 4;
/// Small, so that each node snapshots every few seconds under the load.
const SNAPSHOT_COUNT: &str = "100";
/// Tiny, so that a node restarted after a few hundred milliseconds is often
/// behind the leader's log start and must be sent a snapshot.
const SNAPSHOT_CATCHUP_ENTRIES: &str = "20";
/// A write forwarded to a leader that was just killed waits this long for
/// its 503: short, so that the clients keep contending.
const REQUEST_TIMEOUT_MS: &str = "1000";
/// Acknowledged writes the load must make after each recovery.
const PROGRESS_PER_CYCLE: u64 = 5;
/// Client ids of the final reads: this plus the node id.
const FINAL_READER: u64 = 100;

/// A pause of `from..to` milliseconds, drawn from `rng`.
fn millis(rng: &mut Rng, from: u64, to: u64) -> Duration {
    Duration::from_millis(from + rng.below(to - from))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn shared_key(n: u64) -> String {
    format!("k{n}")
}

/// What one client did, by kind and outcome.
#[derive(Debug, Default)]
struct ClientStats {
    puts: u64,
    deletes: u64,
    gets: u64,
    acknowledged_puts: u64,
    acknowledged_deletes: u64,
    gets_found: u64,
    gets_absent: u64,
    unknown_writes: u64,
    failed_gets: u64,
    /// Compare-and-swap txns over gRPC sent, swapped, and not swapped.
    swaps: u64,
    swaps_swapped: u64,
    swaps_refused: u64,
    connections_refused: u64,
    /// Acknowledged puts to a key nothing else writes: key and value.
    own_keys_acknowledged: Vec<(String, Vec<u8>)>,
    /// Puts to such keys with an unknown outcome.
    own_keys_unknown: Vec<String>,
    /// Values of puts raft refused (503 "not the leader" or "proposal
    /// dropped": never in any log), which no read may ever return. They
    /// are recorded as unknown all the same, which is sound.
    refused_values: Vec<Vec<u8>>,
    /// Deletes raft refused likewise.
    refused_deletes: u64,
    /// Answers no correct server gives here (500, 400, …).
    unexpected: Vec<String>,
    /// Failed operations by cause: how many, and the time they took.
    failures: BTreeMap<String, (u64, Duration)>,
}

impl ClientStats {
    fn add(&mut self, other: ClientStats) {
        self.puts += other.puts;
        self.deletes += other.deletes;
        self.gets += other.gets;
        self.acknowledged_puts += other.acknowledged_puts;
        self.acknowledged_deletes += other.acknowledged_deletes;
        self.gets_found += other.gets_found;
        self.gets_absent += other.gets_absent;
        self.unknown_writes += other.unknown_writes;
        self.failed_gets += other.failed_gets;
        self.swaps += other.swaps;
        self.swaps_swapped += other.swaps_swapped;
        self.swaps_refused += other.swaps_refused;
        self.connections_refused += other.connections_refused;
        self.own_keys_acknowledged
            .extend(other.own_keys_acknowledged);
        self.own_keys_unknown.extend(other.own_keys_unknown);
        self.refused_values.extend(other.refused_values);
        self.refused_deletes += other.refused_deletes;
        self.unexpected.extend(other.unexpected);
        for (cause, (count, took)) in other.failures {
            let entry = self.failures.entry(cause).or_default();
            entry.0 += count;
            entry.1 += took;
        }
    }

    /// Counts a failed operation (recorded as unknown) by cause, and
    /// keeps what the end of the test checks about it.
    fn note_failure(
        &mut self,
        op: &ClientOp,
        answer: &std::io::Result<Response>,
        addr: SocketAddr,
        took: Duration,
    ) {
        if op.is_write() {
            self.unknown_writes += 1;
            if op.own_key {
                self.own_keys_unknown.push(op.key.clone());
            }
        } else {
            self.failed_gets += 1;
        }
        let cause = match answer {
            Ok(response) => format!(
                "{} {}",
                response.status,
                response.json()["error"].as_str().unwrap_or("")
            ),
            Err(error) if error.kind() == std::io::ErrorKind::Other => error.to_string(),
            Err(error) => format!("{:?}", error.kind()),
        };
        let refused_by_raft =
            cause.starts_with("503 not the leader") || cause.starts_with("503 proposal dropped");
        match op.method {
            "PUT" if refused_by_raft => self.refused_values.push(op.value.clone()),
            "DELETE" if refused_by_raft => self.refused_deletes += 1,
            _ => {}
        }
        if let Ok(response) = answer
            && response.status != 503
        {
            self.unexpected.push(format!(
                "{} /v1/kv/{} on {addr}: {} {}",
                op.method,
                op.key,
                response.status,
                response.text()
            ));
        }
        let entry = self.failures.entry(cause).or_default();
        entry.0 += 1;
        entry.1 += took;
    }
}

/// One client operation, as sent over HTTP and as recorded.
struct ClientOp {
    method: &'static str,
    key: String,
    value: Vec<u8>,
    input: Input,
    own_key: bool,
}

impl ClientOp {
    fn is_write(&self) -> bool {
        self.method != "GET"
    }

    fn random(client: u64, seq: u64, rng: &mut Rng) -> ClientOp {
        let value = format!("c{client}-{seq}").into_bytes();
        let shared = shared_key(rng.below(SHARED_KEYS as u64));
        let (method, key, own_key) = match rng.below(100) {
            0..45 => ("GET", shared, false),
            45..85 => ("PUT", shared, false),
            85..94 => ("DELETE", shared, false),
            _ => ("PUT", format!("own-c{client}-{seq}"), true),
        };
        let input = match method {
            "GET" => Input::Get {
                key: key.clone().into_bytes(),
            },
            "DELETE" => Input::Delete {
                key: key.clone().into_bytes(),
            },
            _ => Input::Put {
                key: key.clone().into_bytes(),
                value: value.clone(),
            },
        };
        ClientOp {
            method,
            key,
            value: if method == "PUT" { value } else { Vec::new() },
            input,
            own_key,
        }
    }
}

/// Shared between the clients and the killer.
struct Load {
    recorder: HistoryRecorder,
    stop: AtomicBool,
    /// Acknowledged writes, for the killer to see progress.
    acknowledged: AtomicU64,
    addrs: Vec<SocketAddr>,
}

/// One client thread: random operations on random nodes until told to
/// stop.
fn run_client(client: u64, load: &Load, seed: u64) -> ClientStats {
    let mut rng = Rng::new(seed);
    let mut stats = ClientStats::default();
    let mut seq = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        seq += 1;
        let op = ClientOp::random(client, seq, &mut rng);
        let addr = load.addrs[rng.below(load.addrs.len() as u64) as usize];
        // Not connected (the node is down): nothing was sent, nothing to
        // record.
        let Ok(stream) = connect(addr) else {
            stats.connections_refused += 1;
            sleep(millis(&mut rng, 5, 30));
            continue;
        };
        match op.method {
            "GET" => stats.gets += 1,
            "PUT" => stats.puts += 1,
            _ => stats.deletes += 1,
        }
        let sent = Instant::now();
        let token = load.recorder.invoke(client, op.input.clone());
        let path = format!("/v1/kv/{}", op.key);
        let answer = request(stream, op.method, &path, &op.value);
        let write = op.is_write();
        match answer {
            Ok(response) if write && response.status == 200 => {
                load.recorder.complete(token, Output::Ok);
                load.acknowledged.fetch_add(1, Ordering::Relaxed);
                if op.method == "PUT" {
                    stats.acknowledged_puts += 1;
                } else {
                    stats.acknowledged_deletes += 1;
                }
                if op.own_key {
                    stats.own_keys_acknowledged.push((op.key, op.value));
                }
            }
            Ok(response) if !write && matches!(response.status, 200 | 404) => {
                let value = (response.status == 200).then_some(response.body);
                if value.is_some() {
                    stats.gets_found += 1;
                } else {
                    stats.gets_absent += 1;
                }
                load.recorder.complete(token, Output::Value(value));
            }
            other => {
                // 503 (no leader, timeout), a reset or a timeout: a write
                // may still apply; a get is dropped from the history.
                load.recorder.complete_unknown(token);
                stats.note_failure(&op, &other, addr, sent.elapsed());
                sleep(millis(&mut rng, 10, 50));
            }
        }
    }
    stats
}

/// What the killer did.
#[derive(Debug, Default)]
struct KillStats {
    cycles: usize,
    kills: usize,
    leader_kills: usize,
    double_kills: usize,
    /// Restarted nodes serving again with a snapshot (from before the
    /// kill, or taken while replaying their WAL).
    restarts_with_snapshot: usize,
    /// State machines restored from a snapshot the leader sent (counted
    /// in the node logs at the end).
    snapshots_received: usize,
    cycle_times: Vec<Duration>,
}

/// Waits until every running node names the same running leader; on
/// failure, the panic message says which nodes ran.
fn wait_agreed_leader(cluster: &mut ProcCluster, why: &str) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(leader) = cluster.agreed_leader() {
            return leader;
        }
        assert!(Instant::now() < deadline, "no agreed leader {why}");
        sleep(Duration::from_millis(10));
    }
}

fn wait_healthy_node(cluster: &ProcCluster, id: u64, why: &str) {
    let addr = cluster.proc(id).client;
    let deadline = Instant::now() + DEADLINE;
    while !http(addr, "GET", "/health", b"").is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "node {id} never recovered {why}");
        sleep(Duration::from_millis(20));
    }
}

/// One kill/restart cycle: the leader (two cycles in three) or a follower,
/// sometimes a second node while the first is down; down for a few hundred
/// milliseconds; restarted; served again; and the load must make progress.
fn kill_cycle(cluster: &mut ProcCluster, load: &Load, rng: &mut Rng, stats: &mut KillStats) {
    let cycle = stats.cycles;
    let started = Instant::now();
    let leader = wait_agreed_leader(cluster, &format!("before cycle {cycle}"));
    let followers: Vec<u64> = NODES.into_iter().filter(|&id| id != leader).collect();
    let first = if rng.below(3) < 2 {
        leader
    } else {
        followers[rng.below(2) as usize]
    };
    let mut down = vec![first];
    kill_node(cluster, first, first == leader, stats);
    if rng.below(6) == 0 {
        // A second node while the first is down: no quorum until one is
        // back. The survivors may have elected a leader meanwhile.
        sleep(millis(rng, 0, 400));
        let survivors: Vec<u64> = NODES.into_iter().filter(|&id| id != first).collect();
        let second = survivors[rng.below(2) as usize];
        let leads = status_leader(cluster.proc(second).client) == Some(second);
        kill_node(cluster, second, leads, stats);
        down.push(second);
        stats.double_kills += 1;
    }
    sleep(millis(rng, 100, 600));
    if rng.below(2) == 0 {
        down.reverse();
    }
    for &id in &down {
        cluster.restart(id);
        sleep(millis(rng, 0, 150));
    }
    for &id in &down {
        wait_healthy_node(cluster, id, &format!("in cycle {cycle}"));
        let snapshot_index =
            status(cluster.proc(id).client).and_then(|s| s["snapshot_index"].as_u64());
        if snapshot_index.is_some_and(|index| index > 0) {
            stats.restarts_with_snapshot += 1;
        }
    }
    let before = load.acknowledged.load(Ordering::Relaxed);
    let deadline = Instant::now() + DEADLINE;
    while load.acknowledged.load(Ordering::Relaxed) < before + PROGRESS_PER_CYCLE {
        assert!(
            Instant::now() < deadline,
            "cycle {cycle}: no progress after restarting {down:?}"
        );
        sleep(Duration::from_millis(10));
    }
    stats.cycles += 1;
    stats.cycle_times.push(started.elapsed());
}

fn kill_node(cluster: &mut ProcCluster, id: u64, leads: bool, stats: &mut KillStats) {
    cluster.procs.get_mut(&id).expect("node").kill();
    stats.kills += 1;
    if leads {
        stats.leader_kills += 1;
    }
}

/// Waits until every node applied at least `index`.
fn wait_applied(cluster: &ProcCluster, index: u64) {
    let deadline = Instant::now() + DEADLINE;
    for id in NODES {
        let addr = cluster.proc(id).client;
        while status(addr)
            .and_then(|s| s["applied"].as_u64())
            .is_none_or(|applied| applied < index)
        {
            assert!(
                Instant::now() < deadline,
                "node {id} never applied index {index}"
            );
            sleep(Duration::from_millis(20));
        }
    }
}

/// Reads `key` on `addr`, recorded as client `client`; retries a failed
/// read (503, reset), which is left out of the history. Returns the value.
fn final_read(
    recorder: &HistoryRecorder,
    client: u64,
    addr: SocketAddr,
    key: &str,
    serializable: bool,
) -> Option<Vec<u8>> {
    let path = if serializable {
        format!("/v1/kv/{key}?consistency=serializable")
    } else {
        format!("/v1/kv/{key}")
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let input = Input::Get {
            key: key.as_bytes().to_vec(),
        };
        if let Ok(stream) = connect(addr) {
            let token = recorder.invoke(client, input);
            match request(stream, "GET", &path, b"") {
                Ok(response) if matches!(response.status, 200 | 404) => {
                    let value = (response.status == 200).then_some(response.body);
                    recorder.complete(token, Output::Value(value.clone()));
                    return value;
                }
                _ => recorder.complete_unknown(token),
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} on {addr} never answered"
        );
        sleep(Duration::from_millis(50));
    }
}

/// When the test fails: stops the clients and keeps the history and the
/// node logs.
struct KeepOnPanic {
    load: Arc<Load>,
    logs: Vec<(u64, PathBuf)>,
    seed: u64,
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.load.stop.store(true, Ordering::Relaxed);
            let dir = keep_history(&self.load.recorder.history(), &self.logs, self.seed);
            eprintln!(
                "seed {}; history and node logs kept in {}",
                self.seed,
                dir.display()
            );
        }
    }
}

/// Writes the history (one operation a line) and copies of the node logs
/// to a directory under the target's temporary directory; returns it.
fn keep_history(history: &[Operation], logs: &[(u64, PathBuf)], seed: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("server_crash-{seed}"));
    let _ = std::fs::create_dir_all(&dir);
    let text: String = history.iter().map(|op| format!("{op}\n")).collect();
    let _ = std::fs::write(dir.join("history.txt"), text);
    for (id, log) in logs {
        let _ = std::fs::copy(log, dir.join(format!("node{id}.log")));
    }
    dir
}

#[test]
fn kill_restart_cycles_under_concurrent_load_keep_the_history_linearizable() {
    let started = Instant::now();
    let cycles = env_u64("RINGRAFT_CRASH_CYCLES").map_or(DEFAULT_CYCLES, |n| n as usize);
    let seed = env_u64("RINGRAFT_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("seed {seed} (RINGRAFT_CRASH_SEED replays the choices), {cycles} cycles");
    let mut rng = Rng::new(seed);
    let mut cluster = ProcCluster::start_with(
        &NODES,
        &[
            "--snapshot-count",
            SNAPSHOT_COUNT,
            "--snapshot-catchup-entries",
            SNAPSHOT_CATCHUP_ENTRIES,
            "--request-timeout-ms",
            REQUEST_TIMEOUT_MS,
        ],
    );
    let load = Arc::new(Load {
        recorder: HistoryRecorder::new(),
        stop: AtomicBool::new(false),
        acknowledged: AtomicU64::new(0),
        addrs: NODES.iter().map(|&id| cluster.proc(id).client).collect(),
    });
    let keep = KeepOnPanic {
        load: load.clone(),
        logs: NODES
            .iter()
            .map(|&id| (id, cluster.proc(id).dir.with_extension("log")))
            .collect(),
        seed,
    };
    wait_agreed_leader(&mut cluster, "at start");
    let mut clients = Vec::new();
    for client in 1..=CLIENTS + GRPC_CLIENTS {
        let load = load.clone();
        let seed = rng.next_u64();
        clients.push(std::thread::spawn(move || {
            if client <= CLIENTS {
                run_client(client, &load, seed)
            } else {
                crash_grpc::run_grpc_client(client, &load, seed)
            }
        }));
    }
    let mut kills = KillStats::default();
    while kills.cycles < cycles {
        kill_cycle(&mut cluster, &load, &mut rng, &mut kills);
    }
    load.stop.store(true, Ordering::Relaxed);
    let mut stats = ClientStats::default();
    for client in clients {
        stats.add(client.join().expect("client thread"));
    }
    assert_load_was_sound(&stats);

    converge(&mut cluster);
    kills.snapshots_received = NODES
        .iter()
        .map(|&id| {
            cluster
                .proc(id)
                .log()
                .matches("state machine restored from a snapshot")
                .count()
        })
        .sum();
    let finals = read_every_key_everywhere(&cluster, &load.recorder, &stats);
    assert_final_reads(&finals, &stats);
    let history = load.recorder.history();
    let check_started = Instant::now();
    let verdict = check_with_budget(&history, Budget::DEFAULT);
    let check_time = check_started.elapsed();
    assert_eq!(verdict, CheckResult::Ok, "{verdict}");
    assert_refused_writes_never_read(&history, &stats);
    let alter_started = Instant::now();
    let altered = assert_alterations_flagged(&history);
    let checks = Checks {
        history_len: history.len(),
        check_time,
        altered,
        alter_time: alter_started.elapsed(),
    };
    print_summary(&kills, &stats, &checks, seed, started.elapsed());
    if std::env::var_os("RINGRAFT_CRASH_KEEP").is_some() {
        let dir = keep_history(&history, &keep.logs, seed);
        eprintln!("history and node logs kept in {}", dir.display());
    }
}

/// Enough acknowledged writes, and no answer a correct server never gives.
fn assert_load_was_sound(stats: &ClientStats) {
    let acknowledged_writes = stats.acknowledged_puts + stats.acknowledged_deletes;
    assert!(
        acknowledged_writes > 50 && !stats.own_keys_acknowledged.is_empty(),
        "only {acknowledged_writes} acknowledged writes"
    );
    assert!(
        stats.swaps_swapped > 0 && stats.swaps_refused > 0,
        "the gRPC txns neither swapped nor raced: {} swapped, {} refused of {}",
        stats.swaps_swapped,
        stats.swaps_refused,
        stats.swaps
    );
    assert!(
        stats.unexpected.is_empty(),
        "answers no correct server gives: {:#?}",
        stats.unexpected
    );
}

/// Once the clients stopped: a last write, applied on every node, commits
/// every entry before it in the leader's log, so that afterwards every
/// node's state is final and a serializable read must see it.
fn converge(cluster: &mut ProcCluster) {
    wait_agreed_leader(cluster, "after the last cycle");
    let addrs: Vec<SocketAddr> = NODES.iter().map(|&id| cluster.proc(id).client).collect();
    let last_index = put_retrying(&addrs, "after-the-cycles", b"done");
    wait_applied(cluster, last_index);
}

/// What each key reads on every node, linearizably and serializably (all
/// recorded).
type FinalReads = BTreeMap<String, BTreeSet<Option<Vec<u8>>>>;

fn read_every_key_everywhere(
    cluster: &ProcCluster,
    recorder: &HistoryRecorder,
    stats: &ClientStats,
) -> FinalReads {
    let own_keys: BTreeSet<&String> = stats
        .own_keys_acknowledged
        .iter()
        .map(|(key, _)| key)
        .chain(&stats.own_keys_unknown)
        .collect();
    let keys: Vec<String> = (0..SHARED_KEYS as u64)
        .map(shared_key)
        .chain(own_keys.into_iter().cloned())
        .collect();
    let mut finals = FinalReads::new();
    for id in NODES {
        let addr = cluster.proc(id).client;
        for key in &keys {
            for serializable in [false, true] {
                let value = final_read(recorder, FINAL_READER + id, addr, key, serializable);
                finals.entry(key.clone()).or_default().insert(value);
            }
        }
    }
    finals
}

/// Every node reads the same for every key, and every acknowledged write
/// to a key of its own is there.
fn assert_final_reads(finals: &FinalReads, stats: &ClientStats) {
    for (key, values) in finals {
        assert_eq!(
            values.len(),
            1,
            "nodes disagree on {key} after convergence: {values:?}"
        );
    }
    for (key, value) in &stats.own_keys_acknowledged {
        assert_eq!(
            finals[key].first(),
            Some(&Some(value.clone())),
            "acknowledged write {key} = {} lost",
            value.escape_ascii()
        );
    }
}

/// No read ever returned the value of a put raft refused.
fn assert_refused_writes_never_read(history: &[Operation], stats: &ClientStats) {
    let refused: BTreeSet<&[u8]> = stats.refused_values.iter().map(Vec::as_slice).collect();
    for op in history {
        if let Output::Value(Some(value)) = &op.output {
            assert!(
                !refused.contains(value.as_slice()),
                "{op}: read a value whose put was refused with 503"
            );
        }
    }
}

/// How the history checked.
struct Checks {
    history_len: usize,
    check_time: Duration,
    altered: usize,
    alter_time: Duration,
}

fn print_summary(
    kills: &KillStats,
    stats: &ClientStats,
    checks: &Checks,
    seed: u64,
    wall: Duration,
) {
    let client_ops = stats.puts + stats.deletes + stats.gets + stats.swaps;
    let average_cycle = kills.cycle_times.iter().sum::<Duration>() / kills.cycles.max(1) as u32;
    eprintln!(
        "crash test: {} cycles, {} kills ({} of the leader, {} double), \
         {} restarts with a snapshot, {} snapshots received from the leader, seed {seed}\n\
         ops: {} puts, {} deletes, {} gets sent ({} refused connections not sent); \
         {} final reads\n\
         gRPC compare-and-swap txns: {} sent, {} swapped, {} refused\n\
         outcomes: {} acknowledged puts and {} deletes, {} unknown writes, \
         {} gets found, {} absent, {} failed gets dropped; {} acknowledged own-key writes \
         all read back on every node; {} puts and {} deletes refused by raft, none read\n\
         failures by cause (count, time spent): {:?}\n\
         cycles took {:?} at most, {average_cycle:?} on average\n\
         history: {} operations, checked linearizable in {:?}; \
         {} alterations checked illegal in {:?}\n\
         wall time {wall:?}",
        kills.cycles,
        kills.kills,
        kills.leader_kills,
        kills.double_kills,
        kills.restarts_with_snapshot,
        kills.snapshots_received,
        stats.puts,
        stats.deletes,
        stats.gets,
        stats.connections_refused,
        checks.history_len as u64 - client_ops,
        stats.swaps,
        stats.swaps_swapped,
        stats.swaps_refused,
        stats.acknowledged_puts,
        stats.acknowledged_deletes,
        stats.unknown_writes,
        stats.gets_found,
        stats.gets_absent,
        stats.failed_gets,
        stats.own_keys_acknowledged.len(),
        stats.refused_values.len(),
        stats.refused_deletes,
        stats.failures,
        kills.cycle_times.iter().max().copied().unwrap_or_default(),
        checks.history_len,
        checks.check_time,
        checks.altered,
        checks.alter_time,
    );
}

/// Alters a real, linearizable history the ways a lost or misordered write
/// would show and asserts the checker flags each; returns how many.
fn assert_alterations_flagged(history: &[Operation]) -> usize {
    let alterations = [
        stale_read(history),
        never_written_read(history),
        second_swap_winner(history),
    ];
    for (what, altered) in alterations.iter() {
        let verdict = check_with_budget(altered, Budget::DEFAULT);
        assert!(verdict.is_illegal(), "{what}: {verdict}");
    }
    alterations.len()
}

fn is_acknowledged_write(op: &Operation) -> bool {
    op.output == Output::Ok
}

/// The history with one get turned stale: it returns the value of an
/// acknowledged put that an acknowledged write overwrote before the get was
/// invoked (what a lost write looks like to a reader).
fn stale_read(history: &[Operation]) -> (&'static str, Vec<Operation>) {
    // From the end: the final reads first, a lost write as the end of the
    // test would see it.
    for (g, get) in history.iter().enumerate().rev() {
        if !matches!(get.input, Input::Get { .. }) || !matches!(get.output, Output::Value(_)) {
            continue;
        }
        let key = get.input.key();
        let before = |op: &&Operation, time: u64| {
            op.input.key() == key && is_acknowledged_write(op) && op.ret < time
        };
        let Some(overwrite) = history
            .iter()
            .filter(|op| before(op, get.call))
            .max_by_key(|op| op.ret)
        else {
            continue;
        };
        let old_put = history
            .iter()
            .filter(|op| before(op, overwrite.call))
            .filter_map(|op| match &op.input {
                Input::Put { value, .. } if Output::Value(Some(value.clone())) != get.output => {
                    Some((op.ret, value.clone()))
                }
                _ => None,
            })
            .max()
            .map(|(_, value)| value);
        if let Some(old) = old_put {
            let mut altered = history.to_vec();
            altered[g].output = Output::Value(Some(old));
            return ("a read of an overwritten value", altered);
        }
    }
    panic!("no get follows two acknowledged writes of its key: the load did too little");
}

/// The history with a second winner of an acknowledged compare-and-swap:
/// after everything, a swap from the same expected value succeeds again.
/// Every write's value is unique, so the value the first swap replaced can
/// never be current again, and no order admits a second winner (what a
/// txn applied twice, or a compare against stale state, would look like).
fn second_swap_winner(history: &[Operation]) -> (&'static str, Vec<Operation>) {
    let swap = history
        .iter()
        .find(|op| {
            op.output == Output::Ok
                && matches!(
                    &op.input,
                    Input::Cas {
                        expected: Some(_),
                        ..
                    }
                )
        })
        .expect("the gRPC clients made an acknowledged swap from a value");
    let Input::Cas { key, expected, .. } = &swap.input else {
        unreachable!("found a swap");
    };
    let after = history
        .iter()
        .map(|op| {
            if op.output == Output::Unknown {
                op.call
            } else {
                op.ret
            }
        })
        .max()
        .unwrap_or(0)
        + 1;
    let mut altered = history.to_vec();
    altered.push(Operation {
        client: u64::MAX,
        call: after,
        ret: after + 1,
        input: Input::Cas {
            key: key.clone(),
            expected: expected.clone(),
            value: b"second winner".to_vec(),
        },
        output: Output::Ok,
    });
    ("a second winner of a compare-and-swap", altered)
}

/// The history with one get that found a value turned into a read of a
/// value no client ever wrote.
fn never_written_read(history: &[Operation]) -> (&'static str, Vec<Operation>) {
    let mut altered = history.to_vec();
    let get = altered
        .iter_mut()
        .find(|op| matches!(op.output, Output::Value(Some(_))))
        .expect("some get found a value");
    get.output = Output::Value(Some(b"never-written".to_vec()));
    ("a read of a value never written", altered)
}

/// Operations on one key from a run of the crash test (its kept
/// `history.txt`), across a leader kill: concurrent writes, a put whose
/// outcome was unknown and that did happen (it was read), one that
/// apparently did not.
const RECORDED_EXCERPT: &str = r#"
client 4 put("k1", "c4-77") [1070045247, 1318871809] → ok
client 5 delete("k1") [1077939750, 1319184456] → ok
client 1 get("k1") [1081362678, 1098986605] → absent
client 2 put("k1", "c2-78") [1313008485, 1323216266] → ok
client 3 get("k1") [1322370600, 1323042530] → "c2-78"
client 1 put("k1", "c1-63") [1322833518, 1326708043] → ok
client 3 delete("k1") [1323076383, 1327344196] → ok
client 2 get("k1") [1323250009, 1327053341] → "c2-78"
client 4 put("k1", "c4-82") [1375528157, ∞) → unknown
client 2 get("k1") [2344230052, 2344536787] → absent
client 2 get("k1") [2344638788, 2344932699] → absent
client 2 put("k1", "c2-88") [2344965511, ∞) → unknown
client 5 get("k1") [2362857671, 2363146863] → "c2-88"
client 2 get("k1") [2364739409, 2365011099] → "c2-88"
client 1 delete("k1") [2368971254, 2370030821] → ok
client 1 put("k1", "c1-74") [2370068231, 2371221945] → ok
client 2 put("k1", "c2-91") [2392184973, 2393809520] → ok
client 1 get("k1") [2397537440, 2397778722] → "c2-91"
client 1 put("k1", "c1-81") [2403936148, 2405502575] → ok
client 5 put("k1", "c5-77") [2407861028, 2409047894] → ok
client 2 get("k1") [2408139720, 2408868808] → "c1-81"
client 2 get("k1") [2408944099, 2409313812] → "c5-77"
client 5 put("k1", "c5-78") [2409076858, 2410310040] → ok
"#;

/// Parses operations as [`Operation`]'s `Display` writes them (keys and
/// values without escapes), one a line.
fn parse_history(text: &str) -> Vec<Operation> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| parse_operation(line).unwrap_or_else(|| panic!("cannot parse {line:?}")))
        .collect()
}

fn parse_operation(line: &str) -> Option<Operation> {
    let (request, output) = line.split_once(" → ")?;
    let request = request.strip_prefix("client ")?;
    let (client, request) = request.split_once(' ')?;
    let (call, times) = request.split_once(" [")?;
    let (name, args) = call.strip_suffix(')')?.split_once('(')?;
    let (call_time, ret_time) = times.split_once(", ")?;
    let input = parse_input(name, args)?;
    let output = match output {
        "ok" => Output::Ok,
        "unknown" => Output::Unknown,
        found => Output::Value(parse_value(found)?),
    };
    Some(Operation {
        client: client.parse().ok()?,
        call: call_time.parse().ok()?,
        ret: ret_time
            .strip_suffix(']')
            .map_or(Some(u64::MAX), |t| t.parse().ok())?,
        input,
        output,
    })
}

/// A call's arguments: `put("k", "v")`, `delete("k")`, `get("k")`, or
/// `cas("k", "expected"→"new")` (`absent` expected: the key must not
/// exist).
fn parse_input(name: &str, args: &str) -> Option<Input> {
    if name == "cas" {
        let (key, swap) = args.split_once(", ")?;
        let (expected, value) = swap.split_once('→')?;
        return Some(Input::Cas {
            key: parse_quoted(key)?,
            expected: parse_value(expected)?,
            value: parse_quoted(value)?,
        });
    }
    let args: Vec<Vec<u8>> = args.split(", ").map(parse_quoted).collect::<Option<_>>()?;
    let key = args.first()?.clone();
    match (name, args.get(1)) {
        ("put", Some(value)) => Some(Input::Put {
            key,
            value: value.clone(),
        }),
        ("delete", None) => Some(Input::Delete { key }),
        ("get", None) => Some(Input::Get { key }),
        _ => None,
    }
}

/// `"text"` → its bytes (no escapes: the test's keys and values have none).
fn parse_quoted(text: &str) -> Option<Vec<u8>> {
    Some(
        text.strip_prefix('"')?
            .strip_suffix('"')?
            .as_bytes()
            .to_vec(),
    )
}

/// `absent` or a quoted value.
fn parse_value(text: &str) -> Option<Option<Vec<u8>>> {
    match text {
        "absent" => Some(None),
        quoted => Some(Some(parse_quoted(quoted)?)),
    }
}

/// Replaces the output of the get of `client` invoked at `call`.
fn altered_read(history: &[Operation], client: u64, call: u64, value: &str) -> Vec<Operation> {
    let mut altered = history.to_vec();
    let get = altered
        .iter_mut()
        .find(|op| op.client == client && op.call == call)
        .expect("the get to alter");
    assert!(matches!(get.input, Input::Get { .. }));
    get.output = Output::Value(Some(value.as_bytes().to_vec()));
    altered
}

#[test]
fn kept_histories_parse_back_into_the_operations_written() {
    let cas = |expected: Option<&str>, value: &str| Input::Cas {
        key: b"k1".to_vec(),
        expected: expected.map(|e| e.as_bytes().to_vec()),
        value: value.as_bytes().to_vec(),
    };
    let operation = |client, call, ret, input, output| Operation {
        client,
        call,
        ret,
        input,
        output,
    };
    let written = vec![
        operation(1, 10, 20, cas(None, "c1-1"), Output::Ok),
        operation(
            2,
            15,
            30,
            cas(None, "c2-1"),
            Output::Value(Some(b"c1-1".to_vec())),
        ),
        operation(3, 25, 40, cas(Some("c1-1"), "c3-1"), Output::Ok),
        operation(1, 45, u64::MAX, cas(Some("c3-1"), "c1-2"), Output::Unknown),
        operation(2, 50, 60, cas(Some("c9-9"), "c2-2"), Output::Value(None)),
        operation(
            4,
            55,
            65,
            Input::Get {
                key: b"k1".to_vec(),
            },
            Output::Value(None),
        ),
    ];
    let text: String = written.iter().map(|op| format!("{op}\n")).collect();
    assert_eq!(parse_history(&text), written, "{text}");
    assert!(text.contains("cas(\"k1\", absent→\"c1-1\")"), "{text}");
}

#[test]
fn a_real_history_altered_is_flagged() {
    let history = parse_history(RECORDED_EXCERPT);
    assert_eq!(history.len(), 23);
    assert_eq!(
        check_with_budget(&history, Budget::DEFAULT),
        CheckResult::Ok
    );
    // Client 2 reads c1-74 after the acknowledged c2-91 overwrote it.
    let stale = altered_read(&history, 2, 2408944099, "c1-74");
    // Client 1 reads c2-88, written by an unknown put, after an
    // acknowledged delete and two acknowledged puts followed it.
    let stale_unknown = altered_read(&history, 1, 2397537440, "c2-88");
    for (what, altered) in [
        ("stale read", stale),
        ("stale read of an unknown write", stale_unknown),
        stale_read(&history),
        never_written_read(&history),
    ] {
        let verdict = check_with_budget(&altered, Budget::DEFAULT);
        assert!(verdict.is_illegal(), "{what}: {verdict}");
        eprintln!("{what}: {verdict}");
    }
}
