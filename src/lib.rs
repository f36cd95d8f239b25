//! keygate: a reverse-proxy auth sidecar on Pingora.
//!
//! The crate's map, one line per module:

#![forbid(unsafe_code)]
// Unit tests may read the real time and unwrap (clippy.toml allows the latter).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod accounts; // users: sign-up and throttled sign-in, shared by the API and the portal
pub mod app; // the application: server, reload, signals, drain, admin, the compile, CLI commands
pub mod auth; // credentials, API-key format, key cache, verification, Principal
pub mod authorizer; // keygate deciding for another proxy: Envoy ext_authz, nginx auth_request, forward auth
pub mod clock; // injected time
pub mod config; // the YAML config's serde mirror: types, durations, ${VAR}, its own checks
pub mod dialect; // the API's own shapes: error bodies by template, operations at documented paths
pub mod domain; // plain types every layer shares: keys, hashes, ids, users, usage
pub mod error; // contract errors -> status, JSON body, headers
pub mod events; // webhooks: receivers, signatures, the outbox's delivery worker
pub mod intern; // one shared copy of each tier and route name held per key
pub mod keys; // the key rules every door applies: who may set what
pub mod ledger; // what requests spend and leave behind: credits, usage
pub mod limit; // fixed windows, limiter backends, per-IP limits
pub mod local; // what the local applications (API, portal) share: one request type, one router
pub mod management; // the /v1 management API answered by keygate itself
pub mod net; // connections: backend runtime, TLS, the client connection wrapper
pub mod obs; // observability: metrics, access log, log writer, log filter
pub mod portal; // the HTML dashboard where users get and watch their keys
pub mod proxy; // the Pingora ProxyHttp implementation and its steps
pub mod store; // KeyStore trait and backends
