//! Whole-node tests with a state machine of the user's, not the key-value
//! store: the ledger of `examples/ledger` (fixed accounts, transfers, a
//! constant total). A restart restores the newest snapshot and replays
//! only the WAL tail; a follower stopped past the leader's compaction is
//! caught up by a snapshot; `force_new_cluster` on the last survivor keeps
//! every committed transfer; a leader crash under concurrent load loses no
//! acknowledged transfer. The ledger's own unit tests run here too
//! (`ledger::tests`).

#[path = "../examples/ledger/ledger.rs"]
mod ledger;
mod node_common;

use ledger::{Account, Command, Ledger, Query, QueryResult, TransferError};
use node_common::{Cluster, DEADLINE, retryable, wait_applied};
use ringraft::raft::rng::Rng;
use ringraft::{BootPath, Consistency, NodeConfig, NodeHandle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep};

const SNAPSHOT_COUNT: u64 = 100;
const CATCHUP_ENTRIES: u64 = 50;

type Balances = BTreeMap<Account, u64>;

fn frequent_snapshots(config: &mut NodeConfig) {
    config.snapshot_count = SNAPSHOT_COUNT;
    config.snapshot_catchup_entries = CATCHUP_ENTRIES;
}

/// Ledger nodes in one process whose genesis is `accounts` accounts of
/// `initial` each, snapshotting often.
fn ledger_cluster(voters: &[u64], (accounts, initial): (u64, u64)) -> Cluster<Ledger> {
    Cluster::with_state(voters, frequent_snapshots, move || {
        Ledger::new(accounts, initial)
    })
}

fn random_transfer(rng: &mut Rng, accounts: u64, max_amount: u64) -> Command {
    Command::Transfer {
        from: rng.below(accounts),
        to: rng.below(accounts),
        amount: 1 + rng.below(max_amount),
    }
}

/// Proposes until answered (a retried transfer may apply twice: callers
/// that keep a model must not use this).
async fn transfer(node: &NodeHandle<Ledger>, command: Command) -> Result<(), TransferError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match node.propose(command).await {
            Ok(response) => return response,
            Err(error) if retryable(&error) && Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("transfer on node {} failed: {error}", node.id()),
        }
    }
}

/// `count` random transfers among `accounts` from four concurrent writers
/// through `nodes` (followers forward to the leader), each retried until
/// answered; returns the highest index a writer saw applied after an
/// answer.
async fn load(nodes: &[NodeHandle<Ledger>], accounts: u64, count: u64, seed: u64) -> u64 {
    const WRITERS: u64 = 4;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let nodes = nodes.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ writer.rotate_left(32));
            let mut applied = 0;
            for n in 0..count / WRITERS + u64::from(writer < count % WRITERS) {
                let node = &nodes[(n as usize + writer as usize) % nodes.len()];
                let _ = transfer(node, random_transfer(&mut rng, accounts, 400)).await;
                applied = applied.max(node.applied_index());
            }
            applied
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied = applied.max(task.await.expect("writer"));
    }
    applied
}

async fn read(node: &NodeHandle<Ledger>, query: Query, consistency: Consistency) -> QueryResult {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match node.read(query, consistency).await {
            Ok(result) => return result,
            Err(error) if retryable(&error) && Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{query:?} on node {} failed: {error}", node.id()),
        }
    }
}

async fn balances(node: &NodeHandle<Ledger>, consistency: Consistency) -> Balances {
    match read(node, Query::All, consistency).await {
        QueryResult::All(balances) => balances,
        other => panic!("node {}: All answered {other:?}", node.id()),
    }
}

/// Waits until every node stands at the same applied index with the same
/// balances (each read locally between two equal applied indexes), and
/// checks the total; returns that index and those balances.
async fn settle(nodes: &[NodeHandle<Ledger>], total: u64) -> (u64, Balances) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut seen = Vec::new();
        for node in nodes {
            let before = node.applied_index();
            let state = balances(node, Consistency::Serializable).await;
            seen.push((node.id(), before, node.applied_index(), state));
        }
        let (_, index, _, ref first) = seen[0];
        if seen
            .iter()
            .all(|(_, b, a, state)| *b == index && *a == index && state == first)
        {
            assert_eq!(first.values().sum::<u64>(), total, "the total changed");
            return (index, first.clone());
        }
        if Instant::now() > deadline {
            for (id, before, after, state) in &seen {
                eprintln!("node {id}: applied {before}..{after}: {state:?}");
            }
            panic!("the nodes never agreed");
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_the_snapshot_and_replays_only_the_wal_tail() {
    const ACCOUNTS: u64 = 8;
    let mut cluster = ledger_cluster(&[1], (ACCOUNTS, 100));
    cluster.leader().await;
    let node = cluster.node(1).clone();
    // A single node answers every transfer in order: a local ledger is an
    // exact model of it.
    let mut model = Ledger::new(ACCOUNTS, 100);
    let mut rng = Rng::new(1);
    let transfers = 3 * SNAPSHOT_COUNT + 30;
    let mut refused = 0;
    for _ in 0..transfers {
        let command = random_transfer(&mut rng, ACCOUNTS + 1, 60);
        let response = node.propose(command).await.expect("a single node answers");
        assert_eq!(response, model.execute(command), "{command:?}");
        refused += u64::from(response.is_err());
    }
    assert!(
        0 < refused && refused < transfers,
        "{refused} of {transfers} refused"
    );
    let last = node.applied_index();
    assert_eq!(
        &balances(&node, Consistency::Serializable).await,
        model.balances()
    );

    cluster.stop(1).await;
    cluster.start(1);
    let node = cluster.node(1).clone();
    let report = node.boot_report();
    assert_eq!(report.path, BootPath::Restart);
    // Snapshots every 100 entries, the last 30 transfers after the newest.
    assert!(
        report.snapshot_index > 0
            && report.snapshot_index < last
            && report.snapshot_index + SNAPSHOT_COUNT >= last,
        "booted from snapshot {} (last applied {last})",
        report.snapshot_index
    );
    eprintln!("last applied {last}, {refused} refused; restarted: {report:?}");
    let tail = (last - report.snapshot_index) as usize;
    assert!(
        (tail..=tail + 5).contains(&report.wal_entries_replayed),
        "replayed {} entries after snapshot {} (last applied {last})",
        report.wal_entries_replayed,
        report.snapshot_index
    );
    wait_applied(&node, last).await;
    assert_eq!(
        &balances(&node, Consistency::Serializable).await,
        model.balances()
    );
    assert_eq!(
        read(&node, Query::Total, Consistency::Linearizable).await,
        QueryResult::Total(ACCOUNTS * 100)
    );
    // It goes on deciding like the model.
    cluster.leader().await;
    for _ in 0..20 {
        let command = random_transfer(&mut rng, ACCOUNTS, 60);
        let response = node.propose(command).await.expect("a single node answers");
        assert_eq!(response, model.execute(command), "{command:?}");
    }
    assert_eq!(
        &balances(&node, Consistency::Linearizable).await,
        model.balances()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_past_the_compaction_point_is_caught_up_by_a_snapshot() {
    const ACCOUNTS: u64 = 16;
    let mut cluster = ledger_cluster(&[1, 2, 3], (ACCOUNTS, 1000));
    let total = ACCOUNTS * 1000;
    let leader = cluster.leader().await;
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap_or(1);
    load(&[cluster.node(leader).clone()], ACCOUNTS, 20, 2).await;
    cluster.stop(follower).await;
    // Nothing was in flight: the follower's log ends at or before the
    // commit index. Write until every running log starts well past it.
    let mut commit = 0;
    for node in cluster.nodes.values() {
        commit = commit.max(node.status().await.expect("status").commit);
    }
    let deadline = Instant::now() + DEADLINE;
    for round in 0.. {
        if cluster.min_first_index().await > commit + 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the logs were not compacted");
        load(&cluster.handles(), ACCOUNTS, 50, 100 + round).await;
    }
    let first_index = cluster.min_first_index().await;

    cluster.start(follower);
    let node = cluster.node(follower).clone();
    let report = node.boot_report();
    let last_held = report.snapshot_index + report.wal_entries_replayed as u64;
    assert!(
        last_held + 1 < first_index,
        "node {follower} restarted holding up to {last_held}, the others' logs start at \
         {first_index}: no snapshot needed"
    );
    let last = load(&cluster.handles(), ACCOUNTS, 8, 3).await;
    wait_applied(&node, last).await;
    let status = node.status().await.expect("status");
    eprintln!(
        "stopped at commit {commit}; logs start at {first_index}; restarted holding up to \
         {last_held}; caught up to {last} with snapshot {}",
        status.snapshot_index
    );
    assert!(
        status.snapshot_index + 1 >= first_index,
        "node {follower} caught up without a snapshot at or past {}: {status:?}",
        first_index - 1
    );
    let (_, state) = settle(&cluster.handles(), total).await;

    // The installed snapshot was made durable: a restart boots from it.
    cluster.stop(follower).await;
    cluster.start(follower);
    let report = cluster.node(follower).boot_report();
    assert!(
        report.snapshot_index + 1 >= first_index,
        "restarted from snapshot {}, older than the installed one (at or past {})",
        report.snapshot_index,
        first_index - 1
    );
    let (_, after_restart) = settle(&cluster.handles(), total).await;
    assert_eq!(after_restart, state);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_on_the_last_survivor_keeps_every_committed_transfer() {
    const ACCOUNTS: u64 = 16;
    let mut cluster = ledger_cluster(&[1, 2, 3], (ACCOUNTS, 1000));
    let total = ACCOUNTS * 1000;
    // Transfers one at a time through the leader against a local model,
    // which stays exact as long as every transfer is answered.
    let mut model = Ledger::new(ACCOUNTS, 1000);
    let mut exact = true;
    let mut rng = Rng::new(4);
    let mut last = 0;
    for _ in 0..2 * SNAPSHOT_COUNT + 20 {
        let leader = cluster.node(cluster.leader().await).clone();
        let command = random_transfer(&mut rng, ACCOUNTS, 1500);
        match leader.propose(command).await {
            Ok(response) if exact => assert_eq!(response, model.execute(command), "{command:?}"),
            Ok(_) => {}
            Err(error) if retryable(&error) => exact = false,
            Err(error) => panic!("transfer failed: {error}"),
        }
        last = last.max(leader.applied_index());
    }
    let survivor = cluster.leader().await;
    // Reflects every acknowledged transfer.
    let committed = balances(cluster.node(survivor), Consistency::Linearizable).await;
    eprintln!("model exact: {exact}; last applied {last}");
    if exact {
        assert_eq!(&committed, model.balances());
    }
    // The survivor led, so it holds every committed entry.
    wait_applied(cluster.node(survivor), last).await;
    for id in [1, 2, 3] {
        if id != survivor {
            cluster.stop(id).await;
        }
    }
    cluster.crash(survivor).await;

    cluster.start_with(survivor, |config| config.force_new_cluster = true);
    let node = cluster.node(survivor).clone();
    assert_eq!(node.boot_report().path, BootPath::ForceNewCluster);
    assert_eq!(cluster.leader().await, survivor);
    let status = node.status().await.expect("status");
    assert_eq!((status.voters, status.learners), (vec![survivor], vec![]));
    assert_eq!(balances(&node, Consistency::Linearizable).await, committed);
    // It accepts transfers alone.
    let (&rich, _) = committed.iter().max_by_key(|(_, b)| **b).expect("accounts");
    let to = (rich + 1) % ACCOUNTS;
    let mut expected = committed.clone();
    let moved = node
        .propose(Command::Transfer {
            from: rich,
            to,
            amount: 7,
        })
        .await;
    assert_eq!(moved.expect("answered"), Ok(()));
    *expected.get_mut(&rich).expect("from") -= 7;
    *expected.get_mut(&to).expect("to") += 7;
    assert_eq!(balances(&node, Consistency::Linearizable).await, expected);

    // And restarts normally afterwards, still alone.
    cluster.stop(survivor).await;
    cluster.start(survivor);
    let node = cluster.node(survivor).clone();
    assert_eq!(node.boot_report().path, BootPath::Restart);
    assert_eq!(cluster.leader().await, survivor);
    assert_eq!(node.status().await.expect("status").voters, vec![survivor]);
    assert_eq!(balances(&node, Consistency::Linearizable).await, expected);
    let moved = node
        .propose(Command::Transfer {
            from: to,
            to: rich,
            amount: 7,
        })
        .await;
    assert_eq!(moved.expect("answered"), Ok(()));
    assert_eq!(balances(&node, Consistency::Linearizable).await, committed);
    assert_eq!(settle(&cluster.handles(), total).await.1, committed);
    cluster.shutdown().await;
}

/// What one proposer learned of its transfers: each moves 1 from the
/// proposer's own source account to a target account no other transfer
/// touches, so every transfer's effect is visible on its own.
#[derive(Debug, Default)]
struct Outcomes {
    acknowledged: Vec<u64>,
    /// Failed with an error: may or may not have applied.
    unknown: Vec<u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crash_under_load_loses_no_acknowledged_transfer() {
    const PROPOSERS: u64 = 6;
    const PER_PROPOSER: u64 = 250;
    const INITIAL: u64 = PER_PROPOSER;
    let source = |p: u64| p;
    let target = |p: u64, k: u64| PROPOSERS + p * PER_PROPOSER + k;
    let accounts = PROPOSERS + PROPOSERS * PER_PROPOSER;
    let mut cluster = ledger_cluster(&[1, 2, 3], (accounts, INITIAL));
    let total = accounts * INITIAL;
    let old_leader = cluster.leader().await;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..PROPOSERS {
        // Through the leader first; after an error, the next node.
        let mut nodes = cluster.handles();
        nodes.sort_by_key(|n| n.id() != old_leader);
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Outcomes::default();
            let mut turn = 0;
            for k in 0..PER_PROPOSER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let node = &nodes[turn % nodes.len()];
                let command = Command::Transfer {
                    from: source(p),
                    to: target(p, k),
                    amount: 1,
                };
                match node.propose(command).await {
                    Ok(Ok(())) => {
                        outcomes.acknowledged.push(k);
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(refused)) => panic!("transfer {p}/{k} refused: {refused}"),
                    Err(_) => {
                        outcomes.unknown.push(k);
                        turn += 1;
                        sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            outcomes
        }));
    }
    let wait_acknowledged = |at_least: u64| {
        let acknowledged = acknowledged.clone();
        async move {
            let deadline = Instant::now() + DEADLINE;
            while acknowledged.load(Ordering::Relaxed) < at_least {
                assert!(
                    Instant::now() < deadline,
                    "the load stalled before {at_least}"
                );
                sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_acknowledged(100).await;
    cluster.crash(old_leader).await;
    let before_crash = acknowledged.load(Ordering::Relaxed);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    // The survivors take the load on.
    wait_acknowledged(before_crash + 100).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("proposer"));
    }
    eprintln!(
        "acknowledged: {before_crash} before the crash, {} in all; {} unknown",
        acknowledged.load(Ordering::Relaxed),
        outcomes.iter().map(|o| o.unknown.len()).sum::<usize>()
    );

    let check = |state: &Balances, who: &str| {
        for (p, outcome) in (0..PROPOSERS).zip(&outcomes) {
            let mut moved = 0;
            for k in 0..PER_PROPOSER {
                let balance = state[&target(p, k)];
                if outcome.acknowledged.contains(&k) {
                    assert_eq!(
                        balance,
                        INITIAL + 1,
                        "{who} lost acknowledged transfer {p}/{k}"
                    );
                } else if outcome.unknown.contains(&k) {
                    assert!(
                        (INITIAL..=INITIAL + 1).contains(&balance),
                        "{who}: {p}/{k}: {balance}"
                    );
                } else {
                    assert_eq!(
                        balance, INITIAL,
                        "{who}: transfer {p}/{k} was never proposed"
                    );
                }
                moved += balance - INITIAL;
            }
            assert_eq!(
                state[&source(p)],
                INITIAL - moved,
                "{who}: source of proposer {p}"
            );
        }
    };
    let (index, survivors_state) = settle(&cluster.handles(), total).await;
    check(&survivors_state, "the survivors");

    cluster.start(old_leader);
    // A refused transfer is a response like any other, on the new leader.
    let refused = transfer(
        cluster.node(new_leader),
        Command::Transfer {
            from: 0,
            to: 0,
            amount: 1,
        },
    )
    .await;
    assert_eq!(refused, Err(TransferError::SameAccount(0)));
    wait_applied(cluster.node(old_leader), index).await;
    let (_, all_state) = settle(&cluster.handles(), total).await;
    check(&all_state, "the restarted cluster");
    cluster.shutdown().await;
}
