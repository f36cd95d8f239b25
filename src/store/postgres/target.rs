//! `store.url` for PostgreSQL: the connection settings and the TLS they ask for.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and no certificate
//! files, so keygate reads libpq's TLS parameters itself and hands the rest of the
//! URL to tokio-postgres. The meanings are libpq's:
//!
//! | `sslmode` | keygate |
//! |---|---|
//! | `disable` | plain TCP |
//! | `allow`, `prefer` (the default) | TLS when the server offers it, else plain; certificate not checked |
//! | `require` | TLS or no connection; certificate not checked (checked like `verify-ca` when `sslrootcert` is given) |
//! | `verify-ca` | TLS; the certificate must chain to `sslrootcert` (a PEM file, or `system`, the default) |
//! | `verify-full` | as `verify-ca`, and it must name the host connected to |
//!
//! `sslcert` and `sslkey` give a client certificate. (`allow` tries TLS first, where
//! libpq tries plain TCP first.)

use crate::net::backend_tls::{self, ClientCert, Roots, Verify};
use std::path::PathBuf;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Parsed `store.url`: where to connect, and how to secure it.
#[derive(Clone)]
pub struct PgTarget {
    /// Connection settings (host, user, database, ...).
    pub config: tokio_postgres::Config,
    /// The TLS connector (unused with `sslmode=disable`).
    pub tls: MakeRustlsConnect,
    /// TLS may be used, but the server's certificate is not checked.
    unchecked_tls: bool,
}

/// libpq's TLS parameters, taken out of a URL's query.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

/// Splits libpq's TLS parameters from the rest of `url` (percent-decoded).
fn split_tls_params(url: &str) -> (String, TlsParams) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), TlsParams::default());
    };
    let mut params = TlsParams::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        };
        match key {
            "sslmode" => params.sslmode = Some(decoded()),
            "sslrootcert" => params.sslrootcert = Some(decoded()),
            "sslcert" => params.sslcert = Some(decoded()),
            "sslkey" => params.sslkey = Some(decoded()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, params)
}

impl PgTarget {
    /// Parses `url`, reading any certificate files it names; the error says what
    /// is wrong (never repeating the URL, which may hold a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, p) = split_tls_params(url);
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let roots = p.sslrootcert.as_deref().map(|r| match r {
            "system" => Roots::System,
            file => Roots::File(PathBuf::from(file)),
        });
        let (mode, verify) = match p.sslmode.as_deref().unwrap_or("prefer") {
            "disable" => (SslMode::Disable, Verify::EncryptOnly),
            m @ ("allow" | "prefer" | "require") => {
                let mode = if m == "require" {
                    SslMode::Require
                } else {
                    SslMode::Prefer
                };
                (mode, roots.map_or(Verify::EncryptOnly, Verify::ChainOnly))
            }
            "verify-ca" => (
                SslMode::Require,
                Verify::ChainOnly(roots.unwrap_or(Roots::System)),
            ),
            "verify-full" => (
                SslMode::Require,
                Verify::Full(roots.unwrap_or(Roots::System)),
            ),
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        };
        let client = match (p.sslcert, p.sslkey) {
            (Some(cert), Some(key)) => Some(ClientCert {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            _ => return Err("sslcert and sslkey go together".into()),
        };
        config.ssl_mode(mode);
        let unchecked_tls = mode != SslMode::Disable && verify == Verify::EncryptOnly;
        // With `disable` the connector is never used: no client certificate is read.
        let client = client.filter(|_| mode != SslMode::Disable);
        let tls = backend_tls::client_config(&verify, client.as_ref())?;
        Ok(PgTarget {
            config,
            tls: MakeRustlsConnect::new(tls),
            unchecked_tls,
        })
    }

    /// A warning for operators when the database is reached over the network with
    /// TLS whose certificate is not checked (libpq's `prefer`/`require`): anyone on
    /// the path could pose as the database. Loopback and Unix sockets are exempt.
    pub fn warning(&self) -> Option<String> {
        use tokio_postgres::config::Host;
        if !self.unchecked_tls {
            return None;
        }
        let remote: Vec<&str> = self
            .config
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                Host::Tcp(name) => Some(name.as_str()),
                Host::Unix(_) => None,
            })
            .filter(|name| {
                let ip = name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>();
                !(*name == "localhost" || ip.is_ok_and(|ip| ip.is_loopback()))
            })
            .collect();
        (!remote.is_empty()).then(|| {
            format!(
                "store.url: the certificate of {} is not checked (sslmode prefer/require); \
                 use sslmode=verify-full (with sslrootcert) so that nothing on the network can pose as the database",
                remote.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, p) = split_tls_params(
            "postgres://u:p@db:5432/keys?application_name=kg&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        );
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/keys?application_name=kg&connect_timeout=3"
        );
        assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        let (rest, p) = split_tls_params("postgres://db/keys?sslmode=require");
        assert_eq!(
            (rest.as_str(), p.sslmode.as_deref()),
            ("postgres://db/keys", Some("require"))
        );
        let (rest, p) = split_tls_params("postgres://db/keys");
        assert_eq!(
            (rest.as_str(), p),
            ("postgres://db/keys", TlsParams::default())
        );
    }

    #[test]
    fn unchecked_tls_to_a_remote_database_is_warned_about() {
        let warning = |url: &str| PgTarget::parse(url).unwrap().warning();
        assert!(warning("postgres://u@db.internal/k")
            .unwrap()
            .contains("db.internal"));
        assert!(warning("postgres://u@10.0.0.5/k?sslmode=require").is_some());
        assert!(warning("postgres://u@db.internal/k?sslmode=verify-full").is_none());
        assert!(warning("postgres://u@db.internal/k?sslmode=disable").is_none());
        assert!(warning("postgres://u@127.0.0.1/k").is_none());
        assert!(warning("postgres://u@localhost/k?sslmode=require").is_none());
        assert!(warning("postgres://u@[::1]/k").is_none());
    }

    #[test]
    fn modes_map_to_libpq_meanings_and_bad_ones_say_why() {
        let mode = |url: &str| PgTarget::parse(url).map(|t| t.config.get_ssl_mode());
        assert_eq!(mode("postgres://db/k"), Ok(SslMode::Prefer));
        assert_eq!(
            mode("postgres://db/k?sslmode=disable"),
            Ok(SslMode::Disable)
        );
        assert_eq!(mode("postgres://db/k?sslmode=allow"), Ok(SslMode::Prefer));
        assert_eq!(
            mode("postgres://db/k?sslmode=require"),
            Ok(SslMode::Require)
        );
        assert_eq!(
            mode("postgres://db/k?sslmode=verify-ca"),
            Ok(SslMode::Require)
        );
        assert_eq!(
            mode("postgres://db/k?sslmode=verify-full"),
            Ok(SslMode::Require)
        );
        let err = |url: &str| PgTarget::parse(url).err().unwrap_or_default();
        assert!(err("postgres://db/k?sslmode=strict").contains("sslmode `strict`"));
        assert!(
            err("postgres://db/k?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .contains("/nonexistent/ca.pem")
        );
        assert!(err("postgres://db/k?sslcert=/c.pem").contains("go together"));
        assert!(err("postgres://db/k?nonsense=1").contains("invalid URL"));
    }
}
