//! The compiled route table: first match wins; no match means authentication
//! required, no scopes, cost 0.

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

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(base) => {
                path.starts_with(base.as_str())
                    && (path.len() == base.len() || path.as_bytes()[base.len()] == b'/')
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
    /// Whether a credential is required.
    pub auth: RouteAuth,
    /// Scopes required (all of them).
    pub scopes: Vec<String>,
    /// Credits debited per request.
    pub cost: u64,
    /// Key environments admitted.
    pub environment: RouteEnvironment,
    /// This route's metric handles.
    pub metrics: std::sync::Arc<crate::metrics::RouteMetrics>,
}

impl Route {
    fn from_config(c: &RouteConfig) -> Self {
        let name = c.name.clone().unwrap_or_else(|| c.path.clone());
        Route {
            metrics: std::sync::Arc::new(crate::metrics::RouteMetrics::new(&name)),
            name,
            matcher: PathMatch::compile(&c.path),
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
            metrics: std::sync::Arc::new(crate::metrics::RouteMetrics::new("default")),
            name: "default".into(),
            matcher: PathMatch::All,
            methods: Vec::new(),
            auth: RouteAuth::Required,
            scopes: Vec::new(),
            cost: 0,
            environment: RouteEnvironment::Any,
        }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method)) && self.matcher.matches(path)
    }
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

    /// The first route matching `method` and the normalised `path`, with its index
    /// (the default route's index is the number of configured routes).
    pub fn find(&self, method: &Method, path: &str) -> (usize, &Route) {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(method, path))
            .unwrap_or((self.routes.len(), &self.default))
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

    #[test]
    fn first_match_wins_and_unmatched_requires_auth() {
        let t = table("[{path: /health, auth: none}, {path: /api/search, methods: [POST], scopes: [search], cost: 1}, {path: /api/*, scopes: [api]}]");
        assert_eq!(t.find(&Method::GET, "/health").1.auth, RouteAuth::None);
        assert_eq!(
            t.find(&Method::POST, "/api/search").1.scopes,
            vec!["search"]
        );
        assert_eq!(
            t.find(&Method::GET, "/api/search").1.scopes,
            vec!["api"],
            "method filter"
        );
        assert_eq!(t.find(&Method::GET, "/api").1.scopes, vec!["api"]);
        assert_eq!(t.find(&Method::GET, "/apifoo").1.name, "default");
        assert_eq!(
            t.find(&Method::GET, "/health/x").1.name,
            "default",
            "exact paths are exact"
        );
        let d = t.find(&Method::GET, "/other").1;
        assert_eq!(
            (d.auth, d.cost, d.scopes.len()),
            (RouteAuth::Required, 0, 0)
        );
    }

    #[test]
    fn a_catch_all_route_matches_everything() {
        let t = table("[{path: '/*', name: all, auth: none}]");
        assert_eq!(t.find(&Method::DELETE, "/x/y").1.name, "all");
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["all", "default"]);
    }
}
