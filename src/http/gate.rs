//! What every request passes before its route: only `GET` and `HEAD` (and
//! CORS preflight `OPTIONS` on routes that take it), no request bodies,
//! basic auth from the web config (except on public routes and
//! preflights), `404` for unknown paths, and the configured response
//! headers on every answer. Refusals are plain text, or the JSON error
//! body on routes that ask for it; on routes that take CORS preflights
//! they also carry the CORS headers (see [`Gate::with_refusal_headers`]),
//! so that a browser page on an allowed origin can read why it was refused.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::router::{Route, Router};
use super::web::auth::Verdict;
use super::web::{BasicAuth, WebConfigWatcher, WebSettings};
use super::{json_error, text, Body, WebStats};

/// Adds headers to a refusal, given the request's headers.
pub type RefusalHeaders = Arc<dyn Fn(&HeaderMap, &mut Response<Body>) + Send + Sync>;

pub struct Gate {
    web: Option<Arc<WebConfigWatcher>>,
    /// For refusals on routes that take CORS preflights.
    refusal_headers: Option<RefusalHeaders>,
    auth: Arc<BasicAuth>,
    /// One permit: the bcrypt in progress.
    bcrypt_turn: tokio::sync::Semaphore,
    stats: Arc<WebStats>,
}

impl Gate {
    pub fn new(web: Option<Arc<WebConfigWatcher>>, stats: Arc<WebStats>) -> Self {
        Self {
            web,
            refusal_headers: None,
            auth: Arc::default(),
            bcrypt_turn: tokio::sync::Semaphore::new(1),
            stats,
        }
    }

    /// Headers added to the gate's refusals (405, 413, 401) on routes that
    /// accept CORS preflights: the CORS headers, which the route's handler
    /// adds to its own answers but never sees a refusal to add them to.
    pub fn with_refusal_headers(mut self, add: RefusalHeaders) -> Self {
        self.refusal_headers = Some(add);
        self
    }

    pub fn web(&self) -> Option<&Arc<WebConfigWatcher>> {
        self.web.as_ref()
    }

    pub fn stats(&self) -> &Arc<WebStats> {
        &self.stats
    }

    /// Answers `req` through `router`.
    pub async fn handle<S: Send + Sync + 'static>(
        &self,
        router: &Router<S>,
        state: Arc<S>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let settings = self.web.as_ref().map(|w| w.settings());
        let mut resp = self.admit(router, state, req, settings.clone()).await;
        if let Some(settings) = settings {
            for (name, value) in &settings.headers {
                resp.headers_mut().insert(name.clone(), value.clone());
            }
        }
        resp
    }

    async fn admit<S: Send + Sync + 'static>(
        &self,
        router: &Router<S>,
        state: Arc<S>,
        req: Request<Incoming>,
        settings: Option<Arc<WebSettings>>,
    ) -> Response<Body> {
        let found = router.lookup(req.uri().path());
        let route = found.as_ref().map(|(route, _)| *route);
        let cors_route = route.is_some_and(Route::accepts_preflight);
        let refused = |mut resp: Response<Body>| {
            if let (true, Some(add)) = (cors_route, &self.refusal_headers) {
                add(req.headers(), &mut resp);
            }
            resp
        };
        let json = route.is_some_and(Route::json_errors);
        let preflight =
            req.method() == Method::OPTIONS && route.is_some_and(Route::accepts_preflight);
        if req.method() != Method::GET && req.method() != Method::HEAD && !preflight {
            let (allow, message) = if route.is_some_and(Route::accepts_preflight) {
                (
                    "GET, HEAD, OPTIONS",
                    "only GET, HEAD and OPTIONS are served",
                )
            } else {
                ("GET, HEAD", "only GET and HEAD are served")
            };
            let mut resp = refusal(
                json,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            );
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static(allow));
            return refused(resp);
        }
        let has_body = req.headers().contains_key(TRANSFER_ENCODING)
            || req
                .headers()
                .get(CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if has_body {
            return refused(refusal(
                json,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_not_accepted",
                "request bodies are not accepted",
            ));
        }
        let public = route.is_some_and(Route::is_public);
        // A CORS preflight never carries credentials: the browser sends
        // them only on the request it asks about, which is checked.
        if let Some(settings) = settings.filter(|s| s.auth_enabled() && !public && !preflight) {
            if !self.authorized(&req, settings).await {
                self.stats.auth_failures.inc();
                tracing::debug!(path = %req.uri().path(), "rejected request without valid credentials");
                let mut resp = refusal(
                    json,
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unauthorized",
                );
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"secure-channel-exporter\", charset=\"UTF-8\"",
                    ),
                );
                return refused(resp);
            }
        }
        match found {
            Some((route, params)) => route.call(state, req, params).await,
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn authorized(&self, req: &Request<Incoming>, settings: Arc<WebSettings>) -> bool {
        let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        let pending =
            match self
                .auth
                .precheck(&settings.users, settings.dummy_hash.as_deref(), header)
            {
                Verdict::Decided(ok) => return ok,
                Verdict::Bcrypt(pending) => pending,
            };
        // One bcrypt at a time: waiting here costs a task, not a blocking
        // thread, however many clients send wrong passwords.
        let Ok(_turn) = self.bcrypt_turn.acquire().await else {
            return false;
        };
        let auth = self.auth.clone();
        // bcrypt is deliberately slow: keep it off the async workers.
        tokio::task::spawn_blocking(move || auth.verify(pending))
            .await
            .unwrap_or(false)
    }
}

/// A refusal of the gate, as text or as the JSON error body.
fn refusal(json: bool, status: StatusCode, code: &str, message: &str) -> Response<Body> {
    if json {
        json_error(status, code, message)
    } else {
        text(status, format!("{message}\n"))
    }
}
