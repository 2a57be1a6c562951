//! The SecureChannelPool's HTTP API as the exporter uses it: the wire
//! types and HTTP client of the `secure-channel-client` crate, plus the
//! exporter's own needs (the native exposition parsed, failure reasons).

pub mod client;

pub use client::{
    failure_reason, FailureReason, FetchError, PoolClient, PoolClientConfig, FAILURE_REASONS,
};
pub use secure_channel_client::{
    Connection, ConnectionId, Document, Health, PoolStatus, Timestamp,
};
