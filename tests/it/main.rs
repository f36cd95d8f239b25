//! keygate's black-box tests, one module per capability, in one test binary so
//! that Pingora and the rest are linked once (21 binaries each linking it filled a
//! CI disk). Each module starts the real `keygate` binary on free ports in front of
//! real upstreams; `common` is the harness.

// Tests read the real time, print what they measured, and unwrap.
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod common;

mod abuse;
mod access_log;
mod accounts;
mod attacks;
mod audit;
mod authorizer;
mod bad_input;
mod check_serve;
mod cli_keys;
mod config_errors;
mod credential_sources;
mod dialects;
mod docs_links;
mod emails;
mod failed_auth;
mod file_store;
mod forwarding;
mod headers;
mod http2;
mod import;
mod jwks;
mod jwt_tokens;
mod limits;
mod limits_v2;
mod live_streams;
mod management_auth;
mod management_keys;
mod messages;
mod metrics;
mod operations;
mod portal;
mod portal_forgery;
mod replicas;
mod scopes;
mod secrets;
mod seeds;
mod store_restarts;
mod store_writes;
mod traces;
mod unauthorized;
mod usage;
mod users;
mod webhooks;
