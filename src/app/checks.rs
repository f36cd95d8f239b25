//! Every check of a config: the config's own (`crate::config`), then what only the
//! modules that use a setting can tell — PostgreSQL and Redis URLs, Redis TLS
//! files, the TLS certificate, JWT keys and the token-signing key — all reported
//! at once. `serve`, `check`, the CLI and reloads load configs through here.

use crate::config::{self, Config, ConfigError, Problem};
use std::path::Path;
use std::sync::Arc;

/// Reads and checks the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    config::load_with(path, &problems)
}

/// Parses and checks config text (`${VAR}` from the environment).
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    config::parse_with_env(text, |name| std::env::var(name).ok(), &problems)
}

/// What a valid config turns off without being wrong: said by `keygate check` and
/// logged as a warning by `serve`.
pub fn notes(c: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if c.store.kind == config::StoreKind::File {
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

/// What the modules behind `c`'s settings find wrong with them.
pub fn problems(c: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    if let Some(tls) = &c.server.tls {
        if let Err(e) = crate::net::tls::ReloadableCert::load(&tls.cert, &tls.key) {
            p.push(Problem::new("server.tls", e.to_string()));
        }
    }
    if let Some(url) = c.store.url.as_deref() {
        if c.store.kind == config::StoreKind::Postgres {
            if let Err(e) = crate::store::postgres::target::PgTarget::parse(url) {
                p.push(Problem::new("store.url", e));
            }
        }
    }
    redis(c, &mut p);
    jwt(c, &mut p);
    p
}

fn redis(c: &Config, p: &mut Vec<Problem>) {
    let r = &c.rate_limit;
    if let Some(url) = &r.redis_url {
        match crate::limit::redis::RedisTarget::parse(url) {
            Err(e) => p.push(Problem::new("rate_limit.redis_url", e)),
            Ok(target) if !target.tls() && r.redis_tls.is_some() => p.push(Problem::new(
                "rate_limit.redis_tls",
                "set, but redis_url does not use TLS (rediss://, rediss+cluster://, rediss+sentinel://)",
            )),
            Ok(_) => {}
        }
    }
    if let Some(tls) = &r.redis_tls {
        if let Err(e) = crate::limit::redis::RedisCerts::load(tls) {
            p.push(Problem::new("rate_limit.redis_tls", e));
        }
    }
}

/// The files the JWT settings name must exist and parse.
fn jwt(c: &Config, p: &mut Vec<Problem>) {
    let j = &c.jwt;
    if let Some(issue) = &j.issue {
        if let Err(e) = crate::auth::jwt::issue::TokenIssuer::new(issue, None, None) {
            p.push(jwt_setup_problem(&e.0));
        }
    }
    if j.enabled {
        if let Err(e) =
            crate::auth::jwt::JwtVerifier::new(j, 1, None, Arc::new(crate::clock::SystemClock))
        {
            p.push(jwt_setup_problem(&e.0));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match config::parse_with_env(text, |_| None, &super::problems) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
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
        for expected in [
            "store.url: invalid URL",
            "store.pool_size: must be between 1 and 64",
            "store.timeout:",
            "rate_limit.redis_url: must start with redis://, rediss://",
            "rate_limit.redis_timeout:",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(expected)),
                "missing {expected} in {p:#?}"
            );
        }
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
        for expected in [
            "store.url: cannot read /nonexistent/pg-ca.pem",
            "rate_limit.redis_tls: set, but redis_url does not use TLS",
            "rate_limit.redis_tls: cannot read /nonexistent/redis-ca.pem",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(expected)),
                "missing {expected} in {p:#?}"
            );
        }
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
