//! [`Secret`]: a config string that never prints (HMAC secrets, database and
//! Redis URLs, which may carry passwords) and is wiped from memory when dropped.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use zeroize::Zeroize;

/// A secret string from the config. `Debug` shows `<redacted>`; serialising it (for
/// the reload comparison of restart-only settings) gives a digest, not the text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let digest = crate::domain::KeyHash::of(&self.0).to_hex();
        s.serialize_str(&format!("sha256:{digest}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-redis-password");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
        let yaml = serde_yaml::to_string(&s).unwrap();
        assert!(!yaml.contains("hunter2"), "{yaml}");
        assert_eq!(s.expose(), "hunter2-redis-password");
        let back: Secret = serde_yaml::from_str("\"abc\"").unwrap();
        assert_eq!(&*back, "abc");
    }
}
