//! The exporter's side of the pool API: the `secure-channel-client` crate
//! does the HTTP (one reqwest client, deadlines, the body cap while
//! streaming, the token only to the pool, no redirects); this adds what is
//! the exporter's alone: parsing the native exposition and the `reason`
//! label vocabulary of failed fetches. No retries: on the scrape path the
//! deadline rules, and the next scrape is the retry.

use std::time::Duration;

use reqwest::Url;
use secure_channel_client::{Document, ErrorKind, Token};

use crate::exposition::{self, ParseLimits, ParsedExposition};

/// A failed fetch: what the client crate reports, with the document's URL
/// (credentials removed) and never the token.
pub type FetchError = secure_channel_client::Error;

/// Failure to build the client at start-up (a CA, certificate or key file
/// that cannot be used, a server name that does not resolve).
pub type ClientBuildError = secure_channel_client::Error;

/// Why a fetch failed, as the `reason` label of the failure counter: the
/// client crate's fetch kinds (`connect`, `timeout`, `status`,
/// `unauthorized`, `too_large`, `decode`), one vocabulary for both.
pub use secure_channel_client::ErrorKind as FailureReason;

/// Every `reason` a failed fetch can have, in label order.
pub const FAILURE_REASONS: [FailureReason; 6] = ErrorKind::FETCH;

/// The label for a failed fetch: the error's own kind when it is one of
/// the six. An open circuit is a pool that could not be reached, and a
/// token file that cannot be read (and never could) leaves the request
/// without its token: `unauthorized`.
pub fn failure_reason(error: &FetchError) -> FailureReason {
    failure_reason_of(error.kind())
}

/// [`failure_reason`] from the error's kind alone.
pub fn failure_reason_of(kind: ErrorKind) -> FailureReason {
    match kind {
        ErrorKind::CircuitOpen => ErrorKind::Connect,
        ErrorKind::Config => ErrorKind::Unauthorized,
        kind if FAILURE_REASONS.contains(&kind) => kind,
        _ => ErrorKind::Status,
    }
}

#[derive(Clone)]
pub struct PoolClientConfig {
    pub base_url: Url,
    /// The `X-Auth-Token` for `base_url`; a file is re-read when it changes.
    pub token: Token,
    pub connect_timeout: Duration,
    pub max_body_bytes: u64,
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS with the pool.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Name to verify the pool's certificate against (and send as SNI)
    /// instead of the URL's host, which is still what we connect to.
    pub tls_server_name: Option<String>,
}

impl std::fmt::Debug for PoolClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolClientConfig")
            .field(
                "base_url",
                &secure_channel_client::redact_url_text(self.base_url.as_str()),
            )
            .field("token", &self.token)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct PoolClient {
    inner: secure_channel_client::PoolClient,
}

impl PoolClient {
    pub fn new(config: &PoolClientConfig) -> Result<Self, ClientBuildError> {
        let mut builder = secure_channel_client::PoolClient::builder()
            .base_url(config.base_url.as_str())
            .token(config.token.clone())
            .timeout(config.connect_timeout)
            .connect_timeout(config.connect_timeout)
            .max_body_bytes(config.max_body_bytes)
            .user_agent(concat!(
                "secure-channel-exporter/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(path) = &config.ca_file {
            builder = builder.ca_file(path);
        }
        if let Some((cert, key)) = &config.client_cert {
            builder = builder.client_cert(cert, key);
        }
        if let Some(name) = &config.tls_server_name {
            builder = builder.tls_server_name(name);
        }
        Ok(Self {
            inner: builder.build()?,
        })
    }

    /// A client for another pool (`/probe`) sharing this one's connections,
    /// TLS settings and limits, but **not** its token: the token of
    /// `--pool.url` goes to that pool only.
    pub fn for_base_url(&self, base_url: &Url) -> Result<Self, ClientBuildError> {
        Ok(Self {
            inner: self.inner.with_base_url(base_url.as_str(), Token::none())?,
        })
    }

    /// The client crate's client underneath: the REST API and its monitor
    /// share it (one HTTP client, one connection pool per process).
    pub fn api_client(&self) -> &secure_channel_client::PoolClient {
        &self.inner
    }

    /// The pool's base URL, safe to show.
    pub fn display_base(&self) -> &str {
        self.inner.base_url()
    }

    pub fn display_url(&self, doc: Document) -> &str {
        self.inner.url(doc)
    }
}

/// A fetched native exposition, parsed within `limits`. A body with content
/// but no readable sample (an HTML error page, garbage) is a decode
/// failure, described by the `Err` text. The format is the one the pool's
/// `content_type` states, else the one the document's markers show.
pub fn parse_native(
    body: &[u8],
    content_type: Option<&str>,
    limits: ParseLimits,
) -> Result<ParsedExposition, String> {
    let text = String::from_utf8_lossy(body);
    let format = exposition::detect_format(content_type, &text);
    let parsed = exposition::parse_limited_as(&text, limits, format);
    if parsed.sample_count() == 0 && parsed.skipped_lines > 0 {
        return Err(format!(
            "no readable sample in {} lines of text exposition",
            parsed.skipped_lines
        ));
    }
    Ok(parsed)
}
