//! TLS termination on `server.listen`: a certificate that can be swapped while
//! serving (SIGHUP), so rotating a certificate never needs a restart. Handshakes
//! already under way keep the certificate they started with.

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("TLS certificate {cert} / key {key}: {reason}")]
pub struct TlsError {
    cert: String,
    key: String,
    reason: String,
}

/// The listener's current certificate and where it is read from.
#[derive(Debug)]
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let fail = |reason: String| TlsError {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason,
    };
    pingora::tls::install_default_crypto_provider();
    let (certs, private) = pingora::tls::load_certs_and_key_files(
        &cert.display().to_string(),
        &key.display().to_string(),
    )
    .map_err(|e| fail(e.to_string()))?
    .ok_or_else(|| fail("no certificate or no private key in the files".into()))?;
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| fail("no TLS crypto provider installed".into()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| fail(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| fail(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

impl ReloadableCert {
    /// Loads the certificate chain and key (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(ReloadableCert {
            current: ArcSwap::from_pointee(load(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Re-reads the files (after a rotation); on failure the old certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(load(&self.cert, &self.key)?));
        Ok(())
    }

    /// Serves `other`'s certificate from now on (a reload compiled it from the same
    /// files); the files this one reads from stay.
    pub fn adopt(&self, other: &ReloadableCert) {
        self.current.store(other.current.load_full());
    }

    /// True when `cert` and `key` are the files this certificate is read from.
    pub fn reads(&self, cert: &Path, key: &Path) -> bool {
        self.cert == cert && self.key == key
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Pingora listener settings serving `cert`.
#[allow(clippy::expect_used)] // no certificate files are read: nothing can fail
pub fn settings(cert: Arc<ReloadableCert>) -> pingora::listeners::tls::TlsSettings {
    let mut s = pingora::listeners::tls::TlsSettings::intermediate("", "")
        .expect("building empty TLS settings cannot fail");
    s.set_cert_resolver(cert);
    // HTTP/2 and HTTP/1.1 by ALPN (docs/configuration.md, HTTP/2 and gRPC), h2 preferred.
    s.enable_h2();
    s
}
