//! Three ledger nodes in one process, each on its own data directory:
//! concurrent transfers and linearizable reads on every node; twice a
//! follower is shut down until the others compacted their logs past it,
//! then restarted and caught up by a snapshot; at the end every node must
//! hold the same balances, summing to the genesis total.
//!
//! `cargo run --release --example ledger` prints one summary line and
//! exits 0, or prints the violation and exits 1.

mod ledger;

use ledger::{Command, Ledger, Query, QueryResult};
use ringraft::{Consistency, InProcessNetwork, Node, NodeConfig, NodeError, NodeHandle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

const CLUSTER_ID: u64 = 0x1ed6e2;
const NODES: [u64; 3] = [1, 2, 3];
const ACCOUNTS: u64 = 32;
const INITIAL_BALANCE: u64 = 1_000;
const TOTAL: u64 = ACCOUNTS * INITIAL_BALANCE;
const WRITERS: u64 = 6;
/// Transfers answered (done or refused) before the load stops.
const TRANSFERS: u64 = 3_000;
const SNAPSHOT_COUNT: u64 = 200;
const CATCHUP_ENTRIES: u64 = 50;
/// Entries a stopped follower may hold beyond the leader's commit index
/// (proposals in flight when it stopped), with room to spare.
const IN_FLIGHT_MARGIN: u64 = 64;
const DEADLINE: Duration = Duration::from_secs(20);

/// What makes the run fail: printed by `main`'s `Err` (as `Error: ...`),
/// exit status 1.
struct Violation(String);

impl std::fmt::Debug for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Violation {
    fn from(error: E) -> Violation {
        Violation(error.to_string())
    }
}

fn violation<T>(message: String) -> Result<T, Violation> {
    Err(Violation(message))
}

/// Errors a busy cluster gives while leaders change and nodes restart:
/// the request may or may not have applied; try again.
fn transient(error: &NodeError) -> bool {
    matches!(
        error,
        NodeError::NotLeader { .. }
            | NodeError::Timeout
            | NodeError::ProposalDropped { .. }
            | NodeError::Stopped
    )
}

/// SplitMix64: random-ish accounts and amounts, reproducible per seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

/// The data directories' root, removed when dropped (also on failure).
struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    reads: AtomicU64,
}

impl Counts {
    fn answered(&self) -> u64 {
        self.done.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }
}

struct Cluster {
    root: PathBuf,
    network: InProcessNetwork,
    /// The nodes running now; writers and readers pick from these.
    live: Mutex<BTreeMap<u64, NodeHandle<Ledger>>>,
}

impl Cluster {
    fn start(&self, id: u64) -> Result<NodeHandle<Ledger>, Violation> {
        let data_dir = self.root.join(format!("node-{id}"));
        let mut config = NodeConfig::new(id, CLUSTER_ID, data_dir, &NODES);
        config.tick_interval = Duration::from_millis(10);
        config.request_timeout = Duration::from_secs(2);
        config.snapshot_count = SNAPSHOT_COUNT;
        config.snapshot_catchup_entries = CATCHUP_ENTRIES;
        let (transport, inbox) = self.network.endpoint(id);
        let genesis = Ledger::new(ACCOUNTS, INITIAL_BALANCE);
        let node = Node::start(config, genesis, transport, inbox)?;
        self.live.lock().expect("live").insert(id, node.clone());
        Ok(node)
    }

    async fn stop(&self, id: u64) -> Result<(), Violation> {
        let node = self.live.lock().expect("live").remove(&id);
        self.network.remove(id);
        if let Some(node) = node {
            node.shutdown().await?;
        }
        Ok(())
    }

    fn nodes(&self) -> Vec<NodeHandle<Ledger>> {
        self.live.lock().expect("live").values().cloned().collect()
    }

    /// Waits until every running node names the same running leader.
    async fn leader(&self) -> Result<u64, Violation> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let nodes = self.nodes();
            let mut leaders = Vec::new();
            for node in &nodes {
                leaders.push(node.status().await.ok().and_then(|s| s.leader));
            }
            if let Some(Some(leader)) = leaders.first().copied() {
                let running = nodes.iter().any(|n| n.id() == leader);
                if running && leaders.iter().all(|l| *l == Some(leader)) {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                return violation(format!("no agreed leader: {leaders:?}"));
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Proposes random transfers through random running nodes until `stop`.
async fn writer(
    seed: u64,
    cluster: Arc<Cluster>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Result<(), Violation> {
    let mut rng = Rng(seed);
    while !stop.load(Ordering::Relaxed) {
        let nodes = cluster.nodes();
        let node = &nodes[rng.below(nodes.len() as u64) as usize];
        let command = Command::Transfer {
            from: rng.below(ACCOUNTS),
            to: rng.below(ACCOUNTS),
            amount: 1 + rng.below(INITIAL_BALANCE / 2),
        };
        match node.propose(command).await {
            Ok(Ok(())) => counts.done.fetch_add(1, Ordering::Relaxed),
            Ok(Err(_refused)) => counts.refused.fetch_add(1, Ordering::Relaxed),
            Err(error) if transient(&error) => {
                sleep(Duration::from_millis(10)).await;
                counts.failed.fetch_add(1, Ordering::Relaxed)
            }
            Err(error) => return violation(format!("transfer on node {}: {error}", node.id())),
        };
    }
    Ok(())
}

/// Linearizable reads on every running node until `stop`: the total never
/// changes, a balance never exceeds it.
async fn reader(
    cluster: Arc<Cluster>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Result<(), Violation> {
    let mut rng = Rng(0x5eed);
    while !stop.load(Ordering::Relaxed) {
        for node in cluster.nodes() {
            let account = rng.below(ACCOUNTS);
            for query in [Query::Total, Query::Balance(account)] {
                match node.read(query, Consistency::Linearizable).await {
                    Ok(QueryResult::Total(TOTAL)) => {}
                    Ok(QueryResult::Balance(Some(balance))) if balance <= TOTAL => {}
                    Ok(other) => {
                        return violation(format!("node {}: {query:?} read {other:?}", node.id()));
                    }
                    Err(error) if transient(&error) => continue,
                    Err(error) => return violation(format!("read on node {}: {error}", node.id())),
                }
                counts.reads.fetch_add(1, Ordering::Relaxed);
            }
        }
        sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn wait_answered(counts: &Counts, at_least: u64) -> Result<(), Violation> {
    let deadline = Instant::now() + 2 * DEADLINE;
    while counts.answered() < at_least {
        if Instant::now() > deadline {
            return violation(format!("only {} transfers answered", counts.answered()));
        }
        sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A snapshot install that was seen: `node` restarted holding entries up
/// to `held` at most, every other log started at `logs_from`, and it then
/// held a snapshot at `snapshot` (at least `logs_from - 1`, or a later one of its own).
struct Install {
    node: u64,
    held: u64,
    logs_from: u64,
    snapshot: u64,
}

impl std::fmt::Display for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Install {
            node,
            held,
            logs_from,
            snapshot,
        } = self;
        write!(
            f,
            "node {node}: held <= {held}, logs from {logs_from}, its snapshot now at {snapshot}"
        )
    }
}

/// Stops a follower (not `avoid`), keeps the load going until every
/// running node compacted its log past what the follower can hold,
/// restarts it and waits until it holds a snapshot it can only have been
/// sent.
async fn catch_up_by_snapshot(cluster: &Cluster, avoid: Option<u64>) -> Result<Install, Violation> {
    let leader = cluster.leader().await?;
    let follower = NODES
        .into_iter()
        .find(|&id| id != leader && Some(id) != avoid)
        .unwrap_or(leader % 3 + 1);
    cluster.stop(follower).await?;
    // The follower's log ends at most at the leader's log end when it
    // stopped: the commit index plus what was in flight.
    let mut leader_commit = 0;
    for node in cluster.nodes() {
        leader_commit = leader_commit.max(node.status().await?.commit);
    }
    let deadline = Instant::now() + 2 * DEADLINE;
    let first_index = loop {
        let mut first = u64::MAX;
        for node in cluster.nodes() {
            first = first.min(node.status().await?.first_index);
        }
        if first > leader_commit + IN_FLIGHT_MARGIN {
            break first;
        }
        if Instant::now() > deadline {
            return violation(format!(
                "the log was not compacted past {leader_commit} (first index {first})"
            ));
        }
        sleep(Duration::from_millis(20)).await;
    };
    // No running node holds an entry below `first_index` any more (logs
    // only lose their heads), so entries past the follower's last one can
    // reach it only inside a snapshot.
    let node = cluster.start(follower)?;
    let boot = node.boot_report();
    let last_held = boot.snapshot_index + boot.wal_entries_replayed as u64;
    if last_held + 1 >= first_index {
        return violation(format!(
            "node {follower} restarted holding up to {last_held}: entries from {first_index} on \
             could still reach it without a snapshot"
        ));
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = node.status().await?;
        if status.snapshot_index + 1 >= first_index {
            return Ok(Install {
                node: follower,
                held: last_held,
                logs_from: first_index,
                snapshot: status.snapshot_index,
            });
        }
        if Instant::now() > deadline {
            return violation(format!(
                "node {follower} restarted at {last_held}, never got a snapshot at or past {}: {status:?}",
                first_index - 1
            ));
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node stands at the same applied index with the same
/// balances (read without a round trip, between two equal applied
/// indexes).
async fn settle(nodes: &[NodeHandle<Ledger>]) -> Result<(u64, BTreeMap<u64, u64>), Violation> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut seen = Vec::new();
        for node in nodes {
            let before = node.applied_index();
            let balances = node.read(Query::All, Consistency::Serializable).await?;
            let QueryResult::All(balances) = balances else {
                return violation(format!("node {}: All read {balances:?}", node.id()));
            };
            seen.push((before, node.applied_index(), balances));
        }
        let (index, _, ref first) = seen[0];
        if seen
            .iter()
            .all(|(b, a, map)| *b == index && *a == index && map == first)
        {
            return Ok((index, first.clone()));
        }
        if Instant::now() > deadline {
            let indexes: Vec<_> = seen.iter().map(|(b, a, _)| (b, a)).collect();
            let same = seen.iter().all(|(_, _, map)| map == first);
            return violation(format!(
                "nodes never agreed: applied (before, after) {indexes:?}, same balances: {same}"
            ));
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Violation> {
    let started = std::time::Instant::now();
    let root =
        TempRoot(std::env::temp_dir().join(format!("ringraft-ledger-{}", std::process::id())));
    let cluster = Arc::new(Cluster {
        root: root.0.clone(),
        network: InProcessNetwork::new(),
        live: Mutex::new(BTreeMap::new()),
    });
    for id in NODES {
        cluster.start(id)?;
    }
    cluster.leader().await?;

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for seed in 0..WRITERS {
        let task = writer(seed, cluster.clone(), stop.clone(), counts.clone());
        tasks.push(tokio::spawn(task));
    }
    tasks.push(tokio::spawn(reader(
        cluster.clone(),
        stop.clone(),
        counts.clone(),
    )));

    let mut installs: Vec<Install> = Vec::new();
    for round in 1..=2 {
        wait_answered(&counts, round * TRANSFERS / 4).await?;
        let avoid = installs.last().map(|install| install.node);
        installs.push(catch_up_by_snapshot(&cluster, avoid).await?);
    }
    wait_answered(&counts, TRANSFERS).await?;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }

    let nodes = cluster.nodes();
    if nodes.len() != NODES.len() {
        return violation(format!("{} nodes running at the end", nodes.len()));
    }
    let (index, balances) = settle(&nodes).await?;
    let total: u64 = balances.values().sum();
    if total != TOTAL {
        return violation(format!("balances sum to {total}, not {TOTAL}"));
    }
    for node in &nodes {
        let id = node.id();
        let read = node.read(Query::Total, Consistency::Linearizable).await?;
        if read != QueryResult::Total(TOTAL) {
            return violation(format!("node {id}: linearizable total {read:?}"));
        }
        for (&account, &balance) in &balances {
            let read = node
                .read(Query::Balance(account), Consistency::Linearizable)
                .await?;
            if read != QueryResult::Balance(Some(balance)) {
                return violation(format!(
                    "node {id}: account {account} reads {read:?}, not {balance}"
                ));
            }
        }
    }
    for id in NODES {
        cluster.stop(id).await?;
    }
    println!(
        "ledger: {} transfers ({} done, {} refused, {} failed and retried), {} linearizable reads, \
         final index {index} on all {} nodes, {} snapshot installs seen ({}), total {total} on every \
         node, {:.1} s",
        counts.answered(),
        counts.done.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.reads.load(Ordering::Relaxed),
        NODES.len(),
        installs.len(),
        installs
            .iter()
            .map(Install::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
