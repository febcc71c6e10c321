//! Loading (every bad file named in its error), the identity rules on real
//! certificates, development certificates on disk, and the peer
//! handshakes over in-memory pipes.

use super::dev_certs::{self, DevCerts, DevCertsError};
use super::*;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn certs_in(dir: &Path, nodes: &[u64], clients: &[&str]) -> Vec<PathBuf> {
    dev_certs::generate(&DevCerts {
        dir: dir.to_path_buf(),
        nodes: nodes.to_vec(),
        hosts: vec!["node-a.example".into(), "10.1.2.3".into()],
        clients: clients.iter().map(|c| c.to_string()).collect(),
        overwrite: false,
    })
    .expect("development certificates")
}

fn first_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("a certificate")
}

/// A self-signed certificate with `uris` as URI SANs.
fn with_uris(uris: &[&str]) -> CertificateDer<'static> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().expect("ASCII")))
        .collect();
    let key = KeyPair::generate().expect("key");
    params.self_signed(&key).expect("certificate").der().clone()
}

#[test]
fn node_certificates_prove_their_member_and_clients_their_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs_in(dir.path(), &[1, 2], &["root"]);
    let node = first_cert(&dev_certs::node_files(dir.path(), 2).cert_file);
    assert_eq!(certificate_member_id(&node), Ok(2));
    assert_eq!(
        certificate_common_name(&node).as_deref(),
        Some("ringraft member 2")
    );
    let client = first_cert(&dev_certs::client_files(dir.path(), "root").cert_file);
    assert_eq!(certificate_common_name(&client).as_deref(), Some("root"));
    assert_eq!(
        certificate_member_id(&client),
        Err(PeerIdentityError::NoMember)
    );
    assert_eq!(member_uri(7), "ringraft://member/7");
}

#[test]
fn the_member_rule_refuses_anything_but_one_canonical_id() {
    assert_eq!(
        certificate_member_id(&with_uris(&["https://x.example/", "ringraft://member/42"])),
        Ok(42)
    );
    assert_eq!(
        certificate_member_id(&with_uris(&["ringraft://member/1", "ringraft://member/2"])),
        Err(PeerIdentityError::SeveralMembers(vec![1, 2]))
    );
    for bad in [
        "ringraft://member/02",
        "ringraft://member/0",
        "ringraft://member/",
        "ringraft://member/+3",
        "ringraft://member/3/x",
        "ringraft://member/99999999999999999999",
    ] {
        assert_eq!(
            certificate_member_id(&with_uris(&[bad])),
            Err(PeerIdentityError::MalformedMemberUri(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        certificate_member_id(&with_uris(&[])),
        Err(PeerIdentityError::NoMember)
    );
    assert!(matches!(
        certificate_member_id(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
        Err(PeerIdentityError::Unparsable(_))
    ));
    assert_eq!(
        certificate_common_name(&CertificateDer::from(vec![1, 2])),
        None
    );
    assert_eq!(
        identity::check_claim(2, 3),
        Err(PeerIdentityError::OtherMember {
            proven: 2,
            claimed: 3
        })
    );
}

#[test]
fn a_node_refuses_a_certificate_of_another_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs_in(dir.path(), &[2], &[]);
    let files = dev_certs::node_files(dir.path(), 2);
    assert!(files.load(2).is_ok());
    let refused = files
        .load(3)
        .expect_err("member 2's certificate for node 3");
    assert!(
        matches!(&refused, TlsError::NotThisMember { node_id: 3, reason: PeerIdentityError::OtherMember { proven: 2, claimed: 3 }, path } if *path == files.cert_file),
        "{refused}"
    );
    assert!(refused.to_string().contains("node-2.pem"), "{refused}");
}

/// Asserts `error` mentions `path` and matches `expected`.
fn names_file(error: TlsError, path: &Path, expected: fn(&TlsError) -> bool) {
    let text = error.to_string();
    assert!(expected(&error), "unexpected error: {text}");
    assert!(
        text.contains(&path.display().to_string()),
        "{text} does not name {}",
        path.display()
    );
}

#[test]
fn bad_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs_in(dir.path(), &[1, 2], &[]);
    let good = dev_certs::node_files(dir.path(), 1);
    let other = dev_certs::node_files(dir.path(), 2);
    let write = |name: &str, contents: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    };
    let empty = write("empty.pem", b"");
    let torn = write("torn.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n");
    let missing = dir.path().join("missing.pem");
    let with = |change: &dyn Fn(&mut PeerTls)| {
        let mut files = good.clone();
        change(&mut files);
        files.load(1).expect_err("refused")
    };

    names_file(with(&|f| f.cert_file = missing.clone()), &missing, |e| {
        matches!(
            e,
            TlsError::Unreadable {
                what: "certificate file",
                ..
            }
        )
    });
    names_file(
        with(&|f| f.cert_file = good.key_file.clone()),
        &good.key_file,
        |e| {
            matches!(
                e,
                TlsError::NoCertificate {
                    what: "certificate file",
                    ..
                }
            )
        },
    );
    names_file(with(&|f| f.cert_file = torn.clone()), &torn, |e| {
        matches!(e, TlsError::BadPem { .. })
    });
    names_file(
        with(&|f| f.key_file = good.cert_file.clone()),
        &good.cert_file,
        |e| matches!(e, TlsError::NoKey { .. }),
    );
    names_file(with(&|f| f.key_file = missing.clone()), &missing, |e| {
        matches!(
            e,
            TlsError::Unreadable {
                what: "key file",
                ..
            }
        )
    });
    names_file(
        with(&|f| f.key_file = other.key_file.clone()),
        &other.key_file,
        |e| matches!(e, TlsError::KeyMismatch { .. }),
    );
    names_file(with(&|f| f.trusted_ca_file = empty.clone()), &empty, |e| {
        matches!(
            e,
            TlsError::NoCertificate {
                what: "trusted CA file",
                ..
            }
        )
    });
    names_file(
        with(&|f| f.trusted_ca_file = missing.clone()),
        &missing,
        |e| {
            matches!(
                e,
                TlsError::Unreadable {
                    what: "trusted CA file",
                    ..
                }
            )
        },
    );
    // A key rustls cannot sign with: a PKCS#8 block of garbage.
    let garbage_key = write(
        "garbage-key.pem",
        b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n",
    );
    names_file(
        with(&|f| f.key_file = garbage_key.clone()),
        &garbage_key,
        |e| matches!(e, TlsError::BadKey { .. }),
    );
}

/// A client config trusting the CA in `dir`, presenting `client` (user
/// name) if given.
fn http_client(dir: &Path, client: Option<&str>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(load::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(load::roots(&dev_certs::ca_file(dir)).expect("roots"));
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let files = dev_certs::client_files(dir, name);
            let key = load::certified_key(&files.cert_file, &files.key_file).expect("client key");
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Handshakes `client` with `server` in memory; returns the server's view:
/// the ALPN protocol chosen and the client's user name, or why it failed.
async fn serve_once(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
) -> Result<(Option<Vec<u8>>, Option<String>), std::io::Error> {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let connect = tokio_rustls::TlsConnector::from(client).connect(name, near);
    let accept = tokio_rustls::TlsAcceptor::from(server).accept(far);
    let (_client, accepted) = tokio::join!(connect, accept);
    let session = accepted?;
    let connection = session.get_ref().1;
    let user = connection
        .peer_certificates()
        .and_then(<[_]>::first)
        .and_then(certificate_common_name);
    Ok((connection.alpn_protocol().map(<[u8]>::to_vec), user))
}

#[tokio::test]
async fn the_client_port_asks_for_client_certificates_only_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs_in(dir.path(), &[1], &["reader"]);
    let node = dev_certs::node_files(dir.path(), 1);
    let mut tls = ClientTls {
        files: TlsFiles {
            cert_file: node.cert_file.clone(),
            key_file: node.key_file.clone(),
            trusted_ca_file: None,
        },
        client_cert_auth: false,
    };
    let open = client_port_server_config(&tls).expect("server only");
    let served = serve_once(http_client(dir.path(), None), Arc::clone(&open)).await;
    assert_eq!(
        served.ok(),
        Some((Some(b"h2".to_vec()), None)),
        "an anonymous client offering h2 and HTTP/1.1 gets h2 (gRPC needs it)"
    );
    tls.client_cert_auth = true;
    assert!(matches!(
        client_port_server_config(&tls),
        Err(TlsError::ClientCertAuthWithoutCa)
    ));
    tls.files.trusted_ca_file = Some(node.trusted_ca_file.clone());
    let strict = client_port_server_config(&tls).expect("with client auth");
    let served = serve_once(http_client(dir.path(), Some("reader")), Arc::clone(&strict)).await;
    assert_eq!(
        served.ok(),
        Some((Some(b"h2".to_vec()), Some("reader".to_string())))
    );
    let refused = serve_once(http_client(dir.path(), None), strict).await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn development_certificates_keep_keys_private_and_never_overwrite_by_default() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("certs");
    let written = certs_in(&dir, &[1, 2, 3], &["root", "reader"]);
    assert_eq!(written.len(), 2 + 2 * 5);
    assert_eq!(mode(&dir), 0o700);
    for path in &written {
        let expected = if path.to_string_lossy().ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(path), expected, "{}", path.display());
    }
    let ca_before = std::fs::read(dev_certs::ca_file(&dir)).expect("CA");

    let again = dev_certs::generate(&DevCerts {
        dir: dir.clone(),
        nodes: vec![4, 3],
        ..DevCerts::default()
    });
    assert!(
        matches!(&again, Err(DevCertsError::Exists(path)) if path.ends_with("node-3.pem")),
        "{again:?}"
    );
    assert!(
        !dev_certs::node_files(&dir, 4).cert_file.exists(),
        "a refused run wrote"
    );

    // A later member gets a certificate of the same CA.
    let added = dev_certs::generate(&DevCerts {
        dir: dir.clone(),
        nodes: vec![4],
        ..DevCerts::default()
    })
    .expect("member 4 added");
    assert_eq!(added.len(), 2);
    assert_eq!(
        std::fs::read(dev_certs::ca_file(&dir)).expect("CA"),
        ca_before
    );
    assert!(dev_certs::node_files(&dir, 4).load(4).is_ok());

    let forced = dev_certs::generate(&DevCerts {
        dir: dir.clone(),
        nodes: vec![1],
        overwrite: true,
        ..DevCerts::default()
    })
    .expect("forced");
    assert_eq!(forced.len(), 4);
    assert_ne!(
        std::fs::read(dev_certs::ca_file(&dir)).expect("CA"),
        ca_before
    );
    assert_eq!(mode(&dev_certs::ca_key_file(&dir)), 0o600);

    for (nodes, hosts, clients) in [
        (vec![0], vec![], vec![]),
        (vec![1], vec!["not a host".to_string()], vec![]),
        (vec![], vec![], vec!["../escape".to_string()]),
    ] {
        let refused = dev_certs::generate(&DevCerts {
            dir: root.path().join("other"),
            nodes,
            hosts,
            clients,
            overwrite: false,
        });
        assert!(
            matches!(refused, Err(DevCertsError::BadName { .. })),
            "{refused:?}"
        );
    }
}

type Duplex = tokio::io::DuplexStream;

/// A TLS handshake between `client_tls` dialing member `dialed` and
/// `server_tls`; returns both sides' outcomes.
async fn handshake(
    client_tls: &PeerTlsConfig,
    server_tls: &PeerTlsConfig,
    dialed: u64,
) -> (
    Result<tokio_rustls::client::TlsStream<Duplex>, PeerHandshakeError>,
    Result<u64, PeerHandshakeError>,
) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let server = async {
        let accepted = peer::accept(server_tls, far).await;
        accepted.map(|(mut session, member)| {
            // Hold the session open until the client side is done.
            let _ = &mut session;
            member
        })
    };
    tokio::join!(
        peer::connect(client_tls, near, "127.0.0.1:7380", dialed),
        server
    )
}

#[tokio::test]
async fn peers_prove_their_member_in_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs_in(dir.path(), &[1, 2], &[]);
    let one = dev_certs::node_files(dir.path(), 1).load(1).expect("1");
    let two = dev_certs::node_files(dir.path(), 2).load(2).expect("2");
    let (client, server) = handshake(&one, &two, 2).await;
    assert!(client.is_ok(), "{:?}", client.err());
    assert_eq!(server.ok(), Some(1), "the acceptor learns the member");

    // Dialing member 3 at an address where member 2 answers.
    let (client, _) = handshake(&one, &two, 3).await;
    assert!(
        matches!(
            client,
            Err(PeerHandshakeError::Identity(
                PeerIdentityError::OtherMember {
                    proven: 2,
                    claimed: 3
                }
            ))
        ),
        "{:?}",
        client.err()
    );
}

#[tokio::test]
async fn a_certificate_of_another_ca_or_none_is_refused() {
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    certs_in(ours.path(), &[1, 2], &[]);
    certs_in(theirs.path(), &[1], &[]);
    let two = dev_certs::node_files(ours.path(), 2).load(2).expect("2");
    let stranger = dev_certs::node_files(theirs.path(), 1).load(1).expect("1");
    let (_, server) = handshake(&stranger, &two, 2).await;
    assert!(
        matches!(server, Err(PeerHandshakeError::Handshake(_))),
        "another CA's client certificate accepted: {:?}",
        server.ok()
    );
    // The stranger does not trust our server either.
    let (client, _) = handshake(&stranger, &two, 2).await;
    assert!(matches!(client, Err(PeerHandshakeError::Handshake(_))));

    // A client without any certificate.
    let files = dev_certs::node_files(ours.path(), 1);
    let roots = load::roots(&files.trusted_ca_file).expect("roots");
    let anonymous = rustls::ClientConfig::builder_with_provider(load::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let anonymous = PeerTlsConfig::new(
        peer_server_config(&files).expect("server"),
        Arc::new(anonymous),
    );
    let (_, server) = handshake(&anonymous, &two, 2).await;
    assert!(
        matches!(server, Err(PeerHandshakeError::Handshake(_))),
        "a client without a certificate accepted: {:?}",
        server.ok()
    );
}
