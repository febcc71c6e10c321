//! The same etcdctl script against a fresh etcd 3.4 and a fresh
//! `ringraft serve`: the outputs must be the same once what differs by
//! nature is masked — member and cluster ids, addresses, the server
//! version, the database size, raft indexes (etcd commits entries of its
//! own that ringraft does not) and timings. Everything else — values,
//! revisions, versions, counts, `more`, txn outcomes, watch events and
//! their order, error messages and exit codes — must match byte for byte.
//!
//! The script is `tests/etcdctl/compare.sh` (runnable by hand against any
//! endpoint); etcd and etcdctl come from Debian's etcd-server and
//! etcd-client, installed by `scripts/install-etcd.sh` when missing.
//! etcd is started with the member name ringraft gives its member 1.

mod etcd_common;
mod server_common;

use etcd_common::{Etcd, ensure_etcd, etcdctl};
use regex::Regex;
use server_common::{ProcCluster, wait_healthy};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/etcdctl/compare.sh");

fn healthy(endpoint: SocketAddr) -> bool {
    etcdctl(&[endpoint], &["endpoint", "health"]).success
}

fn run_script(endpoint: SocketAddr) -> String {
    let output = Command::new("bash")
        .arg(SCRIPT)
        .env("ENDPOINT", endpoint.to_string())
        .output()
        .expect("bash runs the script");
    assert!(output.status.success(), "the script itself failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Masks what differs by nature between two servers (see the module doc).
fn mask(output: &str, endpoint: SocketAddr) -> String {
    let rules = [
        (r#""(cluster_id|member_id)":\d+"#, r#""$1":<ID>"#),
        (r"took = \S+", "took = <TIME>"),
        // member list: id, status, name, peer URL, client URL, learner.
        (r"(?m)^[0-9a-f]+, started, ", "<ID>, started, "),
        // endpoint status: endpoint, id, version, db size, leader,
        // learner, raft term, raft index, applied index, errors.
        (
            r"(?m)^(\S+), [0-9a-f]+, [^,]+, [^,]+, (true|false), (true|false), (\d+), \d+, \d+, ",
            "$1, <ID>, <VERSION>, <SIZE>, $2, $3, $4, <INDEX>, <INDEX>, ",
        ),
        (r"127\.0\.0\.1:\d+", "<ADDR>"),
    ];
    let mut masked = output.replace(&endpoint.to_string(), "<ENDPOINT>");
    for (pattern, replacement) in rules {
        let regex = Regex::new(pattern).expect("a valid mask");
        masked = regex.replace_all(&masked, replacement).into_owned();
    }
    masked
}

#[test]
fn etcdctl_prints_the_same_against_etcd_and_ringraft() {
    let dir = tempfile::tempdir().expect("tempdir");
    ensure_etcd();
    let etcd = Etcd::start(
        dir.path(),
        "ringraft-1",
        Duration::from_secs(30),
        |client| {
            if healthy(client) {
                Ok(())
            } else {
                Err("etcdctl endpoint health fails".into())
            }
        },
    );
    let cluster = ProcCluster::start(&[1]);
    let ringraft = cluster.proc(1).client;
    wait_healthy(ringraft);
    while !healthy(ringraft) {
        std::thread::sleep(Duration::from_millis(100));
    }

    let from_etcd = mask(&run_script(etcd.client), etcd.client);
    let from_ringraft = mask(&run_script(ringraft), ringraft);

    // The script ran: its sections and a fair number of commands.
    let commands = from_etcd
        .lines()
        .filter(|l| l.starts_with("$ etcdctl"))
        .count();
    assert!(commands >= 40, "only {commands} commands ran:\n{from_etcd}");
    assert!(from_etcd.contains("compacted revision 5"), "{from_etcd}");
    let mut differences = Vec::new();
    let (etcd_lines, ringraft_lines): (Vec<_>, Vec<_>) =
        (from_etcd.lines().collect(), from_ringraft.lines().collect());
    for line in 0..etcd_lines.len().max(ringraft_lines.len()) {
        let (expected, got) = (etcd_lines.get(line), ringraft_lines.get(line));
        if expected != got {
            differences.push(format!(
                "line {}:\n  etcd:     {}\n  ringraft: {}",
                line + 1,
                expected.unwrap_or(&"<none>"),
                got.unwrap_or(&"<none>")
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} lines differ (first 20):\n{}\n\nfull ringraft output:\n{from_ringraft}",
        differences.len(),
        differences
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
