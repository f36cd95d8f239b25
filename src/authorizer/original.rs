//! The original request an authorizer decides on. A calling proxy describes it:
//! Envoy in its `CheckRequest`, nginx in `X-Original-URI` / `X-Original-Method`,
//! Traefik and Caddy in `X-Forwarded-Method` / `X-Forwarded-Uri` /
//! `X-Forwarded-Host`. A description is believed only from a peer in
//! `authorizer.trust_forwarded_from`: anyone else could name any path.

use ipnet::IpNet;
use std::net::IpAddr;

/// True when `peer` is in one of `trusted`.
pub fn is_trusted(trusted: &[IpNet], peer: Option<IpAddr>) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|n| n.contains(&ip)))
}

/// The original request, as the authorizer decides on it: its headers borrowed
/// from the question when they are the question's own (forward auth), owned when
/// read out of a message (Envoy's `CheckRequest`).
#[derive(Debug)]
pub struct Original<'h> {
    /// Its method.
    pub method: http::Method,
    /// Its target, in origin form (path and query).
    pub uri: http::Uri,
    /// Its headers (the credential among them).
    pub headers: std::borrow::Cow<'h, http::HeaderMap>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
}

/// Why a description of the original request was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Undescribed {
    /// Two headers naming the same part of the request disagree: one of them is
    /// the client's (a proxy that sets one passes the other through).
    #[error("{0} and {1} disagree")]
    Conflict(&'static str, &'static str),
    /// A header naming the method or target is not one.
    #[error("{0} is not a valid {1}")]
    Invalid(&'static str, &'static str),
}

/// Headers naming the original method, in the order they are read.
const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

/// Headers naming the original target: `X-Forwarded-Uri` (Traefik, Caddy),
/// `X-Original-URI` (nginx), `X-Original-URL` (ingress-nginx, an absolute URL).
const URI_HEADERS: [&str; 3] = ["x-forwarded-uri", "x-original-uri", "x-original-url"];

/// The one value the headers `names` give (`None`: none of them is present), read
/// by `parse`, or a conflict when two of them disagree (or one is repeated).
fn agreed<T: PartialEq>(
    headers: &http::HeaderMap,
    names: &[&'static str],
    parse: impl Fn(&'static str, &[u8]) -> Result<T, Undescribed>,
) -> Result<Option<T>, Undescribed> {
    let mut found: Option<(&'static str, T)> = None;
    for name in names {
        let mut values = headers.get_all(*name).iter();
        let Some(v) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(Undescribed::Conflict(name, name));
        }
        let value = parse(name, v.as_bytes())?;
        match &found {
            Some((first, seen)) if *seen != value => {
                return Err(Undescribed::Conflict(first, name))
            }
            Some(_) => {}
            None => found = Some((name, value)),
        }
    }
    Ok(found.map(|(_, v)| v))
}

/// A method header's value.
fn method_of(name: &'static str, v: &[u8]) -> Result<http::Method, Undescribed> {
    http::Method::from_bytes(v).map_err(|_| Undescribed::Invalid(name, "method"))
}

/// A target header's value, in origin form (an absolute URL's host is not the
/// path).
fn target_of(name: &'static str, v: &[u8]) -> Result<http::Uri, Undescribed> {
    let bad = || Undescribed::Invalid(name, "request target");
    let target = http::Uri::try_from(v).map_err(|_| bad())?;
    let pq = target.path_and_query().map_or("/", |pq| pq.as_str());
    if !pq.starts_with('/') {
        return Err(bad());
    }
    pq.parse::<http::Uri>().map_err(|_| bad())
}

/// The client's address a trusted proxy names: the last `X-Forwarded-For` entry
/// (the address that proxy saw; earlier ones are the client's own claims), else
/// `X-Real-IP`.
fn forwarded_client(headers: &http::HeaderMap) -> Option<IpAddr> {
    let last_forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty());
    let text = match last_forwarded {
        Some(v) => Some(v),
        None => headers.get("x-real-ip").and_then(|v| v.to_str().ok()),
    }?;
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The original request of a forward-auth call (nginx, Traefik, Caddy, Envoy's
/// `http_service`): described by the `X-Forwarded-*` / `X-Original-*` headers
/// when `peer` is trusted, else the call itself (Envoy's HTTP service sends the
/// original method and path; anyone else is judged on what they sent).
pub fn of_forward_auth<'h>(
    method: &http::Method,
    uri: &http::Uri,
    headers: &'h http::HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[IpNet],
) -> Result<Original<'h>, Undescribed> {
    let own_target = || {
        uri.path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse::<http::Uri>()
            .unwrap_or_else(|_| http::Uri::from_static("/"))
    };
    if !is_trusted(trusted, peer) {
        return Ok(Original {
            method: method.clone(),
            uri: own_target(),
            headers: std::borrow::Cow::Borrowed(headers),
            client_ip: peer,
        });
    }
    let method = agreed(headers, &METHOD_HEADERS, method_of)?.unwrap_or_else(|| method.clone());
    let uri = agreed(headers, &URI_HEADERS, target_of)?.unwrap_or_else(own_target);
    Ok(Original {
        method,
        uri,
        headers: std::borrow::Cow::Borrowed(headers),
        client_ip: forwarded_client(headers).or(peer),
    })
}

/// The original request of an Envoy `CheckRequest`, or `None` when it describes
/// no HTTP request. The client is the `source` peer Envoy names.
pub fn of_check(request: &super::envoy::CheckRequest) -> Option<Original<'static>> {
    let attributes = request.attributes.as_ref()?;
    let http_request = attributes.request.as_ref()?.http.as_ref()?;
    let method = http::Method::from_bytes(http_request.method.as_bytes()).ok()?;
    let target = if http_request.path.is_empty() {
        "/"
    } else {
        http_request.path.as_str()
    };
    let uri = target.parse::<http::Uri>().ok()?;
    let mut headers = http::HeaderMap::new();
    let add = |headers: &mut http::HeaderMap, name: &str, value: &[u8]| {
        // Pseudo-headers (`:path`, `:authority`) are described elsewhere.
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    };
    match &http_request.header_map {
        Some(map) if !map.headers.is_empty() => {
            for h in &map.headers {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    &h.raw_value
                };
                add(&mut headers, &h.key, value);
            }
        }
        _ => {
            for entry in &http_request.headers {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(&entry.key),
                    http::HeaderValue::from_maybe_shared(entry.value.clone()),
                ) {
                    headers.append(n, v);
                }
            }
        }
    }
    if !http_request.host.is_empty() && !headers.contains_key(http::header::HOST) {
        add(&mut headers, "host", http_request.host.as_bytes());
    }
    let client_ip = attributes
        .source
        .as_ref()
        .and_then(|s| s.address.as_ref())
        .and_then(|a| a.socket_address.as_ref())
        .and_then(|s| s.address.parse::<IpAddr>().ok());
    Some(Original {
        method,
        uri,
        headers: std::borrow::Cow::Owned(headers),
        client_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<IpNet> {
        vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn describe(peer: &str, pairs: &[(&str, &str)]) -> Result<Original<'static>, Undescribed> {
        let headers = Box::leak(Box::new(headers(pairs)));
        of_forward_auth(
            &http::Method::GET,
            &"/_keygate".parse().unwrap(),
            headers,
            Some(peer.parse().unwrap()),
            &trusted(),
        )
    }

    #[test]
    fn a_trusted_proxy_describes_the_original_request() {
        let o = describe(
            "127.0.0.1",
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/api/search?q=1"),
                ("x-forwarded-for", "203.0.113.9, 198.51.100.7"),
            ],
        )
        .unwrap();
        assert_eq!(o.method, http::Method::POST);
        assert_eq!(o.uri, "/api/search?q=1");
        assert_eq!(o.client_ip, Some("198.51.100.7".parse().unwrap()));
        let nginx = describe(
            "10.1.2.3",
            &[
                ("x-original-method", "DELETE"),
                ("x-original-uri", "/api/x"),
            ],
        )
        .unwrap();
        assert_eq!(nginx.method, http::Method::DELETE);
        assert_eq!(nginx.uri, "/api/x");
        assert_eq!(nginx.client_ip, Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn anyone_else_is_judged_on_what_they_sent() {
        let o = describe(
            "192.0.2.1",
            &[
                ("x-forwarded-uri", "/public"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-for", "127.0.0.1"),
            ],
        )
        .unwrap();
        assert_eq!(o.uri, "/_keygate");
        assert_eq!(o.client_ip, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn two_descriptions_that_disagree_are_refused() {
        // The proxy set one; the client sent the other.
        assert_eq!(
            describe(
                "127.0.0.1",
                &[("x-forwarded-uri", "/api/x"), ("x-original-uri", "/public")]
            )
            .unwrap_err(),
            Undescribed::Conflict("x-forwarded-uri", "x-original-uri")
        );
        assert!(describe(
            "127.0.0.1",
            &[
                ("x-forwarded-uri", "/api/x"),
                ("x-forwarded-uri", "/public")
            ]
        )
        .is_err());
        assert!(describe("127.0.0.1", &[("x-forwarded-uri", "*")]).is_err());
        // ingress-nginx names an absolute URL: the same target agrees.
        let o = describe(
            "127.0.0.1",
            &[
                ("x-original-url", "https://api.example.com/api/x?a=1"),
                ("x-original-uri", "/api/x?a=1"),
            ],
        )
        .unwrap();
        assert_eq!(o.uri, "/api/x?a=1");
        assert!(describe(
            "127.0.0.1",
            &[
                ("x-original-url", "https://api.example.com/health"),
                ("x-forwarded-uri", "/api/x")
            ]
        )
        .is_err());
    }
}
