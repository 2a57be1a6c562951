//! The exporter's counters and gauges that live across scrapes, in
//! `prometheus-client` registries with typed label sets, written into the
//! scrape's answer by its encoder ([`Encoder::registry`], which uses
//! prometheus-client's OpenMetrics and Prometheus-text encoders). (The
//! per-scrape families, the per-connection series and the native
//! passthrough are written by our own streaming encoder: see
//! docs/architecture.md for why.)

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::exposition::catalogue;
use crate::exposition::{Encoder, Encoding, Families};
use crate::http::WebStats;
use crate::pool::{Document, FailureReason, FAILURE_REASONS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EncodingLabels {
    encoding: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    source: &'static str,
    reason: &'static str,
}

pub use crate::exposition::catalogue::register;

/// Fetches of the pool's documents and their failures, by reason: one set
/// per pool (the exporter's and each `/probe` target's).
#[derive(Debug)]
pub struct SourceMetrics {
    registry: Registry,
    requests: Family<SourceLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    answers: Family<EncodingLabels, Counter>,
    /// Bumped on every change, so a rendering can tell it is still current.
    generation: AtomicU64,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<SourceLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let answers = Family::<EncodingLabels, Counter>::default();
        register(
            &mut registry,
            &catalogue::EXPORTER_SOURCE_REQUESTS_TOTAL,
            requests.clone(),
        );
        register(
            &mut registry,
            &catalogue::EXPORTER_SOURCE_FAILURES_TOTAL,
            failures.clone(),
        );
        register(
            &mut registry,
            &catalogue::EXPORTER_SCRAPE_ANSWERS_TOTAL,
            answers.clone(),
        );
        for encoding in Encoding::ALL {
            let _ = answers.get_or_create(&EncodingLabels {
                encoding: encoding.as_str(),
            });
        }
        // Every pair exists from the start, at 0, so rate() sees the first
        // failure rather than a series appearing.
        for doc in Document::ALL {
            let _ = requests.get_or_create(&SourceLabels {
                source: doc.as_str(),
            });
            for reason in FAILURE_REASONS {
                let _ = failures.get_or_create(&FailureLabels {
                    source: doc.as_str(),
                    reason: reason.as_str(),
                });
            }
        }
        Self {
            registry,
            requests,
            failures,
            answers,
            generation: AtomicU64::new(0),
        }
    }
}

/// Every fetch of the pool's observer is counted here, whoever asked for
/// it: the counts are the pool's, not one scrape's.
impl crate::pool::FetchSink for SourceMetrics {
    fn fetched(&self, doc: Document, reason: Option<FailureReason>) {
        self.record(doc, reason);
    }
}

impl SourceMetrics {
    /// Counts one fetch of `doc`, failed for `reason` or not.
    pub fn record(&self, doc: Document, reason: Option<FailureReason>) {
        self.requests
            .get_or_create(&SourceLabels {
                source: doc.as_str(),
            })
            .inc();
        if let Some(reason) = reason {
            self.failures
                .get_or_create(&FailureLabels {
                    source: doc.as_str(),
                    reason: reason.as_str(),
                })
                .inc();
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Counts an answer sent in `encoding`. The shared rendering is not
    /// redone for it (no generation bump): an answer shows the count as it
    /// stood when its body was rendered, without itself.
    pub fn count_answer(&self, encoding: Encoding) {
        self.answers
            .get_or_create(&EncodingLabels {
                encoding: encoding.as_str(),
            })
            .inc();
    }

    /// Fetches of each document so far, in `Document::ALL` order.
    pub fn requests(&self) -> [u64; 3] {
        Document::ALL.map(|doc| {
            self.requests
                .get_or_create(&SourceLabels {
                    source: doc.as_str(),
                })
                .get()
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn encode(&self, encoder: &mut Encoder) {
        encoder.registry(&self.registry);
    }
}

/// The listener's defences and the web config's state: one set per process.
#[derive(Debug)]
pub struct WebMetrics {
    registry: Registry,
    reload_ok: Option<Gauge>,
    /// The counters in `registry`, for [`WebMetrics::version`].
    counters: [Counter; 2],
}

impl WebMetrics {
    /// `with_reload_gauge`: whether a `--web.config.file` is in use.
    pub fn new(stats: &WebStats, with_reload_gauge: bool) -> Self {
        let mut registry = Registry::default();
        register(
            &mut registry,
            &catalogue::EXPORTER_WEB_AUTH_FAILURES_TOTAL,
            stats.auth_failures.clone(),
        );
        register(
            &mut registry,
            &catalogue::EXPORTER_WEB_TLS_HANDSHAKE_FAILURES_TOTAL,
            stats.tls_handshake_failures.clone(),
        );
        let reload_ok = with_reload_gauge.then(|| {
            let gauge = Gauge::default();
            register(
                &mut registry,
                &catalogue::EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL,
                gauge.clone(),
            );
            gauge
        });
        Self {
            registry,
            reload_ok,
            counters: [
                stats.auth_failures.clone(),
                stats.tls_handshake_failures.clone(),
            ],
        }
    }

    /// The families, with the reload gauge set to `reload_ok`.
    pub fn with_reload(&self, reload_ok: bool) -> WebFamilies<'_> {
        WebFamilies {
            metrics: self,
            reload_ok,
        }
    }
}

/// [`WebMetrics`] as they stand, for the scrape's answer.
pub struct WebFamilies<'a> {
    metrics: &'a WebMetrics,
    reload_ok: bool,
}

impl Families for WebFamilies<'_> {
    fn encode(&self, encoder: &mut Encoder) {
        if let Some(gauge) = &self.metrics.reload_ok {
            gauge.set(i64::from(self.reload_ok));
        }
        encoder.registry(&self.metrics.registry);
    }

    /// Counters only grow, so their sum changes with any of them; the
    /// reload flag takes the top bit.
    fn version(&self) -> u64 {
        let counts: u64 = self.metrics.counters.iter().map(Counter::get).sum();
        counts | (u64::from(self.reload_ok) << 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{parse, Format};

    #[test]
    fn every_source_pair_is_present_from_the_start_and_counts() {
        let m = SourceMetrics::default();
        m.record(Document::Status, None);
        m.record(Document::Status, Some(FailureReason::Timeout));
        let before = m.generation();
        m.record(Document::Metrics, Some(FailureReason::Decode));
        assert!(m.generation() > before);
        let mut encoder = Encoder::new(Format::PrometheusText, 0);
        m.encode(&mut encoder);
        let text = encoder.finish();
        let parsed = parse(&text);
        assert_eq!(parsed.skipped_lines, 0, "{text}");
        let value = |name: &str, labels: &[(&str, &str)]| {
            parsed
                .families
                .iter()
                .flat_map(|f| &f.samples)
                .find(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(n, v)| s.labels.iter().any(|(ln, lv)| ln == n && lv == v))
                })
                .map(|s| s.value)
        };
        let failures = "secure_channel_exporter_source_failures_total";
        assert_eq!(
            value(
                "secure_channel_exporter_source_requests_total",
                &[("source", "status")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(failures, &[("source", "status"), ("reason", "timeout")]),
            Some(1.0)
        );
        assert_eq!(
            value(failures, &[("source", "health"), ("reason", "connect")]),
            Some(0.0)
        );
        assert_eq!(
            value(failures, &[("source", "metrics"), ("reason", "decode")]),
            Some(1.0)
        );
        // The catalogue's HELP, with one full stop.
        assert!(text.contains("# HELP secure_channel_exporter_source_requests_total Fetches of this pool document since the exporter started.\n"), "{text}");
    }

    #[test]
    fn web_families_end_once_and_their_version_follows_them() {
        let stats = WebStats::default();
        stats.auth_failures.inc();
        let web = WebMetrics::new(&stats, true);
        let render = |reload_ok, format| {
            let mut encoder = Encoder::new(format, 0);
            web.with_reload(reload_ok).encode(&mut encoder);
            encoder.finish()
        };
        let om = render(false, Format::OpenMetrics);
        assert_eq!(om.matches("# EOF").count(), 1, "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("secure_channel_exporter_web_auth_failures_total 1\n"),
            "{om}"
        );
        assert!(
            om.contains("secure_channel_exporter_web_config_last_reload_successful 0\n"),
            "{om}"
        );
        let text = render(true, Format::PrometheusText);
        assert!(
            text.contains("secure_channel_exporter_web_config_last_reload_successful 1\n"),
            "{text}"
        );
        let before = web.with_reload(true).version();
        assert_ne!(web.with_reload(false).version(), before);
        stats.tls_handshake_failures.inc();
        assert_ne!(web.with_reload(true).version(), before);
    }
}
