//! A cluster of real nodes in one process (data directories in temp
//! dirs, the in-process transport, a fast tick) and polling helpers with
//! generous deadlines, shared by the `node_*` tests.
#![allow(dead_code)]

use ringraft::node::bootstrap::NewMember;
use ringraft::node::{Consistency, InProcessNetwork, Node, NodeConfig, NodeError, NodeHandle};
use ringraft::raft::StateRole;
use ringraft::wal::WalOptions;
use ringraft::{KvStore, StateMachine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep};

pub const CLUSTER_ID: u64 = 0x77;
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The test config: 10 ms ticks, 2 s request timeout, 1 MiB segments.
pub fn config(id: u64, dir: &Path, voters: &[u64]) -> NodeConfig {
    let mut config = NodeConfig::new(id, CLUSTER_ID, dir.to_path_buf(), voters);
    config.tick_interval = Duration::from_millis(10);
    config.request_timeout = Duration::from_secs(2);
    config.wal_options = WalOptions {
        segment_size_bytes: 1024 * 1024,
    };
    config
}

/// A cluster of nodes in one process, each with its own data directory,
/// over state machine `S` (the key-value store unless said otherwise).
pub struct Cluster<S: StateMachine = KvStore> {
    pub network: InProcessNetwork,
    pub dirs: BTreeMap<u64, tempfile::TempDir>,
    pub voters: Vec<u64>,
    pub nodes: BTreeMap<u64, NodeHandle<S>>,
    pub tweak: fn(&mut NodeConfig),
    /// The empty state machine each node starts from.
    pub initial_state: Arc<dyn Fn() -> S + Send + Sync>,
}

impl Cluster<KvStore> {
    pub fn new(voters: &[u64]) -> Cluster<KvStore> {
        Cluster::with_config(voters, |_| {})
    }

    /// A cluster whose configs `tweak` adjusts.
    pub fn with_config(voters: &[u64], tweak: fn(&mut NodeConfig)) -> Cluster<KvStore> {
        Cluster::with_state(voters, tweak, KvStore::new)
    }
}

impl<S: StateMachine> Cluster<S> {
    /// A cluster whose nodes start from `initial_state()` and whose configs
    /// `tweak` adjusts.
    pub fn with_state(
        voters: &[u64],
        tweak: fn(&mut NodeConfig),
        initial_state: impl Fn() -> S + Send + Sync + 'static,
    ) -> Cluster<S> {
        let mut cluster = Cluster {
            network: InProcessNetwork::new(),
            dirs: BTreeMap::new(),
            voters: voters.to_vec(),
            nodes: BTreeMap::new(),
            tweak,
            initial_state: Arc::new(initial_state),
        };
        for &id in voters {
            let dir = tempfile::tempdir().expect("tempdir");
            cluster.dirs.insert(id, dir);
            cluster.start(id);
        }
        cluster
    }

    pub fn start(&mut self, id: u64) {
        self.start_with(id, |_| {});
    }

    /// Starts `id` (creating its data directory if it has none) with the
    /// cluster's tweak, then `extra`.
    pub fn start_with(&mut self, id: u64, extra: impl FnOnce(&mut NodeConfig)) {
        self.try_start_with(id, extra).expect("node starts");
    }

    pub fn try_start_with(
        &mut self,
        id: u64,
        extra: impl FnOnce(&mut NodeConfig),
    ) -> Result<(), NodeError> {
        let dir = self
            .dirs
            .entry(id)
            .or_insert_with(|| tempfile::tempdir().expect("tempdir"))
            .path()
            .to_path_buf();
        let (transport, inbox) = self.network.endpoint(id);
        let mut config = config(id, &dir, &self.voters);
        (self.tweak)(&mut config);
        extra(&mut config);
        let handle = Node::start(config, (self.initial_state)(), transport, inbox)?;
        self.nodes.insert(id, handle);
        Ok(())
    }

    /// Starts a new member `id` that joins the running cluster.
    pub fn join(&mut self, id: u64) {
        self.start_with(id, |config| config.new_member = NewMember::Join);
    }

    pub async fn stop(&mut self, id: u64) {
        self.network.remove(id);
        if let Some(handle) = self.nodes.remove(&id) {
            handle.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops `id` as a crash would (no drain).
    pub async fn crash(&mut self, id: u64) {
        self.network.remove(id);
        if let Some(handle) = self.nodes.remove(&id) {
            handle.crash().await.expect("crash stop");
        }
    }

    pub fn node(&self, id: u64) -> &NodeHandle<S> {
        &self.nodes[&id]
    }

    /// Handles on every running node.
    pub fn handles(&self) -> Vec<NodeHandle<S>> {
        self.nodes.values().cloned().collect()
    }

    /// The smallest first index of the running nodes' logs: none of them
    /// can send an entry below it any more (logs only lose their heads).
    pub async fn min_first_index(&self) -> u64 {
        let mut first = u64::MAX;
        for node in self.nodes.values() {
            first = first.min(node.status().await.expect("status").first_index);
        }
        first
    }

    /// Waits until every running node knows the same leader, which is one
    /// of them and says it leads.
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut leaders = Vec::new();
            let mut leader_role = false;
            for handle in self.nodes.values() {
                if let Ok(status) = handle.status().await {
                    leaders.push(status.leader);
                    if status.leader == Some(status.id) && status.role == StateRole::Leader {
                        leader_role = true;
                    }
                }
            }
            let agreed = match leaders.first() {
                Some(Some(leader)) if leaders.iter().all(|l| *l == Some(*leader)) => Some(*leader),
                _ => None,
            };
            if let Some(leader) = agreed.filter(|l| {
                leader_role && leaders.len() == self.nodes.len() && self.nodes.contains_key(l)
            }) {
                return leader;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// Retries `call` while it fails with a retryable error (within the
/// deadline).
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, NodeError>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(error) if retryable(&error) && Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{what} failed: {error}"),
        }
    }
}

/// Whether a failed request may be retried.
pub fn retryable(error: &NodeError) -> bool {
    matches!(
        error,
        NodeError::NotLeader { .. }
            | NodeError::Timeout
            | NodeError::ProposalDropped { .. }
            | NodeError::MembershipChangePending
    )
}

/// Puts until acknowledged (a retried put may apply twice: harmless).
pub async fn put(node: &NodeHandle<KvStore>, key: &[u8], value: &[u8]) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match node.put(key, value).await {
            Ok(index) => return index,
            Err(error) if retryable(&error) && Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("put on node {} failed: {error}", node.id()),
        }
    }
}

pub async fn get(
    node: &NodeHandle<KvStore>,
    key: &[u8],
    consistency: Consistency,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match node.get(key, consistency).await {
            Ok(value) => return value,
            Err(error) if retryable(&error) && Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("get on node {} failed: {error}", node.id()),
        }
    }
}

pub async fn wait_applied<S: StateMachine>(node: &NodeHandle<S>, index: u64) {
    let deadline = Instant::now() + DEADLINE;
    while node.applied_index() < index {
        assert!(
            Instant::now() < deadline,
            "node {} stuck at {} < {index}",
            node.id(),
            node.applied_index()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// The pairs under `prefix` on node `id` (its own state), asserting that
/// there are exactly `count`.
pub async fn scan_exactly(
    cluster: &Cluster,
    id: u64,
    prefix: &str,
    count: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let pairs = cluster
        .node(id)
        .scan_prefix(prefix.as_bytes(), count + 1, Consistency::Serializable)
        .await
        .expect("scan");
    assert_eq!(
        pairs.len(),
        count,
        "node {id} has {} of {count}",
        pairs.len()
    );
    pairs
}
