//! A bounded window of recent values of a pool's counters, for the rates
//! the API and the status page show (errors and reconnects seen, operations
//! and open failures from the native histogram). Fed by the pool observer
//! with every document it fetches, whoever asked for it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::history::DerivedCounters;
use super::native::{self, NativeSummary};

/// How far back the rates look.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Most points kept per series in the window, whatever the request rate.
const MAX_POINTS: usize = 512;
/// Rates need points at least this far apart.
const MIN_SPAN: Duration = Duration::from_secs(1);

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
    /// counted once, see [`history`](super::history)), per second.
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

/// The windows of one pool.
#[derive(Debug, Default)]
pub struct RateWindow {
    /// errors_seen, reconnects_seen.
    status: Series,
    /// observations, open failures, sum; with the buckets.
    native: Series,
}

impl RateWindow {
    /// The derived counters after a status document.
    pub fn push_status(&mut self, counters: &DerivedCounters) {
        self.status.push(Point {
            at: Instant::now(),
            values: vec![counters.errors_seen, counters.reconnects_seen],
            buckets: Vec::new(),
        });
    }

    /// What a native exposition said.
    pub fn push_native(&mut self, s: &NativeSummary) {
        self.native.push(Point {
            at: Instant::now(),
            values: vec![
                s.observations.unwrap_or(f64::NAN),
                s.open_failures.unwrap_or(f64::NAN),
                s.sum_ms.unwrap_or(f64::NAN),
            ],
            buckets: s.buckets.clone(),
        });
    }

    pub fn rates(&self) -> Rates {
        let native = &self.native;
        let window_sum_ms = native.span().and_then(|_| {
            let (first, last) = (native.points.front()?, native.points.back()?);
            let (a, b) = (*first.values.get(2)?, *last.values.get(2)?);
            (b >= a).then_some(b - a)
        });
        Rates {
            status_span: self.status.span(),
            errors_seen_per_second: self.status.rate(0),
            reconnects_seen_per_second: self.status.rate(1),
            native_span: native.span(),
            observations_per_second: native.rate(0),
            open_failures_per_second: native.rate(1),
            window_buckets: native.bucket_increase(),
            window_sum_ms,
        }
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
}
