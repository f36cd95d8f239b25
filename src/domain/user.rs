//! Users: the logins of the token endpoint (and the portal).

use chrono::{DateTime, Utc};
use std::fmt;

/// The one form of an email keygate stores, looks up and throttles on, whatever the
/// store: Unicode's compatibility caseless form (NFKC after full case folding,
/// Unicode §3.13 D146), without default-ignorable code points (zero-width spaces
/// and joiners, soft hyphens, variation selectors, bidi controls: invisible, so
/// never what tells two addresses apart), computed here and never by a database's
/// own `lower()` or collation. `Alice@Example.com`, `ａlice@example.com` (fullwidth),
/// `ali\u{200B}ce@example.com` and `alice@example.com` are one address;
/// `Straße@x` and `strasse@x` are one; `alİce@x` (U+0130) is not `alice@x`, in the
/// throttle as in the lookup.
pub fn canonical_email(raw: &str) -> String {
    use caseless::Caseless;
    use unicode_normalization::UnicodeNormalization;
    raw.chars()
        .filter(|c| !default_ignorable(*c))
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .filter(|c| !default_ignorable(*c))
        .collect()
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt).
fn default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// A login. The password is only ever held as an argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Stable id (`usr_…`), the subject of issued tokens.
    pub id: String,
    /// Email, in its [`canonical_email`] form; unique.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// May manage every key.
    pub is_admin: bool,
    /// Disabled by an admin: cannot sign in, and has no session.
    pub disabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("is_admin", &self.is_admin)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_email;

    #[test]
    fn spellings_of_one_address_have_one_canonical_form() {
        let alice = "alice@example.com";
        for same in [
            "Alice@Example.COM",
            "\u{ff41}lice@example.com",
            "ALICE@EXAMPLE.COM",
        ] {
            assert_eq!(canonical_email(same), alice, "{same}");
        }
        assert_eq!(
            canonical_email("Straße@x.de"),
            canonical_email("STRASSE@x.de")
        );
        assert_eq!(canonical_email("Straße@x.de"), "strasse@x.de");
        // é precomposed and e with a combining acute are one letter.
        assert_eq!(
            canonical_email("Jos\u{e9}@x.es"),
            canonical_email("JOSE\u{301}@x.es")
        );
        // Invisible code points tell nothing apart.
        for invisible in [
            "ali\u{200b}ce@example.com",
            "al\u{ad}ice@example.com",
            "\u{feff}alice@example.com",
            "alice\u{200d}@example.com",
            "alic\u{fe0f}e@example.com",
        ] {
            assert_eq!(canonical_email(invisible), alice, "{invisible:?}");
        }
        // Dotted capital I folds to i with a combining dot: another address.
        assert_ne!(canonical_email("al\u{130}ce@example.com"), alice);
        assert_ne!(canonical_email("al\u{131}ce@example.com"), alice);
        // Already canonical: unchanged (the form is stable).
        for s in [
            "alice@example.com",
            "strasse@x.de",
            "al\u{130}ce@example.com",
        ] {
            let once = canonical_email(s);
            assert_eq!(canonical_email(&once), once);
        }
    }
}
