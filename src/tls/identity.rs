//! What a verified certificate proves: the member id of a peer (the
//! member-id rule of the [module docs](super)), or the user name of a
//! client (the common name of its end-entity certificate, as etcd takes
//! it).
//!
//! Owns: the member URI's form, reading it, and the comparison of a proven
//! id with a claimed one. Guarantees: a certificate proves at most one
//! member; anything unexpected (no URI, a malformed one, several, a
//! certificate that does not parse) proves none. May not touch: chain
//! verification (rustls does it before these are asked).

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a member URI starts with; the decimal member id follows.
pub const MEMBER_URI_PREFIX: &str = "ringraft://member/";

/// Why a certificate does not prove the member a peer claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdentityError {
    /// The TLS session holds no certificate of the peer.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The end-entity certificate does not parse as X.509.
    #[error("the certificate does not parse: {0}")]
    Unparsable(String),
    /// No subject alternative name is a member URI.
    #[error("the certificate names no member (no URI SAN {MEMBER_URI_PREFIX}<id>)")]
    NoMember,
    /// A URI SAN starts like a member URI but its id is not canonical
    /// decimal, or is 0.
    #[error("the certificate has a malformed member URI {0:?}")]
    MalformedMemberUri(String),
    /// More than one member URI: the certificate would prove several ids.
    #[error("the certificate names several members {0:?}; a peer certificate must name one")]
    SeveralMembers(Vec<u64>),
    /// The certificate proves another member than the one claimed.
    #[error("the certificate proves member {proven}, the peer claims to be member {claimed}")]
    OtherMember {
        /// What the certificate proves.
        proven: u64,
        /// What the preamble says, or the member dialed.
        claimed: u64,
    },
}

/// The member URI naming `member_id`: `ringraft://member/<id>`.
pub fn member_uri(member_id: u64) -> String {
    format!("{MEMBER_URI_PREFIX}{member_id}")
}

fn parse<'a>(cert: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, PeerIdentityError> {
    X509Certificate::from_der(cert.as_ref())
        .map(|(_, parsed)| parsed)
        .map_err(|error| PeerIdentityError::Unparsable(error.to_string()))
}

/// The member id `cert` proves, per the member-id rule.
pub fn certificate_member_id(cert: &CertificateDer<'_>) -> Result<u64, PeerIdentityError> {
    let parsed = parse(cert)?;
    let names = parsed
        .subject_alternative_name()
        .map_err(|error| PeerIdentityError::Unparsable(error.to_string()))?;
    let mut members = Vec::new();
    for name in names.iter().flat_map(|ext| ext.value.general_names.iter()) {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(digits) = uri.strip_prefix(MEMBER_URI_PREFIX) else {
            continue;
        };
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        match digits.parse::<u64>() {
            Ok(id) if canonical => members.push(id),
            _ => return Err(PeerIdentityError::MalformedMemberUri(uri.to_string())),
        }
    }
    match members.as_slice() {
        [] => Err(PeerIdentityError::NoMember),
        [id] => Ok(*id),
        _ => Err(PeerIdentityError::SeveralMembers(members)),
    }
}

/// The one comparison of what a certificate proves with what the peer
/// claims (the preamble's sender, or the member dialed).
pub fn check_claim(proven: u64, claimed: u64) -> Result<(), PeerIdentityError> {
    if proven == claimed {
        Ok(())
    } else {
        Err(PeerIdentityError::OtherMember { proven, claimed })
    }
}

/// The first common name (CN) of `cert`'s subject: the user name a client
/// certificate authenticates, as etcd takes it. `None` when the
/// certificate does not parse or has no UTF-8 common name.
pub fn certificate_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = parse(cert).ok()?;
    let name = parsed.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_string)
}
