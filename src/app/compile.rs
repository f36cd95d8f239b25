//! The one compile of a config. `crate::config` decodes the YAML and runs the
//! config's own checks; this module parses, exactly once, every setting that a
//! module behind it reads — the credential sources, the key format, the TLS
//! certificate, the PostgreSQL target, the Redis target and its certificates, the
//! token issuer, the JWT keys — reports every problem at once with its YAML path,
//! and keeps what it parsed. `keygate check` is this compile without serving;
//! `serve`, the CLI and reloads build from what it keeps, so a config that `check`
//! accepts starts (name resolution and backends that cannot be reached aside).

use crate::auth::credentials::Source;
use crate::auth::jwt::issue::TokenIssuer;
use crate::auth::jwt::JwtVerifier;
use crate::auth::key_format::KeyFormat;
use crate::clock::Clock;
use crate::config::{self, Config, ConfigError, Draft, LimitBackend, Problem, StoreKind};
use crate::dialect::Dialect;
use crate::limit::redis::{RedisCerts, RedisTarget};
use crate::net::tls::ReloadableCert;
use crate::portal::branding::Branding;
use crate::store::postgres::target::PgTarget;
use std::path::Path;
use std::sync::Arc;

/// Where the Redis limiter connects, and with which certificates.
#[derive(Clone, Debug)]
pub struct RedisSetup {
    /// `rate_limit.redis_url`, parsed.
    pub target: RedisTarget,
    /// `rate_limit.redis_tls`, read (empty without it).
    pub certs: RedisCerts,
}

/// A config and every part of it parsed: what the services are built from.
pub struct Compiled {
    /// The decoded config, for the settings services read as plain values.
    pub config: Config,
    /// `api_keys.format`, `prefix` and `accept_prefixes`.
    pub key_format: KeyFormat,
    /// `api_keys.sources`, in order.
    pub sources: Vec<Source>,
    /// `server.tls`, loaded.
    pub tls: Option<Arc<ReloadableCert>>,
    /// `store.url` of the PostgreSQL store.
    pub postgres: Option<PgTarget>,
    /// The Redis limiter's target (`rate_limit.backend: redis`).
    pub redis: Option<RedisSetup>,
    /// The token endpoint's signer (`jwt.issue`).
    pub issuer: Option<Arc<TokenIssuer>>,
    /// The JWT verifier, when `jwt.enabled` or `jwt.issue` asks for one; its remote
    /// JWKS is not fetched yet.
    pub jwt: Option<JwtVerifier>,
    /// `dialect:`, its templates compiled and tried against samples.
    pub dialect: Arc<Dialect>,
    /// `portal.branding`, its logo file read.
    pub branding: Arc<Branding>,
}

/// Which token issuer the compiled JWT verifier trusts.
#[derive(Clone)]
pub enum Issuer {
    /// The one `jwt.issue` describes, built by this compile (start, `check`, CLI).
    FromConfig,
    /// The running process's (a reload: `jwt.issue` changes only on restart, and
    /// is still checked).
    Running(Option<Arc<TokenIssuer>>),
}

/// Reads and compiles the config at `path`, judging time on `clock`.
pub fn load(path: &Path, clock: Arc<dyn Clock>) -> Result<Compiled, ConfigError> {
    compile_text(&config::read(path)?, clock, Issuer::FromConfig)
}

/// Compiles config text (`${VAR}` from the environment).
pub fn compile_text(
    text: &str,
    clock: Arc<dyn Clock>,
    issuer: Issuer,
) -> Result<Compiled, ConfigError> {
    compile(
        config::draft(text, |name| std::env::var(name).ok())?,
        clock,
        issuer,
    )
}

/// Compiles a decoded config: parses every part, and lists every problem of the
/// draft and of the parts at once.
pub fn compile(
    mut draft: Draft,
    clock: Arc<dyn Clock>,
    issuer: Issuer,
) -> Result<Compiled, ConfigError> {
    let mut found = Vec::new();
    let parts = Parts::parse(&draft.config, clock, issuer, &mut found);
    draft.report(found);
    let config = draft.finish()?;
    parts.complete(config).ok_or_else(|| {
        // Unreachable: a part that did not parse reported a problem, and `finish`
        // refused the draft. Said rather than assumed.
        ConfigError::Invalid(vec![Problem::new("", "internal: a part failed silently")])
    })
}

/// The parsed parts; `None` where the part reported a problem.
struct Parts {
    key_format: Option<KeyFormat>,
    sources: Option<Vec<Source>>,
    tls: Option<Option<Arc<ReloadableCert>>>,
    postgres: Option<Option<PgTarget>>,
    redis: Option<Option<RedisSetup>>,
    issuer: Option<Option<Arc<TokenIssuer>>>,
    jwt: Option<Option<JwtVerifier>>,
    dialect: Option<Dialect>,
    branding: Option<Branding>,
}

impl Parts {
    fn parse(c: &Config, clock: Arc<dyn Clock>, issuer: Issuer, p: &mut Vec<Problem>) -> Self {
        let key_format = KeyFormat::from_config(&c.api_keys)
            .map_err(|problems| {
                p.extend(
                    problems
                        .into_iter()
                        .map(|e| Problem::new("api_keys.format", e.0)),
                )
            })
            .ok();
        let sources = Source::parse_all(&c.api_keys.sources)
            .map_err(|problems| p.extend(problems))
            .ok();
        let tls = match &c.server.tls {
            None => Some(None),
            Some(tls) => ReloadableCert::load(&tls.cert, &tls.key)
                .map(|cert| Some(Arc::new(cert)))
                .map_err(|e| p.push(Problem::new("server.tls", e.to_string())))
                .ok(),
        };
        let postgres = match (c.store.kind, c.store.url.as_deref()) {
            (StoreKind::Postgres, Some(url)) => PgTarget::parse(url)
                .map(Some)
                .map_err(|e| p.push(Problem::new("store.url", e)))
                .ok(),
            _ => Some(None),
        };
        let redis = redis(c, p);
        // `jwt.issue` is checked even on a reload, where the running issuer stays:
        // a file that a restart would refuse is refused now.
        let configured = match &c.jwt.issue {
            None => Some(None),
            Some(issue) => {
                TokenIssuer::new(issue, c.jwt.issuer.clone(), c.jwt.audience.first().cloned())
                    .map(|i| Some(Arc::new(i)))
                    .map_err(|e| p.push(jwt_setup_problem(&e.0)))
                    .ok()
            }
        };
        let issuer = match issuer {
            Issuer::FromConfig => configured,
            Issuer::Running(running) => configured.map(|_| running),
        };
        let jwt = match &issuer {
            Some(issuer) => JwtVerifier::for_config(c, issuer.as_deref(), clock)
                .map_err(|e| p.push(jwt_setup_problem(&e.0)))
                .ok(),
            // The verifier trusts the issuer's key, so without the issuer (whose
            // problem is said) none is kept; its own keys are still checked.
            None => {
                if c.jwt.enabled {
                    if let Err(e) = JwtVerifier::new(&c.jwt, 1, None, clock) {
                        p.push(jwt_setup_problem(&e.0));
                    }
                }
                None
            }
        };
        let dialect = Dialect::compile(&c.dialect)
            .map_err(|problems| p.extend(problems))
            .ok();
        // A portal that is off keeps its branding unread: its files need not exist.
        let branding = if c.portal.enabled {
            Branding::compile(&c.portal)
                .map_err(|problems| p.extend(problems))
                .ok()
        } else {
            Some(Branding::default())
        };
        Parts {
            key_format,
            sources,
            tls,
            postgres,
            redis,
            issuer,
            jwt,
            dialect,
            branding,
        }
    }

    fn complete(self, config: Config) -> Option<Compiled> {
        Some(Compiled {
            config,
            key_format: self.key_format?,
            sources: self.sources?,
            tls: self.tls?,
            postgres: self.postgres?,
            redis: self.redis?,
            issuer: self.issuer?,
            jwt: self.jwt?,
            dialect: Arc::new(self.dialect?),
            branding: Arc::new(self.branding?),
        })
    }
}

/// `rate_limit.redis_url` and `redis_tls`: parsed whenever set (a typo is found
/// before the backend is switched on), kept when the backend is Redis.
fn redis(c: &Config, p: &mut Vec<Problem>) -> Option<Option<RedisSetup>> {
    let r = &c.rate_limit;
    let before = p.len();
    let target = match &r.redis_url {
        None => None,
        Some(url) => match RedisTarget::parse(url) {
            Err(e) => {
                p.push(Problem::new("rate_limit.redis_url", e));
                None
            }
            Ok(target) if !target.tls() && r.redis_tls.is_some() => {
                p.push(Problem::new(
                    "rate_limit.redis_tls",
                    "set, but redis_url does not use TLS (rediss://, rediss+cluster://, rediss+sentinel://)",
                ));
                None
            }
            Ok(target) => Some(target),
        },
    };
    let certs = match &r.redis_tls {
        None => RedisCerts::default(),
        Some(tls) => RedisCerts::load(tls).unwrap_or_else(|e| {
            p.push(Problem::new("rate_limit.redis_tls", e));
            RedisCerts::default()
        }),
    };
    if p.len() > before {
        return None;
    }
    match (r.backend, target) {
        (LimitBackend::Redis, Some(target)) => Some(Some(RedisSetup { target, certs })),
        // Without a URL the config's own check has said so.
        (LimitBackend::Redis, None) => None,
        (LimitBackend::Memory, _) => Some(None),
    }
}

/// A JWT setup error (`keys[1]: …`, `issue: …`) located under `jwt`.
fn jwt_setup_problem(message: &str) -> Problem {
    match message.split_once(": ") {
        Some((field, rest))
            if field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_[]".contains(&b)) =>
        {
            Problem::new(format!("jwt.{field}"), rest)
        }
        _ => Problem::new("jwt", message),
    }
}

/// Windows of a tier that can never be reached: a shorter one allowing more than a
/// longer one (`per_second: 20` beside `per_minute: 5`). Not wrong, but surely not
/// what was meant.
fn unreachable_windows(c: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, t) in &c.tiers {
        let set: Vec<(&str, u64)> = t
            .windows()
            .into_iter()
            .filter_map(|(w, v)| v.filter(|v| *v > 0).map(|v| (w, v)))
            .collect();
        for (i, (short, allowed)) in set.iter().enumerate() {
            if let Some((long, fewer)) = set[i + 1..].iter().find(|(_, l)| l < allowed) {
                notes.push(format!(
                    "tiers.{name}.{short}: {allowed} can never be reached: {long} allows only \
                     {fewer} (a shorter window allows at most what a longer one does)"
                ));
            }
        }
    }
    notes
}

/// What a valid config turns off without being wrong: said by `keygate check` and
/// logged as a warning by `serve`.
pub fn notes(c: &Config) -> Vec<String> {
    let mut notes = unreachable_windows(c);
    if c.store.kind == StoreKind::File {
        if c.portal.enabled {
            notes.push(
                "portal.enabled: the portal is off: it needs a writable store (sqlite or postgres), \
                 and the file store is read-only"
                    .to_string(),
            );
        }
        if c.management.enabled {
            notes.push(
                "management.enabled: the management API is off: it needs a writable store \
                 (sqlite or postgres), and the file store is read-only"
                    .to_string(),
            );
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn problems(text: &str) -> Vec<String> {
        let compiled = config::draft(text, |_| None)
            .and_then(|draft| compile(draft, Arc::new(SystemClock), Issuer::FromConfig));
        match compiled {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// Every `expected` line begins one of the problems `p`.
    fn assert_lists(p: &[String], expected: &[&str]) {
        for expected in expected {
            assert!(
                p.iter().any(|l| l.starts_with(expected)),
                "missing {expected} in {p:#?}"
            );
        }
    }

    #[test]
    fn a_shorter_window_allowing_more_than_a_longer_one_is_noted() {
        let c = config::draft(
            "upstream: { url: 'http://x:1' }\ntiers:\n  free: { per_second: 20, per_minute: 5, per_day: 1000 }\n  fine: { per_second: 10, per_minute: 30, per_day: 30 }\n",
            |_| None,
        )
        .unwrap()
        .finish()
        .unwrap();
        assert_eq!(
            notes(&c),
            [
                "tiers.free.per_second: 20 can never be reached: per_minute allows only 5 \
              (a shorter window allows at most what a longer one does)"
            ]
        );
    }

    #[test]
    fn credential_sources_and_the_key_format_are_parsed_once_with_every_problem() {
        let text = "\
upstream: { url: 'http://127.0.0.1:3000' }
tiers: { free: { per_minute: 1 } }
api_keys: { sources: [cookie, 'query:a b', bearer, Bearer], prefix: 'KG!', format: '{prefix}-{oops}' }
";
        let p = problems(text);
        assert_lists(
            &p,
            &[
                "api_keys.sources[0]: `cookie` is not a source",
                "api_keys.sources[1]: `query:a b` is not a source",
                "api_keys.sources[3]: duplicate source",
                "api_keys.prefix:",
                "api_keys.format: unknown placeholder `{oops}`",
            ],
        );
        let ok = "\
upstream: { url: 'http://127.0.0.1:3000' }
tiers: { free: { per_minute: 1 } }
api_keys: { sources: ['header:X-Key', 'query:api_key', bearer], prefix: acme }
";
        let c = config::draft(ok, |_| None)
            .and_then(|d| compile(d, Arc::new(SystemClock), Issuer::FromConfig))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.sources,
            vec![
                Source::Header(http::HeaderName::from_static("x-key")),
                Source::Query("api_key".into()),
                Source::Bearer
            ]
        );
        assert_eq!(
            c.key_format,
            KeyFormat::parse(crate::auth::key_format::DEFAULT_FORMAT, "acme", &[]).unwrap()
        );
    }

    #[test]
    fn shared_backend_settings_are_checked() {
        let text = "\
upstream: { url: 'http://127.0.0.1:3000' }
tiers: { free: { per_minute: 1 } }
store: { kind: postgres, url: 'postgres://u@h:notaport/db', pool_size: 0, timeout: 0s }
rate_limit: { backend: redis, redis_url: 'rediss+ring://cache:6380', redis_timeout: 0ms }
";
        let p = problems(text);
        assert_lists(
            &p,
            &[
                "store.url: invalid URL",
                "store.pool_size: must be between 1 and 64",
                "store.timeout:",
                "rate_limit.redis_url: must start with redis://, rediss://",
                "rate_limit.redis_timeout:",
            ],
        );
        let ok = "\
upstream: { url: 'http://127.0.0.1:3000' }
tiers: { free: { per_minute: 1 } }
store: { kind: postgres, url: 'postgres://u@h:5432/db' }
rate_limit: { backend: redis, redis_url: 'redis+sentinel://s1:26379,s2:26379/mymaster' }
";
        assert!(problems(ok).is_empty(), "{:#?}", problems(ok));
        // TLS to the backends: certificate files are read by `check`, and TLS settings
        // on a plain URL are refused rather than ignored.
        let tls = "\
upstream: { url: 'http://127.0.0.1:3000' }
tiers: { free: { per_minute: 1 } }
store: { kind: postgres, url: 'postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/pg-ca.pem' }
rate_limit: { backend: redis, redis_url: 'redis://cache:6379', redis_tls: { ca_file: /nonexistent/redis-ca.pem, cert_file: /x.pem } }
";
        let p = problems(tls);
        assert_lists(
            &p,
            &[
                "store.url: cannot read /nonexistent/pg-ca.pem",
                "rate_limit.redis_tls: set, but redis_url does not use TLS",
                "rate_limit.redis_tls: cannot read /nonexistent/redis-ca.pem",
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["cache".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let ok = format!(
        "\
upstream: {{ url: 'http://127.0.0.1:3000' }}
tiers: {{ free: {{ per_minute: 1 }} }}
store: {{ kind: postgres, url: 'postgres://u@h/db?sslmode=verify-ca&sslrootcert={ca}' }}
rate_limit: {{ backend: redis, redis_url: 'rediss+cluster://a:7000,b:7000', redis_tls: {{ ca_file: {ca} }} }}
",
        ca = ca.display()
    );
        assert!(problems(&ok).is_empty(), "{:#?}", problems(&ok));
    }
}
