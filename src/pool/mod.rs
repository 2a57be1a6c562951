//! The pool layer: everything about talking to a pool, under every
//! feature. `scrape/`, `rest/` and `ui/` read a pool only through its
//! [`PoolObserver`] (the one place pool documents are fetched), and never
//! through each other.
//!
//! * [`client`]: the client crate's HTTP client with what is the
//!   exporter's alone (reading the native exposition, the `reason` labels);
//! * [`observer`]: one fetcher per document, fresh and recent reads, the
//!   limits applied once, the log throttle, the fetch counts;
//! * [`limits`]: the bounds and settings every reader of a pool shares;
//! * [`history`], [`window`]: what successive documents reveal (the
//!   derived `*_seen_total` counters, the rates of the API);
//! * [`native`]: what is read from the pool's native exposition;
//! * [`status_doc`]: a status document as kept: decoded with the
//!   connection cap applied as it is read, the figures over the whole list;
//! * [`redact`]: the secrets kept out of whatever the pool sends back.

pub mod client;
pub mod history;
pub mod limits;
pub mod native;
pub mod observer;
pub mod redact;
pub mod status_doc;
pub mod window;

pub use client::{
    failure_reason, failure_reason_of, FailureReason, FetchError, PoolClient, PoolClientConfig,
    FAILURE_REASONS,
};
pub use limits::{Limits, PoolSettings};
pub use observer::{
    FetchSink, Lookup, NativeDoc, Outcome, PoolFailure, PoolObserver, Recent, Served, Unavailable,
};
pub use redact::Redactor;
pub use secure_channel_client::{
    Connection, ConnectionId, Document, Health, PoolStatus, Timestamp,
};
pub use status_doc::StatusDoc;
