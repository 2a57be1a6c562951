//! What every request passes before its route: only `GET` and `HEAD`, no
//! request bodies, basic auth from the web config (except on public
//! routes), `404` for unknown paths, and the configured response headers
//! on every answer.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::router::Router;
use super::web::auth::Verdict;
use super::web::{BasicAuth, WebConfigWatcher, WebSettings};
use super::{text, Body, WebStats};

pub struct Gate {
    web: Option<Arc<WebConfigWatcher>>,
    auth: Arc<BasicAuth>,
    /// One permit: the bcrypt in progress.
    bcrypt_turn: tokio::sync::Semaphore,
    stats: Arc<WebStats>,
}

impl Gate {
    pub fn new(web: Option<Arc<WebConfigWatcher>>, stats: Arc<WebStats>) -> Self {
        Self {
            web,
            auth: Arc::default(),
            bcrypt_turn: tokio::sync::Semaphore::new(1),
            stats,
        }
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
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served\n",
            );
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let has_body = req.headers().contains_key(TRANSFER_ENCODING)
            || req
                .headers()
                .get(CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if has_body {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request bodies are not accepted\n",
            );
        }
        let found = router.lookup(req.uri().path());
        let public = found.as_ref().is_some_and(|(route, _)| route.is_public());
        if let Some(settings) = settings.filter(|s| s.auth_enabled() && !public) {
            if !self.authorized(&req, settings).await {
                self.stats.auth_failures.inc();
                tracing::debug!(path = %req.uri().path(), "rejected request without valid credentials");
                let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"secure-channel-exporter\", charset=\"UTF-8\"",
                    ),
                );
                return resp;
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
