//! The SecureChannelPool's HTTP API: tolerant wire types and the client.

pub mod client;
pub mod model;

pub use client::{FailureReason, FetchError, PoolClient, PoolClientConfig};
pub use model::{Connection, ConnectionId, Health, PoolStatus, Timestamp};
