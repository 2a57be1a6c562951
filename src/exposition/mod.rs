//! Metric families in memory, the native text parser and the two encoders.
//!
//! The model is deliberately small and format-neutral: a family carries its
//! Prometheus-text name (counters keep their `_total`), so the pool's
//! exposition round-trips unchanged and the encoders decide how each format
//! spells it.

pub mod buffer;
pub mod catalogue;
pub mod compress;
pub mod encode;
pub mod negotiate;
pub mod parse;

pub use compress::{compress, negotiate_encoding, Encoding};
pub use encode::{encode, Encoder, Families, Format};
pub use negotiate::negotiate;
pub use parse::{
    detect_format, parse, parse_as, parse_limited, parse_limited_as, ParseLimits, ParsedExposition,
    SourceFormat,
};

/// The type of a metric family, as declared by a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    /// OpenMetrics only; written as a histogram in the text format.
    GaugeHistogram,
    /// OpenMetrics only; written as a gauge in the text format.
    StateSet,
    /// OpenMetrics only; written as a gauge named `…_info` in the text
    /// format.
    Info,
}

impl MetricType {
    /// A text-format (0.0.4) TYPE word; `unknown` is tolerated.
    pub fn from_type_word(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" | "unknown" => Self::Untyped,
            _ => return None,
        })
    }

    /// An OpenMetrics TYPE word; `untyped` is tolerated.
    pub fn from_openmetrics_word(word: &str) -> Option<Self> {
        Some(match word {
            "gaugehistogram" => Self::GaugeHistogram,
            "stateset" => Self::StateSet,
            "info" => Self::Info,
            other => return Self::from_type_word(other),
        })
    }

    /// Sample-name suffixes that belong to a family of this type (the
    /// family named as in the text format: counters with `_total`, info
    /// families with `_info`).
    pub fn sample_suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Counter => &["_total", "_created", ""],
            Self::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Self::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            Self::Summary => &["", "_sum", "_count", "_created"],
            Self::Gauge | Self::Untyped | Self::StateSet | Self::Info => &[""],
        }
    }
}

/// One label pair. Names are usually static (our own families) so they are
/// kept as `Cow` to avoid an allocation per series on the hot path.
pub type Label = (std::borrow::Cow<'static, str>, String);

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full sample name, e.g. `secure_channel_latency_ms_bucket`.
    pub name: String,
    pub labels: Vec<Label>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, as in the Prometheus text format
    /// (OpenMetrics seconds are read to the millisecond, as Prometheus
    /// stores them).
    pub timestamp_ms: Option<i64>,
    /// An OpenMetrics exemplar (histogram buckets and counter totals only).
    pub exemplar: Option<Box<Exemplar>>,
}

/// An OpenMetrics exemplar: `# {labels} value [timestamp]` after a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Seconds since the Unix epoch, as OpenMetrics writes it.
    pub timestamp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// Family name as written in the Prometheus text format.
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    /// OpenMetrics `# UNIT` (empty when none); only OpenMetrics carries it.
    pub unit: String,
    pub samples: Vec<Sample>,
}

impl MetricFamily {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricType) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            unit: String::new(),
            samples: Vec::new(),
        }
    }

    /// Adds a sample named like the family (gauges, untyped, counters).
    pub fn push(&mut self, labels: Vec<Label>, value: f64) {
        self.samples.push(Sample {
            name: self.name.clone(),
            labels,
            value,
            timestamp_ms: None,
            exemplar: None,
        });
    }

    /// Builder form of [`push`](Self::push) for families with one series.
    pub fn with_sample(mut self, labels: Vec<Label>, value: f64) -> Self {
        self.push(labels, value);
        self
    }
}

pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
