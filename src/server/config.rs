//! What a `ringraft serve` process is started with, and how that maps onto a
//! node.
//!
//! Owns: [`ServeConfig`] (plain data, filled by the command line), parsing
//! `--initial-cluster`, and deriving the cluster id from the cluster token.
//! Guarantees: a config that [`ServeConfig::validate`] accepts names this
//! node in its initial cluster (unless it joins), has distinct ids and
//! addresses, and nonzero timings; errors say which flag is wrong.
//! May not touch: anything at run time.

use super::client_listener::ClientLimits;
use crate::access::AccessPolicy;
use crate::etcd::compactor::AutoCompaction;
use crate::node::NodeConfig;
use crate::node::bootstrap::NewMember;
use crate::persist::BackendChoice;
use crate::tls::{ClientTls, PeerTls};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a serve configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeConfigError {
    /// `--initial-cluster` does not parse.
    #[error("--initial-cluster: entry {entry:?}: {reason}")]
    InitialCluster {
        /// The offending entry.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another flag is wrong.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Everything a server process needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// This node's id (not 0).
    pub node_id: u64,
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// Where peers connect.
    pub listen_peer: SocketAddr,
    /// Where clients connect (HTTP).
    pub listen_client: SocketAddr,
    /// The client URL this member publishes and etcd's `MemberList`
    /// shows (etcd's `--advertise-client-urls`, one URL here); `None`:
    /// `http://` or `https://` and the client listener's address.
    pub advertise_client_url: Option<String>,
    /// Node id → peer address of the initial members (this node included).
    pub initial_cluster: BTreeMap<u64, String>,
    /// Join a running cluster (the member was added with
    /// `POST /v1/members` first) instead of starting a new one.
    pub join: bool,
    /// Disaster recovery: restart as the only voter.
    pub force_new_cluster: bool,
    /// Names the cluster; its hash is the cluster id recorded in the WAL.
    pub cluster_token: String,
    /// Persistence backend.
    pub backend: BackendChoice,
    /// Snapshot every this many applied entries.
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot for slow followers; one
    /// further behind is sent the snapshot.
    pub snapshot_catchup_entries: u64,
    /// State files are written at most this fast (0: unlimited).
    pub snapshot_write_bytes_per_second: u64,
    /// Allow lease reads (`NodeConfig::lease_reads`; set alike on every
    /// member).
    pub lease_reads: bool,
    /// Raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before campaigning.
    pub election_ticks: usize,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: usize,
    /// How long a client request may wait.
    pub request_timeout: Duration,
    /// An fdatasync slower than this is logged as a warning.
    pub slow_fsync_warning: Duration,
    /// The WAL cuts a new segment at this size, and preallocates each
    /// segment to it (etcd's fixed 64 MB by default); small values let a
    /// test fill a small file system.
    pub wal_segment_size_bytes: u64,
    /// The space quota of the key-value state, in bytes (etcd's
    /// `--quota-backend-bytes`); 0 means [`DEFAULT_QUOTA_BACKEND_BYTES`].
    pub quota_backend_bytes: u64,
    /// When old versions of the key-value store are compacted away
    /// (`--auto-compaction-mode`, `--auto-compaction-retention`).
    pub auto_compaction: AutoCompaction,
    /// How often a watch created with `progress_notify` that got no
    /// events hears of progress (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes).
    pub watch_progress_interval: Duration,
    /// The client listener's connection cap and timeouts.
    pub client_limits: ClientLimits,
    /// TLS on the client port (`--cert-file`, `--key-file`,
    /// `--trusted-ca-file`, `--client-cert-auth`); `None`: plaintext HTTP.
    pub client_tls: Option<ClientTls>,
    /// TLS on the peer port (`--peer-cert-file`, `--peer-key-file`,
    /// `--peer-trusted-ca-file`): mutual, with the member-id rule of
    /// `crate::tls`; `None`: plain TCP.
    pub peer_tls: Option<PeerTls>,
    /// Which client certificate identities may read, write or administer
    /// (`--client-permission`); only with client certificate
    /// authentication.
    pub client_permissions: AccessPolicy,
}

/// The space quota when none is given: 2 GiB, etcd's default. etcd's caps
/// a bbolt file the page cache may evict, ours caps resident heap; but
/// snapshots stream through state files, so a node holds about one copy of
/// the state plus its log since the last snapshot: measured 1.36× the state
/// for a leader and 1.55× for a follower restoring a snapshot (353 MiB of
/// 4 KiB values, `tests/server_large_state.rs`), so 2 GiB of state needs
/// about 3 GiB of memory per node.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The smallest `--wal-segment-size-bytes` accepted: a segment holds its
/// header and at least a few records.
pub const MIN_WAL_SEGMENT_SIZE_BYTES: u64 = 64 * 1024;

impl ServeConfig {
    /// The single-node default: node 1, `./ringraft-data`, clients on
    /// 127.0.0.1:7379, peers on 127.0.0.1:7380.
    pub fn single_node_default() -> ServeConfig {
        let listen_peer = SocketAddr::from(([127, 0, 0, 1], 7380));
        ServeConfig {
            node_id: 1,
            data_dir: PathBuf::from("ringraft-data"),
            listen_peer,
            listen_client: SocketAddr::from(([127, 0, 0, 1], 7379)),
            advertise_client_url: None,
            initial_cluster: BTreeMap::from([(1, listen_peer.to_string())]),
            join: false,
            force_new_cluster: false,
            cluster_token: DEFAULT_CLUSTER_TOKEN.to_string(),
            backend: BackendChoice::Auto,
            snapshot_count: crate::node::DEFAULT_SNAPSHOT_COUNT,
            snapshot_catchup_entries: crate::node::DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
            snapshot_write_bytes_per_second:
                crate::snap::state_file::DEFAULT_WRITE_BYTES_PER_SECOND,
            lease_reads: false,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            request_timeout: Duration::from_secs(5),
            slow_fsync_warning: Duration::from_millis(100),
            wal_segment_size_bytes: crate::wal::DEFAULT_SEGMENT_SIZE_BYTES,
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            auto_compaction: crate::etcd::compactor::DEFAULT_AUTO_COMPACTION,
            watch_progress_interval: crate::etcd::watch_service::DEFAULT_PROGRESS_INTERVAL,
            client_limits: ClientLimits::default(),
            client_tls: None,
            peer_tls: None,
            client_permissions: AccessPolicy::default(),
        }
    }

    /// The quota in force: [`ServeConfig::quota_backend_bytes`], or the
    /// default when that is 0.
    pub fn quota_bytes(&self) -> u64 {
        match self.quota_backend_bytes {
            0 => DEFAULT_QUOTA_BACKEND_BYTES,
            bytes => bytes,
        }
    }

    /// The cluster id: a hash of the cluster token (never 0).
    pub fn cluster_id(&self) -> u64 {
        cluster_id_of(&self.cluster_token)
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ServeConfigError> {
        let flag = |flag: &'static str, reason: &str| {
            Err(ServeConfigError::Flag {
                flag,
                reason: reason.to_string(),
            })
        };
        if self.node_id == 0 {
            return flag("--id", "node id 0 is reserved");
        }
        if !self.join && !self.initial_cluster.contains_key(&self.node_id) {
            return flag(
                "--initial-cluster",
                "must name this node (--id) unless --join is given",
            );
        }
        if self.join && self.force_new_cluster {
            return flag("--force-new-cluster", "cannot be combined with --join");
        }
        if self.listen_peer == self.listen_client {
            return flag("--listen-client", "must differ from --listen-peer");
        }
        if let Some(url) = &self.advertise_client_url
            && !is_client_url(url)
        {
            return flag(
                "--advertise-client-url",
                "must be http://host:port or https://host:port",
            );
        }
        if self.tick_interval.is_zero() {
            return flag("--tick-ms", "must be at least 1");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return flag(
                "--election-ticks",
                "must be greater than --heartbeat-ticks, which must be at least 1",
            );
        }
        if self.cluster_token.is_empty() {
            return flag("--cluster-token", "must not be empty");
        }
        let client_cert_auth = self
            .client_tls
            .as_ref()
            .is_some_and(|tls| tls.client_cert_auth);
        if !self.client_permissions.grants.is_empty() && !client_cert_auth {
            return flag(
                "--client-permission",
                "needs --client-cert-auth: without client certificates there is no identity",
            );
        }
        if self.client_limits.max_connections == 0 {
            return flag("--max-client-connections", "must be at least 1");
        }
        if self.wal_segment_size_bytes < MIN_WAL_SEGMENT_SIZE_BYTES {
            return flag(
                "--wal-segment-size-bytes",
                &format!("must be at least {MIN_WAL_SEGMENT_SIZE_BYTES}"),
            );
        }
        Ok(())
    }

    /// The node settings this server runs with.
    pub fn node_config(&self) -> NodeConfig {
        let voters: Vec<u64> = self.initial_cluster.keys().copied().collect();
        let mut config = NodeConfig::new(
            self.node_id,
            self.cluster_id(),
            self.data_dir.clone(),
            &voters,
        );
        if self.join {
            config.new_member = NewMember::Join;
        }
        config.force_new_cluster = self.force_new_cluster;
        config.persist.backend = self.backend;
        config.snapshot_count = self.snapshot_count;
        config.snapshot_catchup_entries = self.snapshot_catchup_entries;
        config.snapshot_write_bytes_per_second = self.snapshot_write_bytes_per_second;
        config.lease_reads = self.lease_reads;
        config.tick_interval = self.tick_interval;
        config.election_tick = self.election_ticks;
        config.heartbeat_tick = self.heartbeat_ticks;
        config.request_timeout = self.request_timeout;
        config.persist.slow_fsync_warning = self.slow_fsync_warning;
        config.wal_options.segment_size_bytes = self.wal_segment_size_bytes;
        config
    }
}

/// The cluster token when none is given.
pub const DEFAULT_CLUSTER_TOKEN: &str = "ringraft-cluster";

/// 64-bit FNV-1a of `token`, with 0 mapped to 1 (0 means "no cluster").
/// Stable across versions and platforms: it is recorded in every WAL.
pub fn cluster_id_of(token: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = token.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash.max(1)
}

/// Parses `1=host:port,2=host:port` (a scheme such as `http://` is kept
/// as given; the transport strips it).
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<u64, String>, ServeConfigError> {
    let mut members = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let refuse = |reason: &str| ServeConfigError::InitialCluster {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (id, url) = entry
            .split_once('=')
            .ok_or_else(|| refuse("expected id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| refuse("the id is not a number"))?;
        if id == 0 {
            return Err(refuse("node id 0 is reserved"));
        }
        let url = url.trim();
        if url.is_empty() {
            return Err(refuse("the address is empty"));
        }
        if members.values().any(|known: &String| known == url) {
            return Err(refuse("the address is given twice"));
        }
        if members.insert(id, url.to_string()).is_some() {
            return Err(refuse("the id is given twice"));
        }
    }
    if members.is_empty() {
        return Err(ServeConfigError::InitialCluster {
            entry: text.to_string(),
            reason: "no member".to_string(),
        });
    }
    Ok(members)
}

/// Whether `url` is `http://host:port` or `https://host:port` (a trailing
/// `/` allowed), as clients dial a member.
fn is_client_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare_path = matches!(uri.path(), "" | "/") && uri.query().is_none();
    scheme_ok && bare_path && uri.authority().is_some_and(|a| a.port_u16().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_refuses_mistakes() {
        let parsed = parse_initial_cluster("1=127.0.0.1:7380, 2=http://10.0.0.2:7380,3=h:1")
            .expect("parses");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[&2], "http://10.0.0.2:7380");
        for bad in [
            "",
            "1",
            "x=a:1",
            "0=a:1",
            "1=",
            "1=a:1,1=b:1",
            "1=a:1,2=a:1",
        ] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cluster_id_is_stable_and_never_zero() {
        // Pinned: a different value would orphan every existing data
        // directory (its WAL records the id).
        assert_eq!(cluster_id_of(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(cluster_id_of("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(cluster_id_of("one"), cluster_id_of("two"));
    }

    #[test]
    fn validation_names_the_flag() {
        let mut config = ServeConfig::single_node_default();
        assert_eq!(config.validate(), Ok(()));
        config.node_id = 2;
        let refused = config.validate().expect_err("node 2 is not in the cluster");
        assert!(
            refused.to_string().contains("--initial-cluster"),
            "{refused}"
        );
        config.join = true;
        assert_eq!(config.validate(), Ok(()));
        config.force_new_cluster = true;
        assert!(config.validate().is_err());
        let mut config = ServeConfig::single_node_default();
        config.election_ticks = 1;
        assert!(config.validate().is_err());
        let mut config = ServeConfig::single_node_default();
        config.wal_segment_size_bytes = 4096;
        let refused = config.validate().expect_err("segments too small");
        assert!(
            refused.to_string().contains("--wal-segment-size-bytes"),
            "{refused}"
        );
    }

    #[test]
    fn an_advertised_client_url_is_a_scheme_host_and_port() {
        for good in [
            "http://10.0.0.1:2379",
            "https://etcd-1.example:2379",
            "http://[::1]:2379/",
        ] {
            let mut config = ServeConfig::single_node_default();
            config.advertise_client_url = Some(good.to_string());
            assert_eq!(config.validate(), Ok(()), "{good}");
        }
        for bad in [
            "",
            "10.0.0.1:2379",
            "ftp://h:1",
            "http://h",
            "http://h:1/v1",
            "http://h:1?x=1",
            "unix:///run/ringraft.sock",
        ] {
            let mut config = ServeConfig::single_node_default();
            config.advertise_client_url = Some(bad.to_string());
            let refused = config.validate().expect_err(bad);
            assert!(
                refused.to_string().contains("--advertise-client-url"),
                "{bad}: {refused}"
            );
        }
    }

    #[test]
    fn a_zero_quota_means_the_default() {
        let mut config = ServeConfig::single_node_default();
        assert_eq!(config.quota_bytes(), DEFAULT_QUOTA_BACKEND_BYTES);
        config.quota_backend_bytes = 0;
        assert_eq!(config.quota_bytes(), DEFAULT_QUOTA_BACKEND_BYTES);
        config.quota_backend_bytes = 1 << 20;
        assert_eq!(config.quota_bytes(), 1 << 20);
    }
}
