//! Typed errors: what went wrong, and where.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::ConnectionId;

/// Longest excerpt of a 401 body kept in [`Error::Unauthorized`].
pub(crate) const MAX_BODY_EXCERPT: usize = 200;

/// A failed call to the pool.
///
/// Every variant names the URL it concerns with credentials removed (user
/// info and query string dropped); no message ever contains the token.
/// [`Error::kind`] gives a stable machine-readable classification.
///
/// ```
/// use secure_channel_client::{Error, ErrorKind};
///
/// fn label(e: &Error) -> &'static str {
///     e.kind().as_str()
/// }
/// # let _ = label;
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pool could not be reached, or the connection broke before a
    /// complete answer (refused, reset, TLS failure, DNS failure).
    #[error("cannot reach {url}: {detail}")]
    Connect {
        /// The URL, credentials removed.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        detail: String,
    },
    /// No complete answer before the deadline.
    #[error("{url} did not answer within {budget:?}")]
    Timeout {
        /// The URL, credentials removed.
        url: String,
        /// The time the call had.
        budget: Duration,
    },
    /// The pool answered with an unexpected HTTP status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL, credentials removed.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The pool refused the token (HTTP 401 or 403).
    #[error("{url} answered HTTP {status} ({body:?}): check the pool auth token")]
    Unauthorized {
        /// The URL, credentials removed.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The pool's answer, trimmed and cut to 200 characters, e.g.
        /// `Unauthorized: Invalid token`.
        body: String,
    },
    /// The body was larger than the configured cap.
    #[error("{url} sent a body larger than the {limit} byte limit")]
    TooLarge {
        /// The URL, credentials removed.
        url: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The body is not the expected document.
    #[error("cannot decode the body of {url}: {detail}")]
    Decode {
        /// The URL, credentials removed.
        url: String,
        /// serde's message, with line and column.
        detail: String,
        /// Line of the error (1-based; 0 when unknown).
        line: usize,
        /// Column of the error (1-based; 0 when unknown).
        column: usize,
    },
    /// The status document does not list this connection (the pool has no
    /// per-connection endpoint; checked-out connections are never listed).
    #[error("{url} lists no connection with id {id}")]
    NotFound {
        /// The status URL, credentials removed.
        url: String,
        /// The id asked for.
        id: ConnectionId,
    },
    /// The circuit breaker is open: the call was not attempted.
    #[error(
        "circuit open for {url} after {failures} consecutive failures: \
         failing fast for another {retry_in:?} (until {})",
        crate::Timestamp::from(*until)
    )]
    CircuitOpen {
        /// The URL that would have been called, credentials removed.
        url: String,
        /// When the breaker lets a probe through.
        until: SystemTime,
        /// Time left until then.
        retry_in: Duration,
        /// Consecutive failures that opened the breaker.
        failures: u32,
    },
    /// The configuration is unusable (bad URL, unreadable CA, certificate,
    /// key or token file).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL does not parse or is not http(s).
    #[error("bad base URL {url:?}: {detail}")]
    BadUrl {
        /// The URL as given, credentials removed where recognisable.
        url: String,
        /// Why it was refused.
        detail: String,
    },
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {detail}")]
    File {
        /// `CA`, `client certificate`, `client key` or `token`.
        what: &'static str,
        /// The file's path.
        path: String,
        /// The I/O error.
        detail: String,
    },
    /// A file was read but its content is unusable.
    #[error("{what} file {path} is unusable: {detail}")]
    BadFile {
        /// `CA`, `client certificate`, `client key` or `token`.
        what: &'static str,
        /// The file's path.
        path: String,
        /// Why it was refused.
        detail: String,
    },
    /// The TLS server name override is unusable, or the URL's host does
    /// not resolve to the addresses to connect to.
    #[error("TLS server name {name:?}: {detail}")]
    ServerName {
        /// The override.
        name: String,
        /// Why it was refused.
        detail: String,
    },
    /// Another invalid setting.
    #[error("{0}")]
    Invalid(String),
}

/// Stable, machine-readable classification of an [`Error`].
///
/// [`ErrorKind::as_str`] returns exactly the words the exporter uses as its
/// `reason` label: `connect`, `timeout`, `status`, `unauthorized`,
/// `too_large`, `decode`, plus `not_found`, `circuit_open` and `config` for
/// the errors only this crate produces.
///
/// ```
/// use secure_channel_client::ErrorKind;
/// assert_eq!(ErrorKind::TooLarge.as_str(), "too_large");
/// assert_eq!(ErrorKind::TooLarge.to_string(), "too_large");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Connect`].
    Connect,
    /// [`Error::Timeout`].
    Timeout,
    /// [`Error::Status`].
    Status,
    /// [`Error::Unauthorized`].
    Unauthorized,
    /// [`Error::TooLarge`].
    TooLarge,
    /// [`Error::Decode`].
    Decode,
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::CircuitOpen`].
    CircuitOpen,
    /// [`Error::Config`].
    Config,
}

impl ErrorKind {
    /// The kinds a fetch of a document can fail with (the exporter's six
    /// failure reasons), in a stable order.
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
    /// The stable classification of this error.
    ///
    /// ```
    /// use secure_channel_client::{Error, ErrorKind};
    /// let e = Error::Status { url: "http://pool:9090/metrics".into(), status: 502 };
    /// assert_eq!(e.kind(), ErrorKind::Status);
    /// assert_eq!(e.kind().as_str(), "status");
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { .. } => ErrorKind::Connect,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Status { .. } => ErrorKind::Status,
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::Decode { .. } => ErrorKind::Decode,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Self::Config(_) => ErrorKind::Config,
        }
    }

    /// The HTTP status the pool answered, for [`Error::Status`] and
    /// [`Error::Unauthorized`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::Unauthorized { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The URL the error concerns, credentials removed (`None` for
    /// configuration errors).
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Connect { url, .. }
            | Self::Timeout { url, .. }
            | Self::Status { url, .. }
            | Self::Unauthorized { url, .. }
            | Self::TooLarge { url, .. }
            | Self::Decode { url, .. }
            | Self::NotFound { url, .. }
            | Self::CircuitOpen { url, .. } => Some(url),
            Self::Config(_) => None,
        }
    }

    pub(crate) fn decode(url: &str, e: &serde_json::Error) -> Self {
        Self::Decode {
            url: url.to_owned(),
            detail: e.to_string(),
            line: e.line(),
            column: e.column(),
        }
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
