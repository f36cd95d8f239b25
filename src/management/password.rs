//! Password hashing with argon2id (PHC strings), run off the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use once_cell::sync::Lazy;

/// A hash that no password matches, verified for unknown emails so that a login
/// for a missing user costs the same time as one with a wrong password.
static DUMMY: Lazy<String> = Lazy::new(|| hash("keygate-timing-equaliser").unwrap_or_default());

/// The argon2id PHC string of `password` (random salt, the crate's defaults:
/// m=19 MiB, t=2, p=1).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// True when `password` matches `phc` (constant-time comparison inside argon2).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// [`verify`] on the blocking pool; with no stored hash, verifies against a dummy
/// so timing does not reveal whether the user exists. Always false then.
pub async fn verify_off_thread(password: String, phc: Option<String>) -> bool {
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| DUMMY.clone());
    let matched = tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false);
    matched && known
}

/// [`hash`] on the blocking pool.
pub async fn hash_off_thread(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("correct horse", "not a phc string"));
        assert_ne!(hash("correct horse").unwrap(), h, "salted");
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        assert!(!verify_off_thread("keygate-timing-equaliser".into(), None).await);
    }
}
