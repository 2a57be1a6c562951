//! secure-channel-exporter: makes a SecureChannelPool observable with
//! Prometheus. See README.md for usage and docs/architecture.md for the architecture.

pub mod app;
pub mod check;
pub mod cli;
pub mod exposition;
pub mod http;
pub mod logging;
pub mod pool;
pub mod rest;
pub mod scrape;
pub mod sim;
pub mod ui;
pub mod view;
