//! The configuration the request path reads: built once from a compiled config
//! (`crate::app::compile`), swapped whole on reload, never locked.

use super::cors::CorsPolicy;
use super::forward::ForwardPlan;
use super::routes::RouteTable;
use crate::auth::authenticator::AuthSettings;
use crate::auth::credentials::Source;
use crate::auth::key_format::KeyFormat;
use crate::config::{Config, HeaderStyle, Registration, TierConfig, UpstreamProtocol};
use crate::keys::rules::KeyRules;
use crate::limit::ip::IpLimits;
use crate::limit::Tiers;
use crate::management::ApiContext;
use crate::portal::PortalSettings;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Why a valid-looking config could not be compiled (e.g. an unresolvable host).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The upstream host did not resolve.
    #[error("{field}: cannot resolve `{url}`: {reason}")]
    Resolve {
        /// Config path of the URL.
        field: &'static str,
        /// The URL.
        url: String,
        /// Resolver error.
        reason: String,
    },
}

/// One upstream, resolved once.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Use TLS.
    pub tls: bool,
    /// SNI / certificate name.
    pub sni: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout.
    pub read_timeout: Duration,
    /// The HTTP version spoken to it.
    pub protocol: UpstreamProtocol,
}

impl Upstream {
    fn resolve(
        field: &'static str,
        url: &str,
        protocol: UpstreamProtocol,
        connect: Duration,
        read: Duration,
    ) -> Result<Self, RuntimeError> {
        let err = |reason: String| RuntimeError::Resolve {
            field,
            url: url.to_string(),
            reason,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| err("no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("no address".into()))?;
        Ok(Upstream {
            addr,
            tls,
            sni: host.to_string(),
            connect_timeout: connect,
            read_timeout: read,
            protocol,
        })
    }
}

/// Everything the request path needs, compiled.
#[derive(Debug)]
pub struct Runtime {
    /// Routes.
    pub routes: RouteTable,
    /// Metric handles of management API requests (route label `management`).
    pub management_metrics: std::sync::Arc<crate::obs::metrics::RouteMetrics>,
    /// Tiers by name, and the default.
    pub tiers: Tiers,
    /// Credential sources in order.
    pub sources: Vec<Source>,
    /// API-key format.
    pub key_format: KeyFormat,
    /// Live upstream.
    pub upstream: Upstream,
    /// Sandbox upstream for test keys.
    pub sandbox: Option<Upstream>,
    /// Header rewriting.
    pub forward: ForwardPlan,
    /// Per-IP limits.
    pub ip_limits: IpLimits,
    /// Rate-limit header style.
    pub header_style: HeaderStyle,
    /// Management API prefix, when enabled.
    pub management_prefix: Option<String>,
    /// Portal prefix, when enabled (and the store can hold users).
    pub portal_prefix: Option<String>,
    /// Metric handles of portal requests (route label `portal`).
    pub portal_metrics: std::sync::Arc<crate::obs::metrics::RouteMetrics>,
    /// CORS, when `cors:` is set.
    pub cors: Option<CorsPolicy>,
    /// `server.body_timeout`: a body keygate reads itself must arrive within it.
    pub body_timeout: Duration,
    /// `server.idle_timeout`: how long a kept-alive connection may wait.
    pub idle_timeout: Duration,
    /// `server.h2_max_concurrent_streams`.
    pub h2_max_concurrent_streams: u32,
    /// `credits.refund_on_upstream_error`.
    pub refund_on_upstream_error: bool,
    /// The configured tiers as written (what the key rules judge keys by).
    pub tier_configs: BTreeMap<String, TierConfig>,
    /// `default_tier`.
    pub default_tier: String,
    /// `management.user_scopes`.
    pub user_scopes: Vec<String>,
    /// `management.registration: open`.
    pub registration_open: bool,
    /// `management.refresh_token_prefix`.
    pub refresh_token_prefix: String,
    /// What the portal reads.
    pub portal: PortalSettings,
    /// The API's own shapes (`dialect:`).
    pub dialect: std::sync::Arc<crate::dialect::Dialect>,
    /// `audit.retention` (`None`: every entry is kept).
    pub audit_retention: Option<Duration>,
    /// `webhooks`: the receivers.
    pub webhooks: std::sync::Arc<Vec<crate::events::Receiver>>,
    /// `authorizer.trust_forwarded_from`: the peers whose description of the
    /// original request the authorizer believes.
    pub authorizer_trusted: Vec<ipnet::IpNet>,
    /// What the request path announces to them.
    pub announced: crate::events::Announced,
}

impl Runtime {
    /// What authentication reads of this config.
    pub fn auth_settings(&self) -> AuthSettings<'_> {
        AuthSettings {
            sources: &self.sources,
            key_format: &self.key_format,
            tiers: &self.tiers,
        }
    }

    /// The key rules of this config, for every door.
    pub fn key_rules(&self) -> KeyRules<'_> {
        KeyRules {
            tiers: &self.tier_configs,
            default_tier: &self.default_tier,
            user_scopes: &self.user_scopes,
            key_format: &self.key_format,
        }
    }

    /// What the management API reads of this config.
    pub fn api_context(&self) -> ApiContext<'_> {
        ApiContext {
            rules: self.key_rules(),
            registration_open: self.registration_open,
            auth: self.auth_settings(),
            prefix: self.management_prefix.as_deref().unwrap_or("/v1"),
            portal_prefix: self.portal_prefix.as_deref(),
            refresh_prefix: &self.refresh_token_prefix,
        }
    }

    /// What the portal reads of this config.
    pub fn portal_context(&self) -> crate::portal::PortalContext<'_> {
        let mut rules = self.key_rules();
        if let Some(tier) = &self.portal.tier {
            rules.default_tier = tier;
        }
        crate::portal::PortalContext {
            settings: &self.portal,
            rules,
            signup_open: self.registration_open,
            tiers: &self.tiers,
        }
    }

    /// Builds the request path's view of a compiled config (`crate::app::compile`
    /// parsed `key_format` and `sources`). Resolves upstream hosts (blocking).
    pub fn build(
        config: &Config,
        key_format: KeyFormat,
        sources: Vec<Source>,
        management_available: bool,
        dialect: std::sync::Arc<crate::dialect::Dialect>,
        branding: std::sync::Arc<crate::portal::branding::Branding>,
    ) -> Result<Self, RuntimeError> {
        let tiers = Tiers::from_config(&config.tiers, &config.default_tier);
        let u = &config.upstream;
        let upstream = Upstream::resolve(
            "upstream.url",
            &u.url,
            u.protocol,
            u.connect_timeout.get(),
            u.read_timeout.get(),
        )?;
        let sandbox = match &u.sandbox_url {
            Some(url) => Some(Upstream::resolve(
                "upstream.sandbox_url",
                url,
                u.sandbox_protocol.unwrap_or(u.protocol),
                u.connect_timeout.get(),
                u.read_timeout.get(),
            )?),
            None => None,
        };
        let receivers: Vec<_> = config
            .webhooks
            .iter()
            .map(crate::events::Receiver::of)
            .collect();
        Ok(Runtime {
            routes: RouteTable::new(&config.routes),
            management_metrics: std::sync::Arc::new(crate::obs::metrics::RouteMetrics::new(
                "management",
            )),
            forward: ForwardPlan::new(&config.forward, &sources)
                .without_portal_cookies(config.portal.enabled),
            key_format,
            sources,
            tiers,
            upstream,
            sandbox,
            ip_limits: IpLimits::from_config(&config.rate_limit.ip),
            header_style: config.rate_limit.headers,
            management_prefix: (config.management.enabled && management_available)
                .then(|| config.management.prefix.clone()),
            portal_prefix: (config.portal.enabled && management_available)
                .then(|| config.portal.prefix.clone()),
            portal_metrics: std::sync::Arc::new(crate::obs::metrics::RouteMetrics::new("portal")),
            cors: config.cors.as_ref().map(CorsPolicy::new),
            body_timeout: config.server.body_timeout.get(),
            idle_timeout: config.server.idle_timeout.get(),
            h2_max_concurrent_streams: config.server.h2_max_concurrent_streams,
            refund_on_upstream_error: config.credits.refund_on_upstream_error,
            tier_configs: config.tiers.clone(),
            default_tier: config.default_tier.clone(),
            user_scopes: config.management.user_scopes.clone(),
            registration_open: config.management.registration == Registration::Open,
            refresh_token_prefix: config.management.refresh_token_prefix.clone(),
            portal: PortalSettings::from_config(config, branding),
            dialect,
            audit_retention: Some(config.audit.retention.get()).filter(|d| !d.is_zero()),
            announced: crate::events::Announced::of(&receivers, &config.credits),
            webhooks: std::sync::Arc::new(receivers),
            authorizer_trusted: config
                .authorizer
                .trust_forwarded_from
                .iter()
                .filter_map(|t| crate::domain::key::parse_network(t.trim()))
                .collect(),
        })
    }
}
