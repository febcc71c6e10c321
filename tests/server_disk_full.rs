//! A real full disk under a real `ringraft serve` process: a small tmpfs
//! (mounted here, so the test needs root and is `#[ignore]`d; CI runs it
//! with `cargo test --release --test server_disk_full -- --ignored`).
//!
//! The tmpfs holds a filler file the test made first, so that freeing
//! space later is removing it. With 1 MiB WAL segments (each preallocated
//! with `fallocate`, the next one prepared ahead), a few segments fit and
//! then the preparation of the next one fails with `ENOSPC`. The test
//! writes until then and checks that: every write answered 200 was
//! persisted; from the first refusal on, every write answers 507 naming
//! `ENOSPC` (never 200); the process stays up answering 507 (reads too) and
//! `/health` 503 with the cause, and exits 1 naming the failure when
//! stopped; after the filler is removed, the server restarted on the same
//! data has every acknowledged write and takes new ones.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_ringraft");
const SEGMENT_BYTES: u64 = 1024 * 1024;
/// The tmpfs: the filler, the first segment, the one prepared ahead and one
/// more fit; the segment after that does not.
const TMPFS_BYTES: u64 = 5 * SEGMENT_BYTES + SEGMENT_BYTES / 2;
const FILLER_BYTES: u64 = 2 * SEGMENT_BYTES;
const VALUE_BYTES: usize = 4096;
/// Far more than the tmpfs holds: the loop ends at the first refusal.
const MAX_WRITES: usize = 5_000;
const DEADLINE: Duration = Duration::from_secs(30);

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
struct Server {
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(data_dir: PathBuf, log_path: PathBuf) -> Server {
        Server {
            client: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            log_path,
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-peer", &self.peer.to_string()])
            .args(["--listen-client", &self.client.to_string()])
            .args(["--tick-ms", "20"])
            .args(["--request-timeout-ms", "3000"])
            .args(["--backend", "auto"])
            .args(["--wal-segment-size-bytes", &SEGMENT_BYTES.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ringraft serve");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if http(self.client, "GET", "/health", b"").is_ok_and(|r| r.status == 200) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "the server exited: {exited:?}\n{}",
                self.log()
            );
            assert!(Instant::now() < deadline, "never healthy\n{}", self.log());
            sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn error(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let malformed = || std::io::Error::other("malformed HTTP response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let status = String::from_utf8_lossy(&raw[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    Ok(Response {
        status,
        body: raw[split + 4..].to_vec(),
    })
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
    let mut server = Server::new(mount.path().join("node1"), logs.path().join("node1.log"));
    server.start();

    // Write until the disk is full.
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let started = Instant::now();
    for i in 0..MAX_WRITES {
        let response = http(server.client, "PUT", &format!("/v1/kv/k{i:05}"), &value(i))
            .expect("the server answers");
        match response.status {
            200 if refused == 0 => acknowledged.push(i),
            200 => panic!("write {i} answered 200 after a refusal"),
            507 => {
                let error = response.error();
                assert!(
                    error.contains("No space left on device") && error.contains("wal"),
                    "507 names the cause and the file: {error}"
                );
                if refused == 0 {
                    eprintln!("write {i}: 507 {error}");
                }
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("write {i}: {other} {}\n{}", response.error(), server.log()),
        }
        assert!(started.elapsed() < 4 * DEADLINE, "the disk never filled");
    }
    assert_eq!(refused, 3, "the disk filled within {MAX_WRITES} writes");
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

    // The process stays up and says why; reads are refused too (the node
    // stopped with its state machine).
    let health = http(server.client, "GET", "/health", b"").expect("health");
    assert_eq!(health.status, 503);
    assert!(
        health.error().contains("No space left on device"),
        "{}",
        health.error()
    );
    let read = http(server.client, "GET", "/v1/kv/k00000", b"").expect("read");
    assert_eq!(read.status, 507, "{}", read.error());

    // Stopping it reports the failure: exit status 1, the cause in the log.
    let status = server.terminate();
    assert_eq!(status.code(), Some(1), "{}", server.log());
    for line in server
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.starts_with("error"))
    {
        eprintln!("server: {line}");
    }
    assert!(
        server.log().contains("No space left on device"),
        "{}",
        server.log()
    );

    // Space freed: the same data serves again, with every acknowledged
    // write, and takes new ones.
    std::fs::remove_file(&filler).expect("remove filler");
    server.start();
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
    let status = server.terminate();
    assert!(status.success(), "{status}\n{}", server.log());
}
