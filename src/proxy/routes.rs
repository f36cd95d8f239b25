//! The compiled route table.
//!
//! - The first route whose path and methods both match wins.
//! - A path that routes match only with other methods answers 405 with `Allow`
//!   (secure by default: a method the route did not list never slips past its
//!   scopes and cost to the default route). `HEAD` counts as `GET`, since upstreams
//!   serve it with their `GET` handler.
//! - Paths match ASCII case-insensitively (as Express and most routers do) unless
//!   the route says `case_sensitive: true`.
//! - No match: the default route — authentication required, no scopes, cost 0.

use crate::config::{RouteAuth, RouteConfig, RouteEnvironment};
use http::Method;

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathMatch {
    Exact(String),
    /// Matches the base itself and anything below it.
    Prefix(String),
    All,
}

impl PathMatch {
    fn compile(path: &str) -> Self {
        match path.strip_suffix("/*") {
            Some("") => PathMatch::All,
            Some(base) => PathMatch::Prefix(base.to_string()),
            None if path.len() > 1 => PathMatch::Exact(path.trim_end_matches('/').to_string()),
            None => PathMatch::Exact(path.to_string()),
        }
    }

    fn matches(&self, path: &str, case_sensitive: bool) -> bool {
        let same = |a: &[u8], b: &[u8]| {
            if case_sensitive {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        let path = path.as_bytes();
        match self {
            PathMatch::Exact(p) => same(p.as_bytes(), path),
            PathMatch::Prefix(base) => {
                let base = base.as_bytes();
                path.len() >= base.len()
                    && same(&path[..base.len()], base)
                    && (path.len() == base.len() || path[base.len()] == b'/')
            }
            PathMatch::All => true,
        }
    }
}

/// One compiled route.
#[derive(Clone, Debug)]
pub struct Route {
    /// Name used as the `route` metric label.
    pub name: String,
    matcher: PathMatch,
    methods: Vec<Method>,
    case_sensitive: bool,
    /// Whether a credential is required.
    pub auth: RouteAuth,
    /// Scopes required (all of them).
    pub scopes: Vec<String>,
    /// Credits debited per request.
    pub cost: u64,
    /// Key environments admitted.
    pub environment: RouteEnvironment,
    /// This route's metric handles.
    pub metrics: std::sync::Arc<crate::obs::metrics::RouteMetrics>,
}

impl Route {
    fn from_config(c: &RouteConfig) -> Self {
        let name = c.name.clone().unwrap_or_else(|| c.path.clone());
        Route {
            metrics: std::sync::Arc::new(crate::obs::metrics::RouteMetrics::new(&name)),
            name,
            matcher: PathMatch::compile(&c.path),
            case_sensitive: c.case_sensitive,
            methods: c
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .collect(),
            auth: c.auth,
            scopes: c.scopes.clone(),
            cost: c.cost,
            environment: c.environment,
        }
    }

    fn default_route() -> Self {
        Route {
            metrics: std::sync::Arc::new(crate::obs::metrics::RouteMetrics::new("default")),
            name: "default".into(),
            matcher: PathMatch::All,
            case_sensitive: false,
            methods: Vec::new(),
            auth: RouteAuth::Required,
            scopes: Vec::new(),
            cost: 0,
            environment: RouteEnvironment::Any,
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        self.matcher.matches(path, self.case_sensitive)
    }

    fn admits(&self, method: &Method) -> bool {
        self.methods.is_empty()
            || self.methods.contains(method)
            || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }
}

/// What a request matched.
#[derive(Debug)]
pub enum Found<'a> {
    /// A route (or the default route), with its index.
    Route(usize, &'a Route),
    /// Routes match the path, but none with this method: answer 405 with this
    /// `Allow` value.
    MethodNotAllowed(String),
}

/// Routes in configuration order, plus the default.
#[derive(Clone, Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Route,
}

impl RouteTable {
    /// Compiles `routes:`.
    pub fn new(routes: &[RouteConfig]) -> Self {
        RouteTable {
            routes: routes.iter().map(Route::from_config).collect(),
            default: Route::default_route(),
        }
    }

    /// The first route matching `method` and the decoded `path`, with its index
    /// (the default route's index is the number of configured routes); or 405 when
    /// routes match the path only with other methods.
    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut path_matched = false;
        for (i, r) in self.routes.iter().enumerate() {
            if r.matches_path(path) {
                if r.admits(method) {
                    return Found::Route(i, r);
                }
                path_matched = true;
            }
        }
        if path_matched {
            return Found::MethodNotAllowed(self.allow(path));
        }
        Found::Route(self.routes.len(), &self.default)
    }

    /// The `Allow` value for `path`: every method its routes admit, in order.
    fn allow(&self, path: &str) -> String {
        let mut allowed: Vec<&str> = Vec::new();
        for r in self.routes.iter().filter(|r| r.matches_path(path)) {
            for m in &r.methods {
                let with_head = [m.as_str(), if *m == Method::GET { "HEAD" } else { "" }];
                for name in with_head.into_iter().filter(|n| !n.is_empty()) {
                    if !allowed.contains(&name) {
                        allowed.push(name);
                    }
                }
            }
        }
        allowed.join(", ")
    }

    /// True when some route lists `methods` (so a method can change the route).
    pub fn restricts_methods(&self) -> bool {
        self.routes.iter().any(|r| !r.methods.is_empty())
    }

    /// The default route and its index.
    pub fn default_route(&self) -> (usize, &Route) {
        (self.routes.len(), &self.default)
    }

    /// The route at `index` (as returned by [`Self::find`]).
    pub fn get(&self, index: usize) -> &Route {
        self.routes.get(index).unwrap_or(&self.default)
    }

    /// Every route name (for metrics and docs), default last.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .chain(std::iter::once(&self.default))
            .map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        RouteTable::new(&serde_yaml::from_str::<Vec<RouteConfig>>(yaml).unwrap())
    }

    fn index(t: &RouteTable, method: Method, path: &str) -> Result<String, String> {
        match t.find(&method, path) {
            Found::Route(_, r) => Ok(r.name.clone()),
            Found::MethodNotAllowed(allow) => Err(allow),
        }
    }

    #[test]
    fn first_match_wins_and_unmatched_requires_auth() {
        let t = table("[{path: /health, auth: none}, {path: /api/search, methods: [POST], scopes: [search], cost: 1}, {path: /api/*, scopes: [api]}]");
        let route = |m: Method, p: &str| match t.find(&m, p) {
            Found::Route(_, r) => r.clone(),
            Found::MethodNotAllowed(a) => panic!("405 {a}"),
        };
        assert_eq!(route(Method::GET, "/health").auth, RouteAuth::None);
        assert_eq!(route(Method::POST, "/api/search").scopes, vec!["search"]);
        assert_eq!(
            route(Method::GET, "/api/search").scopes,
            vec!["api"],
            "a later route admitting the method"
        );
        assert_eq!(route(Method::GET, "/api").scopes, vec!["api"]);
        assert_eq!(route(Method::GET, "/apifoo").name, "default");
        assert_eq!(
            route(Method::GET, "/health/x").name,
            "default",
            "exact paths are exact"
        );
        let d = route(Method::GET, "/other");
        assert_eq!(
            (d.auth, d.cost, d.scopes.len()),
            (RouteAuth::Required, 0, 0)
        );
    }

    #[test]
    fn a_method_no_route_lists_answers_405_instead_of_the_default_route() {
        let t = table("[{path: /api/search, methods: [POST], scopes: [search], cost: 1}, {path: /api/read/*, methods: [GET, PUT]}]");
        for m in [
            Method::GET,
            Method::PUT,
            Method::from_bytes(b"post").unwrap(),
        ] {
            assert_eq!(index(&t, m, "/api/search"), Err("POST".into()));
        }
        assert_eq!(
            index(&t, Method::HEAD, "/api/read/x"),
            Ok("/api/read/*".into())
        );
        assert_eq!(
            index(&t, Method::DELETE, "/api/read/x"),
            Err("GET, HEAD, PUT".into())
        );
        assert_eq!(index(&t, Method::GET, "/elsewhere"), Ok("default".into()));
    }

    #[test]
    fn paths_match_case_insensitively_unless_told_otherwise() {
        let t = table("[{path: /api/admin/*, name: admin, scopes: [admin]}, {path: /Docs, name: docs, case_sensitive: true, auth: none}]");
        assert_eq!(index(&t, Method::GET, "/API/Admin/x"), Ok("admin".into()));
        assert_eq!(index(&t, Method::GET, "/api/ADMIN"), Ok("admin".into()));
        assert_eq!(index(&t, Method::GET, "/Docs"), Ok("docs".into()));
        assert_eq!(index(&t, Method::GET, "/docs"), Ok("default".into()));
    }

    #[test]
    fn a_catch_all_route_matches_everything() {
        let t = table("[{path: '/*', name: all, auth: none}]");
        assert_eq!(index(&t, Method::DELETE, "/x/y"), Ok("all".into()));
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["all", "default"]);
    }
}
