//! Random identifiers and secrets: base62 from the OS random source.

use rand::Rng;

/// The base62 alphabet (digits, upper case, lower case).
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` characters of base62 from the OS random source.
pub fn random_base62(n: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect()
}

/// A fresh key id: `key_` and 20 base62 characters.
pub fn new_key_id() -> String {
    format!("key_{}", random_base62(20))
}

/// A fresh id for `kind` (`usr`, `fam`, …): `<kind>_` and 20 base62 characters.
pub fn new_id(kind: &str) -> String {
    format!("{kind}_{}", random_base62(20))
}
