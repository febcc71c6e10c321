//! The client port under hostile or broken clients, against a real
//! `ringraft serve`: a half-sent request header is closed by the header
//! timeout; thousands of idle connections neither keep other clients out
//! nor stay open forever; and with few file descriptors, idle sockets
//! cannot take the ones the WAL needs (segment cuts, snapshot saves), so the
//! node stays healthy and serves again once they close.

mod server_common;

use server_common::{DEADLINE, Proc, http, wait_healthy};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The acceptance bound for a half-sent header (the server's header
/// timeout is 10 s).
const HALF_HEADER_CLOSED_WITHIN: Duration = Duration::from_secs(30);

fn single_node(dir: &std::path::Path, extra: &[&str]) -> Proc {
    let mut node = Proc::new(1, dir);
    let initial = format!("1={}", node.peer);
    node.start(&initial, extra);
    wait_healthy(node.client);
    node
}

/// Raises this test process's descriptor limit to its hard limit, which
/// must allow `needed`.
fn allow_descriptors(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= needed,
        "this test needs `ulimit -Hn` ≥ {needed}, have {hard}"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// Waits until the server closes `stream` (EOF or reset); how long it took.
fn time_until_closed(mut stream: TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            // A 408 or other answer before the close is fine; keep reading.
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("connection still open after {limit:?}")
            }
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => return started.elapsed(),
        }
    }
}

#[test]
fn half_sent_headers_are_closed_and_idle_connections_keep_no_one_out() {
    allow_descriptors(2_500);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = single_node(dir.path(), &[]);
    let client = node.client;

    let mut slow = TcpStream::connect(client).expect("connect");
    slow.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Le")
        .expect("half a header");
    let slow_closed = thread::spawn(move || time_until_closed(slow, HALF_HEADER_CLOSED_WITHIN));

    let idle: Vec<TcpStream> = (0..2_000)
        .map(|i| TcpStream::connect(client).unwrap_or_else(|e| panic!("idle {i}: {e}")))
        .collect();
    // Another client's writes, each on its own connection, while the idle
    // ones are open: every one must succeed.
    for i in 0..200 {
        let response = http(client, "PUT", &format!("/v1/kv/k{i}"), b"value")
            .unwrap_or_else(|e| panic!("put {i} with 2000 idle connections open: {e}"));
        assert_eq!(response.status, 200, "put {i}: {}", response.text());
    }
    let got = http(client, "GET", "/v1/kv/k199", b"").expect("get");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"value"[..]));

    let took = slow_closed.join().expect("slow client thread");
    assert!(
        took < HALF_HEADER_CLOSED_WITHIN,
        "half header open {took:?}"
    );
    // Idle connections are closed by the same timeout, so they do not
    // hold descriptors forever.
    for stream in idle.into_iter().step_by(400) {
        time_until_closed(stream, HALF_HEADER_CLOSED_WITHIN);
    }
    assert!(node.running(), "node exited:\n{}", node.log());
}

/// One keep-alive HTTP/1.1 connection (the server's answers carry a
/// `content-length`).
struct KeepAlive {
    stream: TcpStream,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        KeepAlive { stream }
    }

    /// Sends one request and returns the status and body.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes())?;
        self.stream.write_all(body)?;
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if self.stream.read(&mut byte)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let malformed = || std::io::Error::other(format!("malformed answer: {head}"));
        let status = head.split_whitespace().nth(1).ok_or_else(malformed)?;
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(Ok(0), |n| n.trim().parse().map_err(|_| malformed()))?;
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok((status.parse().map_err(|_| malformed())?, body))
    }
}

#[test]
fn few_descriptors_and_many_idle_sockets_leave_the_wal_healthy() {
    allow_descriptors(1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Proc::new(1, dir.path());
    let initial = format!("1={}", node.peer);
    // 256 descriptors, soft and hard, so the server cannot raise it; small
    // segments and frequent snapshots so that the writes below need new
    // files while idle sockets press on the limit.
    node.open_files_limit = Some(256);
    node.start(
        &initial,
        &[
            "--wal-segment-size-bytes",
            "65536",
            "--snapshot-count",
            "50",
        ],
    );
    wait_healthy(node.client);
    let mut writer = KeepAlive::connect(node.client);
    let mut request = |method: &str, path: &str, body: &[u8]| {
        writer
            .request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", node.log()))
    };
    assert_eq!(request("PUT", "/v1/kv/first", b"x").0, 200);

    // The idle sockets are opened while the writer keeps writing (a
    // writer idle for the header timeout would be closed, rightly).
    let client = node.client;
    let opener = thread::spawn(move || {
        (0..400)
            .map(|i| TcpStream::connect(client).unwrap_or_else(|e| panic!("idle {i}: {e}")))
            .collect::<Vec<TcpStream>>()
    });
    let value = vec![b'v'; 1024];
    for i in 0..300 {
        let (status, body) = request("PUT", &format!("/v1/kv/k{i}"), &value);
        assert_eq!(
            status,
            200,
            "put {i}: {}\n{}",
            String::from_utf8_lossy(&body),
            node.log()
        );
        if i == 100 {
            // The rest are written with every idle socket open.
            while !opener.is_finished() {
                assert_eq!(request("GET", "/v1/kv/first", b"").0, 200);
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let idle = opener.join().expect("opener thread");
    let (status, body) = request("GET", "/v1/status", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let status: serde_json::Value = serde_json::from_slice(&body).expect("status JSON");
    assert!(
        status["snapshot_index"].as_u64().unwrap_or(0) >= 250,
        "snapshots were taken under the limit: {status}"
    );
    assert!(node.running(), "node exited:\n{}", node.log());

    drop(idle);
    drop(writer);
    // New clients get in again once the idle sockets are gone.
    let deadline = Instant::now() + DEADLINE;
    loop {
        if http(node.client, "PUT", "/v1/kv/after", b"y").is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write after the idle sockets closed"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(node.running(), "node exited:\n{}", node.log());
}
