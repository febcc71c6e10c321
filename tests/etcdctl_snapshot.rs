//! Backup and restore with etcd's own client: `etcdctl snapshot save`
//! against a `ringraft serve` process (etcd's Maintenance Snapshot, a
//! stream of the store's state and its SHA-256), then `ringraft restore`
//! of that file into the data directories of a new three-member cluster,
//! which serves the same keys, values, versions and revision. A damaged
//! backup and a non-empty data directory are refused with nothing made.

mod etcd_common;
mod server_common;

use etcd_common::{etcdctl, etcdctl_ok};
use server_common::{BINARY, DEADLINE, Proc, ProcCluster, initial_cluster, wait_healthy};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

const TOKEN: &str = "restored-cluster";

/// Every key with its value, version and revisions, and the header's
/// revision, as one member holds them (a serializable read).
fn contents(endpoint: SocketAddr) -> (serde_json::Value, i64) {
    let out = etcdctl_ok(
        &[endpoint],
        &["get", "", "--from-key", "-w", "json", "--consistency=s"],
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let revision = json["header"]["revision"].as_i64().expect("revision");
    (json["kvs"].clone(), revision)
}

/// `ringraft restore BACKUP` for member `id` of `initial` into `data_dir`.
fn restore(backup: &Path, id: u64, data_dir: &Path, initial: &str) -> std::process::Output {
    Command::new(BINARY)
        .arg("restore")
        .arg(backup)
        .args(["--id", &id.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--initial-cluster", initial])
        .args(["--cluster-token", TOKEN])
        .output()
        .expect("ringraft restore runs")
}

#[test]
fn a_snapshot_saved_with_etcdctl_restores_into_a_new_cluster() {
    let mut source = ProcCluster::start(&[1]);
    source.leader();
    let endpoint = [source.proc(1).client];
    for n in 0..50 {
        etcdctl_ok(
            &endpoint,
            &["put", &format!("key{n:02}"), &format!("value{n}")],
        );
    }
    etcdctl_ok(&endpoint, &["put", "key07", "rewritten"]);
    etcdctl_ok(&endpoint, &["del", "key13"]);
    let (saved_kvs, saved_revision) = contents(endpoint[0]);
    assert_eq!(saved_kvs.as_array().map(Vec::len), Some(49));

    let work = tempfile::tempdir().expect("tempdir");
    let backup = work.path().join("backup.db");
    let backup_arg = backup.to_str().expect("utf-8 path");
    let saved = etcdctl_ok(&endpoint, &["snapshot", "save", backup_arg]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    drop(source);

    // A damaged backup is refused, and nothing is created.
    let mut bytes = std::fs::read(&backup).expect("backup read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let damaged = work.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).expect("damaged copy");
    let refused_dir = work.path().join("refused");
    let refused = restore(&damaged, 1, &refused_dir, "1=127.0.0.1:1");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not match"), "{stderr}");
    assert!(!refused_dir.exists(), "a refused restore made a directory");

    // Three members of a new cluster, each restored from the same file.
    let root = tempfile::tempdir().expect("tempdir");
    let mut members: Vec<Proc> = (1..=3).map(|id| Proc::new(id, root.path())).collect();
    let initial = initial_cluster(members.iter());
    // What a restore killed midway leaves: its staging directory, which
    // the next one replaces.
    let stale = members[0].dir.with_extension("restoring");
    std::fs::create_dir_all(stale.join("wal")).expect("stale staging");
    std::fs::write(stale.join("wal").join("junk.wal"), b"junk").expect("junk");
    for member in &members {
        let out = restore(&backup, member.id, &member.dir, &initial);
        assert!(
            out.status.success(),
            "restore of member {}: {}",
            member.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("revision {saved_revision}")),
            "{said}"
        );
    }
    assert!(
        !stale.exists(),
        "the staging directory is renamed into place"
    );
    // A second restore into a directory that now holds data is refused.
    let again = restore(&backup, 1, &members[0].dir, &initial);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    for member in &mut members {
        member.start(&initial, &["--cluster-token", TOKEN]);
    }
    for member in &members {
        wait_healthy(member.client);
    }
    let clients: Vec<SocketAddr> = members.iter().map(|m| m.client).collect();
    // A write through the new cluster: the next revision after the backup's.
    let deadline = Instant::now() + DEADLINE;
    let written = loop {
        let out = etcdctl(&clients, &["put", "after", "restore", "-w", "json"]);
        if out.success {
            let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
            break json["header"]["revision"].as_i64().expect("revision");
        }
        assert!(Instant::now() < deadline, "no write: {}", out.stderr);
        sleep(Duration::from_millis(200));
    };
    assert_eq!(written, saved_revision + 1);
    for member in &members {
        // Each member has applied the write before it is compared.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (kvs, revision) = contents(member.client);
            if revision == written {
                let restored: Vec<_> = kvs
                    .as_array()
                    .expect("kvs")
                    .iter()
                    .filter(|kv| kv["key"] != serde_json::json!("YWZ0ZXI="))
                    .cloned()
                    .collect();
                assert_eq!(
                    serde_json::Value::Array(restored),
                    saved_kvs,
                    "member {} holds the backup's keys",
                    member.id
                );
                break;
            }
            assert!(Instant::now() < deadline, "member {} behind", member.id);
            sleep(Duration::from_millis(100));
        }
    }
    for member in &mut members {
        member.terminate();
    }
}
