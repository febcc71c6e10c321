//! etcd's own client, etcdctl 3.4, against `ringraft serve` processes
//! over the Lease service: grant, attach a key, timetolive with keys,
//! keep-alive, list, revoke (the key goes with the lease); a lease nobody
//! keeps alive expires with its key; and a lease kept alive through the
//! leader survives the leader's death until its TTL runs out on the new
//! leader, which then expires it; a lease kept alive through a follower
//! lives while kept and expires once its keeper stops.

mod etcd_common;
mod server_common;

use etcd_common::{etcdctl, etcdctl_command, etcdctl_ok};
use server_common::{DEADLINE, ProcCluster};
use std::net::SocketAddr;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Grants a lease of `ttl` seconds; returns its id as etcdctl prints it
/// (hex).
fn grant(endpoints: &[SocketAddr], ttl: u64) -> String {
    let out = etcdctl_ok(endpoints, &["lease", "grant", &ttl.to_string()]);
    // "lease 694d77b5ec8ae20a granted with TTL(60s)"
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"lease"), "{out}");
    assert_eq!(
        words.get(4).copied(),
        Some(format!("TTL({ttl}s)").as_str()),
        "{out}"
    );
    words[1].to_string()
}

/// The value of `key` (`None` when it does not exist), read with a
/// linearizable get.
fn get(endpoints: &[SocketAddr], key: &str) -> Option<String> {
    let out = etcdctl_ok(endpoints, &["get", key, "--print-value-only"]);
    let value = out.trim_end_matches('\n');
    (!out.is_empty()).then(|| value.to_string())
}

/// Polls `key` until it is gone; panics if it still exists at `deadline`.
fn wait_gone(endpoints: &[SocketAddr], key: &str, deadline: Instant, context: &dyn Fn() -> String) {
    loop {
        let out = etcdctl(endpoints, &["get", key, "--print-value-only"]);
        if out.success && out.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} still exists ({}{}){}",
            out.stdout,
            out.stderr,
            context()
        );
        sleep(Duration::from_millis(200));
    }
}

#[test]
fn etcdctl_grants_attaches_keeps_alive_lists_and_revokes_leases() {
    let mut cluster = ProcCluster::start(&[1]);
    cluster.leader();
    let endpoints = [cluster.proc(1).client];

    // A long TTL: these steps must not race the expiry on a slow machine.
    let id = grant(&endpoints, 60);
    etcdctl_ok(&endpoints, &["put", "--lease", &id, "k", "v"]);
    etcdctl_ok(&endpoints, &["put", "other", "x"]);
    assert_eq!(get(&endpoints, "k").as_deref(), Some("v"));

    let ttl = etcdctl_ok(&endpoints, &["lease", "timetolive", &id, "--keys"]);
    // "lease … granted with TTL(60s), remaining(59s), attached keys([k])"
    assert!(
        ttl.contains(&format!("lease {id} granted with TTL(60s)")),
        "{ttl}"
    );
    assert!(ttl.contains("attached keys([k])"), "{ttl}");
    let remaining: i64 = ttl
        .split("remaining(")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no remaining TTL in {ttl}"));
    assert!((0..=60).contains(&remaining), "{ttl}");

    let kept = etcdctl_ok(&endpoints, &["lease", "keep-alive", "--once", &id]);
    assert!(
        kept.contains(&format!("lease {id} keepalived with TTL(60)")),
        "{kept}"
    );

    let listed = etcdctl_ok(&endpoints, &["lease", "list"]);
    assert!(listed.contains("found 1 leases"), "{listed}");
    assert!(listed.lines().any(|line| line.trim() == id), "{listed}");

    let revoked = etcdctl_ok(&endpoints, &["lease", "revoke", &id]);
    assert!(
        revoked.contains(&format!("lease {id} revoked")),
        "{revoked}"
    );
    assert_eq!(get(&endpoints, "k"), None, "the key went with its lease");
    assert_eq!(get(&endpoints, "other").as_deref(), Some("x"));

    // etcd's answers for a lease that is gone.
    let again = etcdctl(&endpoints, &["lease", "revoke", &id]);
    assert!(!again.success);
    assert!(
        again.stderr.contains("requested lease not found"),
        "{}",
        again.stderr
    );
    let ttl = etcdctl_ok(&endpoints, &["lease", "timetolive", &id]);
    assert!(ttl.contains("already expired"), "{ttl}");
    let put = etcdctl(&endpoints, &["put", "--lease", &id, "k", "v"]);
    assert!(!put.success);
    assert!(
        put.stderr.contains("requested lease not found"),
        "{}",
        put.stderr
    );
    let listed = etcdctl_ok(&endpoints, &["lease", "list"]);
    assert!(listed.contains("found 0 leases"), "{listed}");
}

#[test]
fn a_lease_nobody_keeps_alive_expires_with_its_key() {
    let mut cluster = ProcCluster::start(&[1]);
    cluster.leader();
    let endpoints = [cluster.proc(1).client];
    let id = grant(&endpoints, 2);
    etcdctl_ok(&endpoints, &["put", "--lease", &id, "short", "lived"]);
    let dump = || cluster.dump_logs();
    wait_gone(
        &endpoints,
        "short",
        Instant::now() + Duration::from_secs(10),
        &dump,
    );
    let ttl = etcdctl_ok(&endpoints, &["lease", "timetolive", &id]);
    assert!(ttl.contains("already expired"), "{ttl}");
}

#[test]
fn a_kept_lease_outlives_its_leader_and_expires_on_the_next_one() {
    const TTL: u64 = 6;
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let leader_endpoint = [cluster.proc(leader).client];
    let others: Vec<SocketAddr> = cluster
        .procs
        .values()
        .filter(|p| p.id != leader)
        .map(|p| p.client)
        .collect();

    let id = grant(&leader_endpoint, TTL);
    etcdctl_ok(&leader_endpoint, &["put", "--lease", &id, "held", "v"]);
    let mut keeper = etcdctl_command(&leader_endpoint, &["lease", "keep-alive", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl lease keep-alive starts");

    // Kept alive past its TTL (the keeper renews every TTL/3).
    sleep(Duration::from_secs(TTL + 2));
    let still = get(&leader_endpoint, "held");
    let _ = keeper.kill();
    let _ = keeper.wait();
    assert_eq!(still.as_deref(), Some("v"), "the keeper kept the lease");

    cluster.procs.get_mut(&leader).expect("leader").kill();
    let killed = Instant::now();
    // No renewal reaches anyone after this point, and the last one was
    // applied at most TTL/3 (plus the keeper's slack) before it: the key
    // exists until about killed + 2·TTL/3 at the earliest. A read that
    // ended well before that must see the key; a later one proves
    // nothing about the lower bound.
    let earliest_expiry = killed + Duration::from_secs(TTL * 2 / 3) - Duration::from_secs(1);
    let read_deadline = Instant::now() + DEADLINE;
    loop {
        let out = etcdctl(&others, &["get", "held", "--print-value-only"]);
        let ended = Instant::now();
        if out.success {
            if ended < earliest_expiry {
                assert_eq!(
                    out.stdout.trim_end(),
                    "v",
                    "the lease expired before its TTL ran out{}",
                    cluster.dump_logs()
                );
            }
            break;
        }
        // No leader yet: try again.
        assert!(ended < read_deadline, "no read succeeded: {}", out.stderr);
        sleep(Duration::from_millis(100));
    }

    let dump = || cluster.dump_logs();
    wait_gone(
        &others,
        "held",
        killed + Duration::from_secs(TTL + 10),
        &dump,
    );
    let listed = etcdctl_ok(&others, &["lease", "list"]);
    assert!(listed.contains("found 0 leases"), "{listed}");
}

#[test]
fn leases_survive_a_restart_from_a_snapshot() {
    let mut cluster = ProcCluster::start_with(
        &[1],
        &["--snapshot-count", "5", "--snapshot-catchup-entries", "2"],
    );
    cluster.leader();
    let endpoints = [cluster.proc(1).client];
    let id = grant(&endpoints, 600);
    etcdctl_ok(&endpoints, &["put", "--lease", &id, "leased", "v"]);
    // Enough entries after the grant for snapshots to hold the lease.
    for n in 0..20 {
        etcdctl_ok(&endpoints, &["put", &format!("filler{n}"), "x"]);
    }
    let snap_dir = cluster.proc(1).dir.join("snap");
    let snapshots = || {
        std::fs::read_dir(&snap_dir)
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + DEADLINE;
    while snapshots() == 0 {
        assert!(Instant::now() < deadline, "no snapshot in {snap_dir:?}");
        sleep(Duration::from_millis(100));
    }

    cluster.procs.get_mut(&1).expect("node 1").kill();
    cluster.restart(1);
    cluster.leader();
    assert_eq!(get(&endpoints, "leased").as_deref(), Some("v"));
    let ttl = etcdctl_ok(&endpoints, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("granted with TTL(600s)"), "{ttl}");
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    let listed = etcdctl_ok(&endpoints, &["lease", "list"]);
    assert!(listed.lines().any(|line| line.trim() == id), "{listed}");
    etcdctl_ok(&endpoints, &["lease", "revoke", &id]);
    assert_eq!(get(&endpoints, "leased"), None);
    assert_eq!(get(&endpoints, "filler7").as_deref(), Some("x"));
}

#[test]
fn a_lease_kept_alive_through_a_follower_lives_while_kept_and_expires_after() {
    const TTL: u64 = 3;
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let follower = cluster
        .procs
        .values()
        .find(|p| p.id != leader)
        .map(|p| p.client)
        .expect("a follower");
    let follower_endpoint = [follower];
    let leader_endpoint = [cluster.proc(leader).client];

    let id = grant(&follower_endpoint, TTL);
    etcdctl_ok(&follower_endpoint, &["put", "--lease", &id, "kept", "v"]);
    let mut keeper = etcdctl_command(&follower_endpoint, &["lease", "keep-alive", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl lease keep-alive starts");
    // Three TTLs: only renewals the follower passed to the leader (which
    // decides expiry) keep the key.
    sleep(Duration::from_secs(3 * TTL));
    let on_leader = get(&leader_endpoint, "kept");
    let ttl = etcdctl_ok(&leader_endpoint, &["lease", "timetolive", &id]);
    let _ = keeper.kill();
    let _ = keeper.wait();
    let stopped = Instant::now();
    assert_eq!(
        on_leader.as_deref(),
        Some("v"),
        "renewals through a follower kept the lease{}",
        cluster.dump_logs()
    );
    assert!(ttl.contains("remaining"), "{ttl}");

    let dump = || cluster.dump_logs();
    wait_gone(
        &leader_endpoint,
        "kept",
        stopped + Duration::from_secs(TTL + 10),
        &dump,
    );
    let ttl = etcdctl_ok(&follower_endpoint, &["lease", "timetolive", &id]);
    assert!(ttl.contains("already expired"), "{ttl}");
}
