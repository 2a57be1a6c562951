//! An async client for the SecureChannelPool HTTP API.
//!
//! The pool keeps TLS connections to a relay and serves three documents:
//!
//! | path | auth | answer | here |
//! | --- | --- | --- | --- |
//! | `GET /status/connections` | `X-Auth-Token` | JSON [`PoolStatus`] | [`PoolClient::status`], [`PoolClient::connection`] |
//! | `GET /healthz` | none | JSON [`Health`], **503 with the same body** when the idle list is empty | [`PoolClient::health`] |
//! | `GET /metrics` | `X-Auth-Token` | Prometheus text, no Content-Type | [`PoolClient::metrics_text`] |
//!
//! What this crate gives:
//!
//! * [`PoolClient`]: one reqwest client (rustls with the `ring` provider
//!   handed to it, nothing installed process-wide; no redirects, no proxy
//!   from the environment), one method per document taking
//!   [`CallOptions`] (an optional deadline), a body-size cap enforced while
//!   streaming, the [`Token`] from a value or a file that is re-read when
//!   it changes, and raw bodies ([`PoolClient::fetch`]) for callers that
//!   decode or pass them through.
//! * Tolerant model types ([`PoolStatus`], [`Connection`], [`Health`]) that
//!   read every pool build we know: times as serde `SystemTime` objects,
//!   RFC 3339 strings or Unix seconds; integer or string connection ids;
//!   optional fields; unknown fields ignored. They serialize too.
//! * One opaque [`Error`] with a stable [`ErrorKind`] (and `is_*` queries),
//!   the URL with credentials removed, and the cause kept as its
//!   [`source`](std::error::Error::source).
//! * Opt-in [`RetryPolicy`] and [`CircuitBreaker`].
//! * A [`Monitor`] that polls the pool, publishes the latest [`Snapshot`]
//!   and reports each health [`Transition`] once.
//!
//! # What the pool's answers mean
//!
//! The published pool lists only **idle** connections: a checked-out
//! connection is never listed again, so `active_connections` is 0 and
//! `/healthz` answers 503 on a busy pool that works fine. "Unhealthy" is
//! the pool's own word for "no idle connection right now", not an outage;
//! "unreachable" (no usable answer) is the stronger signal. During a relay
//! outage the pool may block its answers for up to 30 s: give calls a
//! deadline that suits you.
//!
//! # Example
//!
//! Against a tiny fake pool started in the example itself (hidden lines):
//!
//! ```
//! use std::time::Duration;
//! use secure_channel_client::{CallOptions, ErrorKind, PoolClient, RetryPolicy, Token};
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let pool_url = format!("http://{}", listener.local_addr()?);
//! # tokio::spawn(async move {
//! #     loop {
//! #         let Ok((mut s, _)) = listener.accept().await else { continue };
//! #         tokio::spawn(async move {
//! #             let mut req = Vec::new();
//! #             let mut buf = [0u8; 1024];
//! #             while !req.windows(4).any(|w| w == b"\r\n\r\n") {
//! #                 match s.read(&mut buf).await { Ok(0) | Err(_) => return, Ok(n) => req.extend_from_slice(&buf[..n]) }
//! #             }
//! #             let req = String::from_utf8_lossy(&req);
//! #             let authorized = req.to_ascii_lowercase().contains("x-auth-token: s3cret");
//! #             let (code, body) = if req.starts_with("GET /healthz ") {
//! #                 ("503 Service Unavailable", r#"{"status":"unhealthy","timestamp":{"secs_since_epoch":1795748447,"nanos_since_epoch":0},"pool_healthy":false,"active_connections":0}"#)
//! #             } else if !authorized {
//! #                 ("401 Unauthorized", "Unauthorized: Invalid token")
//! #             } else if req.starts_with("GET /status/connections ") {
//! #                 ("200 OK", r#"{"endpoint":"relay.example.net:443","active_connections":1,"total_reconnects":0,"total_errors":0,"pool_p95_latency_ms":3,"connections":[{"connection_id":194,"last_activity":{"secs_since_epoch":1795748956,"nanos_since_epoch":0},"reconnects":0,"errors":1,"p95_latency_ms":3}]}"#)
//! #             } else if req.starts_with("GET /metrics ") {
//! #                 ("200 OK", "# TYPE secure_channel_errors_total counter\nsecure_channel_errors_total{endpoint=\"relay.example.net:443\"} 0\n")
//! #             } else {
//! #                 ("404 Not Found", "")
//! #             };
//! #             let head = format!("HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
//! #             let _ = s.write_all(head.as_bytes()).await;
//! #             let _ = s.write_all(body.as_bytes()).await;
//! #         });
//! #     }
//! # });
//! let client = PoolClient::builder()
//!     .base_url(&pool_url)
//!     .token(Token::value("s3cret"))
//!     .timeout(Duration::from_secs(5))
//!     .retry(RetryPolicy::new(3))
//!     .build()?;
//!
//! let status = client.status(CallOptions::new()).await?;
//! assert_eq!(status.endpoint, "relay.example.net:443");
//! assert_eq!(client.connection(194u64, CallOptions::new()).await?.errors, 1.0);
//! assert_eq!(client.connection(1u64, CallOptions::new()).await.unwrap_err().kind(), ErrorKind::NotFound);
//!
//! // A 503 health answer is a value: the idle list is empty right now.
//! let health = client.health(CallOptions::new()).await?;
//! assert_eq!(health.is_healthy(), Some(false));
//!
//! // The native metrics, as sent.
//! assert!(client.metrics_text(CallOptions::new()).await?.contains("secure_channel_errors_total"));
//!
//! // A wrong token: a typed error with the pool's message, never retried.
//! let wrong = PoolClient::builder().base_url(&pool_url).token(Token::value("nope")).build()?;
//! let err = wrong.status(CallOptions::new()).await.unwrap_err();
//! assert_eq!(err.kind().as_str(), "unauthorized");
//! assert!(err.is_unauthorized());
//! assert_eq!(err.pool_message(), Some("Unauthorized: Invalid token"));
//!
//! // A deadline for one call: an explicit end, e.g. a scrape's.
//! let end = tokio::time::Instant::now() + Duration::from_secs(2);
//! client.status(CallOptions::new().deadline(end)).await?;
//! # Ok(()) }
//! ```
//!
//! Failures are typed and name the URL:
//!
//! ```
//! use secure_channel_client::{CallOptions, ErrorKind, PoolClient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Nothing listens on port 9 (discard): the call fails with a typed error.
//! let client = PoolClient::builder()
//!     .base_url("http://127.0.0.1:9")
//!     .timeout(std::time::Duration::from_secs(2))
//!     .build()
//!     .unwrap();
//! let err = client.status(CallOptions::new()).await.unwrap_err();
//! assert!(matches!(err.kind(), ErrorKind::Connect | ErrorKind::Timeout));
//! assert_eq!(err.url(), Some("http://127.0.0.1:9/status/connections"));
//! # }
//! ```
//!
//! # Dependencies
//!
//! reqwest (no default features; rustls with the `ring` provider given to
//! it directly, no aws-lc, no OpenSSL), rustls, rustls-platform-verifier
//! (the platform's roots when no CA file is given), tokio (`rt`, `sync`,
//! `time`, `macros`, `net`), tracing (warnings about the token file),
//! serde, serde_json, bytes and time. No HTTP server, no CLI parser, no
//! Prometheus crate.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod breaker;
mod client;
mod error;
mod model;
mod monitor;
mod retry;
mod scan;
mod sink;
mod token;

pub use breaker::{CircuitBreaker, CircuitState};
pub use client::redact_text as redact_url_text;
pub use client::{
    CallOptions, Document, Fetched, PoolClient, PoolClientBuilder, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT,
};
pub use error::{Error, ErrorKind};
pub use model::{Connection, ConnectionId, Health, PoolStatus, Timestamp};
pub use monitor::{HealthState, Monitor, MonitorBuilder, Snapshot, Transition};
pub use retry::{Jitter, RetryPolicy};
pub use sink::ConnectionSink;
pub use token::{scrub_secret, Token, TOKEN_FILE_SETTLE};

/// The README's code blocks, compiled as doctests so that the documented
/// call style cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
