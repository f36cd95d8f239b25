//! The one router of keygate's local applications: a table of routes, each a path
//! pattern, a method and what answers it. What a path does not answer is derived
//! from the same table — 405 with `Allow` listing the methods its routes take, or
//! 404 — so no list of methods is ever written twice.

use http::Method;

/// One segment of a route's path pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg {
    /// Exactly this text.
    Lit(&'static str),
    /// Any one segment, handed to the endpoint (an id).
    Param,
}

/// A route: requests to a path matching `pattern` with `method` go to `endpoint`.
#[derive(Clone, Copy, Debug)]
pub struct Route<E: 'static> {
    /// The path below the application's prefix, segment by segment.
    pub pattern: &'static [Seg],
    /// The method, by name (`GET` routes also take `HEAD` where the application
    /// says so, by listing `HEAD`).
    pub method: &'static str,
    /// What answers.
    pub endpoint: E,
}

impl<E> Route<E> {
    /// Requests to `pattern` with `method` go to `endpoint`.
    pub const fn new(pattern: &'static [Seg], method: &'static str, endpoint: E) -> Self {
        Route {
            pattern,
            method,
            endpoint,
        }
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'p, E> {
    /// To `endpoint`, with the path's `Param` segments in order.
    To(E, Vec<&'p str>),
    /// The path exists, not with this method: the `Allow` value.
    WrongMethod(String),
    /// No route has this path.
    NotFound,
}

/// The path's segments: `/keys/k1/usage` is `["keys", "k1", "usage"]`; `/` is
/// `[]`; a doubled or trailing `/` leaves no empty segment.
pub fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The params of `segments` under `pattern`, when it matches.
fn matches<'p>(pattern: &[Seg], segments: &[&'p str]) -> Option<Vec<&'p str>> {
    if pattern.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (seg, text) in pattern.iter().zip(segments) {
        match seg {
            Seg::Lit(lit) if lit == text => {}
            Seg::Lit(_) => return None,
            Seg::Param => params.push(*text),
        }
    }
    Some(params)
}

/// Routes `method` to `path` through `routes`: the first route (in table order)
/// whose pattern and method match; else 405 with the methods of every route whose
/// pattern matches, in table order; else 404.
pub fn route<'p, E: Copy>(routes: &[Route<E>], method: &Method, path: &'p str) -> Routed<'p, E> {
    let segments = segments(path);
    let mut allow: Vec<&str> = Vec::new();
    for r in routes {
        let Some(params) = matches(r.pattern, &segments) else {
            continue;
        };
        if r.method == method.as_str() {
            return Routed::To(r.endpoint, params);
        }
        if !allow.contains(&r.method) {
            allow.push(r.method);
        }
    }
    if allow.is_empty() {
        Routed::NotFound
    } else {
        Routed::WrongMethod(allow.join(", "))
    }
}

/// The endpoints of every route whose pattern matches `path`, whatever its method.
pub fn endpoints_at<E: Copy>(routes: &[Route<E>], path: &str) -> Vec<E> {
    let segments = segments(path);
    routes
        .iter()
        .filter(|r| matches(r.pattern, &segments).is_some())
        .map(|r| r.endpoint)
        .collect()
}

/// The routes no request can reach, because an earlier route takes every
/// request they would answer (for an application's tests).
#[cfg(test)]
pub(crate) fn shadowed<E: Copy + PartialEq + std::fmt::Debug>(routes: &[Route<E>]) -> Vec<String> {
    routes
        .iter()
        .filter_map(|r| {
            let path: String = r
                .pattern
                .iter()
                .map(|s| match s {
                    Seg::Lit(text) => format!("/{text}"),
                    Seg::Param => "/p".to_string(),
                })
                .collect();
            let method = Method::from_bytes(r.method.as_bytes()).ok()?;
            match route(routes, &method, &path) {
                Routed::To(e, _) if e == r.endpoint => None,
                other => Some(format!("{} {path} -> {other:?}", r.method)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Seg::{Lit, Param};

    const ROUTES: &[Route<u8>] = &[
        Route {
            pattern: &[Lit("keys")],
            method: "GET",
            endpoint: 1,
        },
        Route {
            pattern: &[Lit("keys")],
            method: "POST",
            endpoint: 2,
        },
        Route {
            pattern: &[Lit("keys"), Lit("verify")],
            method: "POST",
            endpoint: 3,
        },
        Route {
            pattern: &[Lit("keys"), Param],
            method: "GET",
            endpoint: 4,
        },
        Route {
            pattern: &[Lit("keys"), Param],
            method: "DELETE",
            endpoint: 5,
        },
    ];

    #[test]
    fn the_first_matching_route_answers_and_the_rest_is_derived_from_the_table() {
        assert_eq!(route(ROUTES, &Method::GET, "/keys"), Routed::To(1, vec![]));
        assert_eq!(
            route(ROUTES, &Method::POST, "/keys/"),
            Routed::To(2, vec![])
        );
        assert_eq!(
            route(ROUTES, &Method::POST, "/keys/verify"),
            Routed::To(3, vec![])
        );
        // A literal does not shadow a parameter for another method.
        assert_eq!(
            route(ROUTES, &Method::GET, "/keys/verify"),
            Routed::To(4, vec!["verify"])
        );
        assert_eq!(
            route(ROUTES, &Method::DELETE, "/keys/k1"),
            Routed::To(5, vec!["k1"])
        );
        assert_eq!(
            route(ROUTES, &Method::PUT, "/keys"),
            Routed::WrongMethod("GET, POST".into())
        );
        assert_eq!(
            route(ROUTES, &Method::PATCH, "/keys/k1"),
            Routed::WrongMethod("GET, DELETE".into())
        );
        assert_eq!(
            route(ROUTES, &Method::PUT, "/keys/verify"),
            Routed::WrongMethod("POST, GET, DELETE".into())
        );
        assert_eq!(route(ROUTES, &Method::GET, "/"), Routed::NotFound);
        assert_eq!(route(ROUTES, &Method::GET, "/keys/k1/x"), Routed::NotFound);
        assert_eq!(segments("//keys//k1/"), vec!["keys", "k1"]);
    }
}
