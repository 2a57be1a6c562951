//! The views of a pool, one typed struct each: the REST API's JSON answers
//! and what the status page renders, built from the observer's recent
//! reads. Pure apart from reading the clock.
//!
//! What the pool cannot tell is `null` with a reason in the answer's
//! `unknown` list, never a 0 that reads as a measurement (docs/pool-behaviour.md).

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use std::sync::Arc;

use secure_channel_client::{Connection, Health, PoolStatus, Timestamp};
use serde::Serialize;

use super::error::ApiError;
use super::query::{ConnectionsQuery, Order, SortKey};
use crate::pool::native;
use crate::pool::status_doc::connection_healthy;
use crate::pool::window::WINDOW;
use crate::pool::{Recent as Views, Served, StatusDoc};

const IN_USE_UNKNOWN: &str =
    "the pool reports no count of checked-out connections (the published pool lists only idle ones)";
const BREAKER_UNKNOWN: &str =
    "the pool's circuit breaker (open for 60 s after 5 failed handshakes) shows in no document";
const ERRORS_INVISIBLE: &str = "no listed connection shows use: the published pool never lists a connection that was used, so errors of operations are invisible to every document";

fn rfc3339(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Timestamp::from_unix(d.as_secs() as i64, d.subsec_nanos()).to_rfc3339()
}

/// Rounds to milliseconds' worth of digits, so answers stay readable.
fn round3(v: f64) -> f64 {
    // `+ 0.0` turns -0.0 (the sum of nothing) into 0.
    (v * 1000.0).round() / 1000.0 + 0.0
}

/// A number as the API writes it: whole numbers without a fraction (as
/// the pool writes them), others to three decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = round3(self.0);
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

/// Why a field of an answer is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownField {
    pub field: String,
    pub reason: String,
}

/// Why a connection's `last_activity` is null although the pool sent one.
const TIME_OUT_OF_RANGE: &str =
    "the pool sent a time out of range (outside years 1 to 9999); it is not used";

/// Collects the reasons for the `null`s of one answer.
#[derive(Default)]
struct Unknown(Vec<UnknownField>);

impl Unknown {
    fn number(&mut self, field: &str, value: Option<f64>, reason: &str) -> Option<Num> {
        match value.filter(|v| v.is_finite()) {
            Some(v) => Some(Num(v)),
            None => self.null(field, reason),
        }
    }

    fn null<T>(&mut self, field: &str, reason: &str) -> Option<T> {
        self.0.push(UnknownField {
            field: field.to_owned(),
            reason: reason.to_owned(),
        });
        None
    }
}

/// Why a copy is stale, or an error in place of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotError {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// `fetched_at`, `age_seconds`, `stale`, `source` and `error` of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    pub fetched_at: String,
    pub age_seconds: f64,
    pub stale: bool,
    pub source: String,
    pub error: Option<SnapshotError>,
}

impl Freshness {
    fn of<T>(served: &Served<T>, source: &str) -> Self {
        Self {
            fetched_at: rfc3339(served.fetched.wall),
            age_seconds: round3(served.age().as_secs_f64()),
            stale: served.stale,
            source: source.to_owned(),
            error: served.failure.as_ref().map(|f| {
                let e = ApiError::from_pool(f);
                SnapshotError {
                    code: e.code(),
                    message: e.to_string(),
                    at: Some(rfc3339(f.at)),
                }
            }),
        }
    }
}

/// `/api/v1/secure-channel/status`: the status document normalized (times
/// RFC 3339 UTC, ids as sent) with its freshness.
/// `--collector.max-connections` applies to the API as to a scrape: at
/// most that many connections (the worst) are kept, and an answer that
/// lists connections says how many the pool listed and how many it omits.
#[derive(Debug, Serialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub status: Arc<PoolStatus>,
    pub connections_listed: usize,
    pub connections_omitted: usize,
    #[serde(flatten)]
    pub freshness: Freshness,
}

pub fn status(views: &Views) -> Result<StatusView, ApiError> {
    let served = views.status()?;
    Ok(StatusView {
        status: served.value.status.clone(),
        connections_listed: served.value.listed,
        connections_omitted: served.value.omitted,
        freshness: Freshness::of(&served, &views.source),
    })
}

/// One connection with the exporter's reading of its health.
#[derive(Debug, Serialize)]
pub struct ConnectionItem<'a> {
    #[serde(flatten)]
    pub connection: &'a Connection,
    pub healthy: bool,
    pub healthy_basis: &'static str,
    /// Why a time the pool sent is null (out of any calendar's range).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<Vec<UnknownField>>,
}

pub fn connection_item(c: &Connection) -> ConnectionItem<'_> {
    let (healthy, healthy_basis) = connection_healthy(c);
    // The pool sent a time no calendar holds: it serializes as null; say why.
    let unknown = c.last_activity.is_some_and(|t| !t.in_range()).then(|| {
        let mut unknown = Unknown::default();
        unknown.null::<()>("last_activity", TIME_OUT_OF_RANGE);
        unknown.0
    });
    ConnectionItem {
        connection: c,
        healthy,
        healthy_basis,
        unknown,
    }
}

fn compare(a: &Connection, b: &Connection, key: SortKey) -> Ordering {
    let num = |x: Option<f64>| x.unwrap_or(f64::NEG_INFINITY);
    match key {
        SortKey::Id => match (a.connection_id.as_u64(), b.connection_id.as_u64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.connection_id.as_str().cmp(b.connection_id.as_str()),
        },
        SortKey::P95 => num(a.p95_latency_ms).total_cmp(&num(b.p95_latency_ms)),
        SortKey::Errors => a.errors.total_cmp(&b.errors),
        SortKey::Reconnects => a.reconnects.total_cmp(&b.reconnects),
        SortKey::LastActivity => num(a.last_activity.as_ref().map(Timestamp::as_secs_f64))
            .total_cmp(&num(b.last_activity.as_ref().map(Timestamp::as_secs_f64))),
    }
}

/// The listed connections filtered and sorted by `query`; ties keep the
/// id order, so pages are stable.
pub fn select<'a>(status: &'a StatusDoc, query: &ConnectionsQuery) -> Vec<&'a Connection> {
    let mut items: Vec<&Connection> = status
        .status
        .connections
        .iter()
        .filter(|c| query.healthy.is_none_or(|h| connection_healthy(c).0 == h))
        .collect();
    items.sort_by(|a, b| {
        let primary = compare(a, b, query.sort);
        let primary = match query.order {
            Order::Asc => primary,
            Order::Desc => primary.reverse(),
        };
        primary.then_with(|| compare(a, b, SortKey::Id))
    });
    items
}

/// `/api/v1/secure-channel/connections`: a page of the kept connections.
#[derive(Debug, Serialize)]
pub struct ConnectionList<'a> {
    pub items: Vec<ConnectionItem<'a>>,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub sort: &'static str,
    pub order: &'static str,
    pub connections_listed: usize,
    pub connections_omitted: usize,
    #[serde(flatten)]
    pub freshness: Freshness,
}

pub fn connections<'a>(
    views: &Views,
    served: &'a Served<StatusDoc>,
    query: &ConnectionsQuery,
) -> ConnectionList<'a> {
    let selected = select(&served.value, query);
    ConnectionList {
        total: selected.len(),
        items: selected
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .map(connection_item)
            .collect(),
        limit: query.limit,
        offset: query.offset,
        sort: query.sort.as_str(),
        order: query.order.as_str(),
        connections_listed: served.value.listed,
        connections_omitted: served.value.omitted,
        freshness: Freshness::of(served, &views.source),
    }
}

/// `/api/v1/secure-channel/connections/{id}`.
#[derive(Debug, Serialize)]
pub struct ConnectionOne<'a> {
    pub connection: ConnectionItem<'a>,
    #[serde(flatten)]
    pub freshness: Freshness,
}

pub fn connection<'a>(
    views: &Views,
    served: &'a Served<StatusDoc>,
    id: &str,
) -> Result<ConnectionOne<'a>, ApiError> {
    let found = served
        .value
        .status
        .connections
        .iter()
        .find(|c| c.connection_id.as_str() == id)
        .ok_or_else(|| ApiError::ConnectionNotFound { id: id.to_owned() })?;
    Ok(ConnectionOne {
        connection: connection_item(found),
        freshness: Freshness::of(served, &views.source),
    })
}

/// What the exporter concludes about the pool, beyond its own health word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    /// The pool says healthy.
    Healthy,
    /// The idle list is empty but operations flow and no open fails:
    /// callers hold every connection.
    Busy,
    /// Opening connections fails (relay trouble).
    FailingToOpen,
    /// The idle list is empty and no operation was measured (or none can
    /// be measured yet).
    IdleListEmpty,
    /// No usable health answer.
    Unreachable,
}

impl Assessment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Busy => "busy",
            Self::FailingToOpen => "failing_to_open",
            Self::IdleListEmpty => "idle_list_empty",
            Self::Unreachable => "unreachable",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Self::Healthy => "the pool has idle connections and says healthy",
            Self::Busy => "the pool answers 503 because its idle list is empty, but operations are flowing and no connection fails to open: callers hold every connection (a busy, working pool)",
            Self::FailingToOpen => "the pool fails to open new connections (its native errors counter rises): the relay is likely unreachable",
            Self::IdleListEmpty => "the pool answers 503 because its idle list is empty and no operation was measured in the window (or the window is not long enough yet): it may be stuck or unused",
            Self::Unreachable => "the pool's health document could not be fetched",
        }
    }

    pub fn of(healthy: bool, views: &Views) -> Self {
        let r = &views.rates;
        if healthy {
            Self::Healthy
        } else if r.open_failures_per_second.is_some_and(|v| v > 0.0) {
            Self::FailingToOpen
        } else if r.observations_per_second.is_some_and(|v| v > 0.0) {
            Self::Busy
        } else {
            Self::IdleListEmpty
        }
    }
}

/// The exporter's view next to the pool's health word.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExporterView {
    pub pool_api_reachable: bool,
    pub assessment: &'static str,
    pub explanation: &'static str,
    pub listed_connections: Option<usize>,
    pub operations_per_second: Option<Num>,
    pub open_failures_total: Option<Num>,
    pub open_failures_per_second: Option<Num>,
    pub window_seconds: Option<f64>,
}

fn exporter_view(healthy: bool, views: &Views) -> ExporterView {
    let assessment = Assessment::of(healthy, views);
    let r = &views.rates;
    let native = views.metrics().ok();
    ExporterView {
        pool_api_reachable: true,
        assessment: assessment.as_str(),
        explanation: assessment.explanation(),
        listed_connections: views.status().ok().map(|s| s.value.listed),
        operations_per_second: r.observations_per_second.map(Num),
        open_failures_total: native.and_then(|n| n.value.summary.open_failures).map(Num),
        open_failures_per_second: r.open_failures_per_second.map(Num),
        window_seconds: r.native_span.map(|d| round3(d.as_secs_f64())),
    }
}

/// `/api/v1/secure-channel/health`: 200 healthy, 503 unhealthy (the
/// pool's word), with the exporter's view telling a busy pool from a
/// stuck one; errors (502/504) when the pool cannot be asked.
#[derive(Debug, Serialize)]
pub struct HealthView {
    pub status: &'static str,
    pub pool: Arc<Health>,
    pub exporter_view: ExporterView,
    #[serde(flatten)]
    pub freshness: Freshness,
}

impl HealthView {
    pub fn code(&self) -> StatusCode {
        if self.status == "healthy" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

pub fn health(views: &Views) -> Result<HealthView, ApiError> {
    let served = views.health()?;
    let healthy = served.value.is_healthy().unwrap_or(false);
    Ok(HealthView {
        status: if healthy { "healthy" } else { "unhealthy" },
        pool: served.value.clone(),
        exporter_view: exporter_view(healthy, views),
        freshness: Freshness::of(&served, &views.source),
    })
}

/// Nearest-rank-free linear quantile of sorted values.
fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionCounts {
    pub listed: usize,
    pub healthy: usize,
    pub in_use: Option<Num>,
}

/// Errors or reconnects: summed over the listed connections, and seen
/// (the history `/metrics` exports as `*_seen_total`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeenCounts {
    pub listed_total: Num,
    pub seen_total: Option<Num>,
    pub seen_per_second: Option<Num>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct P95Spread {
    pub connections_with_samples: usize,
    pub min: Option<Num>,
    pub median: Option<Num>,
    pub p90: Option<Num>,
    pub max: Option<Num>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionAges {
    pub basis: &'static str,
    pub oldest: Option<Num>,
    pub newest: Option<Num>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyQuantiles {
    pub p50: Option<Num>,
    pub p95: Option<Num>,
    pub p99: Option<Num>,
}

/// What the pool's native exposition says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NativeStats {
    pub operations_per_second: Option<Num>,
    pub observations_total: Option<Num>,
    pub open_failures_total: Option<Num>,
    pub open_failures_per_second: Option<Num>,
    pub mean_latency_ms: Option<Num>,
    pub latency_ms: LatencyQuantiles,
    pub latency_basis: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Windows {
    pub limit: u64,
    pub status: Option<f64>,
    pub native: Option<f64>,
}

/// `/api/v1/secure-channel/stats`.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub endpoint: String,
    pub connections: ConnectionCounts,
    pub errors: SeenCounts,
    pub reconnects: SeenCounts,
    pub p95_latency_ms: P95Spread,
    pub connection_age_seconds: ConnectionAges,
    pub native: NativeStats,
    pub circuit_breaker_open: Option<bool>,
    pub returns_connections: bool,
    pub window_seconds: Windows,
    pub unknown: Vec<UnknownField>,
    #[serde(flatten)]
    pub freshness: Freshness,
}

impl StatsView {
    /// Why `field` is null, when it is.
    pub fn unknown_reason(&self, field: &str) -> Option<&str> {
        self.unknown
            .iter()
            .find(|u| u.field == field)
            .map(|u| u.reason.as_str())
    }
}

const RATE_WINDOW: &str = "needs two status documents at least 1 s apart within the window";

pub fn stats(views: &Views) -> Result<StatsView, ApiError> {
    let served = views.status()?;
    let summary = served.value.summary();
    let native = views.metrics();
    let r = &views.rates;
    let mut unknown = Unknown::default();
    let visible = summary.shows_use;

    let in_use = unknown.null("connections.in_use", IN_USE_UNKNOWN);
    let errors_rate = if visible {
        unknown.number(
            "errors.seen_per_second",
            r.errors_seen_per_second,
            RATE_WINDOW,
        )
    } else {
        unknown.null("errors.seen_per_second", ERRORS_INVISIBLE)
    };
    let reconnects_rate = unknown.number(
        "reconnects.seen_per_second",
        r.reconnects_seen_per_second,
        RATE_WINDOW,
    );
    // The history `/metrics` exports as `*_seen_total`: one history, so the
    // two always agree.
    let derived = views.derived.as_ref();
    let no_history = "no status document has been read yet";
    let seen_errors = unknown.number(
        "errors.seen_total",
        derived.map(|d| d.errors_seen),
        no_history,
    );
    let seen_reconnects = unknown.number(
        "reconnects.seen_total",
        derived.map(|d| d.reconnects_seen),
        no_history,
    );

    let p95s = &summary.p95_samples;
    let no_samples = "no listed connection has latency samples (the pool reports p95 0 for a connection never used, which is every connection the published pool lists)";
    let mut spread =
        [("min", 0.0), ("median", 0.5), ("p90", 0.9), ("max", 1.0)].map(|(name, q)| {
            unknown.number(
                &format!("p95_latency_ms.{name}"),
                quantile_sorted(p95s, q),
                no_samples,
            )
        });
    let p95_latency_ms = P95Spread {
        connections_with_samples: p95s.len(),
        min: spread[0].take(),
        median: spread[1].take(),
        p90: spread[2].take(),
        max: spread[3].take(),
    };

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let age_of = |t: f64| (now - t).max(0.0);
    let no_conn = "no connection is listed, or none reports last_activity";
    let connection_age_seconds = ConnectionAges {
        basis: "last_activity",
        oldest: unknown.number(
            "connection_age_seconds.oldest",
            summary.oldest_activity.map(age_of),
            no_conn,
        ),
        newest: unknown.number(
            "connection_age_seconds.newest",
            summary.newest_activity.map(age_of),
            no_conn,
        ),
    };

    let native_stats = match &native {
        Ok(n) => native_stats(&n.value.summary, views, &mut unknown),
        Err(e) => {
            let reason = format!("the pool's native metrics could not be fetched: {e}");
            let mut null = |field: &str| unknown.null::<Num>(&format!("native.{field}"), &reason);
            NativeStats {
                operations_per_second: null("operations_per_second"),
                observations_total: null("observations_total"),
                open_failures_total: null("open_failures_total"),
                open_failures_per_second: null("open_failures_per_second"),
                mean_latency_ms: null("mean_latency_ms"),
                latency_ms: LatencyQuantiles {
                    p50: null("latency_ms.p50"),
                    p95: null("latency_ms.p95"),
                    p99: null("latency_ms.p99"),
                },
                latency_basis: None,
            }
        }
    };
    let circuit_breaker_open = unknown.null("circuit_breaker_open", BREAKER_UNKNOWN);

    let mut freshness = Freshness::of(&served, &views.source);
    freshness.stale |= native.as_ref().is_ok_and(|n| n.stale);
    Ok(StatsView {
        endpoint: served.value.status.endpoint.clone(),
        connections: ConnectionCounts {
            listed: served.value.listed,
            healthy: summary.healthy,
            in_use,
        },
        errors: SeenCounts {
            listed_total: Num(summary.errors_total),
            seen_total: seen_errors,
            seen_per_second: errors_rate,
        },
        reconnects: SeenCounts {
            listed_total: Num(summary.reconnects_total),
            seen_total: seen_reconnects,
            seen_per_second: reconnects_rate,
        },
        p95_latency_ms,
        connection_age_seconds,
        native: native_stats,
        circuit_breaker_open,
        returns_connections: visible,
        window_seconds: Windows {
            limit: WINDOW.as_secs(),
            status: r.status_span.map(|d| round3(d.as_secs_f64())),
            native: r.native_span.map(|d| round3(d.as_secs_f64())),
        },
        unknown: unknown.0,
        freshness,
    })
}

/// The mean latency over the window when it has observations, else since
/// the pool started.
fn mean_latency(s: &native::NativeSummary, views: &Views) -> Option<f64> {
    let r = &views.rates;
    match (r.window_sum_ms, &r.window_buckets) {
        (Some(sum), Some(b)) if b.last().is_some_and(|(_, c)| *c > 0.0) => {
            b.last().map(|(_, c)| sum / c)
        }
        _ => s
            .sum_ms
            .zip(s.observations)
            .filter(|(_, n)| *n > 0.0)
            .map(|(sum, n)| sum / n),
    }
}

fn native_stats(s: &native::NativeSummary, views: &Views, unknown: &mut Unknown) -> NativeStats {
    let r = &views.rates;
    let window = "needs two fetches of the native metrics at least 1 s apart within the window";
    let no_hist = "the pool's native exposition has no *_latency_ms histogram";
    let (buckets, basis) = match &r.window_buckets {
        Some(b) if b.last().is_some_and(|(_, c)| *c > 0.0) => (Some(b.clone()), "window"),
        _ if !s.buckets.is_empty() => (Some(s.buckets.clone()), "since_pool_start"),
        _ => (None, ""),
    };
    let no_obs = if buckets.is_some() {
        "the histogram has no observations"
    } else {
        no_hist
    };
    let q = |q| buckets.as_deref().and_then(|b| native::quantile(q, b));
    NativeStats {
        operations_per_second: unknown.number(
            "native.operations_per_second",
            r.observations_per_second,
            if s.observations.is_some() {
                window
            } else {
                no_hist
            },
        ),
        observations_total: unknown.number("native.observations_total", s.observations, no_hist),
        open_failures_total: unknown.number(
            "native.open_failures_total",
            s.open_failures,
            "the pool's native exposition has no *_errors_total counter",
        ),
        open_failures_per_second: unknown.number(
            "native.open_failures_per_second",
            r.open_failures_per_second,
            window,
        ),
        mean_latency_ms: unknown.number("native.mean_latency_ms", mean_latency(s, views), no_obs),
        latency_ms: LatencyQuantiles {
            p50: unknown.number("native.latency_ms.p50", q(0.5), no_obs),
            p95: unknown.number("native.latency_ms.p95", q(0.95), no_obs),
            p99: unknown.number("native.latency_ms.p99", q(0.99), no_obs),
        },
        latency_basis: (!basis.is_empty()).then_some(basis),
    }
}

#[derive(Debug, Serialize)]
pub struct SecureChannelStatus {
    pub status: &'static str,
    pub assessment: &'static str,
    pub pool_healthy: Option<bool>,
    pub active_connections: Option<Num>,
    pub error_rate: Option<Num>,
    pub avg_latency_ms: Option<Num>,
    pub endpoint: Option<String>,
    pub source: String,
    pub stale: bool,
    pub error: Option<SnapshotError>,
}

#[derive(Debug, Serialize)]
pub struct Performance {
    pub connection_pool_utilization: Option<Num>,
    pub avg_response_time_ms: Option<Num>,
    pub error_rate_percent: Option<Num>,
    pub operations_per_second: Option<Num>,
}

/// The seed's "enhanced status" (`/api/v1/status`): the service, the pool
/// and performance, without the seed's application-specific parts.
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub service: &'static str,
    pub version: &'static str,
    pub revision: &'static str,
    pub timestamp: String,
    pub uptime: String,
    pub uptime_seconds: f64,
    pub status: &'static str,
    pub secure_channel: SecureChannelStatus,
    pub performance: Performance,
    pub unknown: Vec<UnknownField>,
}

impl ServiceStatus {
    pub fn code(&self) -> StatusCode {
        if self.status == "down" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }
}

pub fn service_status(views: &Views, uptime: Duration) -> ServiceStatus {
    let mut unknown = Unknown::default();
    let health: Result<Served<Health>, ApiError> = views.health().map_err(ApiError::from);
    let status = views.status().ok();
    let r = &views.rates;
    let (word, assessment, pool_healthy, health_doc) = match &health {
        Ok(h) => {
            let healthy = h.value.is_healthy().unwrap_or(false);
            (
                if healthy { "healthy" } else { "unhealthy" },
                Assessment::of(healthy, views),
                Some(healthy),
                Some(h.value.clone()),
            )
        }
        Err(_) => ("unreachable", Assessment::Unreachable, None, None),
    };
    let stale = status.as_ref().is_some_and(|s| s.stale);
    let overall = match assessment {
        Assessment::Unreachable => "down",
        Assessment::Healthy | Assessment::Busy if !stale => "ok",
        _ => "degraded",
    };
    let not_reported = "this pool build does not report it in its health document";
    let active = status
        .as_ref()
        .map(|s| s.value.listed as f64)
        .or_else(|| health_doc.as_ref().and_then(|h| h.active_connections));
    let secure_channel = SecureChannelStatus {
        status: word,
        assessment: assessment.as_str(),
        pool_healthy,
        active_connections: unknown.number(
            "secure_channel.active_connections",
            active,
            "neither the status nor the health document could be fetched",
        ),
        error_rate: unknown.number(
            "secure_channel.error_rate",
            health_doc.as_ref().and_then(|h| h.error_rate),
            not_reported,
        ),
        avg_latency_ms: unknown.number(
            "secure_channel.avg_latency_ms",
            health_doc.as_ref().and_then(|h| h.avg_latency_ms),
            not_reported,
        ),
        endpoint: status.as_ref().map(|s| s.value.status.endpoint.clone()),
        source: views.source.clone(),
        stale,
        error: health.as_ref().err().map(|e| SnapshotError {
            code: e.code(),
            message: e.to_string(),
            at: None,
        }),
    };
    let avg_response = views
        .metrics()
        .ok()
        .and_then(|n| mean_latency(&n.value.summary, views));
    let visible = status.as_ref().is_some_and(|s| s.value.summary().shows_use);
    let error_percent = if visible {
        r.errors_seen_per_second
            .zip(r.observations_per_second)
            .filter(|(_, ops)| *ops > 0.0)
            .map(|(e, ops)| 100.0 * e / ops)
    } else {
        None
    };
    let performance = Performance {
        connection_pool_utilization: unknown
            .null("performance.connection_pool_utilization", IN_USE_UNKNOWN),
        avg_response_time_ms: unknown.number(
            "performance.avg_response_time_ms",
            avg_response,
            "the pool's native latency histogram has no observations or could not be fetched",
        ),
        error_rate_percent: unknown.number(
            "performance.error_rate_percent",
            error_percent,
            if visible {
                "needs operations and two status documents at least 1 s apart within the window"
            } else {
                ERRORS_INVISIBLE
            },
        ),
        operations_per_second: unknown.number(
            "performance.operations_per_second",
            r.observations_per_second,
            "needs two fetches of the native metrics at least 1 s apart within the window",
        ),
    };
    let secs = uptime.as_secs();
    ServiceStatus {
        service: "secure-channel-exporter",
        version: env!("CARGO_PKG_VERSION"),
        revision: env!("BUILD_REVISION"),
        timestamp: rfc3339(SystemTime::now()),
        uptime: humantime::format_duration(Duration::from_secs(secs))
            .to_string()
            .replace(' ', ""),
        uptime_seconds: round3(uptime.as_secs_f64()),
        status: overall,
        secure_channel,
        performance,
        unknown: unknown.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> StatusDoc {
        let status: crate::pool::PoolStatus = serde_json::from_str(json).unwrap();
        StatusDoc::keep_all(status)
    }

    #[test]
    fn sorts_filters_and_pages_stably() {
        let s = status(
            r#"{"endpoint":"e","connections":[
            {"connection_id":10,"errors":1,"p95_latency_ms":600},
            {"connection_id":2,"errors":1,"p95_latency_ms":0},
            {"connection_id":3,"errors":5,"p95_latency_ms":12}]}"#,
        );
        let ids = |q: &ConnectionsQuery| -> Vec<String> {
            select(&s, q)
                .iter()
                .map(|c| c.connection_id.to_string())
                .collect()
        };
        assert_eq!(ids(&ConnectionsQuery::default()), ["2", "3", "10"]);
        let by_errors = ConnectionsQuery {
            sort: SortKey::Errors,
            order: Order::Desc,
            ..ConnectionsQuery::default()
        };
        // Ties (errors 1) keep id order.
        assert_eq!(ids(&by_errors), ["3", "2", "10"]);
        let unhealthy = ConnectionsQuery {
            healthy: Some(false),
            ..ConnectionsQuery::default()
        };
        assert_eq!(ids(&unhealthy), ["10"]);
        assert!(s.summary().shows_use);
        let unused =
            status(r#"{"endpoint":"e","connections":[{"connection_id":1,"p95_latency_ms":0}]}"#);
        assert!(!unused.summary().shows_use);
    }

    #[test]
    fn quantiles_of_sorted_values() {
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(quantile_sorted(&[4.0], 0.9), Some(4.0));
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.9), Some(9.0));
    }
}
