//! The data directory of `ringraft serve`, with real processes: a first
//! boot killed (SIGKILL) at any instant restarts healthy and takes a write
//! (the new WAL appears only with the bootstrap entries in it), and a
//! second process on a directory in use exits with an error naming it
//! while the first goes on taking writes (the `LOCK` file's flock).

mod server_common;

use server_common::{BINARY, DEADLINE, free_port, http, put_retrying, wait_healthy, wait_value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::Duration;

/// First boots killed in the crash test.
const FIRST_BOOTS: u64 = 100;
/// They run this many at a time (each mostly waits for its election).
const PARALLEL: u64 = 4;
/// The kill comes within this long after the spawn.
const KILL_WINDOW_MS: u64 = 200;

/// A single-node `ringraft serve` on fresh ports, with a fast tick so that
/// a restart elects itself within a few hundred milliseconds.
struct Serve {
    dir: PathBuf,
    log: PathBuf,
    peer: SocketAddr,
    client: SocketAddr,
}

impl Serve {
    fn new(dir: &Path, log: &Path) -> Serve {
        let [peer, client] = distinct_ports();
        Serve {
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            peer: SocketAddr::from(([127, 0, 0, 1], peer)),
            client: SocketAddr::from(([127, 0, 0, 1], client)),
        }
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        Command::new(BINARY)
            .arg("serve")
            .args(["--id", "1"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-peer", &self.peer.to_string()])
            .args(["--listen-client", &self.client.to_string()])
            .args(["--initial-cluster", &format!("1={}", self.peer)])
            .args(["--tick-ms", "10", "--election-ticks", "10"])
            .args(["--wal-segment-size-bytes", "65536"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ringraft serve")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Two unused loopback ports, never handed out before in this test
/// binary (`server_common::free_port`).
fn distinct_ports() -> [u16; 2] {
    [free_port(), free_port()]
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The exit status once `child` exits by itself (killed at the deadline).
fn wait_exit(child: &mut Child) -> ExitStatus {
    server_common::exit_within_deadline(child)
        .unwrap_or_else(|| panic!("the process did not exit within {DEADLINE:?}"))
}

/// splitmix64: a seeded, reproducible sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The seed: `RINGRAFT_TEST_SEED` to replay a run, else the clock.
fn seed() -> u64 {
    std::env::var("RINGRAFT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// One first boot of a fresh directory, killed `kill_after`; then a
/// restart must become healthy and take (and serve) a write. Returns
/// whether the restart found the WAL the killed boot created (rather than
/// starting over): the case that used to never elect a leader.
fn first_boot_killed_then_restarted(root: &Path, round: u64, kill_after: Duration) -> bool {
    let serve = Serve::new(
        &root.join(format!("node{round}")),
        &root.join(format!("node{round}.log")),
    );
    let mut first = serve.spawn();
    sleep(kill_after);
    kill(&mut first);
    let mut restarted = serve.spawn();
    let outcome = std::panic::catch_unwind(|| {
        wait_healthy(serve.client);
        let key = format!("k{round}");
        put_retrying(&[serve.client], &key, b"after the kill");
        wait_value(serve.client, &key, b"after the kill");
    });
    kill(&mut restarted);
    let log = serve.log_text();
    if outcome.is_err() {
        panic!(
            "round {round}: killed {kill_after:?} after its first start, the node did not recover\n{log}"
        );
    }
    log.lines()
        .rev()
        .find(|line| line.contains("ringraft serving"))
        .is_some_and(|line| line.contains("Restart"))
}

#[test]
fn first_boots_killed_at_random_instants_restart_healthy_and_take_writes() {
    let seed = seed();
    println!("seed {seed} (RINGRAFT_TEST_SEED={seed} replays it)");
    let root = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed);
    let delays: Vec<Duration> = (0..FIRST_BOOTS)
        .map(|_| Duration::from_millis(rng.next() % (KILL_WINDOW_MS + 1)))
        .collect();
    let restarted_from_wal: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|worker| {
                let (root, delays) = (root.path(), &delays);
                scope.spawn(move || {
                    (worker..FIRST_BOOTS)
                        .step_by(PARALLEL as usize)
                        .filter(|&round| {
                            first_boot_killed_then_restarted(root, round, delays[round as usize])
                        })
                        .count() as u64
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker"))
            .sum()
    });
    println!("{restarted_from_wal} of {FIRST_BOOTS} restarts found the WAL of the killed boot");
    // Kills before the WAL existed test nothing new: most must come after.
    assert!(
        restarted_from_wal >= FIRST_BOOTS / 4,
        "only {restarted_from_wal} kills came after the WAL was created"
    );
}

#[test]
fn a_second_serve_on_a_data_directory_in_use_exits_and_the_first_keeps_serving() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let first = Serve::new(&dir, &root.path().join("first.log"));
    let mut first_child = first.spawn();
    wait_healthy(first.client);
    put_retrying(&[first.client], "before", b"1");

    let second = Serve::new(&dir, &root.path().join("second.log"));
    let mut second_child = second.spawn();
    let status = wait_exit(&mut second_child);
    let log = second.log_text();
    assert!(!status.success(), "the second process must fail: {log}");
    assert!(
        log.contains(&format!(
            "data directory {} is in use by another ringraft process",
            dir.display()
        )),
        "the error names the directory and the cause: {log}"
    );
    assert!(
        http(second.client, "GET", "/health", b"").is_err(),
        "the second process serves nothing"
    );

    // The first is unharmed: it still takes and serves writes, and its
    // snapshot directory was not touched.
    assert!(
        matches!(first_child.try_wait(), Ok(None)),
        "the first process still runs"
    );
    put_retrying(&[first.client], "after", b"2");
    wait_value(first.client, "before", b"1");
    wait_value(first.client, "after", b"2");
    kill(&mut first_child);
}

/// Every file under `dir` with its length, for "left as it was".
fn files_and_lengths(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                found.push((entry.path(), meta.len()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_wal_written_before_the_format_marker_is_refused_and_left_as_it_was() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let first = Serve::new(&dir, &root.path().join("first.log"));
    let mut child = first.spawn();
    wait_healthy(first.client);
    put_retrying(&[first.client], "kept", b"1");
    kill(&mut child);
    // What a directory of an earlier `serve` looks like: a WAL, no marker.
    std::fs::remove_file(dir.join("FORMAT")).expect("the first boot wrote the marker");
    let before = files_and_lengths(&dir);

    let second = Serve::new(&dir, &root.path().join("second.log"));
    let mut child = second.spawn();
    let status = wait_exit(&mut child);
    let log = second.log_text();
    assert!(
        !status.success(),
        "an unmarked WAL must not be served: {log}"
    );
    assert!(
        log.contains(&format!(
            "data directory {} has a WAL but no FORMAT file",
            dir.display()
        )) && log.contains("no migration"),
        "the error names the directory, the cause and what to do: {log}"
    );
    assert!(
        http(second.client, "GET", "/health", b"").is_err(),
        "nothing is served"
    );
    let lock = dir.join("LOCK");
    let strip_lock = |files: Vec<(PathBuf, u64)>| -> Vec<(PathBuf, u64)> {
        files
            .into_iter()
            .filter(|(path, _)| path != &lock)
            .collect()
    };
    assert_eq!(
        strip_lock(files_and_lengths(&dir)),
        strip_lock(before),
        "the directory is left as it was"
    );
}
