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

/// Bounds on what one scrape of a pool may make the exporter hold and
/// send, whatever the pool answers: without them memory follows the size
/// of the pool's documents (a 16 MiB native exposition parsed into 440 MiB;
/// a 200 KB `endpoint` repeated on every series became a 600 MB answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Native series read and passed through (`--collector.max-native-series`).
    pub max_native_series: usize,
    /// Bytes of a label value or HELP text from the pool
    /// (`--collector.max-label-value-length`).
    pub max_label_value_len: usize,
}

impl Limits {
    /// The pool's own exposition is a few dozen series and its label
    /// values are host:port pairs and small numbers: these leave plenty of
    /// room.
    pub const DEFAULT: Limits = Limits {
        max_native_series: 10_000,
        max_label_value_len: 1024,
    };
}

impl Limits {
    /// What the native-exposition parser may keep.
    pub fn parse(self) -> crate::exposition::ParseLimits {
        crate::exposition::ParseLimits {
            max_samples: self.max_native_series,
            max_value_len: self.max_label_value_len,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
