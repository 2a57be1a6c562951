//! One scrape's fetched documents -> the exporter's metric families.
//!
//! Pure: no I/O, no clocks, no globals, so it is unit-tested on fixtures and
//! benchmarked on its own.

mod connections;
mod native;
mod snapshot;

use std::borrow::Cow;

use crate::exposition::catalogue;
use crate::exposition::encode::Encoder;
use crate::exposition::{Format, Label, MetricFamily};
use crate::pool::history::DerivedCounters;
use crate::pool::limits::keep_worst;
use crate::pool::PoolStatus;
use connections::{dedupe_connections, ConnectionSeries};
use native::{pass_through, NativeDrops};

pub use connections::ConnectionFilter;
pub use snapshot::{Snapshot, SourceOutcome};

/// What earlier scrapes left for this one to render: the counters derived
/// from successive status documents. (The fetch counters live in
/// [`SourceMetrics`](super::self_metrics::SourceMetrics).)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceCounters {
    pub derived: Option<DerivedCounters>,
}

#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc: &'static str,
}

impl BuildInfo {
    pub const CURRENT: BuildInfo = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: env!("BUILD_REVISION"),
        rustc: env!("BUILD_RUSTC_VERSION"),
    };
}

#[derive(Debug, Clone)]
pub struct TranslateOptions<'a> {
    /// Most connection series per scrape; the worst connections are kept.
    pub max_connections: usize,
    /// Which connections may have series at all (before `max_connections`).
    pub connections: ConnectionFilter,
    /// `endpoint` to use when no document of this scrape names it.
    pub fallback_endpoint: Option<&'a str>,
    pub build: &'a BuildInfo,
    /// Longest label value written from pool data, in bytes.
    pub max_label_value_len: usize,
}

/// Our families, and the native families that may be passed through
/// (borrowed unless some of their series had to be dropped).
pub struct Translation<'a> {
    pub own: Vec<MetricFamily>,
    pub native: Vec<Cow<'a, MetricFamily>>,
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn l(name: &'static str, value: impl Into<String>) -> Label {
    (Cow::Borrowed(name), value.into())
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn translate<'a>(
    snapshot: &'a Snapshot,
    counters: &SourceCounters,
    options: &TranslateOptions<'_>,
) -> Translation<'a> {
    let parts = Parts::new(snapshot, counters, options);
    let mut own = parts.head;
    if let Some(connections) = &parts.connections {
        own.extend(connections.families());
    }
    own.extend(parts.tail);
    Translation {
        own,
        native: parts.native,
    }
}

/// The complete exposition of one scrape: our families, then `extra` (the
/// process metrics), then the native families passed through.
///
/// The text is exactly what [`translate`] followed by an [`Encoder`] over
/// `own`, `extra` and `native` writes, but the per-connection series (all
/// but a few dozen of a large pool's) are written straight from the
/// decoded status instead of becoming a [`MetricFamily`] each first: at
/// 10,000 connections that is 40,000 samples, each with a name and labels
/// of its own to allocate, copy and free.
pub fn encode_scrape(
    snapshot: &Snapshot,
    counters: &SourceCounters,
    options: &TranslateOptions<'_>,
    extra: &[MetricFamily],
    format: Format,
) -> String {
    let mut encoder = Encoder::new(format, 0);
    write_scrape(snapshot, counters, options, extra, &mut encoder);
    encoder.finish()
}

/// [`encode_scrape`]'s families written by `encoder`, which the caller
/// finishes after adding its own (the answer is written once, into the
/// buffer that is sent).
pub fn write_scrape(
    snapshot: &Snapshot,
    counters: &SourceCounters,
    options: &TranslateOptions<'_>,
    extra: &[MetricFamily],
    encoder: &mut Encoder,
) {
    let parts = Parts::new(snapshot, counters, options);
    let small: usize = [&parts.head, &parts.tail]
        .into_iter()
        .flatten()
        .chain(extra)
        .chain(parts.native.iter().map(|f| &**f))
        .map(|f| 128 + f.samples.len() * 128)
        .sum();
    let large = parts
        .connections
        .as_ref()
        .map_or(0, ConnectionSeries::estimated_bytes);
    encoder.reserve(small + large);
    encoder.families(&parts.head);
    if let Some(connections) = &parts.connections {
        connections.encode(encoder);
    }
    encoder.families(&parts.tail);
    encoder.families(extra);
    encoder.families(parts.native.iter().map(|f| &**f));
}

/// One scrape's families in exposition order, the per-connection ones
/// still unbuilt.
struct Parts<'a> {
    /// `up` and the pool-level families.
    head: Vec<MetricFamily>,
    connections: Option<ConnectionSeries<'a>>,
    /// Pool health and the exporter's own families.
    tail: Vec<MetricFamily>,
    native: Vec<Cow<'a, MetricFamily>>,
}

impl<'a> Parts<'a> {
    fn new(
        snapshot: &'a Snapshot,
        counters: &SourceCounters,
        options: &TranslateOptions<'_>,
    ) -> Self {
        let max_len = options.max_label_value_len;
        let mut truncated = 0;
        let endpoint = snapshot
            .endpoint()
            .or(options.fallback_endpoint)
            .map(|e| cap(e, max_len));
        let mut head = Vec::with_capacity(8);
        head.push(
            catalogue::UP
                .family()
                .with_sample(vec![], bool_value(snapshot.status.result.is_ok())),
        );

        let mut omitted = 0;
        let mut duplicates = 0;
        let mut times_out_of_range = 0;
        let mut connections = None;
        if let Ok(doc) = &snapshot.status.result {
            let status = &doc.status;
            truncated += pool_families(status, doc.listed, max_len, &mut head);
            // The pool layer kept one copy of each id; only ids cut to the
            // longest label value can still meet here.
            let long_ids = status
                .connections
                .iter()
                .any(|c| c.connection_id.as_str().len() > max_len);
            let (unique, dropped) = if long_ids {
                dedupe_connections(&status.connections, max_len)
            } else {
                (status.connections.iter().collect(), 0)
            };
            duplicates = doc.duplicates + dropped;
            let admitted = unique
                .into_iter()
                .filter(|c| options.connections.admits(c))
                .collect();
            let (kept, left_out) = keep_worst(admitted, options.max_connections);
            // The pool layer kept only the worst of a longer list: those of
            // the rest the filter admits are left out too.
            let admitted_here = status
                .connections
                .iter()
                .filter(|c| options.connections.admits(c))
                .count();
            omitted = left_out
                + options
                    .connections
                    .admitted_of(doc)
                    .saturating_sub(admitted_here);
            times_out_of_range = kept
                .iter()
                .filter(|c| c.last_activity.is_some_and(|t| !t.in_range()))
                .count();
            truncated += kept
                .iter()
                .map(|c| {
                    usize::from(c.connection_id.as_str().len() > max_len)
                        + usize::from(c.remote_addr.as_ref().is_some_and(|a| a.len() > max_len))
                })
                .sum::<usize>();
            connections = Some(ConnectionSeries {
                endpoint: cap(&status.endpoint, max_len),
                kept,
                max_len,
            });
        }

        if let Some(derived) = &counters.derived {
            derived_families(derived, max_len, &mut head);
        }

        let mut tail = Vec::with_capacity(12);
        // Without an `endpoint` it would be a different series from the
        // usual one: better absent until some document names the pool.
        if let (Ok(health), Some(endpoint)) = (&snapshot.health.result, endpoint) {
            if let Some(healthy) = health.is_healthy() {
                tail.push(
                    catalogue::POOL_HEALTHY
                        .family()
                        .with_sample(vec![l("endpoint", endpoint)], bool_value(healthy)),
                );
            }
        }

        let (native, drops) = match &snapshot.metrics.result {
            Ok(parsed) => pass_through(parsed),
            Err(_) => (Vec::new(), NativeDrops::default()),
        };
        let dropped = Dropped {
            times_out_of_range,
            omitted,
            duplicates,
            truncated,
            native: drops,
        };
        exporter_families(snapshot, &dropped, options.build, &mut tail);
        Parts {
            head,
            connections,
            tail,
            native,
        }
    }
}

/// The counters derived from successive status documents.
fn derived_families(derived: &DerivedCounters, max_len: usize, out: &mut Vec<MetricFamily>) {
    let ep = || vec![l("endpoint", cap(&derived.endpoint, max_len))];
    out.push(
        catalogue::POOL_CONNECTION_ERRORS_SEEN_TOTAL
            .family()
            .with_sample(ep(), derived.errors_seen),
    );
    out.push(
        catalogue::POOL_CONNECTION_RECONNECTS_SEEN_TOTAL
            .family()
            .with_sample(ep(), derived.reconnects_seen),
    );
    if let Some(opened) = derived.connections_opened {
        out.push(
            catalogue::POOL_CONNECTIONS_OPENED_TOTAL
                .family()
                .with_sample(ep(), opened),
        );
    }
}

/// Pool-level families of a fetched status document; returns how many
/// of its values were cut to `max_len`.
fn pool_families(
    status: &PoolStatus,
    listed: usize,
    max_len: usize,
    out: &mut Vec<MetricFamily>,
) -> usize {
    let endpoint = cap(&status.endpoint, max_len);
    let mut truncated = usize::from(endpoint.len() < status.endpoint.len());
    let ep = || vec![l("endpoint", endpoint)];

    let mut info_labels = ep();
    if let Some(backend) = &status.backend {
        truncated += usize::from(backend.len() > max_len);
        info_labels.push(l("backend", cap(backend, max_len)));
    }
    out.push(catalogue::POOL_INFO.family().with_sample(info_labels, 1.0));
    let active = status.active_connections.unwrap_or(listed as f64);
    out.push(
        catalogue::POOL_ACTIVE_CONNECTIONS
            .family()
            .with_sample(ep(), active),
    );
    if let Some(errors) = status.total_errors {
        out.push(
            catalogue::POOL_OPEN_CONNECTION_ERRORS
                .family()
                .with_sample(ep(), errors),
        );
    }
    if let Some(reconnects) = status.total_reconnects {
        out.push(
            catalogue::POOL_OPEN_CONNECTION_RECONNECTS
                .family()
                .with_sample(ep(), reconnects),
        );
    }
    if let Some(p95) = status.pool_p95_latency_ms {
        out.push(
            catalogue::POOL_P95_LATENCY_SECONDS
                .family()
                .with_sample(ep(), p95 / 1000.0),
        );
    }
    truncated
}

/// What one scrape left out, for the exporter's own families.
struct Dropped {
    /// Kept connections whose last_activity is out of range.
    times_out_of_range: usize,
    omitted: usize,
    duplicates: usize,
    truncated: usize,
    native: NativeDrops,
}

fn exporter_families(
    snapshot: &Snapshot,
    dropped: &Dropped,
    build: &BuildInfo,
    out: &mut Vec<MetricFamily>,
) {
    let mut up = catalogue::EXPORTER_SOURCE_UP.family();
    let mut duration = catalogue::EXPORTER_SOURCE_DURATION_SECONDS.family();
    for (doc, error, took) in snapshot.source_results() {
        let source = || vec![l("source", doc.as_str())];
        up.push(source(), bool_value(error.is_none()));
        duration.push(source(), took.as_secs_f64());
    }
    out.extend([up, duration]);

    out.push(
        catalogue::EXPORTER_CONNECTIONS_OMITTED
            .family()
            .with_sample(vec![], dropped.omitted as f64),
    );
    out.push(
        catalogue::EXPORTER_DUPLICATE_CONNECTIONS
            .family()
            .with_sample(vec![], dropped.duplicates as f64),
    );
    let (skipped, invalid, over_limit, truncated_native) = match &snapshot.metrics.result {
        Ok(parsed) => (
            parsed.skipped_lines,
            parsed.invalid_families,
            parsed.over_limit,
            parsed.truncated_values,
        ),
        Err(_) => (0, 0, 0, 0),
    };
    let n = &dropped.native;
    let reason = |r: &'static str| vec![l("reason", r)];
    let kinds = [
        ("reserved_label", n.reserved_label),
        ("duplicate", n.duplicate),
        ("negative_counter", n.negative_counter),
        ("negative_timestamp", n.negative_timestamp),
        ("invalid_value", n.invalid_value),
        ("mixed_timestamps", n.mixed_timestamps),
    ];
    let mut families = catalogue::EXPORTER_NATIVE_FAMILIES_DROPPED
        .family()
        .with_sample(reason("name_collision"), n.name_collision as f64)
        .with_sample(reason("invalid"), invalid as f64)
        .with_sample(reason("openmetrics_clash"), n.openmetrics_clash as f64)
        .with_sample(reason("invalid_histogram"), n.invalid_histogram as f64)
        .with_sample(reason("invalid_summary"), n.invalid_summary as f64);
    let mut series = catalogue::EXPORTER_NATIVE_SERIES_DROPPED.family();
    for (name, kind) in kinds {
        families.push(reason(name), kind.families as f64);
        series.push(reason(name), kind.series as f64);
    }
    series.push(reason("limit"), over_limit as f64);
    out.push(families);
    out.push(series);
    out.push(catalogue::EXPORTER_VALUES_DROPPED.family().with_sample(
        reason("time_out_of_range"),
        dropped.times_out_of_range as f64,
    ));
    out.push(
        catalogue::EXPORTER_LABEL_VALUES_TRUNCATED
            .family()
            .with_sample(vec![], (dropped.truncated + truncated_native) as f64),
    );
    out.push(
        catalogue::EXPORTER_NATIVE_LINES_SKIPPED
            .family()
            .with_sample(vec![], skipped as f64),
    );
    out.push(catalogue::EXPORTER_BUILD_INFO.family().with_sample(
        vec![
            l("version", build.version),
            l("revision", build.revision),
            l("rustc", build.rustc),
        ],
        1.0,
    ));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::exposition::MetricType;
    use crate::exposition::{encode, parse, Format, Sample};
    use crate::pool::{FailureReason, StatusDoc};

    fn ok<T>(value: T) -> SourceOutcome<Arc<T>> {
        SourceOutcome {
            result: Ok(Arc::new(value)),
            duration: Duration::from_millis(3),
        }
    }

    /// A status document as the pool layer hands it over: every connection
    /// kept (the tests of the cap cut it themselves).
    fn status_ok(json: &str) -> SourceOutcome<Arc<StatusDoc>> {
        ok(StatusDoc::keep_all(serde_json::from_str(json).unwrap()))
    }

    fn failed<T>(reason: FailureReason) -> SourceOutcome<T> {
        SourceOutcome {
            result: Err(reason),
            duration: Duration::from_millis(7),
        }
    }

    fn fixture_snapshot(status_json: &str) -> Snapshot {
        Snapshot {
            status: status_ok(status_json),
            health: ok(serde_json::from_str(include_str!(
                "../../../tests/fixtures/health_healthy.json"
            ))
            .unwrap()),
            metrics: ok(parse(include_str!(
                "../../../tests/fixtures/native_metrics.txt"
            ))),
        }
    }

    fn options(max: usize) -> TranslateOptions<'static> {
        TranslateOptions {
            max_connections: max,
            connections: ConnectionFilter::All,
            fallback_endpoint: None,
            build: &BuildInfo::CURRENT,
            max_label_value_len: 1024,
        }
    }

    fn find<'a>(t: &'a Translation, name: &str) -> &'a MetricFamily {
        t.own
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    fn value(fam: &MetricFamily, labels: &[(&str, &str)]) -> f64 {
        let matches = |s: &&Sample| {
            labels
                .iter()
                .all(|(n, v)| s.labels.iter().any(|(ln, lv)| ln == n && lv == v))
        };
        fam.samples
            .iter()
            .find(matches)
            .unwrap_or_else(|| panic!("no sample {labels:?} in {}", fam.name))
            .value
    }

    /// The documents the real pool answered in each captured condition.
    fn capture(status: &str, health: &str, native: &str) -> Snapshot {
        Snapshot {
            status: status_ok(status),
            health: ok(serde_json::from_str(health).unwrap()),
            metrics: ok(parse(native)),
        }
    }

    #[test]
    fn real_pool_captures_translate_to_what_they_mean() {
        macro_rules! fixture {
            ($dir:literal) => {
                capture(
                    include_str!(concat!(
                        "../../../tests/fixtures/realpool/",
                        $dir,
                        "/status.json"
                    )),
                    include_str!(concat!(
                        "../../../tests/fixtures/realpool/",
                        $dir,
                        "/health.json"
                    )),
                    include_str!(concat!(
                        "../../../tests/fixtures/realpool/",
                        $dir,
                        "/native.txt"
                    )),
                )
            };
        }
        // Busy: nothing listed, health 503, yet the histogram counts 420
        // operations and handshakes.
        let busy = fixture!("busy");
        let t = translate(&busy, &SourceCounters::default(), &options(1000));
        let ep = ("endpoint", "localhost:19443");
        assert_eq!(value(find(&t, "secure_channel_up"), &[]), 1.0);
        assert_eq!(
            value(find(&t, "secure_channel_pool_active_connections"), &[ep]),
            0.0
        );
        assert_eq!(value(find(&t, "secure_channel_pool_healthy"), &[ep]), 0.0);
        let native: Vec<&str> = t.native.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            native,
            [
                "secure_channel_active_connections",
                "secure_channel_errors_total",
                "secure_channel_latency_ms",
                "secure_channel_reconnects_total"
            ]
        );
        // Quiet: unused idle connections, p95 0 meaning "no samples".
        let quiet = fixture!("quiet");
        let t = translate(&quiet, &SourceCounters::default(), &options(1000));
        let ep = ("endpoint", "localhost:19444");
        assert_eq!(value(find(&t, "secure_channel_pool_healthy"), &[ep]), 1.0);
        let p95 = find(&t, "secure_channel_connection_p95_latency_seconds");
        assert_eq!(p95.samples.len(), 2);
        assert!(p95.samples.iter().all(|s| s.value == 0.0));
        // Returning build: a used connection shows its error and p95.
        let returning = fixture!("returning-build");
        let t = translate(&returning, &SourceCounters::default(), &options(1000));
        let used = [("connection_id", "194")];
        assert_eq!(
            value(find(&t, "secure_channel_connection_errors_total"), &used),
            1.0
        );
        assert_eq!(
            value(
                find(&t, "secure_channel_connection_p95_latency_seconds"),
                &used
            ),
            0.003
        );
        // Slow relay: the listed connections look fast; only the native
        // histogram shows the slow operations.
        let slow = fixture!("slow-relay");
        let t = translate(&slow, &SourceCounters::default(), &options(1000));
        let ep = ("endpoint", "localhost:19443");
        assert_eq!(
            value(find(&t, "secure_channel_pool_p95_latency_seconds"), &[ep]),
            0.0
        );
        let hist = t
            .native
            .iter()
            .find(|f| f.name == "secure_channel_latency_ms")
            .unwrap();
        let bucket = |le: &str| {
            hist.samples
                .iter()
                .find(|s| s.labels.iter().any(|(n, v)| n == "le" && v == le))
                .unwrap()
                .value
        };
        assert_eq!(bucket("1000") - bucket("500"), 60.0);
    }

    #[test]
    fn systemtime_fixture_becomes_the_metric_contract() {
        let snap = fixture_snapshot(include_str!(
            "../../../tests/fixtures/status_systemtime.json"
        ));
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        assert_eq!(value(find(&t, "secure_channel_up"), &[]), 1.0);
        let ep = ("endpoint", "relay.example.net:443");
        assert_eq!(
            value(find(&t, "secure_channel_pool_active_connections"), &[ep]),
            2.0
        );
        assert_eq!(
            value(
                find(&t, "secure_channel_pool_open_connection_errors"),
                &[ep]
            ),
            1.0
        );
        assert_eq!(
            value(
                find(&t, "secure_channel_pool_open_connection_reconnects"),
                &[ep]
            ),
            3.0
        );
        assert_eq!(
            value(find(&t, "secure_channel_pool_p95_latency_seconds"), &[ep]),
            0.045
        );
        assert_eq!(value(find(&t, "secure_channel_pool_healthy"), &[ep]), 1.0);
        let c1 = [ep, ("connection_id", "1")];
        assert_eq!(
            value(find(&t, "secure_channel_connection_errors_total"), &c1),
            1.0
        );
        assert_eq!(
            value(find(&t, "secure_channel_connection_reconnects_total"), &c1),
            2.0
        );
        assert_eq!(
            value(
                find(&t, "secure_channel_connection_p95_latency_seconds"),
                &c1
            ),
            0.045
        );
        assert_eq!(
            value(
                find(
                    &t,
                    "secure_channel_connection_last_activity_timestamp_seconds"
                ),
                &c1
            ),
            1_764_072_000.12
        );
        // Not reported by this build of the pool: no series at all.
        assert!(find(&t, "secure_channel_connection_healthy")
            .samples
            .is_empty());
        assert!(find(&t, "secure_channel_connection_info")
            .samples
            .is_empty());
        assert_eq!(
            find(&t, "secure_channel_pool_info").samples[0].labels.len(),
            1
        );
        assert_eq!(t.native.len(), 4);
        assert_eq!(
            value(find(&t, "secure_channel_exporter_connections_omitted"), &[]),
            0.0
        );
    }

    #[test]
    fn rfc3339_fixture_with_optional_fields() {
        let snap = fixture_snapshot(include_str!("../../../tests/fixtures/status_rfc3339.json"));
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        let ep = ("endpoint", "relay.bitcoin-sprint.inc:443");
        assert_eq!(
            value(
                find(&t, "secure_channel_pool_info"),
                &[ep, ("backend", "tokio-rustls")]
            ),
            1.0
        );
        let last = find(
            &t,
            "secure_channel_connection_last_activity_timestamp_seconds",
        );
        assert_eq!(value(last, &[("connection_id", "7")]), 1_756_119_600.25);
        assert_eq!(value(last, &[("connection_id", "9")]), 1_756_119_600.5);
        let healthy = find(&t, "secure_channel_connection_healthy");
        assert_eq!(value(healthy, &[("connection_id", "1")]), 1.0);
        assert_eq!(value(healthy, &[("connection_id", "7")]), 0.0);
        assert_eq!(healthy.samples.len(), 2);
        assert_eq!(
            value(
                find(&t, "secure_channel_connection_info"),
                &[("connection_id", "1"), ("remote_addr", "203.0.113.7:443")]
            ),
            1.0
        );
        // Connection 9 reports no p95: its series is absent, not zero.
        assert_eq!(
            find(&t, "secure_channel_connection_p95_latency_seconds")
                .samples
                .len(),
            2
        );
    }

    #[test]
    fn failed_status_hides_pool_series_but_keeps_the_rest() {
        let mut snap = fixture_snapshot(include_str!(
            "../../../tests/fixtures/status_systemtime.json"
        ));
        snap.status = failed(FailureReason::Timeout);
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        assert_eq!(value(find(&t, "secure_channel_up"), &[]), 0.0);
        assert!(t
            .own
            .iter()
            .all(|f| !f.name.starts_with("secure_channel_connection_")));
        assert!(t
            .own
            .iter()
            .all(|f| f.name != "secure_channel_pool_active_connections"));
        // The endpoint still comes from the native metrics.
        assert_eq!(
            value(
                find(&t, "secure_channel_pool_healthy"),
                &[("endpoint", "relay.example.net:443")]
            ),
            1.0
        );
        let up = find(&t, "secure_channel_exporter_source_up");
        assert_eq!(value(up, &[("source", "status")]), 0.0);
        assert_eq!(value(up, &[("source", "metrics")]), 1.0);
        assert_eq!(t.native.len(), 4);
    }

    #[test]
    fn cap_keeps_the_worst_connections() {
        let conns: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    r#"{{"connection_id":{i},"reconnects":0,"errors":{},"p95_latency_ms":{}}}"#,
                    if i == 3 { 50 } else { 0 },
                    if i == 7 { 900 } else { 10 + i }
                )
            })
            .collect();
        let json = format!(r#"{{"endpoint":"e","connections":[{}]}}"#, conns.join(","));
        let snap = fixture_snapshot(&json);
        let t = translate(&snap, &SourceCounters::default(), &options(3));
        let ids: Vec<&str> = find(&t, "secure_channel_connection_errors_total")
            .samples
            .iter()
            .map(|s| s.labels[1].1.as_str())
            .collect();
        assert_eq!(ids, ["3", "7", "9"]);
        assert_eq!(
            value(find(&t, "secure_channel_exporter_connections_omitted"), &[]),
            7.0
        );
        // active_connections falls back to the list length when absent.
        assert_eq!(
            value(find(&t, "secure_channel_pool_active_connections"), &[]),
            10.0
        );
    }

    #[test]
    fn colliding_native_families_are_dropped_and_counted() {
        let mut snap = fixture_snapshot(include_str!(
            "../../../tests/fixtures/status_systemtime.json"
        ));
        snap.metrics = ok(parse(
            "# TYPE secure_channel_up gauge\nsecure_channel_up 0\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1\nother 1\n",
        ));
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        assert_eq!(t.native.len(), 1);
        assert_eq!(t.native[0].name, "other");
        let dropped = find(&t, "secure_channel_exporter_native_families_dropped");
        assert_eq!(value(dropped, &[("reason", "name_collision")]), 2.0);
        assert_eq!(value(find(&t, "secure_channel_up"), &[]), 1.0);
    }

    #[test]
    fn valid_native_families_are_passed_without_a_copy() {
        // The published pool's document and the real captures are valid as
        // sent: checking them must not cost a copy of every family per scrape.
        for native in [
            include_str!("../../../tests/fixtures/native_metrics.txt"),
            include_str!("../../../tests/fixtures/realpool/busy/native.txt"),
        ] {
            let mut snap = fixture_snapshot(include_str!(
                "../../../tests/fixtures/status_systemtime.json"
            ));
            snap.metrics = ok(parse(native));
            let t = translate(&snap, &SourceCounters::default(), &options(1000));
            assert_eq!(t.native.len(), 4);
            assert!(t.native.iter().all(|f| matches!(f, Cow::Borrowed(_))));
        }
    }

    #[test]
    fn native_families_are_checked_by_openmetrics_rules() {
        let mut snap = fixture_snapshot(include_str!(
            "../../../tests/fixtures/status_systemtime.json"
        ));
        snap.metrics = ok(parse(concat!(
            "# TYPE g gauge\ng{a=\"1\"} 1 -5\ng{a=\"2\"} 2 5\n",
            "# TYPE c counter\nc_total{a=\"nan\"} NaN\nc_total{a=\"ok\"} 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 3\n",
            "# TYPE d histogram\nd_bucket{le=\"1\"} 2\nd_bucket{le=\"+Inf\"} 1\nd_sum 1\nd_count 1\n",
            "# TYPE n histogram\nn_bucket{le=\"+Inf\"} 1\nn_sum 1\n",
            "# TYPE q summary\nq{quantile=\"2\"} 1\n",
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum NaN\ns_count 1\n",
        )));
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        let names: Vec<&str> = t.native.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["g", "c", "h"]);
        // Buckets out of order are put in order, not dropped.
        let les: Vec<&str> = t.native[2]
            .samples
            .iter()
            .filter_map(|s| s.labels.first().map(|(_, v)| v.as_str()))
            .collect();
        assert_eq!(les, ["1", "+Inf"]);
        let fam = find(&t, "secure_channel_exporter_native_families_dropped");
        assert_eq!(value(fam, &[("reason", "invalid_histogram")]), 2.0);
        assert_eq!(value(fam, &[("reason", "invalid_summary")]), 1.0);
        assert_eq!(value(fam, &[("reason", "invalid_value")]), 1.0);
        let series = find(&t, "secure_channel_exporter_native_series_dropped");
        assert_eq!(value(series, &[("reason", "negative_timestamp")]), 1.0);
        assert_eq!(value(series, &[("reason", "invalid_value")]), 1.0);
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = encode_scrape(
                &snap,
                &SourceCounters::default(),
                &options(1000),
                &[],
                format,
            );
            assert!(!text.contains(" -5"), "{text}");
            assert_eq!(parse(&text).skipped_lines, 0);
        }
    }

    #[test]
    fn hostile_native_series_are_dropped_by_reason() {
        let mut snap = fixture_snapshot(include_str!(
            "../../../tests/fixtures/status_systemtime.json"
        ));
        snap.metrics = ok(parse(concat!(
            "# TYPE good_total counter\ngood_total{a=\"1\"} 1\ngood_total{a=\"1\"} 2\n",
            "good_total{a=\"2\",__name__=\"x\"} 1\ngood_total{a=\"3\"} -4\ngood_total{a=\"4\"} 4\n",
            "# TYPE clash gauge\nclash 1\n# TYPE clash_total counter\nclash_total 2\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} -1\nh_count -1\nh_sum 0\n",
            "up 0\n",
        )));
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        let names: Vec<&str> = t.native.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["good_total", "clash"]);
        let good: Vec<f64> = t.native[0].samples.iter().map(|s| s.value).collect();
        assert_eq!(good, [1.0, 4.0], "the first of two duplicates is kept");
        let fam = find(&t, "secure_channel_exporter_native_families_dropped");
        assert_eq!(value(fam, &[("reason", "name_collision")]), 1.0);
        assert_eq!(value(fam, &[("reason", "openmetrics_clash")]), 1.0);
        assert_eq!(value(fam, &[("reason", "negative_counter")]), 1.0);
        let series = find(&t, "secure_channel_exporter_native_series_dropped");
        assert_eq!(value(series, &[("reason", "duplicate")]), 1.0);
        assert_eq!(value(series, &[("reason", "reserved_label")]), 1.0);
        assert_eq!(value(series, &[("reason", "negative_counter")]), 1.0);
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = encode_scrape(
                &snap,
                &SourceCounters::default(),
                &options(1000),
                &[],
                format,
            );
            assert!(!text.contains("__name__"));
            assert_eq!(parse(&text).skipped_lines, 0);
        }
    }

    #[test]
    fn duplicate_connection_ids_keep_the_worst_once() {
        let json = r#"{"endpoint":"e","connections":[
            {"connection_id":1,"reconnects":0,"errors":0,"p95_latency_ms":1},
            {"connection_id":2,"reconnects":0,"errors":1,"p95_latency_ms":1},
            {"connection_id":"1","reconnects":0,"errors":5,"p95_latency_ms":1},
            {"connection_id":1,"reconnects":0,"errors":3,"p95_latency_ms":9}]}"#;
        let snap = fixture_snapshot(json);
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        let errors = find(&t, "secure_channel_connection_errors_total");
        let ids: Vec<(&str, f64)> = errors
            .samples
            .iter()
            .map(|s| (s.labels[1].1.as_str(), s.value))
            .collect();
        assert_eq!(ids, [("1", 5.0), ("2", 1.0)]);
        assert_eq!(
            value(
                find(&t, "secure_channel_exporter_duplicate_connections"),
                &[]
            ),
            2.0
        );
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = encode_scrape(
                &snap,
                &SourceCounters::default(),
                &options(1000),
                &[],
                format,
            );
            assert_eq!(
                text.matches(
                    "secure_channel_connection_errors_total{endpoint=\"e\",connection_id=\"1\"}"
                )
                .count(),
                1
            );
        }
    }

    #[test]
    fn long_label_values_are_cut_and_counted() {
        let endpoint = "e".repeat(200_000);
        let json = format!(
            r#"{{"endpoint":"{endpoint}","backend":"b","connections":[{{"connection_id":"{}","reconnects":0,"errors":0}}]}}"#,
            "i".repeat(5000)
        );
        let snap = fixture_snapshot(&json);
        let mut opts = options(1000);
        opts.max_label_value_len = 64;
        let text = encode_scrape(
            &snap,
            &SourceCounters::default(),
            &opts,
            &[],
            Format::PrometheusText,
        );
        assert!(text.len() < 20_000, "{} bytes", text.len());
        assert!(text.contains(&format!("endpoint=\"{}\"", "e".repeat(64))));
        let t = translate(&snap, &SourceCounters::default(), &opts);
        assert_eq!(
            value(
                find(&t, "secure_channel_exporter_label_values_truncated"),
                &[]
            ),
            2.0
        );
    }

    /// The old two-step rendering that `encode_scrape` must reproduce.
    fn two_step(
        snap: &Snapshot,
        counters: &SourceCounters,
        options: &TranslateOptions,
        extra: &[MetricFamily],
        format: Format,
    ) -> String {
        let t = translate(snap, counters, options);
        let mut encoder = Encoder::new(format, 0);
        encoder.families(&t.own);
        encoder.families(extra);
        encoder.families(t.native.iter().map(|f| &**f));
        encoder.finish()
    }

    fn sim_snapshot(config: crate::sim::SimConfig) -> Snapshot {
        let pool = crate::sim::SimPool::new(config, 1_764_072_000.0);
        Snapshot {
            status: status_ok(&pool.status_json()),
            health: ok(serde_json::from_str(&pool.health().1).unwrap()),
            metrics: ok(parse(&pool.metrics_text())),
        }
    }

    #[test]
    fn streamed_encoding_matches_translate_then_encode() {
        use crate::sim::{SimConfig, TimeFormat};
        let extra =
            [MetricFamily::new("process_x", "h", MetricType::Gauge).with_sample(vec![], 2.5)];
        let counters = SourceCounters {
            derived: Some(crate::pool::history::DerivedCounters {
                endpoint: "relay.example.net:443".into(),
                errors_seen: 3.0,
                reconnects_seen: 1.0,
                connections_opened: Some(12.0),
            }),
        };
        let mut snapshots = vec![
            fixture_snapshot(include_str!(
                "../../../tests/fixtures/status_systemtime.json"
            )),
            fixture_snapshot(include_str!("../../../tests/fixtures/status_rfc3339.json")),
            sim_snapshot(SimConfig {
                connections: 300,
                extended: true,
                backend: Some("b".into()),
                time_format: TimeFormat::Rfc3339,
                ..SimConfig::default()
            }),
            sim_snapshot(SimConfig {
                connections: 50,
                endpoint: "re\"l\\ay\nü:443".into(),
                time_format: TimeFormat::Unix,
                ..SimConfig::default()
            }),
            sim_snapshot(SimConfig {
                connections: 0,
                ..SimConfig::default()
            }),
        ];
        let mut broken =
            fixture_snapshot(include_str!("../../../tests/fixtures/status_rfc3339.json"));
        broken.status = failed(FailureReason::Decode);
        broken.metrics = failed(FailureReason::Timeout);
        snapshots.push(broken);
        for snap in &snapshots {
            for max in [0, 1, 100, 1000] {
                for fallback in [None, Some("fallback:1")] {
                    let options = TranslateOptions {
                        max_connections: max,
                        connections: ConnectionFilter::All,
                        fallback_endpoint: fallback,
                        build: &BuildInfo::CURRENT,
                        max_label_value_len: 1024,
                    };
                    for format in [Format::PrometheusText, Format::OpenMetrics] {
                        assert_eq!(
                            encode_scrape(snap, &counters, &options, &extra, format),
                            two_step(snap, &counters, &options, &extra, format),
                            "max {max}, {format:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn buffer_estimate_is_close_and_not_short() {
        use crate::sim::SimConfig;
        for extended in [false, true] {
            let snap = sim_snapshot(SimConfig {
                connections: 5000,
                extended,
                ..SimConfig::default()
            });
            let status = &snap.status.result.as_ref().unwrap().status;
            let (kept, _) = keep_worst(status.connections.iter().collect(), usize::MAX);
            let series = ConnectionSeries {
                endpoint: &status.endpoint,
                kept,
                max_len: 1024,
            };
            let mut encoder = Encoder::new(Format::PrometheusText, 0);
            series.encode(&mut encoder);
            let actual = encoder.finish().len();
            let estimate = series.estimated_bytes();
            assert!(
                estimate >= actual && estimate < actual + actual / 8,
                "extended {extended}: estimated {estimate} for {actual}"
            );
        }
    }

    #[test]
    fn own_families_encode_cleanly_in_both_formats() {
        let snap = fixture_snapshot(include_str!("../../../tests/fixtures/status_rfc3339.json"));
        let t = translate(&snap, &SourceCounters::default(), &options(1000));
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = encode(&t.own, format);
            let back = parse(&text);
            assert_eq!(back.skipped_lines, 0, "{text}");
            let samples: usize = t.own.iter().map(|f| f.samples.len()).sum();
            assert_eq!(back.sample_count(), samples);
        }
    }
}
