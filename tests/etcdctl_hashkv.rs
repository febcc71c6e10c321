//! etcd's Maintenance Hash and HashKV, driven by etcd's own client:
//! `etcdctl endpoint hashkv` 3.4 (and a gRPC client for Hash, which
//! etcdctl has no command for).
//!
//! Embedded (an in-process node with the KV, Lease and Maintenance
//! services on a listener): the hash is nonzero, changes with a write,
//! `--rev` of an older revision gives the earlier hash back, a lease
//! changes Hash but not HashKV, and future and compacted revisions get
//! etcd's errors. Across 3 `ringraft serve` processes, one of which was
//! down during the writes and caught up from the leader's snapshot: every
//! member reports the same HashKV and Hash once it applied the same log.

mod etcd_common;
mod server_common;

use etcd_common::embedded::start_embedded;
use etcd_common::{etcdctl, etcdctl_ok};
use ringraft::etcd::pb::etcdserverpb::kv_server::KvServer;
use ringraft::etcd::pb::etcdserverpb::lease_server::LeaseServer;
use ringraft::etcd::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use ringraft::etcd::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use ringraft::etcd::pb::etcdserverpb::{HashKvRequest, HashRequest};
use ringraft::etcd::{HeaderSource, KvService, LeaseService, MaintenanceService};
use server_common::{DEADLINE, ProcCluster};
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One endpoint's answer in `etcdctl endpoint hashkv -w json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HashKv {
    member_id: u64,
    revision: i64,
    hash: u32,
    compact_revision: i64,
}

/// `etcdctl endpoint hashkv -w json [--rev=rev]` against each of
/// `endpoints`: every endpoint's answer, or etcdctl's stderr when one
/// failed.
fn hashkv(endpoints: &[SocketAddr], rev: i64) -> Result<Vec<HashKv>, String> {
    let rev = format!("--rev={rev}");
    let out = etcdctl(endpoints, &["endpoint", "hashkv", "-w", "json", &rev]);
    if !out.success {
        return Err(out.stderr);
    }
    let answers: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON hashkv");
    let answers = answers.as_array().expect("one answer per endpoint");
    assert_eq!(answers.len(), endpoints.len(), "{}", out.stdout);
    Ok(answers
        .iter()
        .map(|answer| {
            let answer = &answer["HashKV"];
            let number = |value: &serde_json::Value| value.as_i64().unwrap_or(0);
            HashKv {
                member_id: answer["header"]["member_id"].as_u64().expect("member"),
                revision: number(&answer["header"]["revision"]),
                hash: u32::try_from(number(&answer["hash"])).expect("a u32 hash"),
                // Go's JSON leaves out zero values (omitempty).
                compact_revision: number(&answer["compact_revision"]),
            }
        })
        .collect())
}

/// Runs blocking etcdctl work off the runtime's workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("etcdctl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_hashkv_follows_the_history_and_refuses_future_and_compacted_revisions() {
    let served = start_embedded(
        0x77,
        |store| (store.applied_revision(), store.lease_deadlines()),
        |node, (revision, deadlines), routes| {
            let headers = HeaderSource::new(node.clone(), 0x77, revision);
            routes.add_service(KvServer::new(KvService::new(node.clone(), 0x77)));
            routes.add_service(LeaseServer::new(LeaseService::new(
                headers.clone(),
                deadlines,
            )));
            routes.add_service(MaintenanceServer::new(MaintenanceService::new(
                headers, None,
            )));
        },
    )
    .await;
    let endpoint = served.endpoint;
    let endpoints = [endpoint];
    let mut client = MaintenanceClient::connect(format!("http://{endpoint}"))
        .await
        .expect("gRPC client");

    let fresh = blocking(move || hashkv(&endpoints, 0))
        .await
        .expect("hashkv");
    assert_eq!(fresh[0].revision, 1, "a fresh store: {fresh:?}");
    blocking(move || {
        etcdctl_ok(&endpoints, &["put", "a", "1"]); // 2
        etcdctl_ok(&endpoints, &["put", "b", "1"]); // 3
    })
    .await;
    let at_3 = blocking(move || hashkv(&endpoints, 0))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_eq!(
        (at_3.member_id, at_3.revision, at_3.compact_revision),
        (1, 3, 0)
    );
    assert_ne!(at_3.hash, 0, "a store with keys hashes to a number");
    assert_ne!(at_3.hash, fresh[0].hash);

    blocking(move || etcdctl_ok(&endpoints, &["put", "a", "2"])).await; // 4
    let at_4 = blocking(move || hashkv(&endpoints, 0))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_eq!(at_4.revision, 4);
    assert_ne!(at_4.hash, at_3.hash, "a put changes the hash");
    let back_at_3 = blocking(move || hashkv(&endpoints, 3))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_eq!(
        back_at_3.hash, at_3.hash,
        "--rev=3 hashes the history up to 3"
    );
    assert_eq!(
        back_at_3.revision, 4,
        "the header carries the current revision"
    );

    // A lease is state Hash covers; HashKV hashes keys only.
    let hash_before = client
        .hash(HashRequest {})
        .await
        .expect("Hash")
        .into_inner();
    assert_eq!(hash_before.header.as_ref().map(|h| h.revision), Some(4));
    assert_ne!(hash_before.hash, 0);
    assert_ne!(
        hash_before.hash, at_4.hash,
        "Hash covers more than the keys"
    );
    let granted = blocking(move || etcdctl_ok(&endpoints, &["lease", "grant", "600"])).await;
    assert!(granted.contains("granted with TTL(600s)"), "{granted}");
    let hash_after = client
        .hash(HashRequest {})
        .await
        .expect("Hash")
        .into_inner();
    assert_ne!(hash_after.hash, hash_before.hash, "a lease changes Hash");
    let with_lease = blocking(move || hashkv(&endpoints, 0))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_eq!(with_lease.hash, at_4.hash, "a lease changes no key");

    blocking(move || etcdctl_ok(&endpoints, &["del", "b"])).await; // 5
    let at_5 = blocking(move || hashkv(&endpoints, 0))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_ne!(at_5.hash, at_4.hash, "a deletion changes the hash");
    let future = blocking(move || hashkv(&endpoints, 6)).await;
    let stderr = future.expect_err("revision 6 is in the future");
    assert!(
        stderr.contains("etcdserver: mvcc: required revision is a future revision"),
        "{stderr}"
    );

    let compacted = blocking(move || etcdctl_ok(&endpoints, &["compaction", "4"])).await;
    assert_eq!(compacted, "compacted revision 4\n");
    let stderr = blocking(move || hashkv(&endpoints, 4))
        .await
        .expect_err("revision 4 is compacted");
    assert!(
        stderr.contains("etcdserver: mvcc: required revision has been compacted"),
        "{stderr}"
    );
    let status = client
        .hash_kv(HashKvRequest { revision: 3 })
        .await
        .expect_err("revision 3 is compacted");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    // Compaction at 4 forgot a's first version (its newest at or below 4
    // is the put at 4), so the hash at 5 moved on; the answer says after
    // which compaction it was taken.
    let after = blocking(move || hashkv(&endpoints, 0))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_eq!((after.revision, after.compact_revision), (5, 4));
    assert_ne!(after.hash, at_5.hash, "compaction forgot versions");
    let at_5_again = blocking(move || hashkv(&endpoints, 5))
        .await
        .expect("hashkv")[0]
        .clone();
    assert_eq!(at_5_again.hash, after.hash);

    let node = served.node.clone();
    served.stop().await;
    node.shutdown().await.expect("shutdown");
}

/// Each member's HashKV once all of `endpoints` are at the same revision
/// (a member answers from its own applied state; a follower may trail the
/// leader for a moment).
fn agreed_hashkv(endpoints: &[SocketAddr], revision: i64) -> Vec<HashKv> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answers = hashkv(endpoints, 0);
        if let Ok(answers) = &answers {
            if answers.iter().all(|a| a.revision == revision) {
                return answers.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the members never all reached revision {revision}: {answers:?}"
        );
        sleep(Duration::from_millis(100));
    }
}

/// The header revision of a JSON etcdctl answer.
fn header_revision(json: &str) -> i64 {
    let value: serde_json::Value = serde_json::from_str(json).expect("JSON");
    value["header"]["revision"].as_i64().expect("a revision")
}

#[test]
fn every_member_reports_the_same_hashes_also_one_restored_from_a_snapshot() {
    let mut cluster = ProcCluster::start_with(
        &[1, 2, 3],
        &["--snapshot-count", "5", "--snapshot-catchup-entries", "2"],
    );
    let leader = cluster.leader();
    let all: Vec<SocketAddr> = cluster.procs.values().map(|p| p.client).collect();
    let behind = *cluster
        .procs
        .keys()
        .find(|&&id| id != leader)
        .expect("a follower");
    let up: Vec<SocketAddr> = cluster
        .procs
        .values()
        .filter(|p| p.id != behind)
        .map(|p| p.client)
        .collect();

    etcdctl_ok(&all, &["put", "k0", "first"]);
    // One member misses the rest and will get it as a snapshot: the
    // leader keeps only 2 entries behind its snapshots.
    cluster.procs.get_mut(&behind).expect("follower").kill();
    let lease = etcdctl_ok(&up, &["lease", "grant", "600"]);
    let lease = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    etcdctl_ok(&up, &["put", "--lease", &lease, "leased", "v"]);
    for n in 1..=12 {
        etcdctl_ok(&up, &["put", &format!("k{}", n % 5), &format!("v{n}")]);
    }
    etcdctl_ok(&up, &["del", "k3"]);
    let now = header_revision(&etcdctl_ok(&up, &["put", "-w", "json", "k9", "last"]));
    etcdctl_ok(&up, &["compaction", &(now - 4).to_string()]);
    cluster.restart(behind);

    let answers = agreed_hashkv(&all, now);
    assert!(
        cluster
            .proc(behind)
            .log()
            .contains("state machine restored from a snapshot"),
        "node {behind} caught up from a snapshot{}",
        cluster.dump_logs()
    );
    let members: Vec<u64> = answers.iter().map(|a| a.member_id).collect();
    assert_eq!(members.len(), 3, "{answers:?}");
    for answer in &answers {
        assert_eq!(
            (answer.hash, answer.compact_revision),
            (answers[0].hash, now - 4),
            "every member, the restored one ({behind}) too: {answers:?}{}",
            cluster.dump_logs()
        );
    }
    assert_ne!(answers[0].hash, 0);
    let older = hashkv(&all, now - 2).expect("hashkv at an older revision");
    assert!(older.iter().all(|a| a.hash == older[0].hash), "{older:?}");
    assert_ne!(older[0].hash, answers[0].hash);

    // Hash (the whole state, leases included) through gRPC: etcdctl has
    // no command for it.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hashes: Vec<u32> = runtime.block_on(async {
        let mut hashes = Vec::new();
        for endpoint in &all {
            let mut client = MaintenanceClient::connect(format!("http://{endpoint}"))
                .await
                .expect("gRPC client");
            let answer = client
                .hash(HashRequest {})
                .await
                .expect("Hash")
                .into_inner();
            assert_eq!(answer.header.map(|h| h.revision), Some(now));
            hashes.push(answer.hash);
        }
        hashes
    });
    assert!(hashes.iter().all(|&h| h == hashes[0]), "{hashes:?}");
    assert_ne!(hashes[0], answers[0].hash);
}
