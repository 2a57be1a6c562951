//! The one cached snapshot of the pool behind every API view.
//!
//! Each of the pool's three documents has a slot: the last good copy, when
//! it was last asked for, and the error of the last attempt if it failed.
//! A view names the documents it needs; those not asked for within the TTL
//! are fetched, concurrently, by one refresh at a time, so concurrent
//! misses share one fetch and the pool sees at most one request per
//! document per TTL however many clients call the API. The TTL runs from
//! the last *attempt*, so a failing pool is not hammered either.
//!
//! When the last attempt failed, the last good copy is still served,
//! flagged stale with its age and the error, until it is older than
//! `stale_max`; then the view is an error (502, or 504 for a timeout).
//!
//! Successive good documents also feed the rates of `/stats` and of the
//! health view (a small bounded window of points, see [`WINDOW`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secure_channel_client::{CallOptions, Document, Error as ClientError, Health, PoolStatus};
use tokio::time::Instant;

use super::error::ApiError;
use super::native::{self, NativeSummary};
use crate::scrape::derived::PoolHistory;

/// How far back the rates of `/stats` and `/health` look.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Most points kept per series in the window, whatever the request rate.
const MAX_POINTS: usize = 512;
/// Rates need points at least this far apart.
const MIN_SPAN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// How long a fetched (or failed) document is reused.
    pub ttl: Duration,
    /// How old the last good copy may be and still be served when the pool
    /// fails.
    pub stale_max: Duration,
    /// Deadline of one fetch.
    pub timeout: Duration,
}

/// When a good copy was fetched.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Stamp {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// A failed fetch and when it happened.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: Arc<ClientError>,
    pub at: SystemTime,
}

/// The pool's native exposition as sent, with what the API reads from it.
#[derive(Debug)]
pub struct NativeDoc {
    pub text: String,
    pub summary: NativeSummary,
}

struct Good<T> {
    value: Arc<T>,
    fetched: Stamp,
}

impl<T> Clone for Good<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            fetched: self.fetched,
        }
    }
}

struct Slot<T> {
    good: Option<Good<T>>,
    attempted: Option<Instant>,
    /// Set when the latest attempt failed; cleared by a success.
    failure: Option<Failure>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            good: None,
            attempted: None,
            failure: None,
        }
    }
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self {
            good: self.good.clone(),
            attempted: self.attempted,
            failure: self.failure.clone(),
        }
    }
}

impl<T> Slot<T> {
    fn due(&self, ttl: Duration) -> bool {
        self.attempted.is_none_or(|at| at.elapsed() >= ttl)
    }

    fn store(&mut self, result: Result<T, ClientError>) {
        self.attempted = Some(Instant::now());
        match result {
            Ok(value) => {
                self.good = Some(Good {
                    value: Arc::new(value),
                    fetched: Stamp::now(),
                });
                self.failure = None;
            }
            Err(error) => {
                self.failure = Some(Failure {
                    error: Arc::new(error),
                    at: SystemTime::now(),
                });
            }
        }
    }

    /// The copy to serve: fresh, stale (the last attempt failed) while
    /// younger than `stale_max`, else the error.
    fn serve(&self, stale_max: Duration, allow_stale: bool) -> Result<Served<T>, ApiError> {
        match (&self.good, &self.failure) {
            (Some(good), None) => Ok(Served {
                value: good.value.clone(),
                fetched: good.fetched,
                stale: false,
                failure: None,
            }),
            (Some(good), Some(failure))
                if allow_stale && good.fetched.at.elapsed() <= stale_max =>
            {
                Ok(Served {
                    value: good.value.clone(),
                    fetched: good.fetched,
                    stale: true,
                    failure: Some(failure.clone()),
                })
            }
            (_, Some(failure)) => Err(ApiError::from_pool(&failure.error)),
            (None, None) => Err(ApiError::PoolUnreachable {
                detail: "the document has not been fetched yet".into(),
            }),
        }
    }
}

/// One document as a view gets it.
#[derive(Debug)]
pub struct Served<T> {
    pub value: Arc<T>,
    pub fetched: Stamp,
    /// The last attempt failed; this is the last good copy.
    pub stale: bool,
    /// Why, when stale.
    pub failure: Option<Failure>,
}

impl<T> Served<T> {
    pub fn age(&self) -> Duration {
        self.fetched.at.elapsed()
    }
}

/// How a request was served, for the cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Everything came from the cache (or from a fetch another request
    /// drove).
    Hit,
    /// This request fetched from the pool.
    Miss,
    /// The pool failed and the last good copy was served.
    Stale,
}

impl Lookup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

/// Counter values at one point, for rates.
#[derive(Debug, Clone)]
struct Point {
    at: Instant,
    values: Vec<f64>,
    buckets: Vec<(f64, f64)>,
}

/// A bounded window of points of a few counters.
#[derive(Debug, Default)]
struct Series {
    points: VecDeque<Point>,
}

impl Series {
    fn push(&mut self, point: Point) {
        self.points.push_back(point);
        let newest = self.points.back().map(|p| p.at);
        while self.points.len() > MAX_POINTS
            || self
                .points
                .front()
                .zip(newest)
                .is_some_and(|(old, new)| new.duration_since(old.at) > WINDOW)
        {
            self.points.pop_front();
        }
    }

    /// Span of the window, when long enough for a rate.
    fn span(&self) -> Option<Duration> {
        let (first, last) = (self.points.front()?, self.points.back()?);
        let span = last.at.duration_since(first.at);
        (span >= MIN_SPAN).then_some(span)
    }

    /// Per-second increase of counter `i` over the window, counting a drop
    /// as a restart from 0 (as Prometheus' `rate` does).
    fn rate(&self, i: usize) -> Option<f64> {
        let span = self.span()?;
        let mut increase = 0.0;
        let mut prev: Option<f64> = None;
        for v in self.points.iter().map(|p| p.values.get(i).copied()) {
            let v = v.filter(|v| v.is_finite())?;
            if let Some(p) = prev {
                increase += if v >= p { v - p } else { v };
            }
            prev = Some(v);
        }
        Some(increase / span.as_secs_f64())
    }

    /// Bucket increases over the window, when the window has no restart.
    fn bucket_increase(&self) -> Option<Vec<(f64, f64)>> {
        self.span()?;
        let (first, last) = (self.points.front()?, self.points.back()?);
        native::bucket_increase(&first.buckets, &last.buckets)
    }
}

/// Rates over the window; `None` until two points a second apart.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// Span of the status points.
    pub status_span: Option<Duration>,
    /// Errors and reconnects seen on listed connections (each connection
    /// counted once, see `scrape::derived`), per second.
    pub errors_seen_per_second: Option<f64>,
    pub reconnects_seen_per_second: Option<f64>,
    /// Span of the native points.
    pub native_span: Option<Duration>,
    /// Observations of the latency histogram per second.
    pub observations_per_second: Option<f64>,
    pub open_failures_per_second: Option<f64>,
    /// The histogram's observations within the window.
    pub window_buckets: Option<Vec<(f64, f64)>>,
    /// Milliseconds summed over the window's observations.
    pub window_sum_ms: Option<f64>,
}

/// The documents and rates one request works from.
pub struct Views {
    status: Slot<PoolStatus>,
    health: Slot<Health>,
    metrics: Slot<NativeDoc>,
    stale_max: Duration,
    pub rates: Rates,
    pub source: String,
}

impl Views {
    pub fn status(&self) -> Result<Served<PoolStatus>, ApiError> {
        self.status.serve(self.stale_max, true)
    }

    /// Health is never served stale: a health check that says "healthy"
    /// from a copy while the pool does not answer would lie.
    pub fn health(&self) -> Result<Served<Health>, ApiError> {
        self.health.serve(self.stale_max, false)
    }

    pub fn metrics(&self) -> Result<Served<NativeDoc>, ApiError> {
        self.metrics.serve(self.stale_max, true)
    }

    fn any_stale(&self, docs: &[Document]) -> bool {
        docs.iter().any(|doc| match doc {
            Document::Status => self.status().is_ok_and(|s| s.stale),
            Document::Health => false,
            Document::Metrics => self.metrics().is_ok_and(|s| s.stale),
        })
    }
}

#[derive(Default)]
struct State {
    status: Slot<PoolStatus>,
    health: Slot<Health>,
    metrics: Slot<NativeDoc>,
    history: PoolHistory,
    /// errors_seen, reconnects_seen.
    status_series: Series,
    /// observations, open failures, sum; with the buckets.
    native_series: Series,
}

impl State {
    fn due(&self, doc: Document, ttl: Duration) -> bool {
        match doc {
            Document::Status => self.status.due(ttl),
            Document::Health => self.health.due(ttl),
            Document::Metrics => self.metrics.due(ttl),
        }
    }

    fn store_status(&mut self, result: Result<PoolStatus, ClientError>) {
        if let Ok(status) = &result {
            self.history.observe(status);
            if let Some(c) = self.history.counters() {
                self.status_series.push(Point {
                    at: Instant::now(),
                    values: vec![c.errors_seen, c.reconnects_seen],
                    buckets: Vec::new(),
                });
            }
        }
        self.status.store(result);
    }

    fn store_metrics(&mut self, result: Result<NativeDoc, ClientError>) {
        if let Ok(doc) = &result {
            let s = &doc.summary;
            self.native_series.push(Point {
                at: Instant::now(),
                values: vec![
                    s.observations.unwrap_or(f64::NAN),
                    s.open_failures.unwrap_or(f64::NAN),
                    s.sum_ms.unwrap_or(f64::NAN),
                ],
                buckets: s.buckets.clone(),
            });
        }
        self.metrics.store(result);
    }

    fn rates(&self) -> Rates {
        let native = &self.native_series;
        let window_sum_ms = native.span().and_then(|_| {
            let (first, last) = (native.points.front()?, native.points.back()?);
            let (a, b) = (*first.values.get(2)?, *last.values.get(2)?);
            (b >= a).then_some(b - a)
        });
        Rates {
            status_span: self.status_series.span(),
            errors_seen_per_second: self.status_series.rate(0),
            reconnects_seen_per_second: self.status_series.rate(1),
            native_span: native.span(),
            observations_per_second: native.rate(0),
            open_failures_per_second: native.rate(1),
            window_buckets: native.bucket_increase(),
            window_sum_ms,
        }
    }
}

pub struct SnapshotCache {
    client: secure_channel_client::PoolClient,
    settings: CacheSettings,
    state: Mutex<State>,
    /// One refresh at a time: later misses wait, then find it fresh.
    refresh: tokio::sync::Mutex<()>,
}

impl SnapshotCache {
    pub fn new(client: secure_channel_client::PoolClient, settings: CacheSettings) -> Self {
        Self {
            client,
            settings,
            state: Mutex::default(),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// The pool's base URL, credentials removed.
    pub fn source(&self) -> &str {
        self.client.base_url()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn due(&self, docs: &[Document]) -> Vec<Document> {
        let state = self.state();
        docs.iter()
            .copied()
            .filter(|doc| state.due(*doc, self.settings.ttl))
            .collect()
    }

    /// The views of `docs`, fetching those not asked for within the TTL.
    pub async fn get(self: &Arc<Self>, docs: &[Document]) -> (Views, Lookup) {
        let mut fetched = false;
        if !self.due(docs).is_empty() {
            // The fetch runs on its own task: a client hanging up must not
            // cancel a fetch that other requests are waiting for.
            let me = self.clone();
            let wanted = docs.to_vec();
            fetched = tokio::spawn(async move { me.refresh(&wanted).await })
                .await
                .unwrap_or(false);
        }
        let views = self.views();
        let lookup = if views.any_stale(docs) {
            Lookup::Stale
        } else if fetched {
            Lookup::Miss
        } else {
            Lookup::Hit
        };
        (views, lookup)
    }

    fn views(&self) -> Views {
        let state = self.state();
        Views {
            status: state.status.clone(),
            health: state.health.clone(),
            metrics: state.metrics.clone(),
            stale_max: self.settings.stale_max,
            rates: state.rates(),
            source: self.client.base_url().to_owned(),
        }
    }

    /// Fetches the documents of `docs` that are still due once this
    /// refresh has its turn; whether it fetched anything.
    async fn refresh(&self, docs: &[Document]) -> bool {
        let _turn = self.refresh.lock().await;
        let due = self.due(docs);
        if due.is_empty() {
            return false;
        }
        let deadline = Instant::now() + self.settings.timeout;
        let wants = |doc| due.contains(&doc);
        let (status, health, metrics) = tokio::join!(
            async {
                if wants(Document::Status) {
                    Some(
                        self.client
                            .status(CallOptions::new().deadline(deadline))
                            .await,
                    )
                } else {
                    None
                }
            },
            async {
                if wants(Document::Health) {
                    Some(
                        self.client
                            .health(CallOptions::new().deadline(deadline))
                            .await,
                    )
                } else {
                    None
                }
            },
            async {
                if wants(Document::Metrics) {
                    Some(self.native(deadline).await)
                } else {
                    None
                }
            },
        );
        let mut state = self.state();
        for (doc, error) in [
            (
                Document::Status,
                status.as_ref().and_then(|r| r.as_ref().err()),
            ),
            (
                Document::Health,
                health.as_ref().and_then(|r| r.as_ref().err()),
            ),
            (
                Document::Metrics,
                metrics.as_ref().and_then(|r| r.as_ref().err()),
            ),
        ] {
            if let Some(e) = error {
                tracing::warn!(document = doc.as_str(), error = %e, "API: pool fetch failed");
            }
        }
        if let Some(r) = status {
            state.store_status(r);
        }
        if let Some(r) = health {
            state.health.store(r);
        }
        if let Some(r) = metrics {
            state.store_metrics(r);
        }
        true
    }

    /// The native exposition as sent, and a summary of it read within the
    /// scrape path's default limits (a hostile exposition cannot make the
    /// API hold more than a scrape would).
    async fn native(&self, deadline: Instant) -> Result<NativeDoc, ClientError> {
        let fetched = self
            .client
            .fetch(Document::Metrics, CallOptions::new().deadline(deadline))
            .await?;
        let parsed =
            crate::pool::client::parse_native(&fetched, crate::scrape::Limits::DEFAULT.parse())?;
        let text = fetched.text()?.to_owned();
        let summary = native::summarize(&parsed);
        Ok(NativeDoc { text, summary })
    }

    /// Takes in a poll of the client's [`Monitor`], which keeps the status
    /// and health documents warm (`--monitor.interval`).
    ///
    /// [`Monitor`]: secure_channel_client::Monitor
    pub fn accept_monitor(&self, snapshot: &secure_channel_client::Snapshot) {
        let mut state = self.state();
        state.store_status(snapshot.status.clone());
        state.health.store(snapshot.health.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: Instant, v: f64) -> Point {
        Point {
            at,
            values: vec![v],
            buckets: vec![(1.0, v), (f64::INFINITY, v)],
        }
    }

    #[test]
    fn rates_count_restarts_and_need_a_second() {
        let t0 = Instant::now();
        let mut s = Series::default();
        s.push(point(t0, 10.0));
        assert_eq!(s.rate(0), None);
        s.push(point(t0 + Duration::from_millis(500), 12.0));
        assert_eq!(s.rate(0), None, "half a second is too short");
        s.push(point(t0 + Duration::from_secs(2), 20.0));
        assert_eq!(s.rate(0), Some(5.0));
        // A restart: 20 -> 4 counts as 4 more.
        s.push(point(t0 + Duration::from_secs(4), 4.0));
        assert_eq!(s.rate(0), Some(14.0 / 4.0));
        assert_eq!(s.bucket_increase(), None, "restart inside the window");
    }

    #[test]
    fn the_window_is_bounded_in_time_and_points() {
        let t0 = Instant::now();
        let mut s = Series::default();
        for i in 0..(MAX_POINTS as u64 + 50) {
            s.push(point(t0 + Duration::from_millis(i), i as f64));
        }
        assert_eq!(s.points.len(), MAX_POINTS);
        s.push(point(t0 + WINDOW + Duration::from_secs(10), 0.0));
        assert_eq!(s.points.len(), 1);
    }

    /// A timeout, as the client reports a call whose deadline had passed.
    fn expired_call_error() -> ClientError {
        let client = secure_channel_client::PoolClient::builder()
            .build()
            .unwrap();
        let expired = CallOptions::new().deadline(Instant::now() - Duration::from_millis(1));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.status(expired))
            .unwrap_err()
    }

    #[test]
    fn stale_then_error_after_stale_max() {
        let mut slot = Slot::<u32>::default();
        assert!(slot.serve(Duration::from_secs(60), true).is_err());
        slot.store(Ok(7));
        let served = slot.serve(Duration::from_secs(60), true).unwrap();
        assert!(!served.stale);
        slot.store(Err(expired_call_error()));
        let served = slot.serve(Duration::from_secs(60), true).unwrap();
        assert!(served.stale);
        assert_eq!(*served.value, 7);
        // Not for health, and not past stale_max.
        assert_eq!(
            slot.serve(Duration::from_secs(60), false)
                .unwrap_err()
                .status(),
            504
        );
        std::thread::sleep(Duration::from_millis(5));
        let too_old = slot.serve(Duration::from_millis(1), true);
        assert_eq!(too_old.unwrap_err().status(), 504);
    }
}
