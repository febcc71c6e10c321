//! etcd's Watch service: the bidirectional stream of create, cancel and
//! progress requests and of event responses, over a node running the
//! [`EtcdStore`].
//!
//! Owns: the watches of each stream (ids from 0 per stream, as etcd), the
//! catch-up of a watch with a start revision from the store's history,
//! forwarding live events from the store's [`WatchFeed`], and progress
//! notifications. Guarantees: a watch delivers every event of its range
//! from its start revision on, in revision order, none twice: it
//! subscribes to the feed before it reads the history, and skips live
//! events the history already held, or that lie before a start revision
//! this member has not reached yet. A start revision at or below the
//! compacted one is answered, as etcd does, with `compact_revision` and
//! the watch cancelled. Watches read this member's state (as etcd's do).
//! A watcher more than [`super::store::WATCH_FEED_CAPACITY`] batches
//! behind, or one on a member that restored a snapshot, is cancelled with
//! the reason; the client re-creates it from the revision it reached.
//!
//! Progress: a response without events whose header revision is R tells
//! the client it has every event of its watch up to R. A watch created
//! with `progress_notify` gets one each progress interval (etcd's 10
//! minutes by default) in which it got no events; a `ProgressRequest` is
//! answered at once with `watch_id` -1 (for every watch of the stream, as
//! etcd 3.4 does) and the lowest revision all of the stream's watches have
//! been sent up to, never one whose events are still on their way.
//! History is sent at most [`HISTORY_REVISIONS_PER_RESPONSE`] revisions a
//! response; a watch created with `fragment` gets responses larger than
//! [`FRAGMENT_BYTES`] in fragments (`fragment` set on all but the last),
//! which etcd's clients put back together. May not touch: the store's
//! rules, raft.

use super::convert;
use super::header::header_of;
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::watch_server::Watch;
use super::store::{EtcdQuery, EtcdQueryResult, EtcdStore, EventBatch, WatchFeed};
use super::watch_batches::{self, FRAGMENT_BYTES, HISTORY_REVISIONS_PER_RESPONSE};
use crate::mvcc::{self, MvccError};
use crate::node::{Consistency, NodeHandle};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses a stream may have queued for its client.
const OUTBOUND_CAPACITY: usize = 256;

/// How often a watch created with `progress_notify` hears of progress
/// when it got no events: etcd's default (its
/// `--experimental-watch-progress-notify-interval`).
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// The Watch service of one node.
#[derive(Debug, Clone)]
pub struct WatchService {
    node: NodeHandle<EtcdStore>,
    feed: WatchFeed,
    cluster_id: u64,
    progress_interval: Duration,
    fragment_bytes: usize,
}

impl WatchService {
    /// The service of `node` (whose store's feed is `feed`), a member of
    /// cluster `cluster_id`.
    pub fn new(node: NodeHandle<EtcdStore>, feed: WatchFeed, cluster_id: u64) -> WatchService {
        WatchService {
            node,
            feed,
            cluster_id,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            fragment_bytes: FRAGMENT_BYTES,
        }
    }

    /// Progress notifications every `interval` (at least 1 ms) instead of
    /// [`DEFAULT_PROGRESS_INTERVAL`].
    pub fn with_progress_interval(mut self, interval: Duration) -> WatchService {
        self.progress_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Fragments of at most `bytes` of events instead of
    /// [`FRAGMENT_BYTES`], for watches that ask for them.
    pub fn with_fragment_bytes(mut self, bytes: usize) -> WatchService {
        self.fragment_bytes = bytes.max(1);
        self
    }
}

/// One watch's settings.
#[derive(Debug, Clone)]
struct Watcher {
    id: i64,
    key: bytes::Bytes,
    range_end: bytes::Bytes,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
}

impl Watcher {
    fn wants(&self, event: &mvcc::Event) -> bool {
        let kind_ok = match event.kind {
            mvcc::EventKind::Put => !self.no_put,
            mvcc::EventKind::Delete => !self.no_delete,
        };
        kind_ok && in_range(&self.key, &self.range_end, &event.kv.key)
    }

    fn wire(&self, event: &mvcc::Event) -> crate::etcd::pb::mvccpb::Event {
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        convert::event(event)
    }
}

/// Whether `key` is in etcd's range `[start, end)` (empty `end`: `start`
/// alone; `end` = `[0]`: every key from `start` on).
fn in_range(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        _ => key >= start && key < end,
    }
}

type Outbound = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// Where a watch's responses go, cut as its watcher asked.
#[derive(Clone)]
struct Responder {
    outbound: Outbound,
    watch_id: i64,
    /// Fragment responses larger than this; `None`: never.
    fragment_bytes: Option<usize>,
}

impl Responder {
    /// Sends `events` (all up to the header's revision) as one response,
    /// or as fragments. Err: the client went.
    async fn send(
        &self,
        header: Option<pb::ResponseHeader>,
        events: Vec<crate::etcd::pb::mvccpb::Event>,
    ) -> Result<(), ()> {
        let pieces = match self.fragment_bytes {
            // A progress notification has no events and is still sent.
            Some(limit) if !events.is_empty() => watch_batches::fragments(events, limit),
            _ => vec![events],
        };
        let last = pieces.len().saturating_sub(1);
        for (i, events) in pieces.into_iter().enumerate() {
            let response = pb::WatchResponse {
                header,
                watch_id: self.watch_id,
                events,
                fragment: i < last,
                ..pb::WatchResponse::default()
            };
            self.outbound.send(Ok(response)).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// A watch being served: its forwarding task, and the revision up to
/// which its events have been queued for the client.
struct RunningWatch {
    task: JoinHandle<()>,
    sent_through: Arc<AtomicI64>,
}

/// A running stream: its watches and where its responses go.
struct StreamState {
    service: WatchService,
    outbound: Outbound,
    watches: HashMap<i64, RunningWatch>,
    next_id: i64,
}

impl StreamState {
    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(header_of(
            &self.service.node,
            self.service.cluster_id,
            revision,
        ))
    }

    async fn create(&mut self, request: pb::WatchCreateRequest) {
        use pb::watch_create_request::FilterType;
        let id = if request.watch_id != 0 {
            request.watch_id
        } else {
            self.next_id
        };
        self.next_id = self.next_id.max(id) + 1;
        let watcher = Watcher {
            id,
            key: request.key,
            range_end: request.range_end,
            prev_kv: request.prev_kv,
            no_put: request.filters.contains(&(FilterType::Noput as i32)),
            no_delete: request.filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: request.progress_notify,
            fragment: request.fragment,
        };
        // Subscribed before the history is read: nothing falls in between.
        let live = self.service.feed.subscribe();
        let catch_up = self.catch_up(&watcher, request.start_revision).await;
        let (history, through) = match catch_up {
            Ok(found) => found,
            Err(MvccError::Compacted { compact_revision }) => {
                let header = self.header(compact_revision);
                let _ = self
                    .outbound
                    .send(Ok(pb::WatchResponse {
                        header,
                        watch_id: id,
                        created: true,
                        canceled: true,
                        compact_revision,
                        // etcd's words, prefix included (etcdctl prints them).
                        cancel_reason: format!(
                            "etcdserver: {}",
                            MvccError::Compacted { compact_revision }
                        ),
                        ..pb::WatchResponse::default()
                    }))
                    .await;
                return;
            }
            Err(error) => {
                self.cancel_with(id, format!("etcdserver: {error}")).await;
                return;
            }
        };
        let created = pb::WatchResponse {
            header: self.header(through),
            watch_id: id,
            created: true,
            ..pb::WatchResponse::default()
        };
        if self.outbound.send(Ok(created)).await.is_err() {
            return;
        }
        let responder = Responder {
            outbound: self.outbound.clone(),
            watch_id: id,
            fragment_bytes: watcher.fragment.then_some(self.service.fragment_bytes),
        };
        let history: Vec<_> = history
            .iter()
            .filter(|e| watcher.wants(e))
            .map(|e| watcher.wire(e))
            .collect();
        for events in watch_batches::by_revisions(history, HISTORY_REVISIONS_PER_RESPONSE) {
            if responder.send(self.header(through), events).await.is_err() {
                return;
            }
        }
        let sent_through = Arc::new(AtomicI64::new(through));
        // A start revision ahead of this member's state (one still catching
        // up, say after a restart) must not let in the live events before
        // it: the client has them already.
        let skip_through = through.max(request.start_revision - 1);
        let task = tokio::spawn(forward(
            self.service.clone(),
            watcher,
            live,
            skip_through,
            responder,
            Arc::clone(&sent_through),
        ));
        self.watches.insert(id, RunningWatch { task, sent_through });
    }

    /// Answers a progress request: every watch of the stream has been
    /// sent its events up to the revision in the header.
    async fn progress(&self) {
        // A watch cancelled by the server (fallen behind, snapshot) is
        // over: it does not hold the answer back.
        let lowest_sent = self
            .watches
            .values()
            .filter(|watch| !watch.task.is_finished())
            .map(|watch| watch.sent_through.load(Ordering::Acquire))
            .min();
        let revision = match lowest_sent {
            Some(revision) => revision,
            None => match self.catch_up_revision().await {
                Some(revision) => revision,
                None => return,
            },
        };
        let _ = self
            .outbound
            .send(Ok(pb::WatchResponse {
                header: self.header(revision),
                // No one watch: the response is for all of them (etcd's).
                watch_id: -1,
                ..pb::WatchResponse::default()
            }))
            .await;
    }

    /// This member's current revision; None when the node has stopped.
    async fn catch_up_revision(&self) -> Option<i64> {
        match self
            .service
            .node
            .read(EtcdQuery::Revision, Consistency::Serializable)
            .await
        {
            Ok(EtcdQueryResult::Revision(revision)) => Some(revision),
            _ => None,
        }
    }

    /// The events from `start_revision` (0: none, from now on) and the
    /// revision they run up to.
    async fn catch_up(
        &self,
        watcher: &Watcher,
        start_revision: i64,
    ) -> Result<(Vec<mvcc::Event>, i64), MvccError> {
        let query = if start_revision > 0 {
            EtcdQuery::EventsSince {
                start_revision,
                key: watcher.key.clone(),
                range_end: watcher.range_end.clone(),
            }
        } else {
            EtcdQuery::Revision
        };
        match self
            .service
            .node
            .read(query, Consistency::Serializable)
            .await
        {
            Ok(EtcdQueryResult::Events(found)) => found,
            Ok(EtcdQueryResult::Revision(revision)) => Ok((Vec::new(), revision)),
            // The node is stopping or failed: nothing to catch up with; the
            // stream ends with the node.
            _ => Ok((Vec::new(), i64::MAX)),
        }
    }

    async fn cancel(&mut self, id: i64) {
        if let Some(watch) = self.watches.remove(&id) {
            watch.task.abort();
        }
        self.cancel_with(id, String::new()).await;
    }

    async fn cancel_with(&self, id: i64, reason: String) {
        let _ = self
            .outbound
            .send(Ok(pb::WatchResponse {
                watch_id: id,
                canceled: true,
                cancel_reason: reason,
                ..pb::WatchResponse::default()
            }))
            .await;
    }
}

/// Sends `watcher`'s live events after revision `skip_through` until the
/// client goes, the feed breaks, or the watcher falls too far behind; and
/// its progress notifications, if it asked for them. `sent_through` is
/// raised only once a batch's response is queued, so a progress answer
/// never claims events still on their way.
async fn forward(
    service: WatchService,
    watcher: Watcher,
    mut live: broadcast::Receiver<EventBatch>,
    skip_through: i64,
    responder: Responder,
    sent_through: Arc<AtomicI64>,
) {
    let mut through = sent_through.load(Ordering::Acquire);
    let mut progress = tokio::time::interval(service.progress_interval);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once; a notification is due one interval on.
    progress.tick().await;
    let mut sent_since_progress = false;
    let reason = loop {
        let received = tokio::select! {
            received = live.recv() => received,
            _ = progress.tick(), if watcher.progress_notify => {
                if !std::mem::take(&mut sent_since_progress) {
                    let header = Some(header_of(&service.node, service.cluster_id, through));
                    if responder.send(header, Vec::new()).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        match received {
            Ok(batch) if batch.is_empty() => {
                break "etcdserver: this member restored a snapshot; re-create the watch"
                    .to_string();
            }
            Ok(batch) => {
                let Some(last) = batch.last() else { continue };
                let skip = through.max(skip_through);
                let events: Vec<_> = batch
                    .iter()
                    .filter(|e| e.kv.mod_revision > skip && watcher.wants(e))
                    .map(|e| watcher.wire(e))
                    .collect();
                through = through.max(last.kv.mod_revision);
                if !events.is_empty() {
                    let header = Some(header_of(&service.node, service.cluster_id, through));
                    if responder.send(header, events).await.is_err() {
                        return;
                    }
                    sent_since_progress = true;
                }
                sent_through.store(through, Ordering::Release);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                break format!(
                    "etcdserver: watcher fell behind; re-create the watch from revision {}",
                    through.max(skip_through) + 1
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    };
    let _ = responder
        .outbound
        .send(Ok(pb::WatchResponse {
            watch_id: watcher.id,
            canceled: true,
            cancel_reason: reason,
            ..pb::WatchResponse::default()
        }))
        .await;
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let (outbound, responses) = mpsc::channel(OUTBOUND_CAPACITY);
        let mut state = StreamState {
            service: self.clone(),
            outbound,
            watches: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(async move {
            use pb::watch_request::RequestUnion;
            while let Ok(Some(request)) = inbound.message().await {
                match request.request_union {
                    Some(RequestUnion::CreateRequest(create)) => state.create(create).await,
                    Some(RequestUnion::CancelRequest(cancel)) => {
                        state.cancel(cancel.watch_id).await;
                    }
                    Some(RequestUnion::ProgressRequest(_)) => state.progress().await,
                    None => {}
                }
            }
            // The client went: its watches end with it.
            for (_, watch) in state.watches.drain() {
                watch.task.abort();
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_etcds_conventions() {
        assert!(in_range(b"a", b"", b"a"));
        assert!(!in_range(b"a", b"", b"ab"));
        assert!(in_range(b"a", b"\0", b"zzz"));
        assert!(!in_range(b"b", b"\0", b"a"));
        assert!(in_range(b"a", b"c", b"b"));
        assert!(!in_range(b"a", b"c", b"c"));
    }
}
