//! The client: one reqwest client, deadlines, body cap, token, retries and
//! circuit breaker.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::breaker::{Breaker, CircuitState};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, ErrorKind};
use crate::{CircuitBreaker, Connection, ConnectionId, Health, PoolStatus, RetryPolicy, Token};

/// Default time a call may take: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default body-size cap: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
/// How much of a 401/403 body is read.
const UNAUTHORIZED_BODY_CAP: u64 = 4096;

/// The pool's three documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Document {
    /// `GET /status/connections`: JSON [`PoolStatus`]; needs the token.
    Status,
    /// `GET /healthz`: JSON [`Health`], HTTP 200 or 503; no token.
    Health,
    /// `GET /metrics`: Prometheus text 0.0.4, no Content-Type; needs the token.
    Metrics,
}

impl Document {
    /// The three documents.
    pub const ALL: [Document; 3] = [Document::Status, Document::Health, Document::Metrics];

    /// The path below the base URL, without a leading slash.
    ///
    /// ```
    /// # use secure_channel_client::Document;
    /// assert_eq!(Document::Status.path(), "status/connections");
    /// ```
    pub fn path(self) -> &'static str {
        match self {
            Self::Status => "status/connections",
            Self::Health => "healthz",
            Self::Metrics => "metrics",
        }
    }

    /// A short name: `status`, `health` or `metrics` (the exporter's
    /// `source` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Health => "health",
            Self::Metrics => "metrics",
        }
    }

    /// Whether the pool wants the token on this document.
    pub fn needs_token(self) -> bool {
        !matches!(self, Self::Health)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document as the pool sent it: the HTTP status and the raw body, before
/// any decoding, for callers that decode themselves or pass bodies through.
///
/// The status is 2xx, or 503 for [`Document::Health`] (the pool's
/// "unhealthy" answer carries the health document).
#[derive(Debug, Clone)]
pub struct Fetched {
    document: Document,
    status: u16,
    body: Bytes,
    url: Arc<str>,
    content_type: Option<Box<str>>,
}

impl Fetched {
    /// Which document this is.
    pub fn document(&self) -> Document {
        self.document
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body, as sent.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body, as sent.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The URL it came from, credentials removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Content-Type` the pool stated, if any: the published pool sends
    /// its text exposition without one, other builds may state the format.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Decodes the body as JSON.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) naming the URL and
    /// serde's message; its [`source`](std::error::Error::source) is the
    /// `serde_json::Error`, with the line and column.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::decode(&self.url, e))
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) when it is not UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::decode_text(&self.url, format_args!("not UTF-8 text: {e}")))
    }

    /// An [`ErrorKind::Decode`](crate::ErrorKind::Decode) error naming this
    /// document's URL, for callers that decode the body themselves (a
    /// Prometheus text parser, say) and want their failures in the same
    /// error type and vocabulary as the client's.
    ///
    /// ```
    /// # use secure_channel_client::Fetched;
    /// fn parse(fetched: &Fetched) -> Result<usize, secure_channel_client::Error> {
    ///     let text = fetched.text()?;
    ///     match text.lines().filter(|l| !l.starts_with('#')).count() {
    ///         0 => Err(fetched.decode_error("no sample")),
    ///         n => Ok(n),
    ///     }
    /// }
    /// # let _ = parse;
    /// ```
    pub fn decode_error(&self, detail: impl fmt::Display) -> Error {
        Error::decode_text(&self.url, detail)
    }
}

/// Options for one call: [`PoolClient::status`], [`PoolClient::health`],
/// [`PoolClient::metrics_text`], [`PoolClient::connection`] and
/// [`PoolClient::fetch`] all take one.
///
/// `CallOptions::new()` (or `default()`) uses the client's
/// [`timeout`](PoolClientBuilder::timeout) from the moment of the call.
/// [`deadline`](Self::deadline) sets an explicit end instead, e.g. the
/// deadline of a Prometheus scrape. Retries, backoff sleeps and body
/// streaming all stay within it, and a deadline that has already passed
/// fails at once with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
/// without touching the network.
///
/// ```
/// use std::time::Duration;
/// use secure_channel_client::CallOptions;
///
/// let default = CallOptions::new();
/// assert_eq!(default.deadline_value(), None);
/// let end = tokio::time::Instant::now() + Duration::from_millis(800);
/// assert_eq!(CallOptions::new().deadline(end).deadline_value(), Some(end));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    deadline: Option<Instant>,
}

impl CallOptions {
    /// The defaults: the client's timeout from the moment of the call.
    pub fn new() -> Self {
        Self::default()
    }

    /// End the call (all its attempts) by `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// End the call within `timeout` from now (from when this is called).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.deadline(Instant::now() + timeout)
    }

    /// The explicit deadline, if one was set.
    pub fn deadline_value(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Builds a [`PoolClient`]; see [`PoolClient::builder`].
#[derive(Clone)]
pub struct PoolClientBuilder {
    base_url: String,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    token: Token,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    tls_server_name: Option<String>,
    user_agent: String,
    max_body_bytes: u64,
    retry: Option<RetryPolicy>,
    breaker: Option<CircuitBreaker>,
}

impl fmt::Debug for PoolClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolClientBuilder")
            .field("base_url", &redact_text(&self.base_url))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("token", &self.token)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("tls_server_name", &self.tls_server_name)
            .field("user_agent", &self.user_agent)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("retry", &self.retry)
            .field("circuit_breaker", &self.breaker)
            .finish()
    }
}

impl Default for PoolClientBuilder {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:9090".into(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: None,
            token: Token::none(),
            ca_file: None,
            client_cert: None,
            tls_server_name: None,
            user_agent: concat!("secure-channel-client/", env!("CARGO_PKG_VERSION")).into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            retry: None,
            breaker: None,
        }
    }
}

impl PoolClientBuilder {
    /// The pool's base URL (default `http://127.0.0.1:9090`); document
    /// paths are appended to its path. A query string is dropped.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Time a call may take when no deadline is given (default 10 s),
    /// retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limit on establishing a connection (TCP and TLS), within the call's
    /// deadline (default: none beyond the deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The auth token, sent as `X-Auth-Token`: [`Token::value`] for a
    /// fixed one, [`Token::file`] for one read from a file and re-read when
    /// it changes, [`Token::none`] (the default) for none.
    ///
    /// ```
    /// use secure_channel_client::{PoolClient, Token};
    /// let client = PoolClient::builder().token(Token::value("s3cret")).build()?;
    /// # let _ = client;
    /// # Ok::<(), secure_channel_client::Error>(())
    /// ```
    pub fn token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    /// Trust only the CA certificates of this PEM file (instead of the
    /// platform's roots).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// A client certificate and its private key (PEM files) for mutual TLS.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Verify the pool's certificate against (and send as SNI) this DNS
    /// name instead of the URL's host. The client still connects to the
    /// URL's host, resolved again for every new connection (so a DNS change
    /// is followed as without the override).
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// The `User-Agent` (default `secure-channel-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The largest body accepted, in bytes (default 16 MiB); enforced while
    /// streaming, so a larger body is never held in memory.
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Retry failed calls (off by default).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Fail fast after consecutive failures (off by default).
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Builds the client: parses the URL, reads the CA, certificate, key
    /// and token files and builds the one reqwest client.
    ///
    /// TLS is rustls with its `ring` provider, handed to the HTTP client
    /// directly: nothing is installed process-wide, so the crate coexists
    /// with other rustls users and their choice of provider.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the bad URL,
    /// the unreadable or unusable file, or the unusable server name.
    pub fn build(self) -> Result<PoolClient, Error> {
        let base_url = parse_base_url(&self.base_url)?;
        self.token.validate()?;
        let mut builder = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .tls_backend_preconfigured(self.tls_config()?);
        if let Some(t) = self.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        let mut request_base = base_url.clone();
        if let Some(name) = &self.tls_server_name {
            let resolver = OverrideResolver::new(name, &base_url)?;
            request_base
                .set_host(Some(&resolver.name))
                .map_err(|e| server_name_error(name, e))?;
            builder = builder.dns_resolver(Arc::new(resolver));
        }
        let http = builder
            .build()
            .map_err(|e| Error::config_caused("cannot build the HTTP client", e))?;
        Ok(PoolClient::from_parts(
            http,
            &request_base,
            &base_url,
            self.token.clone(),
            &self,
        ))
    }

    /// The rustls configuration: the CA file's certificates only, or the
    /// platform's verifier; the client certificate if any; HTTP/1.1.
    fn tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config_caused("TLS", e))?;
        let builder = match &self.ca_file {
            Some(path) => {
                let pem = read_file("CA", path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| bad_file("CA", path, e))?;
                    roots.add(cert).map_err(|e| bad_file("CA", path, e))?;
                }
                if roots.is_empty() {
                    return Err(bad_file("CA", path, "no PEM certificate found"));
                }
                builder.with_root_certificates(roots)
            }
            None => {
                let verifier = rustls_platform_verifier::Verifier::new(provider)
                    .map_err(|e| Error::config_caused("cannot load the platform's TLS roots", e))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
        };
        let mut config = match &self.client_cert {
            Some((cert_path, key_path)) => {
                let pem = read_file("client certificate", cert_path)?;
                let key_pem = read_file("client key", key_path)?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad_file("client certificate", cert_path, e))?;
                if certs.is_empty() {
                    return Err(bad_file(
                        "client certificate",
                        cert_path,
                        "no PEM certificate found",
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| bad_file("client key", key_path, e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| bad_file("client certificate", cert_path, e))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn server_name_error(name: &str, detail: impl fmt::Display) -> Error {
    Error::config(format_args!("TLS server name {name:?}: {detail}"))
}

/// With a server-name override, requests go to the override (so rustls
/// verifies and sends it) and this resolver maps it back to the URL's real
/// host, asking the system resolver again for every new connection: no
/// address is pinned for the life of the client.
struct OverrideResolver {
    /// The override, lower-cased as URLs hold host names.
    name: String,
    host: String,
    port: u16,
}

impl OverrideResolver {
    fn new(name: &str, base: &Url) -> Result<Self, Error> {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Err(server_name_error(
                &name,
                "an IP address cannot be an override; give a DNS name",
            ));
        }
        rustls::pki_types::ServerName::try_from(name.as_str())
            .map_err(|e| server_name_error(&name, e))?;
        // Without the brackets of an IPv6 literal, as the resolver wants it.
        let host = base
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = base.port_or_known_default().unwrap_or(443);
        Ok(Self { name, host, port })
    }
}

impl reqwest::dns::Resolve for OverrideResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.host.clone()
        } else {
            name.as_str().to_owned()
        };
        let port = self.port;
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((target.as_str(), port))
                .await?
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An async client for one SecureChannelPool.
///
/// Cheap to clone and share: clones share one connection pool, one token
/// cache and one circuit breaker.
///
/// # Deadlines
///
/// Every call has a deadline, given by its [`CallOptions`]: the builder's
/// [`timeout`](PoolClientBuilder::timeout) from the moment of the call, or
/// an explicit [`tokio::time::Instant`] (e.g. the deadline of a Prometheus
/// scrape). Retries, backoff sleeps and body streaming all stay within it.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use secure_channel_client::{CallOptions, PoolClient, RetryPolicy, Token};
///
/// # async fn run() -> Result<(), secure_channel_client::Error> {
/// let client = PoolClient::builder()
///     .base_url("http://127.0.0.1:9090")
///     .token(Token::file("/run/secrets/pool-token"))
///     .timeout(Duration::from_secs(5))
///     .retry(RetryPolicy::new(3))
///     .build()?;
/// let status = client.status(CallOptions::new()).await?;
/// println!("{} lists {} idle connections", status.endpoint, status.connections.len());
/// // With a deadline of its own; a 503 answer is Ok(unhealthy).
/// let health = client.health(CallOptions::new().timeout(Duration::from_millis(800))).await?;
/// println!("healthy: {:?}", health.is_healthy());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PoolClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    urls: [Url; 3],
    display_urls: [Arc<str>; 3],
    display_base: String,
    token: Token,
    timeout: Duration,
    max_body_bytes: u64,
    retry: Option<RetryPolicy>,
    breaker: Option<Breaker>,
    breaker_config: Option<CircuitBreaker>,
}

impl fmt::Debug for PoolClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("PoolClient")
            .field("base_url", &i.display_base)
            .field("token", &i.token)
            .field("timeout", &i.timeout)
            .field("max_body_bytes", &i.max_body_bytes)
            .field("retry", &i.retry)
            .field("circuit_breaker", &i.breaker_config)
            .finish()
    }
}

impl PoolClient {
    /// A builder with the defaults: `http://127.0.0.1:9090`, 10 s timeout,
    /// no token, platform roots, 16 MiB body cap, no retries, no breaker.
    ///
    /// ```
    /// let client = secure_channel_client::PoolClient::builder()
    ///     .base_url("http://pool.internal:9090")
    ///     .token(secure_channel_client::Token::value("s3cret"))
    ///     .build()?;
    /// assert!(!format!("{client:?}").contains("s3cret"));
    /// # Ok::<(), secure_channel_client::Error>(())
    /// ```
    pub fn builder() -> PoolClientBuilder {
        PoolClientBuilder::default()
    }

    fn from_parts(
        http: reqwest::Client,
        request_base: &Url,
        display_base: &Url,
        token: Token,
        config: &PoolClientBuilder,
    ) -> Self {
        let urls = Document::ALL.map(|doc| document_url(request_base, doc));
        let display_urls =
            Document::ALL.map(|doc| Arc::from(redact_url(&document_url(display_base, doc))));
        Self {
            inner: Arc::new(Inner {
                http,
                urls,
                display_urls,
                display_base: redact_url(display_base),
                token,
                timeout: config.timeout,
                max_body_bytes: config.max_body_bytes,
                retry: config.retry.clone(),
                breaker: config.breaker.map(Breaker::new),
                breaker_config: config.breaker,
            }),
        }
    }

    /// A client for another pool that shares this one's connection pool,
    /// TLS settings, limits and retry policy, with its own circuit breaker
    /// and the given token (the token is never carried over implicitly).
    ///
    /// ```
    /// use secure_channel_client::{PoolClient, Token};
    /// let a = PoolClient::builder().token(Token::value("s3cret")).build()?;
    /// let b = a.with_base_url("http://other-pool:9090", Token::none())?;
    /// assert_eq!(b.base_url(), "http://other-pool:9090/");
    /// # Ok::<(), secure_channel_client::Error>(())
    /// ```
    pub fn with_base_url(&self, base_url: &str, token: Token) -> Result<Self, Error> {
        let url = parse_base_url(base_url)?;
        token.validate()?;
        let i = &self.inner;
        let urls = Document::ALL.map(|doc| document_url(&url, doc));
        let display_urls = urls.clone().map(|u| Arc::from(redact_url(&u)));
        Ok(Self {
            inner: Arc::new(Inner {
                http: i.http.clone(),
                urls,
                display_urls,
                display_base: redact_url(&url),
                token,
                timeout: i.timeout,
                max_body_bytes: i.max_body_bytes,
                retry: i.retry.clone(),
                breaker: i.breaker_config.map(Breaker::new),
                breaker_config: i.breaker_config,
            }),
        })
    }

    /// The base URL, credentials removed (safe to log).
    pub fn base_url(&self) -> &str {
        &self.inner.display_base
    }

    /// A document's URL, credentials removed (safe to log).
    pub fn url(&self, doc: Document) -> &str {
        &self.inner.display_urls[doc.index()]
    }

    /// The default per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The circuit breaker's state, or `None` when no breaker is configured.
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.inner.breaker.as_ref().map(Breaker::state)
    }

    /// The status document.
    ///
    /// # Errors
    ///
    /// Any fetch failure ([`ErrorKind::FETCH`](crate::ErrorKind::FETCH)),
    /// or [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen).
    pub async fn status(&self, options: CallOptions) -> Result<PoolStatus, Error> {
        let fetched = self.fetch(Document::Status, options).await?;
        // The specialised decoder: serde's result, several times faster.
        PoolStatus::from_slice(&fetched.body).map_err(|e| Error::decode(&fetched.url, e))
    }

    /// The health document.
    ///
    /// A 503 answer carrying the health document is `Ok` with
    /// [`Health::is_healthy`] false: the published pool answers 503
    /// whenever its idle list is empty.
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status); a 503 without a decodable body is
    /// [`ErrorKind::Status`](crate::ErrorKind::Status).
    pub async fn health(&self, options: CallOptions) -> Result<Health, Error> {
        let fetched = self.fetch(Document::Health, options).await?;
        match fetched.json() {
            Ok(h) => Ok(h),
            Err(_) if fetched.status == 503 => Err(Error::http_status(&fetched.url, 503)),
            Err(e) => Err(e),
        }
    }

    /// The native metrics text exactly as the pool sent it (Prometheus text
    /// format 0.0.4; not parsed here).
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status); a body that is not UTF-8 is
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode).
    pub async fn metrics_text(&self, options: CallOptions) -> Result<String, Error> {
        let fetched = self.fetch(Document::Metrics, options).await?;
        fetched.text().map(str::to_owned)
    }

    /// One listed connection, from the status document (the pool has no
    /// per-connection endpoint).
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status); an id the document does not list is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound): on the
    /// published pool a checked-out connection is never listed again.
    pub async fn connection(
        &self,
        id: impl Into<ConnectionId>,
        options: CallOptions,
    ) -> Result<Connection, Error> {
        let id = id.into();
        let status = self.status(options).await?;
        status
            .connections
            .into_iter()
            .find(|c| c.connection_id == id)
            .ok_or_else(|| Error::not_found(self.url(Document::Status), id))
    }

    /// Fetches one document and returns it undecoded, with the retry policy
    /// and circuit breaker applied.
    ///
    /// Succeeds on 2xx, and on 503 for [`Document::Health`].
    ///
    /// # Errors
    ///
    /// 401/403 is [`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized)
    /// (with the pool's message), other statuses
    /// [`ErrorKind::Status`](crate::ErrorKind::Status); transport failures,
    /// deadlines and the body cap as their kinds say.
    pub async fn fetch(&self, doc: Document, options: CallOptions) -> Result<Fetched, Error> {
        let i = &self.inner;
        let deadline = options
            .deadline
            .unwrap_or_else(|| Instant::now() + i.timeout);
        let policy = i.retry.as_ref();
        let max_attempts = policy.map_or(1, RetryPolicy::max_attempts);
        let mut previous_backoff = Duration::ZERO;
        let mut attempt = 0;
        let mut last_error: Option<Error> = None;
        loop {
            attempt += 1;
            let now = Instant::now();
            let (attempt_deadline, cut_by_policy) =
                match policy.and_then(RetryPolicy::attempt_timeout_value) {
                    Some(t) if attempt < max_attempts && now + t < deadline => (now + t, true),
                    _ => (deadline, false),
                };
            // An expired deadline is the caller's: fail without asking the
            // breaker or the pool.
            if attempt_deadline <= now {
                return Err(last_error.unwrap_or_else(|| Error::expired(self.url(doc))));
            }
            let permit = match &i.breaker {
                Some(b) => match b.acquire() {
                    Ok(p) => Some(p),
                    // Opened by an earlier attempt of this call: its
                    // error says more than "circuit open".
                    Err(_) if last_error.is_some() => return Err(last_error.unwrap()),
                    Err(refused) => {
                        return Err(Error::circuit_open(
                            self.url(doc),
                            refused.until,
                            refused.retry_in,
                            refused.failures,
                        ))
                    }
                },
                None => None,
            };
            let budget = attempt_deadline - now;
            let result = self.attempt(doc, attempt_deadline, budget).await;
            // The breaker hears only what the pool did: a timeout counts
            // when the client's own limits set the time (its timeout, the
            // policy's per-attempt timeout, the connect timeout), never
            // when a caller's shorter deadline cut the pool off.
            let verdict = match &result {
                Ok(_) => Some(true),
                Err(Attempt::DeadlineHit(_)) => {
                    let pools_fault =
                        cut_by_policy || options.deadline.is_none() || budget >= i.timeout;
                    pools_fault.then_some(false)
                }
                Err(Attempt::Failed(e)) => Some(!counts_as_failure(e)),
            };
            if let Some(permit) = permit {
                match verdict {
                    Some(success) => permit.record(success),
                    None => permit.release(),
                }
            }
            let error = match result {
                Ok(f) => return Ok(f),
                Err(Attempt::DeadlineHit(e) | Attempt::Failed(e)) => e,
            };
            let Some(policy) = policy else {
                return Err(error);
            };
            if attempt >= max_attempts || !is_retryable(doc, &error) {
                return Err(error);
            }
            let backoff = policy.backoff(attempt, previous_backoff);
            previous_backoff = backoff;
            if Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            last_error = Some(error);
        }
    }

    /// One attempt, bounded by `deadline`.
    async fn attempt(
        &self,
        doc: Document,
        deadline: Instant,
        budget: Duration,
    ) -> Result<Fetched, Attempt> {
        match tokio::time::timeout_at(deadline, self.attempt_inner(doc)).await {
            Err(_) => Err(Attempt::DeadlineHit(Error::timeout(self.url(doc), budget))),
            Ok(result) => result.map_err(Attempt::Failed),
        }
    }

    async fn attempt_inner(&self, doc: Document) -> Result<Fetched, Error> {
        let i = &self.inner;
        let url = &i.display_urls[doc.index()];
        let mut request = i.http.get(i.urls[doc.index()].clone());
        if doc.needs_token() {
            if let Some(value) = i.token.header()? {
                request = request.header("X-Auth-Token", value);
            }
        }
        // A kept-alive connection the server closes just as the request goes
        // out (its idle timeout equal to the caller's polling interval)
        // fails the request before any answer. A GET is safe to send again,
        // and a fresh connection cannot have gone idle: once, at once.
        let again = request.try_clone();
        let sent = match request.send().await {
            Err(e) if closed_before_answer(&e) => match again {
                Some(again) => again.send().await,
                None => Err(e),
            },
            other => other,
        };
        let mut response = sent.map_err(|e| transport_error(url, e))?;
        let code = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(Box::from);
        let ok = code.is_success()
            || (doc == Document::Health && code == StatusCode::SERVICE_UNAVAILABLE);
        if code == StatusCode::UNAUTHORIZED || code == StatusCode::FORBIDDEN {
            let body = read_prefix(&mut response, UNAUTHORIZED_BODY_CAP).await;
            // Some pools echo the token they refused: never repeat it.
            let body = i.token.scrub(&body);
            return Err(Error::unauthorized(url, code.as_u16(), &body));
        }
        if !ok {
            return Err(Error::http_status(url, code.as_u16()));
        }
        let limit = i.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(Error::too_large(url, limit));
        }
        let body = match read_capped(&mut response, limit).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => return Err(Error::too_large(url, limit)),
            Err(ReadError::Transport(e)) => return Err(transport_error(url, e)),
        };
        Ok(Fetched {
            document: doc,
            status: code.as_u16(),
            body,
            url: url.clone(),
            content_type,
        })
    }
}

/// How an attempt ended without a document.
enum Attempt {
    /// The attempt's deadline passed first.
    DeadlineHit(Error),
    /// Anything else, the client's own connect timeout included.
    Failed(Error),
}

enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Streams the body, refusing it once it passes `limit` bytes.
async fn read_capped(response: &mut reqwest::Response, limit: u64) -> Result<Bytes, ReadError> {
    // Sized from Content-Length (already checked against the limit) when
    // the server sends one: growing by doubling instead would hold the old
    // and the new buffer at once and end with up to twice the body's size.
    let expected = response.content_length().unwrap_or(0).min(limit);
    let mut body = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first `limit` bytes of the body (fewer on a transport error).
async fn read_prefix(response: &mut reqwest::Response, limit: u64) -> Bytes {
    let mut body = BytesMut::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = (limit as usize).saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= limit {
            break;
        }
    }
    body.freeze()
}

/// Failures that count against the circuit breaker: the pool is not
/// answering usefully. (Deadline timeouts are judged by the caller.)
fn counts_as_failure(error: &Error) -> bool {
    match error.kind() {
        ErrorKind::Connect | ErrorKind::Timeout => true,
        ErrorKind::Status => error.status().is_some_and(|s| s >= 500),
        _ => false,
    }
}

/// Failures worth another attempt.
fn is_retryable(doc: Document, error: &Error) -> bool {
    match (error.kind(), error.status()) {
        (ErrorKind::Connect | ErrorKind::Timeout, _) => true,
        (ErrorKind::Status, Some(503)) => doc != Document::Health,
        (ErrorKind::Status, Some(status)) => matches!(status, 502 | 504),
        _ => false,
    }
}

fn parse_base_url(text: &str) -> Result<Url, Error> {
    let bad = |detail: String| {
        Error::config(format_args!(
            "bad base URL {:?}: {detail}",
            redact_text(text)
        ))
    };
    let url = Url::parse(text.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.cannot_be_a_base() || url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    Ok(url)
}

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::config_caused(
            format_args!("cannot read {what} file {}", path.display()),
            e,
        )
    })
}

fn bad_file(what: &'static str, path: &std::path::Path, detail: impl fmt::Display) -> Error {
    Error::config(format_args!(
        "{what} file {} is unusable: {detail}",
        path.display()
    ))
}

fn document_url(base: &Url, doc: Document) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{}", base.path().trim_end_matches('/'), doc.path());
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The URL as it may be shown: user info, query and fragment removed.
pub(crate) fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A URL as it may be shown, for text that may not parse as one: user
/// info (anything before an `@` in the authority), query and fragment
/// dropped. The one URL redactor of the workspace (exported as
/// `redact_url_text`): the exporter shows the URLs of its flags with it.
///
/// ```
/// use secure_channel_client::redact_url_text;
/// assert_eq!(redact_url_text("http://u:s3cret@pool:9090/x?t=1"), "http://pool:9090/x");
/// assert_eq!(redact_url_text("http://u:s3cret@host:bad"), "http://host:bad");
/// ```
pub fn redact_text(text: &str) -> String {
    if let Ok(url) = Url::parse(text.trim()) {
        if url.has_host() {
            return redact_url(&url);
        }
    }
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let start = text.find("://").map_or(0, |i| i + 3);
    let authority_end = text[start..].find('/').map_or(text.len(), |i| start + i);
    match text[start..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &text[..start], &text[start + at + 1..]),
        None => text.to_owned(),
    }
}

/// Whether the server closed the connection after the request was sent
/// and before any byte of an answer: what a kept-alive connection closed
/// by the server's idle timeout looks like.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        source = s.source();
    }
    false
}

fn transport_error(url: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        // reqwest's own limit: the connect timeout.
        return Error::connect_timeout(url, e);
    }
    Error::connect(url, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_keep_a_base_path() {
        let base = Url::parse("http://pool:9090/prefix/?q=1").unwrap();
        assert_eq!(
            document_url(&base, Document::Status).as_str(),
            "http://pool:9090/prefix/status/connections"
        );
        let bare = Url::parse("http://pool:9090").unwrap();
        assert_eq!(
            document_url(&bare, Document::Health).as_str(),
            "http://pool:9090/healthz"
        );
    }

    #[test]
    fn redaction_drops_user_info_and_query() {
        let url = Url::parse("https://alice:s3cret@pool:9090/x?token=abc#f").unwrap();
        assert_eq!(redact_url(&url), "https://pool:9090/x");
        assert_eq!(
            redact_text("http://bob:pa:ss@host:bad/x?t=1"),
            "http://host:bad/x"
        );
        assert_eq!(redact_text("not a url"), "not a url");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in [
            "",
            "pool:9090",
            "ftp://pool",
            "http://",
            "http://u:secret@/x",
        ] {
            let e = parse_base_url(bad).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
