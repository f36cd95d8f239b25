//! Test kit: the services `serve` builds ([`super::root::build_shared`]) from the
//! compile `serve` runs, over one
//! fresh SQLite store and one manual clock, for in-process tests of rules that
//! depend on time.
#![allow(clippy::unwrap_used)]

use crate::clock::{Clock, ManualClock};
use crate::domain::UserRecord;
use crate::management::Management;
use crate::portal::Portal;
use crate::proxy::runtime::Runtime;
use crate::proxy::Shared;
use crate::store::sqlite::SqliteStore;
use crate::store::users::UserStore;
use std::sync::Arc;

/// A config with token issuing and the portal on.
pub const CONFIG: &str = "\
upstream: { url: 'http://127.0.0.1:1' }
tiers: { free: { per_minute: 100, max_keys: 5 } }
jwt:
  issue: { alg: HS256, secret: 'an-issuing-secret-of-at-least-32-bytes!!', access_ttl: 10m, refresh_ttl: 1h }
management: { registration: open }
portal: { enabled: true, session_ttl: 1h }
";

/// The services over a fresh store, everything on `clock`.
pub struct Services {
    _dir: tempfile::TempDir,
    /// The clock every service reads.
    pub clock: ManualClock,
    /// Everything `serve` builds.
    pub shared: Arc<Shared>,
    /// The same store, opened again for fixtures (as the CLI would).
    pub users: Arc<SqliteStore>,
}

impl Services {
    /// Everything over [`CONFIG`].
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_800_000_000_000);
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut draft = crate::config::draft(CONFIG, |_| None).unwrap();
        draft.config.store.path = dir.path().join("k.db");
        let compiled = super::compile::compile(
            draft,
            shared_clock.clone(),
            super::compile::Issuer::FromConfig,
        )
        .unwrap();
        let config = &compiled.config;
        let users = Arc::new(
            SqliteStore::open(&config.store.path)
                .unwrap()
                .with_clock(shared_clock.clone()),
        );
        let shared = super::root::build_shared(compiled, shared_clock).unwrap();
        Services {
            _dir: dir,
            clock,
            shared,
            users,
        }
    }

    /// The compiled config in force.
    pub fn rt(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// The management API.
    pub fn management(&self) -> &Management {
        &self.shared.management
    }

    /// The portal.
    pub fn portal(&self) -> &Portal {
        &self.shared.portal
    }

    /// Adds a user with this email and password.
    pub async fn add_user(&self, email: &str, password: &str) {
        let user = UserRecord {
            id: format!("usr_{}", email.replace(['@', '.'], "_")),
            email: email.into(),
            name: None,
            password_hash: crate::accounts::password::hash(password).unwrap(),
            is_admin: false,
            disabled: false,
            created_at: self.clock.now_utc(),
        };
        self.users
            .create_user(
                &user,
                &crate::domain::AuditEntry::cli("user.created", &user.id, user.created_at),
            )
            .await
            .unwrap();
    }
}
