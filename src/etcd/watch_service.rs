//! etcd's Watch service: the bidirectional stream of create and cancel
//! requests and of event responses, over a node running the
//! [`EtcdStore`].
//!
//! Owns: the watches of each stream (ids from 0 per stream, as etcd), the
//! catch-up of a watch with a start revision from the store's history, and
//! forwarding live events from the store's [`WatchFeed`]. Guarantees: a
//! watch delivers every event of its range from its start revision on,
//! in revision order, none twice: it subscribes to the feed before it
//! reads the history, and skips live events the history already held. A
//! start revision at or below the compacted one is answered, as etcd
//! does, with `compact_revision` and the watch cancelled. Watches read
//! this member's state (as etcd's do). A watcher more than
//! [`super::store::WATCH_FEED_CAPACITY`] batches behind, or one on a member
//! that restored a snapshot, is cancelled with the reason; the client
//! re-creates it from the revision it reached. Not yet: `progress_notify`
//! and `fragment` are accepted and ignored. May not touch: the store's
//! rules, raft.

use super::convert;
use super::header::header_of;
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::watch_server::Watch;
use super::store::{EtcdQuery, EtcdQueryResult, EtcdStore, EventBatch, WatchFeed};
use crate::mvcc::{self, MvccError};
use crate::node::{Consistency, NodeHandle};
use std::collections::HashMap;
use std::pin::Pin;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses a stream may have queued for its client.
const OUTBOUND_CAPACITY: usize = 256;

/// The Watch service of one node.
#[derive(Debug, Clone)]
pub struct WatchService {
    node: NodeHandle<EtcdStore>,
    feed: WatchFeed,
    cluster_id: u64,
}

impl WatchService {
    /// The service of `node` (whose store's feed is `feed`), a member of
    /// cluster `cluster_id`.
    pub fn new(node: NodeHandle<EtcdStore>, feed: WatchFeed, cluster_id: u64) -> WatchService {
        WatchService {
            node,
            feed,
            cluster_id,
        }
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

/// A running stream: its watches and where its responses go.
struct StreamState {
    service: WatchService,
    outbound: Outbound,
    watches: HashMap<i64, JoinHandle<()>>,
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
        let history: Vec<_> = history.iter().filter(|e| watcher.wants(e)).collect();
        if !history.is_empty() {
            let events = history.iter().map(|e| watcher.wire(e)).collect();
            let header = self.header(through);
            let _ = self
                .outbound
                .send(Ok(event_response(header, id, events)))
                .await;
        }
        // A start revision ahead of this member's state (one still catching
        // up, say after a restart) must not let in the live events before
        // it: the client has them already.
        let skip_through = through.max(request.start_revision - 1);
        let task = tokio::spawn(forward(
            self.service.clone(),
            watcher,
            live,
            skip_through,
            self.outbound.clone(),
        ));
        self.watches.insert(id, task);
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
        if let Some(task) = self.watches.remove(&id) {
            task.abort();
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

fn event_response(
    header: Option<pb::ResponseHeader>,
    watch_id: i64,
    events: Vec<crate::etcd::pb::mvccpb::Event>,
) -> pb::WatchResponse {
    pb::WatchResponse {
        header,
        watch_id,
        events,
        ..pb::WatchResponse::default()
    }
}

/// Sends `watcher`'s live events after revision `through` until the
/// client goes, the feed breaks, or the watcher falls too far behind.
async fn forward(
    service: WatchService,
    watcher: Watcher,
    mut live: broadcast::Receiver<EventBatch>,
    mut through: i64,
    outbound: Outbound,
) {
    loop {
        let reason = match live.recv().await {
            Ok(batch) if batch.is_empty() => {
                "etcdserver: this member restored a snapshot; re-create the watch".to_string()
            }
            Ok(batch) => {
                let events: Vec<_> = batch
                    .iter()
                    .filter(|e| e.kv.mod_revision > through && watcher.wants(e))
                    .map(|e| watcher.wire(e))
                    .collect();
                let Some(last) = batch.last() else { continue };
                through = through.max(last.kv.mod_revision);
                if events.is_empty() {
                    continue;
                }
                let header = Some(header_of(&service.node, service.cluster_id, through));
                if outbound
                    .send(Ok(event_response(header, watcher.id, events)))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => format!(
                "etcdserver: watcher fell behind; re-create the watch from revision {}",
                through + 1
            ),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let _ = outbound
            .send(Ok(pb::WatchResponse {
                watch_id: watcher.id,
                canceled: true,
                cancel_reason: reason,
                ..pb::WatchResponse::default()
            }))
            .await;
        return;
    }
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
                    Some(RequestUnion::ProgressRequest(_)) | None => {}
                }
            }
            // The client went: its watches end with it.
            for (_, task) in state.watches.drain() {
                task.abort();
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
