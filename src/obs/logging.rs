//! The log filter: `RUST_LOG`, or `warn,keygate=info`, with Pingora's own targets
//! capped at `info` unless `RUST_LOG` names them.
//!
//! Pingora logs some failures at `debug` with the raw request buffer in the message
//! (`Fail to proxy: … buf: "…X-API-Key: kg_sk_live_…"`): at `RUST_LOG=debug` that
//! would put a presented key in the log. Its debug lines are only written when asked
//! for by name (`RUST_LOG=debug,pingora_proxy=debug`).

use tracing_subscriber::EnvFilter;

/// The default when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "warn,keygate=info";

/// The filter directives for `rust_log` (the `RUST_LOG` value, if any).
pub fn directives(rust_log: Option<&str>) -> String {
    let spec = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    if spec.contains("pingora") {
        spec.to_string()
    } else {
        format!("{spec},pingora=info")
    }
}

/// The filter for `rust_log`; an unparsable value falls back to the default.
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    EnvFilter::try_new(directives(rust_log)).unwrap_or_else(|_| EnvFilter::new(directives(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_is_capped_unless_named() {
        assert_eq!(directives(None), "warn,keygate=info,pingora=info");
        assert_eq!(directives(Some("debug")), "debug,pingora=info");
        assert_eq!(
            directives(Some("debug,pingora_proxy=debug")),
            "debug,pingora_proxy=debug"
        );
        let f = filter(Some("debug"));
        assert!(f.to_string().contains("pingora=info"));
    }
}
