//! The exporter's scrape feature: `/metrics`, `/probe` and `/ready`. Fresh
//! reads of the pool through its observer within the deadline
//! ([`collector`]), translating them purely ([`translate`]), and the
//! routes that answer a scrape ([`routes`]).

pub mod collector;
pub mod probe;
pub mod process;
pub mod routes;
pub mod self_metrics;
pub mod translate;

pub use collector::Collector;
pub use probe::Probe;

pub use crate::pool::Limits;

// Where these lived before the pool and exposition layers took them.
pub use crate::exposition::catalogue;
pub use crate::pool::history as derived;
