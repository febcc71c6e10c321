//! etcd's Watch service beyond events: progress requests, periodic
//! progress notifications (`progress_notify`) and fragmented responses
//! (`fragment`), through a tonic client against an in-process node
//! running the MVCC store. etcdctl 3.4 has no flags for these; etcd's
//! client library (and Kubernetes, which relies on progress) does.

mod etcd_common;

use etcd_common::embedded::{EmbeddedNode, start_embedded};
use ringraft::etcd::pb::etcdserverpb as pb;
use ringraft::etcd::pb::etcdserverpb::kv_client::KvClient;
use ringraft::etcd::pb::etcdserverpb::kv_server::KvServer;
use ringraft::etcd::pb::etcdserverpb::watch_client::WatchClient;
use ringraft::etcd::pb::etcdserverpb::watch_server::WatchServer;
use ringraft::etcd::{EtcdStore, KvService, WatchService};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const CLUSTER: u64 = 0x77;
/// The progress interval the tests' service runs with.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// The fragment size the tests' service runs with.
const FRAGMENT_BYTES: usize = 1000;
/// Longest any one expected response may take.
const PATIENCE: Duration = Duration::from_secs(10);

struct Served {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    /// Serves until the test ends.
    _node: EmbeddedNode,
}

async fn serve() -> Served {
    let node = start_embedded(CLUSTER, EtcdStore::watch_feed, |node, feed, routes| {
        let watch = WatchService::new(node.clone(), feed, CLUSTER)
            .with_progress_interval(PROGRESS_INTERVAL)
            .with_fragment_bytes(FRAGMENT_BYTES);
        routes.add_service(KvServer::new(KvService::new(node.clone(), CLUSTER)));
        routes.add_service(WatchServer::new(watch));
    })
    .await;
    let channel = Channel::from_shared(format!("http://{}", node.endpoint))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Served {
        kv: KvClient::new(channel.clone()),
        watch: WatchClient::new(channel),
        _node: node,
    }
}

/// Puts `key` = `value`; returns the revision it made.
async fn put(kv: &mut KvClient<Channel>, key: &str, value: &[u8]) -> i64 {
    let response = kv
        .put(pb::PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.to_vec().into(),
            ..pb::PutRequest::default()
        })
        .await
        .expect("put")
        .into_inner();
    response.header.expect("header").revision
}

/// One watch stream: requests in, responses out.
struct Stream {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

impl Stream {
    async fn open(watch: &mut WatchClient<Channel>) -> Stream {
        let (requests, outgoing) = mpsc::channel(16);
        let responses = watch
            .watch(ReceiverStream::new(outgoing))
            .await
            .expect("watch stream")
            .into_inner();
        Stream {
            requests,
            responses,
        }
    }

    async fn send(&self, request: pb::watch_request::RequestUnion) {
        self.requests
            .send(pb::WatchRequest {
                request_union: Some(request),
            })
            .await
            .expect("request sent");
    }

    /// Creates a watch; returns its id once the server says it is created.
    async fn create(&mut self, create: pb::WatchCreateRequest) -> i64 {
        self.send(pb::watch_request::RequestUnion::CreateRequest(create))
            .await;
        let response = self.next().await;
        assert!(
            response.created && !response.canceled,
            "not created: {response:?}"
        );
        response.watch_id
    }

    async fn request_progress(&self) {
        self.send(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        ))
        .await;
    }

    async fn next(&mut self) -> pb::WatchResponse {
        tokio::time::timeout(PATIENCE, self.responses.message())
            .await
            .expect("a response in time")
            .expect("stream healthy")
            .expect("stream open")
    }
}

fn revision_of(response: &pb::WatchResponse) -> i64 {
    response.header.as_ref().expect("header").revision
}

fn mod_revisions(response: &pb::WatchResponse) -> Vec<i64> {
    response
        .events
        .iter()
        .map(|e| e.kv.as_ref().expect("kv").mod_revision)
        .collect()
}

fn watch_of(key: &str, range_end: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: key.as_bytes().to_vec().into(),
        range_end: range_end.as_bytes().to_vec().into(),
        ..pb::WatchCreateRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_answer_never_runs_ahead_of_the_events_sent() {
    let mut served = serve().await;
    let mut stream = Stream::open(&mut served.watch).await;
    // No watch yet: the answer is the member's revision.
    let before = put(&mut served.kv, "other", b"0").await;
    stream.request_progress().await;
    let answer = stream.next().await;
    assert_eq!(answer.watch_id, -1, "{answer:?}");
    assert!(answer.events.is_empty());
    assert_eq!(revision_of(&answer), before);

    let id = stream.create(watch_of("w", "")).await;
    let mut last = before;
    for round in 0..20 {
        // Writes outside the watch, and one inside it, then a progress
        // request: whatever it reports, the watch's event at or below it
        // must already have come.
        for _ in 0..3 {
            last = put(&mut served.kv, "other", b"x").await;
        }
        let watched = put(&mut served.kv, "w", format!("{round}").as_bytes()).await;
        stream.request_progress().await;
        let mut event_seen = false;
        loop {
            let response = stream.next().await;
            if response.watch_id == id && !response.events.is_empty() {
                assert_eq!(mod_revisions(&response), vec![watched]);
                event_seen = true;
                continue;
            }
            assert_eq!(response.watch_id, -1, "{response:?}");
            let reported = revision_of(&response);
            assert!(reported <= watched, "{reported} beyond the last write");
            assert!(
                reported < watched || event_seen,
                "progress at {reported} before the event of {watched}"
            );
            if event_seen && reported == watched {
                break;
            }
            // The watch's task had not reached the write yet: ask again.
            tokio::time::sleep(Duration::from_millis(5)).await;
            stream.request_progress().await;
        }
        last = last.max(watched);
    }
    assert!(last > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_that_asked_for_progress_hears_of_it_each_interval() {
    let mut served = serve().await;
    let mut stream = Stream::open(&mut served.watch).await;
    let quiet = stream.create(watch_of("q", "")).await;
    let notified = stream
        .create(pb::WatchCreateRequest {
            progress_notify: true,
            // Fragmenting must not swallow a response without events.
            fragment: true,
            ..watch_of("p", "")
        })
        .await;
    let now = put(&mut served.kv, "elsewhere", b"1").await;
    // A notification carries the revision the watch has seen up to:
    // wait until the write elsewhere is in it.
    let mut notifications = 0;
    loop {
        let response = stream.next().await;
        assert_ne!(response.watch_id, quiet, "{response:?}");
        assert_eq!(response.watch_id, notified, "{response:?}");
        assert!(response.events.is_empty() && !response.canceled);
        notifications += 1;
        assert!(revision_of(&response) <= now);
        if revision_of(&response) == now {
            break;
        }
    }
    // A watch that gets events hears no progress in between: the events
    // themselves tell it.
    let event = put(&mut served.kv, "p", b"v").await;
    loop {
        let response = stream.next().await;
        assert_eq!(response.watch_id, notified);
        if response.events.is_empty() {
            // A notification due before the write reached the watch.
            assert!(revision_of(&response) < event, "{response:?}");
            continue;
        }
        assert_eq!(mod_revisions(&response), vec![event]);
        break;
    }
    let response = stream.next().await;
    assert!(response.events.is_empty(), "{response:?}");
    assert_eq!(revision_of(&response), event);
    assert!(notifications >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_asked_for_fragments_gets_large_responses_in_pieces() {
    let mut served = serve().await;
    let value = vec![b'v'; 600];
    let mut written = Vec::new();
    for n in 0..6 {
        written.push(put(&mut served.kv, &format!("f{n}"), &value).await);
    }
    let mut stream = Stream::open(&mut served.watch).await;
    // Whole: the history in one response.
    let whole = stream
        .create(pb::WatchCreateRequest {
            start_revision: written[0],
            ..watch_of("f", "g")
        })
        .await;
    let response = stream.next().await;
    assert_eq!(response.watch_id, whole);
    assert!(!response.fragment);
    assert_eq!(mod_revisions(&response), written);

    // In pieces: each within the limit, all but the last marked.
    let pieced = stream
        .create(pb::WatchCreateRequest {
            start_revision: written[0],
            fragment: true,
            ..watch_of("f", "g")
        })
        .await;
    let mut events = Vec::new();
    let mut pieces = 0;
    loop {
        let response = stream.next().await;
        assert_eq!(response.watch_id, pieced);
        assert!(prost::Message::encoded_len(&response) < FRAGMENT_BYTES + 200);
        events.extend(mod_revisions(&response));
        pieces += 1;
        if !response.fragment {
            break;
        }
    }
    assert_eq!(events, written, "every event once, in order");
    assert!(pieces >= 3, "{pieces} pieces of 6 × 600 bytes");

    // A live transaction of three large puts: one revision, in fragments
    // for the one watch and whole for the other.
    let put_op = |key: &str| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.clone().into(),
            ..pb::PutRequest::default()
        })),
    };
    let txn = served
        .kv
        .txn(pb::TxnRequest {
            success: vec![put_op("f7"), put_op("f8"), put_op("f9")],
            ..pb::TxnRequest::default()
        })
        .await
        .expect("txn")
        .into_inner();
    let revision = txn.header.expect("header").revision;
    let (mut whole_events, mut pieced_events, mut pieced_responses) = (0, 0, 0);
    while whole_events < 3 || pieced_events < 3 {
        let response = stream.next().await;
        assert!(mod_revisions(&response).iter().all(|r| *r == revision));
        if response.watch_id == whole {
            assert!(!response.fragment);
            assert_eq!(response.events.len(), 3);
            whole_events += 3;
        } else {
            assert_eq!(response.watch_id, pieced);
            pieced_events += response.events.len();
            pieced_responses += 1;
            assert_eq!(response.fragment, pieced_events < 3, "{response:?}");
        }
    }
    assert_eq!((whole_events, pieced_events), (3, 3));
    assert!(pieced_responses >= 2);
}
