//! Verification keys: from `jwt.keys` (PEM file, secret, inline JWK) and from JWKS
//! documents. Every key carries the algorithms it may verify; a key is never used
//! with another algorithm (no HS256 "signed" with an RSA public key).

use crate::config::JwtKeyConfig;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::str::FromStr;

/// One verification key.
#[derive(Clone)]
pub struct VerifyKey {
    /// Key id, matched against the token's `kid`.
    pub kid: Option<String>,
    /// Algorithms this key may verify (already intersected with the allow-list).
    pub algorithms: Vec<Algorithm>,
    /// The key material.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// Why a configured key or JWKS entry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unreadable file.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// File.
        path: String,
        /// I/O error.
        reason: String,
    },
    /// Bad key material or document.
    #[error("{0}")]
    Invalid(String),
}

/// Parses an algorithm name; `none` and unknown names are refused.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Algorithm::from_str(name).ok()
}

/// A configured `jwt.keys` entry, compiled.
pub fn from_config(k: &JwtKeyConfig, allowed: &[Algorithm]) -> Result<VerifyKey, KeyError> {
    let alg = parse_algorithm(&k.alg)
        .ok_or_else(|| KeyError::Invalid(format!("unknown algorithm {}", k.alg)))?;
    let key = if let Some(secret) = &k.secret {
        DecodingKey::from_secret(secret.as_bytes())
    } else if let Some(path) = &k.pem_file {
        let pem = std::fs::read(path).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let parsed = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => {
                return Err(KeyError::Invalid(format!(
                    "{:?} keys are secrets, not PEM files",
                    alg
                )))
            }
        };
        parsed.map_err(|e| KeyError::Invalid(format!("{}: {e}", path.display())))?
    } else if let Some(jwk) = &k.jwk {
        let jwk: Jwk = serde_json::from_value(jwk.clone())
            .map_err(|e| KeyError::Invalid(format!("jwk: {e}")))?;
        let key = from_jwk(&jwk, allowed)
            .ok_or_else(|| KeyError::Invalid("jwk: unsupported key".into()))?;
        if !key.algorithms.contains(&alg) {
            return Err(KeyError::Invalid(format!(
                "jwk: key type cannot verify {:?}",
                alg
            )));
        }
        key.key
    } else {
        return Err(KeyError::Invalid("no key material".into()));
    };
    Ok(VerifyKey {
        kid: k.kid.clone(),
        algorithms: vec![alg]
            .into_iter()
            .filter(|a| allowed.contains(a))
            .collect(),
        key,
    })
}

/// Algorithms a JWK's key type can verify: its declared `alg` if present, else every
/// algorithm of its family (never across families).
fn jwk_algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    if let Some(declared) = jwk
        .common
        .key_algorithm
        .and_then(|a| parse_algorithm(&a.to_string()))
    {
        return vec![declared];
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Shared secrets only with an explicit alg.
        _ => vec![],
    }
}

/// A JWK as a verification key, or `None` when unusable under `allowed`.
pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Option<VerifyKey> {
    let algorithms: Vec<Algorithm> = jwk_algorithms(jwk)
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    if algorithms.is_empty() {
        return None;
    }
    let declared_family = algorithms[0].family();
    let matches_family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => declared_family == jsonwebtoken::AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => {
            declared_family == jsonwebtoken::AlgorithmFamily::Ec
        }
        AlgorithmParameters::OctetKeyPair(_) => {
            declared_family == jsonwebtoken::AlgorithmFamily::Ed
        }
        AlgorithmParameters::OctetKey(_) => declared_family == jsonwebtoken::AlgorithmFamily::Hmac,
    };
    if !matches_family {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

/// Parses a JWKS document, keeping the keys usable under `allowed`.
pub fn parse_jwks(text: &str, allowed: &[Algorithm]) -> Result<Vec<VerifyKey>, KeyError> {
    // Parse entry by entry so one unsupported key (e.g. RSA-OAEP encryption keys)
    // does not hide the rest.
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| KeyError::Invalid(format!("JWKS: {e}")))?;
    let entries = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| KeyError::Invalid("JWKS: no `keys` array".into()))?;
    let mut keys = Vec::new();
    for entry in entries {
        if entry
            .get("use")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        if let Ok(set) = serde_json::from_value::<JwkSet>(serde_json::json!({ "keys": [entry] })) {
            keys.extend(set.keys.iter().filter_map(|j| from_jwk(j, allowed)));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Algorithm] = &[
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn jwks_keys_without_alg_serve_only_their_own_family() {
        let rsa = jwk(serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}));
        let k = from_jwk(&rsa, ALL).unwrap();
        assert_eq!(k.algorithms, vec![Algorithm::RS256, Algorithm::PS256]);
        let ec = jwk(serde_json::json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}));
        assert_eq!(
            from_jwk(&ec, ALL).unwrap().algorithms,
            vec![Algorithm::ES384]
        );
        let oct = jwk(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}));
        assert!(
            from_jwk(&oct, ALL).is_none(),
            "shared secrets need an explicit alg"
        );
    }

    #[test]
    fn a_declared_alg_must_match_the_key_type_and_the_allow_list() {
        let lying =
            jwk(serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "HS256"}));
        assert!(
            from_jwk(&lying, ALL).is_none(),
            "an RSA key never verifies HS256"
        );
        let rs = jwk(serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS256"}));
        assert!(
            from_jwk(&rs, &[Algorithm::ES256]).is_none(),
            "not in the allow-list"
        );
    }

    #[test]
    fn jwks_documents_skip_encryption_and_unsupported_keys() {
        let doc = r#"{"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "weird"},
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "sig"}
        ]}"#;
        let keys = parse_jwks(doc, ALL).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig"));
        assert!(parse_jwks("{}", ALL).is_err());
        assert!(parse_jwks("not json", ALL).is_err());
    }

    #[test]
    fn none_is_not_an_algorithm() {
        assert!(parse_algorithm("none").is_none());
        assert!(parse_algorithm("RS256").is_some());
    }
}
