//! Test kit: every service keygate builds over one fresh SQLite store, all on one
//! manual clock, for in-process tests of rules that depend on time.
#![allow(clippy::unwrap_used)]

use crate::accounts::Accounts;
use crate::auth::authenticator::Authenticator;
use crate::auth::cache::KeyCache;
use crate::auth::jwt::issue::TokenIssuer;
use crate::auth::jwt::JwtVerifier;
use crate::auth::verify::KeyVerifier;
use crate::clock::{Clock, ManualClock};
use crate::domain::UserRecord;
use crate::keys::service::KeyService;
use crate::ledger::usage::UsageRecorder;
use crate::limit::LocalLimiter;
use crate::management::Management;
use crate::portal::Portal;
use crate::proxy::runtime::Runtime;
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
    /// The compiled config.
    pub rt: Runtime,
    /// The management API.
    pub management: Management,
    /// The portal.
    pub portal: Portal,
    /// The store, as the user store.
    pub users: Arc<SqliteStore>,
}

impl Services {
    /// Everything over [`CONFIG`].
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_800_000_000_000);
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let config = crate::config::parse(CONFIG).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("k.db"))
                .unwrap()
                .with_clock(shared_clock.clone()),
        );
        let issuer =
            Arc::new(TokenIssuer::new(config.jwt.issue.as_ref().unwrap(), None, None).unwrap());
        let jwt = JwtVerifier::for_config(&config, Some(&issuer), shared_clock.clone()).unwrap();
        let cache = KeyCache::new(&config.cache, shared_clock.clone());
        let auth = Arc::new(Authenticator::new(
            KeyVerifier::new(store.clone(), cache.clone()),
            jwt.map(Arc::new),
            shared_clock.clone(),
        ));
        let limiter = Arc::new(LocalLimiter::new(shared_clock.clone()));
        let keys = Arc::new(KeyService::new(
            store.clone(),
            Some(cache),
            shared_clock.clone(),
        ));
        let accounts = Arc::new(Accounts::new(
            store.clone(),
            limiter.clone(),
            shared_clock.clone(),
        ));
        let usage = Arc::new(UsageRecorder::new());
        let management = Management::new(
            store.clone(),
            keys.clone(),
            Some(accounts.clone()),
            Some(issuer),
            auth,
            usage.clone(),
            shared_clock.clone(),
        );
        let portal = Portal::new(
            store.clone(),
            keys,
            Some(accounts),
            limiter,
            usage,
            shared_clock,
        );
        Services {
            _dir: dir,
            clock,
            rt: Runtime::build(config, true).unwrap(),
            management,
            portal,
            users: store,
        }
    }

    /// Adds a user with this email and password.
    pub async fn add_user(&self, email: &str, password: &str) {
        let user = UserRecord {
            id: format!("usr_{}", email.replace(['@', '.'], "_")),
            email: email.into(),
            name: None,
            password_hash: crate::accounts::password::hash(password).unwrap(),
            is_admin: false,
            created_at: self.clock.now_utc(),
        };
        self.users.create_user(&user).await.unwrap();
    }
}
