//! Peer TLS: the acceptor and connector configurations, and the two
//! handshakes, each ending with the member-id rule's check.
//!
//! Owns: [`PeerTlsConfig`], building its rustls configurations, and
//! [`accept`] / [`connect`] (a TLS handshake over a stream the transport
//! opened, plus the identity check). Guarantees: both configurations
//! require the other side's certificate and verify it against the peer CA
//! (the server's also against the host of its peer URL); no session is
//! resumed, so every handshake verifies full certificates; a handshake
//! returns a stream only with the member proven. May not touch: opening,
//! timing or closing connections (the transport's), what flows after the
//! handshake.

use super::identity::{self, PeerIdentityError};
use super::{PeerTls, TlsError, config_error, load};
use rustls::RootCertStore;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::ServerName;
use std::fmt;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// The TLS configurations of a node's peer port: the acceptor for inbound
/// connections and the connector for outbound ones. Cheap to clone.
#[derive(Clone)]
pub struct PeerTlsConfig {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for PeerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTlsConfig").finish_non_exhaustive()
    }
}

impl PeerTlsConfig {
    /// From rustls configurations built elsewhere (an embedder's own
    /// certificate resolver or verifier). They should require and verify
    /// certificates both ways, as [`PeerTls::load`]'s do; the member-id
    /// check is applied to every connection regardless.
    pub fn new(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>) -> Self {
        PeerTlsConfig {
            acceptor: TlsAcceptor::from(server),
            connector: TlsConnector::from(client),
        }
    }
}

/// Why a peer TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerHandshakeError {
    /// The handshake itself failed: not TLS (plaintext), no certificate, a
    /// certificate of another CA, a wrong host name, the connection lost…
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    /// The host of the peer URL is neither a DNS name nor an IP address.
    #[error("peer host {0:?} is not a DNS name or an IP address")]
    ServerName(String),
    /// The certificate verified but does not prove the right member.
    #[error("peer identity: {0}")]
    Identity(#[from] PeerIdentityError),
}

/// The acceptor's configuration: our certificate, and a required client
/// certificate chaining to `roots`.
pub(super) fn server_config(
    roots: Arc<RootCertStore>,
    key: Arc<CertifiedKey>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let what = "peer TLS acceptor";
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, load::provider())
            .build()
            .map_err(|e| config_error(what, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(load::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(what, e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The connector's configuration: servers verified against `roots`, our
/// certificate presented as the client's.
pub(super) fn client_config(
    roots: Arc<RootCertStore>,
    key: Arc<CertifiedKey>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(load::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("peer TLS connector", e))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The acceptor's configuration from `tls`'s files (without checking which
/// member the certificate proves: [`PeerTls::load`] does).
pub fn peer_server_config(tls: &PeerTls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config(
        load::roots(&tls.trusted_ca_file)?,
        load::certified_key(&tls.cert_file, &tls.key_file)?,
    )
}

/// The connector's configuration from `tls`'s files (without checking
/// which member the certificate proves: [`PeerTls::load`] does).
pub fn peer_client_config(tls: &PeerTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config(
        load::roots(&tls.trusted_ca_file)?,
        load::certified_key(&tls.cert_file, &tls.key_file)?,
    )
}

/// The server name to verify a peer against: the host of its `host:port`
/// address (an IPv6 address without its brackets).
fn server_name(addr: &str) -> Result<ServerName<'static>, PeerHandshakeError> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string()).map_err(|_| PeerHandshakeError::ServerName(host.into()))
}

/// The member the verified end-entity certificate of a session proves.
fn proven_member(
    certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Result<u64, PeerIdentityError> {
    let cert = certs
        .and_then(<[_]>::first)
        .ok_or(PeerIdentityError::NoCertificate)?;
    identity::certificate_member_id(cert)
}

/// Accepts a TLS session on `stream`; returns it with the member the
/// peer's certificate proves (the caller checks it against the preamble
/// with [`identity::check_claim`]).
pub async fn accept<S>(
    config: &PeerTlsConfig,
    stream: S,
) -> Result<(server::TlsStream<S>, u64), PeerHandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = config
        .acceptor
        .accept(stream)
        .await
        .map_err(PeerHandshakeError::Handshake)?;
    let member = proven_member(session.get_ref().1.peer_certificates())?;
    Ok((session, member))
}

/// Opens a TLS session on `stream` to member `member` at `addr`
/// (`host:port`, the host verified against the server's certificate);
/// fails unless the server's certificate proves `member`.
pub async fn connect<S>(
    config: &PeerTlsConfig,
    stream: S,
    addr: &str,
    member: u64,
) -> Result<client::TlsStream<S>, PeerHandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = server_name(addr)?;
    let session = config
        .connector
        .connect(name, stream)
        .await
        .map_err(PeerHandshakeError::Handshake)?;
    let proven = proven_member(session.get_ref().1.peer_certificates())?;
    identity::check_claim(proven, member)?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host() {
        let name = |addr: &str| server_name(addr).map(|n| n.to_str().into_owned());
        assert_eq!(name("127.0.0.1:7380").ok(), Some("127.0.0.1".into()));
        assert_eq!(name("[::1]:7380").ok(), Some("::1".into()));
        assert_eq!(
            name("node-b.example:7380").ok(),
            Some("node-b.example".into())
        );
        assert!(matches!(
            name("bad_host!:7380"),
            Err(PeerHandshakeError::ServerName(host)) if host == "bad_host!"
        ));
    }
}
