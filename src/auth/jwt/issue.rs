//! Issuing access tokens (`jwt.issue`) for the management API's token endpoint,
//! and the matching verification key so keygate's own verifier accepts them.

use super::keys::{parse_algorithm, VerifyKey};
use super::JwtSetupError;
use crate::config::JwtIssueConfig;
use aws_lc_rs::signature::{self, KeyPair};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header};
use serde_json::json;
use std::time::Duration;

/// Signs access tokens.
pub struct TokenIssuer {
    header: Header,
    key: EncodingKey,
    verify_key: VerifyKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
    issuer: Option<String>,
    audience: Option<String>,
}

fn setup(msg: impl Into<String>) -> JwtSetupError {
    JwtSetupError(format!("issue: {}", msg.into()))
}

/// The public half of a private key PEM, as jsonwebtoken verifies it.
fn public_key(alg: Algorithm, pem_bytes: &[u8]) -> Result<DecodingKey, JwtSetupError> {
    let parsed = pem::parse(pem_bytes).map_err(|e| setup(format!("private key PEM: {e}")))?;
    let der = parsed.contents();
    let pkcs8 = parsed.tag() == "PRIVATE KEY";
    match alg.family() {
        AlgorithmFamily::Rsa => {
            let pair = if pkcs8 {
                signature::RsaKeyPair::from_pkcs8(der)
            } else {
                signature::RsaKeyPair::from_der(der)
            }
            .map_err(|e| setup(format!("RSA private key: {e}")))?;
            Ok(DecodingKey::from_rsa_der(pair.public_key().as_ref()))
        }
        AlgorithmFamily::Ec => {
            let curve = if alg == Algorithm::ES256 {
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = if pkcs8 {
                signature::EcdsaKeyPair::from_pkcs8(curve, der)
            } else {
                signature::EcdsaKeyPair::from_private_key_der(curve, der)
            }
            .map_err(|e| setup(format!("EC private key: {e}")))?;
            Ok(DecodingKey::from_ec_der(pair.public_key().as_ref()))
        }
        AlgorithmFamily::Ed => {
            let pair = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| setup(format!("Ed25519 private key: {e}")))?;
            Ok(DecodingKey::from_ed_der(pair.public_key().as_ref()))
        }
        AlgorithmFamily::Hmac => Err(setup("HS* algorithms take a secret")),
    }
}

/// Writes a new private key for `alg` to `path` (PKCS#8 PEM, mode 0600, parent
/// directories made): written to a temporary file, then linked into place, so two
/// processes starting at once end up with one key (the second keeps the first's).
fn create_key_file(alg: Algorithm, path: &std::path::Path) -> Result<(), JwtSetupError> {
    let fail =
        |e: &dyn std::fmt::Display| setup(format!("{}: cannot create it: {e}", path.display()));
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = match alg {
        Algorithm::ES256 => signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        ),
        Algorithm::ES384 => signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &rng,
        ),
        Algorithm::EdDSA => signature::Ed25519KeyPair::generate_pkcs8(&rng),
        _ => return Err(setup("generate_missing makes ES256, ES384 or EdDSA keys")),
    }
    .map_err(|e| fail(&e))?;
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| fail(&e))?;
        f.write_all(text.as_bytes()).map_err(|e| fail(&e))?;
        f.sync_all().map_err(|e| fail(&e))?;
    }
    // `hard_link` fails if the key appeared meanwhile: that one is kept.
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a signing key for jwt.issue");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(&e)),
    }
}

impl TokenIssuer {
    /// Loads the signing key; `issuer`/`audience` go into every token so that
    /// keygate's own `jwt.issuer`/`jwt.audience` checks accept them.
    pub fn new(
        c: &JwtIssueConfig,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, JwtSetupError> {
        let alg =
            parse_algorithm(&c.alg).ok_or_else(|| setup(format!("unknown algorithm {}", c.alg)))?;
        let (key, decoding) = if alg.family() == AlgorithmFamily::Hmac {
            let secret = c
                .secret
                .as_deref()
                .ok_or_else(|| setup("HS* algorithms need a secret"))?;
            if secret.len() < 32 {
                return Err(setup("the secret must be at least 32 bytes"));
            }
            (
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
            )
        } else {
            let path = c
                .private_key_file
                .as_ref()
                .ok_or_else(|| setup("asymmetric algorithms need private_key_file"))?;
            if c.generate_missing && !path.exists() {
                create_key_file(alg, path)?;
            }
            let pem_bytes =
                std::fs::read(path).map_err(|e| setup(format!("{}: {e}", path.display())))?;
            let encoding = match alg.family() {
                AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem_bytes),
                AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem_bytes),
                _ => EncodingKey::from_ed_pem(&pem_bytes),
            }
            .map_err(|e| setup(format!("{}: {e}", path.display())))?;
            (encoding, public_key(alg, &pem_bytes)?)
        };
        let mut header = Header::new(alg);
        header.kid = c.kid.clone();
        Ok(TokenIssuer {
            header,
            key,
            verify_key: VerifyKey {
                kid: c.kid.clone(),
                algorithms: vec![alg],
                key: decoding,
            },
            access_ttl: c.access_ttl.get(),
            refresh_ttl: c.refresh_ttl.get(),
            issuer,
            audience,
        })
    }

    /// The key that verifies issued tokens.
    pub fn verify_key(&self) -> VerifyKey {
        self.verify_key.clone()
    }

    /// Refresh-token inactivity lifetime.
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// A signed access token for `subject`, issued at `now` (Unix seconds), and its
    /// lifetime in seconds.
    pub fn access_token(
        &self,
        subject: &str,
        email: &str,
        admin: bool,
        now: u64,
    ) -> Result<(String, u64), String> {
        let ttl = self.access_ttl.as_secs().max(1);
        let mut claims = json!({
            "sub": subject,
            "email": email,
            "iat": now,
            "exp": now + ttl,
            "scope": if admin { "admin" } else { "" },
        });
        if let Some(iss) = &self.issuer {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = &self.audience {
            claims["aud"] = json!(aud);
        }
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map(|t| (t, ttl))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::domain::duration::Dur;

    fn config(alg: &str, file: Option<&str>, secret: Option<&str>) -> JwtIssueConfig {
        JwtIssueConfig {
            kid: Some("issuer".into()),
            alg: alg.into(),
            private_key_file: file.map(|f| {
                std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/jwt-keys"))
                    .join(f)
            }),
            secret: secret.map(crate::config::Secret::new),
            generate_missing: false,
            access_ttl: Dur::secs(60),
            refresh_ttl: Dur::secs(3600),
        }
    }

    #[test]
    fn issued_tokens_verify_with_the_derived_public_key_for_every_family() {
        for (alg, file, secret) in [
            ("RS256", Some("rsa.key.pem"), None),
            ("PS256", Some("rsa.key.pem"), None),
            ("ES256", Some("ec256.key.pem"), None),
            ("ES384", Some("ec384.key.pem"), None),
            ("EdDSA", Some("ed.key.pem"), None),
            ("HS256", None, Some("0123456789abcdef0123456789abcdef")),
        ] {
            let issuer = TokenIssuer::new(&config(alg, file, secret), None, None).unwrap();
            let (token, ttl) = issuer
                .access_token(
                    "usr_1",
                    "a@example.com",
                    false,
                    crate::clock::SystemClock.now_secs(),
                )
                .unwrap();
            assert_eq!(ttl, 60);
            let a = parse_algorithm(alg).unwrap();
            let mut v = jsonwebtoken::Validation::new(a);
            v.validate_aud = false;
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &issuer.verify_key().key, &v)
                    .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(data.claims["sub"], "usr_1");
        }
    }

    #[test]
    fn short_secrets_and_missing_keys_are_refused() {
        assert!(TokenIssuer::new(&config("HS256", None, Some("short")), None, None).is_err());
        assert!(TokenIssuer::new(&config("RS256", None, None), None, None).is_err());
        assert!(
            TokenIssuer::new(&config("RS256", Some("ec256.key.pem"), None), None, None).is_err()
        );
    }

    #[test]
    fn a_missing_key_is_created_once_when_asked_and_kept_after() {
        let dir = tempfile::tempdir().unwrap();
        for alg in ["ES256", "ES384", "EdDSA"] {
            let path = dir.path().join(format!("new/{alg}.pem"));
            let mut c = config(alg, None, None);
            c.private_key_file = Some(path.clone());
            assert!(
                TokenIssuer::new(&c, None, None).is_err(),
                "not without asking"
            );
            c.generate_missing = true;
            let first = TokenIssuer::new(&c, None, None).unwrap();
            let written = std::fs::read(&path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{alg}");
            // Read again, not replaced: tokens of the first start still verify.
            let again = TokenIssuer::new(&c, None, None).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), written);
            let now = crate::clock::SystemClock.now_secs();
            let (token, _) = first
                .access_token("usr_1", "a@example.com", false, now)
                .unwrap();
            let mut v = jsonwebtoken::Validation::new(parse_algorithm(alg).unwrap());
            v.validate_aud = false;
            jsonwebtoken::decode::<serde_json::Value>(&token, &again.verify_key().key, &v)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
        }
        let mut rsa = config("RS256", None, None);
        rsa.private_key_file = Some(dir.path().join("rsa.pem"));
        rsa.generate_missing = true;
        assert!(TokenIssuer::new(&rsa, None, None).is_err());
    }
}
