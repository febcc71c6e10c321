//! The in-process transport: nodes of one process talking over tokio
//! channels, for tests and benches, with fault knobs.
//!
//! Owns: the registry of in-process nodes (id → inbox) and the fault knobs:
//! directed links that drop messages, and directed links that delay them.
//!
//! Guarantees: as [`Transport`] says; a delayed link still delivers in
//! order (one delivery task per delayed link, first in first out), and a
//! link cut while a message waits in its delay drops that message.
//! Snapshots travel through an in-memory pipe in the same chunked format
//! as over TCP ([`super::snapshot_stream`]); a cut link refuses them, a
//! delay does not slow them.
//!
//! May not touch: raft state; what a message means.

use super::snapshot_stream::{self, StreamLimits};
use super::{
    OutgoingSnapshot, PeerInbox, SnapshotDelivery, SnapshotSink, SnapshotTransferError, Transport,
    TransportError,
};
use crate::raftpb::Message;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Registry {
    inboxes: HashMap<u64, super::PeerInboxSender>,
    snapshot_sinks: HashMap<u64, SnapshotSink>,
    cut: BTreeSet<(u64, u64)>,
    /// Delayed links and the queue of their delivery task.
    delayed: HashMap<(u64, u64), DelayedLink>,
}

#[derive(Debug)]
struct DelayedLink {
    delay: Duration,
    queue: mpsc::UnboundedSender<(Instant, Message)>,
}

/// Nodes of one process talking over tokio channels; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct InProcessNetwork {
    registry: Arc<Mutex<Registry>>,
    /// Messages handed to an inbox so far (snapshots not counted).
    delivered: Arc<AtomicU64>,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> InProcessNetwork {
        InProcessNetwork::default()
    }

    /// Messages handed to a node's inbox so far, over the whole network
    /// (what a bench divides by its writes: messages per write).
    pub fn delivered_messages(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry
        // inconsistent (every update is a single insert or remove).
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers node `id` (replacing an earlier registration, as after a
    /// restart) and returns its transport and inbox, to pass to
    /// `Node::start`.
    pub fn endpoint(&self, id: u64) -> (Arc<dyn Transport>, PeerInbox) {
        let (sender, inbox) = super::peer_inbox(super::DEFAULT_PEER_INBOX_CAPACITY);
        let mut registry = self.lock();
        registry.inboxes.insert(id, sender);
        registry.snapshot_sinks.remove(&id);
        drop(registry);
        let transport = InProcessTransport {
            from: id,
            network: self.clone(),
        };
        (Arc::new(transport), inbox)
    }

    /// Unregisters node `id`: messages to it are dropped.
    pub fn remove(&self, id: u64) {
        let mut registry = self.lock();
        registry.inboxes.remove(&id);
        registry.snapshot_sinks.remove(&id);
    }

    /// Drops every message from `from` to `to` until healed.
    pub fn cut(&self, from: u64, to: u64) {
        self.lock().cut.insert((from, to));
    }

    /// Drops messages in both directions between `a` and `b`.
    pub fn partition(&self, a: u64, b: u64) {
        let mut registry = self.lock();
        registry.cut.insert((a, b));
        registry.cut.insert((b, a));
    }

    /// Drops every message to and from `id`.
    pub fn isolate(&self, id: u64) {
        let mut registry = self.lock();
        let others: Vec<u64> = registry
            .inboxes
            .keys()
            .copied()
            .filter(|&o| o != id)
            .collect();
        for other in others {
            registry.cut.insert((id, other));
            registry.cut.insert((other, id));
        }
    }

    /// Restores every cut link and removes every delay.
    pub fn heal(&self) {
        let mut registry = self.lock();
        registry.cut.clear();
        // Dropping a link's queue ends its delivery task once it delivered
        // what it holds.
        registry.delayed.clear();
    }

    /// Delays every message from `from` to `to` by `delay` (order kept).
    /// Must be called inside a tokio runtime (it spawns the link's
    /// delivery task there).
    pub fn delay(&self, from: u64, to: u64, delay: Duration) {
        let (queue, mut pending) = mpsc::unbounded_channel::<(Instant, Message)>();
        let network = self.clone();
        tokio::spawn(async move {
            while let Some((deliver_at, message)) = pending.recv().await {
                tokio::time::sleep_until(deliver_at).await;
                // Lost like any message to a stopped node; raft retries.
                let _ = network.deliver_now(from, message);
            }
        });
        self.lock()
            .delayed
            .insert((from, to), DelayedLink { delay, queue });
    }

    fn deliver(&self, from: u64, message: Message) -> Result<(), TransportError> {
        let to = message.to;
        {
            let registry = self.lock();
            if registry.cut.contains(&(from, to)) {
                return Err(TransportError::Dropped { from, to });
            }
            if let Some(link) = registry.delayed.get(&(from, to)) {
                let deliver_at = Instant::now() + link.delay;
                return link
                    .queue
                    .send((deliver_at, message))
                    .map_err(|_| TransportError::Unreachable(to));
            }
        }
        self.deliver_now(from, message)
    }

    fn deliver_now(&self, from: u64, message: Message) -> Result<(), TransportError> {
        let to = message.to;
        let registry = self.lock();
        if registry.cut.contains(&(from, to)) {
            return Err(TransportError::Dropped { from, to });
        }
        let inbox = registry
            .inboxes
            .get(&to)
            .ok_or(TransportError::Unreachable(to))?;
        inbox.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => TransportError::QueueFull(to),
            mpsc::error::TrySendError::Closed(_) => TransportError::Unreachable(to),
        })?;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One node's sending side of an [`InProcessNetwork`].
#[derive(Debug)]
struct InProcessTransport {
    from: u64,
    network: InProcessNetwork,
}

/// Bytes the in-memory pipe of a snapshot transfer buffers.
const SNAPSHOT_PIPE_BYTES: usize = 256 * 1024;

impl Transport for InProcessTransport {
    fn send(&self, message: Message) -> Result<(), TransportError> {
        self.network.deliver(self.from, message)
    }

    fn send_snapshot(&self, snapshot: OutgoingSnapshot) -> SnapshotDelivery {
        let (from, to) = (self.from, snapshot.message.to);
        let sink = {
            let registry = self.network.lock();
            if registry.cut.contains(&(from, to)) {
                None
            } else {
                registry.snapshot_sinks.get(&to).cloned()
            }
        };
        Box::pin(async move {
            let Some(sink) = sink else {
                return Err(SnapshotTransferError::Unreachable {
                    peer: to,
                    reason: "not registered, not accepting snapshots, or cut off".into(),
                });
            };
            let mut file = snapshot_stream::open_state_file(to, &snapshot.state_file).await?;
            let limits = StreamLimits::default();
            let (mut near, mut far) = tokio::io::duplex(SNAPSHOT_PIPE_BYTES);
            let receiving = tokio::spawn(async move {
                snapshot_stream::receive(&mut far, from, to, &limits, Some(sink)).await
            });
            let sent =
                snapshot_stream::send(from, &mut near, &snapshot.message, &mut file, &limits).await;
            drop(near);
            // The receiver's own outcome is its node's business.
            let _ = receiving.await;
            sent
        })
    }

    fn accept_snapshots(&self, sink: SnapshotSink) {
        self.network.lock().snapshot_sinks.insert(self.from, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: u64, to: u64) -> Message {
        Message {
            from,
            to,
            ..Default::default()
        }
    }

    #[test]
    fn delivers_in_order_and_honours_cuts() {
        let network = InProcessNetwork::new();
        let (one, _inbox_one) = network.endpoint(1);
        let (_two, mut inbox_two) = network.endpoint(2);
        let mut first = message(1, 2);
        first.index = 1;
        let mut second = message(1, 2);
        second.index = 2;
        one.send(first).expect("delivered");
        one.send(second).expect("delivered");
        assert_eq!(inbox_two.try_recv().map(|m| m.index), Ok(1));
        assert_eq!(inbox_two.try_recv().map(|m| m.index), Ok(2));
        network.cut(1, 2);
        assert_eq!(
            one.send(message(1, 2)),
            Err(TransportError::Dropped { from: 1, to: 2 })
        );
        network.heal();
        assert!(one.send(message(1, 2)).is_ok());
        assert_eq!(one.send(message(1, 9)), Err(TransportError::Unreachable(9)));
        network.remove(2);
        assert_eq!(one.send(message(1, 2)), Err(TransportError::Unreachable(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_link_delivers_late_and_in_order() {
        let network = InProcessNetwork::new();
        let (one, _inbox_one) = network.endpoint(1);
        let (_two, mut inbox_two) = network.endpoint(2);
        network.delay(1, 2, Duration::from_millis(50));
        let sent_at = Instant::now();
        for index in 1..=3 {
            let mut m = message(1, 2);
            m.index = index;
            one.send(m).expect("queued");
        }
        assert!(inbox_two.try_recv().is_err(), "delivered before its delay");
        for index in 1..=3 {
            let m = inbox_two.recv().await.expect("delivered");
            assert_eq!(m.index, index);
            assert!(Instant::now() >= sent_at + Duration::from_millis(50));
        }
        network.heal();
        one.send(message(1, 2)).expect("delivered");
        assert!(inbox_two.try_recv().is_ok(), "heal removes the delay");
    }
}
