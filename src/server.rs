//! The HTTP side: hyper 1 accept loop, routing, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::collector::Collector;
use crate::exposition::negotiate;

/// Time a client gets to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Floor for a scrape deadline, so a tiny scrape timeout still tries.
const MIN_SCRAPE_BUDGET: Duration = Duration::from_millis(100);

pub struct App {
    pub collector: Collector,
    pub telemetry_path: String,
    pub scrape_timeout_offset: Duration,
}

pub type Body = Full<Bytes>;

impl App {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served\n",
            );
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let path = req.uri().path();
        if path == self.telemetry_path {
            return self.metrics(&req).await;
        }
        match path {
            "/" => self.landing(),
            "/health" => text(StatusCode::OK, "OK\n"),
            "/ready" => self.ready().await,
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The fetch budget: Prometheus' scrape timeout minus the offset, capped
    /// by `--pool.timeout`.
    pub fn scrape_budget(&self, header: Option<&HeaderValue>) -> Duration {
        let pool_timeout = self.collector.pool_timeout();
        let Some(scrape_timeout) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
        else {
            return pool_timeout;
        };
        let budget = if scrape_timeout > self.scrape_timeout_offset * 2 {
            scrape_timeout - self.scrape_timeout_offset
        } else {
            // Offset too large for this timeout: keep half of it instead.
            scrape_timeout / 2
        };
        budget.max(MIN_SCRAPE_BUDGET).min(pool_timeout)
    }

    async fn metrics(&self, req: &Request<Incoming>) -> Response<Body> {
        let budget = self.scrape_budget(req.headers().get("x-prometheus-scrape-timeout-seconds"));
        let format = negotiate(req.headers().get(ACCEPT).and_then(|h| h.to_str().ok()));
        let snapshot = self.collector.collect(Instant::now() + budget).await;
        let body = self.collector.render(&snapshot, format);
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
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
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let handler = move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(req).await) }
    };
    serve(listener, handler, shutdown).await;
}

/// A generic hyper 1 accept loop: HTTP/1.1 with a header-read timeout.
/// When `shutdown` resolves it stops accepting and gives in-flight requests
/// [`SHUTDOWN_GRACE`] to finish. A handler error closes that connection
/// without an answer (the simulator's "down" fault uses it).
pub async fn serve<H, Fut, E>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handler.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
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
