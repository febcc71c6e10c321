//! Reading PEM files into what rustls takes, each failure a [`TlsError`]
//! naming the file.

use super::TlsError;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub(super) const CERTIFICATE_FILE: &str = "certificate file";
pub(super) const KEY_FILE: &str = "key file";
pub(super) const CA_FILE: &str = "trusted CA file";

/// The one crypto provider ringraft uses (ring), passed explicitly so no
/// process-wide default is needed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(what: &'static str, path: &Path, error: pem::Error) -> TlsError {
    TlsError::BadPem {
        what,
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Every certificate in the PEM file at `path`, in order; at least one.
pub(super) fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(KEY_FILE, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => bad_pem(KEY_FILE, path, other),
    })
}

/// The certificate chain at `cert` with the key at `key`, checked to
/// belong together.
pub(super) fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(CERTIFICATE_FILE, cert)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(private_key(key)?)
        .map_err(|error| TlsError::BadKey {
            path: key.to_path_buf(),
            reason: error.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; rustls accepts it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
        }),
        Err(other) => Err(TlsError::BadCertificate {
            what: CERTIFICATE_FILE,
            path: cert.to_path_buf(),
            index: 0,
            reason: other.to_string(),
        }),
    }
}

/// The CA certificates in the PEM file at `path`, each one usable as a
/// trust anchor.
pub(super) fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in certificates(CA_FILE, path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|error| TlsError::BadCertificate {
            what: CA_FILE,
            path: path.to_path_buf(),
            index,
            reason: error.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}
