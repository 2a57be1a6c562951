//! The API's self-metrics, in a prometheus-client registry appended to the
//! `/metrics` answer: requests by route and status code, latency by route,
//! and how the cached snapshot served them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::exposition::catalogue;
use crate::exposition::catalogue::register;
use crate::exposition::{Encoder, Families};
use crate::pool::Lookup;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~4 s: a cache hit answers in well under a millisecond, a
    // miss takes the pool's time, bounded by --pool.timeout.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

#[derive(Debug)]
pub struct ApiMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    cache: Family<CacheLabels, Counter>,
    /// Bumped on every change, for [`Families::version`].
    changes: AtomicU64,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let cache = Family::<CacheLabels, Counter>::default();
        register(
            &mut registry,
            &catalogue::EXPORTER_API_REQUESTS_TOTAL,
            requests.clone(),
        );
        register(
            &mut registry,
            &catalogue::EXPORTER_API_REQUEST_DURATION_SECONDS,
            duration.clone(),
        );
        register(
            &mut registry,
            &catalogue::EXPORTER_API_CACHE_REQUESTS_TOTAL,
            cache.clone(),
        );
        // The three results exist from the start, so the first stale serve
        // is a rise rather than a new series.
        for lookup in [Lookup::Hit, Lookup::Miss, Lookup::Stale] {
            let _ = cache.get_or_create(&CacheLabels {
                result: lookup.as_str(),
            });
        }
        Self {
            registry,
            requests,
            duration,
            cache,
            changes: AtomicU64::new(0),
        }
    }
}

impl ApiMetrics {
    /// One answered request of `route` (its path template).
    pub fn request(&self, route: &'static str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
        self.changes.fetch_add(1, Ordering::Release);
    }

    pub fn lookup(&self, lookup: Lookup) {
        self.cache
            .get_or_create(&CacheLabels {
                result: lookup.as_str(),
            })
            .inc();
        self.changes.fetch_add(1, Ordering::Release);
    }
}

impl Families for ApiMetrics {
    fn encode(&self, encoder: &mut Encoder) {
        encoder.registry(&self.registry);
    }

    fn version(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{parse, Format};

    fn render(m: &ApiMetrics, format: Format) -> String {
        let mut encoder = Encoder::new(format, 0);
        m.encode(&mut encoder);
        encoder.finish()
    }

    #[test]
    fn counts_requests_latency_and_lookups() {
        let m = ApiMetrics::default();
        m.request(
            "/api/v1/secure-channel/status",
            200,
            Duration::from_millis(2),
        );
        m.request(
            "/api/v1/secure-channel/status",
            200,
            Duration::from_millis(3),
        );
        let before = m.version();
        m.lookup(Lookup::Stale);
        assert_ne!(m.version(), before);
        let text = render(&m, Format::PrometheusText);
        let parsed = parse(&text);
        assert_eq!(parsed.skipped_lines, 0, "{text}");
        assert!(text.contains("secure_channel_exporter_api_requests_total{route=\"/api/v1/secure-channel/status\",code=\"200\"} 2\n"), "{text}");
        assert!(text.contains("secure_channel_exporter_api_request_duration_seconds_count{route=\"/api/v1/secure-channel/status\"} 2\n"), "{text}");
        assert!(
            text.contains("secure_channel_exporter_api_cache_requests_total{result=\"stale\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("secure_channel_exporter_api_cache_requests_total{result=\"hit\"} 0\n"),
            "{text}"
        );
        let om = render(&m, Format::OpenMetrics);
        assert_eq!(om.matches("# EOF").count(), 1, "{om}");
    }
}
