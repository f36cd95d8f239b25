//! API keys: their shape, the checksum, the secret handed out once, redaction.
//! The format itself is [`super::key_format::KeyFormat`] (`api_keys.format`), built
//! on these; keygate's own is `{prefix}_sk_{live|test}_{32 base62}{6-char checksum}`.
//!
//! The checksum (CRC-32 of everything before it, in base62) lets keygate refuse a
//! mistyped or invented key before any cache or store lookup. Keys are stored and
//! looked up only as SHA-256 of the whole key string.

use crate::domain::id::BASE62;
use crate::domain::{Environment, KeyHash};
use std::fmt;

/// Length of the checksum suffix.
pub const CHECKSUM_LEN: usize = 6;
/// Longest credential keygate will even hash; anything longer is malformed.
pub const MAX_KEY_LEN: usize = 256;

/// What a presented credential looks like, decided without any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// A key in the configured format with a correct checksum.
    Issued(Environment),
    /// A key starting with one of `accept_prefixes`: looked up by hash.
    Imported,
    /// Anything else: refused without touching the store.
    Malformed,
}

/// Base62 of the CRC-32 of `body`, fixed at [`CHECKSUM_LEN`] characters.
pub(crate) fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A freshly generated key: the plaintext (shown once) and what is stored.
pub struct NewKey {
    /// The whole key, to hand to the user once.
    pub plaintext: String,
    /// Its hash.
    pub hash: KeyHash,
    /// The last four characters, for display.
    pub last4: String,
    /// The visible prefix (`kg_sk_live_`).
    pub prefix: String,
}

impl NewKey {
    /// The key `plaintext`, with `prefix` its visible start (shown with the last 4).
    pub fn new(plaintext: String, prefix: String) -> Self {
        NewKey {
            hash: KeyHash::of(&plaintext),
            last4: plaintext[plaintext.len().saturating_sub(4)..].to_string(),
            prefix,
            plaintext,
        }
    }

    /// Hands the plaintext over (to be shown once); nothing is left to wipe here.
    pub fn into_plaintext(mut self) -> String {
        std::mem::take(&mut self.plaintext)
    }
}

impl Drop for NewKey {
    /// The plaintext is shown once; its memory is wiped when the key is dropped.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.plaintext);
    }
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("plaintext", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("last4", &self.last4)
            .finish()
    }
}

/// A loggable form of a credential: `prefix…last4`, never enough to use it.
pub fn redact(key: &str) -> String {
    if !key.is_ascii() || key.len() < 16 {
        return "…".into();
    }
    let visible = key[..key.len() - 8]
        .rfind('_')
        .map(|i| i + 1)
        .filter(|i| *i <= 16)
        .unwrap_or(4);
    format!("{}…{}", &key[..visible], &key[key.len() - 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_their_text_form() {
        let h = KeyHash::of("test");
        assert_eq!(
            h.to_string(),
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(KeyHash::parse(&h.to_string()), Some(h));
        assert_eq!(KeyHash::parse("sha256:zz"), None);
    }

    #[test]
    fn redaction_keeps_only_prefix_and_last_four() {
        let k = format!("kg_sk_live_{}", "aB3".repeat(12));
        let r = redact(&k);
        assert!(r.starts_with("kg_sk_live_…"));
        assert!(r.ends_with(&k[k.len() - 4..]));
        assert_eq!(r.chars().count(), "kg_sk_live_".len() + 1 + 4);
        assert_eq!(redact("short"), "…");
        let k = NewKey::new(k, "kg_sk_live_".into());
        assert!(!format!("{k:?}").contains(&k.plaintext[11..]));
    }
}
