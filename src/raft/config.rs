//! The settings of one raft node and their validation.
//!
//! Owns: [`Config`], [`ReadOnlyOption`] and the typed [`ConfigError`].
//! Guarantees: a `Config` that passed [`Config::validate`] describes a node
//! that can make progress (timeouts ordered, windows non-empty, lease reads
//! only with check-quorum).
//! May not touch: anything at run time; the raft core copies what it needs.

use super::NO_LIMIT;

/// How linearizable reads are served (etcd's `ReadOnlyOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// The leader confirms its leadership with a heartbeat round per read.
    #[default]
    Safe,
    /// The leader trusts its lease (requires `check_quorum`); faster, but
    /// relies on bounded clock drift.
    LeaseBased,
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Node id 0 is reserved for "none".
    #[error("node id must not be 0")]
    ZeroId,
    /// `heartbeat_tick` must be positive.
    #[error("heartbeat_tick must be greater than 0")]
    ZeroHeartbeatTick,
    /// An election timeout not above the heartbeat interval elects leaders
    /// spuriously.
    #[error(
        "election_tick ({election_tick}) must be greater than heartbeat_tick ({heartbeat_tick})"
    )]
    ElectionNotAboveHeartbeat {
        /// The configured election timeout in ticks.
        election_tick: usize,
        /// The configured heartbeat interval in ticks.
        heartbeat_tick: usize,
    },
    /// At least one append message must be allowed in flight.
    #[error("max_inflight_msgs must be greater than 0")]
    ZeroInflight,
    /// The byte window must fit at least one message.
    #[error(
        "max_inflight_bytes ({max_inflight_bytes}) must be at least max_size_per_msg ({max_size_per_msg})"
    )]
    InflightBytesBelowMessageSize {
        /// The configured byte window.
        max_inflight_bytes: u64,
        /// The configured message size.
        max_size_per_msg: u64,
    },
    /// Lease reads are only safe when the leader steps down without a quorum.
    #[error("lease reads (read_only LeaseBased or lease_reads) require check_quorum")]
    LeaseWithoutCheckQuorum,
}

/// The settings of one raft node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id (not 0).
    pub id: u64,
    /// Ticks without hearing from a leader before a follower campaigns; the
    /// actual timeout is drawn from `[election_tick, 2 * election_tick)`.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// The last applied index when restarting (0 for a fresh node).
    pub applied: u64,
    /// Maximum encoded bytes of entries in one append message.
    pub max_size_per_msg: u64,
    /// Maximum bytes of committed entries handed out for application and not
    /// yet reported applied.
    pub max_committed_size_per_ready: u64,
    /// Maximum append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Maximum bytes of entries in flight to one follower (`NO_LIMIT` for
    /// none).
    pub max_inflight_bytes: u64,
    /// Maximum bytes of proposed entry payloads not yet committed; proposals
    /// past it are dropped (`NO_LIMIT` for none).
    pub max_uncommitted_entries_size: u64,
    /// A leader steps down when it has not heard from a quorum within an
    /// election timeout; followers ignore votes while they have a leader.
    pub check_quorum: bool,
    /// Run a pre-vote round before incrementing the term (§9.6).
    pub pre_vote: bool,
    /// How linearizable reads are served.
    pub read_only: ReadOnlyOption,
    /// Leases are honoured, and `RawNode::read_index_by_lease` may answer
    /// from the leader's lease, while `read_only` stays the mode of every
    /// other read (requires `check_quorum`). `read_only == LeaseBased`
    /// implies it.
    pub lease_reads: bool,
    /// Followers drop proposals instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// Seed of the election-timeout randomness (mixed with `id`).
    pub seed: u64,
}

impl Config {
    /// A config for node `id` with etcd's defaults: election 10 ticks,
    /// heartbeat 1 tick, 1 MiB messages, 256 messages in flight.
    pub fn new(id: u64) -> Config {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_committed_size_per_ready: 64 * 1024 * 1024,
            max_inflight_msgs: 256,
            max_inflight_bytes: NO_LIMIT,
            max_uncommitted_entries_size: NO_LIMIT,
            check_quorum: false,
            pre_vote: false,
            read_only: ReadOnlyOption::Safe,
            lease_reads: false,
            disable_proposal_forwarding: false,
            seed: 0,
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::ZeroHeartbeatTick);
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election_tick: self.election_tick,
                heartbeat_tick: self.heartbeat_tick,
            });
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroInflight);
        }
        if self.max_inflight_bytes < self.max_size_per_msg {
            return Err(ConfigError::InflightBytesBelowMessageSize {
                max_inflight_bytes: self.max_inflight_bytes,
                max_size_per_msg: self.max_size_per_msg,
            });
        }
        let leases = self.read_only == ReadOnlyOption::LeaseBased || self.lease_reads;
        if leases && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(1).validate(), Ok(()));
    }

    #[test]
    fn each_invalid_setting_is_named() {
        let mut c = Config::new(0);
        assert_eq!(c.validate(), Err(ConfigError::ZeroId));
        c = Config::new(1);
        c.heartbeat_tick = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroHeartbeatTick));
        c = Config::new(1);
        c.election_tick = 1;
        assert_eq!(
            c.validate(),
            Err(ConfigError::ElectionNotAboveHeartbeat {
                election_tick: 1,
                heartbeat_tick: 1
            })
        );
        c = Config::new(1);
        c.max_inflight_msgs = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroInflight));
        c = Config::new(1);
        c.max_inflight_bytes = 10;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::InflightBytesBelowMessageSize { .. })
        ));
        c = Config::new(1);
        c.read_only = ReadOnlyOption::LeaseBased;
        assert_eq!(c.validate(), Err(ConfigError::LeaseWithoutCheckQuorum));
        c.check_quorum = true;
        assert_eq!(c.validate(), Ok(()));
    }
}
