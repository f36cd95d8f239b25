//! The admin listener: `/health`, `/ready`, `/metrics`. Never on the data plane,
//! never proxied, no credentials.

use crate::auth::cache::KeyCache;
use crate::limit::Limiter;
use crate::obs::metrics;
use crate::store::write_health::WriteStatus;
use crate::store::KeyStore;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;
use std::time::Duration;

/// The admin HTTP application.
pub struct AdminApp {
    store: Arc<dyn KeyStore>,
    cache: KeyCache,
    limiter: Arc<dyn Limiter>,
}

impl AdminApp {
    /// An admin app reporting on `store`, `cache` and `limiter`.
    pub fn new(store: Arc<dyn KeyStore>, cache: KeyCache, limiter: Arc<dyn Limiter>) -> Self {
        AdminApp {
            store,
            cache,
            limiter,
        }
    }

    /// `/ready`: 200 when the store and the rate-limit backend both answer, else 503
    /// naming which one does not; `store_writes` says whether the store's last write
    /// went through (`ok`, `failing` with `store_write_error`, or `unknown`).
    /// `?require=store` leaves the rate-limit backend out (for operators who keep
    /// replicas in service on `on_backend_error: local` during a Redis outage).
    async fn ready(&self, store_only: bool) -> Response<Vec<u8>> {
        let wait = Duration::from_secs(2);
        let (store, limiter) = tokio::join!(
            tokio::time::timeout(wait, self.store.ping()),
            tokio::time::timeout(wait, self.limiter.ready()),
        );
        let store = match store {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: store unreachable");
                "unavailable"
            }
            Err(_) => "timeout",
        };
        let rate_limit = match limiter {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: rate-limit backend unreachable");
                "unavailable"
            }
            Err(_) => "timeout",
        };
        let ready = store == "ok" && (rate_limit == "ok" || store_only);
        let mut body = serde_json::json!({
            "status": if ready { "ready" } else { "not_ready" },
            "store": store,
            "rate_limit": rate_limit,
        });
        // Failing writes do not take the replica out of rotation: requests that
        // write nothing are still served. They are said here, and in the metrics.
        if let Some(writes) = self.store.write_health() {
            let status = writes.status();
            body["store_writes"] = status.as_str().into();
            if let WriteStatus::Failing { error } = status {
                body["store_write_error"] = error.into();
            }
        }
        json(if ready { 200 } else { 503 }, body)
    }
}

fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Content-Length", bytes.len())
        .header("Cache-Control", "no-store")
        .body(bytes)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/health" => json(200, serde_json::json!({"status": "ok"})),
            "/ready" => {
                let store_only = session.req_header().uri.query() == Some("require=store");
                self.ready(store_only).await
            }
            "/metrics" => {
                metrics::KEY_CACHE_SIZE.set(self.cache.len() as i64);
                let dropped = crate::obs::log_writer::dropped_lines();
                let counted = metrics::LOG_LINES_DROPPED.get();
                metrics::LOG_LINES_DROPPED.inc_by(dropped.saturating_sub(counted));
                pingora_prometheus::PrometheusHttpApp
                    .response(session)
                    .await
            }
            _ => json(
                404,
                serde_json::json!({"error": "not_found", "message": "Not found", "details": {}}),
            ),
        }
    }
}
