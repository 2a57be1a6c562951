//! The simulated pool's settings: which build it behaves like, the work its
//! callers do, the time format of its documents and the rest of its
//! configuration.

use std::str::FromStr;
use std::time::Duration;

/// Which pool build the simulator behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// The published pool: checked-out connections never come back.
    Published,
    /// A build that returns used connections to the idle list.
    Returning,
}

impl FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "published" => Ok(Self::Published),
            "returning" => Ok(Self::Returning),
            _ => Err("expected published or returning".into()),
        }
    }
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Returning => "returning",
        }
    }
}

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

/// The work the pool's callers do.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Load {
    /// Callers using the pool at once; 0 is a quiet pool.
    pub callers: u32,
    /// Operations per second, over all callers.
    pub ops_per_second: f64,
    /// Operations a caller does on one checked-out connection before it
    /// drops it (published) or gives it back (returning).
    pub ops_per_checkout: u32,
    /// Share of operations that fail.
    pub error_fraction: f64,
    /// Share of operations that take ~800 ms.
    pub slow_fraction: f64,
}

impl Default for Load {
    /// A lightly used pool: the idle list drains slowly between cleanups.
    fn default() -> Self {
        Self {
            callers: 1,
            ops_per_second: 5.0,
            ops_per_checkout: 500,
            error_fraction: 0.001,
            slow_fraction: 0.0,
        }
    }
}

impl Load {
    /// Applies `callers=2&ops_per_second=55&...` (any subset) and checks the
    /// result.
    pub fn apply_query(&mut self, query: Option<&str>) -> Result<(), String> {
        let mut next = self.clone();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{key} {value:?} is not a non-negative number"))
            };
            match key {
                "callers" => next.callers = number()?.min(10_000.0) as u32,
                "ops_per_second" => next.ops_per_second = number()?.min(1e6),
                "ops_per_checkout" => next.ops_per_checkout = number()?.clamp(1.0, 1e9) as u32,
                "error_fraction" => next.error_fraction = number()?,
                "slow_fraction" => next.slow_fraction = number()?,
                other => return Err(format!("unknown load parameter {other:?}; use callers, ops_per_second, ops_per_checkout, error_fraction, slow_fraction")),
            }
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_fraction) || !(0.0..=1.0).contains(&self.slow_fraction)
        {
            return Err("error_fraction and slow_fraction must be within 0..1".into());
        }
        if !self.ops_per_second.is_finite() || self.ops_per_second < 0.0 {
            return Err("ops_per_second must be a non-negative number".into());
        }
        if self.ops_per_checkout == 0 {
            return Err("ops_per_checkout must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub model: Model,
    pub endpoint: String,
    /// Reported as the pool's `backend` when set.
    pub backend: Option<String>,
    /// `min_idle`: the cleanup refills the idle list to this many
    /// (returning model: the connections listed).
    pub connections: usize,
    /// `max_lifetime`: idle connections older than this are closed.
    pub max_age: Duration,
    /// How often the cleanup runs (the pool's default is 300 s).
    pub cleanup_interval: Duration,
    pub load: Load,
    /// No churn and no movement: fixed numbers, every connection listed
    /// with stats, for benchmarks.
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
            model: Model::Published,
            endpoint: "relay.example.net:443".into(),
            backend: None,
            connections: 4,
            max_age: Duration::from_secs(30 * 60),
            cleanup_interval: Duration::from_secs(300),
            load: Load::default(),
            steady: false,
            time_format: TimeFormat::SystemTime,
            token: None,
            extended: false,
            seed: 1,
        }
    }
}
