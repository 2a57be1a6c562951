//! The error type: opaque, with stable kind queries and the cause kept.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ConnectionId;

/// Longest excerpt of a 401 body kept in an [`Error`].
pub(crate) const MAX_BODY_EXCERPT: usize = 200;

type Cause = Arc<dyn StdError + Send + Sync + 'static>;

/// A failed call to the pool, or a configuration the client cannot use.
///
/// Opaque, like `reqwest::Error`: ask what it is with [`Error::kind`] (or
/// the `is_*` queries), and which URL, HTTP status or pool message it
/// concerns with the accessors. The underlying cause (the transport error,
/// serde's error, the I/O error of a file) is kept and returned by
/// [`source`](std::error::Error::source), so `anyhow`-style reports show
/// the whole chain and callers may downcast it.
///
/// The message names the URL with credentials removed (user info and
/// query dropped) and, for transport failures, ends with the innermost
/// cause (e.g. `Connection refused (os error 111)`) so that a single line
/// in a log says what happened. No message ever contains the token.
///
/// `Clone` (the cause is shared), `Send` and `Sync`.
///
/// ```
/// use secure_channel_client::{CallOptions, ErrorKind, PoolClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 9 (discard).
/// let client = PoolClient::builder().base_url("http://127.0.0.1:9").build().unwrap();
/// let err = client.status(CallOptions::new()).await.unwrap_err();
/// assert!(err.is_connect() || err.is_timeout());
/// assert_eq!(err.url(), Some("http://127.0.0.1:9/status/connections"));
/// assert!(std::error::Error::source(&err).is_some() || err.is_timeout());
/// # }
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    url: Option<Arc<str>>,
    message: String,
    status: Option<u16>,
    pool_message: Option<String>,
    connection_id: Option<ConnectionId>,
    retry_at: Option<SystemTime>,
    source: Option<Cause>,
}

/// Stable, machine-readable classification of an [`Error`].
///
/// [`ErrorKind::as_str`] gives a stable label: `connect`, `timeout`,
/// `status`, `unauthorized`, `too_large`, `decode` (the six ways a fetch
/// can fail, [`ErrorKind::FETCH`]), plus `not_found`, `circuit_open` and
/// `config`. New kinds may be added in a minor release.
///
/// ```
/// use secure_channel_client::ErrorKind;
/// assert_eq!(ErrorKind::TooLarge.as_str(), "too_large");
/// assert_eq!(ErrorKind::TooLarge.to_string(), "too_large");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The pool could not be reached, or the connection broke before a
    /// complete answer (refused, reset, TLS or DNS failure).
    Connect,
    /// No complete answer before the deadline.
    Timeout,
    /// The pool answered with an unexpected HTTP status.
    Status,
    /// The pool refused the token (HTTP 401 or 403).
    Unauthorized,
    /// The body was larger than the configured cap.
    TooLarge,
    /// The body is not the expected document.
    Decode,
    /// The status document does not list the connection asked for.
    NotFound,
    /// The circuit breaker is open: the call was not attempted.
    CircuitOpen,
    /// The configuration is unusable (bad URL, unreadable or unusable CA,
    /// certificate, key or token file, bad server name).
    Config,
}

impl ErrorKind {
    /// The kinds a fetch of a document can fail with, in a stable order.
    pub const FETCH: [ErrorKind; 6] = [
        Self::Connect,
        Self::Timeout,
        Self::Status,
        Self::Unauthorized,
        Self::TooLarge,
        Self::Decode,
    ];

    /// The stable label: `connect`, `timeout`, `status`, `unauthorized`,
    /// `too_large`, `decode`, `not_found`, `circuit_open` or `config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge => "too_large",
            Self::Decode => "decode",
            Self::NotFound => "not_found",
            Self::CircuitOpen => "circuit_open",
            Self::Config => "config",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    fn new(kind: ErrorKind, url: Option<&str>, message: String) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                url: url.map(Arc::from),
                message,
                status: None,
                pool_message: None,
                connection_id: None,
                retry_at: None,
                source: None,
            }),
        }
    }

    fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }

    /// The stable classification of this error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether the pool could not be reached ([`ErrorKind::Connect`]).
    pub fn is_connect(&self) -> bool {
        self.kind() == ErrorKind::Connect
    }

    /// Whether the deadline passed first ([`ErrorKind::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// Whether the pool answered an unexpected HTTP status
    /// ([`ErrorKind::Status`]).
    pub fn is_status(&self) -> bool {
        self.kind() == ErrorKind::Status
    }

    /// Whether the pool refused the token ([`ErrorKind::Unauthorized`]).
    pub fn is_unauthorized(&self) -> bool {
        self.kind() == ErrorKind::Unauthorized
    }

    /// Whether the body passed the size cap ([`ErrorKind::TooLarge`]).
    pub fn is_too_large(&self) -> bool {
        self.kind() == ErrorKind::TooLarge
    }

    /// Whether the body could not be decoded ([`ErrorKind::Decode`]).
    pub fn is_decode(&self) -> bool {
        self.kind() == ErrorKind::Decode
    }

    /// Whether the connection asked for is not listed
    /// ([`ErrorKind::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Whether the circuit breaker refused the call
    /// ([`ErrorKind::CircuitOpen`]).
    pub fn is_circuit_open(&self) -> bool {
        self.kind() == ErrorKind::CircuitOpen
    }

    /// Whether the configuration is unusable ([`ErrorKind::Config`]).
    pub fn is_config(&self) -> bool {
        self.kind() == ErrorKind::Config
    }

    /// The HTTP status the pool answered, for [`ErrorKind::Status`] and
    /// [`ErrorKind::Unauthorized`].
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The URL the error concerns, credentials removed (`None` for
    /// configuration errors).
    pub fn url(&self) -> Option<&str> {
        self.inner.url.as_deref()
    }

    /// What the pool said when it refused the token
    /// ([`ErrorKind::Unauthorized`]), e.g. `Unauthorized: Invalid token`:
    /// trimmed, control characters removed, cut to 200 characters.
    pub fn pool_message(&self) -> Option<&str> {
        self.inner.pool_message.as_deref()
    }

    /// The connection asked for ([`ErrorKind::NotFound`]).
    pub fn connection_id(&self) -> Option<&ConnectionId> {
        self.inner.connection_id.as_ref()
    }

    /// When an open circuit breaker lets a probe through
    /// ([`ErrorKind::CircuitOpen`]).
    pub fn retry_at(&self) -> Option<SystemTime> {
        self.inner.retry_at
    }

    // Constructors, one per kind. Crate-private: callers classify errors,
    // they do not make them.

    pub(crate) fn connect(url: &str, cause: reqwest::Error) -> Self {
        // The innermost cause says what went wrong ("Connection refused");
        // reqwest's own message only repeats the URL.
        let mut detail = cause.to_string();
        let mut next = StdError::source(&cause);
        while let Some(c) = next {
            detail = c.to_string();
            next = c.source();
        }
        let detail = crate::client::redact_text(&detail);
        Self::new(
            ErrorKind::Connect,
            Some(url),
            format!("cannot reach {url}: {detail}"),
        )
        .with_source(cause.without_url())
    }

    pub(crate) fn timeout(url: &str, budget: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            Some(url),
            format!("{url} did not answer within {budget:?}"),
        )
    }

    pub(crate) fn connect_timeout(url: &str, cause: reqwest::Error) -> Self {
        Self::new(
            ErrorKind::Timeout,
            Some(url),
            format!("{url} did not accept a connection within the connect timeout"),
        )
        .with_source(cause.without_url())
    }

    pub(crate) fn expired(url: &str) -> Self {
        Self::new(
            ErrorKind::Timeout,
            Some(url),
            format!("the deadline for {url} had passed before the call: not attempted"),
        )
    }

    pub(crate) fn http_status(url: &str, status: u16) -> Self {
        let mut e = Self::new(
            ErrorKind::Status,
            Some(url),
            format!("{url} answered HTTP {status}"),
        );
        e.inner.status = Some(status);
        e
    }

    pub(crate) fn unauthorized(url: &str, status: u16, body: &[u8]) -> Self {
        let pool_message = excerpt(body);
        let mut e = Self::new(
            ErrorKind::Unauthorized,
            Some(url),
            format!("{url} answered HTTP {status} ({pool_message:?}): check the pool auth token"),
        );
        e.inner.status = Some(status);
        e.inner.pool_message = Some(pool_message);
        e
    }

    pub(crate) fn too_large(url: &str, limit: u64) -> Self {
        Self::new(
            ErrorKind::TooLarge,
            Some(url),
            format!("{url} sent a body larger than the {limit} byte limit"),
        )
    }

    pub(crate) fn decode(url: &str, cause: serde_json::Error) -> Self {
        Self::new(
            ErrorKind::Decode,
            Some(url),
            format!("cannot decode the body of {url}: {cause}"),
        )
        .with_source(cause)
    }

    pub(crate) fn decode_text(url: &str, detail: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::Decode,
            Some(url),
            format!("cannot decode the body of {url}: {detail}"),
        )
    }

    pub(crate) fn not_found(url: &str, id: ConnectionId) -> Self {
        let mut e = Self::new(
            ErrorKind::NotFound,
            Some(url),
            format!("{url} lists no connection with id {id}"),
        );
        e.inner.connection_id = Some(id);
        e
    }

    pub(crate) fn circuit_open(
        url: &str,
        until: SystemTime,
        retry_in: Duration,
        failures: u32,
    ) -> Self {
        let mut e = Self::new(
            ErrorKind::CircuitOpen,
            Some(url),
            format!(
                "circuit open for {url} after {failures} consecutive failures: \
                 failing fast for another {retry_in:?} (until {})",
                crate::Timestamp::from(until)
            ),
        );
        e.inner.retry_at = Some(until);
        e
    }

    pub(crate) fn config(detail: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::Config,
            None,
            format!("invalid configuration: {detail}"),
        )
    }

    pub(crate) fn config_caused(
        detail: impl fmt::Display,
        cause: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::config(format_args!("{detail}: {cause}")).with_source(cause)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(url) = &self.inner.url {
            d.field("url", url);
        }
        if let Some(status) = self.inner.status {
            d.field("status", &status);
        }
        d.field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// Trims and length-limits a body for inclusion in an error.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_BODY_EXCERPT)
        .collect();
    if text.chars().count() > MAX_BODY_EXCERPT {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_statuses_and_chains() {
        let e = Error::http_status("http://pool:9090/metrics", 502);
        assert_eq!(e.kind(), ErrorKind::Status);
        assert!(e.is_status());
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.to_string(), "http://pool:9090/metrics answered HTTP 502");

        let serde = serde_json::from_str::<u8>("x").unwrap_err();
        let e = Error::decode("http://pool:9090/healthz", serde);
        let cause = StdError::source(&e).unwrap();
        let serde = cause.downcast_ref::<serde_json::Error>().unwrap();
        assert_eq!((serde.line(), serde.column()), (1, 1));

        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::config_caused("cannot read token file /t", io);
        assert!(e.is_config() && e.url().is_none());
        assert!(StdError::source(&e)
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .is_some());

        let e = Error::unauthorized("http://p/metrics", 401, b" Unauthorized: Invalid token\n");
        assert_eq!(e.pool_message(), Some("Unauthorized: Invalid token"));
        assert_eq!(e.status(), Some(401));
    }
}
