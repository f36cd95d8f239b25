//! Users: the logins of the token endpoint (and the portal).

use chrono::{DateTime, Utc};
use std::fmt;

/// A login. The password is only ever held as an argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Stable id (`usr_…`), the subject of issued tokens.
    pub id: String,
    /// Email, unique (case-insensitive).
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// May manage every key.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("is_admin", &self.is_admin)
            .finish_non_exhaustive()
    }
}
