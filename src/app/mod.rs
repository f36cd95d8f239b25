//! The application: how keygate is put together and run — the server and its
//! services, reloads, signals, the drain, the admin listener, the one compile of
//! a config, the CLI's commands and the demo upstream.

pub mod admin; // /health, /ready, /metrics on the admin listener
pub mod commands; // what each CLI subcommand does
pub mod compile; // the one compile of a config: every part parsed once, every problem listed
pub mod demo; // the echo upstream for the quickstart and tests
pub mod reload; // SIGHUP: re-read, validate and swap the config
pub mod root; // the composition root: every service built from a config and a clock
pub mod server; // assembles and runs the Pingora server
pub mod signals; // which signal stops, drains, upgrades or reloads
#[cfg(test)]
pub(crate) mod testkit; // every service over one store and one manual clock, for in-process tests
