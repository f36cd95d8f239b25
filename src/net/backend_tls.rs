//! TLS from keygate to its shared backends (PostgreSQL, Redis) with rustls:
//! trust roots from a PEM file or the system store, and the certificate checks
//! behind libpq's `sslmode` values.
//!
//! | check | verifier |
//! |---|---|
//! | encrypt only (`sslmode=prefer|require`, libpq's meaning) | [`EncryptOnly`]: any certificate, handshake signatures still checked |
//! | chain to a trusted root, any name (`verify-ca`) | [`ChainOnly`] |
//! | chain and host name (`verify-full`, `rediss://`) | rustls' `WebPkiServerVerifier` |

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::Path;
use std::sync::Arc;

/// The crypto provider of every backend TLS connection (ring, the one rustls is
/// built with here).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file; the error names it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificates in `pem`, read from `path`; an error names the file and what
/// is wrong.
pub fn certificates_in(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The first private key in `pem`, read from `path`.
pub fn private_key_in(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", path.display()))
}

/// Reads the certificates of a PEM file; an error names the file and what is wrong.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certificates_in(&read_file(path)?, path)
}

/// Reads the first private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    private_key_in(&read_file(path)?, path)
}

/// Where trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's store (`/etc/ssl/certs` on Debian).
    System,
    /// The certificates of a PEM file.
    File(std::path::PathBuf),
}

impl Roots {
    /// Loads the roots into a store; an error says which file or store failed.
    pub fn load(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match self {
            Roots::File(path) => {
                for cert in read_certificates(path)? {
                    store.add(cert).map_err(|e| {
                        format!("{}: unusable root certificate: {e}", path.display())
                    })?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(match found.errors.first() {
                        Some(e) => format!("no system root certificates: {e}"),
                        None => "no system root certificates (install ca-certificates)".into(),
                    });
                }
            }
        }
        Ok(store)
    }
}

/// How much of the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, accept any certificate (libpq's `prefer` and `require` without a
    /// root file): protects against passive listeners only.
    EncryptOnly,
    /// The chain must lead to one of the roots; the name is not checked.
    ChainOnly(Roots),
    /// The chain must lead to one of the roots and name the host.
    Full(Roots),
}

/// A client certificate and its key, for servers that ask for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

/// Builds a rustls client configuration; every error names the file at fault.
pub fn client_config(verify: &Verify, client: Option<&ClientCert>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match verify {
        Verify::Full(roots) => builder.with_root_certificates(roots.load()?),
        Verify::ChainOnly(roots) => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots.load()?), provider)
                    .build()
                    .map_err(|e| format!("TLS roots: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
        }
        Verify::EncryptOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider })),
    };
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some(c) => builder
            .with_client_auth_cert(read_certificates(&c.cert)?, read_private_key(&c.key)?)
            .map_err(|e| format!("{} and {}: {e}", c.cert.display(), c.key.display())),
    }
}

/// Accepts any certificate; still checks that the server holds its key.
#[derive(Debug)]
pub struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks the chain like rustls does, then ignores a name mismatch. rustls checks
/// the chain before the name, so a name error means the chain was good.
#[derive(Debug)]
pub struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_certificates_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        assert!(read_certificates(&missing)
            .unwrap_err()
            .contains("nope.pem"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        assert!(read_certificates(&empty)
            .unwrap_err()
            .contains("holds no PEM certificate"));
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert_eq!(read_certificates(&good).unwrap().len(), 1);
        assert_eq!(Roots::File(good).load().unwrap().len(), 1);
    }

    #[test]
    fn every_mode_builds_a_config() {
        for verify in [
            Verify::EncryptOnly,
            Verify::ChainOnly(Roots::System),
            Verify::Full(Roots::System),
        ] {
            client_config(&verify, None).unwrap();
        }
    }
}
