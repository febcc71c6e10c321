//! TLS for both ports, with rustls (ring provider; no OpenSSL).
//!
//! Owns: loading certificates, keys and trusted CAs from PEM files
//! ([`load`]), building the rustls configurations of the client port
//! ([`client_port_server_config`]) and of the peer port ([`PeerTls`] →
//! [`PeerTlsConfig`]: acceptor and connector), the identity rules
//! ([`identity`]: which member a peer certificate proves, which user a
//! client certificate names), the peer handshake helpers ([`peer`]) and
//! the development certificates of `ringraft certs` ([`dev_certs`]).
//!
//! # The member-id rule
//!
//! A peer certificate proves member `N` if and only if exactly one of its
//! subject alternative names is a URI of the form
//! `ringraft://member/<N>`, `N` in canonical decimal (no sign, no leading
//! zero, not 0); [`identity::member_uri`] writes it, and
//! [`identity::certificate_member_id`] is the one place that reads it. A
//! certificate with no such URI, a malformed one or several proves nothing.
//! The transport enforces it on both directions of every peer connection
//! (message and snapshot connections alike): the accepting side refuses a
//! connection whose preamble's sender is not the member its client
//! certificate proves, and the connecting side refuses a server whose
//! certificate does not prove the member it dialed. A node refuses to
//! start with a certificate that does not prove its own id.
//!
//! Guarantees: a [`TlsError`] names the file and what is wrong with it
//! (unreadable, not PEM, no certificate, no key, a key rustls cannot use or
//! that does not belong to the certificate, an empty or unusable CA file);
//! peer TLS always requires and verifies the other side's certificate
//! against the peer CA, in both directions, and checks the server's host
//! name against its peer URL; session resumption is off for peers, so every
//! connection presents and verifies full certificates. Nothing here panics
//! on file contents or peer data.
//!
//! May not touch: sockets beyond the handshake helpers in [`peer`] (the
//! transport and the HTTP server own their listeners and connections);
//! what the peer or client sends after the handshake.

pub mod dev_certs;
pub mod identity;
mod load;
pub mod peer;

pub use identity::{
    MEMBER_URI_PREFIX, PeerIdentityError, certificate_common_name, certificate_member_id,
    member_uri,
};
pub use peer::{PeerHandshakeError, PeerTlsConfig, peer_client_config, peer_server_config};

use std::path::PathBuf;
use std::sync::Arc;

/// ALPN protocol ids the client port offers: `h2` (gRPC clients insist on
/// it) and HTTP/1.1.
pub const CLIENT_PORT_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Why certificates, keys or CAs could not be loaded into a TLS
/// configuration. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{what} {path}: cannot be read: {source}")]
    Unreadable {
        /// Which file it is ("certificate file", "key file", "trusted CA file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{what} {path}: not valid PEM: {reason}")]
    BadPem {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` block (an empty CA file, or a key
    /// given as the certificate).
    #[error("{what} {path}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)")]
    NoCertificate {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("key file {path}: no private key in it (expected a PEM PKCS#8, PKCS#1 or SEC1 key)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind or shape rustls cannot sign with.
    #[error("key file {path}: unusable key: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("key file {key}: not the key of the certificate in {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The certificate does not parse as X.509.
    #[error("{what} {path}: certificate {index} is not usable: {reason}")]
    BadCertificate {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Which certificate of the file, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A node's own peer certificate does not prove its member id (see the
    /// member-id rule in the module docs).
    #[error("peer certificate file {path}: {reason}, but this node is member {node_id}")]
    NotThisMember {
        /// The certificate file.
        path: PathBuf,
        /// This node.
        node_id: u64,
        /// What the certificate proves instead.
        reason: PeerIdentityError,
    },
    /// `--client-cert-auth` without `--trusted-ca-file`.
    #[error(
        "--client-cert-auth needs --trusted-ca-file (the CA client certificates must chain to)"
    )]
    ClientCertAuthWithoutCa,
    /// rustls refused the assembled configuration.
    #[error("{what}: {reason}")]
    Config {
        /// Which configuration.
        what: &'static str,
        /// What rustls said.
        reason: String,
    },
}

/// A certificate, its key and optionally the CA to verify the other side
/// with: the client port's `--cert-file`, `--key-file`,
/// `--trusted-ca-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, end-entity certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of the end-entity certificate.
    pub key_file: PathBuf,
    /// PEM CA certificates the other side's certificate must chain to.
    pub trusted_ca_file: Option<PathBuf>,
}

/// TLS of the client port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The server's certificate and key, and the client CA.
    pub files: TlsFiles,
    /// `--client-cert-auth`: require a client certificate chaining to
    /// `files.trusted_ca_file` (which must then be given). Without it no
    /// client certificate is asked for.
    pub client_cert_auth: bool,
}

/// TLS of the peer port: `--peer-cert-file`, `--peer-key-file`,
/// `--peer-trusted-ca-file`. All three are required: peer TLS always
/// verifies the other side's certificate, in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// PEM certificate chain of this node; its end-entity certificate must
    /// prove this node's member id (module docs) and be valid for both
    /// server and client authentication.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
    /// PEM CA certificates every peer's certificate must chain to.
    pub trusted_ca_file: PathBuf,
}

impl PeerTls {
    /// Loads the files of member `node_id` into the acceptor and connector
    /// the transport uses; fails if the certificate does not prove
    /// `node_id`.
    pub fn load(&self, node_id: u64) -> Result<PeerTlsConfig, TlsError> {
        let key = load::certified_key(&self.cert_file, &self.key_file)?;
        let own = key
            .end_entity_cert()
            .map_err(|_| TlsError::NoCertificate {
                what: load::CERTIFICATE_FILE,
                path: self.cert_file.clone(),
            })
            .and_then(|cert| {
                identity::certificate_member_id(cert).map_err(|reason| TlsError::NotThisMember {
                    path: self.cert_file.clone(),
                    node_id,
                    reason,
                })
            })?;
        identity::check_claim(own, node_id).map_err(|reason| TlsError::NotThisMember {
            path: self.cert_file.clone(),
            node_id,
            reason,
        })?;
        let roots = load::roots(&self.trusted_ca_file)?;
        Ok(PeerTlsConfig::new(
            peer::server_config(Arc::clone(&roots), Arc::clone(&key))?,
            peer::client_config(roots, key)?,
        ))
    }
}

/// The rustls server configuration of the client port: this server's
/// certificate, ALPN [`CLIENT_PORT_ALPN`], and with
/// [`ClientTls::client_cert_auth`] a required client certificate verified
/// against the trusted CA.
pub fn client_port_server_config(tls: &ClientTls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let files = &tls.files;
    let key = load::certified_key(&files.cert_file, &files.key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(load::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("client port TLS", e))?;
    let builder = if tls.client_cert_auth {
        let ca = files
            .trusted_ca_file
            .as_ref()
            .ok_or(TlsError::ClientCertAuthWithoutCa)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            load::roots(ca)?,
            load::provider(),
        )
        .build()
        .map_err(|e| config_error("client port TLS", e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    config.alpn_protocols = CLIENT_PORT_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn config_error(what: &'static str, error: impl std::fmt::Display) -> TlsError {
    TlsError::Config {
        what,
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests;
