//! The composition root: the one place where keygate's services are built from a
//! config and a clock — the store, the key cache and its change feed, the limiter,
//! the authenticator, the key service, accounts, the management API, the portal,
//! the live-request watch. `serve` builds them here, the CLI opens its store here,
//! and the in-process tests build the same services here on a manual clock
//! ([`super::testkit`]).

use super::compile::{Compiled, RedisSetup};
use crate::accounts::Accounts;
use crate::auth::authenticator::Authenticator;
use crate::auth::cache::KeyCache;
use crate::auth::jwt::JwtSetupError;
use crate::auth::verify::KeyVerifier;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreKind};
use crate::keys::accounts::AccountService;
use crate::keys::service::KeyService;
use crate::ledger::usage::UsageRecorder;
use crate::limit::redis::RedisLimiter;
use crate::limit::{FallbackLimiter, Limiter, LocalLimiter};
use crate::management::Management;
use crate::obs::metrics;
use crate::portal::Portal;
use crate::proxy::live_streams::LiveStreams;
use crate::proxy::runtime::{Runtime, RuntimeError};
use crate::proxy::Shared;
use crate::store::accounts::AccountStore;
use crate::store::file::{FileStore, KeyFileError};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::users::UserStore;
use crate::store::{KeyStore, StoreChange, StoreError};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Why keygate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The runtime could not be compiled.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    /// A listen address is unusable.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The JWT configuration could not be loaded.
    #[error("{0}")]
    Jwt(#[from] JwtSetupError),
    /// The file store's key file is invalid (every problem listed).
    #[error("{0}")]
    KeyFile(#[from] KeyFileError),
    /// The trace exporter could not start.
    #[error("{0}")]
    Tracing(#[from] crate::obs::traces::TracingError),
    /// A configured feature is not available in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// The opened store: keys, and users where the backend is writable.
pub struct Stores {
    /// Keys.
    pub keys: Arc<dyn KeyStore>,
    /// Users and refresh tokens (not with the read-only file store).
    pub users: Option<Arc<dyn UserStore>>,
    /// Accounts (not with the read-only file store).
    pub accounts: Option<Arc<dyn AccountStore>>,
    /// The webhook outbox (not with the read-only file store).
    pub events: Option<Arc<dyn crate::store::events::EventStore>>,
}

/// Opens the configured store, judging time on `clock`.
pub fn open_store(compiled: &Compiled, clock: Arc<dyn Clock>) -> Result<Stores, StartError> {
    let config = &compiled.config;
    match config.store.kind {
        StoreKind::Sqlite => {
            let store = Arc::new(SqliteStore::open(&config.store.path)?.with_clock(clock));
            Ok(Stores {
                keys: store.clone(),
                users: Some(store.clone()),
                accounts: Some(store.clone()),
                events: Some(store),
            })
        }
        StoreKind::Postgres => {
            let target = compiled.postgres.clone().ok_or_else(|| {
                StartError::Unsupported("store.url: required with store.kind postgres".into())
            })?;
            let store = Arc::new(
                PostgresStore::open_target(
                    target,
                    config.store.pool_size,
                    config.store.timeout.get(),
                )?
                .with_clock(clock),
            );
            Ok(Stores {
                keys: store.clone(),
                users: Some(store.clone()),
                accounts: Some(store.clone()),
                events: Some(store),
            })
        }
        StoreKind::File => Ok(Stores {
            keys: Arc::new(open_key_file(config)?),
            users: None,
            accounts: None,
            events: None,
        }),
    }
}

/// Reads and checks the file store's key file (`store.file`) against the configured
/// tiers: every problem is listed in the error.
pub fn open_key_file(config: &Config) -> Result<FileStore, KeyFileError> {
    let path = config.store.file.clone().unwrap_or_default();
    let tiers = config.tier_names().into_iter().map(String::from).collect();
    FileStore::open(&path, tiers)
}

/// Builds the shared request-path state from a compiled config.
pub fn build_shared(compiled: Compiled, clock: Arc<dyn Clock>) -> Result<Arc<Shared>, StartError> {
    let Stores {
        keys: store,
        users,
        accounts: account_store,
        events,
    } = open_store(&compiled, clock.clone())?;
    let Compiled {
        config,
        key_format,
        sources,
        redis,
        issuer,
        jwt,
        dialect,
        branding,
        ..
    } = compiled;
    let writable = config.store.kind != StoreKind::File;
    let tracing = match &config.telemetry {
        Some(t) => Some(crate::obs::traces::Tracing::start(t)?),
        None => None,
    };
    let cache = KeyCache::new(&config.cache, clock.clone());
    let live = Arc::new(LiveStreams::new(
        store.clone(),
        clock.clone(),
        Arc::default(),
    ));
    store.watch(forget_changed_keys(cache.clone(), live.clone()));
    let limiter = build_limiter(&config, redis, clock.clone());
    let jwt = jwt.map(Arc::new);
    let runtime = Runtime::build(&config, key_format, sources, writable, dialect, branding)?;
    let usage = Arc::new(UsageRecorder::new());
    let auth = Arc::new(Authenticator::new(
        KeyVerifier::new(store.clone(), cache),
        jwt,
        clock.clone(),
    ));
    let account_service = account_store.map(|a| {
        Arc::new(AccountService::new(
            a,
            users.clone(),
            Some(auth.keys().cache().clone()),
            clock.clone(),
        ))
    });
    let keys = Arc::new(
        KeyService::new(
            store.clone(),
            Some(auth.keys().cache().clone()),
            clock.clone(),
        )
        .with_accounts(account_service),
    );
    let accounts = users.map(|u| Arc::new(Accounts::new(u, limiter.clone(), clock.clone())));
    let (announce, announced) = match events {
        Some(_) => {
            let (sink, queue) = crate::events::sink::EventSink::new();
            (Some(sink), Some(queue))
        }
        None => (None, None),
    };
    Ok(Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        management: Management::new(
            store.clone(),
            keys.clone(),
            accounts.clone(),
            issuer.clone(),
            auth.clone(),
            usage.clone(),
            clock.clone(),
        ),
        portal: Portal::new(
            store.clone(),
            keys,
            accounts,
            limiter.clone(),
            usage.clone(),
            clock.clone(),
        )
        .with_events(events.clone()),
        auth,
        usage,
        credits: crate::ledger::credits::CreditLedger::new(store.clone()),
        store,
        limiter,
        clock,
        issuer,
        live,
        events,
        announce,
        announced: parking_lot::Mutex::new(announced),
        tracing,
    }))
}

/// The change-feed handler: drops what another replica changed from this one's
/// cache, and checks the live requests of a changed key again.
fn forget_changed_keys(cache: KeyCache, live: Arc<LiveStreams>) -> crate::store::ChangeHandler {
    Arc::new(move |change| match change {
        StoreChange::Key { id, changed_at_ms } => {
            cache.invalidate_key_id(&id);
            live.key_changed(&id);
            if let Some(at) = changed_at_ms {
                let now = SystemClock.now_ms();
                metrics::KEY_CHANGE_LAG.observe(now.saturating_sub(at) as f64 / 1000.0);
            }
        }
        StoreChange::Account { id, changed_at_ms } => {
            cache.invalidate_account(&id);
            // Rare (an admin's change): every live stream is checked again, which
            // finds a suspended account's.
            live.recheck_all();
            if let Some(at) = changed_at_ms {
                let now = SystemClock.now_ms();
                metrics::KEY_CHANGE_LAG.observe(now.saturating_sub(at) as f64 / 1000.0);
            }
        }
        StoreChange::All => {
            cache.feed_listening();
            live.recheck_all();
        }
        StoreChange::Unwatched => cache.feed_lost(),
    })
}

/// The configured rate-limit backend: memory, or Redis at the compiled target.
fn build_limiter(
    config: &Config,
    redis: Option<RedisSetup>,
    clock: Arc<dyn Clock>,
) -> Arc<dyn Limiter> {
    let rl = &config.rate_limit;
    match redis {
        None => Arc::new(LocalLimiter::new(clock)),
        Some(RedisSetup { target, certs }) => {
            let redis = RedisLimiter::connect(target, certs, rl.redis_timeout.get(), clock.clone());
            Arc::new(FallbackLimiter::new(
                Arc::new(redis),
                rl.on_backend_error,
                clock,
            ))
        }
    }
}
