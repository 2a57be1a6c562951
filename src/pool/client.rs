//! HTTP client for the pool API: one shared reqwest client, a deadline for
//! every fetch, a body-size cap enforced while streaming, the auth token on
//! the paths that need it, no redirects.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use super::model::{Health, PoolStatus};
use crate::exposition::{self, ParsedExposition};
use crate::redact::redact_url;

/// The pool's three documents, and the `source` label of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    Status,
    Health,
    Metrics,
}

impl Document {
    pub const ALL: [Document; 3] = [Document::Status, Document::Health, Document::Metrics];

    pub fn path(self) -> &'static str {
        match self {
            Self::Status => "status/connections",
            Self::Health => "healthz",
            Self::Metrics => "metrics",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Health => "health",
            Self::Metrics => "metrics",
        }
    }
}

/// Why a fetch failed, as the `reason` label of the failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Connect,
    Timeout,
    Status,
    Unauthorized,
    TooLarge,
    Decode,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        Self::Connect,
        Self::Timeout,
        Self::Status,
        Self::Unauthorized,
        Self::TooLarge,
        Self::Decode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge => "too_large",
            Self::Decode => "decode",
        }
    }
}

/// A failed fetch. Messages name the URL (credentials removed) and never
/// the token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("{url} did not answer within {budget:?}")]
    Timeout { url: String, budget: Duration },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered HTTP {status}: check the pool auth token")]
    Unauthorized { url: String, status: u16 },
    #[error("{url} sent a body larger than the {limit} byte limit")]
    TooLarge { url: String, limit: u64 },
    #[error("cannot decode the body of {url}: {detail}")]
    Decode { url: String, detail: String },
}

impl FetchError {
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Connect { .. } => FailureReason::Connect,
            Self::Timeout { .. } => FailureReason::Timeout,
            Self::Status { .. } => FailureReason::Status,
            Self::Unauthorized { .. } => FailureReason::Unauthorized,
            Self::TooLarge { .. } => FailureReason::TooLarge,
            Self::Decode { .. } => FailureReason::Decode,
        }
    }
}

/// Failure to build the client at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate: {detail}")]
    CaParse { path: String, detail: String },
    #[error("cannot read client certificate or key {path}: {source}")]
    IdentityFile {
        path: String,
        source: std::io::Error,
    },
    #[error("client certificate and key do not form a usable identity: {0}")]
    Identity(String),
    #[error("cannot resolve {host} for --pool.tls-server-name: {detail}")]
    Resolve { host: String, detail: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

#[derive(Clone)]
pub struct PoolClientConfig {
    pub base_url: Url,
    pub token: Option<String>,
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
            .field("base_url", &redact_url(&self.base_url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

#[derive(Clone)]
pub struct PoolClient {
    http: reqwest::Client,
    urls: [Url; 3],
    display_urls: [String; 3],
    display_base: String,
    token: Option<String>,
    max_body_bytes: u64,
}

impl std::fmt::Debug for PoolClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolClient")
            .field("base_url", &self.display_base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PoolClient {
    pub fn new(config: &PoolClientConfig) -> Result<Self, ClientBuildError> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "secure-channel-exporter/",
                env!("CARGO_PKG_VERSION")
            ))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        if let Some(path) = &config.ca_file {
            let display = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| ClientBuildError::CaFile {
                path: display.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientBuildError::CaParse {
                    path: display.clone(),
                    detail: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(ClientBuildError::CaParse {
                    path: display,
                    detail: "no certificate found".into(),
                });
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &config.client_cert {
            let read = |path: &std::path::PathBuf| {
                std::fs::read(path).map_err(|source| ClientBuildError::IdentityFile {
                    path: path.display().to_string(),
                    source,
                })
            };
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ClientBuildError::Identity(e.to_string()))?;
            builder = builder.identity(identity);
        }
        let mut base_url = config.base_url.clone();
        if let Some(name) = &config.tls_server_name {
            // Verify and send SNI for `name` while connecting to the URL's
            // own address: the URL gets `name` as host and the resolver
            // maps `name` to the original host's addresses.
            let host = config.base_url.host_str().unwrap_or_default().to_owned();
            let port = config.base_url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map_err(|e| ClientBuildError::Resolve {
                        host: host.clone(),
                        detail: e.to_string(),
                    })?
                    .collect();
            base_url
                .set_host(Some(name))
                .map_err(|e| ClientBuildError::Resolve {
                    host: name.clone(),
                    detail: e.to_string(),
                })?;
            builder = builder.resolve_to_addrs(name, &addrs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientBuildError::Build(e.to_string()))?;
        let mut client =
            Self::with_http(http, &base_url, config.token.clone(), config.max_body_bytes);
        // Show the address actually used, not the verification name.
        client.display_base = redact_url(&config.base_url);
        Ok(client)
    }

    fn with_http(
        http: reqwest::Client,
        base_url: &Url,
        token: Option<String>,
        max_body_bytes: u64,
    ) -> Self {
        let urls = Document::ALL.map(|doc| document_url(base_url, doc));
        let display_urls = urls.clone().map(|u| redact_url(&u));
        Self {
            http,
            urls,
            display_urls,
            display_base: redact_url(base_url),
            token,
            max_body_bytes,
        }
    }

    /// A client for another pool sharing this one's connection pool, TLS
    /// settings, token and limits (used by `/probe`).
    pub fn for_base_url(&self, base_url: Url) -> Self {
        Self::with_http(
            self.http.clone(),
            &base_url,
            self.token.clone(),
            self.max_body_bytes,
        )
    }

    /// The pool's base URL, safe to show.
    pub fn display_base(&self) -> &str {
        &self.display_base
    }

    pub fn display_url(&self, doc: Document) -> &str {
        &self.display_urls[doc as usize]
    }

    pub async fn status(&self, deadline: Instant) -> Result<PoolStatus, FetchError> {
        let (code, body) = self.fetch(Document::Status, deadline).await?;
        self.require_success(Document::Status, code)?;
        self.decode_json(Document::Status, &body)
    }

    /// The health document; a 503 carrying the JSON body is an answer
    /// ("unhealthy"), not a failure.
    pub async fn health(&self, deadline: Instant) -> Result<Health, FetchError> {
        let (code, body) = self.fetch(Document::Health, deadline).await?;
        if code == StatusCode::SERVICE_UNAVAILABLE {
            return self
                .decode_json(Document::Health, &body)
                .map_err(|_| FetchError::Status {
                    url: self.display_url(Document::Health).to_owned(),
                    status: code.as_u16(),
                });
        }
        self.require_success(Document::Health, code)?;
        self.decode_json(Document::Health, &body)
    }

    /// The native exposition. A body with content but no readable sample
    /// (an HTML error page, garbage) is a decode failure.
    pub async fn metrics(&self, deadline: Instant) -> Result<ParsedExposition, FetchError> {
        let (code, body) = self.fetch(Document::Metrics, deadline).await?;
        self.require_success(Document::Metrics, code)?;
        let text = String::from_utf8_lossy(&body);
        let parsed = exposition::parse(&text);
        if parsed.sample_count() == 0 && parsed.skipped_lines > 0 {
            return Err(FetchError::Decode {
                url: self.display_url(Document::Metrics).to_owned(),
                detail: format!(
                    "no readable sample in {} lines of text exposition",
                    parsed.skipped_lines
                ),
            });
        }
        Ok(parsed)
    }

    fn require_success(&self, doc: Document, code: StatusCode) -> Result<(), FetchError> {
        let url = || self.display_url(doc).to_owned();
        match code.as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(FetchError::Unauthorized {
                url: url(),
                status: code.as_u16(),
            }),
            status => Err(FetchError::Status { url: url(), status }),
        }
    }

    fn decode_json<T: serde::de::DeserializeOwned>(
        &self,
        doc: Document,
        body: &[u8],
    ) -> Result<T, FetchError> {
        serde_json::from_slice(body).map_err(|e| FetchError::Decode {
            url: self.display_url(doc).to_owned(),
            detail: e.to_string(),
        })
    }

    /// GETs one document within the deadline, streaming the body so that an
    /// oversized one is refused without being held in memory.
    pub async fn fetch(
        &self,
        doc: Document,
        deadline: Instant,
    ) -> Result<(StatusCode, Bytes), FetchError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let url = self.display_url(doc);
        match tokio::time::timeout_at(deadline, self.fetch_inner(doc)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                url: url.to_owned(),
                budget,
            }),
        }
        .map_err(|e| match e {
            FetchError::Timeout { url, .. } => FetchError::Timeout { url, budget },
            other => other,
        })
    }

    async fn fetch_inner(&self, doc: Document) -> Result<(StatusCode, Bytes), FetchError> {
        let url = || self.display_url(doc).to_owned();
        let mut request = self.http.get(self.urls[doc as usize].clone());
        if doc != Document::Health {
            if let Some(token) = &self.token {
                request = request.header("X-Auth-Token", token);
            }
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(url(), &e))?;
        let code = response.status();
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body_bytes)
        {
            return Err(FetchError::TooLarge {
                url: url(),
                limit: self.max_body_bytes,
            });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(url(), &e))?
        {
            if (body.len() + chunk.len()) as u64 > self.max_body_bytes {
                return Err(FetchError::TooLarge {
                    url: url(),
                    limit: self.max_body_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((code, body.freeze()))
    }
}

fn document_url(base: &Url, doc: Document) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{}", base.path().trim_end_matches('/'), doc.path());
    url.set_path(&path);
    url.set_query(None);
    url
}

fn transport_error(url: String, e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout {
            url,
            budget: Duration::ZERO,
        };
    }
    // The innermost cause says what went wrong ("Connection refused");
    // reqwest's own message only repeats the URL.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    FetchError::Connect { url, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_keep_a_base_path() {
        let base = Url::parse("http://pool:9090/prefix/").unwrap();
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
}
