//! [`Accounts`]: the people who hold keys — signing up and signing in — with one
//! set of rules for every door (the management API's token endpoint, the portal).
//! Sign-in checks are throttled per email and per client IP, and every password
//! is hashed on the bounded [`password::PasswordPool`].

pub mod password;

use crate::clock::Clock;
use crate::domain::id::new_id;
use crate::domain::{canonical_email, UserRecord};
use crate::error::GateError;
use crate::limit::{Limiter, Window, WindowLimit};
use crate::store::users::UserStore;
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
            created_at: self.clock.now_utc(),
        };
        self.users.create_user(&user).await?;
        Ok(user)
    }

    /// The user with this email and password. A wrong one (or an unknown email,
    /// which costs the same time) is 401 `invalid_credentials`; past
    /// [`SIGN_IN_FAILURES_PER_MINUTE`] failures for the email or the client IP,
    /// 429 until the minute turns. The email is throttled and looked up in one
    /// form, its [`canonical_email`]: no spelling of it gets guesses of its own.
    pub async fn sign_in(
        &self,
        email: &str,
        password: String,
        client_ip: Option<IpAddr>,
    ) -> Result<UserRecord, GateError> {
        let email = canonical_email(email);
        let reserved = self.reserve(&email, client_ip).await?;
        let checked = async {
            let user = self.users.user_by_email(&email).await?;
            let phc = user.as_ref().map(|u| u.password_hash.clone());
            let ok = self.passwords.verify(password, phc).await.map_err(busy)?;
            Ok::<_, GateError>(user.filter(|_| ok))
        };
        match checked.await {
            // A failed check keeps its reservation: it counts against the limit.
            Ok(None) => Err(GateError::InvalidCredentials),
            Ok(Some(user)) => {
                self.release(&reserved).await;
                Ok(user)
            }
            Err(e) => {
                self.release(&reserved).await;
                Err(e)
            }
        }
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

/// The 503 for a full password-hashing pool.
fn busy(_: password::PoolBusy) -> GateError {
    GateError::Overloaded { retry_after: 1 }
}
