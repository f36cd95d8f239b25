//! Checks serde cannot make: addresses, URLs, names, and references between sections.

use super::types::*;
use super::Problem;
use std::net::SocketAddr;

/// Algorithms keygate knows; `none` is deliberately absent.
pub const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// Returns every semantic problem of a structurally valid config that the config
/// itself can tell. What only the modules using a setting know (URL syntax of the
/// backends, certificates, key files) is parsed by the compile, `src/app/compile.rs`.
pub fn validate(c: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    server(&c.server, &mut p);
    upstream(&c.upstream, &mut p);
    store(&c.store, &mut p);
    cache(&c.cache, &mut p);
    api_keys(&c.api_keys, &mut p);
    jwt(&c.jwt, &mut p);
    tiers(c, &mut p);
    rate_limit(&c.rate_limit, &mut p);
    routes(&c.routes, &mut p);
    forward(&c.forward, &mut p);
    management(&c.management, &mut p);
    portal(c, &mut p);
    dialect(c, &mut p);
    audit(&c.audit, &mut p);
    webhooks(&c.webhooks, &mut p);
    if let Some(t) = &c.telemetry {
        telemetry(t, &mut p);
    }
    authorizer(c, &mut p);
    for (i, level) in c.credits.low_at.iter().enumerate() {
        if let Err(why) = level.threshold() {
            p.push(Problem::new(format!("credits.low_at[{i}]"), why));
        }
    }
    if let Some(cors) = &c.cors {
        self::cors(cors, &mut p);
    }
    p
}

/// `audit.retention`: none (`0s`), or at least a day and at most 100 years (a
/// typo such as `400s` for `400d` would delete the log within the hour).
fn audit(a: &crate::config::types::AuditConfig, p: &mut Vec<Problem>) {
    let r = a.retention.get();
    let day = std::time::Duration::from_secs(86_400);
    if !r.is_zero() && (r < day || r > day * 36_525) {
        p.push(Problem::new(
            "audit.retention",
            "must be between 1d and 36525d, or 0s to keep every entry",
        ));
    }
}

/// `webhooks`: each URL http(s) and named once, known event types, a secret long
/// enough to sign with, a timeout between 1s and 60s.
fn webhooks(hooks: &[crate::config::types::WebhookConfig], p: &mut Vec<Problem>) {
    let mut names = std::collections::HashSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        match crate::domain::event::receiver_name(&h.url) {
            Ok(name) => {
                if !names.insert(name.clone()) {
                    p.push(Problem::new(at("url"), format!("{name} is listed twice")));
                }
            }
            Err(why) => p.push(Problem::new(at("url"), why)),
        }
        for e in h.events.iter().flatten() {
            if !crate::domain::event::EVENT_TYPES.contains(&e.as_str()) {
                p.push(Problem::new(
                    at("events"),
                    format!(
                        "unknown event type `{e}` (expected one of {})",
                        crate::domain::event::EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if h.events.as_ref().is_some_and(|e| e.is_empty()) {
            p.push(Problem::new(
                at("events"),
                "is empty: list the types to send, or leave it out for every type",
            ));
        }
        if h.secret.expose().chars().count() < 16 {
            p.push(Problem::new(at("secret"), "must be at least 16 characters"));
        }
        let t = h.timeout.get();
        if t < std::time::Duration::from_secs(1) || t > std::time::Duration::from_secs(60) {
            p.push(Problem::new(at("timeout"), "must be between 1s and 60s"));
        }
    }
}

/// `authorizer`: a listen address of its own, and addresses or CIDR ranges to trust.
fn authorizer(c: &Config, p: &mut Vec<Problem>) {
    let a = &c.authorizer;
    if let Some(listen) = &a.listen {
        match listen.parse::<SocketAddr>() {
            Err(_) => p.push(Problem::new(
                "authorizer.listen",
                format!("`{listen}` is not an IP:port address"),
            )),
            Ok(addr) if addr.port() != 0 => {
                let taken = [&c.server.listen, &c.server.admin_listen]
                    .into_iter()
                    .any(|other| other.parse::<SocketAddr>().ok() == Some(addr));
                if taken {
                    p.push(Problem::new(
                        "authorizer.listen",
                        format!("{addr} is already server.listen or server.admin_listen"),
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    for (i, range) in a.trust_forwarded_from.iter().enumerate() {
        if crate::domain::key::parse_network(range.trim()).is_none() {
            p.push(Problem::new(
                format!("authorizer.trust_forwarded_from[{i}]"),
                format!("`{range}` is not an IP address or CIDR range"),
            ));
        }
    }
}

/// `telemetry`: an http(s) collector address, a ratio between 0 and 1, a service
/// name, headers that can be sent, a timeout between 1s and 60s.
fn telemetry(t: &crate::config::types::TelemetryConfig, p: &mut Vec<Problem>) {
    match t.otlp_endpoint.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty()) => {}
        _ => p.push(Problem::new(
            "telemetry.otlp_endpoint",
            format!(
                "`{}` is not an http(s) URL such as http://collector:4318",
                t.otlp_endpoint
            ),
        )),
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        p.push(Problem::new(
            "telemetry.sample_ratio",
            "must be between 0.0 (no trace) and 1.0 (every trace)",
        ));
    }
    if t.service_name.trim().is_empty() {
        p.push(Problem::new("telemetry.service_name", "must not be empty"));
    }
    for (name, value) in &t.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.push(Problem::new(
                format!("telemetry.headers.{name}"),
                "is not a valid header name",
            ));
        } else if http::HeaderValue::from_str(value.expose()).is_err() {
            p.push(Problem::new(
                format!("telemetry.headers.{name}"),
                "has a character a header value cannot carry",
            ));
        }
    }
    let timeout = t.timeout.get();
    if timeout < std::time::Duration::from_secs(1) || timeout > std::time::Duration::from_secs(60) {
        p.push(Problem::new(
            "telemetry.timeout",
            "must be between 1s and 60s",
        ));
    }
}

fn server(s: &ServerConfig, p: &mut Vec<Problem>) {
    let listen = s.listen.parse::<SocketAddr>();
    if listen.is_err() {
        p.push(Problem::new(
            "server.listen",
            format!("`{}` is not an IP:port address", s.listen),
        ));
    }
    let admin = s.admin_listen.parse::<SocketAddr>();
    if admin.is_err() {
        p.push(Problem::new(
            "server.admin_listen",
            format!("`{}` is not an IP:port address", s.admin_listen),
        ));
    }
    if let (Ok(a), Ok(b)) = (listen, admin) {
        if a == b && a.port() != 0 {
            p.push(Problem::new(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
    }
    for (field, d) in [
        ("server.header_timeout", s.header_timeout),
        ("server.idle_timeout", s.idle_timeout),
    ] {
        if d.get().is_zero() || d.get() > std::time::Duration::from_secs(3600) {
            p.push(Problem::new(field, "must be between 1ms and 1h"));
        }
    }
    if s.body_timeout.get().is_zero() || s.body_timeout.get() > std::time::Duration::from_secs(3600)
    {
        p.push(Problem::new(
            "server.body_timeout",
            "must be between 1ms and 1h",
        ));
    }
    // Pingora refuses heads over 1 MiB itself; below 1 KiB real clients fail.
    if !(1024..=1_048_575).contains(&s.max_header_bytes) {
        p.push(Problem::new(
            "server.max_header_bytes",
            "must be between 1024 and 1048575",
        ));
    }
    if !(1..=10_000).contains(&s.h2_max_concurrent_streams) {
        p.push(Problem::new(
            "server.h2_max_concurrent_streams",
            "must be between 1 and 10000",
        ));
    }
    if s.threads == 0 || s.threads > 256 {
        p.push(Problem::new("server.threads", "must be between 1 and 256"));
    }
    if let Some(tls) = &s.tls {
        for (name, path) in [("cert", &tls.cert), ("key", &tls.key)] {
            if !path.is_file() {
                p.push(Problem::new(
                    format!("server.tls.{name}"),
                    format!("file {} does not exist", path.display()),
                ));
            }
        }
    }
}

/// Checks an upstream URL: `http` or `https`, a host, an optional port, no path.
pub fn check_upstream_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}`: a path or query on the upstream URL is not supported"
        ));
    }
    Ok(())
}

/// Checks that `protocol` can be spoken to `url` (`h2` needs TLS, `h2c` needs
/// cleartext); a URL that is wrong in itself is reported by [`check_upstream_url`].
pub fn check_upstream_protocol(url: &str, protocol: UpstreamProtocol) -> Result<(), String> {
    let tls = match url.parse::<http::Uri>() {
        Ok(uri) => uri.scheme_str() == Some("https"),
        Err(_) => return Ok(()),
    };
    match (protocol, tls) {
        (UpstreamProtocol::H2, false) => Err(format!(
            "`h2` is HTTP/2 over TLS and `{url}` is cleartext: use an https:// URL, or `h2c` \
             for cleartext HTTP/2"
        )),
        (UpstreamProtocol::H2c, true) => Err(format!(
            "`h2c` is cleartext HTTP/2 and `{url}` is TLS: use `h2` for HTTP/2 over TLS"
        )),
        _ => Ok(()),
    }
}

fn upstream(u: &UpstreamConfig, p: &mut Vec<Problem>) {
    if let Err(e) = check_upstream_url(&u.url) {
        p.push(Problem::new("upstream.url", e));
    } else if let Err(e) = check_upstream_protocol(&u.url, u.protocol) {
        p.push(Problem::new("upstream.protocol", e));
    }
    if let Some(s) = &u.sandbox_url {
        if let Err(e) = check_upstream_url(s) {
            p.push(Problem::new("upstream.sandbox_url", e));
        } else if let Err(e) = check_upstream_protocol(s, u.sandbox_protocol.unwrap_or(u.protocol))
        {
            let field = if u.sandbox_protocol.is_some() {
                "upstream.sandbox_protocol"
            } else {
                "upstream.protocol"
            };
            p.push(Problem::new(
                field,
                format!("for upstream.sandbox_url: {e}"),
            ));
        }
    }
    if u.connect_timeout.get().is_zero() {
        p.push(Problem::new(
            "upstream.connect_timeout",
            "must be greater than 0",
        ));
    }
    if u.read_timeout.get().is_zero() {
        p.push(Problem::new(
            "upstream.read_timeout",
            "must be greater than 0",
        ));
    }
}

fn store(s: &StoreConfig, p: &mut Vec<Problem>) {
    match s.kind {
        StoreKind::Sqlite => {
            if s.path.as_os_str().is_empty() {
                p.push(Problem::new(
                    "store.path",
                    "must not be empty for kind sqlite",
                ));
            }
        }
        StoreKind::Postgres => {
            match &s.url {
                None => p.push(Problem::new("store.url", "required for kind postgres")),
                Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => p
                    .push(Problem::new(
                        "store.url",
                        "must start with postgres:// or postgresql://",
                    )),
                Some(_) => {}
            }
            if s.timeout.get().is_zero() {
                p.push(Problem::new("store.timeout", "must be greater than 0"));
            }
            if !(1..=64).contains(&s.pool_size) {
                p.push(Problem::new("store.pool_size", "must be between 1 and 64"));
            }
        }
        StoreKind::File => {
            if s.file.is_none() {
                p.push(Problem::new("store.file", "required for kind file"));
            }
        }
    }
}

fn cache(c: &CacheConfig, p: &mut Vec<Problem>) {
    if c.capacity == 0 {
        p.push(Problem::new("cache.capacity", "must be at least 1"));
    }
    if c.ttl.get().is_zero() {
        p.push(Problem::new("cache.ttl", "must be greater than 0"));
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_char)
}

fn api_keys(a: &ApiKeysConfig, p: &mut Vec<Problem>) {
    // Sources and the format are parsed, once, by the compile (`src/app/compile.rs`).
    let prefix_ok = !a.prefix.is_empty()
        && a.prefix.len() <= 16
        && a.prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !prefix_ok {
        p.push(Problem::new(
            "api_keys.prefix",
            "must be 1-16 lowercase letters or digits",
        ));
    }
    for (i, s) in a.accept_prefixes.iter().enumerate() {
        if s.len() < 2 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            p.push(Problem::new(
                format!("api_keys.accept_prefixes[{i}]"),
                "must be at least 2 visible ASCII characters",
            ));
        }
    }
}

fn jwt(j: &JwtConfig, p: &mut Vec<Problem>) {
    jwt_settings(j, p);
}

fn jwt_settings(j: &JwtConfig, p: &mut Vec<Problem>) {
    for (i, alg) in j.algorithms.iter().enumerate() {
        if alg.eq_ignore_ascii_case("none") {
            p.push(Problem::new(
                format!("jwt.algorithms[{i}]"),
                "`none` can never be enabled",
            ));
        } else if !JWT_ALGORITHMS.contains(&alg.as_str()) {
            p.push(Problem::new(
                format!("jwt.algorithms[{i}]"),
                format!(
                    "unknown algorithm `{alg}` (one of {})",
                    JWT_ALGORITHMS.join(", ")
                ),
            ));
        }
    }
    if j.enabled && j.algorithms.is_empty() {
        p.push(Problem::new(
            "jwt.algorithms",
            "at least one algorithm is required",
        ));
    }
    if j.enabled && j.keys.is_empty() && j.jwks_file.is_none() && j.jwks_url.is_none() {
        p.push(Problem::new(
            "jwt",
            "enabled, but no keys, jwks_file or jwks_url",
        ));
    }
    for (i, k) in j.keys.iter().enumerate() {
        let path = format!("jwt.keys[{i}]");
        if !JWT_ALGORITHMS.contains(&k.alg.as_str()) {
            p.push(Problem::new(
                format!("{path}.alg"),
                format!("unknown algorithm `{}`", k.alg),
            ));
        } else if !j.algorithms.contains(&k.alg) {
            p.push(Problem::new(
                format!("{path}.alg"),
                format!("`{}` is not in jwt.algorithms", k.alg),
            ));
        }
        let sources = [k.pem_file.is_some(), k.secret.is_some(), k.jwk.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            p.push(Problem::new(
                path.clone(),
                "exactly one of pem_file, secret or jwk is required",
            ));
        }
        let hmac = k.alg.starts_with("HS");
        if k.secret.is_some() && !hmac {
            p.push(Problem::new(
                format!("{path}.secret"),
                "a secret is only for HS* algorithms",
            ));
        }
        if hmac && (k.pem_file.is_some()) {
            p.push(Problem::new(
                format!("{path}.pem_file"),
                "HS* algorithms take a secret",
            ));
        }
        if let Some(f) = &k.pem_file {
            if !f.is_file() {
                p.push(Problem::new(
                    format!("{path}.pem_file"),
                    format!("file {} does not exist", f.display()),
                ));
            }
        }
    }
    if j.jwks_min_refresh.get().is_zero() {
        p.push(Problem::new(
            "jwt.jwks_min_refresh",
            "must be greater than 0",
        ));
    }
    if j.jwks_refresh.get() < j.jwks_min_refresh.get() {
        p.push(Problem::new(
            "jwt.jwks_refresh",
            "must be at least jwt.jwks_min_refresh",
        ));
    }
    if let Some(f) = &j.jwks_file {
        if j.enabled && !f.is_file() {
            p.push(Problem::new(
                "jwt.jwks_file",
                format!("file {} does not exist", f.display()),
            ));
        }
    }
    if let Some(u) = &j.jwks_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            p.push(Problem::new(
                "jwt.jwks_url",
                "must start with http:// or https://",
            ));
        }
    }
    if let Some(issue) = &j.issue {
        if !JWT_ALGORITHMS.contains(&issue.alg.as_str()) {
            p.push(Problem::new(
                "jwt.issue.alg",
                format!("unknown algorithm `{}`", issue.alg),
            ));
        }
        let hmac = issue.alg.starts_with("HS");
        match (
            hmac,
            issue.secret.is_some(),
            issue.private_key_file.is_some(),
        ) {
            (true, true, false) | (false, false, true) => {}
            (true, _, _) => p.push(Problem::new(
                "jwt.issue",
                "HS* algorithms need `secret` (and no private_key_file)",
            )),
            (false, _, _) => p.push(Problem::new(
                "jwt.issue",
                "asymmetric algorithms need `private_key_file` (and no secret)",
            )),
        }
    }
}

fn tiers(c: &Config, p: &mut Vec<Problem>) {
    if c.tiers.is_empty() {
        p.push(Problem::new("tiers", "at least one tier is required"));
    }
    for (name, t) in &c.tiers {
        let path = format!("tiers.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.push(Problem::new(
                path.clone(),
                "tier names are letters, digits, _ and -",
            ));
        }
        let windows = t.windows();
        if windows.iter().all(|(_, v)| v.is_none()) {
            p.push(Problem::new(
                path.clone(),
                "needs at least one of per_second, per_minute, per_hour, per_day, per_month",
            ));
        }
        for (w, v) in windows {
            if v == Some(0) {
                p.push(Problem::new(format!("{path}.{w}"), "must be at least 1"));
            }
            if t.algorithm == crate::domain::Algorithm::Sliding
                && v.is_some_and(|v| v > u64::from(u32::MAX))
            {
                p.push(Problem::new(
                    format!("{path}.{w}"),
                    format!("a sliding window counts at most {} requests", u32::MAX),
                ));
            }
        }
    }
    for (name, t) in &c.tiers {
        if t.credits.is_some_and(|cr| cr.refill == 0) {
            p.push(Problem::new(
                format!("tiers.{name}.credits.refill"),
                "must be at least 1 (credits each period starts with)",
            ));
        }
    }
    if !c.tiers.contains_key(&c.default_tier) {
        p.push(Problem::new(
            "default_tier",
            format!("`{}` is not a tier", c.default_tier),
        ));
    }
}

fn rate_limit(r: &RateLimitConfig, p: &mut Vec<Problem>) {
    if r.backend == LimitBackend::Redis && r.redis_url.is_none() {
        p.push(Problem::new(
            "rate_limit.redis_url",
            "required for backend redis",
        ));
    }
    if r.redis_timeout.get().is_zero() {
        p.push(Problem::new(
            "rate_limit.redis_timeout",
            "must be greater than 0",
        ));
    }
}

fn routes(routes: &[RouteConfig], p: &mut Vec<Problem>) {
    for (i, r) in routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !r.path.starts_with('/') {
            p.push(Problem::new(format!("{path}.path"), "must start with /"));
        }
        let star = r.path.find('*');
        if star.is_some_and(|s| !r.path.ends_with("/*") || s != r.path.len() - 1) {
            p.push(Problem::new(
                format!("{path}.path"),
                "`*` is only allowed as a trailing /*",
            ));
        }
        for (j, m) in r.methods.iter().enumerate() {
            if !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                p.push(Problem::new(
                    format!("{path}.methods[{j}]"),
                    format!("unknown method `{m}`"),
                ));
            }
        }
        for (j, s) in r.scopes.iter().enumerate() {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
                p.push(Problem::new(
                    format!("{path}.scopes[{j}]"),
                    "scopes are non-empty visible ASCII",
                ));
            }
        }
        if r.auth == RouteAuth::None && !r.scopes.is_empty() {
            p.push(Problem::new(
                format!("{path}.scopes"),
                "a route with auth: none cannot require scopes",
            ));
        }
        if r.auth == RouteAuth::None && r.cost > 0 {
            p.push(Problem::new(
                format!("{path}.cost"),
                "a route with auth: none cannot cost credits",
            ));
        }
    }
}

fn forward(f: &ForwardConfig, p: &mut Vec<Problem>) {
    let h = &f.headers;
    let named = [
        ("subject", &h.subject),
        ("key_id", &h.key_id),
        ("org", &h.org),
        ("tier", &h.tier),
        ("scopes", &h.scopes),
        ("environment", &h.environment),
        ("method", &h.method),
    ];
    for (i, (field, value)) in named.iter().enumerate() {
        let Some(v) = value else { continue };
        if !is_header_name(v) {
            p.push(Problem::new(
                format!("forward.headers.{field}"),
                format!("`{v}` is not a header name"),
            ));
        }
        if named[..i]
            .iter()
            .any(|(_, o)| o.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(v)))
        {
            p.push(Problem::new(
                format!("forward.headers.{field}"),
                "duplicate header name",
            ));
        }
    }
}

fn cors(c: &CorsConfig, p: &mut Vec<Problem>) {
    if c.allow_origins.is_empty() {
        p.push(Problem::new(
            "cors.allow_origins",
            "at least one origin (or \"*\") is required",
        ));
    }
    let any = c.allow_origins.iter().any(|o| o == "*");
    for (i, o) in c.allow_origins.iter().enumerate() {
        if o == "*" {
            if c.allow_origins.len() > 1 {
                p.push(Problem::new(
                    format!("cors.allow_origins[{i}]"),
                    "\"*\" admits every origin: list it alone",
                ));
            }
            continue;
        }
        if let Err(why) = super::origin::OriginPattern::parse(o) {
            p.push(Problem::new(format!("cors.allow_origins[{i}]"), why));
        }
    }
    if any && c.allow_credentials {
        p.push(Problem::new(
            "cors.allow_credentials",
            "cannot be true with allow_origins: [\"*\"] (browsers refuse it; list the origins)",
        ));
    }
    for (j, m) in c.allow_methods.iter().enumerate() {
        if !is_header_name(m) {
            p.push(Problem::new(
                format!("cors.allow_methods[{j}]"),
                format!("`{m}` is not a method"),
            ));
        }
    }
    for (field, list) in [
        ("allow_headers", &c.allow_headers),
        ("expose_headers", &c.expose_headers),
    ] {
        for (j, h) in list.iter().enumerate() {
            if !is_header_name(h) {
                p.push(Problem::new(
                    format!("cors.{field}[{j}]"),
                    format!("`{h}` is not a header name"),
                ));
            }
        }
    }
}

/// A data-plane prefix keygate answers itself: `/v1`, `/portal`.
fn valid_prefix(prefix: &str) -> bool {
    prefix.starts_with('/')
        && prefix.len() > 1
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
}

/// True when one prefix is the other or lies under it (`/v1` and `/v1/portal`).
fn prefixes_overlap(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    under(a, b) || under(b, a)
}

fn portal(c: &Config, p: &mut Vec<Problem>) {
    let portal = &c.portal;
    if !valid_prefix(&portal.prefix) {
        p.push(Problem::new(
            "portal.prefix",
            "must look like /portal (leading /, no trailing /)",
        ));
    }
    if !portal.enabled {
        return;
    }
    if c.management.enabled && prefixes_overlap(&portal.prefix, &c.management.prefix) {
        p.push(Problem::new(
            "portal.prefix",
            format!(
                "`{}` overlaps management.prefix `{}`",
                portal.prefix, c.management.prefix
            ),
        ));
    }
    if let Some(tier) = &portal.tier {
        if !c.tiers.contains_key(tier) {
            p.push(Problem::new(
                "portal.tier",
                format!("`{tier}` is not a configured tier"),
            ));
        }
    }
    if portal.title.trim().is_empty() || portal.title.chars().count() > 100 {
        p.push(Problem::new("portal.title", "must be 1-100 characters"));
    }
    if portal.session_ttl.get() < std::time::Duration::from_secs(1)
        || portal.session_ttl.get() > std::time::Duration::from_secs(90 * 86_400)
    {
        p.push(Problem::new(
            "portal.session_ttl",
            "must be between 1s and 90d",
        ));
    }
}

fn management(m: &ManagementConfig, p: &mut Vec<Problem>) {
    for (i, s) in m.user_scopes.iter().enumerate() {
        if s.is_empty() || s.len() > 100 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            p.push(Problem::new(
                format!("management.user_scopes[{i}]"),
                "scopes are 1-100 visible ASCII characters",
            ));
        } else if s == "admin" {
            p.push(Problem::new(
                format!("management.user_scopes[{i}]"),
                "`admin` manages every key: only an operator may grant it",
            ));
        }
    }
    if !valid_prefix(&m.prefix) {
        p.push(Problem::new(
            "management.prefix",
            "must look like /v1 (leading /, no trailing /)",
        ));
    }
    let prefix = &m.refresh_token_prefix;
    if prefix.is_empty()
        || prefix.len() > 24
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        p.push(Problem::new(
            "management.refresh_token_prefix",
            "must be 1-24 letters, digits or underscores (like kg_rt_)",
        ));
    }
}

/// `dialect.endpoints`: each a known method at a path of its own, outside the
/// management API and the portal, with the key id in it when the operation
/// needs one. (Its templates are compiled and tried by `crate::dialect`.)
fn dialect(c: &Config, p: &mut Vec<Problem>) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, e) in c.dialect.endpoints.iter().enumerate() {
        let at = |field: &str| format!("dialect.endpoints[{i}].{field}");
        let method = e.method.to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            p.push(Problem::new(
                at("method"),
                format!("`{}` is not one of GET, POST, PUT, PATCH, DELETE", e.method),
            ));
        }
        let segments: Vec<&str> = e.path.split('/').skip(1).collect();
        let params = segments.iter().filter(|s| is_path_param(s)).count();
        if !e.path.starts_with('/')
            || e.path.len() > 200
            || segments.iter().any(|s| s.is_empty())
            || !e
                .path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'%')
        {
            p.push(Problem::new(
                at("path"),
                "must look like /api/keys/:keyId (leading /, no empty segment, no query)",
            ));
        } else if params != usize::from(e.operation.takes_key_id()) {
            p.push(Problem::new(
                at("path"),
                if e.operation.takes_key_id() {
                    "this operation acts on one key: the path names its id once, like /api/keys/:keyId"
                } else {
                    "this operation takes no id: the path has no :parameter"
                },
            ));
        }
        let under = |prefix: &str| {
            e.path == prefix
                || e.path
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('/'))
        };
        if c.management.enabled && under(&c.management.prefix) {
            p.push(Problem::new(
                at("path"),
                format!("is inside management.prefix `{}`", c.management.prefix),
            ));
        }
        if c.portal.enabled && under(&c.portal.prefix) {
            p.push(Problem::new(
                at("path"),
                format!("is inside portal.prefix `{}`", c.portal.prefix),
            ));
        }
        let shape: String = segments
            .iter()
            .map(|s| if is_path_param(s) { ":" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        if seen.contains(&(method.clone(), shape.clone())) {
            p.push(Problem::new(
                at("path"),
                format!("{method} {} is mounted twice", e.path),
            ));
        }
        seen.push((method, shape));
    }
}
