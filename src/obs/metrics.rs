//! Every metric keygate exports, in one place. Labels are bounded: routes are the
//! configured route names, never raw paths; keys and tokens never appear.
//!
//! Registering a metric fails only for a programming error (two metrics with one
//! name), the first time it is used, at start: hence the `expect`s.
#![allow(clippy::expect_used)]

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec,
};

/// Latency buckets in seconds, from 100 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The `outcome` labels of `keygate_requests_total`: the only values it takes
/// (each refusal's is its row of `crate::error`'s table).
pub mod outcome {
    /// Passed (or answered by keygate itself without a refusal).
    pub const ALLOWED: &str = "allowed";
    /// 401.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403.
    pub const FORBIDDEN: &str = "forbidden";
    /// 429.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 402.
    pub const NO_CREDITS: &str = "no_credits";
    /// The upstream failed or answered 5xx.
    pub const UPSTREAM_ERROR: &str = "upstream_error";
    /// A malformed or refused request (4xx other than the above).
    pub const BAD_REQUEST: &str = "bad_request";
    /// keygate could not decide (a backend down, overload, a bug).
    pub const UNAVAILABLE: &str = "unavailable";
    /// Every outcome, in the help text's order.
    pub const ALL: &[&str] = &[
        ALLOWED,
        UNAUTHORIZED,
        FORBIDDEN,
        RATE_LIMITED,
        NO_CREDITS,
        UPSTREAM_ERROR,
        BAD_REQUEST,
        UNAVAILABLE,
    ];
}

/// The `reason` labels of `keygate_decisions_total`: the only values it takes
/// (each refusal's is its row of `crate::error`'s table).
pub mod reason {
    /// Admitted.
    pub const ALLOWED: &str = "allowed";
    /// No credential.
    pub const MISSING: &str = "missing";
    /// Two different credentials.
    pub const AMBIGUOUS: &str = "ambiguous";
    /// Unknown or malformed key.
    pub const INVALID: &str = "invalid";
    /// Expired key.
    pub const EXPIRED: &str = "expired";
    /// Revoked key.
    pub const REVOKED: &str = "revoked";
    /// The key's account is suspended.
    pub const SUSPENDED: &str = "account_suspended";
    /// A JWT that failed a check.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// A wrong email or password.
    pub const INVALID_LOGIN: &str = "invalid_login";
    /// A refresh token refused.
    pub const INVALID_REFRESH: &str = "invalid_refresh";
    /// Client IP outside the key's allow-list.
    pub const IP: &str = "ip";
    /// A missing scope.
    pub const SCOPE: &str = "scope";
    /// A key environment the route does not admit.
    pub const ENVIRONMENT: &str = "environment";
    /// Refused for another reason (a field the caller may not set, closed sign-up).
    pub const FORBIDDEN: &str = "forbidden";
    /// A portal form posted without its form token.
    pub const CSRF: &str = "csrf";
    /// A tier window exhausted, or blocked.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The client IP over its rate.
    pub const IP_RATE_LIMITED: &str = "ip_rate_limited";
    /// The client IP failed authentication too often.
    pub const FAILED_AUTH_LIMITED: &str = "failed_auth_limited";
    /// Credits below the route's cost.
    pub const NO_CREDITS: &str = "no_credits";
    /// The store (or another backend) could not answer.
    pub const STORE_ERROR: &str = "store_error";
    /// At capacity (password hashing).
    pub const OVERLOADED: &str = "overloaded";
    /// The upstream failed.
    pub const UPSTREAM_ERROR: &str = "upstream_error";
    /// A malformed or refused request.
    pub const BAD_REQUEST: &str = "bad_request";
    /// A bug.
    pub const INTERNAL: &str = "internal";
    /// Every reason, in the help text's order.
    pub const ALL: &[&str] = &[
        ALLOWED,
        MISSING,
        AMBIGUOUS,
        INVALID,
        EXPIRED,
        REVOKED,
        SUSPENDED,
        INVALID_TOKEN,
        INVALID_LOGIN,
        INVALID_REFRESH,
        IP,
        SCOPE,
        ENVIRONMENT,
        FORBIDDEN,
        CSRF,
        RATE_LIMITED,
        IP_RATE_LIMITED,
        FAILED_AUTH_LIMITED,
        NO_CREDITS,
        STORE_ERROR,
        OVERLOADED,
        UPSTREAM_ERROR,
        BAD_REQUEST,
        INTERNAL,
    ];
}

/// The `protocol` labels of `keygate_requests_total`: the client's HTTP version.
pub mod protocol {
    /// HTTP/1.x.
    pub const H1: &str = "h1";
    /// HTTP/2 (over TLS by ALPN, or cleartext with `server.h2c`).
    pub const H2: &str = "h2";
}

/// Requests by route, outcome, status and protocol.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    let help = format!(
        "Requests handled, by route, outcome ({}), status and protocol (h1, h2).",
        outcome::ALL.join(", ")
    );
    register_int_counter_vec!(
        "keygate_requests_total",
        help,
        &["route", "outcome", "status", "protocol"]
    )
    .expect("metric keygate_requests_total registers once")
});

/// Authentication and authorization decisions by reason and tier.
pub static DECISIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    let help = format!(
        "Access decisions by reason ({}) and tier.",
        reason::ALL.join(", ")
    );
    register_int_counter_vec!("keygate_decisions_total", help, &["reason", "tier"])
        .expect("metric keygate_decisions_total registers once")
});

/// Whole-request latency.
pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "keygate_request_duration_seconds",
        "Time from request start to the end of the response, by route.",
        &["route"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric keygate_request_duration_seconds registers once")
});

/// Upstream latency (time to the upstream's response header).
pub static UPSTREAM_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "keygate_upstream_duration_seconds",
        "Time from the start of proxying to the upstream's response header, by route.",
        &["route"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric keygate_upstream_duration_seconds registers once")
});

/// Key-cache hits.
pub static KEY_CACHE_HITS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_key_cache_hits_total",
        "API-key lookups answered by the cache."
    )
    .expect("metric keygate_key_cache_hits_total registers once")
});

/// Negative-cache hits (unknown keys remembered).
pub static KEY_CACHE_NEGATIVE_HITS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_key_cache_negative_hits_total",
        "API-key lookups answered by the negative cache (key known not to exist)."
    )
    .expect("metric keygate_key_cache_negative_hits_total registers once")
});

/// Key-cache misses (store asked).
pub static KEY_CACHE_MISSES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_key_cache_misses_total",
        "API-key lookups that went to the store."
    )
    .expect("metric keygate_key_cache_misses_total registers once")
});

/// Keys held in the cache.
pub static KEY_CACHE_SIZE: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_key_cache_size",
        "Known keys held in the key cache."
    )
    .expect("metric keygate_key_cache_size registers once")
});

/// Store queries by operation and result.
pub static STORE_QUERIES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_store_queries_total",
        "Key-store queries made on the request path, by operation and result.",
        &["op", "result"]
    )
    .expect("metric keygate_store_queries_total registers once")
});

/// A key-store query made on the request path.
#[derive(Clone, Copy)]
pub enum StoreOp {
    /// A key looked up by its hash (a cache miss).
    FindByHash = 0,
    /// A credit debit on a metered route.
    DebitCredits = 1,
}

/// `STORE_QUERIES`' counters, resolved once instead of by label on every request.
static STORE_QUERY_COUNTERS: Lazy<[[IntCounter; 2]; 2]> = Lazy::new(|| {
    let c = |op, result| STORE_QUERIES.with_label_values(&[op, result]);
    [
        [c("find_by_hash", "ok"), c("find_by_hash", "error")],
        [c("debit_credits", "ok"), c("debit_credits", "error")],
    ]
});

/// Counts one request-path store query and whether it succeeded.
pub fn count_store_query(op: StoreOp, ok: bool) {
    STORE_QUERY_COUNTERS[op as usize][usize::from(!ok)].inc();
}

/// Credits given back for requests the upstream never answered (keygate's own
/// 502/504), by result: `ok`, or `error` when the store could not take the refund.
pub static CREDIT_REFUNDS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_credit_refunds_total",
        "Credit refunds of requests the upstream never answered (keygate's own 502/504), by result.",
        &["result"]
    )
    .expect("metric keygate_credit_refunds_total registers once")
});

/// Credit debits committed per store transaction by the group committer.
pub static CREDIT_DEBITS_PER_COMMIT: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "keygate_credit_debits_per_commit",
        "Credit debits committed per key-store transaction (group commit).",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0]
    )
    .expect("metric keygate_credit_debits_per_commit registers once")
});

/// Connections closed for taking too long over a request head.
pub static HEAD_TIMEOUTS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_header_timeouts_total",
        "Client connections closed because a request head took longer than server.header_timeout."
    )
    .expect("metric keygate_header_timeouts_total registers once")
});

/// Connections refused because a request head was larger than
/// `server.max_header_bytes`.
pub static HEADERS_TOO_LARGE: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_headers_too_large_total",
        "Requests answered 431 because their head was larger than server.max_header_bytes."
    )
    .expect("metric keygate_headers_too_large_total registers once")
});

/// Connections that opened with HTTP/2's cleartext preface on a listener without
/// `server.h2c`, answered 400.
pub static H2C_REFUSED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_h2c_refused_total",
        "Connections that sent HTTP/2's cleartext preface (prior knowledge) while \
         server.h2c is off, answered 400."
    )
    .expect("metric keygate_h2c_refused_total registers once")
});

/// HTTP/2 requests refused because their connection already had its cap in
/// flight (streams reset by the client while keygate still worked on them).
pub static H2_STREAMS_REFUSED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_h2_streams_refused_total",
        "HTTP/2 requests answered 503 because their connection had twice \
         server.h2_max_concurrent_streams requests in flight (streams reset early)."
    )
    .expect("metric keygate_h2_streams_refused_total registers once")
});

/// Password checks and hashes refused because the hashing pool's queue was full.
pub static PASSWORD_POOL_REJECTED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_password_pool_rejected_total",
        "Logins and sign-ups answered 503 because every password-hashing worker was busy and the queue full."
    )
    .expect("metric keygate_password_pool_rejected_total registers once")
});

/// Rate-limit backend errors.
pub static RATELIMIT_BACKEND_ERRORS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_ratelimit_backend_errors_total",
        "Rate-limit decisions the backend failed to make."
    )
    .expect("metric keygate_ratelimit_backend_errors_total registers once")
});

/// Config reloads by result.
pub static CONFIG_RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_config_reloads_total",
        "Configuration reloads, by result (ok, error).",
        &["result"]
    )
    .expect("metric keygate_config_reloads_total registers once")
});

/// JWT verifications by algorithm and result.
pub static JWT_VERIFICATIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_jwt_verifications_total",
        "JWT verifications by algorithm (or cached/unknown) and result (ok, malformed, algorithm, unknown_kid, signature, expired, not_yet_valid, issuer_audience, claims).",
        &["alg", "result"]
    )
    .expect("metric keygate_jwt_verifications_total registers once")
});

/// JWKS fetches by result.
pub static JWKS_REFRESHES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_jwks_refreshes_total",
        "Fetches of jwt.jwks_url by result (ok, error, rate_limited: an unknown kid arrived too soon after the last fetch).",
        &["result"]
    )
    .expect("metric keygate_jwks_refreshes_total registers once")
});

/// Keys in the remote JWKS set.
pub static JWKS_KEYS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_jwks_keys",
        "Usable keys in the last good jwt.jwks_url document."
    )
    .expect("metric keygate_jwks_keys registers once")
});

/// 1 while the JWKS key set is stale (last refresh failed).
pub static JWKS_STALE: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_jwks_stale",
        "1 while keygate serves the last good JWKS because the latest fetch failed."
    )
    .expect("metric keygate_jwks_stale registers once")
});

/// Build information.
pub static BUILD_INFO: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "keygate_build_info",
        "keygate version; always 1.",
        &["version"]
    )
    .expect("metric keygate_build_info registers once")
});

/// Lag from a key change committing in the shared store to this replica dropping it.
pub static KEY_CHANGE_LAG: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "keygate_key_change_propagation_seconds",
        "Time from a key change (revoke, regenerate, update) committing in PostgreSQL to this replica forgetting its cached copy (clocks of both hosts).",
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric keygate_key_change_propagation_seconds registers once")
});

/// Change-feed (re)subscriptions; each one after the first drops the whole cache.
pub static KEY_CHANGE_FEED_CONNECTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_key_change_feed_connects_total",
        "Subscriptions to the store's change feed by result (ok, error); every ok after the first drops the key cache, since changes may have been missed.",
        &["result"]
    )
    .expect("metric keygate_key_change_feed_connects_total registers once")
});

/// 1 while the change feed is subscribed.
pub static KEY_CHANGE_FEED_UP: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_key_change_feed_up",
        "1 while this replica is subscribed to the store's key change feed (PostgreSQL LISTEN)."
    )
    .expect("metric keygate_key_change_feed_up registers once")
});

/// Cached keys served past their TTL because the store failed.
pub static KEY_CACHE_STALE_SERVED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_key_cache_stale_served_total",
        "Requests served from a cached key past cache.ttl because the store could not be read (stale-while-error, bounded by cache.stale_if_error)."
    )
    .expect("metric keygate_key_cache_stale_served_total registers once")
});

/// Cached keys read again because the change feed was not listening.
pub static KEY_CACHE_UNWATCHED_READS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_key_cache_unwatched_reads_total",
        "API-key lookups of a cached key that went to the store because the change feed was not listening (a change made elsewhere would have gone unseen)."
    )
    .expect("metric keygate_key_cache_unwatched_reads_total registers once")
});

/// Spans handed to the collector, by outcome.
pub static TRACE_SPANS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_trace_spans_total",
        "Spans sent to the OTLP collector by result: exported, or failed (the collector refused them or did not answer).",
        &["result"]
    )
    .expect("metric keygate_trace_spans_total registers once")
});

/// Webhook delivery attempts by outcome.
pub static WEBHOOK_DELIVERIES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_webhook_deliveries_total",
        "Webhook delivery attempts by result: delivered (2xx), failed (tried again later), given_up (failing for 24 h).",
        &["result"]
    )
    .expect("metric keygate_webhook_deliveries_total registers once")
});

/// Events of the request path dropped (queue full, or the store refused them).
pub static WEBHOOK_EVENTS_DROPPED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_webhook_events_dropped_total",
        "Events of the request path (rate_limit.exceeded, credits.low) not written to the outbox: its queue was full, or the store refused them five times."
    )
    .expect("metric keygate_webhook_events_dropped_total registers once")
});

/// Events in the outbox after each receiver's cursor.
pub static WEBHOOK_OUTBOX_DEPTH: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "keygate_webhook_outbox_depth",
        "Events in the outbox after a receiver's cursor (seen by the replica delivering; includes types it does not get).",
        &["receiver"]
    )
    .expect("metric keygate_webhook_outbox_depth registers once")
});

/// Age of the event a failing receiver is waiting on.
pub static WEBHOOK_OLDEST_UNDELIVERED: Lazy<prometheus::GaugeVec> = Lazy::new(|| {
    prometheus::register_gauge_vec!(
        "keygate_webhook_oldest_undelivered_seconds",
        "Age of the oldest event a receiver has not been delivered (0 when it is caught up).",
        &["receiver"]
    )
    .expect("metric keygate_webhook_oldest_undelivered_seconds registers once")
});

/// 1 while the store's last write failed.
pub static STORE_WRITES_FAILING: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_store_writes_failing",
        "1 while the store's last write failed because it could not take it (a full disk, a read-only database); lookups may still work."
    )
    .expect("metric keygate_store_writes_failing registers once")
});

/// Store writes that failed because the store could not take them.
pub static STORE_WRITE_ERRORS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_store_write_errors_total",
        "Store writes (credit debits, usage, sessions, key changes) that failed because the store could not take them."
    )
    .expect("metric keygate_store_write_errors_total registers once")
});

/// Live requests (WebSockets, gRPC calls, event streams) ended because their
/// credential stopped being good, by reason.
pub static STREAMS_CUT: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_streams_cut_total",
        "Live requests (upgraded connections, gRPC calls, event streams) ended because their credential stopped being good, by reason (revoked, expired, invalid, ip).",
        &["reason"]
    )
    .expect("metric keygate_streams_cut_total registers once")
});

/// 1 while the shared rate-limit backend is failing.
pub static RATELIMIT_DEGRADED: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_ratelimit_degraded",
        "1 while the shared rate-limit backend (Redis) is unreachable and this replica decides limits on its own (on_backend_error: local) or refuses (deny)."
    )
    .expect("metric keygate_ratelimit_degraded registers once")
});

/// File-store reloads by result.
pub static FILE_STORE_RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "keygate_file_store_reloads_total",
        "Re-reads of the file store after it changed, by result (ok, error: the last good keys stay).",
        &["result"]
    )
    .expect("metric keygate_file_store_reloads_total registers once")
});

/// Keys held by the file store.
pub static FILE_STORE_KEYS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "keygate_file_store_keys",
        "Keys in the file store's current (last good) key set."
    )
    .expect("metric keygate_file_store_keys registers once")
});

/// One route's metric handles, resolved once per config instead of per request
/// (`with_label_values` hashes every label value and takes a lock).
#[derive(Debug)]
pub struct RouteMetrics {
    name: String,
    /// `keygate_request_duration_seconds{route}`.
    pub duration: Histogram,
    /// `keygate_upstream_duration_seconds{route}`.
    pub upstream: Histogram,
    requests: parking_lot::RwLock<Vec<(&'static str, u16, &'static str, IntCounter)>>,
}

impl RouteMetrics {
    /// Handles for the route named `name`.
    pub fn new(name: &str) -> Self {
        RouteMetrics {
            name: name.to_string(),
            duration: REQUEST_DURATION.with_label_values(&[name]),
            upstream: UPSTREAM_DURATION.with_label_values(&[name]),
            requests: parking_lot::RwLock::new(Vec::new()),
        }
    }

    /// Counts one request with `outcome`, `status` and `protocol` on this route.
    pub fn count(&self, outcome: &'static str, status: u16, protocol: &'static str) {
        let found = self
            .requests
            .read()
            .iter()
            .find(|(o, s, p, _)| *s == status && *o == outcome && *p == protocol)
            .map(|(_, _, _, c)| c.clone());
        let counter = match found {
            Some(c) => c,
            None => {
                let c = REQUESTS.with_label_values(&[
                    &self.name,
                    outcome,
                    &status.to_string(),
                    protocol,
                ]);
                self.requests
                    .write()
                    .push((outcome, status, protocol, c.clone()));
                c
            }
        };
        counter.inc();
    }
}

/// Log lines dropped because stderr could not keep up (`crate::obs::log_writer`).
pub static LOG_LINES_DROPPED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "keygate_log_lines_dropped_total",
        "Log lines dropped, never waited for, because stderr could not keep up."
    )
    .expect("metric keygate_log_lines_dropped_total registers once")
});

/// Registers every metric so that `/metrics` lists them (with zero values) from
/// the first scrape.
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    Lazy::force(&REQUESTS);
    Lazy::force(&LOG_LINES_DROPPED);
    Lazy::force(&HEAD_TIMEOUTS);
    Lazy::force(&HEADERS_TOO_LARGE);
    Lazy::force(&H2C_REFUSED);
    Lazy::force(&H2_STREAMS_REFUSED);
    Lazy::force(&PASSWORD_POOL_REJECTED);
    Lazy::force(&DECISIONS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&UPSTREAM_DURATION);
    Lazy::force(&KEY_CACHE_HITS);
    Lazy::force(&KEY_CACHE_NEGATIVE_HITS);
    Lazy::force(&KEY_CACHE_MISSES);
    Lazy::force(&KEY_CACHE_SIZE);
    Lazy::force(&STORE_QUERIES);
    Lazy::force(&CREDIT_DEBITS_PER_COMMIT);
    for result in ["ok", "error"] {
        CREDIT_REFUNDS.with_label_values(&[result]);
    }
    Lazy::force(&RATELIMIT_BACKEND_ERRORS);
    Lazy::force(&JWT_VERIFICATIONS);
    for result in ["ok", "error", "rate_limited"] {
        JWKS_REFRESHES.with_label_values(&[result]);
    }
    Lazy::force(&JWKS_KEYS);
    Lazy::force(&JWKS_STALE);
    Lazy::force(&KEY_CHANGE_LAG);
    for result in ["ok", "error"] {
        KEY_CHANGE_FEED_CONNECTS.with_label_values(&[result]);
    }
    Lazy::force(&KEY_CHANGE_FEED_UP);
    Lazy::force(&KEY_CACHE_STALE_SERVED);
    Lazy::force(&KEY_CACHE_UNWATCHED_READS);
    Lazy::force(&STORE_WRITES_FAILING);
    Lazy::force(&STORE_WRITE_ERRORS);
    for reason in ["revoked", "expired", "invalid", "ip"] {
        STREAMS_CUT.with_label_values(&[reason]);
    }
    Lazy::force(&RATELIMIT_DEGRADED);
    for result in ["ok", "error"] {
        FILE_STORE_RELOADS.with_label_values(&[result]);
    }
    for result in ["ok", "error"] {
        CONFIG_RELOADS.with_label_values(&[result]);
    }
    for result in ["delivered", "failed", "given_up"] {
        WEBHOOK_DELIVERIES.with_label_values(&[result]);
    }
    Lazy::force(&WEBHOOK_EVENTS_DROPPED);
    for result in ["exported", "failed"] {
        TRACE_SPANS.with_label_values(&[result]);
    }
}
