//! Three `ringraft serve` processes with peer mutual TLS and client TLS
//! with client certificate authentication, certificates from `ringraft
//! certs`: writes replicate; refused are a client without a certificate,
//! a client certificate of another CA, plaintext HTTP on the TLS client
//! port, a peer without a certificate, a plaintext peer, and a peer
//! certificate claiming another member id; a reader identity gets 403 on a
//! write and on a membership change, naming the permission it lacks.
//!
//! The HTTPS client is rustls over a blocking socket, so nothing outside
//! the project (curl) is needed.

mod server_common;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use server_common::{BINARY, Proc, eventually, initial_cluster};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// `ringraft certs` into `dir`.
fn certs(dir: &Path, nodes: &str, clients: &str) {
    let status = Command::new(BINARY)
        .args(["certs", "--dir"])
        .arg(dir)
        .args(["--nodes", nodes, "--clients", clients])
        .status()
        .expect("ringraft certs runs");
    assert!(status.success(), "ringraft certs failed");
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The serve flags of member `id` with every TLS option, certificates in
/// `dir` (the peer certificate may be another member's).
fn tls_flags(dir: &Path, peer_cert_of: u64) -> Vec<String> {
    [
        ("--peer-cert-file", format!("node-{peer_cert_of}.pem")),
        ("--peer-key-file", format!("node-{peer_cert_of}-key.pem")),
        ("--peer-trusted-ca-file", "ca.pem".to_string()),
        ("--cert-file", format!("node-{peer_cert_of}.pem")),
        ("--key-file", format!("node-{peer_cert_of}-key.pem")),
        ("--trusted-ca-file", "ca.pem".to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, file)| [flag.to_string(), path(dir, &file)])
    .chain(
        [
            "--client-cert-auth",
            "--client-permission",
            "root=admin,writer=write,reader=read",
        ]
        .map(String::from),
    )
    .collect()
}

fn start(proc: &mut Proc, initial: &str, flags: &[String]) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    proc.start(initial, &flags);
}

/// A TLS client trusting `ca`, presenting `identity` (certificate, key)
/// if given.
fn client_config(ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("CA added");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
                .expect("certificate file")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificates");
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
    };
    Arc::new(config)
}

fn user(dir: &Path, name: &str) -> Arc<ClientConfig> {
    client_config(
        &dir.join("ca.pem"),
        Some((
            dir.join(format!("client-{name}.pem")),
            dir.join(format!("client-{name}-key.pem")),
        )),
    )
}

/// One HTTPS request; `Err` when the TLS session or the connection fails
/// (a refused certificate shows here).
fn https(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let session = ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(session, socket);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // Servers often close without close_notify after Connection: close.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(error) => return Err(error),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    Ok((status, body))
}

/// A write through any node that succeeds (followers forward).
fn put(config: &Arc<ClientConfig>, addrs: &[SocketAddr], key: &str, value: &str) {
    eventually(&format!("put {key}"), || {
        addrs.iter().find_map(|&addr| {
            let path = format!("/v1/kv/{key}");
            match https(config, addr, "PUT", &path, value.as_bytes()) {
                Ok((200, _)) => Some(()),
                _ => None,
            }
        })
    });
}

fn value_on(config: &Arc<ClientConfig>, addr: SocketAddr, key: &str) -> Option<String> {
    let path = format!("/v1/kv/{key}?consistency=serializable");
    match https(config, addr, "GET", &path, b"") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

#[test]
fn a_tls_cluster_replicates_and_refuses_whoever_may_not() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs_dir = root.path().join("certs");
    certs(&certs_dir, "1,2,3,4", "root,writer,reader");
    let other_ca = root.path().join("other-ca");
    certs(&other_ca, "2", "root");

    let mut procs: Vec<Proc> = (1..=3).map(|id| Proc::new(id, root.path())).collect();
    let initial = initial_cluster(procs.iter());
    for proc in &mut procs {
        let flags = tls_flags(&certs_dir, proc.id);
        start(proc, &initial, &flags);
    }
    let clients: Vec<SocketAddr> = procs.iter().map(|p| p.client).collect();
    let root_user = user(&certs_dir, "root");
    let writer = user(&certs_dir, "writer");
    let reader = user(&certs_dir, "reader");

    // Writes replicate to every member over mutual TLS.
    put(&writer, &clients, "tls-key", "over-tls");
    for &addr in &clients {
        let value = eventually("replicated", || value_on(&reader, addr, "tls-key"));
        assert_eq!(value, "over-tls");
    }

    // The client port refuses whoever has no certificate of our CA.
    let no_cert = client_config(&certs_dir.join("ca.pem"), None);
    assert!(https(&no_cert, clients[0], "GET", "/v1/kv/tls-key", b"").is_err());
    let foreign = client_config(
        &certs_dir.join("ca.pem"),
        Some((
            other_ca.join("client-root.pem"),
            other_ca.join("client-root-key.pem"),
        )),
    );
    assert!(https(&foreign, clients[0], "GET", "/v1/kv/tls-key", b"").is_err());
    let plaintext = server_common::http(clients[0], "GET", "/v1/kv/tls-key", b"");
    assert!(
        !matches!(&plaintext, Ok(response) if response.status == 200),
        "plaintext HTTP was served on the TLS port"
    );

    // A reader may read but not write nor change membership; a writer may
    // write but not change membership.
    let (status, body) = https(&reader, clients[1], "PUT", "/v1/kv/x", b"v").expect("answered");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("write"),
        "the refusal names the permission: {body}"
    );
    let member = br#"{"id":9,"peer_url":"127.0.0.1:1","learner":true}"#;
    let (status, body) = https(&reader, clients[1], "POST", "/v1/members", member).expect("ok");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin"), "{body}");
    let (status, _) = https(&writer, clients[1], "POST", "/v1/members", member).expect("ok");
    assert_eq!(status, 403);
    let (status, body) =
        https(&reader, clients[2], "GET", "/v1/kv/tls-key", b"").expect("answered");
    assert_eq!((status, body.as_str()), (200, "over-tls"));

    // Peers: member 4 presenting member 2's certificate, member 4 of
    // another CA, and a plaintext member 4 never take part. They are told
    // the cluster is {1, 2, 3, 4}; the cluster knows no 4, so in any case
    // nothing they send is accepted — what matters is that none of them
    // even completes a connection and the cluster keeps serving.
    let mut impostor = Proc::new(4, root.path());
    let mut members: Vec<&Proc> = procs.iter().collect();
    members.push(&impostor);
    let with_four = initial_cluster(members.into_iter());
    let flags = strip_client_flags(tls_flags(&certs_dir, 2));
    start(&mut impostor, &with_four, &flags);
    std::thread::sleep(Duration::from_secs(2));
    impostor.kill();
    let log = impostor.log();
    assert!(
        log.contains("member 2") && log.contains("this node is member 4"),
        "member 4 with member 2's certificate must refuse to start:\n{log}"
    );

    let refused_before = procs[0].log().matches("refusing connection").count();
    let mut stranger = Proc::new(5, root.path());
    let stranger_flags = vec![
        "--peer-cert-file".to_string(),
        path(&other_ca, "node-2.pem"),
        "--peer-key-file".to_string(),
        path(&other_ca, "node-2-key.pem"),
        "--peer-trusted-ca-file".to_string(),
        path(&other_ca, "ca.pem"),
    ];
    // Node 2 of another CA, in node 2's place: the members refuse it.
    stranger.id = 2;
    let mut with_stranger: Vec<&Proc> = vec![&procs[0], &stranger, &procs[2]];
    with_stranger.sort_by_key(|p| p.id);
    let stranger_initial = initial_cluster(with_stranger.into_iter());
    start(&mut stranger, &stranger_initial, &stranger_flags);
    let mut plain = Proc::new(3, root.path());
    plain.dir = root.path().join("plain3");
    let plain_initial = format!("1={},3={}", procs[0].peer, plain.peer);
    start(&mut plain, &plain_initial, &[]);
    // Both dial node 1 (which they believe a member) for a while.
    std::thread::sleep(Duration::from_secs(3));
    let node1_log = procs[0].log();
    let refused = node1_log.matches("refusing connection").count() - refused_before;
    assert!(
        refused >= 2 && node1_log.contains("peer TLS: TLS handshake"),
        "node 1 refused {refused} peer connections of the intruders, not all in the \
         TLS handshake:\n{node1_log}"
    );
    stranger.kill();
    plain.kill();
    for line in node1_log.lines().filter(|l| l.contains("peer connected")) {
        // Only members 2 and 3 of our CA are ever connected peers.
        assert!(
            line.contains("peer=0x2") || line.contains("peer=0x3"),
            "unexpected peer connection: {line}"
        );
    }
    // The cluster still takes writes.
    put(&root_user, &clients, "after", "still-serving");
    for &addr in &clients {
        let value = eventually("replicated", || value_on(&reader, addr, "after"));
        assert_eq!(value, "still-serving");
    }
}

/// Keeps only the peer TLS flags of `flags`.
fn strip_client_flags(flags: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut iter = flags.into_iter();
    while let Some(flag) = iter.next() {
        if flag.starts_with("--peer-") {
            kept.push(flag);
            if let Some(value) = iter.next() {
                kept.push(value);
            }
        } else if flag == "--cert-file"
            || flag == "--key-file"
            || flag == "--trusted-ca-file"
            || flag == "--client-permission"
        {
            iter.next();
        }
    }
    kept
}
