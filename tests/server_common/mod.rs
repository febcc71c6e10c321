//! Real `ringraft serve` processes on loopback for the server tests: start,
//! kill -9, restart, and a minimal HTTP/1.1 client over std sockets (one
//! request per connection), so that the tests exercise exactly what a user
//! starts from a shell.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_ringraft");
/// Raft tick of the test servers.
pub const TICK_MS: u64 = 50;
/// Election timeout in ticks (raft randomizes it in [T, 2T)).
pub const ELECTION_TICKS: u64 = 10;
pub const DEADLINE: Duration = Duration::from_secs(20);

// A copy per including module, on purpose: each picks from its own lane.
#[allow(clippy::duplicate_mod)]
#[path = "../ports/mod.rs"]
mod ports;

/// An unused loopback port, never handed out before by this module in this
/// test binary (`ports`: lane 0).
pub fn free_port() -> u16 {
    ports::free_port_in_lane(0)
}

/// One server process and where it listens.
pub struct Proc {
    pub id: u64,
    pub peer: SocketAddr,
    pub client: SocketAddr,
    pub dir: PathBuf,
    /// Where its stderr goes (appended across restarts).
    pub log_path: PathBuf,
    child: Option<Child>,
    /// The extra flags of the last start.
    extra: Vec<String>,
    /// Start under `prlimit --nofile=N:N` (soft and hard), so that the
    /// server cannot raise it.
    pub open_files_limit: Option<u64>,
}

impl Proc {
    /// Node `id` with its data in `<dir>/node<id>` and its log beside it.
    pub fn new(id: u64, dir: &Path) -> Proc {
        let data_dir = dir.join(format!("node{id}"));
        let log_path = data_dir.with_extension("log");
        Proc::with_paths(id, data_dir, log_path)
    }

    /// Node `id` with its data and its log where the caller says (e.g. the
    /// data on a small file system and the log elsewhere).
    pub fn with_paths(id: u64, data_dir: PathBuf, log_path: PathBuf) -> Proc {
        Proc {
            id,
            peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
            client: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: data_dir,
            log_path,
            child: None,
            extra: Vec::new(),
            open_files_limit: None,
        }
    }

    /// Starts the process with `--initial-cluster initial` and `extra`
    /// flags (which may set `--request-timeout-ms`); its log goes to
    /// `<dir>.log`.
    pub fn start(&mut self, initial: &str, extra: &[&str]) {
        assert!(self.child.is_none(), "node {} already runs", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        // 3 s unless `extra` says otherwise (the flag may appear once).
        let default_request_timeout: &[&str] = if extra.contains(&"--request-timeout-ms") {
            &[]
        } else {
            &["--request-timeout-ms", "3000"]
        };
        let mut command = match self.open_files_limit {
            Some(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={limit}:{limit}")).arg(BINARY);
                prlimit
            }
            None => Command::new(BINARY),
        };
        let child = command
            .arg("serve")
            .args(["--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-peer", &self.peer.to_string()])
            .args(["--listen-client", &self.client.to_string()])
            .args(["--initial-cluster", initial])
            .args(["--tick-ms", &TICK_MS.to_string()])
            .args(["--election-ticks", &ELECTION_TICKS.to_string()])
            .args(default_request_timeout)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ringraft serve");
        self.child = Some(child);
        self.extra = extra.iter().map(|flag| flag.to_string()).collect();
    }

    /// SIGKILL, as a power cut would stop it (the kernel keeps what was
    /// written; fsync decides nothing here, the crash tests of the disk do).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns its exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        // Killed at the deadline: the status of that kill.
        exit_within_deadline(&mut child).or_else(|| child.wait().ok())
    }

    /// Waits (up to [`DEADLINE`]) for the process to exit by itself; its
    /// exit status, or `None` if it was not running or had to be killed.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        exit_within_deadline(&mut child)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of server processes.
pub struct ProcCluster {
    pub root: tempfile::TempDir,
    pub procs: BTreeMap<u64, Proc>,
}

impl ProcCluster {
    /// Starts processes `ids` as one new cluster.
    pub fn start(ids: &[u64]) -> ProcCluster {
        ProcCluster::start_with(ids, &[])
    }

    /// Starts processes `ids` as one new cluster, each with `extra` flags
    /// (which [`ProcCluster::restart`] passes again).
    pub fn start_with(ids: &[u64], extra: &[&str]) -> ProcCluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut procs: BTreeMap<u64, Proc> = ids
            .iter()
            .map(|&id| (id, Proc::new(id, root.path())))
            .collect();
        let initial = initial_cluster(procs.values());
        for proc in procs.values_mut() {
            proc.start(&initial, extra);
        }
        ProcCluster { root, procs }
    }

    pub fn initial(&self) -> String {
        initial_cluster(self.procs.values())
    }

    pub fn proc(&self, id: u64) -> &Proc {
        &self.procs[&id]
    }

    /// Starts node `id` again with the flags of its last start.
    pub fn restart(&mut self, id: u64) {
        let initial = self.initial();
        let proc = self.procs.get_mut(&id).expect("known node");
        let extra = proc.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        proc.start(&initial, &extra);
    }

    /// The leader every running node agrees on.
    pub fn leader(&mut self) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(leader) = self.agreed_leader() {
                return leader;
            }
            assert!(Instant::now() < deadline, "no agreed leader");
            sleep(Duration::from_millis(20));
        }
    }

    /// The leader all running nodes report, if they agree and it runs.
    pub fn agreed_leader(&mut self) -> Option<u64> {
        let running: Vec<u64> = self
            .procs
            .iter_mut()
            .filter_map(|(&id, proc)| proc.running().then_some(id))
            .collect();
        let mut leaders = Vec::new();
        for &id in &running {
            leaders.push(status_leader(self.procs[&id].client)?);
        }
        let first = *leaders.first()?;
        (leaders.iter().all(|&l| l == first) && running.contains(&first)).then_some(first)
    }

    pub fn dump_logs(&self) -> String {
        self.procs
            .values()
            .map(|p| format!("--- node {} ---\n{}", p.id, p.log()))
            .collect()
    }
}

pub fn initial_cluster<'a>(procs: impl Iterator<Item = &'a Proc>) -> String {
    procs
        .map(|p| format!("{}={}", p.id, p.peer))
        .collect::<Vec<_>>()
        .join(",")
}

/// A node's `/v1/status` document, if it answers 200 with JSON.
pub fn status(client: SocketAddr) -> Option<serde_json::Value> {
    let response = http(client, "GET", "/v1/status", b"").ok()?;
    if response.status != 200 {
        return None;
    }
    serde_json::from_slice(&response.body).ok()
}

/// The leader a node reports in `/v1/status`.
pub fn status_leader(client: SocketAddr) -> Option<u64> {
    status(client)?.get("leader")?.as_u64()
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` of a JSON error body, or the body as text.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .map_or_else(|| self.text(), str::to_string)
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
    request(connect(addr)?, method, path, body)
}

/// A fresh connection to `addr`. Split from [`request`] so that a caller
/// can tell "nothing was sent" (this fails: connection refused) from "the
/// request may have arrived" ([`request`] fails).
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
}

/// One HTTP/1.1 request on `stream` (`Connection: close`): sends it and
/// reads the whole response.
pub fn request(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let addr = stream.peer_addr()?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    // A server refusing a large body may close before reading all of it.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let malformed = || std::io::Error::other("malformed HTTP response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(malformed)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// PUT until a 200 (retrying 503s, timeouts and refused connections while
/// the deadline allows); returns the raft index.
pub fn put_retrying(addrs: &[SocketAddr], key: &str, value: &[u8]) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    let mut turn = 0;
    loop {
        let addr = addrs[turn % addrs.len()];
        if let Ok(response) = http(addr, "PUT", &format!("/v1/kv/{key}"), value) {
            if response.status == 200 {
                return response.json()["index"].as_u64().unwrap_or(0);
            }
        }
        assert!(Instant::now() < deadline, "PUT {key} never succeeded");
        turn += 1;
        sleep(Duration::from_millis(50));
    }
}

/// Waits up to [`DEADLINE`] for `child` to exit by itself: its exit
/// status, or `None` if it was still running then (it is killed and
/// reaped).
pub fn exit_within_deadline(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Retries `attempt` every 100 ms until it returns `Some`; panics naming
/// `what` after [`DEADLINE`].
pub fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        sleep(Duration::from_millis(100));
    }
}

/// Waits until node `addr` answers `GET path` with a 200 whose body is
/// `expected` (serializable reads: the node's own state).
pub fn wait_value(addr: SocketAddr, key: &str, expected: &[u8]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let path = format!("/v1/kv/{key}?consistency=serializable");
        if let Ok(response) = http(addr, "GET", &path, b"") {
            if response.status == 200 && response.body == expected {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never served {key} = {expected:?}"
        );
        sleep(Duration::from_millis(50));
    }
}

/// Waits until `GET /health` on `addr` answers 200.
pub fn wait_healthy(addr: SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if http(addr, "GET", "/health", b"").is_ok_and(|r| r.status == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} never became healthy");
        sleep(Duration::from_millis(50));
    }
}
