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
//! * [`PoolClient`]: one reqwest client (rustls with the `ring` provider,
//!   no redirects, no proxy from the environment), a deadline on every
//!   call, a body-size cap enforced while streaming, the token from a value
//!   or a file that is re-read when it changes, and raw bodies
//!   ([`PoolClient::fetch`]) for callers that decode or pass them through.
//! * Tolerant model types ([`PoolStatus`], [`Connection`], [`Health`]) that
//!   read every pool build we know: times as serde `SystemTime` objects,
//!   RFC 3339 strings or Unix seconds; integer or string connection ids;
//!   optional fields; unknown fields ignored. They serialize too.
//! * Typed errors ([`Error`]) with a stable [`ErrorKind`] label, naming the
//!   URL with credentials removed.
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
//! ```
//! use secure_channel_client::{PoolClient, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Nothing listens on port 9 (discard): the call fails with a typed error.
//! let client = PoolClient::builder()
//!     .base_url("http://127.0.0.1:9")
//!     .timeout(std::time::Duration::from_secs(2))
//!     .build()
//!     .unwrap();
//! let err = client.status().await.unwrap_err();
//! assert!(matches!(err.kind(), ErrorKind::Connect | ErrorKind::Timeout));
//! assert_eq!(err.url(), Some("http://127.0.0.1:9/status/connections"));
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod breaker;
mod client;
mod error;
mod model;
mod monitor;
mod retry;
mod token;

pub use breaker::{CircuitBreaker, CircuitState};
pub use client::{
    Document, Fetched, PoolClient, PoolClientBuilder, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT,
};
pub use error::{ConfigError, Error, ErrorKind};
pub use model::{Connection, ConnectionId, Health, PoolStatus, Timestamp};
pub use monitor::{HealthState, Monitor, MonitorBuilder, Snapshot, Transition};
pub use retry::{Jitter, RetryPolicy};
pub use token::Token;
