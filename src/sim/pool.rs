//! The simulated pool's state and how it moves, in two models of the pool:
//!
//! * [`Model::Published`] reproduces the pool built from its public source
//!   (docs/pool-behaviour.md): callers check connections out and never give them
//!   back, so only idle connections are listed, with zero stats because they
//!   were never used; a cleanup task drops old and slow idle connections and
//!   refills the list to `min_idle`; `/healthz` answers 503 whenever the idle
//!   list is empty; operation errors of checked-out connections appear in no
//!   document.
//! * [`Model::Returning`] is a build that gives used connections back to the
//!   list, so every connection is listed with its own errors and p95.
//!
//! Both write the native families exactly as the pool does: its HELP texts,
//! alphabetical family order, a histogram in whole milliseconds that also
//! counts TLS handshakes, and the active gauge set at checkout and cleanup.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::faults::{Fault, FaultSpec};
pub use super::settings::{Load, Model, SimConfig, TimeFormat};
use crate::pool::Document;

mod wire;

/// Upper bounds of the pool's native latency histogram, in ms, as written.
pub const BUCKETS: [(f64, &str); 10] = [
    (0.1, "0.1"),
    (0.5, "0.5"),
    (1.0, "1"),
    (5.0, "5"),
    (10.0, "10"),
    (50.0, "50"),
    (100.0, "100"),
    (500.0, "500"),
    (1000.0, "1000"),
    (5000.0, "5000"),
];

/// The pool closes a connection whose p95 is above this, at checkout and
/// at cleanup.
pub const MAX_LATENCY_MS: f64 = 500.0;
/// Keys are rotated (a "reconnect") after this long.
const KEY_ROTATION_SECONDS: f64 = 3600.0;
/// Consecutive failed opens after which checkouts fail fast.
const BREAKER_FAILURES: u32 = 5;
const BREAKER_COOLDOWN_SECONDS: f64 = 60.0;
const BURST_ERROR_FRACTION: f64 = 0.2;
const STORM_RECONNECTS_PER_SECOND: f64 = 4.0;
/// What a slow operation takes (a relay answering 800 ms late).
const SLOW_OPERATION_MS: f64 = 800.0;

#[derive(Debug, Clone)]
struct SimConnection {
    id: u64,
    opened_at: f64,
    last_activity: f64,
    last_rotation: f64,
    reconnects: u64,
    errors: u64,
    /// 0 until the connection has latency samples, as the pool reports it.
    p95_ms: f64,
    samples: u64,
    error_carry: f64,
    /// How error-prone this connection is relative to the load's error
    /// fraction, so connections differ as real ones do (mean 1).
    error_bias: f64,
    reconnect_carry: f64,
    remote_port: u16,
}

/// A caller of the published pool and the connection it holds.
#[derive(Debug, Clone, Default)]
struct Caller {
    held: Option<SimConnection>,
    ops_left: u32,
}

#[derive(Debug)]
pub struct SimPool {
    pub config: SimConfig,
    rng: u64,
    now: f64,
    next_id: u64,
    /// The idle list: what the status document lists.
    conns: VecDeque<SimConnection>,
    callers: Vec<Caller>,
    next_cleanup: f64,
    ops_carry: f64,
    breaker_open_until: f64,
    consecutive_open_failures: u32,
    /// The native gauge, set as the pool sets it (not always the list's length).
    native_active: u64,
    native_reconnects: u64,
    native_open_errors: u64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    bucket_counts: [u64; 11],
    /// Whole milliseconds, as the pool observes them.
    latency_sum: u64,
    /// The truth the published documents hide: every operation and every
    /// failed one, for tests.
    operations: u64,
    operation_errors: u64,
    faults: BTreeMap<Fault, FaultSpec>,
    /// Each document as last rendered, indexed by `Document as usize`. A
    /// real pool serves its documents from memory it already has; rendering
    /// 10,000 connections on every request would make the benchmark's
    /// "limit" measure the simulator's CPU instead of the I/O. Every method
    /// that changes what a document says clears it.
    rendered: [Option<(u16, Bytes)>; 3],
    /// Requests received per document, whatever the answer, so tests and
    /// benchmarks can see the load an exporter puts on the pool.
    requests: [u64; 3],
    /// The last body served by `GET /sim/blob`.
    blob: Bytes,
}

impl SimPool {
    /// A pool at `now` (Unix seconds) with a minute of history behind it.
    pub fn new(config: SimConfig, now: f64) -> Self {
        let mut pool = Self {
            rng: config.seed.max(1),
            next_cleanup: now,
            config,
            now,
            next_id: 1,
            conns: VecDeque::new(),
            callers: Vec::new(),
            ops_carry: 0.0,
            breaker_open_until: 0.0,
            consecutive_open_failures: 0,
            native_active: 0,
            native_reconnects: 0,
            native_open_errors: 0,
            bucket_counts: [0; 11],
            latency_sum: 0,
            operations: 0,
            operation_errors: 0,
            faults: BTreeMap::new(),
            rendered: Default::default(),
            requests: [0; 3],
            blob: Bytes::new(),
        };
        if pool.config.steady {
            for _ in 0..pool.config.connections {
                pool.open_listed(now);
            }
            for i in 0..pool.conns.len() {
                pool.operate_listed(i, 60.0, 50.0);
            }
            pool.native_active = pool.conns.len() as u64;
            return pool;
        }
        let start = now - 60.0;
        pool.now = start;
        pool.next_cleanup = start;
        if pool.config.model == Model::Returning {
            // Staggered ages, as a pool that has run for a while.
            let max_age = pool.config.max_age.as_secs_f64();
            for _ in 0..pool.config.connections {
                let age = pool.random() * max_age;
                pool.open_listed(start - age);
            }
        }
        for s in 1..=60 {
            pool.advance_to(start + f64::from(s));
        }
        pool.now = now;
        pool
    }

    /// xorshift64*: deterministic for a seed, no dependency.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A TLS handshake: one observation in the native histogram, as the
    /// pool records it. `None` when the relay cannot be reached.
    fn open(&mut self, at: f64) -> Option<SimConnection> {
        if self.relay_unreachable() {
            return None;
        }
        let handshake_ms = if self.random() < self.slow_fraction() {
            SLOW_OPERATION_MS + 200.0 * self.random()
        } else {
            1.0 + 4.0 * self.random()
        };
        self.observe(handshake_ms, 1);
        let error_bias = 0.25 + 1.5 * self.random();
        let error_carry = self.random();
        let remote_port = 40_000 + (self.next_id % 20_000) as u16;
        let conn = SimConnection {
            id: self.next_id,
            opened_at: at,
            last_activity: at,
            last_rotation: at,
            reconnects: 0,
            errors: 0,
            p95_ms: 0.0,
            samples: 0,
            error_carry,
            error_bias,
            reconnect_carry: 0.0,
            remote_port,
        };
        self.next_id += 1;
        Some(conn)
    }

    /// Opens a connection straight into the idle list (start-up, steady).
    fn open_listed(&mut self, at: f64) {
        if let Some(conn) = self.open(at) {
            self.conns.push_back(conn);
        }
    }

    fn relay_unreachable(&self) -> bool {
        self.active(Fault::RelayOutage) || self.active(Fault::EmptyPool)
    }

    fn slow_fraction(&self) -> f64 {
        if self.active(Fault::LatencySpike) {
            1.0
        } else {
            self.config.load.slow_fraction
        }
    }

    fn error_fraction(&self) -> f64 {
        if self.active(Fault::ErrorBurst) {
            self.config.load.error_fraction.max(BURST_ERROR_FRACTION)
        } else {
            self.config.load.error_fraction
        }
    }

    fn callers_working(&self) -> bool {
        self.config.load.callers > 0
            && self.config.load.ops_per_second > 0.0
            && !self.active(Fault::Stale)
    }

    /// Whether `/status/connections` and `/healthz` block now: the pool
    /// holds its lock through the backoff of a checkout that cannot open a
    /// connection, which happens when callers want connections during a
    /// relay outage.
    pub fn blocks_documents(&self) -> bool {
        self.active(Fault::RelayOutage) && self.callers_working()
    }

    pub fn faults(&self) -> &BTreeMap<Fault, FaultSpec> {
        &self.faults
    }

    /// Switches `fault` on (`Some`) or off. `restart` is an event, not a
    /// state: it restarts the pool process at once and is not kept.
    pub fn set_fault(&mut self, fault: Fault, spec: Option<FaultSpec>) {
        self.invalidate();
        match spec {
            Some(_) if fault == Fault::Restart => self.restart(),
            Some(spec) => {
                self.faults.insert(fault, spec);
            }
            None => {
                self.faults.remove(&fault);
            }
        }
    }

    pub fn clear_faults(&mut self) {
        self.invalidate();
        self.faults.clear();
    }

    /// The pool process restarts: ids start again at 1, the native
    /// counters and histogram start from zero, callers lose what they held,
    /// and the idle list is filled anew.
    fn restart(&mut self) {
        self.next_id = 1;
        self.conns.clear();
        self.callers.clear();
        self.native_reconnects = 0;
        self.native_open_errors = 0;
        self.bucket_counts = [0; 11];
        self.latency_sum = 0;
        self.breaker_open_until = 0.0;
        self.consecutive_open_failures = 0;
        let now = self.now;
        self.cleanup(now);
        self.next_cleanup = now + self.config.cleanup_interval.as_secs_f64();
    }

    pub fn set_target_connections(&mut self, count: usize) {
        self.invalidate();
        self.config.connections = count;
        if self.config.steady {
            self.conns.truncate(count);
            while self.conns.len() < count {
                let now = self.now;
                self.open_listed(now);
                let i = self.conns.len() - 1;
                self.operate_listed(i, 60.0, 50.0);
            }
            self.native_active = self.conns.len() as u64;
        }
    }

    pub fn set_load(&mut self, load: Load) {
        self.invalidate();
        self.config.load = load;
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn invalidate(&mut self) {
        self.rendered = Default::default();
    }

    /// Counts one request for `doc` received by the pool.
    pub fn count_request(&mut self, doc: Document) {
        self.requests[doc as usize] += 1;
    }

    /// Requests received so far, indexed by `Document as usize`.
    pub fn requests(&self) -> [u64; 3] {
        self.requests
    }

    /// The HTTP status and body of `doc` as the pool would answer now,
    /// rendered once per state.
    pub fn document(&mut self, doc: Document) -> (u16, Bytes) {
        if let Some(cached) = &self.rendered[doc as usize] {
            return cached.clone();
        }
        let fresh = match doc {
            Document::Status => (200, Bytes::from(self.status_json())),
            Document::Health => {
                let (code, body) = self.health();
                (code, Bytes::from(body))
            }
            Document::Metrics => (200, Bytes::from(self.metrics_text())),
        };
        self.rendered[doc as usize] = Some(fresh.clone());
        fresh
    }

    /// `bytes` bytes of filler text for `GET /sim/blob`: the benchmark
    /// fetches a body the size of the exporter's answer to measure what
    /// merely moving that many bytes costs on this machine.
    pub fn blob(&mut self, bytes: usize) -> Bytes {
        if self.blob.len() != bytes {
            const LINE: &[u8] = b"# filler the size of an exposition, for transfer benchmarks\n";
            self.blob = LINE.iter().copied().cycle().take(bytes).collect();
        }
        self.blob.clone()
    }

    fn active(&self, fault: Fault) -> bool {
        self.faults.contains_key(&fault)
    }

    /// Moves the simulation forward to `now` (Unix seconds).
    pub fn advance_to(&mut self, now: f64) {
        let dt = now - self.now;
        if dt <= 0.0 {
            return;
        }
        self.invalidate();
        self.now = now;
        if self.config.steady {
            return;
        }
        if self.active(Fault::EmptyPool) {
            // Every connection closes and none can be opened again.
            self.conns.clear();
            self.callers.clear();
        }
        match self.config.model {
            Model::Published => self.callers_work(dt),
            Model::Returning => {
                if self.callers_working() && self.relay_unreachable() {
                    // The relay is gone: every connection a caller uses
                    // fails and is closed rather than given back, so the
                    // next cleanup has to open new ones (and cannot).
                    self.conns.clear();
                }
                if self.callers_working() && !self.relay_unreachable() {
                    let per_connection =
                        self.config.load.ops_per_second / self.conns.len().max(1) as f64;
                    for i in 0..self.conns.len() {
                        self.operate_listed(i, dt, per_connection);
                    }
                }
            }
        }
        self.rotate_keys(dt);
        if now >= self.next_cleanup {
            self.cleanup(now);
            let interval = self.config.cleanup_interval.as_secs_f64().max(0.001);
            while self.next_cleanup <= now {
                self.next_cleanup += interval;
            }
        }
    }

    /// The pool's cleanup task: closes idle connections past `max_lifetime`
    /// or slower than 500 ms at p95, refills the list to `min_idle` (an
    /// open that fails counts in the native errors), and sets the native
    /// gauge to the list's length.
    fn cleanup(&mut self, now: f64) {
        let max_age = self.config.max_age.as_secs_f64();
        self.conns
            .retain(|c| now - c.opened_at < max_age && c.p95_ms <= MAX_LATENCY_MS);
        while self.conns.len() < self.config.connections {
            match self.open(now) {
                Some(conn) => {
                    self.consecutive_open_failures = 0;
                    self.conns.push_back(conn);
                }
                None => {
                    self.native_open_errors += 1;
                    self.note_open_failure(now);
                    break;
                }
            }
        }
        self.native_active = self.conns.len() as u64;
    }

    fn note_open_failure(&mut self, now: f64) {
        self.consecutive_open_failures += 1;
        if self.consecutive_open_failures >= BREAKER_FAILURES {
            self.breaker_open_until = now + BREAKER_COOLDOWN_SECONDS;
            self.consecutive_open_failures = 0;
        }
    }

    /// `get_connection()`: pops idle connections (closing those slower
    /// than 500 ms at p95) or opens a new one when the list is empty.
    /// `None` when the relay is unreachable or the breaker is open.
    fn checkout(&mut self) -> Option<SimConnection> {
        let now = self.now;
        if now < self.breaker_open_until {
            return None;
        }
        let conn = loop {
            match self.conns.pop_front() {
                Some(c) if c.p95_ms > MAX_LATENCY_MS => continue,
                Some(c) => break Some(c),
                None => break None,
            }
        };
        let conn = match conn {
            Some(c) => c,
            None => match self.open(now) {
                Some(c) => c,
                None => {
                    self.note_open_failure(now);
                    return None;
                }
            },
        };
        self.consecutive_open_failures = 0;
        self.native_active = self.conns.len() as u64 + 1;
        Some(conn)
    }

    /// The published pool's callers over `dt` seconds: each uses a
    /// checked-out connection for `ops_per_checkout` operations, then drops
    /// it (or, in the returning model, which never gets here, gives it back).
    fn callers_work(&mut self, dt: f64) {
        let load = self.config.load.clone();
        self.callers
            .resize(load.callers as usize, Caller::default());
        if !self.callers_working() {
            return;
        }
        self.ops_carry += load.ops_per_second * dt * (0.9 + 0.2 * self.random());
        let ops = self.ops_carry.floor() as u64;
        self.ops_carry -= ops as f64;
        let callers = self.callers.len() as u64;
        let share = ops / callers;
        let mut extra = ops % callers;
        for i in 0..self.callers.len() {
            let mut todo = share + u64::from(extra > 0);
            extra = extra.saturating_sub(1);
            while todo > 0 {
                if self.callers[i].held.is_none() {
                    match self.checkout() {
                        Some(conn) => {
                            self.callers[i].held = Some(conn);
                            self.callers[i].ops_left = load.ops_per_checkout;
                        }
                        None => break,
                    }
                }
                let n = todo.min(u64::from(self.callers[i].ops_left));
                let mut conn = self.callers[i]
                    .held
                    .take()
                    .unwrap_or_else(|| unreachable!());
                self.operate(&mut conn, n);
                todo -= n;
                self.callers[i].ops_left -= n as u32;
                if self.callers[i].ops_left > 0 {
                    self.callers[i].held = Some(conn);
                }
                // else: dropped; it is never listed again.
            }
        }
    }

    /// `n` operations on one connection: latency observations in whole
    /// milliseconds, errors counted inside the connection only.
    fn operate(&mut self, conn: &mut SimConnection, n: u64) {
        if n == 0 {
            return;
        }
        let slow = (n as f64 * self.slow_fraction()).round() as u64;
        let fast = n - slow;
        // Fast operations: most under a millisecond, some a few ms, a few
        // tens of ms (the shape of the real pool's captures).
        let sub_ms = (fast as f64 * 0.55).round() as u64;
        let few_ms = ((fast as f64 * 0.42).round() as u64).min(fast - sub_ms);
        let tens = fast - sub_ms - few_ms;
        let few_ms_value = 2.0 + 3.0 * self.random();
        let tens_value = 10.0 + 30.0 * self.random();
        let slow_value = SLOW_OPERATION_MS + 200.0 * self.random();
        self.observe(0.3, sub_ms);
        self.observe(few_ms_value, few_ms);
        self.observe(tens_value, tens);
        self.observe(slow_value, slow);
        conn.p95_ms = if slow * 20 > n {
            SLOW_OPERATION_MS
        } else if tens * 20 > n {
            40.0
        } else {
            5.0
        };
        conn.samples += n;
        conn.error_carry += n as f64 * self.error_fraction() * conn.error_bias;
        let errors = conn.error_carry.floor();
        conn.error_carry -= errors;
        conn.errors += errors as u64;
        self.operations += n;
        self.operation_errors += errors as u64;
        conn.last_activity = self.now;
    }

    /// Key rotation: a "reconnect" of a listed connection, after an hour,
    /// or several a second under the `reconnect_storm` fault.
    fn rotate_keys(&mut self, dt: f64) {
        let storm = self.active(Fault::ReconnectStorm);
        let now = self.now;
        let mut total = 0;
        for conn in self.conns.iter_mut() {
            let mut n = 0;
            if storm {
                conn.reconnect_carry += STORM_RECONNECTS_PER_SECOND * dt;
                n = conn.reconnect_carry.floor() as u64;
                conn.reconnect_carry -= n as f64;
            } else if now - conn.last_rotation >= KEY_ROTATION_SECONDS {
                n = 1;
            }
            if n > 0 {
                conn.reconnects += n;
                conn.last_rotation = now;
                total += n;
            }
        }
        self.native_reconnects += total;
    }

    /// A listed connection of the returning model (or a steady pool) doing
    /// `ops_per_second` operations for `dt` seconds, with a p95 that
    /// drifts as real ones do.
    fn operate_listed(&mut self, i: usize, dt: f64, ops_per_second: f64) {
        let ops = (ops_per_second * dt * (0.8 + 0.4 * self.random())).round() as u64;
        if ops == 0 {
            return;
        }
        let spike = self.slow_fraction() >= 0.05;
        let drift = 0.9 + 0.2 * self.random();
        let slow_p95 = 800.0 + 700.0 * self.random();
        let normal_p95 = 10.0 + 60.0 * self.random();
        let error_fraction = self.error_fraction();
        let now = self.now;

        let conn = &mut self.conns[i];
        conn.p95_ms = if spike {
            slow_p95
        } else if conn.p95_ms > 150.0 || conn.p95_ms == 0.0 {
            normal_p95
        } else {
            (conn.p95_ms * drift).clamp(5.0, 120.0)
        };
        conn.last_activity = now;
        conn.samples += ops;
        conn.error_carry += ops as f64 * error_fraction * conn.error_bias;
        let errors = conn.error_carry.floor();
        conn.error_carry -= errors;
        conn.errors += errors as u64;
        self.operations += ops;
        self.operation_errors += errors as u64;

        // Latency observations: most well under p95, 5% at or just above it.
        let p95 = conn.p95_ms;
        let shares: [(f64, f64); 3] = if spike {
            [(0.6, 0.8), (0.35, 0.95), (0.05, 1.05)]
        } else {
            [(0.5, 0.3), (0.45, 0.7), (0.05, 1.1)]
        };
        let mut left = ops;
        for (n, (share, factor)) in shares.iter().enumerate() {
            let count = if n == shares.len() - 1 {
                left
            } else {
                ((ops as f64 * share).round() as u64).min(left)
            };
            left -= count;
            self.observe(p95 * factor, count);
        }
    }

    /// `count` observations of `value_ms`, rounded to whole milliseconds as
    /// the pool records them (so sub-millisecond ones land in `le="0.1"`).
    fn observe(&mut self, value_ms: f64, count: u64) {
        if count == 0 {
            return;
        }
        let whole = value_ms.round().max(0.0);
        let slot = BUCKETS
            .iter()
            .position(|(bound, _)| whole <= *bound)
            .unwrap_or(BUCKETS.len());
        self.bucket_counts[slot] += count;
        self.latency_sum += whole as u64 * count;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::exposition::parse;
    use crate::pool::{Health, PoolStatus};

    const T0: f64 = 1_764_072_000.0;

    fn pool(config: SimConfig) -> SimPool {
        SimPool::new(config, T0)
    }

    fn native_value(p: &SimPool, name: &str, le: Option<&str>) -> f64 {
        let parsed = parse(&p.metrics_text());
        assert_eq!(parsed.skipped_lines, 0);
        parsed
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| {
                s.name == name
                    && le.is_none_or(|le| s.labels.iter().any(|(n, v)| n == "le" && v == le))
            })
            .unwrap()
            .value
    }

    #[test]
    fn documents_decode_in_every_time_format() {
        for format in [
            TimeFormat::SystemTime,
            TimeFormat::Rfc3339,
            TimeFormat::Unix,
        ] {
            let p = pool(SimConfig {
                time_format: format,
                extended: true,
                backend: Some("sim".into()),
                ..SimConfig::default()
            });
            let status: PoolStatus = serde_json::from_str(&p.status_json()).unwrap();
            assert_eq!(status.connections.len(), 4);
            assert_eq!(status.backend.as_deref(), Some("sim"));
            let last = status.connections[0].last_activity.unwrap().as_secs_f64();
            assert!((last - T0).abs() < 3600.0, "{format:?}: {last}");
            let (code, body) = p.health();
            assert_eq!(code, 200);
            let health: Health = serde_json::from_str(&body).unwrap();
            assert_eq!(health.is_healthy(), Some(true));
        }
    }

    fn returning() -> SimConfig {
        SimConfig {
            model: Model::Returning,
            load: Load {
                callers: 2,
                ops_per_second: 200.0,
                ..Load::default()
            },
            ..SimConfig::default()
        }
    }

    fn busy() -> SimConfig {
        SimConfig {
            cleanup_interval: Duration::from_secs(5),
            load: Load {
                callers: 2,
                ops_per_second: 55.0,
                ops_per_checkout: 10,
                error_fraction: 0.1,
                slow_fraction: 0.0,
            },
            ..SimConfig::default()
        }
    }

    fn quiet() -> SimConfig {
        SimConfig {
            cleanup_interval: Duration::from_secs(5),
            load: Load {
                callers: 0,
                ..Load::default()
            },
            ..SimConfig::default()
        }
    }

    fn status_of(p: &SimPool) -> PoolStatus {
        serde_json::from_str(&p.status_json()).unwrap()
    }

    fn run(p: &mut SimPool, from: u32, to: u32) {
        for s in from..=to {
            p.advance_to(T0 + f64::from(s));
        }
    }

    #[test]
    fn busy_published_pool_lists_nothing_answers_503_and_hides_its_errors() {
        let mut p = pool(busy());
        run(&mut p, 1, 3);
        let status = status_of(&p);
        assert!(status.connections.is_empty(), "{status:?}");
        assert_eq!(status.active_connections, Some(0.0));
        assert_eq!(status.total_errors, Some(0.0));
        assert_eq!(p.health().0, 503);
        // The pool sets its gauge to idle+1 at checkout.
        assert_eq!(
            native_value(&p, "secure_channel_active_connections", None),
            1.0
        );
        let ops_before = native_value(&p, "secure_channel_latency_ms_count", None);
        run(&mut p, 4, 20);
        let ops = native_value(&p, "secure_channel_latency_ms_count", None) - ops_before;
        // ~55 operations/s plus the handshakes of new connections.
        assert!((17.0 * 45.0..17.0 * 75.0).contains(&ops), "{ops}");
        // About 10% of operations failed, and no document shows one.
        assert!(p.state_json()["operation_errors"].as_u64().unwrap() > 50);
        assert_eq!(native_value(&p, "secure_channel_errors_total", None), 0.0);
        assert!(status_of(&p).connections.iter().all(|c| c.errors == 0.0));
    }

    #[test]
    fn quiet_published_pool_lists_unused_connections_that_never_move() {
        let mut p = pool(quiet());
        let first = status_of(&p);
        assert_eq!(first.connections.len(), 4);
        run(&mut p, 1, 100);
        let later = status_of(&p);
        assert_eq!(p.health().0, 200);
        for (a, b) in first.connections.iter().zip(&later.connections) {
            assert_eq!(a.connection_id, b.connection_id);
            // last_activity is the creation time and never moves.
            assert_eq!(a.last_activity, b.last_activity);
            assert_eq!(
                (b.errors, b.reconnects, b.p95_latency_ms),
                (0.0, 0.0, Some(0.0))
            );
        }
        // Only the handshakes were observed, in whole milliseconds.
        let count = native_value(&p, "secure_channel_latency_ms_count", None);
        assert_eq!(count, 4.0);
        let sum = native_value(&p, "secure_channel_latency_ms_sum", None);
        assert_eq!(sum, sum.trunc());
    }

    #[test]
    fn cleanup_closes_old_connections_and_refills_with_new_ids() {
        let mut p = pool(SimConfig {
            max_age: Duration::from_secs(30),
            ..quiet()
        });
        let first = status_of(&p);
        run(&mut p, 1, 40);
        let later = status_of(&p);
        assert_eq!(later.connections.len(), 4);
        let first_ids: Vec<_> = first.connections.iter().map(|c| &c.connection_id).collect();
        assert!(later
            .connections
            .iter()
            .all(|c| !first_ids.contains(&&c.connection_id)));
    }

    #[test]
    fn native_families_are_written_as_the_real_pool_writes_them() {
        let heads = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        let real = include_str!("../../tests/fixtures/realpool/busy/native.txt");
        let mut p = pool(busy());
        run(&mut p, 1, 3);
        assert_eq!(heads(&p.metrics_text()), heads(real));
        let buckets = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("secure_channel_latency_ms_bucket"))
                .map(|l| {
                    l.split("le=")
                        .nth(1)
                        .unwrap()
                        .split('}')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(buckets(&p.metrics_text()), buckets(real));
    }

    #[test]
    fn relay_outage_fails_opens_blocks_documents_and_trips_the_breaker() {
        let mut p = pool(busy());
        run(&mut p, 1, 3);
        p.set_fault(
            Fault::RelayOutage,
            Some(FaultSpec::default_for(Fault::RelayOutage)),
        );
        assert!(p.blocks_documents());
        let ops_before = native_value(&p, "secure_channel_latency_ms_count", None);
        run(&mut p, 4, 30);
        assert!(native_value(&p, "secure_channel_errors_total", None) >= 4.0);
        // Callers could not check anything out: no operations.
        assert!(native_value(&p, "secure_channel_latency_ms_count", None) - ops_before < 60.0);
        assert_eq!(p.state_json()["breaker_open"], true);
        p.set_fault(Fault::RelayOutage, None);
        assert!(!p.blocks_documents());
        // A quiet pool has no caller in backoff: nothing blocks.
        let mut q = pool(quiet());
        q.set_fault(
            Fault::RelayOutage,
            Some(FaultSpec::default_for(Fault::RelayOutage)),
        );
        assert!(!q.blocks_documents());
    }

    #[test]
    fn relay_outage_of_a_busy_returning_pool_fails_the_next_cleanup() {
        let mut p = pool(SimConfig {
            cleanup_interval: Duration::from_secs(5),
            ..returning()
        });
        p.set_fault(
            Fault::RelayOutage,
            Some(FaultSpec::default_for(Fault::RelayOutage)),
        );
        run(&mut p, 1, 6);
        assert_eq!(p.connection_count(), 0);
        assert_eq!(p.health().0, 503);
        assert!(native_value(&p, "secure_channel_errors_total", None) >= 1.0);
    }

    #[test]
    fn a_restart_starts_ids_at_one_and_native_counters_at_zero() {
        let mut p = pool(busy());
        run(&mut p, 1, 30);
        assert!(p.next_id() > 20);
        p.set_fault(Fault::Restart, Some(FaultSpec::all_documents()));
        assert!(p.faults().is_empty(), "restart is an event, not a state");
        let ids: Vec<String> = status_of(&p)
            .connections
            .iter()
            .map(|c| c.connection_id.as_str().to_owned())
            .collect();
        assert_eq!(ids, ["1", "2", "3", "4"]);
        assert_eq!(
            native_value(&p, "secure_channel_latency_ms_count", None),
            4.0
        );
    }

    #[test]
    fn returning_pool_lists_used_connections_and_agrees_with_native_metrics() {
        let mut p = pool(returning());
        p.advance_to(T0 + 10.0);
        let status = status_of(&p);
        assert_eq!(status.connections.len(), 4);
        let sum_errors: f64 = status.connections.iter().map(|c| c.errors).sum();
        assert_eq!(status.total_errors, Some(sum_errors));
        let max_p95 = status
            .connections
            .iter()
            .filter_map(|c| c.p95_latency_ms)
            .fold(0.0, f64::max);
        assert!(max_p95 > 0.0);
        assert_eq!(status.pool_p95_latency_ms, Some(max_p95));
        assert_eq!(
            native_value(&p, "secure_channel_active_connections", None),
            4.0
        );
        let count = native_value(&p, "secure_channel_latency_ms_count", None);
        assert_eq!(
            native_value(&p, "secure_channel_latency_ms_bucket", Some("+Inf")),
            count
        );
        // ~70 s at ~200 ops/s.
        assert!(count > 50.0 * 200.0, "{count}");
    }

    #[test]
    fn faults_move_the_numbers_of_a_returning_pool() {
        let mut p = pool(returning());
        p.set_fault(Fault::LatencySpike, Some(FaultSpec::all_documents()));
        p.set_fault(Fault::ErrorBurst, Some(FaultSpec::all_documents()));
        let before_errors = status_of(&p).total_errors.unwrap();
        let before_ops = native_value(&p, "secure_channel_latency_ms_count", None);
        let before_fast = native_value(&p, "secure_channel_latency_ms_bucket", Some("500"));
        p.advance_to(T0 + 10.0);
        let status = status_of(&p);
        assert!(status.pool_p95_latency_ms.unwrap() >= 800.0);
        let ops = native_value(&p, "secure_channel_latency_ms_count", None) - before_ops;
        let errors = status.total_errors.unwrap() - before_errors;
        assert!((errors / ops - 0.2).abs() < 0.05, "{errors}/{ops}");
        let fast = native_value(&p, "secure_channel_latency_ms_bucket", Some("500")) - before_fast;
        assert!(fast / ops < 0.05, "{fast}/{ops}");

        p.set_fault(Fault::EmptyPool, Some(FaultSpec::all_documents()));
        p.advance_to(T0 + 11.0);
        assert_eq!(p.health().0, 503);
        p.clear_faults();
        p.advance_to(T0 + 400.0);
        assert_eq!(p.connection_count(), 4);
        assert_eq!(p.health().0, 200);
    }

    #[test]
    fn steady_pool_does_not_move() {
        let mut p = pool(SimConfig {
            steady: true,
            connections: 100,
            ..SimConfig::default()
        });
        let before = p.status_json();
        p.advance_to(T0 + 100.0);
        assert_eq!(before, p.status_json());
        p.set_target_connections(10);
        assert_eq!(p.connection_count(), 10);
    }

    #[test]
    fn documents_are_rendered_once_per_state() {
        let mut p = pool(SimConfig {
            connections: 3,
            ..returning()
        });
        let (code, first) = p.document(Document::Status);
        assert_eq!(code, 200);
        assert_eq!(first, p.status_json());
        let again = p.document(Document::Status).1;
        assert_eq!(first.as_ptr(), again.as_ptr(), "served from the cache");

        p.advance_to(T0 + 5.0);
        let moved = p.document(Document::Status).1;
        assert_ne!(moved, first);
        assert_eq!(moved, p.status_json());
        assert_eq!(p.document(Document::Metrics).1, p.metrics_text());

        p.set_target_connections(5);
        p.advance_to(T0 + 400.0);
        let status: PoolStatus = serde_json::from_slice(&p.document(Document::Status).1).unwrap();
        assert_eq!(status.connections.len(), 5);

        p.set_fault(Fault::EmptyPool, Some(FaultSpec::all_documents()));
        p.advance_to(T0 + 401.0);
        assert_eq!(p.document(Document::Health).0, 503);
        p.clear_faults();
        p.advance_to(T0 + 800.0);
        assert_eq!(p.document(Document::Health).0, 200);
    }

    #[test]
    fn blob_has_the_size_asked_for() {
        let mut p = pool(SimConfig::default());
        assert_eq!(p.blob(1000).len(), 1000);
        assert_eq!(p.blob(0).len(), 0);
        assert_eq!(p.blob(70_001).len(), 70_001);
    }

    #[test]
    fn counts_requests_per_document() {
        let mut p = pool(SimConfig::default());
        p.count_request(Document::Status);
        p.count_request(Document::Status);
        p.count_request(Document::Metrics);
        assert_eq!(p.requests(), [2, 0, 1]);
        let state = p.state_json();
        assert_eq!(state["requests"]["status"], 2);
        assert_eq!(state["requests"]["health"], 0);
        assert_eq!(state["requests"]["metrics"], 1);
    }

    #[test]
    fn hostile_endpoint_survives_both_documents() {
        let hostile = "re\"l\\ay\nü:443";
        let p = pool(SimConfig {
            endpoint: hostile.into(),
            ..SimConfig::default()
        });
        let status: PoolStatus = serde_json::from_str(&p.status_json()).unwrap();
        assert_eq!(status.endpoint, hostile);
        let parsed = parse(&p.metrics_text());
        assert_eq!(parsed.skipped_lines, 0);
        assert_eq!(parsed.families[0].samples[0].labels[0].1, hostile);
    }
}
