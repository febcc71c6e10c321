//! etcd's own client, etcdctl 3.4 (Debian's etcd-client, installed by
//! `scripts/install-etcd.sh`), against three `ringraft serve` processes
//! over the etcd v3 gRPC API on the client port: `member list` (with every
//! member's published client URL, asked of each member), `member
//! add --learner`, the new member started with the id etcdctl printed,
//! `member promote`, `member remove`, and etcd's errors for a member that
//! does not exist and for promoting a voter; `endpoint status`, `health`
//! and `hashkv` with `--cluster`.

mod etcd_common;
mod server_common;

use etcd_common::Etcdctl;
use server_common::{Proc, ProcCluster, eventually, put_retrying, wait_value};
use std::net::SocketAddr;

/// etcdctl against one endpoint.
fn etcdctl(endpoint: SocketAddr, args: &[&str]) -> Etcdctl {
    etcd_common::etcdctl(&[endpoint], args)
}

/// `etcdctl member list` as (id, status, name, peer URLs, client URLs,
/// is learner) rows.
fn member_list(endpoint: SocketAddr) -> Vec<[String; 6]> {
    let listed = etcdctl(endpoint, &["member", "list"]);
    assert!(listed.success, "member list failed: {}", listed.stderr);
    listed
        .stdout
        .lines()
        .map(|line| {
            let fields: Vec<String> = line.split(", ").map(str::to_string).collect();
            fields
                .try_into()
                .unwrap_or_else(|fields| panic!("not a member line: {fields:?}"))
        })
        .collect()
}

#[test]
fn etcdctl_lists_adds_promotes_and_removes_members() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let endpoint = cluster.proc(leader).client;

    // Every member publishes its client URL through the log: each one
    // lists all three, whichever member answers.
    for answering in [1u64, 2, 3] {
        let members = eventually("every member's client URL listed", || {
            let members = member_list(cluster.proc(answering).client);
            members
                .iter()
                .all(|row| !row[4].is_empty())
                .then_some(members)
        });
        assert_eq!(members.len(), 3, "{members:?}");
        for (row, id) in members.iter().zip(1u64..) {
            let proc = cluster.proc(id);
            assert_eq!(row[0], format!("{id:x}"));
            assert_eq!(row[1], "started");
            assert_eq!(row[2], format!("ringraft-{id}"));
            assert_eq!(row[3], format!("http://{}", proc.peer));
            assert_eq!(row[4], format!("http://{}", proc.client), "as published");
            assert_eq!(row[5], "false", "a voter");
        }
    }

    // A learner, with the id the server chose.
    let mut fourth = Proc::new(4, cluster.root.path());
    let peer_url = format!("--peer-urls=http://{}", fourth.peer);
    let added = etcdctl(
        endpoint,
        &["member", "add", "fourth", &peer_url, "--learner"],
    );
    assert!(added.success, "member add failed: {}", added.stderr);
    let hex_id = added
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("Member <id> added ...")
        .to_string();
    assert!(
        added.stdout.contains("added to cluster"),
        "{}",
        added.stdout
    );
    let new_id = u64::from_str_radix(&hex_id, 16).expect("hex member id");
    let listed = member_list(endpoint);
    let row = listed
        .iter()
        .find(|row| row[0] == hex_id)
        .expect("the new member is listed");
    assert_eq!(row[3], format!("http://{}", fourth.peer));
    assert_eq!(row[5], "true", "added as a learner");

    // Promoting a voter is refused as etcd refuses it.
    let refused = etcdctl(endpoint, &["member", "promote", "1"]);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("can only promote a learner member"),
        "{}",
        refused.stderr
    );

    // The new member starts with the id etcdctl printed and catches up.
    fourth.id = new_id;
    let initial = format!("{},{new_id}={}", cluster.initial(), fourth.peer);
    fourth.start(&initial, &["--join"]);
    put_retrying(&[endpoint], "joined", b"yes");
    wait_value(fourth.client, "joined", b"yes");
    eventually("the learner is promoted", || {
        let promoted = etcdctl(endpoint, &["member", "promote", &hex_id]);
        promoted.success.then_some(())
    });
    let listed = member_list(endpoint);
    let row = listed.iter().find(|row| row[0] == hex_id).expect("listed");
    assert_eq!(row[5], "false", "a voter now");
    // The joined member published its client URL too.
    eventually("the new member's client URL listed", || {
        let listed = member_list(endpoint);
        let row = listed.iter().find(|row| row[0] == hex_id)?.clone();
        (row[4] == format!("http://{}", fourth.client)).then_some(())
    });

    // Removal, then etcd's error for a member that is not there.
    let leader = cluster.leader();
    let endpoint = cluster.proc(leader).client;
    let removed = etcdctl(endpoint, &["member", "remove", &hex_id]);
    assert!(removed.success, "member remove failed: {}", removed.stderr);
    assert!(
        removed.stdout.contains("removed from cluster"),
        "{}",
        removed.stdout
    );
    fourth.terminate();
    assert_eq!(member_list(endpoint).len(), 3);
    let again = etcdctl(endpoint, &["member", "remove", &hex_id]);
    assert!(!again.success);
    assert!(
        again.stderr.contains("member not found"),
        "{}",
        again.stderr
    );
}

#[test]
fn etcdctl_reads_endpoint_status_alarms_and_moves_the_leader() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let endpoint = cluster.proc(leader).client;

    let status = etcdctl(endpoint, &["endpoint", "status"]);
    assert!(status.success, "endpoint status failed: {}", status.stderr);
    let fields: Vec<&str> = status.stdout.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 10, "{}", status.stdout);
    assert_eq!(fields[0], endpoint.to_string());
    assert_eq!(fields[1], format!("{leader:x}"), "the member id");
    assert!(fields[2].starts_with("3.4.0-ringraft."), "{}", fields[2]);
    assert_eq!(fields[4], "true", "the endpoint is the leader");
    assert_eq!(fields[5], "false", "not a learner");
    let term: u64 = fields[6].parse().expect("raft term");
    let index: u64 = fields[7].parse().expect("raft index");
    let applied: u64 = fields[8].parse().expect("raft applied index");
    assert!(term >= 1 && index >= 1 && applied >= 1, "{}", status.stdout);
    assert_eq!(fields[9], "", "no errors");

    // `--cluster` reaches every member by the client URL it published.
    // etcdctl 3.4 sends `http://host:port` as the HTTP/2 authority on
    // those connections; the server repairs it (server::h2_authority).
    let every = eventually("endpoint status of every member", || {
        let every = etcdctl(endpoint, &["endpoint", "status", "--cluster"]);
        (every.success && every.stdout.lines().count() == 3).then_some(every)
    });
    for id in [1u64, 2, 3] {
        let line = format!("http://{}, {id:x}, ", cluster.proc(id).client);
        assert!(every.stdout.contains(&line), "{line} in\n{}", every.stdout);
    }
    let health = etcdctl(endpoint, &["endpoint", "health", "--cluster"]);
    assert!(health.success, "{}{}", health.stdout, health.stderr);
    assert_eq!(
        health.stdout.matches("is healthy").count() + health.stderr.matches("is healthy").count(),
        3,
        "{}{}",
        health.stdout,
        health.stderr
    );
    let hashes = etcdctl(endpoint, &["endpoint", "hashkv", "--cluster"]);
    assert!(hashes.success, "{}", hashes.stderr);
    assert_eq!(hashes.stdout.lines().count(), 3, "{}", hashes.stdout);

    let alarms = etcdctl(endpoint, &["alarm", "list"]);
    assert!(alarms.success, "{}", alarms.stderr);
    assert_eq!(alarms.stdout.trim(), "", "no alarm is raised");
    let defrag = etcdctl(endpoint, &["defrag"]);
    assert!(defrag.success, "{}", defrag.stderr);

    // Leadership moves to another voter; a stranger is refused.
    let target = if leader == 1 { 2 } else { 1 };
    let moved = etcdctl(endpoint, &["move-leader", &format!("{target:x}")]);
    assert!(moved.success, "move-leader failed: {}", moved.stderr);
    eventually("the new leader", || {
        (cluster.agreed_leader() == Some(target)).then_some(())
    });
    let refused = etcdctl(cluster.proc(target).client, &["move-leader", "99"]);
    assert!(!refused.success);
}

#[test]
fn etcdctl_moves_a_member_to_a_new_peer_url() {
    let mut cluster = ProcCluster::start(&[1, 2, 3]);
    let leader = cluster.leader();
    let endpoint = cluster.proc(leader).client;
    let moved = if leader == 3 { 2 } else { 3 };
    let hex_id = format!("{moved:x}");

    // etcd's errors: a member that is not there, an address taken.
    let stranger = etcdctl(
        endpoint,
        &["member", "update", "99", "--peer-urls=http://127.0.0.1:1"],
    );
    assert!(!stranger.success);
    assert!(
        stranger.stderr.contains("member not found"),
        "{}",
        stranger.stderr
    );
    let taken = format!("--peer-urls=http://{}", cluster.proc(leader).peer);
    let clash = etcdctl(endpoint, &["member", "update", &hex_id, &taken]);
    assert!(!clash.success);
    assert!(
        clash.stderr.contains("Peer URLs already exists"),
        "{}",
        clash.stderr
    );

    // The member is told its new address, stopped, and started there.
    let new_peer = std::net::SocketAddr::from(([127, 0, 0, 1], server_common::free_port()));
    let flag = format!("--peer-urls=http://{new_peer}");
    let updated = etcdctl(endpoint, &["member", "update", &hex_id, &flag]);
    assert!(updated.success, "member update failed: {}", updated.stderr);
    assert!(
        updated.stdout.contains("updated in cluster"),
        "{}",
        updated.stdout
    );
    // Answered once applied on the leader. The moved member itself is
    // not sent anything more at its old address, as with etcd: it learns
    // of the change once restarted at the new one.
    let lists_new_address = |client: SocketAddr| {
        let listed = member_list(client);
        let row = listed.iter().find(|row| row[0] == hex_id).expect("listed");
        row[3] == format!("http://{new_peer}")
    };
    for id in [1, 2, 3].into_iter().filter(|&id| id != moved) {
        let client = cluster.proc(id).client;
        eventually("the others list the new address", || {
            lists_new_address(client).then_some(())
        });
    }
    cluster
        .procs
        .get_mut(&moved)
        .expect("the moved member")
        .terminate();
    put_retrying(&[endpoint], "while-away", b"1");
    cluster.procs.get_mut(&moved).expect("moved").peer = new_peer;
    cluster.restart(moved);
    // Nothing listens at the old address: the member catches up only if
    // the leader sends to the new one.
    put_retrying(&[endpoint], "after-move", b"2");
    wait_value(cluster.proc(moved).client, "while-away", b"1");
    wait_value(cluster.proc(moved).client, "after-move", b"2");
    assert!(lists_new_address(cluster.proc(moved).client));

    // A restart of the leader (its --initial-cluster still names the old
    // address of the moved member) keeps the new one from the directory.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != moved).collect();
    let stale_initial = cluster.initial().replace(
        &new_peer.to_string(),
        &format!("127.0.0.1:{}", server_common::free_port()),
    );
    let restarted = others[0];
    let proc = cluster.procs.get_mut(&restarted).expect("restarted");
    proc.terminate();
    proc.start(&stale_initial, &[]);
    let survivor = cluster.proc(others[1]).client;
    put_retrying(&[survivor], "after-restart", b"3");
    // Stop the member that never restarted: the restarted one and the
    // moved one must then form a quorum, which needs the restarted one to
    // reach the moved one at its new address.
    cluster
        .procs
        .get_mut(&others[1])
        .expect("the third")
        .terminate();
    let restarted_client = cluster.proc(restarted).client;
    put_retrying(
        &[restarted_client, cluster.proc(moved).client],
        "pair",
        b"4",
    );
    wait_value(cluster.proc(moved).client, "pair", b"4");
}

#[test]
fn a_member_publishes_its_advertised_client_url() {
    let advertised = "https://ringraft-1.example:2379";
    let cluster = ProcCluster::start_with(&[1], &["--advertise-client-url", advertised]);
    let endpoint = cluster.proc(1).client;
    eventually("the advertised client URL listed", || {
        let members = member_list(endpoint);
        (members.len() == 1 && members[0][4] == advertised).then_some(())
    });
}
