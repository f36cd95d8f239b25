//! JSON Web Token verification: cheap shape check, a cache of verified tokens,
//! key choice by `kid` (or by algorithm), signature and claim checks, and the
//! mapping of claims to an [`Identity`].

pub mod issue;
pub mod jwks;
pub mod keys;

use super::{AuthMethod, Identity};
use crate::clock::Clock;
use crate::config::{ClaimsConfig, JwtConfig};
use crate::domain::{Environment, KeyHash};
use crate::obs::metrics;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use jwks::RemoteJwks;
use keys::VerifyKey;
use moka::sync::Cache;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token was refused; the message names the failed check, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments, or undecodable.
    #[error("Malformed token")]
    Malformed,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("Token is too large")]
    TooLarge,
    /// The header's algorithm is not in `jwt.algorithms` (or is `none`).
    #[error("Token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No key has the token's `kid`.
    #[error("Unknown signing key")]
    UnknownKey,
    /// No key verifies the signature.
    #[error("Invalid token signature")]
    Signature,
    /// Past `exp` (plus leeway).
    #[error("Token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("Token is not yet valid")]
    NotYetValid,
    /// `iat` in the future (beyond leeway).
    #[error("Token was issued in the future")]
    IssuedInFuture,
    /// `iss` does not match.
    #[error("Invalid issuer")]
    Issuer,
    /// `aud` does not match.
    #[error("Invalid audience")]
    Audience,
    /// A required claim is missing.
    #[error("Missing required claim: {0}")]
    MissingClaim(String),
    /// A claim has the wrong type.
    #[error("Invalid claim: {0}")]
    InvalidClaim(String),
}

impl TokenError {
    /// `result` label of `keygate_jwt_verifications_total`.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Malformed | TokenError::TooLarge => "malformed",
            TokenError::AlgorithmNotAllowed => "algorithm",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid | TokenError::IssuedInFuture => "not_yet_valid",
            TokenError::Issuer | TokenError::Audience => "issuer_audience",
            TokenError::MissingClaim(_) | TokenError::InvalidClaim(_) => "claims",
        }
    }
}

/// A verified token, as cached.
#[derive(Debug)]
pub struct VerifiedToken {
    /// Who it belongs to.
    pub identity: Arc<Identity>,
    /// The tier claim, if any (unknown tiers fall back to `default_tier`).
    pub tier: Option<String>,
    /// Its `exp` (Unix seconds).
    pub exp: u64,
}

/// True when `s` has the shape of a JWT: three base64url segments (the header's
/// JSON always encodes to a leading `eyJ`). API keys never do.
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|b| *b == b'.').count() == 2
}

fn well_formed(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64 = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    // An empty signature is well-formed (`alg: none` tokens have one); it then fails
    // the algorithm or signature check with a precise message.
    !h.is_empty() && !p.is_empty() && b64(h) && b64(p) && b64(sig)
}

/// The algorithm named in a token's header when it is not one jsonwebtoken knows
/// (e.g. `none`): refused as "not allowed" rather than "malformed".
fn header_names_unknown_alg(token: &str) -> bool {
    let Some(head) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head) else {
        return false;
    };
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_owned))
        .is_some_and(|alg| keys::parse_algorithm(&alg).is_none())
}

/// The JWT verifier of one config.
pub struct JwtVerifier {
    allowed: Vec<Algorithm>,
    static_keys: Vec<VerifyKey>,
    remote: Option<Arc<RemoteJwks>>,
    validations: HashMap<Algorithm, Validation>,
    leeway: u64,
    claims: ClaimsConfig,
    /// `jwt.issuer`: when set, `iss` is required and must be this string.
    issuer: Option<String>,
    /// `jwt.audience`: when set, `aud` is required and must name one of these.
    audience: Vec<String>,
    cache: Cache<KeyHash, Arc<VerifiedToken>>,
    /// Judges `exp`, `nbf` and `iat` (jsonwebtoken's own time checks are off).
    clock: Arc<dyn Clock>,
}

/// Why the JWT configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("jwt: {0}")]
pub struct JwtSetupError(pub String);

impl JwtVerifier {
    /// Builds the verifier: static keys from `jwt.keys` and `jwks_file`, the remote
    /// JWKS source (not yet fetched: see [`RemoteJwks::load_initial`]), and `issued`,
    /// the key of keygate's own token endpoint. With `jwt.enabled: false` only issued
    /// tokens are accepted.
    pub fn new(
        c: &JwtConfig,
        cache_capacity: u64,
        issued: Option<VerifyKey>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, JwtSetupError> {
        let mut allowed: Vec<Algorithm> = match c.enabled {
            true => c
                .algorithms
                .iter()
                .filter_map(|a| keys::parse_algorithm(a))
                .collect(),
            false => Vec::new(),
        };
        let mut static_keys = Vec::new();
        if let Some(key) = issued {
            for alg in &key.algorithms {
                if !allowed.contains(alg) {
                    allowed.push(*alg);
                }
            }
            static_keys.push(key);
        }
        let configured = if c.enabled { c.keys.as_slice() } else { &[] };
        for (i, k) in configured.iter().enumerate() {
            static_keys.push(
                keys::from_config(k, &allowed)
                    .map_err(|e| JwtSetupError(format!("keys[{i}]: {e}")))?,
            );
        }
        if let Some(path) = c.jwks_file.as_ref().filter(|_| c.enabled) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| JwtSetupError(format!("jwks_file {}: {e}", path.display())))?;
            static_keys.extend(
                keys::parse_jwks(&text, &allowed)
                    .map_err(|e| JwtSetupError(format!("jwks_file: {e}")))?,
            );
        }
        let remote = c.jwks_url.as_ref().filter(|_| c.enabled).map(|url| {
            Arc::new(RemoteJwks::new(
                url.clone(),
                c.jwks_cache_file.clone(),
                c.jwks_min_refresh.get(),
                allowed.clone(),
            ))
        });
        let leeway = c.leeway.get().as_secs();
        let validations = allowed
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = leeway;
                // Time is judged on the injected clock, in `check_times`.
                v.validate_exp = false;
                v.validate_nbf = false;
                v.set_required_spec_claims(&["exp"]);
                if c.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&c.audience);
                }
                if let Some(iss) = &c.issuer {
                    v.set_issuer(&[iss]);
                }
                (*alg, v)
            })
            .collect();
        Ok(JwtVerifier {
            allowed,
            static_keys,
            remote,
            validations,
            leeway,
            claims: c.claims.clone(),
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            clock,
            cache: Cache::builder()
                .max_capacity(cache_capacity.max(1))
                .time_to_live(Duration::from_secs(3600))
                .build(),
        })
    }

    /// The verifier `config` asks for: with `jwt.enabled`, or to check the tokens
    /// `issuer` signs for the management API; `None` when neither. Its remote JWKS
    /// is not fetched yet.
    pub fn for_config(
        config: &crate::config::Config,
        issuer: Option<&issue::TokenIssuer>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, JwtSetupError> {
        if !config.jwt.enabled && issuer.is_none() {
            return Ok(None);
        }
        Self::new(
            &config.jwt,
            config.cache.capacity,
            issuer.map(|i| i.verify_key()),
            clock,
        )
        .map(Some)
    }

    /// The remote JWKS source, if configured (for start-up and background refresh).
    pub fn remote(&self) -> Option<&Arc<RemoteJwks>> {
        self.remote.as_ref()
    }

    /// Drops `token` from the verification cache (benchmarks measure the uncached path).
    pub fn forget(&self, token: &str) {
        self.cache.invalidate(&KeyHash::of(token));
    }

    fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Vec<VerifyKey> {
        let remote = self.remote.as_ref().map(|r| r.keys());
        let all = self
            .static_keys
            .iter()
            .chain(remote.iter().flat_map(|k| k.iter()));
        all.filter(|k| k.algorithms.contains(&alg))
            .filter(|k| match kid {
                Some(kid) => k.kid.as_deref() == Some(kid),
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Verifies `token`: from the cache when it was verified before and has not
    /// expired, else in full. Invalid tokens are never cached.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(self.fail("unknown", TokenError::TooLarge));
        }
        if !well_formed(token) {
            return Err(self.fail("unknown", TokenError::Malformed));
        }
        let hash = KeyHash::of(token);
        if let Some(v) = self.cache.get(&hash) {
            // Same rule as jsonwebtoken's exp check: valid while now <= exp + leeway.
            if self.clock.now_secs() <= v.exp.saturating_add(self.leeway) {
                metrics::JWT_VERIFICATIONS
                    .with_label_values(&["cached", "ok"])
                    .inc();
                return Ok(v);
            }
            self.cache.invalidate(&hash);
            return Err(self.fail("cached", TokenError::Expired));
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) if header_names_unknown_alg(token) => {
                return Err(self.fail("unknown", TokenError::AlgorithmNotAllowed))
            }
            Err(_) => return Err(self.fail("unknown", TokenError::Malformed)),
        };
        let alg = header.alg;
        let label = alg_label(alg);
        if !self.allowed.contains(&alg) {
            return Err(self.fail(label, TokenError::AlgorithmNotAllowed));
        }
        let mut candidates = self.candidates(alg, header.kid.as_deref());
        if candidates.is_empty() {
            if let (Some(remote), Some(_)) = (&self.remote, &header.kid) {
                // Whether this call fetched or waited for another's fetch, look again.
                remote.refresh_for_unknown_kid().await;
                candidates = self.candidates(alg, header.kid.as_deref());
            }
        }
        if candidates.is_empty() {
            let err = if header.kid.is_some() {
                TokenError::UnknownKey
            } else {
                TokenError::Signature
            };
            return Err(self.fail(label, err));
        }
        let validation = self
            .validations
            .get(&alg)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let mut claims = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(self.fail(label, map_error(e.kind()))),
            }
        }
        let Some(claims) = claims else {
            return Err(self.fail(label, TokenError::Signature));
        };
        let verified = self.identity_of(&claims).map_err(|e| self.fail(label, e))?;
        let verified = Arc::new(verified);
        self.cache.insert(hash, verified.clone());
        metrics::JWT_VERIFICATIONS
            .with_label_values(&[label, "ok"])
            .inc();
        Ok(verified)
    }

    fn fail(&self, alg: &str, e: TokenError) -> TokenError {
        metrics::JWT_VERIFICATIONS
            .with_label_values(&[alg, e.label()])
            .inc();
        e
    }

    /// `iss` and `aud`, when configured, are required and must be strings (an
    /// array of strings for `aud`). jsonwebtoken checks them only when present and
    /// well-typed, so a token without them, or with `"iss": 123`, would pass.
    fn check_issuer_and_audience(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(issuer) = &self.issuer {
            match claims.get("iss") {
                None | Some(Value::Null) => return Err(TokenError::MissingClaim("iss".into())),
                Some(Value::String(iss)) if iss == issuer => {}
                Some(_) => return Err(TokenError::Issuer),
            }
        }
        if !self.audience.is_empty() {
            let allowed = |a: &str| self.audience.iter().any(|x| x == a);
            match claims.get("aud") {
                None | Some(Value::Null) => return Err(TokenError::MissingClaim("aud".into())),
                Some(Value::String(aud)) if allowed(aud) => {}
                Some(Value::Array(items))
                    if items.iter().all(Value::is_string)
                        && items.iter().filter_map(Value::as_str).any(allowed) => {}
                Some(_) => return Err(TokenError::Audience),
            }
        }
        Ok(())
    }

    /// `exp`, `nbf` and `iat` against the clock, with `leeway`: expired once
    /// `exp < now - leeway`, not yet valid while `nbf > now + leeway`, refused when
    /// issued after `now + leeway`. Returns `exp`.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<u64, TokenError> {
        let now = self.clock.now_secs();
        let number = |name: &str| -> Result<Option<u64>, TokenError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| TokenError::InvalidClaim(name.into())),
            }
        };
        let exp = number("exp")?.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if exp < now.saturating_sub(self.leeway) {
            return Err(TokenError::Expired);
        }
        if number("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if number("iat")?.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(exp)
    }

    fn identity_of(&self, claims: &Map<String, Value>) -> Result<VerifiedToken, TokenError> {
        self.check_issuer_and_audience(claims)?;
        let exp = self.check_times(claims)?;
        let c = &self.claims;
        let subject = claim_string(claims, &c.subject)?
            .ok_or_else(|| TokenError::MissingClaim(c.subject.clone()))?;
        let scopes = match claims.get(&c.scopes) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::InvalidClaim(c.scopes.clone()))?,
            Some(_) => return Err(TokenError::InvalidClaim(c.scopes.clone())),
        };
        let tier = claim_string(claims, &c.tier)?;
        let org = claim_string(claims, &c.org)?;
        let limit_by = match &c.limit_by {
            Some(claim) => claim_string(claims, claim)?
                .ok_or_else(|| TokenError::MissingClaim(claim.clone()))?,
            None => subject.clone(),
        };
        let identity = Identity::new(
            AuthMethod::Jwt,
            None,
            subject,
            org,
            scopes,
            Environment::Live,
            None,
            format!("sub:{limit_by}"),
            None,
        );
        Ok(VerifiedToken {
            identity: Arc::new(identity),
            tier,
            exp,
        })
    }
}

/// A claim as a string (numbers accepted), `None` when absent.
fn claim_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(TokenError::InvalidClaim(name.to_string())),
    }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => TokenError::InvalidClaim(c.clone()),
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::Signature,
        _ => TokenError::Malformed,
    }
}

/// Metric label of an algorithm (a closed set).
pub fn alg_label(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jwt_shaped_credentials_are_classified_as_tokens() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig"));
        assert!(!looks_like_jwt("kg_sk_live_abc"));
        assert!(!looks_like_jwt("eyJ.a"));
        assert!(well_formed("eyJ.a.b"));
        assert!(!well_formed("eyJ.a.b.c"));
        assert!(!well_formed("eyJ..b"));
        assert!(well_formed("eyJ.a."));
        assert!(!well_formed("eyJ.a+b.c"));
    }

    #[tokio::test]
    async fn exp_nbf_and_iat_are_judged_on_the_clock_even_for_cached_tokens() {
        use crate::clock::ManualClock;
        let secret = "a-verifying-secret-of-32-bytes-or-more";
        let config: JwtConfig = serde_yaml::from_str(&format!(
            "{{ enabled: true, algorithms: [HS256], leeway: 5s, keys: [{{ alg: HS256, secret: \"{secret}\" }}] }}"
        ))
        .unwrap();
        let clock = ManualClock::at(1_800_000_000_000);
        let verifier = JwtVerifier::new(&config, 10, None, Arc::new(clock.clone())).unwrap();
        let now = 1_800_000_000u64;
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let token = sign(serde_json::json!({"sub": "u", "exp": now + 60}));
        assert!(verifier.verify(&token).await.is_ok());
        assert!(verifier.verify(&token).await.is_ok(), "from the cache");
        clock.advance_ms(65_000);
        assert!(verifier.verify(&token).await.is_ok(), "within the leeway");
        clock.advance_ms(1_000);
        assert_eq!(
            verifier.verify(&token).await.err(),
            Some(TokenError::Expired)
        );
        let later = sign(serde_json::json!({"sub": "u", "exp": now + 600, "nbf": now + 200}));
        assert_eq!(
            verifier.verify(&later).await.err(),
            Some(TokenError::NotYetValid)
        );
        clock.set_ms((now + 196) * 1000);
        assert!(
            verifier.verify(&later).await.is_ok(),
            "nbf within the leeway"
        );
        let future = sign(serde_json::json!({"sub": "u", "exp": now + 900, "iat": now + 800}));
        assert_eq!(
            verifier.verify(&future).await.err(),
            Some(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn an_alg_none_header_is_recognised() {
        // {"alg":"none","typ":"JWT"}
        assert!(header_names_unknown_alg(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.x"
        ));
        // {"alg":"HS256"}
        assert!(!header_names_unknown_alg("eyJhbGciOiJIUzI1NiJ9.e30.x"));
    }
}
