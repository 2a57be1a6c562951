//! secure-channel-exporter: makes a SecureChannelPool observable with
//! Prometheus. See README.md for usage and DESIGN.md for the architecture.

pub mod app;
pub mod cli;
pub mod collector;
pub mod derived;
pub mod exposition;
pub mod logging;
pub mod pool;
pub mod probe;
pub mod process;
pub mod redact;
pub mod server;
pub mod sim;
pub mod tls;
pub mod translate;
pub mod web;
