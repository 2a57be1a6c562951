//! The exporter's scrape feature: `/metrics` and `/probe`. Fetching the
//! pool's documents within the deadline ([`collector`]), translating them
//! purely ([`translate`], [`derived`]), the exporter's own family names
//! ([`catalogue`]), and the routes that answer a scrape ([`routes`]).

pub mod catalogue;
pub mod collector;
pub mod derived;
pub mod probe;
pub mod process;
pub mod routes;
pub mod self_metrics;
pub mod translate;

pub use collector::Collector;
pub use probe::Probe;
