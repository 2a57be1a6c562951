//! Black-box tests: the real binaries on loopback ports, scraped over HTTP.

mod certs;
mod cli;
mod common;
mod compression;
mod faults;
mod lifecycle;
mod perf;
mod realpool;
mod scrape;
mod security;
