//! [`Accounts`]: the people who hold keys — signing up and signing in — with one
//! set of rules for every door (the management API's token endpoint, the portal).
//! Sign-in checks are throttled per email and per client IP, and every password
//! is hashed on the bounded [`password::PasswordPool`].

pub mod admin;
pub mod password;

use crate::clock::Clock;
use crate::domain::id::new_id;
use crate::domain::{canonical_email, KeyHash, UserRecord};
use crate::domain::{AuditEntry, AuditOrigin};
use crate::error::GateError;
use crate::limit::{Limiter, Window, WindowLimit};
use crate::store::users::UserStore;
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Failed sign-ins allowed per minute, per client IP and per email.
pub const SIGN_IN_FAILURES_PER_MINUTE: u64 = 10;
/// Shortest password accepted at sign-up.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest email, password or name.
pub const MAX_FIELD: usize = 254;

/// Password-hashing threads (each holds 19 MiB while it works).
const PASSWORD_WORKERS: usize = 2;
/// Sign-ins and sign-ups that may wait for a password-hashing thread; more get 503.
const PASSWORD_QUEUE: usize = 32;

const SIGN_IN_WINDOW: Window = Window::Minute;

/// True when `e` looks like an email address.
pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= MAX_FIELD
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What is wrong with a sign-up's email (in its canonical form) and password, by
/// field.
pub fn sign_up_problems(email: &str, password: &str) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    if !valid_email(&canonical_email(email)) {
        p.push(("email", "must be an email address".to_string()));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        p.push((
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    p
}

/// Users over a store, with throttled sign-in.
pub struct Accounts {
    users: Arc<dyn UserStore>,
    limiter: Arc<dyn Limiter>,
    passwords: password::PasswordPool,
    clock: Arc<dyn Clock>,
}

impl Accounts {
    /// Accounts in `users`, throttling sign-ins with `limiter`, time from `clock`.
    pub fn new(
        users: Arc<dyn UserStore>,
        limiter: Arc<dyn Limiter>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Accounts {
            users,
            limiter,
            passwords: password::PasswordPool::new(PASSWORD_WORKERS, PASSWORD_QUEUE),
            clock,
        }
    }

    /// The user store (sessions, refresh tokens).
    pub fn users(&self) -> &Arc<dyn UserStore> {
        &self.users
    }

    /// Creates a user under the [`canonical_email`] form of `email`. The door has
    /// checked [`sign_up_problems`]; a taken email (in any spelling of it) is 409
    /// `conflict`.
    pub async fn register(
        &self,
        email: String,
        password: String,
        name: Option<String>,
        from: &AuditOrigin,
    ) -> Result<UserRecord, GateError> {
        let password_hash = self
            .passwords
            .hash(password)
            .await
            .map_err(busy)?
            .map_err(|e| {
                tracing::error!(error = %e, "could not hash a password");
                GateError::Internal
            })?;
        let user = UserRecord {
            id: new_id("usr"),
            email: canonical_email(&email),
            name,
            password_hash,
            is_admin: false,
            disabled: false,
            created_at: self.clock.now_utc(),
        };
        // Signing up is the new user's own doing.
        let by = AuditOrigin {
            actor: user.id.clone(),
            ..from.clone()
        };
        let audit = self.audit(&by, "user.created", &user.id, &["email", "name"]);
        self.users.create_user(&user, &audit).await?;
        Ok(user)
    }

    /// The user with this email and password. A wrong one (or an unknown email,
    /// which costs the same time) is 401 `invalid_credentials`; past
    /// [`SIGN_IN_FAILURES_PER_MINUTE`] failures for the email or the client IP,
    /// 429 until the minute turns. The email is throttled and looked up in one
    /// form, its [`canonical_email`]: no spelling of it gets guesses of its own.
    ///
    /// A failed check is written to the audit log as `auth.sign_in_failed` by
    /// `from`, naming the user when the email is one's and the check that failed
    /// (`password`, `disabled`); never what was typed (an unknown email may be a
    /// password typed in the wrong box). Attempts refused by the throttle are not
    /// written: they are bounded by it, the log is not.
    pub async fn sign_in(
        &self,
        email: &str,
        password: String,
        client_ip: Option<IpAddr>,
        from: &AuditOrigin,
    ) -> Result<UserRecord, GateError> {
        let email = canonical_email(email);
        let reserved = self.reserve(&email, client_ip).await?;
        let checked = async {
            let user = self.users.user_by_email(&email).await?;
            let phc = user.as_ref().map(|u| u.password_hash.clone());
            let ok = self.passwords.verify(password, phc).await.map_err(busy)?;
            Ok::<_, GateError>((user, ok))
        };
        match checked.await {
            Ok((Some(user), true)) if !user.disabled => {
                self.release(&reserved).await;
                Ok(user)
            }
            // A failed check keeps its reservation: it counts against the limit.
            // A disabled user is refused like a wrong password.
            Ok((user, ok)) => {
                let (target, failed) = match &user {
                    Some(u) if ok => (u.id.as_str(), "disabled"),
                    Some(u) => (u.id.as_str(), "password"),
                    None => ("", "password"),
                };
                let entry = self.audit(from, "auth.sign_in_failed", target, &[failed]);
                if let Err(e) = self.users.append_audit(&entry).await {
                    tracing::error!(error = %e, "could not write a failed sign-in to the audit log");
                }
                Err(GateError::InvalidCredentials)
            }
            Err(e) => {
                self.release(&reserved).await;
                Err(e)
            }
        }
    }

    /// The audit entry of `from` doing `action` to the user `id` now.
    pub(crate) fn audit(
        &self,
        from: &AuditOrigin,
        action: &'static str,
        id: &str,
        fields: &[&str],
    ) -> AuditEntry {
        let fields = fields.iter().map(|f| f.to_string()).collect();
        AuditEntry::new(from, action, id, fields, self.clock.now_utc())
    }

    /// Hashes `password` on the pool (503 when it is full).
    async fn hash(&self, password: String) -> Result<String, GateError> {
        self.passwords
            .hash(password)
            .await
            .map_err(busy)?
            .map_err(|e| {
                tracing::error!(error = %e, "could not hash a password");
                GateError::Internal
            })
    }

    /// Changes `user`'s password: `current` must be theirs (401 otherwise, counted
    /// like a failed sign-in), `new` long enough (422). Every other session and
    /// refresh token of theirs ends; the session `keep` (the one asking) stays.
    pub async fn change_password(
        &self,
        user: &UserRecord,
        current: String,
        new: String,
        keep: Option<&KeyHash>,
        client_ip: Option<IpAddr>,
        from: &AuditOrigin,
    ) -> Result<(), GateError> {
        if let Some(problems) = password_problem(&new) {
            return Err(problems);
        }
        // The current password is checked like a sign-in: throttled and logged the
        // same way.
        self.sign_in(&user.email, current, client_ip, from).await?;
        let phc = self.hash(new).await?;
        let audit = self.audit(from, "user.password_changed", &user.id, &["password"]);
        self.users
            .set_password(&user.id, &phc, keep, &audit)
            .await?;
        tracing::info!(user = %user.id, "password changed");
        Ok(())
    }

    /// Issues a one-time password-reset link token for user `id`, valid for
    /// [`RESET_LINK_TTL`]; the user's earlier links stop working. 404 when there is
    /// no such user.
    pub async fn issue_reset(
        &self,
        id: &str,
        from: &AuditOrigin,
    ) -> Result<(String, DateTime<Utc>), GateError> {
        let token = format!("kg_pr_{}", crate::domain::id::random_base62(43));
        let expires =
            self.clock.now_utc() + chrono::Duration::from_std(RESET_LINK_TTL).unwrap_or_default();
        let audit = self.audit(from, "user.reset_link_issued", id, &[]);
        self.users
            .create_password_reset(&KeyHash::of(&token), id, expires, &audit)
            .await?;
        tracing::info!(user = %id, "password-reset link issued");
        Ok((token, expires))
    }

    /// True when `token` is a reset link that still works.
    pub async fn reset_link_valid(&self, token: &str) -> Result<bool, GateError> {
        Ok(self
            .users
            .peek_password_reset(&KeyHash::of(token))
            .await?
            .is_some())
    }

    /// Sets a new password through a reset link, once: the link is spent, and
    /// every session and refresh token of the user ends. 404 for a link that does
    /// not work (unknown, used, expired); 422 for a short password (the link is
    /// not spent).
    pub async fn reset_password(
        &self,
        token: &str,
        new: String,
        from: &AuditOrigin,
    ) -> Result<(), GateError> {
        if let Some(problem) = password_problem(&new) {
            return Err(problem);
        }
        let phc = self.hash(new).await?;
        let Some(id) = self.users.take_password_reset(&KeyHash::of(token)).await? else {
            return Err(GateError::NotFound);
        };
        // The link's holder acts as the user.
        let by = AuditOrigin {
            actor: id.clone(),
            ..from.clone()
        };
        let audit = self.audit(&by, "user.password_reset", &id, &["password"]);
        self.users.set_password(&id, &phc, None, &audit).await?;
        tracing::info!(user = %id, "password reset through a link");
        Ok(())
    }

    /// Reserves one password check against the email and the client IP,
    /// atomically: at most [`SIGN_IN_FAILURES_PER_MINUTE`] checks are in flight or
    /// have failed per minute for each, however many arrive at once. Returns the
    /// reserved counters (a successful sign-in gives them back), or the 429 when
    /// either is used up.
    async fn reserve(
        &self,
        email: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Vec<String>, GateError> {
        let limit = [WindowLimit::fixed(
            SIGN_IN_WINDOW,
            SIGN_IN_FAILURES_PER_MINUTE,
        )];
        let mut keys = vec![format!("login:email:{email}")];
        if let Some(ip) = client_ip {
            keys.push(format!("login:ip:{ip}"));
        }
        let mut reserved = Vec::new();
        for key in keys {
            let refused = match self.limiter.check(&key, &limit, Duration::ZERO).await {
                Ok(decision) if decision.allowed => {
                    reserved.push(key);
                    continue;
                }
                Ok(decision) => GateError::TooManyFailures {
                    retry_after: decision.retry_after_secs,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "sign-in throttle unavailable");
                    GateError::BackendUnavailable
                }
            };
            self.release(&reserved).await;
            return Err(refused);
        }
        Ok(reserved)
    }

    /// Gives back reserved checks (the sign-in succeeded, or never ran).
    async fn release(&self, reserved: &[String]) {
        for key in reserved {
            if let Err(e) = self.limiter.release(key, SIGN_IN_WINDOW).await {
                tracing::debug!(error = %e, "could not release a sign-in reservation");
            }
        }
    }
}

/// How long an admin's password-reset link works.
pub const RESET_LINK_TTL: Duration = Duration::from_secs(3600);

/// The 422 for a password too short to be one, if it is.
fn password_problem(password: &str) -> Option<GateError> {
    if password.chars().count() >= MIN_PASSWORD_CHARS && password.len() <= 1024 {
        return None;
    }
    let mut details = serde_json::Map::new();
    details.insert(
        "password".into(),
        format!("must be {MIN_PASSWORD_CHARS} to 1024 characters").into(),
    );
    Some(GateError::Validation(details))
}

/// The 503 for a full password-hashing pool.
fn busy(_: password::PoolBusy) -> GateError {
    GateError::Overloaded { retry_after: 1 }
}
