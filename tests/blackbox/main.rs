//! Black-box tests: the real binaries on loopback ports, scraped over HTTP.

mod adversarial;
mod certs;
mod check;
mod cli;
mod common;
mod compression;
mod fake_pool;
mod faults;
mod hardening;
mod lifecycle;
mod listen;
mod observer;
mod perf;
mod realpool;
mod rest;
mod scrape;
mod security;
