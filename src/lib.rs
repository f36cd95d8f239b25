//! keygate: a reverse-proxy auth sidecar on Pingora.
//!
//! The crate's map, one line per module:

#![forbid(unsafe_code)]
// Unit tests may read the real time and unwrap (clippy.toml allows the latter).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod access_log; // the access line, formatted by hand, text or JSON
pub mod accounts; // users: sign-up and throttled sign-in, shared by the API and the portal
pub mod admin; // /health, /ready, /metrics on the admin listener
pub mod auth; // credentials, API-key format, key cache, verification, Principal
pub mod backend_tls; // TLS to PostgreSQL and Redis: roots, libpq's sslmode checks
pub mod checks; // every check of a config: its own, then the backends' and files'
pub mod clock; // injected time
pub mod commands; // what each CLI subcommand does
pub mod config; // the YAML config: types, durations, ${VAR}, validation
pub mod credits; // spends credits on metered routes by group commit
pub mod demo; // the echo upstream for the quickstart and tests
pub mod domain; // plain types every layer shares: keys, hashes, ids, users, usage
pub mod drain; // requests in flight: on shutdown, exit once the last one ends
pub mod error; // contract errors -> status, JSON body, headers
pub mod intern; // one shared copy of each tier and route name held per key
pub mod io_runtime; // the runtime that owns PostgreSQL and Redis connections
pub mod keys; // the key rules every door applies: who may set what
pub mod limit; // fixed windows, limiter backends, per-IP limits
pub mod log_writer; // per-thread log buffers written by a thread of their own; dropped (counted) if stderr stalls
pub mod logging; // the log filter: RUST_LOG with Pingora capped at info
pub mod management; // the /v1 management API answered by keygate itself
pub mod metrics; // every Prometheus metric
pub mod portal; // the HTML dashboard where users get and watch their keys
pub mod proxy; // the Pingora ProxyHttp implementation and its steps
pub mod reload; // SIGHUP: re-read, validate and swap the config
pub mod server; // assembles and runs the Pingora server
pub mod signals; // which signal stops, drains, upgrades or reloads
pub mod store; // KeyStore trait and backends
#[cfg(test)]
mod testkit; // every service over one store and one manual clock, for in-process tests
pub mod tls; // TLS termination with a certificate swapped on reload
pub mod usage; // per-key usage, aggregated in memory and flushed in batches
