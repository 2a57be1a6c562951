//! The route-free listener both the exporter and the simulator run on: a
//! hyper 1 accept loop with TLS from the web config, a bound on connections
//! served at once, a header-read timeout and graceful shutdown. What a
//! request means is the handler's business.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::web::WebConfigWatcher;
use super::{Body, WebStats};

/// Time a client gets to send its request headers (and finish a TLS
/// handshake).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The client's address, in every request's extensions (per-client rate
/// limits need it; hyper does not keep it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

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
        let (stream, peer) = tokio::select! {
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
                serve_connection(TokioIo::new(stream), peer, handler, watcher).await;
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    serve_connection(TokioIo::new(tls_stream), peer, handler, watcher).await;
                }
                Ok(Err(e)) => {
                    stats.tls_handshake_failures.inc();
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    stats.tls_handshake_failures.inc();
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

async fn serve_connection<I, H, Fut, E>(io: I, peer: SocketAddr, handler: H, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            io,
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                handler(req)
            }),
        );
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
