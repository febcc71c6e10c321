//! A real full disk under a real `ringraft serve` process: a small tmpfs
//! (mounted here, so the test needs root and is `#[ignore]`d; CI runs it
//! with `cargo test --release --test server_disk_full -- --ignored`).
//!
//! The tmpfs holds a filler file the test made first, so that freeing
//! space later is removing it. With 1 MiB WAL segments (each preallocated
//! with `fallocate`, the next one prepared ahead), a few segments fit and
//! then the preparation of the next one fails with `ENOSPC`. The test
//! writes until then and checks that: every write answered 200 was
//! persisted; the write that hits `ENOSPC` is answered 507 naming it, or
//! not at all (never 200); the process then exits by itself, with status 1
//! and a log line naming the failure (as etcd exits: a supervisor restarts
//! it), and nothing listens any more; after the filler is removed, the
//! server restarted on the same data has every acknowledged write and
//! takes new ones.

mod server_common;

use server_common::{Proc, http, wait_healthy};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SEGMENT_BYTES: u64 = 1024 * 1024;
/// The tmpfs: the filler, the first segment, the one prepared ahead and one
/// more fit; the segment after that does not.
const TMPFS_BYTES: u64 = 5 * SEGMENT_BYTES + SEGMENT_BYTES / 2;
const FILLER_BYTES: u64 = 2 * SEGMENT_BYTES;
const VALUE_BYTES: usize = 4096;
/// Far more than the tmpfs holds: the loop ends at the first refusal.
const MAX_WRITES: usize = 5_000;
/// How long the writes may take to fill the disk.
const FILL_DEADLINE: Duration = Duration::from_secs(120);

/// A tmpfs of `size_bytes` mounted on a fresh directory, unmounted (and
/// the directory removed) when dropped, whatever happened.
struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn new(size_bytes: u64) -> TmpfsMount {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed ({status}): this test needs root (CI runs it as root with --ignored)"
        );
        TmpfsMount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a process still holds a file): detach it now, the
            // kernel frees it when the last user goes.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// One `ringraft serve` process, killed when dropped.
/// Starts the single-node server on its data (1 MiB WAL segments) and
/// waits until it answers.
fn start(server: &mut Proc) {
    let initial = format!("1={}", server.peer);
    let segment_bytes = SEGMENT_BYTES.to_string();
    server.start(&initial, &["--wal-segment-size-bytes", &segment_bytes]);
    wait_healthy(server.client);
}

fn value(i: usize) -> Vec<u8> {
    let mut value = format!("value-{i}-").into_bytes();
    value.resize(VALUE_BYTES, b'0' + (i % 10) as u8);
    value
}

#[test]
#[ignore = "needs root to mount tmpfs; CI runs it with --ignored"]
fn a_full_disk_answers_507_loses_nothing_and_serves_again_after_space_is_freed() {
    let logs = tempfile::tempdir().expect("log dir");
    // Declared first: dropped last, after the server is killed.
    let mount = TmpfsMount::new(TMPFS_BYTES);
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![0xAB; FILLER_BYTES as usize]).expect("filler");
    let mut server = Proc::with_paths(1, mount.path().join("node1"), logs.path().join("node1.log"));
    start(&mut server);

    // Write until the disk is full: the first write that is not
    // acknowledged is refused with 507, or not answered (the process is
    // already on its way out).
    let mut acknowledged = Vec::new();
    let mut full = false;
    let started = Instant::now();
    for i in 0..MAX_WRITES {
        let Ok(response) = http(server.client, "PUT", &format!("/v1/kv/k{i:05}"), &value(i)) else {
            eprintln!("write {i}: no answer, the server is gone");
            full = true;
            break;
        };
        match response.status {
            200 => acknowledged.push(i),
            507 => {
                let error = response.error();
                assert!(
                    error.contains("No space left on device") && error.contains("wal"),
                    "507 names the cause and the file: {error}"
                );
                eprintln!("write {i}: 507 {error}");
                full = true;
                break;
            }
            other => panic!("write {i}: {other} {}\n{}", response.error(), server.log()),
        }
        assert!(started.elapsed() < FILL_DEADLINE, "the disk never filled");
    }
    assert!(full, "the disk filled within {MAX_WRITES} writes");
    let acked_bytes = acknowledged.len() * VALUE_BYTES;
    assert!(
        acked_bytes as u64 > SEGMENT_BYTES,
        "more than one segment was written before the disk filled ({acked_bytes} bytes)"
    );
    eprintln!(
        "{} writes acknowledged ({acked_bytes} value bytes) in {:?} before ENOSPC",
        acknowledged.len(),
        started.elapsed()
    );

    // The process exits by itself, status 1, and says why.
    let status = server.wait_exit().expect("the server exits by itself");
    assert_eq!(status.code(), Some(1), "{}", server.log());
    assert!(
        http(server.client, "GET", "/health", b"").is_err(),
        "nothing answers once the process is gone"
    );
    for line in server
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.starts_with("error"))
    {
        eprintln!("server: {line}");
    }
    assert!(
        server
            .log()
            .lines()
            .any(|line| line.contains("exiting") && line.contains("No space left on device")),
        "one line names the cause of the exit\n{}",
        server.log()
    );

    // Space freed: the same data serves again, with every acknowledged
    // write, and takes new ones.
    std::fs::remove_file(&filler).expect("remove filler");
    start(&mut server);
    for &i in &acknowledged {
        let response =
            http(server.client, "GET", &format!("/v1/kv/k{i:05}"), b"").expect("read back");
        assert_eq!(response.status, 200, "k{i:05}: {}", response.error());
        assert_eq!(response.body, value(i), "k{i:05} has its value");
    }
    for i in MAX_WRITES..MAX_WRITES + 20 {
        let response =
            http(server.client, "PUT", &format!("/v1/kv/k{i:05}"), &value(i)).expect("write");
        assert_eq!(response.status, 200, "{}", response.error());
    }
    let status = server.terminate().expect("running");
    assert!(status.success(), "{status}\n{}", server.log());
}
