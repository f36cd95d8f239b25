//! Serde mirror of `keygate.yaml` (docs/configuration.md). Unknown keys are errors.
//!
//! These structs hold what the user wrote, with defaults filled in; the request path
//! never reads them directly: the compile (`src/app/compile.rs`) reads them once and
//! builds the typed values the request path holds.

use super::secret::Secret;
use crate::domain::duration::Dur;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, threads, drain.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where requests are forwarded.
    pub upstream: UpstreamConfig,
    /// Where keys live.
    #[serde(default)]
    pub store: StoreConfig,
    /// The in-memory key cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// API-key sources and format.
    #[serde(default)]
    pub api_keys: ApiKeysConfig,
    /// JSON Web Token verification and issuing.
    #[serde(default)]
    pub jwt: JwtConfig,
    /// Named tiers with their windows; at least one.
    pub tiers: BTreeMap<String, TierConfig>,
    /// Tier used for JWT callers with no tier claim.
    #[serde(default = "default_tier")]
    pub default_tier: String,
    /// Rate-limit backend and per-IP limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Route table; first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// What is sent upstream.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// The management API served on the data plane.
    #[serde(default)]
    pub management: ManagementConfig,
    /// Cross-origin requests from browsers; absent means no CORS handling.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// The portal: where the API's users get and watch their keys.
    #[serde(default)]
    pub portal: PortalConfig,
    /// Credit policy shared by every tier (docs/configuration.md, Limits and credits).
    #[serde(default)]
    pub credits: CreditsConfig,
    /// The API's own shapes: error bodies and endpoints at documented paths
    /// (docs/dialects.md).
    #[serde(default)]
    pub dialect: DialectConfig,
    /// The audit log (docs/operations.md, Audit log).
    #[serde(default)]
    pub audit: AuditConfig,
    /// Receivers of signed events (docs/operations.md, Webhooks).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Traces of requests, exported over OTLP/HTTP (docs/operations.md, Traces);
    /// absent means none.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// keygate deciding for another proxy (docs/authorizer.md).
    #[serde(default)]
    pub authorizer: AuthorizerConfig,
}

/// `authorizer:` a listener that answers other proxies' questions (Envoy
/// ext_authz over gRPC and HTTP, nginx `auth_request`, Traefik and Caddy forward
/// auth) with the data plane's decision.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizerConfig {
    /// Where it listens (`IP:port`); `null`: no authorizer.
    pub listen: Option<String>,
    /// Peers (addresses or CIDR ranges) whose description of the original request
    /// is believed: `X-Forwarded-*` / `X-Original-*` headers, and Envoy's
    /// `CheckRequest` at all.
    pub trust_forwarded_from: Vec<String>,
}

impl Default for AuthorizerConfig {
    fn default() -> Self {
        AuthorizerConfig {
            listen: None,
            trust_forwarded_from: vec!["127.0.0.1/32".into(), "::1/128".into()],
        }
    }
}

/// `telemetry:` one span per request, exported to an OpenTelemetry collector.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP address (`http://collector:4318`); `/v1/traces` is
    /// added when it names no path.
    pub otlp_endpoint: String,
    /// The share of traces recorded, 0.0 to 1.0, decided on the trace id (every
    /// service with the same ratio keeps the same traces).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// The `service.name` the spans carry.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Headers sent with each export (a collector's API key: use `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// How long one export may take.
    #[serde(default = "default_export_timeout")]
    pub timeout: Dur,
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "keygate".into()
}

fn default_export_timeout() -> Dur {
    Dur::secs(10)
}

/// One receiver of `webhooks:`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (http or https); also the receiver's name in the
    /// store (without credentials or query), so it must be unique.
    pub url: String,
    /// The event types it gets (every type when absent).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// The signing secret, at least 16 characters (use `${VAR}`).
    pub secret: Secret,
    /// How long one delivery may take.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Dur,
}

fn default_webhook_timeout() -> Dur {
    Dur::secs(10)
}

/// `audit:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Entries older than this are deleted in the background, hourly; `0s` keeps
    /// every entry.
    pub retention: Dur,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention: Dur::secs(400 * 86_400),
        }
    }
}

fn default_tier() -> String {
    "free".into()
}

impl Config {
    /// The configured tiers' names, in order: the only values a key's `tier` may take.
    pub fn tier_names(&self) -> Vec<&str> {
        tier_names(&self.tiers)
    }
}

/// The names of `tiers`, in order.
pub fn tier_names(tiers: &BTreeMap<String, TierConfig>) -> Vec<&str> {
    tiers.keys().map(String::as_str).collect()
}

/// `server:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Data-plane address.
    pub listen: String,
    /// Admin address (`/health`, `/ready`, `/metrics`).
    pub admin_listen: String,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests.
    pub grace_period: Dur,
    /// TLS termination on `listen`.
    pub tls: Option<TlsConfig>,
    /// Extension: longest time from a request's first byte (a new connection's
    /// start) to the end of its head; slower clients are disconnected.
    pub header_timeout: Dur,
    /// Extension: longest time a kept-alive connection may sit between requests.
    pub idle_timeout: Dur,
    /// Extension: largest request head (request line and headers) in bytes; a
    /// larger one is answered 431 and the connection closed.
    pub max_header_bytes: usize,
    /// Extension: longest time to receive a whole request body that keygate reads
    /// itself (management API); a slower one is answered 408.
    pub body_timeout: Dur,
    /// Accept HTTP/2 without TLS (prior knowledge) beside HTTP/1.1 on `listen`
    /// (docs/configuration.md, HTTP/2 and gRPC). With `tls`, HTTP/2 is offered by ALPN
    /// whatever this says.
    pub h2c: bool,
    /// Extension: most HTTP/2 streams one connection may have open, and most
    /// requests of one HTTP/2 connection keygate works on at once (a client that
    /// resets its streams does not get more).
    pub h2_max_concurrent_streams: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            threads: 2,
            grace_period: Dur::secs(10),
            tls: None,
            header_timeout: Dur::secs(10),
            idle_timeout: Dur::secs(60),
            max_header_bytes: 32 * 1024,
            body_timeout: Dur::secs(10),
            h2c: false,
            h2_max_concurrent_streams: 100,
        }
    }
}

/// `server.tls:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `upstream:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API behind keygate, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    /// Where test-environment keys are sent, if set.
    #[serde(default)]
    pub sandbox_url: Option<String>,
    /// TCP (and TLS) connect timeout.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time allowed between reads from the upstream.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Dur,
    /// The HTTP version spoken to `url` (docs/configuration.md, HTTP/2 and gRPC).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Extension: the HTTP version spoken to `sandbox_url`; `protocol` when unset.
    #[serde(default)]
    pub sandbox_protocol: Option<UpstreamProtocol>,
}

/// `upstream.protocol`: how keygate talks to an upstream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (`http://` or `https://`).
    #[default]
    H1,
    /// HTTP/2 over TLS, chosen by ALPN (`https://` only).
    H2,
    /// Cleartext HTTP/2 with prior knowledge, e.g. a gRPC service (`http://` only).
    H2c,
}

impl UpstreamProtocol {
    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::H1 => "h1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
        }
    }
}

fn default_connect_timeout() -> Dur {
    Dur::secs(2)
}
fn default_read_timeout() -> Dur {
    Dur::secs(30)
}

/// Which key store backend.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded SQLite file (default).
    #[default]
    Sqlite,
    /// Shared PostgreSQL.
    Postgres,
    /// Read-only YAML file of hashed keys.
    File,
}

/// `store:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend.
    pub kind: StoreKind,
    /// SQLite database path.
    pub path: PathBuf,
    /// PostgreSQL URL (may hold a password: never printed).
    pub url: Option<Secret>,
    /// File store path.
    pub file: Option<PathBuf>,
    /// PostgreSQL connections held open (extension; each one pipelines queries).
    pub pool_size: usize,
    /// Longest wait for one store query before it counts as a failure (extension).
    pub timeout: Dur,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            path: PathBuf::from("data/keygate.db"),
            url: None,
            file: None,
            pool_size: 4,
            timeout: Dur::secs(2),
        }
    }
}

/// `cache:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Keys held in memory.
    pub capacity: u64,
    /// A cached key is re-read after this.
    pub ttl: Dur,
    /// An unknown key is remembered as unknown this long.
    pub negative_ttl: Dur,
    /// How long past `ttl` a cached key keeps working while the store is failing
    /// (extension; stale-while-error).
    pub stale_if_error: Dur,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 100_000,
            ttl: Dur::secs(30),
            negative_ttl: Dur::secs(5),
            stale_if_error: Dur::secs(300),
        }
    }
}

/// `api_keys:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// Credential sources in order: `header:NAME`, `bearer`, `query:NAME`.
    pub sources: Vec<String>,
    /// Prefix of issued keys: what `{prefix}` stands for in `format`.
    pub prefix: String,
    /// Template of issued keys (docs/configuration.md, API keys); `None` is
    /// keygate's own format, `{prefix}_sk_{env}_{random:32}{checksum}`.
    pub format: Option<String>,
    /// Extra prefixes admitted for imported keys (looked up by hash).
    pub accept_prefixes: Vec<String>,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig {
            sources: vec!["header:x-api-key".into(), "bearer".into()],
            prefix: "kg".into(),
            format: None,
            accept_prefixes: Vec::new(),
        }
    }
}

/// `jwt:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Accept JWTs on the data plane.
    pub enabled: bool,
    /// Allowed algorithms.
    pub algorithms: Vec<String>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// `aud` must contain one of these, if non-empty.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf`/`iat`.
    pub leeway: Dur,
    /// Statically configured keys.
    pub keys: Vec<JwtKeyConfig>,
    /// JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// JWKS document fetched over HTTP(S).
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is re-fetched in the background.
    pub jwks_refresh: Dur,
    /// Least time between two fetches triggered by unknown `kid`s.
    pub jwks_min_refresh: Dur,
    /// Where the last good `jwks_url` document is kept, so a restart during an
    /// identity-provider outage still verifies tokens.
    pub jwks_cache_file: PathBuf,
    /// Claim names mapped into the principal.
    pub claims: ClaimsConfig,
    /// Token issuing for the management API's token endpoint.
    pub issue: Option<JwtIssueConfig>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            enabled: false,
            algorithms: vec!["RS256".into()],
            issuer: None,
            audience: Vec::new(),
            leeway: Dur::secs(30),
            keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: Dur::secs(300),
            jwks_min_refresh: Dur::secs(30),
            jwks_cache_file: PathBuf::from("data/jwks-cache.json"),
            claims: ClaimsConfig::default(),
            issue: None,
        }
    }
}

/// One entry of `jwt.keys`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Key id matched against the token's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key may verify.
    pub alg: String,
    /// PEM public key (or certificate) file.
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
    /// HMAC secret (use `${VAR}`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Inline JWK.
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
}

/// `jwt.claims:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    /// Subject claim.
    pub subject: String,
    /// Scopes claim (space-separated string or array).
    pub scopes: String,
    /// Tier claim.
    pub tier: String,
    /// Organisation claim.
    pub org: String,
    /// Claim whose value keys rate limits and usage (default: the subject claim),
    /// so one user's many tokens share one limit.
    pub limit_by: Option<String>,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            subject: "sub".into(),
            scopes: "scope".into(),
            tier: "tier".into(),
            org: "org".into(),
            limit_by: None,
        }
    }
}

/// `jwt.issue:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssueConfig {
    /// `kid` written into issued tokens.
    #[serde(default)]
    pub kid: Option<String>,
    /// Signing algorithm.
    pub alg: String,
    /// PEM private key for asymmetric algorithms.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Create `private_key_file` (ES256, ES384 or EdDSA) when it does not exist, the
    /// first time the config is read: a config that starts on a fresh machine.
    #[serde(default)]
    pub generate_missing: bool,
    /// HMAC secret for HS* algorithms.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Access-token lifetime.
    #[serde(default = "default_access_ttl")]
    pub access_ttl: Dur,
    /// Refresh-token inactivity lifetime.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl: Dur,
}

fn default_access_ttl() -> Dur {
    Dur::secs(3600)
}
fn default_refresh_ttl() -> Dur {
    Dur::secs(30 * 86400)
}

/// `credits:`: what happens to credits beyond debits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CreditsConfig {
    /// Give back, exactly once, the credits of a debited request that keygate itself
    /// answered 502/504 because the upstream never answered.
    pub refund_on_upstream_error: bool,
    /// `credits.low` is announced when a debit takes a balance to or below each of
    /// these: `N%` of its refill (10 credits when it has none), or a number.
    pub low_at: Vec<CreditLevel>,
}

/// One `credits.low_at` entry: `"20%"` or `0`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CreditLevel {
    /// A number of credits.
    Credits(i64),
    /// A share, `N%`.
    Share(String),
}

impl CreditLevel {
    /// The threshold it names (errors say what is wrong).
    pub fn threshold(&self) -> Result<crate::domain::event::CreditThreshold, String> {
        match self {
            CreditLevel::Credits(n) => crate::domain::event::CreditThreshold::parse(&n.to_string()),
            CreditLevel::Share(s) => crate::domain::event::CreditThreshold::parse(s),
        }
    }
}

impl Default for CreditsConfig {
    fn default() -> Self {
        CreditsConfig {
            refund_on_upstream_error: true,
            low_at: vec![CreditLevel::Share("10%".into())],
        }
    }
}

/// `tiers.<name>.credits`: the tier's keys get their credits reset to `refill`
/// every `every`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierCredits {
    /// The balance each period starts with.
    pub refill: u64,
    /// `day`, `month`, or a duration such as `7d`.
    pub every: crate::domain::RefillEvery,
}

impl TierCredits {
    /// The refill it describes.
    pub fn refill(&self) -> crate::domain::Refill {
        crate::domain::Refill {
            amount: self.refill,
            every: self.every,
        }
    }
}

/// One tier: its windows and how they count, block period, key quota.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Requests per second.
    #[serde(default)]
    pub per_second: Option<u64>,
    /// Requests per minute.
    #[serde(default)]
    pub per_minute: Option<u64>,
    /// Requests per hour.
    #[serde(default)]
    pub per_hour: Option<u64>,
    /// Requests per day.
    #[serde(default)]
    pub per_day: Option<u64>,
    /// Requests per month (calendar month in UTC when fixed, 30 days when sliding).
    #[serde(default)]
    pub per_month: Option<u64>,
    /// How every window of the tier counts: `fixed` (default) or `sliding`.
    #[serde(default)]
    pub algorithm: crate::domain::Algorithm,
    /// Credits of the tier's keys: `{ refill: N, every: day | month | <duration> }`.
    #[serde(default)]
    pub credits: Option<TierCredits>,
    /// After any window is exhausted, stay at 429 this long.
    #[serde(default)]
    pub block: Dur,
    /// Most keys one owner (one account, with `pool: account`) may hold in this tier.
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Whose windows and credits they are: each key's (`key`, the default) or the
    /// account's, shared by all its keys (`account`).
    #[serde(default)]
    pub pool: crate::domain::Pool,
}

impl TierConfig {
    /// Its windows, shortest first, by their config names, as written (`None`:
    /// not set).
    pub fn windows(&self) -> [(&'static str, Option<u64>); 5] {
        [
            ("per_second", self.per_second),
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("per_month", self.per_month),
        ]
    }
}

/// Rate-limit backend.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LimitBackend {
    /// Per-process counters.
    #[default]
    Memory,
    /// Shared counters in Redis.
    Redis,
}

/// What to do when the shared backend fails.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Fall back to per-replica limits.
    #[default]
    Local,
    /// Answer 503.
    Deny,
}

/// Which rate-limit headers are sent.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderStyle {
    /// `X-RateLimit-*` only.
    #[default]
    #[serde(rename = "x-ratelimit")]
    XRateLimit,
    /// `RateLimit` and `RateLimit-Policy` (plus `X-RateLimit-*`, which every
    /// authenticated response carries).
    Ietf,
    /// Both families.
    Both,
}

/// `rate_limit:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Counter backend.
    pub backend: LimitBackend,
    /// Redis URL for the redis backend (may hold a password: never printed).
    pub redis_url: Option<Secret>,
    /// Certificates for a `rediss://` URL (extension).
    pub redis_tls: Option<RedisTlsConfig>,
    /// Longest wait for Redis on a request before falling back (extension).
    pub redis_timeout: Dur,
    /// Behaviour when the backend fails.
    pub on_backend_error: OnBackendError,
    /// Header family.
    pub headers: HeaderStyle,
    /// Per-client-IP limits.
    pub ip: IpLimitConfig,
}

/// `rate_limit.redis_tls:` (extension): certificates for TLS to Redis.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsConfig {
    /// PEM roots the server's certificate must chain to (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub key_file: Option<PathBuf>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            backend: LimitBackend::Memory,
            redis_url: None,
            redis_tls: None,
            redis_timeout: Dur::millis(100),
            on_backend_error: OnBackendError::Local,
            headers: HeaderStyle::XRateLimit,
            ip: IpLimitConfig::default(),
        }
    }
}

/// `rate_limit.ip:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpLimitConfig {
    /// Requests per minute per client IP (0 = off).
    pub per_minute: u64,
    /// Failed authentications per minute per IP before that IP gets 429 (0 = off).
    pub failed_auth_per_minute: u64,
}

impl Default for IpLimitConfig {
    fn default() -> Self {
        IpLimitConfig {
            per_minute: 600,
            failed_auth_per_minute: 30,
        }
    }
}

/// Whether a route needs a credential.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    /// A valid credential is needed (default).
    #[default]
    Required,
    /// Passed through without authentication.
    None,
}

/// Which key environments a route admits.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteEnvironment {
    /// Live and test keys.
    #[default]
    Any,
    /// Live keys only: test keys get 403.
    Live,
    /// Test keys only: live keys get 403.
    Test,
}

/// One entry of `routes:`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics (defaults to `path`).
    #[serde(default)]
    pub name: Option<String>,
    /// Path: exact, or a prefix ending in `/*` (`/api/*`), or `/*` for everything.
    pub path: String,
    /// Methods this route applies to (all when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// `required` (default) or `none`.
    #[serde(default)]
    pub auth: RouteAuth,
    /// Scopes the caller must hold (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Credits debited per request.
    #[serde(default)]
    pub cost: u64,
    /// Key environments admitted.
    #[serde(default)]
    pub environment: RouteEnvironment,
    /// Match `path` with ASCII case significant (default: case-insensitively, as
    /// most upstream routers do).
    #[serde(default)]
    pub case_sensitive: bool,
}

/// `forward:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Remove the credential before going upstream.
    pub strip_credentials: bool,
    /// Identity header names.
    pub headers: ForwardHeaders,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            strip_credentials: true,
            headers: ForwardHeaders::default(),
        }
    }
}

/// `forward.headers:`; a header set to `null` is not sent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardHeaders {
    /// Subject (key owner or JWT `sub`).
    pub subject: Option<String>,
    /// Key id.
    pub key_id: Option<String>,
    /// Organisation.
    pub org: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// Space-separated scopes.
    pub scopes: Option<String>,
    /// `live` or `test`.
    pub environment: Option<String>,
    /// `api_key` or `jwt`.
    pub method: Option<String>,
    /// The key's account.
    pub account: Option<String>,
}

impl Default for ForwardHeaders {
    fn default() -> Self {
        ForwardHeaders {
            subject: Some("X-Auth-Subject".into()),
            key_id: Some("X-Auth-Key-Id".into()),
            org: Some("X-Auth-Org".into()),
            tier: Some("X-Auth-Tier".into()),
            scopes: Some("X-Auth-Scopes".into()),
            environment: Some("X-Auth-Environment".into()),
            method: Some("X-Auth-Method".into()),
            account: Some("X-Auth-Account".into()),
        }
    }
}

/// Who may register.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Users are created by an operator.
    #[default]
    Closed,
    /// Anyone may register.
    Open,
}

/// `management:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementConfig {
    /// Serve the management API.
    pub enabled: bool,
    /// Path prefix on the data plane.
    pub prefix: String,
    /// Registration policy.
    pub registration: Registration,
    /// Scopes a user (JWT, portal) or a `keys:manage` key may put on the keys it
    /// manages (a key: only those it holds itself too). Default: none.
    pub user_scopes: Vec<String>,
    /// What every refresh token starts with (Altrixy documents `altx_rt_`).
    pub refresh_token_prefix: String,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        ManagementConfig {
            enabled: true,
            prefix: "/v1".into(),
            registration: Registration::Closed,
            user_scopes: Vec::new(),
            refresh_token_prefix: "kg_rt_".into(),
        }
    }
}

/// `portal:` (docs/portal.md): HTML pages served by keygate on the data plane
/// under `prefix`, never proxied; needs a writable store.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Serve the portal.
    pub enabled: bool,
    /// Path prefix on the data plane.
    pub prefix: String,
    /// Product name shown on every page.
    pub title: String,
    /// How long a sign-in lasts.
    pub session_ttl: Dur,
    /// Tier of the keys users create (`None`: `default_tier`).
    pub tier: Option<String>,
    /// Browsers reach the portal over HTTPS even though keygate does not terminate
    /// TLS (an ingress or load balancer does): cookies are `__Host-`, `Secure`, as
    /// with `server.tls` (an extension).
    pub secure_cookies: bool,
    /// The API's own name, logo and accent colour on every page.
    pub branding: BrandingConfig,
}

/// `portal.branding` (docs/portal.md, Branding).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BrandingConfig {
    /// Product name (default: `portal.title`).
    pub name: Option<String>,
    /// An `https://` URL of an image, or the path of an .svg, .png, .jpg, .webp or
    /// .gif file (at most 256 KiB), shown beside the name.
    pub logo: Option<String>,
    /// Accent colour of buttons and links, `#rrggbb` or `#rgb`.
    pub accent: Option<String>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            enabled: false,
            prefix: "/portal".into(),
            title: "keygate".into(),
            session_ttl: Dur::secs(12 * 3600),
            tier: None,
            secure_cookies: false,
            branding: BrandingConfig::default(),
        }
    }
}

/// `cors:` (docs/configuration.md): answered by keygate, preflights before
/// authentication.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`), or `["*"]` for any.
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for.
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for.
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age: Dur,
    /// Allow cookies and HTTP authentication on cross-origin requests.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            allow_origins: Vec::new(),
            allow_methods: list(&["GET", "POST", "PUT", "DELETE"]),
            allow_headers: list(&["X-API-Key", "Authorization", "Content-Type"]),
            expose_headers: list(&[
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "Retry-After",
                "X-Request-Id",
            ]),
            max_age: Dur::secs(600),
            allow_credentials: false,
        }
    }
}

/// `dialect:` (docs/dialects.md): keygate answering in the shapes an API has
/// documented to its customers. Empty: the contract's own shapes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DialectConfig {
    /// The body of every refusal keygate writes itself.
    pub errors: ErrorsDialect,
    /// keygate's own operations mounted at documented methods and paths.
    pub endpoints: Vec<DialectEndpoint>,
}

/// `dialect.errors`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorsDialect {
    /// A template rendering the JSON body of a refusal (`None`: the contract's).
    pub body: Option<String>,
    /// Message texts replacing keygate's, by `error` code or, more precisely, by
    /// the refusal's reason (`missing`, `expired`, `rate_limited`, …).
    pub messages: BTreeMap<String, String>,
}

/// One of keygate's own operations, as a dialect endpoint names it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create a user (`POST /auth/register`).
    Register,
    /// Email and password for tokens (`POST /auth/token`).
    Token,
    /// A refresh token for new tokens (`POST /auth/refresh`).
    Refresh,
    /// A user's first key, once (`POST /keys/first`).
    FirstKey,
    /// Create a key (`POST /keys`).
    CreateKey,
    /// List keys (`GET /keys`).
    ListKeys,
    /// One key (`GET /keys/{id}`).
    GetKey,
    /// Change a key (`PUT /keys/{id}`).
    UpdateKey,
    /// Revoke a key (`DELETE /keys/{id}`).
    RevokeKey,
    /// A new secret for a key (`POST /keys/{id}/regenerate`).
    RegenerateKey,
    /// A key's usage (`GET /keys/{id}/usage`).
    KeyUsage,
    /// The caller's own key (`POST /keys/verify`).
    Verify,
    /// The caller's credits (`GET /credits`).
    Credits,
    /// The caller's account (`GET /account`).
    Account,
}

impl Operation {
    /// True when the operation acts on one key, named by its id in the path.
    pub fn takes_key_id(self) -> bool {
        matches!(
            self,
            Operation::GetKey
                | Operation::UpdateKey
                | Operation::RevokeKey
                | Operation::RegenerateKey
                | Operation::KeyUsage
        )
    }
}

/// True when a segment of a dialect endpoint's path stands for the key id:
/// `:keyId` or `{keyId}`.
pub fn is_path_param(segment: &str) -> bool {
    segment.starts_with(':') || (segment.starts_with('{') && segment.ends_with('}'))
}

/// `dialect.endpoints[]`: one operation behind a documented method and path.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DialectEndpoint {
    /// The operation answered here.
    pub operation: Operation,
    /// The documented method.
    pub method: String,
    /// The documented path; `:name` (or `{name}`) stands for the key id.
    pub path: String,
    /// A template rendering the body the operation reads from the request's
    /// (`None`: the request body as sent).
    #[serde(default)]
    pub request: Option<String>,
    /// A template rendering the answer from the operation's (`None`: as is).
    #[serde(default)]
    pub response: Option<String>,
    /// A template for this endpoint's refusals (`None`: `dialect.errors.body`).
    #[serde(default)]
    pub errors: Option<String>,
}
