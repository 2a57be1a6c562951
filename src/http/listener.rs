//! The route-free listener both the exporter and the simulator run on: a
//! hyper 1 accept loop with TLS from the web config, a bound on open
//! connections, a bound on requests answered at once, a header-read (and
//! keep-alive idle) timeout, a write-stall timeout and graceful shutdown.
//! What a request means is the handler's business.
//!
//! Why requests and not sockets are the scarce slot: a socket that sends
//! nothing, drips its headers, stops halfway through a TLS handshake or
//! never reads its answer costs a file descriptor and a few KiB, but when
//! it also held one of a few dozen serving slots, 64 such sockets reopened
//! as they dropped made every scrape wait ~9.5 s (issue 11). Now those
//! sockets only count against a much larger connection cap, are closed by
//! the header or write timeout, and a request takes a slot only while its
//! handler runs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::web::WebConfigWatcher;
use super::{Body, WebStats};

/// Default time a client gets to finish a TLS handshake and send its
/// request headers, and the longest a kept-alive connection may sit idle
/// between requests. Prometheus sends its headers at once; a few seconds
/// is generous and frees a stalled socket well within a scrape interval.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest a response write may make no progress (a client that
/// stopped reading) before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read. A scrape's is
/// well under 1 KiB; hyper's default (~400 KiB) would let each of a
/// thousand slow clients pin that much memory.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Time in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The client's address, in every request's extensions (per-client rate
/// limits need it; hyper does not keep it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Limits and TLS of a listener.
pub struct ServeOptions {
    /// Client connections open at once, whatever they are doing; further
    /// ones wait in the listen queue.
    pub max_connections: usize,
    /// Requests whose handler runs at once; further requests wait for a
    /// slot.
    pub max_requests: usize,
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    /// TLS comes from the web config, re-checked at each new connection.
    pub web: Option<Arc<WebConfigWatcher>>,
    pub stats: Arc<WebStats>,
    /// Paths answered without waiting for a request slot: liveness, whose
    /// handler waits for nothing, must answer while every slot is held by
    /// requests waiting on a slow pool (an orchestrator would otherwise
    /// restart the exporter exactly when the pool is in trouble).
    pub unmetered: Vec<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_requests: 64,
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            web: None,
            stats: Arc::default(),
            unmetered: Vec::new(),
        }
    }
}

/// File descriptors kept free of client connections: standard streams,
/// the listening sockets, the runtime's own, the pool client's connections
/// (three documents at once, and `/probe` targets), the token and web
/// config files, /proc reads for the process metrics.
pub const RESERVED_FILES: u64 = 32;

/// `--web.max-connections`, made to fit the process's open-file limit.
///
/// The soft limit is first raised to the hard limit (as Go programs such as
/// Prometheus do at start); if it still cannot hold `requested` client
/// connections plus [`RESERVED_FILES`], the cap is lowered to what fits and
/// a warning says so. Without it, clients could take every descriptor and
/// the scrape's own connection to the pool would fail ("Too many open
/// files"), reporting the pool down.
#[cfg(unix)]
pub fn fit_open_file_limit(requested: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return requested;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // rlim_t is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let soft = lim.rlim_cur as u64;
    let room = soft.saturating_sub(RESERVED_FILES).max(1);
    if (requested as u64) <= room {
        return requested;
    }
    let capped = usize::try_from(room).unwrap_or(requested);
    tracing::warn!(
        requested,
        capped,
        open_file_limit = soft,
        reserved = RESERVED_FILES,
        "--web.max-connections {requested} does not fit the open-file limit ({soft}): \
         serving at most {capped} client connections at once (raise the limit, e.g. \
         LimitNOFILE= or ulimit -n, to allow more)"
    );
    capped
}

#[cfg(not(unix))]
pub fn fit_open_file_limit(requested: usize) -> usize {
    requested
}

/// The sockets one server accepts on: one per `--web.listen-address`, or
/// those systemd passed.
pub struct Listeners(Vec<TcpListener>);

impl From<TcpListener> for Listeners {
    fn from(listener: TcpListener) -> Self {
        Self(vec![listener])
    }
}

impl From<Vec<TcpListener>> for Listeners {
    fn from(listeners: Vec<TcpListener>) -> Self {
        Self(listeners)
    }
}

impl Listeners {
    /// The next connection on any of the sockets.
    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        // Start at a different socket each time, so that a busy one cannot
        // keep the others waiting.
        let start = std::sync::atomic::AtomicUsize::new(0);
        std::future::poll_fn(|cx| {
            let n = self.0.len();
            let first = start.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
            for i in 0..n {
                if let Poll::Ready(result) = self.0[(first + i) % n].poll_accept(cx) {
                    return Poll::Ready(result);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// A plain-HTTP listener with default limits (the simulator's).
pub async fn serve<H, Fut, E>(
    listener: impl Into<Listeners>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    serve_with(listener, handler, shutdown, ServeOptions::default()).await;
}

/// A hyper 1 accept loop: HTTP/1.1 with header-read and write-stall
/// timeouts, bounded open connections and requests in flight, and TLS when
/// the web config asks for it. When
/// `shutdown` resolves it stops accepting and gives in-flight requests
/// [`SHUTDOWN_GRACE`] to finish. A handler error closes that connection
/// without an answer (the simulator's "down" fault uses it).
pub async fn serve_with<H, Fut, E>(
    listener: impl Into<Listeners>,
    handler: H,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let listener: Listeners = listener.into();
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let requests = Arc::new(Semaphore::new(options.max_requests.max(1)));
    // An eighth of the request slots (8 by default): room for several
    // scrapers on a bad link, not for a crowd of clients that never read.
    let long_stalls = Arc::new(Semaphore::new((options.max_requests / 8).max(1)));
    let unmetered: Arc<[String]> = options.unmetered.into();
    let handler = move |req: Request<Incoming>| {
        let (requests, handler) = (requests.clone(), handler.clone());
        let metered = !unmetered.iter().any(|p| p == req.uri().path());
        async move {
            // Held while the handler runs, not while the answer is written:
            // a client that never reads is the write timeout's business.
            let _slot = if metered {
                Some(requests.acquire_owned().await)
            } else {
                None
            };
            handler(req).await
        }
    };
    let timeouts = Timeouts {
        header_read: options.header_read_timeout,
        write: options.write_timeout,
    };
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
                    if let Some(repeats) =
                        crate::logging::throttle().admit(&format!("accept failed {:?}", e.kind()))
                    {
                        tracing::warn!(error = %e, "accept failed{repeats}");
                    }
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
        let long_stalls = long_stalls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // Below TLS, so a stalled TCP send is seen whatever the record
            // layer buffers.
            let stream = StallTimeout::new(stream, timeouts.write, long_stalls);
            let Some(tls) = tls else {
                let io = TokioIo::new(ErrorBodies::new(stream));
                serve_connection(io, peer, handler, watcher, timeouts).await;
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout(timeouts.header_read, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let io = TokioIo::new(ErrorBodies::new(tls_stream));
                    serve_connection(io, peer, handler, watcher, timeouts).await;
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

#[derive(Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    write: Duration,
}

async fn serve_connection<I, H, Fut, E>(
    io: I,
    peer: SocketAddr,
    handler: H,
    watcher: Watcher,
    timeouts: Timeouts,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper restarts this timer after each answer, so it also closes
        // kept-alive connections idle for longer.
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(MAX_REQUEST_HEAD)
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

/// How long a write may stall before it needs one of the few long-stall
/// slots. A client reading its answer, even across a slow link, drains
/// the socket buffer well within this.
pub const STALL_GRACE: Duration = Duration::from_secs(1);

/// A stream whose writes fail with `TimedOut` once they have made no
/// progress for `limit`: a client that stops reading its answer is
/// disconnected instead of holding the socket and the answer's memory for
/// as long as it likes. A write stalled past [`STALL_GRACE`] must also take
/// one of a few slots shared by the listener, and fails at once when none
/// is free: without them, each of up to `--web.max-connections` non-readers
/// would pin a whole answer (4 MB for a 10,000-connection pool) for the
/// full timeout. Reads pass through (hyper's header timeout covers them;
/// request bodies are refused).
pub struct StallTimeout<S> {
    inner: S,
    limit: Duration,
    long_stalls: Arc<Semaphore>,
    /// When the current stall began.
    since: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<S> StallTimeout<S> {
    pub fn new(inner: S, limit: Duration, long_stalls: Arc<Semaphore>) -> Self {
        Self {
            inner,
            limit,
            long_stalls,
            since: None,
            timer: None,
            slot: None,
        }
    }

    /// The write made progress: the stall, if any, is over.
    fn progressed(&mut self) {
        self.since = None;
        self.timer = None;
        self.slot = None;
    }

    /// `Pending` from the inner stream: starts the stall clock if it is not
    /// running, takes a long-stall slot past the grace period, and turns
    /// `Pending` into an error once the limit has passed or no slot is free.
    fn on_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let now = tokio::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        let stalled = now - since;
        if stalled >= self.limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading its answer",
            )));
        }
        if stalled >= STALL_GRACE && self.slot.is_none() {
            match self.long_stalls.clone().try_acquire_owned() {
                Ok(slot) => self.slot = Some(slot),
                Err(_) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "too many clients are not reading their answers",
                    )))
                }
            }
        }
        let next = if self.slot.is_none() && STALL_GRACE < self.limit {
            since + STALL_GRACE
        } else {
            since + self.limit
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        match timer.as_mut().poll(cx) {
            // A deadline passed: decide again (at most twice in a row).
            Poll::Ready(()) => self.on_pending(cx),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.on_pending(cx),
            ready => {
                self.progressed();
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.on_pending(cx),
            ready => {
                self.progressed();
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.on_pending(cx),
            ready => {
                self.progressed();
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.on_pending(cx),
            ready => ready,
        }
    }
}

/// hyper's own answers to requests it cannot read, with a body saying why.
/// hyper writes them itself (no handler runs) with an empty body; a client
/// shown a bare `400` or `431` cannot tell what to fix.
const AUTOMATIC_ANSWERS: [(&[u8], &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "bad request: the request line or a header could not be read as HTTP/1.1\n",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "request header fields too large: the request line and headers are limited to 16 KiB\n",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "URI too long: the request line and headers are limited to 16 KiB\n",
    ),
];

/// The header line hyper gives its automatic answers, and what replaces it.
const EMPTY_LENGTH: &[u8] = b"\r\ncontent-length: 0\r\n";

/// The automatic answer `head` with its body, or `None` when `head` is
/// anything else (every handler's answer has a body or a length above 0).
fn with_body(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > 512 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let (_, body) = AUTOMATIC_ANSWERS
        .iter()
        .find(|(status, _)| head.starts_with(status))?;
    let at = head
        .windows(EMPTY_LENGTH.len())
        .position(|w| w == EMPTY_LENGTH)?;
    let mut out = Vec::with_capacity(head.len() + body.len() + 64);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY_LENGTH.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

/// A stream that gives hyper's automatic 400, 414 and 431 answers a body
/// (a line of text saying what could not be read); every other byte
/// passes unchanged.
pub struct ErrorBodies<S> {
    inner: S,
    /// The rewritten answer, how much of it is written, and how many bytes
    /// of hyper's buffer it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ErrorBodies<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> ErrorBodies<S> {
    /// Writes the rewritten answer; `Ready(n)` once all of it is out, `n`
    /// being the length of hyper's original, which it then drops.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, original)) = &mut self.pending {
            if *written == bytes.len() {
                let n = *original;
                self.pending = None;
                return Poll::Ready(Ok(n));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => {
                    self.pending = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => {
                    self.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ErrorBodies<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match with_body(buf) {
                Some(bytes) => self.pending = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        // hyper repeats the same buffer until it is accepted.
        self.drive(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let first = bufs.iter().find(|b| !b.is_empty());
            let candidate = total <= 512 && first.is_some_and(|b| b.starts_with(b"HTTP/1.1 4"));
            let rewritten = candidate
                .then(|| {
                    with_body(
                        &bufs
                            .iter()
                            .flat_map(|b| b.iter().copied())
                            .collect::<Vec<u8>>(),
                    )
                })
                .flatten();
            match rewritten {
                Some(bytes) => self.pending = Some((bytes, 0, total)),
                None => return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            }
        }
        self.drive(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

#[cfg(test)]
mod error_body_tests {
    use super::with_body;

    #[test]
    fn only_hypers_empty_automatic_answers_get_a_body() {
        let head =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(with_body(head).unwrap()).unwrap();
        let (h, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(body.starts_with("request header fields too large"), "{out}");
        assert!(
            h.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        assert!(h.contains("date: x"), "{out}");
        // A handler's 400 (with a length) and any other answer pass as they are.
        assert!(with_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(with_body(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(with_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx").is_none());
    }
}
