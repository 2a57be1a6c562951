//! The HTTP side: hyper 1 accept loop (optionally TLS), routing, basic
//! auth, limits, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
    TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::collector::Collector;
use crate::exposition::{negotiate, MetricFamily, MetricType};
use crate::probe::{Probe, ProbeError};
use crate::web::{BasicAuth, WebConfigWatcher, WebSettings};

/// Time a client gets to send its request headers (and finish a TLS
/// handshake).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Floor for a scrape deadline, so a tiny scrape timeout still tries.
const MIN_SCRAPE_BUDGET: Duration = Duration::from_millis(100);

pub type Body = Full<Bytes>;

/// Counters of the listener's defences, exported on the telemetry path.
#[derive(Debug, Default)]
pub struct WebStats {
    pub auth_failures: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

pub struct App {
    pub collector: Collector,
    pub telemetry_path: String,
    pub scrape_timeout_offset: Duration,
    pub web: Option<Arc<WebConfigWatcher>>,
    pub probe: Option<Probe>,
    pub stats: Arc<WebStats>,
    auth: BasicAuth,
}

impl App {
    pub fn new(
        collector: Collector,
        telemetry_path: String,
        scrape_timeout_offset: Duration,
        web: Option<Arc<WebConfigWatcher>>,
        probe: Option<Probe>,
    ) -> Self {
        Self {
            collector,
            telemetry_path,
            scrape_timeout_offset,
            web,
            probe,
            stats: Arc::new(WebStats::default()),
            auth: BasicAuth::default(),
        }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let settings = self.web.as_ref().map(|w| w.settings());
        let mut resp = self.clone().route(req, settings.clone()).await;
        if let Some(settings) = settings {
            for (name, value) in &settings.headers {
                resp.headers_mut().insert(name.clone(), value.clone());
            }
        }
        resp
    }

    async fn route(
        self: Arc<Self>,
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
        let path = req.uri().path().to_owned();
        // Liveness stays open so orchestrators need no credentials.
        if path == "/health" {
            return text(StatusCode::OK, "OK\n");
        }
        if let Some(settings) = settings.filter(|s| s.auth_enabled()) {
            if !self.authorized(&req, settings).await {
                self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %path, "rejected request without valid credentials");
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
        if path == self.telemetry_path {
            let extra = self.web_families();
            return scrape_response(&self.collector, &req, self.scrape_budget(&req), &extra).await;
        }
        match path.as_str() {
            "/" => self.landing(),
            "/ready" => self.ready().await,
            "/probe" => self.probe(&req).await,
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn authorized(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        settings: Arc<WebSettings>,
    ) -> bool {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let app = self.clone();
        // bcrypt is deliberately slow: keep it off the async workers.
        tokio::task::spawn_blocking(move || app.auth.check(&settings.users, header.as_deref()))
            .await
            .unwrap_or(false)
    }

    async fn probe(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some(probe) = &self.probe else {
            return text(
                StatusCode::NOT_FOUND,
                "probe mode is off: start the exporter with --probe.allowed-targets\n",
            );
        };
        let target = req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "target")
                .map(|(_, v)| v.into_owned())
        });
        match probe.collector_for(target.as_deref()) {
            Ok(collector) => scrape_response(&collector, req, self.scrape_budget(req), &[]).await,
            Err(e) => {
                tracing::warn!(error = %e, "probe refused");
                let code = match e {
                    ProbeError::NotAllowed(_) => StatusCode::FORBIDDEN,
                    _ => StatusCode::BAD_REQUEST,
                };
                let mut resp = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
                *resp.status_mut() = code;
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                resp
            }
        }
    }

    fn web_families(&self) -> Vec<MetricFamily> {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut out = vec![
            MetricFamily::new(
                "secure_channel_exporter_web_auth_failures_total",
                "Requests refused for missing or wrong basic-auth credentials.",
                MetricType::Counter,
            )
            .with_sample(vec![], count(&self.stats.auth_failures)),
            MetricFamily::new(
                "secure_channel_exporter_web_tls_handshake_failures_total",
                "Client connections that failed the TLS handshake (unknown CA, missing client certificate, plain HTTP).",
                MetricType::Counter,
            )
            .with_sample(vec![], count(&self.stats.tls_handshake_failures)),
        ];
        if let Some(web) = &self.web {
            out.push(
                MetricFamily::new(
                    "secure_channel_exporter_web_config_last_reload_successful",
                    "1 if the last load of --web.config.file succeeded, 0 if the last good one is still in force.",
                    MetricType::Gauge,
                )
                .with_sample(vec![], if web.last_reload_ok() { 1.0 } else { 0.0 }),
            );
        }
        out
    }

    fn scrape_budget(&self, req: &Request<Incoming>) -> Duration {
        scrape_budget(
            req.headers().get("x-prometheus-scrape-timeout-seconds"),
            self.scrape_timeout_offset,
            self.collector.pool_timeout(),
        )
    }

    async fn ready(&self) -> Response<Body> {
        let readiness = self.collector.readiness().await;
        let code = if readiness.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = serde_json::to_string(&readiness).unwrap_or_else(|_| "{}".into());
        let mut resp = Response::new(Full::new(Bytes::from(body + "\n")));
        *resp.status_mut() = code;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
    fn landing(&self) -> Response<Body> {
        let path = html_escape(&self.telemetry_path);
        let html = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>SecureChannelPool exporter</title></head>\n\
             <body><h1>SecureChannelPool exporter</h1>\n\
             <p>Version {version} (revision {revision})</p>\n\
             <p>Pool: <code>{pool}</code></p>\n\
             <ul><li><a href=\"{path}\">Metrics</a> ({path})</li>\n\
             <li><a href=\"/health\">Liveness</a> (/health)</li>\n\
             <li><a href=\"/ready\">Readiness</a> (/ready)</li></ul>\n\
             </body></html>\n",
            version = env!("CARGO_PKG_VERSION"),
            revision = env!("BUILD_REVISION"),
            pool = html_escape(self.collector.pool_url()),
        );
        let mut resp = Response::new(Full::new(Bytes::from(html)));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        resp
    }
}

/// The fetch budget: Prometheus' scrape timeout minus the offset, capped by
/// `--pool.timeout`.
pub fn scrape_budget(
    header: Option<&HeaderValue>,
    offset: Duration,
    pool_timeout: Duration,
) -> Duration {
    let Some(scrape_timeout) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
    else {
        return pool_timeout;
    };
    let budget = if scrape_timeout > offset * 2 {
        scrape_timeout - offset
    } else {
        // Offset too large for this timeout: keep half of it instead.
        scrape_timeout / 2
    };
    budget.max(MIN_SCRAPE_BUDGET).min(pool_timeout)
}

/// One scrape of `collector` in the negotiated format, with `extra`
/// families appended. Scrapes that shared one pool fetch also share the
/// rendered body (no per-response copy of a multi-megabyte answer).
async fn scrape_response(
    collector: &Collector,
    req: &Request<Incoming>,
    budget: Duration,
    extra: &[MetricFamily],
) -> Response<Body> {
    let format = negotiate(req.headers().get(ACCEPT).and_then(|h| h.to_str().ok()));
    let collected = collector.collect(Instant::now() + budget).await;
    let body = collector.render_bytes(&collected, format, extra);
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The exporter's HTTP server: serves `app` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let options = ServeOptions {
        max_connections,
        web: app.web.clone(),
        stats: app.stats.clone(),
    };
    let handler = move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(req).await) }
    };
    serve_with(listener, handler, shutdown, options).await;
}

/// Limits and TLS of a listener.
pub struct ServeOptions {
    /// Connections served at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// TLS comes from the web config, re-checked at each new connection.
    pub web: Option<Arc<WebConfigWatcher>>,
    pub stats: Arc<WebStats>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            web: None,
            stats: Arc::default(),
        }
    }
}

/// A plain-HTTP listener with default limits (the simulator's).
pub async fn serve<H, Fut, E>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    serve_with(listener, handler, shutdown, ServeOptions::default()).await;
}

/// A hyper 1 accept loop: HTTP/1.1 with a header-read timeout, bounded
/// concurrent connections, and TLS when the web config asks for it. When
/// `shutdown` resolves it stops accepting and gives in-flight requests
/// [`SHUTDOWN_GRACE`] to finish. A handler error closes that connection
/// without an answer (the simulator's "down" fault uses it).
pub async fn serve_with<H, Fut, E>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let tls = options.web.as_ref().and_then(|w| w.refresh().tls.clone());
        let handler = handler.clone();
        let watcher = graceful.watcher();
        let stats = options.stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(tls) = tls else {
                serve_connection(TokioIo::new(stream), handler, watcher).await;
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    serve_connection(TokioIo::new(tls_stream), handler, watcher).await;
                }
                Ok(Err(e)) => {
                    stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("TLS handshake timed out");
                }
            }
        });
    }
    drop(listener);
    tracing::debug!("stopped accepting; waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}");
        }
    }
}

async fn serve_connection<I, H, Fut, E>(io: I, handler: H, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, hyper::service::service_fn(handler));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
