//! The path table: exact paths and paths with parameters
//! (`/api/v1/connections/{id}`), each to a handler of the application's
//! state. Lookups are matchit's radix tree, so a table of many routes
//! costs a scrape no more than a table of one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};

use super::Body;

/// Values of a route's `{name}` segments, in order.
pub type Params = Vec<(String, String)>;

type BoxResponse = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
type Handler<S> = Arc<dyn Fn(Arc<S>, Request<Incoming>, Params) -> BoxResponse + Send + Sync>;

/// A path that cannot join the table.
#[derive(Debug, thiserror::Error)]
#[error("cannot route {path:?}: {source}")]
pub struct RouteError {
    path: String,
    source: matchit::InsertError,
}

/// How the gate treats a route beyond its path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteOptions {
    /// Answers without credentials (liveness probes).
    pub public: bool,
    /// CORS preflight `OPTIONS` requests reach the handler, without
    /// credentials (browsers never send them on a preflight).
    pub preflight: bool,
    /// The gate's refusals (405, 413, 401) come as the JSON error body
    /// rather than plain text (a JSON API's clients parse every answer).
    pub json_errors: bool,
}

/// One route: its handler and how the gate treats it.
pub struct Route<S> {
    handler: Handler<S>,
    options: RouteOptions,
}

impl<S> Route<S> {
    /// Whether the route answers without credentials (liveness probes).
    pub fn is_public(&self) -> bool {
        self.options.public
    }

    /// Whether CORS preflight requests reach the handler.
    pub fn accepts_preflight(&self) -> bool {
        self.options.preflight
    }

    /// Whether the gate answers its refusals as JSON.
    pub fn json_errors(&self) -> bool {
        self.options.json_errors
    }

    pub fn call(&self, state: Arc<S>, req: Request<Incoming>, params: Params) -> BoxResponse {
        (self.handler)(state, req, params)
    }
}

pub struct Router<S> {
    table: matchit::Router<Route<S>>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Self {
            table: matchit::Router::new(),
        }
    }
}

impl<S: Send + Sync + 'static> Router<S> {
    /// Adds a route behind the gate's authentication.
    pub fn route<F, Fut>(self, path: &str, handler: F) -> Result<Self, RouteError>
    where
        F: Fn(Arc<S>, Request<Incoming>, Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.route_with(path, RouteOptions::default(), handler)
    }

    /// Adds a route that answers without credentials.
    pub fn public<F, Fut>(self, path: &str, handler: F) -> Result<Self, RouteError>
    where
        F: Fn(Arc<S>, Request<Incoming>, Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let options = RouteOptions {
            public: true,
            ..RouteOptions::default()
        };
        self.route_with(path, options, handler)
    }

    /// Adds a route with explicit [`RouteOptions`].
    pub fn route_with<F, Fut>(
        mut self,
        path: &str,
        options: RouteOptions,
        handler: F,
    ) -> Result<Self, RouteError>
    where
        F: Fn(Arc<S>, Request<Incoming>, Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler<S> =
            Arc::new(move |state, req, params| Box::pin(handler(state, req, params)));
        self.table
            .insert(path, Route { handler, options })
            .map_err(|source| RouteError {
                path: path.to_owned(),
                source,
            })?;
        Ok(self)
    }

    /// The route for `path` and the values of its parameters.
    pub fn lookup(&self, path: &str) -> Option<(&Route<S>, Params)> {
        let found = self.table.at(path).ok()?;
        let params = found
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some((found.value, params))
    }
}

/// `path` as a literal route: braces doubled so that a configured path
/// such as `--web.telemetry-path` is never read as a parameter.
pub fn literal(path: &str) -> String {
    path.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::text;
    use hyper::StatusCode;

    fn router() -> Router<()> {
        Router::default()
            .public("/health", |_, _, _| async { text(StatusCode::OK, "ok") })
            .unwrap()
            .route("/metrics", |_, _, _| async { text(StatusCode::OK, "m") })
            .unwrap()
            .route("/api/v1/connections/{id}", |_, _, _| async {
                text(StatusCode::OK, "c")
            })
            .unwrap()
    }

    #[test]
    fn exact_and_parameterised_paths() {
        let r = router();
        assert!(r.lookup("/health").unwrap().0.is_public());
        assert!(!r.lookup("/metrics").unwrap().0.is_public());
        let (_, params) = r.lookup("/api/v1/connections/42").unwrap();
        assert_eq!(params, [("id".to_owned(), "42".to_owned())]);
        assert!(r.lookup("/nope").is_none());
        assert!(r.lookup("/metrics/").is_none());
    }

    #[test]
    fn clashing_and_braced_paths() {
        let clash = router().route("/metrics", |_, _, _| async { text(StatusCode::OK, "x") });
        let Err(e) = clash else {
            panic!("a second /metrics must be refused")
        };
        assert!(e.to_string().contains("/metrics"));
        let r = Router::<()>::default()
            .route(&literal("/m{x}"), |_, _, _| async {
                text(StatusCode::OK, "x")
            })
            .unwrap();
        assert!(r.lookup("/m{x}").is_some());
        assert!(r.lookup("/mabc").is_none());
    }
}
