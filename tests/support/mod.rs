//! A small in-memory network of RawNodes for scenario tests: no threads, no
//! clock. Each node's Readies are handed out, persisted and acknowledged
//! under the test's control, so pipelined Readies and persistence delays can
//! be scripted; messages travel through an explicit in-flight queue that the
//! test delivers, drops, duplicates or reorders.
#![allow(dead_code)]

use ringraft::raft::raft::decode_conf_change;
use ringraft::raft::read_only::ReadState;
use ringraft::raft::{Config, MemoryStorage, RawNode, Ready, StateRole, Storage};
use ringraft::raftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One node: its RawNode, the Readies handed out but not yet durable, and
/// what it has applied.
pub struct Node {
    /// The raft core.
    pub raw: RawNode<MemoryStorage>,
    /// Readies handed out, waiting to be persisted, in order.
    pub unpersisted: VecDeque<Ready>,
    /// Normal entries applied, by index: (term, data).
    pub applied: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The highest index applied (entries or snapshot).
    pub applied_index: u64,
    /// The HardState last made durable.
    pub durable_hard_state: HardState,
    /// Read states received, in order.
    pub read_states: Vec<ReadState>,
    /// Membership after each configuration change applied, in order.
    pub conf_states: Vec<ConfState>,
}

impl Node {
    /// The id of this node.
    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// Hands out a Ready if there is one, applying its committed entries at
    /// once (they are durable already). Returns whether there was one.
    pub fn process_ready(&mut self) -> bool {
        if !self.raw.has_ready() {
            return false;
        }
        let ready = self.raw.ready();
        self.raw.advance_append_async(&ready);
        self.read_states.extend(ready.read_states.iter().cloned());
        if let Some(last) = ready.committed_entries.last() {
            for entry in &ready.committed_entries {
                if entry.entry_type() == EntryType::EntryNormal {
                    self.applied
                        .insert(entry.index, (entry.term, entry.data.to_vec()));
                } else if let Some(cc) = decode_conf_change(entry).expect("conf change decodes") {
                    let conf_state = self
                        .raw
                        .apply_conf_change(&cc)
                        .expect("conf change applies");
                    self.conf_states.push(conf_state);
                }
            }
            self.applied_index = last.index;
            self.raw.advance_apply(last.index);
        }
        self.unpersisted.push_back(ready);
        true
    }

    /// Makes the oldest `count` handed-out Readies durable; returns their
    /// messages (to send now).
    pub fn persist(&mut self, count: usize) -> Vec<Message> {
        let mut outgoing = Vec::new();
        let mut last_number = None;
        for _ in 0..count {
            let Some(ready) = self.unpersisted.pop_front() else {
                break;
            };
            let storage = self.raw.store_mut();
            if let Some(snapshot) = &ready.snapshot {
                storage
                    .apply_snapshot(snapshot.clone())
                    .expect("apply snapshot");
            }
            storage.append(&ready.entries).expect("append");
            if let Some(hard_state) = ready.hard_state {
                storage.set_hard_state(hard_state);
                self.durable_hard_state = hard_state;
            }
            if let Some(snapshot) = &ready.snapshot {
                let index = snapshot.metadata.index;
                if index > self.applied_index {
                    self.applied_index = index;
                }
            }
            last_number = Some(ready.number);
            outgoing.extend(ready.append_messages);
            outgoing.extend(ready.messages);
        }
        if let Some(number) = last_number {
            self.raw.on_persisted(number);
        }
        outgoing
    }

    /// Makes every handed-out Ready durable.
    pub fn persist_all(&mut self) -> Vec<Message> {
        let count = self.unpersisted.len();
        self.persist(count)
    }

    /// The node's role.
    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    /// Every entry of the log (storage and unstable) as (index, term).
    pub fn log_ids(&self) -> Vec<(u64, u64)> {
        self.raw
            .raft
            .raft_log
            .all_entries()
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }
}

/// The default config of the scenario tests: election 10, heartbeat 1.
pub fn config(id: u64) -> Config {
    let mut config = Config::new(id);
    config.seed = 0x5eed;
    config.max_size_per_msg = 1024 * 1024;
    config
}

/// A cluster of nodes and the messages between them.
pub struct Network {
    /// The nodes by id.
    pub nodes: BTreeMap<u64, Node>,
    /// Messages sent and not yet delivered, in send order.
    pub in_flight: VecDeque<Message>,
    /// Directed links that drop messages: (from, to).
    pub cut: BTreeSet<(u64, u64)>,
    /// Message types dropped everywhere.
    pub ignored: BTreeSet<i32>,
}

impl Network {
    /// A new cluster of `ids`, all voters, with configs from `make_config`.
    pub fn with_config(ids: &[u64], make_config: impl Fn(u64) -> Config) -> Network {
        let conf_state = ConfState {
            voters: ids.to_vec(),
            ..Default::default()
        };
        let mut nodes = BTreeMap::new();
        for &id in ids {
            let storage = MemoryStorage::new_with_conf_state(conf_state.clone());
            nodes.insert(id, Network::node(&make_config(id), storage));
        }
        Network {
            nodes,
            in_flight: VecDeque::new(),
            cut: BTreeSet::new(),
            ignored: BTreeSet::new(),
        }
    }

    /// A new cluster of `ids` bootstrapped as etcd does (one committed
    /// ConfChangeAddNode entry per voter), so that nodes joining later learn
    /// the membership from the log.
    pub fn bootstrapped(ids: &[u64], make_config: impl Fn(u64) -> Config) -> Network {
        let mut nodes = BTreeMap::new();
        for &id in ids {
            let mut node = Network::node(&make_config(id), MemoryStorage::new());
            node.raw.bootstrap(ids).expect("bootstrap");
            // Persist and apply the bootstrap entries, as a node's first
            // Ready loop would (a node with unapplied configuration
            // entries does not campaign).
            while node.process_ready() {
                assert!(node.persist_all().is_empty(), "bootstrap sends nothing");
            }
            nodes.insert(id, node);
        }
        Network {
            nodes,
            in_flight: VecDeque::new(),
            cut: BTreeSet::new(),
            ignored: BTreeSet::new(),
        }
    }

    /// A new cluster of `ids` with the default config.
    pub fn new(ids: &[u64]) -> Network {
        Network::with_config(ids, config)
    }

    /// A node over `storage` (which may hold state from a previous life).
    pub fn node(config: &Config, storage: MemoryStorage) -> Node {
        let durable_hard_state = storage.initial_state().expect("state").hard_state;
        let applied_index = config.applied;
        Node {
            raw: RawNode::new(config, storage).expect("raw node"),
            unpersisted: VecDeque::new(),
            applied: BTreeMap::new(),
            applied_index,
            durable_hard_state,
            read_states: Vec::new(),
            conf_states: Vec::new(),
        }
    }

    /// The node `id`.
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("no such node")
    }

    /// The node `id`.
    pub fn get(&self, id: u64) -> &Node {
        self.nodes.get(&id).expect("no such node")
    }

    /// Queues messages for delivery, dropping those on cut links.
    pub fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if self.cut.contains(&(m.from, m.to)) || self.ignored.contains(&m.msg_type) {
                continue;
            }
            if !self.nodes.contains_key(&m.to) {
                continue;
            }
            self.in_flight.push_back(m);
        }
    }

    /// Delivers one message to its recipient (errors are ignored, as a real
    /// transport would).
    pub fn deliver(&mut self, m: Message) {
        if self.cut.contains(&(m.from, m.to)) {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&m.to) {
            let _ = node.raw.step(m);
        }
    }

    /// Processes, persists and delivers until nothing moves.
    pub fn stabilize(&mut self) {
        self.stabilize_with(|_| true);
    }

    /// Makes `id` campaign and runs the network until it is quiet.
    pub fn elect(&mut self, id: u64) {
        self.node_mut(id).raw.campaign().expect("campaign");
        self.stabilize();
    }

    /// Proposes `data` at `id` and runs the network until it is quiet.
    pub fn propose(&mut self, id: u64, data: &[u8]) {
        self.node_mut(id)
            .raw
            .propose(data.to_vec())
            .expect("proposal accepted");
        self.stabilize();
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_link(&mut self, a: u64, b: u64) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Isolates `id` from every other node.
    pub fn isolate(&mut self, id: u64) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut_link(id, other);
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Ticks every node once.
    pub fn tick_all(&mut self) {
        for node in self.nodes.values_mut() {
            node.raw.tick();
        }
    }

    /// The ids of the nodes that think they lead, with their terms.
    pub fn leaders(&self) -> Vec<(u64, u64)> {
        self.nodes
            .values()
            .filter(|n| n.role() == StateRole::Leader)
            .map(|n| (n.id(), n.raw.raft.term))
            .collect()
    }
}

/// A normal entry for comparisons.
pub fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry::new(term, index, data.to_vec())
}

/// Whether `m` is of type `t`.
pub fn is(m: &Message, t: MessageType) -> bool {
    m.msg_type == t as i32
}

/// A storage for a member of the voter set `voters` whose log holds one
/// entry per element of `terms` (index 1, 2, ...; data "index/term"), with
/// a HardState of `term`, no vote and commit 0: a node with a history.
pub fn storage_with_log(voters: &[u64], terms: &[u64], term: u64) -> MemoryStorage {
    let conf_state = ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    };
    let mut storage = MemoryStorage::new_with_conf_state(conf_state);
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(offset, &t)| {
            let index = offset as u64 + 1;
            Entry::new(t, index, format!("{index}/{t}").into_bytes())
        })
        .collect();
    storage.append(&entries).expect("append history");
    storage.set_hard_state(HardState {
        term,
        vote: 0,
        commit: 0,
    });
    storage
}

impl Network {
    /// A cluster of `ids` whose nodes start from the storages (and configs)
    /// given: nodes with a history.
    pub fn with_storages(
        ids: &[u64],
        make_config: impl Fn(u64) -> Config,
        make_storage: impl Fn(u64) -> MemoryStorage,
    ) -> Network {
        let mut nodes = BTreeMap::new();
        for &id in ids {
            nodes.insert(id, Network::node(&make_config(id), make_storage(id)));
        }
        Network {
            nodes,
            in_flight: VecDeque::new(),
            cut: BTreeSet::new(),
            ignored: BTreeSet::new(),
        }
    }

    /// Like [`Network::stabilize`], but every message passes through
    /// `filter` just before delivery: it may look at it or change it, and
    /// returning false drops it.
    pub fn stabilize_with(&mut self, mut filter: impl FnMut(&mut Message) -> bool) {
        for _ in 0..10_000 {
            let mut moved = false;
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                let node = self.node_mut(id);
                while node.process_ready() {
                    moved = true;
                }
                let outgoing = node.persist_all();
                self.send(outgoing);
            }
            while let Some(mut m) = self.in_flight.pop_front() {
                moved = true;
                if filter(&mut m) {
                    self.deliver(m);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network did not stabilize in 10000 rounds");
    }

    /// Hands out, persists and sends everything node `id` has ready (one
    /// node's turn), without delivering anything.
    pub fn flush(&mut self, id: u64) {
        let node = self.node_mut(id);
        while node.process_ready() {}
        let outgoing = node.persist_all();
        self.send(outgoing);
    }

    /// Delivers the messages in flight now (not those they provoke);
    /// returns how many.
    pub fn deliver_in_flight(&mut self) -> usize {
        let messages: Vec<Message> = self.in_flight.drain(..).collect();
        let count = messages.len();
        for m in messages {
            self.deliver(m);
        }
        count
    }

    /// Removes and returns the in-flight messages matching `pred`.
    pub fn take_in_flight(&mut self, pred: impl Fn(&Message) -> bool) -> Vec<Message> {
        let (taken, kept): (Vec<Message>, Vec<Message>) =
            self.in_flight.drain(..).partition(|m| pred(m));
        self.in_flight = kept.into();
        taken
    }

    /// Crashes node `id` and restarts it from its storage with `config`:
    /// Readies not yet persisted are lost, as are the messages to it in
    /// flight.
    pub fn restart(&mut self, id: u64, config: &Config) {
        let storage = self.get(id).raw.store().clone();
        self.in_flight.retain(|m| m.to != id);
        self.nodes.insert(id, Network::node(config, storage));
    }

    /// Ticks every node and stabilizes, `count` times.
    pub fn tick_and_stabilize(&mut self, count: usize) {
        for _ in 0..count {
            self.tick_all();
            self.stabilize();
        }
    }
}
