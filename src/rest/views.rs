//! The API's JSON answers, built from the cached documents. Pure apart
//! from reading the clock.
//!
//! What the pool cannot tell is `null` with a reason in the answer's
//! `unknown` list, never a 0 that reads as a measurement (docs/pool-behaviour.md).

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use secure_channel_client::{Connection, Health, Timestamp};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::query::{ConnectionsQuery, Order, SortKey};
use crate::pool::native;
use crate::pool::observer::connection_healthy;
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

/// A number as JSON: whole numbers without a fraction (as the pool
/// writes them), others to three decimals.
fn number(v: f64) -> Value {
    let v = round3(v);
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Collects the reasons for the `null`s of one answer.
#[derive(Default)]
struct Unknown(Vec<Value>);

impl Unknown {
    fn number(&mut self, field: &str, value: Option<f64>, reason: &str) -> Value {
        match value.filter(|v| v.is_finite()) {
            Some(v) => number(v),
            None => self.null(field, reason),
        }
    }

    fn null(&mut self, field: &str, reason: &str) -> Value {
        self.0.push(json!({"field": field, "reason": reason}));
        Value::Null
    }

    fn into_value(self) -> Value {
        Value::Array(self.0)
    }
}

/// `fetched_at`, `age_seconds`, `stale`, `source` and `error` of an answer.
fn freshness<T>(served: &Served<T>, source: &str, out: &mut Map<String, Value>) {
    out.insert("fetched_at".into(), json!(rfc3339(served.fetched.wall)));
    out.insert(
        "age_seconds".into(),
        json!(round3(served.age().as_secs_f64())),
    );
    out.insert("stale".into(), json!(served.stale));
    out.insert("source".into(), json!(source));
    let error = served.failure.as_ref().map(|f| {
        let e = ApiError::from_pool(f);
        json!({"code": e.code(), "message": e.to_string(), "at": rfc3339(f.at)})
    });
    out.insert("error".into(), error.unwrap_or(Value::Null));
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `/api/v1/secure-channel/status`: the status document normalized (times
/// RFC 3339 UTC, ids as sent) with its freshness.
/// `--collector.max-connections` applies to the API as to a scrape: at
/// most that many connections (the worst) are kept, and an answer that
/// lists connections says how many the pool listed and how many it omits.
fn cap(doc: &StatusDoc, out: &mut Map<String, Value>) {
    out.insert("connections_listed".into(), json!(doc.listed));
    out.insert("connections_omitted".into(), json!(doc.omitted));
}

pub fn status(views: &Views) -> Result<Value, ApiError> {
    let served = views.status()?;
    let mut out = object(serde_json::to_value(&*served.value.status).unwrap_or_default());
    cap(&served.value, &mut out);
    freshness(&served, &views.source, &mut out);
    Ok(Value::Object(out))
}

pub fn connection_item(c: &Connection) -> Value {
    let mut out = object(serde_json::to_value(c).unwrap_or_default());
    let (healthy, basis) = connection_healthy(c);
    out.insert("healthy".into(), json!(healthy));
    out.insert("healthy_basis".into(), json!(basis));
    Value::Object(out)
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

/// `/api/v1/secure-channel/connections`.
pub fn connections(views: &Views, query: &ConnectionsQuery) -> Result<Value, ApiError> {
    let served = views.status()?;
    let selected = select(&served.value, query);
    let items: Vec<Value> = selected
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|c| connection_item(c))
        .collect();
    let mut out = Map::new();
    out.insert("items".into(), Value::Array(items));
    out.insert("total".into(), json!(selected.len()));
    out.insert("limit".into(), json!(query.limit));
    out.insert("offset".into(), json!(query.offset));
    out.insert("sort".into(), json!(query.sort.as_str()));
    out.insert("order".into(), json!(query.order.as_str()));
    cap(&served.value, &mut out);
    freshness(&served, &views.source, &mut out);
    Ok(Value::Object(out))
}

/// `/api/v1/secure-channel/connections/{id}`.
pub fn connection(views: &Views, id: &str) -> Result<Value, ApiError> {
    let served = views.status()?;
    let found = served
        .value
        .status
        .connections
        .iter()
        .find(|c| c.connection_id.as_str() == id)
        .ok_or_else(|| ApiError::ConnectionNotFound { id: id.to_owned() })?;
    let mut out = Map::new();
    out.insert("connection".into(), connection_item(found));
    freshness(&served, &views.source, &mut out);
    Ok(Value::Object(out))
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
fn exporter_view(healthy: bool, views: &Views) -> Value {
    let assessment = Assessment::of(healthy, views);
    let r = &views.rates;
    let native = views.metrics().ok();
    let listed = views.status().ok().map(|s| s.value.listed);
    json!({
        "pool_api_reachable": true,
        "assessment": assessment.as_str(),
        "explanation": assessment.explanation(),
        "listed_connections": listed,
        "operations_per_second": r.observations_per_second.map(number),
        "open_failures_total": native.and_then(|n| n.value.summary.open_failures).map(number),
        "open_failures_per_second": r.open_failures_per_second.map(number),
        "window_seconds": r.native_span.map(|d| round3(d.as_secs_f64())),
    })
}

/// `/api/v1/secure-channel/health`: 200 healthy, 503 unhealthy (the
/// pool's word), with the exporter's view telling a busy pool from a
/// stuck one; errors (502/504) when the pool cannot be asked.
pub fn health(views: &Views) -> Result<(StatusCode, Value), ApiError> {
    let served = views.health()?;
    let healthy = served.value.is_healthy().unwrap_or(false);
    let mut out = Map::new();
    out.insert(
        "status".into(),
        json!(if healthy { "healthy" } else { "unhealthy" }),
    );
    out.insert(
        "pool".into(),
        serde_json::to_value(&*served.value).unwrap_or_default(),
    );
    out.insert("exporter_view".into(), exporter_view(healthy, views));
    freshness(&served, &views.source, &mut out);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Value::Object(out)))
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

/// `/api/v1/secure-channel/stats`.
pub fn stats(views: &Views) -> Result<Value, ApiError> {
    let served = views.status()?;
    let status = &*served.value.status;
    let summary = &served.value.summary;
    let native = views.metrics();
    let r = &views.rates;
    let mut unknown = Unknown::default();
    let listed = served.value.listed;
    let healthy = summary.healthy;
    let visible = summary.shows_use;

    let in_use = unknown.null("connections.in_use", IN_USE_UNKNOWN);
    let errors_rate = if visible {
        unknown.number(
            "errors.seen_per_second",
            r.errors_seen_per_second,
            "needs two status documents at least 1 s apart within the window",
        )
    } else {
        unknown.null("errors.seen_per_second", ERRORS_INVISIBLE)
    };
    let reconnects_rate = unknown.number(
        "reconnects.seen_per_second",
        r.reconnects_seen_per_second,
        "needs two status documents at least 1 s apart within the window",
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
    let mut p95 = Map::new();
    p95.insert("connections_with_samples".into(), json!(p95s.len()));
    for (name, q) in [("min", 0.0), ("median", 0.5), ("p90", 0.9), ("max", 1.0)] {
        let v = quantile_sorted(p95s, q);
        p95.insert(
            name.into(),
            unknown.number(&format!("p95_latency_ms.{name}"), v, no_samples),
        );
    }

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let age_of = |t: f64| (now - t).max(0.0);
    let no_conn = "no connection is listed, or none reports last_activity";
    let oldest = summary.oldest_activity.map(age_of);
    let newest = summary.newest_activity.map(age_of);
    let age = json!({
        "basis": "last_activity",
        "oldest": unknown.number("connection_age_seconds.oldest", oldest, no_conn),
        "newest": unknown.number("connection_age_seconds.newest", newest, no_conn),
    });

    let native_value = match &native {
        Ok(n) => native_stats(&n.value.summary, views, &mut unknown),
        Err(e) => {
            let reason = format!("the pool's native metrics could not be fetched: {e}");
            json!({
                "operations_per_second": unknown.null("native.operations_per_second", &reason),
                "observations_total": unknown.null("native.observations_total", &reason),
                "open_failures_total": unknown.null("native.open_failures_total", &reason),
                "open_failures_per_second": unknown.null("native.open_failures_per_second", &reason),
                "mean_latency_ms": unknown.null("native.mean_latency_ms", &reason),
                "latency_ms": {
                    "p50": unknown.null("native.latency_ms.p50", &reason),
                    "p95": unknown.null("native.latency_ms.p95", &reason),
                    "p99": unknown.null("native.latency_ms.p99", &reason),
                },
                "latency_basis": Value::Null,
            })
        }
    };
    let breaker = unknown.null("circuit_breaker_open", BREAKER_UNKNOWN);

    let mut out = Map::new();
    out.insert("endpoint".into(), json!(status.endpoint));
    out.insert(
        "connections".into(),
        json!({"listed": listed, "healthy": healthy, "in_use": in_use}),
    );
    out.insert(
        "errors".into(),
        json!({"listed_total": number(summary.errors_total), "seen_total": seen_errors, "seen_per_second": errors_rate}),
    );
    out.insert(
        "reconnects".into(),
        json!({"listed_total": number(summary.reconnects_total), "seen_total": seen_reconnects, "seen_per_second": reconnects_rate}),
    );
    out.insert("p95_latency_ms".into(), Value::Object(p95));
    out.insert("connection_age_seconds".into(), age);
    out.insert("native".into(), native_value);
    out.insert("circuit_breaker_open".into(), breaker);
    out.insert("returns_connections".into(), json!(visible));
    out.insert(
        "window_seconds".into(),
        json!({
            "limit": WINDOW.as_secs(),
            "status": r.status_span.map(|d| round3(d.as_secs_f64())),
            "native": r.native_span.map(|d| round3(d.as_secs_f64())),
        }),
    );
    out.insert("unknown".into(), unknown.into_value());
    freshness(&served, &views.source, &mut out);
    if native.as_ref().is_ok_and(|n| n.stale) {
        out.insert("stale".into(), json!(true));
    }
    Ok(Value::Object(out))
}

fn native_stats(s: &native::NativeSummary, views: &Views, unknown: &mut Unknown) -> Value {
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
    let mean = match (r.window_sum_ms, &r.window_buckets) {
        (Some(sum), Some(b)) if b.last().is_some_and(|(_, c)| *c > 0.0) => {
            b.last().map(|(_, c)| sum / c)
        }
        _ => s
            .sum_ms
            .zip(s.observations)
            .filter(|(_, n)| *n > 0.0)
            .map(|(sum, n)| sum / n),
    };
    json!({
        "operations_per_second": unknown.number("native.operations_per_second", r.observations_per_second, if s.observations.is_some() { window } else { no_hist }),
        "observations_total": unknown.number("native.observations_total", s.observations, no_hist),
        "open_failures_total": unknown.number("native.open_failures_total", s.open_failures, "the pool's native exposition has no *_errors_total counter"),
        "open_failures_per_second": unknown.number("native.open_failures_per_second", r.open_failures_per_second, window),
        "mean_latency_ms": unknown.number("native.mean_latency_ms", mean, no_obs),
        "latency_ms": {
            "p50": unknown.number("native.latency_ms.p50", q(0.5), no_obs),
            "p95": unknown.number("native.latency_ms.p95", q(0.95), no_obs),
            "p99": unknown.number("native.latency_ms.p99", q(0.99), no_obs),
        },
        "latency_basis": if basis.is_empty() { Value::Null } else { json!(basis) },
    })
}

/// The "enhanced status" of the pool's earlier Go service (`/api/v1/status`):
/// the service, the pool and performance, without that service's
/// application-specific parts.
pub fn service_status(views: &Views, uptime: Duration) -> (StatusCode, Value) {
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
    let secure_channel = json!({
        "status": word,
        "assessment": assessment.as_str(),
        "pool_healthy": pool_healthy,
        "active_connections": unknown.number("secure_channel.active_connections", active, "neither the status nor the health document could be fetched"),
        "error_rate": unknown.number("secure_channel.error_rate", health_doc.as_ref().and_then(|h| h.error_rate), not_reported),
        "avg_latency_ms": unknown.number("secure_channel.avg_latency_ms", health_doc.as_ref().and_then(|h| h.avg_latency_ms), not_reported),
        "endpoint": status.as_ref().map(|s| s.value.status.endpoint.clone()),
        "source": views.source,
        "stale": stale,
        "error": health.as_ref().err().map(|e| json!({"code": e.code(), "message": e.to_string()})),
    });
    let native = views.metrics().ok();
    let avg_response = match (r.window_sum_ms, &r.window_buckets) {
        (Some(sum), Some(b)) if b.last().is_some_and(|(_, c)| *c > 0.0) => {
            b.last().map(|(_, c)| sum / c)
        }
        _ => native.as_ref().and_then(|n| {
            let s = &n.value.summary;
            s.sum_ms
                .zip(s.observations)
                .filter(|(_, n)| *n > 0.0)
                .map(|(sum, n)| sum / n)
        }),
    };
    let visible = status.as_ref().is_some_and(|s| s.value.summary.shows_use);
    let error_percent = if visible {
        r.errors_seen_per_second
            .zip(r.observations_per_second)
            .filter(|(_, ops)| *ops > 0.0)
            .map(|(e, ops)| 100.0 * e / ops)
    } else {
        None
    };
    let performance = json!({
        "connection_pool_utilization": unknown.null("performance.connection_pool_utilization", IN_USE_UNKNOWN),
        "avg_response_time_ms": unknown.number("performance.avg_response_time_ms", avg_response, "the pool's native latency histogram has no observations or could not be fetched"),
        "error_rate_percent": unknown.number("performance.error_rate_percent", error_percent, if visible { "needs operations and two status documents at least 1 s apart within the window" } else { ERRORS_INVISIBLE }),
        "operations_per_second": unknown.number("performance.operations_per_second", r.observations_per_second, "needs two fetches of the native metrics at least 1 s apart within the window"),
    });
    let secs = uptime.as_secs();
    let body = json!({
        "service": "secure-channel-exporter",
        "version": env!("CARGO_PKG_VERSION"),
        "revision": env!("BUILD_REVISION"),
        "timestamp": rfc3339(SystemTime::now()),
        "uptime": humantime::format_duration(Duration::from_secs(secs)).to_string().replace(' ', ""),
        "uptime_seconds": round3(uptime.as_secs_f64()),
        "status": overall,
        "secure_channel": secure_channel,
        "performance": performance,
        "unknown": unknown.into_value(),
    });
    let code = if overall == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, body)
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
        assert!(s.summary.shows_use);
        let unused =
            status(r#"{"endpoint":"e","connections":[{"connection_id":1,"p95_latency_ms":0}]}"#);
        assert!(!unused.summary.shows_use);
    }

    #[test]
    fn quantiles_of_sorted_values() {
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(quantile_sorted(&[4.0], 0.9), Some(4.0));
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.9), Some(9.0));
    }
}
