//! Observability: what keygate tells operators — every metric, the access line,
//! the log writer that keeps logging off the request path, and the log filter.

pub mod access_log; // the access line, formatted by hand, text or JSON
pub mod log_writer; // per-thread log buffers written by a thread of their own; dropped (counted) if stderr stalls
pub mod logging; // the log filter: RUST_LOG with Pingora capped at info
pub mod metrics; // every Prometheus metric
pub mod otlp_http; // the exporter's HTTP client: reqwest's blocking one, on the exporter's thread
pub mod traces; // one span per request, continuing the client's traceparent, exported over OTLP/HTTP
