//! What the exporter shows of a pool, beyond metrics: the typed views
//! ([`answers`]) that the REST API serves as JSON and the status page
//! renders, the query of a connection list ([`query`]) both accept, and the
//! one error type of both ([`error`]). Built from the pool observer's
//! recent reads; knows neither the API's routes nor the page's HTML, so
//! `rest/` and `ui/` stand on it side by side.

pub mod answers;
pub mod error;
pub mod query;

pub use error::ApiError;
