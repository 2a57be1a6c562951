//! The service API under `/api/v1/`: JSON views of the pool from recent
//! reads of the pool's observer (no older than `--api.cache-ttl`, the last
//! good copy served stale when the pool fails), the OpenAPI document, CORS
//! ([`cors`]), per-client rate limits ([`limit`]) and self-metrics
//! ([`metrics`]). `/metrics` reads the same observer fresh.

pub mod cors;
pub mod limit;
pub mod metrics;

pub use crate::view::answers as views;
pub use crate::view::{error, query};

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AGE, CACHE_CONTROL};
use hyper::{Method, Request, Response, StatusCode};
use secure_channel_client::Document;
use tokio::time::Instant;

use crate::exposition::parse::SourceFormat;
use crate::http::{respond, Body, PeerAddr, JSON};
use crate::pool::{PoolObserver, Recent};
pub use cors::Cors;
pub use error::ApiError;
pub use metrics::ApiMetrics;
pub use query::ConnectionsQuery;

/// The OpenAPI 3.1 document of everything under `/api/`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How old a document the API may answer with.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// How long a fetched (or failed) document is reused.
    pub ttl: Duration,
    /// How old the last good copy may be and still be served when the pool
    /// fails.
    pub stale_max: Duration,
}

/// What the API is started with.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub cache: CacheSettings,
    pub cors: Option<Cors>,
    /// Requests per second per client IP; 0 turns the limit off.
    pub rate_limit: f64,
    pub rate_limit_burst: u32,
    /// Poll the pool in the background this often, keeping status and
    /// health warm and logging each health change once.
    pub monitor_interval: Option<Duration>,
}

/// The API's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Status,
    Health,
    Connections,
    Connection,
    Stats,
    Metrics,
    ServiceStatus,
    OpenApi,
    /// Any other path under `/api/`.
    NotFound,
}

/// The API's routes, as the route table takes them.
pub const ROUTES: &[(&str, Endpoint)] = &[
    ("/api/v1/secure-channel/status", Endpoint::Status),
    ("/api/v1/secure-channel/health", Endpoint::Health),
    ("/api/v1/secure-channel/connections", Endpoint::Connections),
    (
        "/api/v1/secure-channel/connections/{id}",
        Endpoint::Connection,
    ),
    ("/api/v1/secure-channel/stats", Endpoint::Stats),
    ("/api/v1/secure-channel/metrics", Endpoint::Metrics),
    ("/api/v1/status", Endpoint::ServiceStatus),
    ("/api/v1/openapi.json", Endpoint::OpenApi),
    ("/api", Endpoint::NotFound),
    ("/api/", Endpoint::NotFound),
    ("/api/{*rest}", Endpoint::NotFound),
];

impl Endpoint {
    /// The `route` label: the path template, `other` for unknown paths.
    pub fn route(self) -> &'static str {
        match self {
            Self::NotFound => "other",
            _ => ROUTES
                .iter()
                .find(|(_, e)| *e == self)
                .map_or("other", |(path, _)| path),
        }
    }

    /// The pool documents the endpoint's view is made of.
    fn documents(self) -> &'static [Document] {
        match self {
            Self::Status | Self::Connections | Self::Connection => &[Document::Status],
            Self::Metrics => &[Document::Metrics],
            Self::Stats => &[Document::Status, Document::Metrics],
            Self::Health | Self::ServiceStatus => &Document::ALL,
            Self::OpenApi | Self::NotFound => &[],
        }
    }
}

pub struct Api {
    observer: PoolObserver,
    cache: CacheSettings,
    cors: Option<Cors>,
    limit: Option<limit::RateLimit>,
    metrics: ApiMetrics,
    started: Instant,
    /// The background poll, stopped with the API.
    warm: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(warm) = &self.warm {
            warm.abort();
        }
    }
}

impl Api {
    /// Must run inside the Tokio runtime when a monitor is configured.
    pub fn new(observer: PoolObserver, config: ApiConfig) -> Self {
        let warm = config
            .monitor_interval
            .map(|interval| observer.keep_warm(interval));
        Self {
            observer,
            cache: config.cache,
            cors: config.cors,
            limit: limit::RateLimit::new(config.rate_limit, config.rate_limit_burst),
            metrics: ApiMetrics::default(),
            started: Instant::now(),
            warm,
        }
    }

    pub fn metrics(&self) -> &ApiMetrics {
        &self.metrics
    }

    /// `docs` no older than the TTL (counted as cache lookups).
    async fn recent(&self, docs: &[Document]) -> Recent {
        let (recent, lookup) = self
            .observer
            .recent(docs, self.cache.ttl, self.cache.stale_max)
            .await;
        self.metrics.lookup(lookup);
        recent
    }

    /// All three documents, for the status page.
    pub async fn views(&self) -> Recent {
        self.recent(&Document::ALL).await
    }

    /// Answers a request routed to `endpoint`.
    pub async fn handle(
        &self,
        endpoint: Endpoint,
        req: &Request<Incoming>,
        id: Option<&str>,
    ) -> Response<Body> {
        let start = Instant::now();
        let mut resp = if req.method() == Method::OPTIONS {
            // The gate lets OPTIONS through only when CORS is on.
            match &self.cors {
                Some(cors) => cors.preflight(req.headers()),
                None => ApiError::PathNotFound {
                    path: req.uri().path().to_owned(),
                }
                .response(),
            }
        } else {
            match self.admit(req) {
                Err(e) => e.response(),
                Ok(()) => self
                    .answer(endpoint, req, id)
                    .await
                    .unwrap_or_else(|e| e.response()),
            }
        };
        if req.method() != Method::OPTIONS {
            if let Some(cors) = &self.cors {
                cors.decorate(req.headers(), &mut resp);
            }
        }
        resp.headers_mut()
            .entry(CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        self.metrics
            .request(endpoint.route(), resp.status().as_u16(), start.elapsed());
        resp
    }

    /// The per-client rate limit.
    fn admit(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let (Some(limit), Some(peer)) = (&self.limit, req.extensions().get::<PeerAddr>()) else {
            return Ok(());
        };
        limit.check(peer.0.ip()).map_err(|wait| {
            tracing::debug!(client = %peer.0.ip(), "API rate limit");
            ApiError::RateLimited {
                retry_after: wait.max(Duration::from_millis(1)),
            }
        })
    }

    async fn answer(
        &self,
        endpoint: Endpoint,
        req: &Request<Incoming>,
        id: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let query = match endpoint {
            Endpoint::Connections => Some(ConnectionsQuery::parse(req.uri().query())?),
            // An unknown path says so before anything about its query.
            Endpoint::NotFound => None,
            _ => {
                query::no_parameters(req.uri().query())?;
                None
            }
        };
        match endpoint {
            Endpoint::OpenApi => return Ok(respond(StatusCode::OK, JSON, OPENAPI)),
            Endpoint::NotFound => {
                return Err(ApiError::PathNotFound {
                    path: req.uri().path().to_owned(),
                })
            }
            _ => {}
        }
        let views = self.recent(endpoint.documents()).await;
        Ok(match endpoint {
            Endpoint::Status => {
                let view = views::status(&views)?;
                json_answer(StatusCode::OK, &view, Some(&view.freshness))
            }
            Endpoint::Health => {
                let view = views::health(&views)?;
                json_answer(view.code(), &view, Some(&view.freshness))
            }
            Endpoint::Connections => {
                let served = views.status()?;
                let view = views::connections(&views, &served, &query.unwrap_or_default());
                json_answer(StatusCode::OK, &view, Some(&view.freshness))
            }
            Endpoint::Connection => {
                let served = views.status()?;
                let id = connection_id(id.unwrap_or_default())?;
                let view = views::connection(&views, &served, &id)?;
                json_answer(StatusCode::OK, &view, Some(&view.freshness))
            }
            Endpoint::Stats => {
                let view = views::stats(&views)?;
                json_answer(StatusCode::OK, &view, Some(&view.freshness))
            }
            Endpoint::ServiceStatus => {
                let view = views::service_status(&views, self.started.elapsed());
                json_answer(view.code(), &view, None)
            }
            Endpoint::Metrics => {
                let served = views.metrics()?;
                // The one kept copy, shared (a reference count, not a copy
                // of up to --pool.max-body-size per request).
                // Labelled with the format the text is in, as it was read.
                let content_type = match served.value.parsed.format {
                    SourceFormat::Text => "text/plain; version=0.0.4; charset=utf-8",
                    SourceFormat::OpenMetrics => {
                        "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    }
                };
                let mut resp = respond(StatusCode::OK, content_type, served.value.text.clone());
                let h = resp.headers_mut();
                h.insert(AGE, HeaderValue::from(served.age().as_secs()));
                h.insert(
                    "x-snapshot-stale",
                    HeaderValue::from_static(if served.stale { "true" } else { "false" }),
                );
                resp
            }
            Endpoint::OpenApi | Endpoint::NotFound => unreachable!("answered above"),
        })
    }
}

/// A typed view as JSON, with the `Age` of the document it is made from.
fn json_answer(
    code: StatusCode,
    view: &impl serde::Serialize,
    freshness: Option<&views::Freshness>,
) -> Response<Body> {
    let mut text = serde_json::to_vec(view).unwrap_or_default();
    text.push(b'\n');
    let mut resp = respond(code, JSON, text);
    if let Some(f) = freshness {
        resp.headers_mut()
            .insert(AGE, HeaderValue::from(f.age_seconds.max(0.0) as u64));
    }
    resp
}

/// The id of `/connections/{id}` as the pool lists it: the path segment
/// percent-decoded as UTF-8, so that `%31` is connection 1 and an id with a
/// space, `/`, `?`, `#`, `%` or non-ASCII text can be asked for (a browser
/// or client library encodes them). A `%` not followed by two hex digits
/// stays as it is. A segment that does not decode to UTF-8 names no listed
/// connection (ids are JSON text).
fn connection_id(raw: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ApiError::ConnectionNotFound { id: raw.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        for (path, endpoint) in ROUTES {
            if *endpoint == Endpoint::NotFound {
                continue;
            }
            assert!(doc["paths"].get(*path).is_some(), "{path} missing");
        }
    }

    #[test]
    fn connection_ids_are_percent_decoded() {
        assert_eq!(connection_id("%31").unwrap(), "1");
        assert_eq!(connection_id("a%20b%2Fc%3F%23%25").unwrap(), "a b/c?#%");
        assert_eq!(connection_id("%C3%A9t%C3%A9").unwrap(), "été");
        assert_eq!(connection_id("100%").unwrap(), "100%");
        assert_eq!(connection_id("%zz").unwrap(), "%zz");
        assert!(connection_id("%FF").is_err());
    }

    #[test]
    fn routes_label_is_the_template() {
        assert_eq!(
            Endpoint::Connection.route(),
            "/api/v1/secure-channel/connections/{id}"
        );
        assert_eq!(Endpoint::NotFound.route(), "other");
    }
}
