//! A cluster in this process for `--embedded`: real data directories,
//! real fdatasync, the in-process transport, driven through
//! [`NodeHandle`].
//!
//! Owns: [`EmbeddedCluster`]: choosing a disk-backed parent directory
//! (never a tmpfs, where fdatasync would be free, unless asked for),
//! starting the nodes, waiting for a leader, the process-wide Prometheus
//! recorder the bench reads fsync counts from (the one `ringraft serve`
//! uses, so the nodes pay the same recording cost), and stopping the
//! nodes and removing their data at the end.
//! Guarantees: clients write to the leader and follow a `NotLeader` hint;
//! an operation counts as acknowledged exactly when `put` or `get`
//! returned `Ok` (a put: applied on the leader, durable on a quorum).
//! May not touch: the nodes' internals (only [`NodeHandle`] calls).

use super::driver::{Client, Driver, OpFailure};
use super::error::BenchError;
use super::options::{EmbeddedOptions, ReadConsistency, Workload};
use super::scrape::{Counters, sum_of};
use super::workload::{Op, OpKind, key_array, key_bytes, value_bytes};
use crate::kv::KvStore;
use crate::metrics::{ENTRIES_PER_FSYNC, WAL_FSYNC_DURATION_SECONDS};
use crate::node::{Consistency, InProcessNetwork, Node, NodeConfig, NodeError, NodeHandle};
use crate::persist::BackendChoice;
use crate::raft::StateRole;
use metrics_exporter_prometheus::PrometheusHandle;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The cluster id of bench clusters.
const CLUSTER_ID: u64 = 0x6265_6e63_6821;
/// How long to wait for a leader.
pub const LEADER_DEADLINE: Duration = Duration::from_secs(30);
/// `statfs` magic of tmpfs.
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Whether `path` is on a tmpfs (false when it cannot tell).
pub fn is_tmpfs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u64 == TMPFS_MAGIC)
}

/// Where the bench's temporary data directories go: `requested`, else the
/// system temporary directory, else `/var/tmp` when that one is a tmpfs.
pub fn data_parent(requested: Option<&Path>) -> PathBuf {
    if let Some(dir) = requested {
        if is_tmpfs(dir) {
            eprintln!(
                "warning: {} is a tmpfs: fdatasync costs nothing there, the numbers say nothing about a disk",
                dir.display()
            );
        }
        return dir.to_path_buf();
    }
    let tmp = std::env::temp_dir();
    if !is_tmpfs(&tmp) {
        return tmp;
    }
    let var_tmp = PathBuf::from("/var/tmp");
    if var_tmp.is_dir() && !is_tmpfs(&var_tmp) {
        eprintln!(
            "note: {} is a tmpfs; data directories go to /var/tmp (on a disk)",
            tmp.display()
        );
        return var_tmp;
    }
    eprintln!(
        "warning: {} is a tmpfs and /var/tmp is not usable: fdatasync costs nothing here (use --data-dir)",
        tmp.display()
    );
    tmp
}

/// The process-wide Prometheus recorder, installed on first use.
fn recorder() -> Result<PrometheusHandle, BenchError> {
    static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    RECORDER
        .get_or_init(|| crate::metrics::install_prometheus().map_err(|e| e.to_string()))
        .clone()
        .map_err(BenchError::Metrics)
}

/// A running in-process cluster.
#[derive(Debug)]
pub struct EmbeddedCluster {
    nodes: Arc<[NodeHandle<KvStore>]>,
    leader: NodeHandle<KvStore>,
    metrics: PrometheusHandle,
    upkeep: tokio::task::JoinHandle<()>,
    value: Arc<[u8]>,
    consistency: Consistency,
    network: InProcessNetwork,
    dir: tempfile::TempDir,
}

/// The backend's name on the command line.
pub fn backend_name(backend: BackendChoice) -> &'static str {
    match backend {
        BackendChoice::Auto => "auto",
        BackendChoice::Uring => "uring",
        BackendChoice::Std => "std",
    }
}

impl EmbeddedCluster {
    /// Starts `options.nodes` voters in a new temporary directory and waits
    /// for a leader. Must run inside a tokio runtime.
    pub async fn start(
        options: &EmbeddedOptions,
        workload: &Workload,
    ) -> Result<EmbeddedCluster, BenchError> {
        let metrics = recorder()?;
        let parent = data_parent(options.data_dir.as_deref());
        let dir = tempfile::Builder::new()
            .prefix("ringraft-bench-")
            .tempdir_in(&parent)
            .map_err(BenchError::io("cannot create a data directory in", &parent))?;
        let voters: Vec<u64> = (1..=options.nodes).collect();
        let network = InProcessNetwork::new();
        let mut nodes = Vec::with_capacity(voters.len());
        for &id in &voters {
            let data_dir = dir.path().join(format!("node{id}"));
            let mut config = NodeConfig::new(id, CLUSTER_ID, data_dir, &voters);
            // 200–400 ms election timeout: a quick start, and a loaded
            // 2-core machine does not lose its leader to a late heartbeat.
            config.tick_interval = Duration::from_millis(10);
            config.election_tick = 20;
            config.heartbeat_tick = 1;
            config.send_appends_early = options.send_appends_early;
            config.persist.backend = options.backend;
            if let Some(count) = options.snapshot_count {
                config.snapshot_count = count;
            }
            let (transport, inbox) = network.endpoint(id);
            let node = Node::start(config, KvStore::new(), transport, inbox)
                .map_err(|source| BenchError::Node { node: id, source })?;
            nodes.push(node);
        }
        let nodes: Arc<[NodeHandle<KvStore>]> = nodes.into();
        let leader = match wait_for_leader(&nodes).await {
            Ok(leader) => leader,
            Err(error) => {
                let _ = stop_nodes(&nodes).await;
                return Err(error);
            }
        };
        settle(&leader).await;
        let upkeep_handle = metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                upkeep_handle.run_upkeep();
            }
        });
        Ok(EmbeddedCluster {
            nodes,
            leader,
            metrics,
            upkeep,
            value: value_bytes(workload.value_size).into(),
            consistency: match workload.read_consistency {
                ReadConsistency::Linearizable => Consistency::Linearizable,
                ReadConsistency::Serializable => Consistency::Serializable,
            },
            network,
            dir,
        })
    }

    /// Where the data directories are.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops every node gracefully and removes the data; the first node
    /// failure, if any, is the error.
    pub async fn shutdown(self) -> Result<(), BenchError> {
        self.upkeep.abort();
        let result = stop_nodes(&self.nodes).await;
        let path = self.dir.path().to_path_buf();
        self.dir
            .close()
            .map_err(BenchError::io("cannot remove", path))?;
        result
    }
}

async fn stop_nodes(nodes: &[NodeHandle<KvStore>]) -> Result<(), BenchError> {
    let mut first = Ok(());
    for node in nodes {
        if let Err(source) = node.shutdown().await
            && first.is_ok()
        {
            first = Err(BenchError::Node {
                node: node.id(),
                source,
            });
        }
    }
    first
}

/// Waits until every node names the same leader and that node leads.
async fn wait_for_leader(nodes: &[NodeHandle<KvStore>]) -> Result<NodeHandle<KvStore>, BenchError> {
    let deadline = Instant::now() + LEADER_DEADLINE;
    loop {
        let mut statuses = Vec::with_capacity(nodes.len());
        for node in nodes {
            if let Ok(status) = node.status().await {
                statuses.push(status);
            }
        }
        if statuses.len() == nodes.len()
            && let Some(leader) = statuses[0].leader
            && statuses.iter().all(|s| s.leader == Some(leader))
            && statuses
                .iter()
                .any(|s| s.id == leader && s.role == StateRole::Leader)
            && let Some(node) = nodes.iter().find(|n| n.id() == leader)
        {
            return Ok(node.clone());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NoLeader(LEADER_DEADLINE));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the new leader's own entry of its term is applied, so the
/// counters taken at the start see nothing the clients did not write. A
/// linearizable read is the barrier: raft serves one only once the leader
/// committed an entry of its term. Failures only mean the bench counts an
/// entry more; they do not stop it.
async fn settle(leader: &NodeHandle<KvStore>) {
    let _ = leader.get(b"", Consistency::Linearizable).await;
    if let Ok(status) = leader.status().await {
        let _ = leader.wait_applied(status.commit).await;
    }
}

/// One client: a handle on the node it believes leads.
#[derive(Debug, Clone)]
pub struct EmbeddedClient {
    nodes: Arc<[NodeHandle<KvStore>]>,
    node: NodeHandle<KvStore>,
    value: Arc<[u8]>,
    consistency: Consistency,
}

impl Client for EmbeddedClient {
    async fn execute(&mut self, op: Op) -> Result<(), OpFailure> {
        let short_key;
        let long_key;
        let key: &[u8] = match key_array(op.key) {
            Some(key) => {
                short_key = key;
                &short_key
            }
            None => {
                long_key = key_bytes(op.key);
                &long_key
            }
        };
        let result = match op.kind {
            OpKind::Write => self.node.put(key, &self.value).await.map(|_| ()),
            OpKind::Read => self.node.get(key, self.consistency).await.map(|_| ()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                if let NodeError::NotLeader {
                    leader_hint: Some(hint),
                } = &error
                    && let Some(node) = self.nodes.iter().find(|n| n.id() == *hint)
                {
                    self.node = node.clone();
                }
                Err(OpFailure(format!("node {}: {error}", self.node.id())))
            }
        }
    }

    fn share(&self) -> Option<EmbeddedClient> {
        // A node handle takes any number of requests at once.
        Some(self.clone())
    }

    fn gives_up_after(&self) -> Option<Duration> {
        Some(self.node.request_timeout())
    }
}

impl Driver for EmbeddedCluster {
    type Client = EmbeddedClient;

    async fn client(&self, _index: usize) -> Result<EmbeddedClient, BenchError> {
        Ok(EmbeddedClient {
            nodes: Arc::clone(&self.nodes),
            node: self.leader.clone(),
            value: Arc::clone(&self.value),
            consistency: self.consistency,
        })
    }

    async fn counters(&self) -> Counters {
        let text = self.metrics.render();
        let fsyncs = sum_of(&text, &format!("{WAL_FSYNC_DURATION_SECONDS}_count"));
        let fsync_seconds = sum_of(&text, &format!("{WAL_FSYNC_DURATION_SECONDS}_sum"));
        let entries = sum_of(&text, &format!("{ENTRIES_PER_FSYNC}_sum"));
        // Before the first fsync a histogram has no sample yet: zero.
        Counters {
            fsyncs: Some(fsyncs.unwrap_or(0.0)),
            fsync_seconds: Some(fsync_seconds.unwrap_or(0.0)),
            entries: Some(entries.unwrap_or(0.0)),
            position: Some(self.leader.applied_index()),
            messages: Some(self.network.delivered_messages() as f64),
        }
    }
}
