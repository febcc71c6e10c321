//! Development certificates (`ringraft certs`): a CA, node certificates
//! and client certificates in one directory, so that a TLS cluster on one
//! machine takes three commands. Not a PKI: use your own CA in production.
//!
//! Files (PEM), all in the directory:
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem`, `ca-key.pem` | the CA (ECDSA P-256), the trusted CA of both ports |
//! | `node-<id>.pem`, `node-<id>-key.pem` | member `<id>`: subject alternative names `ringraft://member/<id>` (the member-id rule), DNS `localhost`, IP `127.0.0.1` and `::1`, and every `--hosts` entry; usable for server and client authentication, so one file serves the peer port both ways and the client port |
//! | `client-<name>.pem`, `client-<name>-key.pem` | a client certificate whose common name is the user name `<name>` |
//!
//! Owns: generating and writing those files. Guarantees: a directory it
//! creates is mode 0700, keys are written 0600 (certificates 0644); no
//! existing file is overwritten unless asked, and a refused run writes
//! nothing; when `ca.pem` and `ca-key.pem` exist (and overwriting was not
//! asked) they sign the new certificates, so members added later get
//! certificates of the same CA. Certificates are valid from January 1st
//! of last year for ten years. May not touch: anything outside the
//! directory.

use super::identity::member_uri;
use super::{PeerTls, TlsFiles};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevCerts {
    /// Where the files go (created if missing).
    pub dir: PathBuf,
    /// Member ids to make node certificates for.
    pub nodes: Vec<u64>,
    /// Extra DNS names or IP addresses of every node certificate.
    pub hosts: Vec<String>,
    /// User names to make client certificates for.
    pub clients: Vec<String>,
    /// Replace existing files (including the CA) instead of refusing.
    pub overwrite: bool,
}

/// Why development certificates were not generated.
#[derive(Debug, thiserror::Error)]
pub enum DevCertsError {
    /// Reading, creating or writing a file or the directory failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists and overwriting was not asked.
    #[error("{0} exists (pass --force to replace it); nothing was written")]
    Exists(PathBuf),
    /// Only one of the CA's two files exists.
    #[error(
        "{present} exists but {missing} does not: cannot reuse the CA (pass --force to make a new one)"
    )]
    HalfCa {
        /// The CA file that exists.
        present: PathBuf,
        /// The one that does not.
        missing: PathBuf,
    },
    /// A requested name is unusable.
    #[error("{what} {value:?}: {reason}")]
    BadName {
        /// "node id", "host" or "client name".
        what: &'static str,
        /// As given.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// rcgen could not make or read a key or certificate.
    #[error("{what}: {source}")]
    Generate {
        /// Which key or certificate.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
}

/// The CA certificate in `dir`.
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// The CA key in `dir`.
pub fn ca_key_file(dir: &Path) -> PathBuf {
    dir.join("ca-key.pem")
}

/// Member `id`'s peer TLS files in `dir` (its certificate, key and the CA).
pub fn node_files(dir: &Path, id: u64) -> PeerTls {
    PeerTls {
        cert_file: dir.join(format!("node-{id}.pem")),
        key_file: dir.join(format!("node-{id}-key.pem")),
        trusted_ca_file: ca_file(dir),
    }
}

/// User `name`'s client certificate, key and the CA in `dir`.
pub fn client_files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert_file: dir.join(format!("client-{name}.pem")),
        key_file: dir.join(format!("client-{name}-key.pem")),
        trusted_ca_file: Some(ca_file(dir)),
    }
}

/// One certificate to issue and where it goes.
struct Leaf {
    what: String,
    params: CertificateParams,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// Generates what `request` asks for; returns the files written, in
/// order (the CA's first when it was made).
pub fn generate(request: &DevCerts) -> Result<Vec<PathBuf>, DevCertsError> {
    let dir = &request.dir;
    let leaves = leaves(request)?;
    let reuse_ca = !request.overwrite && ca_present(dir)?;
    if !request.overwrite {
        for leaf in &leaves {
            for path in [&leaf.cert_file, &leaf.key_file] {
                if exists(path)? {
                    return Err(DevCertsError::Exists(path.clone()));
                }
            }
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io_error(dir, "creating the directory", source))?;
    let mut written = Vec::new();
    let issuer = if reuse_ca {
        read_ca(dir)?
    } else {
        let (cert_pem, issuer) = new_ca()?;
        write_file(&ca_file(dir), &cert_pem, 0o644, request.overwrite)?;
        write_file(
            &ca_key_file(dir),
            &issuer.key().serialize_pem(),
            0o600,
            request.overwrite,
        )?;
        written.extend([ca_file(dir), ca_key_file(dir)]);
        issuer
    };
    for leaf in leaves {
        let key = KeyPair::generate().map_err(|source| generate_error(&leaf.what, source))?;
        let cert = leaf
            .params
            .signed_by(&key, &issuer)
            .map_err(|source| generate_error(&leaf.what, source))?;
        write_file(&leaf.cert_file, &cert.pem(), 0o644, request.overwrite)?;
        write_file(
            &leaf.key_file,
            &key.serialize_pem(),
            0o600,
            request.overwrite,
        )?;
        written.extend([leaf.cert_file, leaf.key_file]);
    }
    Ok(written)
}

fn io_error(path: &Path, what: &'static str, source: std::io::Error) -> DevCertsError {
    DevCertsError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

fn generate_error(what: &str, source: rcgen::Error) -> DevCertsError {
    DevCertsError::Generate {
        what: what.to_string(),
        source,
    }
}

fn exists(path: &Path) -> Result<bool, DevCertsError> {
    path.try_exists()
        .map_err(|source| io_error(path, "checking whether it exists", source))
}

/// Whether the CA's two files exist (an error if only one does).
fn ca_present(dir: &Path) -> Result<bool, DevCertsError> {
    let (cert, key) = (ca_file(dir), ca_key_file(dir));
    match (exists(&cert)?, exists(&key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(DevCertsError::HalfCa {
            present: cert,
            missing: key,
        }),
        (false, true) => Err(DevCertsError::HalfCa {
            present: key,
            missing: cert,
        }),
    }
}

fn read_text(path: &Path) -> Result<String, DevCertsError> {
    std::fs::read_to_string(path).map_err(|source| io_error(path, "reading", source))
}

fn read_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, DevCertsError> {
    let (cert, key) = (ca_file(dir), ca_key_file(dir));
    let key_pair = KeyPair::from_pem(&read_text(&key)?).map_err(|source| {
        generate_error(&format!("reading the CA key {}", key.display()), source)
    })?;
    Issuer::from_ca_cert_pem(&read_text(&cert)?, key_pair)
        .map_err(|source| generate_error(&format!("reading the CA {}", cert.display()), source))
}

/// Writes `contents` to a new file of `mode` (replacing an existing one
/// only if `overwrite`: removed first, so the mode applies).
fn write_file(
    path: &Path,
    contents: &str,
    mode: u32,
    overwrite: bool,
) -> Result<(), DevCertsError> {
    if overwrite {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(path, "removing the old file", error));
            }
            _ => {}
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => DevCertsError::Exists(path.to_path_buf()),
            _ => io_error(path, "creating", source),
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(path, "writing", source))
}

/// January 1st of last year, and ten years after it.
fn validity(params: &mut CertificateParams) {
    const SECONDS_PER_YEAR: u64 = 31_556_952;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let this_year = 1970 + i32::try_from(since_epoch / SECONDS_PER_YEAR).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(this_year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(this_year + 9, 1, 1);
}

fn named(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    validity(&mut params);
    params
}

fn new_ca() -> Result<(String, Issuer<'static, KeyPair>), DevCertsError> {
    let mut params = named("ringraft development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(|source| generate_error("the CA key", source))?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| generate_error("the CA certificate", source))?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn ia5(what: &'static str, value: &str) -> Result<Ia5String, DevCertsError> {
    Ia5String::try_from(value).map_err(|_| DevCertsError::BadName {
        what,
        value: value.to_string(),
        reason: "not ASCII",
    })
}

fn host_name(host: &str) -> Result<SanType, DevCertsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if rustls_pki_types::DnsName::try_from(host).is_err() {
        return Err(DevCertsError::BadName {
            what: "host",
            value: host.to_string(),
            reason: "neither an IP address nor a DNS name",
        });
    }
    Ok(SanType::DnsName(ia5("host", host)?))
}

fn check_client_name(name: &str) -> Result<(), DevCertsError> {
    let usable = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if usable {
        Ok(())
    } else {
        Err(DevCertsError::BadName {
            what: "client name",
            value: name.to_string(),
            reason: "use letters, digits, '.', '_' and '-' (not first '.')",
        })
    }
}

/// The node and client certificates `request` asks for.
fn leaves(request: &DevCerts) -> Result<Vec<Leaf>, DevCertsError> {
    let mut hosts = vec![
        SanType::DnsName(ia5("host", "localhost")?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for host in &request.hosts {
        let name = host_name(host)?;
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    let mut leaves = Vec::new();
    let mut nodes = request.nodes.clone();
    nodes.sort_unstable();
    nodes.dedup();
    for id in nodes {
        if id == 0 {
            return Err(DevCertsError::BadName {
                what: "node id",
                value: "0".into(),
                reason: "node id 0 is reserved",
            });
        }
        let mut params = named(&format!("ringraft member {id}"));
        params.subject_alt_names = vec![SanType::URI(ia5("node id", &member_uri(id))?)];
        params.subject_alt_names.extend(hosts.iter().cloned());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let files = node_files(&request.dir, id);
        leaves.push(leaf(
            format!("node {id}"),
            params,
            files.cert_file,
            files.key_file,
        ));
    }
    for name in &request.clients {
        check_client_name(name)?;
        let mut params = named(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let files = client_files(&request.dir, name);
        leaves.push(leaf(
            format!("client {name}"),
            params,
            files.cert_file,
            files.key_file,
        ));
    }
    Ok(leaves)
}

fn leaf(
    what: String,
    mut params: CertificateParams,
    cert_file: PathBuf,
    key_file: PathBuf,
) -> Leaf {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Leaf {
        what,
        params,
        cert_file,
        key_file,
    }
}
