//! The simulated pool's state and how it moves: connections open, age out
//! and come back with new ids; p95s drift; errors and reconnects grow; the
//! native histogram and counters stay consistent with the JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;

use super::faults::{Fault, FaultSpec};
use crate::pool::client::Document;

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

/// Operations per connection per second of simulated time.
const OPS_PER_SECOND: f64 = 50.0;
const BASELINE_ERROR_RATIO: f64 = 0.001;
const BURST_ERROR_RATIO: f64 = 0.2;
const BASELINE_RECONNECTS_PER_SECOND: f64 = 0.002;
const STORM_RECONNECTS_PER_SECOND: f64 = 4.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// serde's `SystemTime`: `{"secs_since_epoch":..,"nanos_since_epoch":..}`.
    SystemTime,
    /// RFC 3339 strings, as other builds and the Go clients write.
    Rfc3339,
    /// A number of Unix seconds.
    Unix,
}

impl FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "systemtime" => Ok(Self::SystemTime),
            "rfc3339" => Ok(Self::Rfc3339),
            "unix" => Ok(Self::Unix),
            _ => Err("expected systemtime, rfc3339 or unix".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub endpoint: String,
    /// Reported as the pool's `backend` when set.
    pub backend: Option<String>,
    pub connections: usize,
    /// Connections are recycled after this age, as the real pool does.
    pub max_age: Duration,
    /// No churn and no movement: fixed numbers, for benchmarks.
    pub steady: bool,
    pub time_format: TimeFormat,
    /// Required in `X-Auth-Token` on /status/connections and /metrics.
    pub token: Option<String>,
    /// Also report the optional fields some builds add (`is_healthy`,
    /// `remote_addr`, `last_updated`, health `error_rate`).
    pub extended: bool,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            endpoint: "relay.example.net:443".into(),
            backend: None,
            connections: 4,
            max_age: Duration::from_secs(30 * 60),
            steady: false,
            time_format: TimeFormat::SystemTime,
            token: None,
            extended: false,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone)]
struct SimConnection {
    id: u64,
    opened_at: f64,
    last_activity: f64,
    reconnects: u64,
    errors: u64,
    p95_ms: f64,
    error_carry: f64,
    /// How error-prone this connection is relative to the baseline, so
    /// connections differ as real ones do (mean 1).
    error_bias: f64,
    reconnect_carry: f64,
    remote_port: u16,
}

#[derive(Debug)]
pub struct SimPool {
    pub config: SimConfig,
    rng: u64,
    now: f64,
    next_id: u64,
    conns: Vec<SimConnection>,
    native_reconnects: u64,
    native_open_errors: u64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    bucket_counts: [u64; 11],
    latency_sum: f64,
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
    /// A pool at `now` (Unix seconds) whose connections have staggered ages.
    pub fn new(config: SimConfig, now: f64) -> Self {
        let mut pool = Self {
            rng: config.seed.max(1),
            config,
            now,
            next_id: 1,
            conns: Vec::new(),
            native_reconnects: 0,
            native_open_errors: 0,
            bucket_counts: [0; 11],
            latency_sum: 0.0,
            faults: BTreeMap::new(),
            rendered: Default::default(),
            requests: [0; 3],
            blob: Bytes::new(),
        };
        let max_age = pool.config.max_age.as_secs_f64();
        for _ in 0..pool.config.connections {
            let age = pool.random() * max_age;
            pool.open(now - age);
        }
        // Some history so the first scrape shows non-trivial numbers.
        if !pool.config.steady {
            let start = now - 60.0;
            pool.now = start;
            for _ in 0..60 {
                let t = pool.now + 1.0;
                pool.advance_to(t);
            }
        } else {
            for i in 0..pool.conns.len() {
                pool.operate(i, 60.0);
            }
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

    fn open(&mut self, at: f64) {
        let p95_ms = 10.0 + self.random() * 60.0;
        let error_bias = 0.25 + 1.5 * self.random();
        let error_carry = self.random();
        let remote_port = 40_000 + (self.next_id % 20_000) as u16;
        self.conns.push(SimConnection {
            id: self.next_id,
            opened_at: at,
            last_activity: at,
            reconnects: 0,
            errors: 0,
            p95_ms,
            error_carry,
            error_bias,
            reconnect_carry: 0.0,
            remote_port,
        });
        self.next_id += 1;
    }

    pub fn fault(&self, fault: Fault) -> Option<&FaultSpec> {
        self.faults.get(&fault)
    }

    pub fn faults(&self) -> &BTreeMap<Fault, FaultSpec> {
        &self.faults
    }

    pub fn set_fault(&mut self, fault: Fault, spec: Option<FaultSpec>) {
        self.invalidate();
        match spec {
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

    pub fn set_target_connections(&mut self, count: usize) {
        self.invalidate();
        self.config.connections = count;
        if self.config.steady {
            self.conns.truncate(count);
            while self.conns.len() < count {
                let now = self.now;
                self.open(now);
                let i = self.conns.len() - 1;
                self.operate(i, 60.0);
            }
        }
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
            if !self.conns.is_empty() {
                self.conns.clear();
            }
            // The pool keeps failing to open idle connections.
            self.native_open_errors += 1;
            return;
        }
        let max_age = self.config.max_age.as_secs_f64();
        self.conns.retain(|c| now - c.opened_at < max_age);
        self.conns.truncate(self.config.connections);
        while self.conns.len() < self.config.connections {
            self.open(now);
        }
        if !self.active(Fault::Stale) {
            for i in 0..self.conns.len() {
                self.operate(i, dt);
            }
        }
    }

    /// One connection's operations over `dt` seconds.
    fn operate(&mut self, i: usize, dt: f64) {
        let spike = self.active(Fault::LatencySpike);
        let burst = self.active(Fault::ErrorBurst);
        let storm = self.active(Fault::ReconnectStorm);
        let ops = (OPS_PER_SECOND * dt * (0.8 + 0.4 * self.random())).round();
        let drift = 0.9 + 0.2 * self.random();
        let fresh_p95 = 800.0 + 700.0 * self.random();
        let normal_p95 = 10.0 + 60.0 * self.random();
        let reconnect_roll = self.random();
        let now = self.now;

        let conn = &mut self.conns[i];
        conn.p95_ms = if spike {
            fresh_p95
        } else if conn.p95_ms > 150.0 {
            normal_p95
        } else {
            (conn.p95_ms * drift).clamp(5.0, 120.0)
        };
        if ops > 0.0 {
            conn.last_activity = now;
        }
        let error_ratio = if burst {
            BURST_ERROR_RATIO
        } else {
            BASELINE_ERROR_RATIO * conn.error_bias
        };
        conn.error_carry += ops * error_ratio;
        let new_errors = conn.error_carry.floor();
        conn.error_carry -= new_errors;
        conn.errors += new_errors as u64;

        let new_reconnects = if storm {
            conn.reconnect_carry += STORM_RECONNECTS_PER_SECOND * dt;
            let n = conn.reconnect_carry.floor();
            conn.reconnect_carry -= n;
            n as u64
        } else {
            u64::from(reconnect_roll < BASELINE_RECONNECTS_PER_SECOND * dt)
        };
        conn.reconnects += new_reconnects;
        self.native_reconnects += new_reconnects;

        // Latency observations: most well under p95, 5% at or just above it.
        let p95 = conn.p95_ms;
        let shares: [(f64, f64); 3] = if spike {
            [(0.6, 0.8), (0.35, 0.95), (0.05, 1.05)]
        } else {
            [(0.5, 0.3), (0.45, 0.7), (0.05, 1.1)]
        };
        let mut left = ops as u64;
        for (n, (share, factor)) in shares.iter().enumerate() {
            let count = if n == shares.len() - 1 {
                left
            } else {
                ((ops * share).round() as u64).min(left)
            };
            left -= count;
            self.observe(p95 * factor, count);
        }
    }

    fn observe(&mut self, value_ms: f64, count: u64) {
        if count == 0 {
            return;
        }
        let slot = BUCKETS
            .iter()
            .position(|(bound, _)| value_ms <= *bound)
            .unwrap_or(BUCKETS.len());
        self.bucket_counts[slot] += count;
        self.latency_sum += value_ms * count as f64;
    }

    fn write_time(&self, out: &mut String, t: f64) {
        match self.config.time_format {
            TimeFormat::SystemTime => {
                let secs = t.floor();
                let nanos = ((t - secs) * 1e9).round().min(999_999_999.0);
                let _ = write!(
                    out,
                    r#"{{"secs_since_epoch":{},"nanos_since_epoch":{}}}"#,
                    secs as i64, nanos as u32
                );
            }
            TimeFormat::Rfc3339 => {
                let nanos = (t * 1e9) as i128;
                let text = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .ok()
                    .and_then(|d| {
                        d.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
                let _ = write!(out, "\"{text}\"");
            }
            TimeFormat::Unix => {
                let _ = write!(out, "{t:.3}");
            }
        }
    }

    /// `/status/connections`, as the Rust pool's serde writes it.
    pub fn status_json(&self) -> String {
        let mut out = String::with_capacity(256 + self.conns.len() * 160);
        let total_reconnects: u64 = self.conns.iter().map(|c| c.reconnects).sum();
        let total_errors: u64 = self.conns.iter().map(|c| c.errors).sum();
        let pool_p95 = self
            .conns
            .iter()
            .map(|c| c.p95_ms.round() as u64)
            .max()
            .unwrap_or(0);
        out.push_str("{\"endpoint\":");
        out.push_str(&json_string(&self.config.endpoint));
        if let Some(backend) = &self.config.backend {
            out.push_str(",\"backend\":");
            out.push_str(&json_string(backend));
        }
        let _ = write!(
            out,
            ",\"active_connections\":{},\"total_reconnects\":{total_reconnects},\"total_errors\":{total_errors},\"pool_p95_latency_ms\":{pool_p95},\"connections\":[",
            self.conns.len()
        );
        for (i, c) in self.conns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"connection_id\":{},\"last_activity\":", c.id);
            self.write_time(&mut out, c.last_activity);
            let _ = write!(
                out,
                ",\"reconnects\":{},\"errors\":{},\"p95_latency_ms\":{}",
                c.reconnects,
                c.errors,
                c.p95_ms.round() as u64
            );
            if self.config.extended {
                let _ = write!(
                    out,
                    ",\"is_healthy\":{},\"remote_addr\":\"192.0.2.10:{}\"",
                    c.p95_ms <= 500.0,
                    c.remote_port
                );
            }
            out.push('}');
        }
        out.push(']');
        if self.config.extended {
            out.push_str(",\"last_updated\":");
            self.write_time(&mut out, self.now);
        }
        out.push('}');
        out
    }

    /// `/healthz`: the HTTP status and body (503 when no connection is open).
    pub fn health(&self) -> (u16, String) {
        let healthy = !self.conns.is_empty();
        let mut out = String::with_capacity(160);
        let _ = write!(
            out,
            "{{\"status\":\"{}\",\"timestamp\":",
            if healthy { "healthy" } else { "unhealthy" }
        );
        self.write_time(&mut out, self.now);
        let _ = write!(
            out,
            ",\"pool_healthy\":{healthy},\"active_connections\":{}",
            self.conns.len()
        );
        if self.config.extended {
            let ops: u64 = self.bucket_counts.iter().sum();
            let errors: u64 = self.conns.iter().map(|c| c.errors).sum();
            let rate = if ops > 0 {
                100.0 * errors as f64 / ops as f64
            } else {
                0.0
            };
            let avg = if ops > 0 {
                self.latency_sum / ops as f64
            } else {
                0.0
            };
            let _ = write!(out, ",\"error_rate\":{rate:.3},\"avg_latency_ms\":{avg:.3}");
        }
        out.push('}');
        (if healthy { 200 } else { 503 }, out)
    }

    /// `/metrics`: the pool's native families, text format 0.0.4.
    pub fn metrics_text(&self) -> String {
        let ep = format!("endpoint=\"{}\"", escape_label(&self.config.endpoint));
        let mut out = String::with_capacity(2048);
        let _ = write!(
            out,
            "# HELP secure_channel_active_connections Number of active connections in the pool\n\
             # TYPE secure_channel_active_connections gauge\n\
             secure_channel_active_connections{{{ep}}} {}\n\
             # HELP secure_channel_reconnects_total Total reconnects performed by the pool\n\
             # TYPE secure_channel_reconnects_total counter\n\
             secure_channel_reconnects_total{{{ep}}} {}\n\
             # HELP secure_channel_errors_total Total errors opening idle connections\n\
             # TYPE secure_channel_errors_total counter\n\
             secure_channel_errors_total{{{ep}}} {}\n\
             # HELP secure_channel_latency_ms Latency of reads and writes in milliseconds\n\
             # TYPE secure_channel_latency_ms histogram\n",
            self.conns.len(),
            self.native_reconnects,
            self.native_open_errors,
        );
        let mut cumulative = 0;
        for (i, (_, label)) in BUCKETS.iter().enumerate() {
            cumulative += self.bucket_counts[i];
            let _ = writeln!(
                out,
                "secure_channel_latency_ms_bucket{{{ep},le=\"{label}\"}} {cumulative}"
            );
        }
        let count: u64 = self.bucket_counts.iter().sum();
        let _ = write!(
            out,
            "secure_channel_latency_ms_bucket{{{ep},le=\"+Inf\"}} {count}\n\
             secure_channel_latency_ms_sum{{{ep}}} {}\n\
             secure_channel_latency_ms_count{{{ep}}} {count}\n",
            self.latency_sum
        );
        out
    }

    /// A summary for `GET /sim/state`.
    pub fn state_json(&self) -> serde_json::Value {
        let faults: serde_json::Map<String, serde_json::Value> = self
            .faults
            .iter()
            .map(|(f, spec)| (f.name().to_owned(), serde_json::json!(spec)))
            .collect();
        serde_json::json!({
            "endpoint": self.config.endpoint,
            "connections": self.conns.len(),
            "target_connections": self.config.connections,
            "next_connection_id": self.next_id,
            "steady": self.config.steady,
            "operations": self.bucket_counts.iter().sum::<u64>(),
            "faults": faults,
            "requests": {
                "status": self.requests[Document::Status as usize],
                "health": self.requests[Document::Health as usize],
                "metrics": self.requests[Document::Metrics as usize],
            },
        })
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
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
            let last = status.connections[0].last_activity.unwrap().0;
            assert!((last - T0).abs() < 3600.0, "{format:?}: {last}");
            let (code, body) = p.health();
            assert_eq!(code, 200);
            let health: Health = serde_json::from_str(&body).unwrap();
            assert_eq!(health.is_healthy(), Some(true));
        }
    }

    #[test]
    fn json_and_native_metrics_agree() {
        let mut p = pool(SimConfig::default());
        p.advance_to(T0 + 10.0);
        let status: PoolStatus = serde_json::from_str(&p.status_json()).unwrap();
        let sum_errors: f64 = status.connections.iter().map(|c| c.errors).sum();
        assert_eq!(status.total_errors, Some(sum_errors));
        let max_p95 = status
            .connections
            .iter()
            .filter_map(|c| c.p95_latency_ms)
            .fold(0.0, f64::max);
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
        // ~70 s of 4 connections at ~50 ops/s.
        assert!(count > 4.0 * 50.0 * 50.0, "{count}");
    }

    #[test]
    fn connections_age_out_and_get_new_ids() {
        let mut p = pool(SimConfig {
            max_age: Duration::from_secs(30),
            ..SimConfig::default()
        });
        let first: PoolStatus = serde_json::from_str(&p.status_json()).unwrap();
        for s in 1..=40 {
            p.advance_to(T0 + s as f64);
        }
        let later: PoolStatus = serde_json::from_str(&p.status_json()).unwrap();
        assert_eq!(later.connections.len(), 4);
        let first_ids: Vec<_> = first.connections.iter().map(|c| &c.connection_id).collect();
        assert!(later
            .connections
            .iter()
            .all(|c| !first_ids.contains(&&c.connection_id)));
    }

    #[test]
    fn faults_move_the_numbers() {
        let mut p = pool(SimConfig::default());
        p.set_fault(Fault::LatencySpike, Some(FaultSpec::all_documents()));
        p.set_fault(Fault::ErrorBurst, Some(FaultSpec::all_documents()));
        let before_errors: f64 = serde_json::from_str::<PoolStatus>(&p.status_json())
            .unwrap()
            .total_errors
            .unwrap();
        let before_ops = native_value(&p, "secure_channel_latency_ms_count", None);
        let before_fast = native_value(&p, "secure_channel_latency_ms_bucket", Some("500"));
        p.advance_to(T0 + 10.0);
        let status: PoolStatus = serde_json::from_str(&p.status_json()).unwrap();
        assert!(status.pool_p95_latency_ms.unwrap() >= 800.0);
        let ops = native_value(&p, "secure_channel_latency_ms_count", None) - before_ops;
        let errors = status.total_errors.unwrap() - before_errors;
        assert!((errors / ops - 0.2).abs() < 0.02, "{errors}/{ops}");
        let fast = native_value(&p, "secure_channel_latency_ms_bucket", Some("500")) - before_fast;
        assert!(fast / ops < 0.05, "{fast}/{ops}");

        p.set_fault(Fault::EmptyPool, Some(FaultSpec::all_documents()));
        p.advance_to(T0 + 11.0);
        assert_eq!(p.health().0, 503);
        p.clear_faults();
        p.advance_to(T0 + 12.0);
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
            ..SimConfig::default()
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
        p.advance_to(T0 + 6.0);
        let status: PoolStatus = serde_json::from_slice(&p.document(Document::Status).1).unwrap();
        assert_eq!(status.connections.len(), 5);

        p.set_fault(Fault::EmptyPool, Some(FaultSpec::all_documents()));
        p.advance_to(T0 + 7.0);
        assert_eq!(p.document(Document::Health).0, 503);
        p.clear_faults();
        p.advance_to(T0 + 8.0);
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
