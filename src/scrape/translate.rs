//! One scrape's fetched documents -> the exporter's metric families.
//!
//! Pure: no I/O, no clocks, no globals, so it is unit-tested on fixtures and
//! benchmarked on its own.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::exposition::catalogue::{self, FamilyDef};
use crate::exposition::encode::{escape_into, write_value, Encoder};
use crate::exposition::{Format, Label, MetricFamily, MetricType, ParsedExposition};
use crate::pool::history::DerivedCounters;
use crate::pool::limits::{badness, keep_worst};
use crate::pool::{Connection, Health, PoolStatus, Timestamp};
use crate::pool::{Document, FailureReason};

/// What one fetch of one document produced.
#[derive(Debug)]
pub struct SourceOutcome<T> {
    pub result: Result<T, FailureReason>,
    pub duration: Duration,
}

/// The three documents of one scrape.
#[derive(Debug)]
pub struct Snapshot {
    pub status: SourceOutcome<Arc<PoolStatus>>,
    pub health: SourceOutcome<Arc<Health>>,
    pub metrics: SourceOutcome<Arc<ParsedExposition>>,
}

impl Snapshot {
    fn source_results(&self) -> [(Document, Option<FailureReason>, Duration); 3] {
        [
            (
                Document::Status,
                self.status.result.as_ref().err().copied(),
                self.status.duration,
            ),
            (
                Document::Health,
                self.health.result.as_ref().err().copied(),
                self.health.duration,
            ),
            (
                Document::Metrics,
                self.metrics.result.as_ref().err().copied(),
                self.metrics.duration,
            ),
        ]
    }

    /// The pool's `endpoint`: from the status document, else from the
    /// native metrics' const label.
    pub fn endpoint(&self) -> Option<&str> {
        if let Ok(status) = &self.status.result {
            return Some(&status.endpoint);
        }
        let native = self.metrics.result.as_ref().ok()?;
        native
            .families
            .iter()
            .flat_map(|f| f.samples.first())
            .find_map(|s| s.labels.iter().find(|(n, _)| n == "endpoint"))
            .map(|(_, v)| v.as_str())
    }
}

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

/// Which listed connections get per-connection series
/// (`--collector.connections`).
///
/// Connection ids never repeat within a pool process, so every connection
/// the pool opens starts new series; the published pool lists only idle
/// connections, all with zero errors, reconnects and latency samples,
/// whose series say nothing the pool-level ones do not (docs/scale.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionFilter {
    /// Every listed connection (the default, as before).
    #[default]
    All,
    /// Only connections with something to say: an error, a reconnect or
    /// a latency sample.
    Used,
    /// No per-connection series; the pool-level ones stay.
    None,
}

impl ConnectionFilter {
    pub fn admits(self, c: &Connection) -> bool {
        match self {
            ConnectionFilter::All => true,
            ConnectionFilter::Used => {
                c.errors != 0.0 || c.reconnects != 0.0 || c.p95_latency_ms.is_some_and(|p| p != 0.0)
            }
            ConnectionFilter::None => false,
        }
    }
}

impl std::str::FromStr for ConnectionFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "used" => Ok(Self::Used),
            "none" => Ok(Self::None),
            _ => Err("expected all, used or none".into()),
        }
    }
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
        if let Ok(status) = &snapshot.status.result {
            truncated += pool_families(status, max_len, &mut head);
            let (unique, dropped) = dedupe_connections(&status.connections, max_len);
            duplicates = dropped;
            let admitted = unique
                .into_iter()
                .filter(|c| options.connections.admits(c))
                .collect();
            let (kept, left_out) = keep_worst(admitted, options.max_connections);
            omitted = left_out;
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
fn pool_families(status: &PoolStatus, max_len: usize, out: &mut Vec<MetricFamily>) -> usize {
    let endpoint = cap(&status.endpoint, max_len);
    let mut truncated = usize::from(endpoint.len() < status.endpoint.len());
    let ep = || vec![l("endpoint", endpoint)];

    let mut info_labels = ep();
    if let Some(backend) = &status.backend {
        truncated += usize::from(backend.len() > max_len);
        info_labels.push(l("backend", cap(backend, max_len)));
    }
    out.push(catalogue::POOL_INFO.family().with_sample(info_labels, 1.0));
    let active = status
        .active_connections
        .unwrap_or(status.connections.len() as f64);
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

/// A per-connection family labelled `endpoint` and `connection_id`; its
/// series is absent for a connection whose `value` is `None`.
struct ConnectionFamily {
    def: &'static FamilyDef,
    value: fn(&Connection) -> Option<f64>,
    /// Typical length of a value, to size the output buffer.
    value_len: usize,
}

const CONNECTION_FAMILIES: [ConnectionFamily; 5] = [
    ConnectionFamily {
        def: &catalogue::CONNECTION_ERRORS_TOTAL,
        value: |c| Some(c.errors),
        value_len: 3,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_RECONNECTS_TOTAL,
        value: |c| Some(c.reconnects),
        value_len: 2,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_P95_LATENCY_SECONDS,
        value: |c| c.p95_latency_ms.map(|v| v / 1000.0),
        value_len: 6,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_LAST_ACTIVITY_TIMESTAMP_SECONDS,
        // A time no calendar holds (i64::MAX seconds, 1e308) is dropped
        // and counted (`values_dropped`), never exported as a number.
        value: |c| {
            c.last_activity
                .filter(Timestamp::in_range)
                .map(|t| t.as_secs_f64())
        },
        value_len: 17,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_HEALTHY,
        value: |c| c.is_healthy.map(bool_value),
        value_len: 1,
    },
];

const CONNECTION_INFO: &FamilyDef = &catalogue::CONNECTION_INFO;

/// The connections that survived the cap, with their pool's endpoint
/// (already cut to `max_len`; ids and addresses are cut as written).
struct ConnectionSeries<'a> {
    endpoint: &'a str,
    kept: Vec<&'a Connection>,
    max_len: usize,
}

impl ConnectionSeries<'_> {
    /// Every per-connection family, empty ones included.
    fn families(&self) -> Vec<MetricFamily> {
        let (endpoint, max_len) = (self.endpoint, self.max_len);
        let labels = |conn: &Connection| {
            vec![
                l("endpoint", endpoint),
                l("connection_id", cap(conn.connection_id.as_str(), max_len)),
            ]
        };
        let mut out: Vec<MetricFamily> = CONNECTION_FAMILIES
            .iter()
            .map(|spec| {
                let mut family = spec.def.family();
                for conn in &self.kept {
                    if let Some(v) = (spec.value)(conn) {
                        family.push(labels(conn), v);
                    }
                }
                family
            })
            .collect();
        let mut info = CONNECTION_INFO.family();
        for conn in &self.kept {
            if let Some(addr) = &conn.remote_addr {
                let mut with_addr = labels(conn);
                with_addr.push(l("remote_addr", cap(addr, max_len)));
                info.push(with_addr, 1.0);
            }
        }
        out.push(info);
        out
    }

    /// Close to the size of [`encode`](Self::encode)'s text, erring a
    /// little high: the buffer is shared by every scrape of one fetch and
    /// lives until the last of them is sent, so an estimate far too high
    /// wastes memory under concurrent scrapes, and one too low doubles the
    /// buffer and copies it.
    fn estimated_bytes(&self) -> usize {
        // `{endpoint="` `",connection_id="` `"} ` and the newline.
        let per_line = self.endpoint.len() + 32;
        let ids: usize = self
            .kept
            .iter()
            .map(|c| c.connection_id.as_str().len().min(self.max_len))
            .sum();
        let Some(first) = self.kept.first() else {
            return 0;
        };
        let lines: usize = CONNECTION_FAMILIES
            .iter()
            // Pools report a field for all their connections or for none.
            .filter(|spec| (spec.value)(first).is_some())
            .map(|spec| {
                512 + self.kept.len() * (spec.def.name.len() + per_line + spec.value_len) + ids
            })
            .sum();
        let info = if first.remote_addr.is_some() {
            self.kept.len() * (CONNECTION_INFO.name.len() + per_line + 40) + ids
        } else {
            0
        };
        let total = lines + info;
        total + total / 32
    }

    /// Writes the same text as encoding [`families`](Self::families), one
    /// line at a time from a prefix shared by the whole family.
    fn encode(&self, encoder: &mut Encoder) {
        let mut endpoint = String::with_capacity(self.endpoint.len());
        escape_into(&mut endpoint, self.endpoint, true);
        let mut prefix = String::with_capacity(128);
        for spec in &CONNECTION_FAMILIES {
            if !self.kept.iter().any(|c| (spec.value)(c).is_some()) {
                continue;
            }
            encoder.header(spec.def.name, spec.def.help, spec.def.kind);
            line_prefix(&mut prefix, spec.def.name, &endpoint);
            let out = encoder.buffer();
            for conn in &self.kept {
                if let Some(v) = (spec.value)(conn) {
                    out.push_str(&prefix);
                    escape_into(out, cap(conn.connection_id.as_str(), self.max_len), true);
                    out.push_str("\"} ");
                    write_value(out, v);
                    out.push('\n');
                }
            }
        }
        if self.kept.iter().any(|c| c.remote_addr.is_some()) {
            encoder.header(
                CONNECTION_INFO.name,
                CONNECTION_INFO.help,
                MetricType::Gauge,
            );
            line_prefix(&mut prefix, CONNECTION_INFO.name, &endpoint);
            let out = encoder.buffer();
            for conn in &self.kept {
                if let Some(addr) = &conn.remote_addr {
                    out.push_str(&prefix);
                    escape_into(out, cap(conn.connection_id.as_str(), self.max_len), true);
                    out.push_str("\",remote_addr=\"");
                    escape_into(out, cap(addr, self.max_len), true);
                    out.push_str("\"} 1\n");
                }
            }
        }
    }
}

/// `name{endpoint="...",connection_id="`: what every line of a
/// per-connection family starts with.
fn line_prefix(prefix: &mut String, name: &str, escaped_endpoint: &str) {
    prefix.clear();
    prefix.push_str(name);
    prefix.push_str("{endpoint=\"");
    prefix.push_str(escaped_endpoint);
    prefix.push_str("\",connection_id=\"");
}

/// One connection per id (as exported, so `1` and `"1"` are one id, and so
/// are ids equal once cut to `max_len`): the worst of them, the first on a
/// tie, in the place of the first. Two series with one label set would
/// make Prometheus keep one of them silently. Returns how many were left
/// out.
fn dedupe_connections(connections: &[Connection], max_len: usize) -> (Vec<&Connection>, usize) {
    // The ids are the pool's to choose, so the hash is keyed (seeded per
    // process), but with foldhash rather than SipHash, which showed in
    // profiles of large pools.
    let mut seen: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(connections.len(), Default::default());
    let mut kept: Vec<&Connection> = Vec::with_capacity(connections.len());
    for conn in connections {
        let id = cap(conn.connection_id.as_str(), max_len);
        match seen.get(id) {
            Some(&at) => {
                let worse = badness(conn)
                    .partial_cmp(&badness(kept[at]))
                    .is_some_and(|o| o.is_gt());
                if worse {
                    kept[at] = conn;
                }
            }
            None => {
                seen.insert(id, kept.len());
                kept.push(conn);
            }
        }
    }
    let dropped = connections.len() - kept.len();
    (kept, dropped)
}

/// Why native families or series were not passed through, counted per
/// scrape.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct NativeDrops {
    /// Families named like ours or a reserved name (`up`, `process_*`, ...).
    name_collision: usize,
    /// Families whose names clash in OpenMetrics with an earlier family's
    /// (a counter `a_total` after a gauge `a`; a gauge `b_count` after a
    /// summary `b`): Prometheus would refuse the whole scrape.
    openmetrics_clash: usize,
    /// Series (families, for histograms and summaries, which cannot lose a
    /// series and stay valid) carrying a `__`-prefixed label, which
    /// Prometheus reserves (`__name__` makes it reject the scrape).
    reserved_label: Kind,
    /// Series with the same name and labels as an earlier one.
    duplicate: Kind,
    /// Counter (or histogram count and bucket) series with a negative value.
    negative_counter: Kind,
}

/// A count of series and one of whole families.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Kind {
    series: usize,
    families: usize,
}

/// What a native sample is wrong with, if anything.
fn sample_fault(
    family: &MetricFamily,
    sample: &crate::exposition::Sample,
    seen: &mut HashSet<(String, Vec<(String, String)>)>,
) -> Option<fn(&mut NativeDrops) -> &mut Kind> {
    if sample.labels.iter().any(|(n, _)| n.starts_with("__")) {
        return Some(|d| &mut d.reserved_label);
    }
    let counts = match family.kind {
        MetricType::Counter => !sample.name.ends_with("_created"),
        MetricType::Histogram => {
            sample.name.ends_with("_bucket") || sample.name.ends_with("_count")
        }
        MetricType::Summary => sample.name.ends_with("_count"),
        _ => false,
    };
    if counts && sample.value < 0.0 {
        return Some(|d| &mut d.negative_counter);
    }
    let mut labels: Vec<(String, String)> = sample
        .labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    labels.sort_unstable();
    if !seen.insert((sample.name.clone(), labels)) {
        return Some(|d| &mut d.duplicate);
    }
    None
}

/// The names a family takes in OpenMetrics: its family name there and
/// every sample name its type allows.
fn openmetrics_names(family: &MetricFamily) -> Vec<String> {
    let base = match family.kind {
        MetricType::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
        _ => &family.name,
    };
    let suffixes: &[&str] = match family.kind {
        MetricType::Counter => &["", "_total", "_created"],
        MetricType::Histogram => &["", "_bucket", "_sum", "_count", "_created"],
        MetricType::Summary => &["", "_sum", "_count", "_created"],
        MetricType::Gauge | MetricType::Untyped => &[""],
    };
    let mut names: Vec<String> = suffixes.iter().map(|s| format!("{base}{s}")).collect();
    names.extend(family.samples.iter().map(|s| s.name.clone()));
    names
}

/// Native families that may be re-emitted, and why the rest were not: a
/// name the catalogue reserves (ours, `process_`, `up`, `scrape_`), a name
/// clash in OpenMetrics, reserved labels, duplicate series or negative
/// counters. A family loses only its bad series when it stays valid
/// without them, the whole family otherwise (histograms, summaries).
fn pass_through(parsed: &ParsedExposition) -> (Vec<Cow<'_, MetricFamily>>, NativeDrops) {
    let mut drops = NativeDrops::default();
    let mut taken: HashSet<String> = HashSet::new();
    let mut kept = Vec::with_capacity(parsed.families.len());
    for family in &parsed.families {
        let reserved = catalogue::is_reserved(&family.name)
            || family
                .samples
                .iter()
                .any(|s| catalogue::is_reserved(&s.name));
        if reserved {
            drops.name_collision += 1;
            continue;
        }
        let mut seen = HashSet::new();
        let faults: Vec<_> = family
            .samples
            .iter()
            .map(|s| sample_fault(family, s, &mut seen))
            .collect();
        let family: Cow<'_, MetricFamily> = if faults.iter().all(Option::is_none) {
            Cow::Borrowed(family)
        } else if matches!(family.kind, MetricType::Histogram | MetricType::Summary) {
            if let Some(reason) = faults.iter().flatten().next() {
                reason(&mut drops).families += 1;
            }
            continue;
        } else {
            let mut owned =
                MetricFamily::new(family.name.clone(), family.help.clone(), family.kind);
            for (sample, fault) in family.samples.iter().zip(&faults) {
                match fault {
                    Some(reason) => reason(&mut drops).series += 1,
                    None => owned.samples.push(sample.clone()),
                }
            }
            Cow::Owned(owned)
        };
        if family.samples.is_empty() {
            continue;
        }
        let names = openmetrics_names(&family);
        if names.iter().any(|n| taken.contains(n)) {
            drops.openmetrics_clash += 1;
            continue;
        }
        taken.extend(names);
        kept.push(family);
    }
    (kept, drops)
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
    out.push(
        catalogue::EXPORTER_NATIVE_FAMILIES_DROPPED
            .family()
            .with_sample(reason("name_collision"), n.name_collision as f64)
            .with_sample(reason("invalid"), invalid as f64)
            .with_sample(reason("openmetrics_clash"), n.openmetrics_clash as f64)
            .with_sample(reason("reserved_label"), n.reserved_label.families as f64)
            .with_sample(reason("duplicate"), n.duplicate.families as f64)
            .with_sample(
                reason("negative_counter"),
                n.negative_counter.families as f64,
            ),
    );
    out.push(
        catalogue::EXPORTER_NATIVE_SERIES_DROPPED
            .family()
            .with_sample(reason("reserved_label"), n.reserved_label.series as f64)
            .with_sample(reason("duplicate"), n.duplicate.series as f64)
            .with_sample(reason("negative_counter"), n.negative_counter.series as f64)
            .with_sample(reason("limit"), over_limit as f64),
    );
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
    use super::*;
    use crate::exposition::{encode, parse, Format, Sample};

    fn ok<T>(value: T) -> SourceOutcome<Arc<T>> {
        SourceOutcome {
            result: Ok(Arc::new(value)),
            duration: Duration::from_millis(3),
        }
    }

    fn failed<T>(reason: FailureReason) -> SourceOutcome<T> {
        SourceOutcome {
            result: Err(reason),
            duration: Duration::from_millis(7),
        }
    }

    fn fixture_snapshot(status_json: &str) -> Snapshot {
        Snapshot {
            status: ok(serde_json::from_str(status_json).unwrap()),
            health: ok(serde_json::from_str(include_str!(
                "../../tests/fixtures/health_healthy.json"
            ))
            .unwrap()),
            metrics: ok(parse(include_str!(
                "../../tests/fixtures/native_metrics.txt"
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
            status: ok(serde_json::from_str(status).unwrap()),
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
                        "../../tests/fixtures/realpool/",
                        $dir,
                        "/status.json"
                    )),
                    include_str!(concat!(
                        "../../tests/fixtures/realpool/",
                        $dir,
                        "/health.json"
                    )),
                    include_str!(concat!(
                        "../../tests/fixtures/realpool/",
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
        let snap = fixture_snapshot(include_str!("../../tests/fixtures/status_systemtime.json"));
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
        let snap = fixture_snapshot(include_str!("../../tests/fixtures/status_rfc3339.json"));
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
        let mut snap =
            fixture_snapshot(include_str!("../../tests/fixtures/status_systemtime.json"));
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
        let mut snap =
            fixture_snapshot(include_str!("../../tests/fixtures/status_systemtime.json"));
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
    fn hostile_native_series_are_dropped_by_reason() {
        let mut snap =
            fixture_snapshot(include_str!("../../tests/fixtures/status_systemtime.json"));
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
            status: ok(serde_json::from_str(&pool.status_json()).unwrap()),
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
            fixture_snapshot(include_str!("../../tests/fixtures/status_systemtime.json")),
            fixture_snapshot(include_str!("../../tests/fixtures/status_rfc3339.json")),
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
        let mut broken = fixture_snapshot(include_str!("../../tests/fixtures/status_rfc3339.json"));
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
            let status = snap.status.result.as_ref().unwrap();
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
        let snap = fixture_snapshot(include_str!("../../tests/fixtures/status_rfc3339.json"));
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
