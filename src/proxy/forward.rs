//! What the upstream sees: credentials stripped, spoofed identity removed, the
//! caller's identity added, `X-Forwarded-For` and `X-Request-Id` set.

use crate::auth::credentials::{bearer_token, Source};
use crate::auth::IdentityField;
use crate::auth::Principal;
use crate::config::ForwardConfig;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// Headers through which some upstreams (Symfony's and IIS's URL rewriting) take
/// the path from the client instead of the request line: the path the decision
/// used would not be the one served. Never forwarded.
const PATH_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Prefixes under which a bridge in front of a service turns a request header into
/// one of the service's own: grpc-gateway (the usual REST-to-gRPC bridge) passes
/// `Grpc-Metadata-X-Auth-Org` on as gRPC metadata `x-auth-org`. A header that names an
/// identity (or stripped credential) header once such a prefix is removed is a
/// spoofing attempt, like the `_` spellings.
const BRIDGE_PREFIXES: [&str; 1] = ["grpc-metadata-"];

/// `name` (lowercase, `_` already read as `-`) without every bridge prefix it starts
/// with.
fn unbridged(mut name: &str) -> &str {
    while let Some(rest) = BRIDGE_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p).filter(|r| !r.is_empty()))
    {
        name = rest;
    }
    name
}

/// Which principal field an identity header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Subject,
    KeyId,
    Org,
    Tier,
    Scopes,
    Environment,
    Method,
    Account,
}

/// One identity header: its name, its spelling on the wire, the field it carries.
#[derive(Clone, Debug)]
struct IdentityHeader {
    name: HeaderName,
    /// The name as configured (case kept), shared so inserting copies nothing.
    wire: Bytes,
    field: Field,
}

/// The compiled `forward:` section plus the credential sources to strip.
#[derive(Clone, Debug)]
pub struct ForwardPlan {
    identity: Vec<IdentityHeader>,
    strip_credentials: bool,
    credential_headers: Vec<HeaderName>,
    strip_bearer: bool,
    credential_params: Vec<String>,
    /// Remove the portal's cookies from forwarded requests.
    strip_portal_cookies: bool,
}

/// The portal's cookies: a session is a credential of keygate's own, never the
/// upstream's. Under TLS they are `__Host-` cookies with `Path=/`, which browsers
/// send with every request to the host, the API's included.
const PORTAL_COOKIES: [&str; 4] = [
    crate::portal::session::SESSION_COOKIE,
    crate::portal::session::PRE_COOKIE,
    crate::portal::session::SECURE_SESSION_COOKIE,
    crate::portal::session::SECURE_PRE_COOKIE,
];

impl ForwardPlan {
    /// Compiles `forward:` for the given credential sources.
    pub fn new(c: &ForwardConfig, sources: &[Source]) -> Self {
        let h = &c.headers;
        let identity = [
            (&h.subject, Field::Subject),
            (&h.key_id, Field::KeyId),
            (&h.org, Field::Org),
            (&h.tier, Field::Tier),
            (&h.scopes, Field::Scopes),
            (&h.environment, Field::Environment),
            (&h.method, Field::Method),
            (&h.account, Field::Account),
        ]
        .into_iter()
        .filter_map(|(name, field)| {
            let configured = name.as_deref()?;
            let name = HeaderName::from_bytes(configured.to_ascii_lowercase().as_bytes()).ok()?;
            let wire = Bytes::copy_from_slice(configured.as_bytes());
            Some(IdentityHeader { name, wire, field })
        })
        .collect();
        ForwardPlan {
            identity,
            strip_credentials: c.strip_credentials,
            credential_headers: sources
                .iter()
                .filter_map(|s| match s {
                    Source::Header(n) => Some(n.clone()),
                    _ => None,
                })
                .collect(),
            strip_bearer: sources.contains(&Source::Bearer),
            credential_params: sources
                .iter()
                .filter_map(|s| match s {
                    Source::Query(n) => Some(n.clone()),
                    _ => None,
                })
                .collect(),
            strip_portal_cookies: false,
        }
    }

    /// The same plan, removing the portal's cookies from what it forwards when
    /// `portal` is on.
    pub fn without_portal_cookies(mut self, portal: bool) -> Self {
        self.strip_portal_cookies = portal;
        self
    }

    /// Rewrites `req` for the upstream. `principal` is `None` on `auth: none` routes,
    /// whose credentials pass untouched; identity headers sent by the client are
    /// removed on every route so the upstream can always trust them.
    pub fn apply(
        &self,
        req: &mut RequestHeader,
        principal: Option<&Principal>,
        client_ip: Option<IpAddr>,
        request_id: &HeaderValue,
    ) -> pingora::Result<()> {
        for h in &self.identity {
            req.remove_header(&h.name);
        }
        let strip = principal.is_some() && self.strip_credentials;
        let spoofed: Vec<HeaderName> = self.spoofed(&req.headers, strip).cloned().collect();
        for name in spoofed {
            req.remove_header(&name);
        }
        if self.strip_portal_cookies {
            if let Some(kept) = kept_cookies(&req.headers) {
                req.remove_header(&http::header::COOKIE);
                for v in kept {
                    req.append_header(http::header::COOKIE, v)?;
                }
            }
        }
        if let Some(p) = principal {
            if strip {
                self.strip(req)?;
            }
            for (h, value) in self.identity_values(p) {
                req.insert_header(h.wire.clone(), value)?;
            }
        }
        if let Some(ip) = client_ip {
            let xff = match req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
                _ => ip_text(ip),
            };
            req.insert_header("x-forwarded-for", xff)?;
        }
        req.insert_header("x-request-id", request_id.clone())?;
        Ok(())
    }

    /// What [`Self::apply`] would change in a request with `headers` and `query`,
    /// for a proxy that applies the changes itself (the authorizer's answer):
    /// the same rule, as a list. `X-Forwarded-For` is left to that proxy.
    pub fn edits(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        principal: Option<&Principal>,
        request_id: &HeaderValue,
    ) -> Edits {
        let mut e = Edits::default();
        let strip = principal.is_some() && self.strip_credentials;
        if let Some(p) = principal {
            for (h, value) in self.identity_values(p) {
                e.set.push((h.name.clone(), value));
            }
        }
        let is_set = |e: &Edits, name: &HeaderName| e.set.iter().any(|(n, _)| n == name);
        for h in &self.identity {
            if headers.contains_key(&h.name) && !is_set(&e, &h.name) {
                e.remove.push(h.name.clone());
            }
        }
        for name in self.spoofed(headers, strip) {
            if !e.remove.contains(name) {
                e.remove.push(name.clone());
            }
        }
        if self.strip_portal_cookies {
            if let Some(kept) = kept_cookies(headers) {
                e.replace(http::header::COOKIE, kept);
            }
        }
        if strip {
            for name in &self.credential_headers {
                if headers.contains_key(name) && !e.remove.contains(name) {
                    e.remove.push(name.clone());
                }
            }
            if let Some(kept) = self.kept_authorization(headers) {
                e.replace(AUTHORIZATION, kept);
            }
            for name in query.unwrap_or("").split('&').map(param_name) {
                if self.is_credential_param(name) && !e.remove_params.iter().any(|p| p == name) {
                    e.remove_params.push(name.to_string());
                }
            }
        }
        if headers.get(X_REQUEST_ID) != Some(request_id) {
            e.set.push((X_REQUEST_ID, request_id.clone()));
        }
        e
    }

    /// The identity headers carrying `p`: each configured header and its value (a
    /// field `p` lacks is left out).
    fn identity_values<'a>(
        &'a self,
        p: &'a Principal,
    ) -> impl Iterator<Item = (&'a IdentityHeader, HeaderValue)> + 'a {
        let id = &*p.identity;
        self.identity.iter().filter_map(move |h| {
            let value = match h.field {
                Field::Subject => id.header_value(IdentityField::Subject),
                Field::KeyId => id.header_value(IdentityField::KeyId),
                Field::Org => id.header_value(IdentityField::Org),
                Field::Tier => Some(p.tier.name_value.clone()),
                Field::Scopes => id.header_value(IdentityField::Scopes),
                Field::Environment => Some(HeaderValue::from_static(id.environment.as_str())),
                Field::Method => Some(HeaderValue::from_static(id.method.as_str())),
                Field::Account => id.header_value(IdentityField::Account),
            };
            Some((h, value?))
        })
    }

    /// In one pass over the header names, the [`PATH_OVERRIDES`] and every other
    /// spelling of an identity header, or of a stripped credential header, that
    /// something behind keygate reads as the real one: with `_` for `-` (CGI/WSGI
    /// upstreams and nginx with `underscores_in_headers on` read `X_Auth_Org` as
    /// `HTTP_X_AUTH_ORG`, just like `X-Auth-Org`), and under a bridge's prefix
    /// ([`BRIDGE_PREFIXES`]: `Grpc-Metadata-X-Auth-Org` becomes gRPC metadata
    /// `x-auth-org`), or both.
    fn spoofed<'a>(
        &'a self,
        headers: &'a HeaderMap,
        credentials: bool,
    ) -> impl Iterator<Item = &'a HeaderName> + 'a {
        headers.keys().filter(move |name| {
            let name = name.as_str();
            let bridged = BRIDGE_PREFIXES.iter().any(|p| name.starts_with(p));
            if memchr::memchr(b'_', name.as_bytes()).is_none() && !bridged {
                return PATH_OVERRIDES.contains(&name);
            }
            let dashed = name.replace('_', "-");
            let plain = unbridged(&dashed);
            PATH_OVERRIDES.contains(&plain)
                || self.identity.iter().any(|h| h.name.as_str() == plain)
                || (credentials && self.credential_headers.iter().any(|h| h.as_str() == plain))
        })
    }

    /// True when query parameter `name` is a credential source (`query:NAME`).
    fn is_credential_param(&self, name: &str) -> bool {
        self.credential_params.iter().any(|p| p == name)
    }

    /// The `Authorization` values left once bearer tokens are stripped, when
    /// stripping changes anything (`None`: nothing to strip).
    fn kept_authorization(&self, headers: &HeaderMap) -> Option<Vec<HeaderValue>> {
        if !self.strip_bearer {
            return None;
        }
        let all = headers.get_all(AUTHORIZATION);
        if !all.iter().any(|v| bearer_token(v.as_bytes()).is_some()) {
            return None;
        }
        Some(
            all.iter()
                .filter(|v| bearer_token(v.as_bytes()).is_none())
                .cloned()
                .collect(),
        )
    }

    fn strip(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        for name in &self.credential_headers {
            req.remove_header(name);
        }
        if let Some(keep) = self.kept_authorization(&req.headers) {
            req.remove_header(&AUTHORIZATION);
            for v in keep {
                req.append_header(AUTHORIZATION, v)?;
            }
        }
        if !self.credential_params.is_empty() {
            if let Some(query) = req.uri.query() {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| !self.is_credential_param(param_name(pair)))
                    .collect();
                let path = req.uri.path();
                let new = if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                if let Ok(uri) = new.parse::<http::Uri>() {
                    req.set_uri(uri);
                }
            }
        }
        Ok(())
    }
}

/// `X-Request-Id`.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the upstream request must change, for a proxy that makes the changes
/// itself ([`ForwardPlan::edits`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Headers set, replacing any of the same name; a name listed again adds a
    /// value.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed.
    pub remove: Vec<HeaderName>,
    /// Query parameters removed (a credential sent in the query).
    pub remove_params: Vec<String>,
}

impl Edits {
    /// `name` gets exactly `values` (removed when there are none).
    fn replace(&mut self, name: HeaderName, values: Vec<HeaderValue>) {
        if values.is_empty() {
            self.remove.push(name);
        } else {
            for v in values {
                self.set.push((name.clone(), v));
            }
        }
    }
}

/// The name of one `name=value` pair of a query string.
fn param_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(k, _)| k)
}

/// The `Cookie` header values without the [`PORTAL_COOKIES`], when there are any
/// of them to remove (`None`: nothing to change; a header left empty goes).
fn kept_cookies(headers: &HeaderMap) -> Option<Vec<HeaderValue>> {
    let ours = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
        PORTAL_COOKIES.contains(&name)
    };
    let cookies = headers.get_all(http::header::COOKIE);
    if !cookies
        .iter()
        .any(|v| memchr::memmem::find(v.as_bytes(), b"kg_").is_some())
    {
        return None;
    }
    Some(
        cookies
            .iter()
            .filter_map(|v| {
                let text = String::from_utf8_lossy(v.as_bytes());
                let rest: Vec<&str> = text
                    .split(';')
                    .filter(|p| !ours(p))
                    .map(str::trim)
                    .collect();
                (!rest.is_empty())
                    .then(|| HeaderValue::from_str(&rest.join("; ")).ok())
                    .flatten()
            })
            .collect(),
    )
}

/// A request id: the client's when it is short visible ASCII, else a fresh one.
pub fn request_id(incoming: Option<&[u8]>) -> HeaderValue {
    if let Some(v) = incoming {
        if !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()) {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                return v;
            }
        }
    }
    let mut text = [0u8; 32];
    let written = hex::encode_to_slice(rand::random::<u128>().to_be_bytes(), &mut text);
    match written.map(|()| HeaderValue::from_bytes(&text)) {
        Ok(Ok(id)) => id,
        // 16 bytes always make 32 hex digits, a valid header value.
        _ => HeaderValue::from_static("0"),
    }
}

/// `ip` as text. IPv4 (every client on a sidecar's loopback or pod network) is
/// written by hand: `Display` goes through the formatter's padding machinery and
/// cost ~1,300 instructions per request in the callgrind profile.
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthMethod, Identity};
    use crate::domain::Environment;
    use crate::limit::TierLimits;
    use std::sync::Arc;

    fn plan() -> ForwardPlan {
        let sources: Vec<Source> = ["header:x-api-key", "bearer", "query:key"]
            .iter()
            .map(|s| Source::parse(s).unwrap())
            .collect();
        ForwardPlan::new(&ForwardConfig::default(), &sources)
    }

    fn principal() -> Principal {
        let identity = Identity::new(
            AuthMethod::ApiKey,
            Some("key_1".into()),
            "user_1".into(),
            None,
            vec!["a".into(), "b".into()],
            Environment::Live,
            None,
            "key:key_1".into(),
            Some("acct_1"),
        );
        let tier = TierLimits::from_config("pro", &Default::default());
        Principal {
            identity: Arc::new(identity),
            tier: Arc::new(tier),
            valid_until_ms: i64::MAX,
        }
    }

    /// `req` changed as a calling proxy would change it with `edits`: each set
    /// name replaced by its values, removed names gone, removed parameters gone.
    fn edited(req: &RequestHeader, edits: &Edits) -> RequestHeader {
        let mut out = req.clone();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in &edits.set {
            let name = name.as_str().to_string();
            if !seen.contains(&name) {
                out.remove_header(&name);
                seen.push(name.clone());
            }
            out.append_header(name, value.clone()).unwrap();
        }
        for name in &edits.remove {
            out.remove_header(name);
        }
        if let Some(q) = req.uri.query() {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| {
                    let n = p.split_once('=').map_or(*p, |(k, _)| k);
                    !edits.remove_params.iter().any(|r| r == n)
                })
                .collect();
            let target = match kept.is_empty() {
                true => req.uri.path().to_string(),
                false => format!("{}?{}", req.uri.path(), kept.join("&")),
            };
            out.set_uri(target.parse().unwrap());
        }
        out
    }

    #[test]
    fn a_proxy_applying_the_edits_sends_what_keygate_would_forward() {
        type Request<'a> = (&'a [u8], Vec<(&'a str, &'a str)>);
        let requests: Vec<Request> = vec![
            (
                b"/x?key=secret&q=1",
                vec![
                    ("x-api-key", "secret"),
                    ("authorization", "Bearer secret"),
                    ("authorization", "Basic dTpw"),
                    ("x-auth-subject", "spoofed"),
                    ("x_auth_org", "spoofed"),
                    ("grpc-metadata-x-auth-tier", "enterprise"),
                    ("x-original-url", "/admin"),
                    ("cookie", "kg_session=abc; theme=dark"),
                    ("accept", "*/*"),
                ],
            ),
            (
                b"/y",
                vec![("authorization", "Bearer only"), ("x-request-id", "rid")],
            ),
            (b"/z?key=a&key=b", vec![("cookie", "kg_session=abc")]),
        ];
        let plan = plan().without_portal_cookies(true);
        for (target, headers) in requests {
            for principal in [Some(principal()), None] {
                let mut req = RequestHeader::build("GET", target, None).unwrap();
                for (n, v) in &headers {
                    req.append_header(n.to_string(), *v).unwrap();
                }
                let rid = HeaderValue::from_static("rid");
                let edits = plan.edits(&req.headers, req.uri.query(), principal.as_ref(), &rid);
                let by_edits = edited(&req, &edits);
                let mut by_apply = req.clone();
                plan.apply(&mut by_apply, principal.as_ref(), None, &rid)
                    .unwrap();
                let sorted = |r: &RequestHeader| {
                    let mut h: Vec<(String, Vec<u8>)> = r
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                        .collect();
                    h.sort();
                    (h, r.uri.to_string())
                };
                assert_eq!(
                    sorted(&by_edits),
                    sorted(&by_apply),
                    "{target:?} {headers:?} with {}: {edits:?}",
                    if principal.is_some() {
                        "a key"
                    } else {
                        "no key"
                    }
                );
            }
        }
    }

    #[test]
    fn credentials_go_and_identity_comes() {
        let mut req = RequestHeader::build("GET", b"/x?key=secret&q=1", None).unwrap();
        req.insert_header("x-api-key", "secret").unwrap();
        req.append_header("authorization", "Bearer secret").unwrap();
        req.append_header("authorization", "Basic dTpw").unwrap();
        req.insert_header("x-auth-subject", "spoofed").unwrap();
        req.insert_header("x-auth-org", "spoofed").unwrap();
        req.insert_header("X-Original-URL", "/admin").unwrap();
        req.insert_header("x-rewrite-url", "/admin").unwrap();
        req.insert_header("x-forwarded-for", "1.1.1.1").unwrap();
        plan()
            .apply(
                &mut req,
                Some(&principal()),
                Some("10.0.0.1".parse().unwrap()),
                &HeaderValue::from_static("rid"),
            )
            .unwrap();
        assert!(req.headers.get("x-api-key").is_none());
        assert!(req.headers.get("x-original-url").is_none());
        assert!(req.headers.get("x-rewrite-url").is_none());
        let auth: Vec<_> = req.headers.get_all("authorization").iter().collect();
        assert_eq!(auth, vec!["Basic dTpw"]);
        assert_eq!(req.uri.to_string(), "/x?q=1");
        assert_eq!(req.headers["x-auth-subject"], "user_1");
        assert!(
            req.headers.get("x-auth-org").is_none(),
            "spoofed org removed, none to add"
        );
        assert_eq!(req.headers["x-auth-scopes"], "a b");
        assert_eq!(req.headers["x-auth-tier"], "pro");
        assert_eq!(req.headers["x-auth-environment"], "live");
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(
            wire.contains("X-Auth-Subject: user_1\r\n"),
            "configured spelling kept: {wire}"
        );
        assert_eq!(req.headers["x-auth-method"], "api_key");
        assert_eq!(req.headers["x-forwarded-for"], "1.1.1.1, 10.0.0.1");
        assert_eq!(req.headers["x-request-id"], "rid");
    }

    #[test]
    fn identity_spelled_with_underscores_never_reaches_the_upstream() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("X_Auth_Org", "org_victim").unwrap();
        req.insert_header("x_auth_subject", "bob").unwrap();
        req.insert_header("X-Auth_Scopes", "admin").unwrap();
        req.insert_header("X_API_Key", "other").unwrap();
        req.insert_header("X_Custom", "kept").unwrap();
        plan()
            .apply(
                &mut req,
                Some(&principal()),
                None,
                &HeaderValue::from_static("rid"),
            )
            .unwrap();
        let names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("x_auth") || *n == "x-auth_scopes"),
            "{names:?}"
        );
        assert!(
            !names.contains(&"x_api_key"),
            "a stripped credential's spelling"
        );
        assert_eq!(req.headers["x_custom"], "kept");
        assert_eq!(req.headers["x-auth-subject"], "user_1");
        // On a public route only identity spellings go; credentials pass untouched.
        let mut public = RequestHeader::build("GET", b"/health", None).unwrap();
        public.insert_header("X_Auth_Tier", "enterprise").unwrap();
        public.insert_header("X_API_Key", "k").unwrap();
        plan()
            .apply(&mut public, None, None, &HeaderValue::from_static("rid"))
            .unwrap();
        assert!(public.headers.get("x_auth_tier").is_none());
        assert_eq!(public.headers["x_api_key"], "k");
    }

    #[test]
    fn identity_under_a_bridge_prefix_never_reaches_the_upstream() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("Grpc-Metadata-X-Auth-Scopes", "admin")
            .unwrap();
        req.insert_header("grpc-metadata-x-auth-subject", "root")
            .unwrap();
        req.insert_header("Grpc_Metadata_X_Auth_Org", "org_victim")
            .unwrap();
        req.insert_header("Grpc-Metadata-Grpc-Metadata-X-Auth-Tier", "enterprise")
            .unwrap();
        req.insert_header("Grpc-Metadata-X-Api-Key", "other")
            .unwrap();
        req.insert_header("Grpc-Metadata-X-Original-Url", "/admin")
            .unwrap();
        req.insert_header("Grpc-Metadata-Trace", "kept").unwrap();
        req.insert_header("Grpc-Metadata-", "kept").unwrap();
        plan()
            .apply(
                &mut req,
                Some(&principal()),
                None,
                &HeaderValue::from_static("rid"),
            )
            .unwrap();
        let mut names: Vec<&str> = req
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|n| n.starts_with("grpc"))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["grpc-metadata-", "grpc-metadata-trace"]);
        assert_eq!(req.headers["x-auth-subject"], "user_1");
    }

    #[test]
    fn the_portals_cookies_never_reach_the_upstream() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.append_header(
            "cookie",
            "theme=dark; __Host-kg_session=kg_ps_abc; kg_pre=x",
        )
        .unwrap();
        req.append_header("cookie", "kg_session=kg_ps_def").unwrap();
        req.append_header("cookie", "cart=1").unwrap();
        plan()
            .without_portal_cookies(true)
            .apply(&mut req, None, None, &HeaderValue::from_static("rid"))
            .unwrap();
        let cookies: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["theme=dark", "cart=1"]);
    }

    #[test]
    fn public_routes_keep_credentials_but_lose_spoofed_identity() {
        let mut req = RequestHeader::build("GET", b"/health?key=k", None).unwrap();
        req.insert_header("x-api-key", "k").unwrap();
        req.insert_header("x-auth-tier", "enterprise").unwrap();
        plan()
            .apply(&mut req, None, None, &HeaderValue::from_static("rid"))
            .unwrap();
        assert_eq!(req.headers["x-api-key"], "k");
        assert_eq!(req.uri.to_string(), "/health?key=k");
        assert!(req.headers.get("x-auth-tier").is_none());
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "192.168.100.99",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in [
            0u32,
            1,
            9,
            10,
            99,
            100,
            199,
            200,
            255,
            0x0a_64_0a_01,
            u32::MAX,
        ] {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(n));
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_eq!(request_id(None).len(), 32);
        assert_eq!(request_id(Some(b"has space")).len(), 32);
        assert_eq!(request_id(Some(&[b'a'; 200])).len(), 32);
    }
}
