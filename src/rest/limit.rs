//! Per-client-IP token buckets for `/api/` (`--api.rate-limit`,
//! `--api.rate-limit-burst`), with governor's keyed GCRA limiter.
//!
//! The table of clients is bounded: past [`MAX_CLIENTS`] entries, clients
//! whose buckets are full again are forgotten (at most once a second); if
//! it is still full, new clients share one overflow bucket, so a flood of
//! source addresses costs neither memory nor the limit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

/// The slowest rate a limit can have: one request per 10 000 s (2 h 47 min).
/// Below it the period between tokens passes what a timer can usefully
/// hold (1e-20 would be 3e12 years, and once overflowed it switched the
/// limit off): such a value is refused at start-up instead.
pub const MIN_RATE: f64 = 1e-4;
/// The fastest: a million requests per second per client, beyond which a
/// limit limits nothing.
pub const MAX_RATE: f64 = 1e6;

/// `--api.rate-limit`: `0` turns the limit off; anything else must be
/// requests per second from [`MIN_RATE`] to [`MAX_RATE`].
pub fn parse_rate(v: &str) -> Result<f64, String> {
    let refuse =
        || format!("expected 0 (off) or requests per second from {MIN_RATE} to {MAX_RATE}");
    let rate = v.trim().parse::<f64>().map_err(|_| refuse())?;
    if rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(refuse())
    }
}

/// Most client addresses tracked at once.
pub const MAX_CLIENTS: usize = 10_000;
/// Least time between two sweeps of the table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct RateLimit {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    overflow: DefaultDirectRateLimiter,
    clock: DefaultClock,
    last_sweep: Mutex<Instant>,
    max_clients: usize,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// `per_second` requests per second per client, bursts of `burst`;
    /// `None` when `per_second` is 0 (off). Only 0 means off: any other
    /// rate is held within [`MIN_RATE`] and [`MAX_RATE`] (the command line
    /// refuses values outside), so no value silently disables the limit.
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        Self::with_max_clients(per_second, burst, MAX_CLIENTS)
    }

    fn with_max_clients(per_second: f64, burst: u32, max_clients: usize) -> Option<Self> {
        if per_second == 0.0 {
            return None;
        }
        let rate = if per_second.is_nan() {
            MIN_RATE
        } else {
            per_second.clamp(MIN_RATE, MAX_RATE)
        };
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Some(Self {
            clients: DefaultKeyedRateLimiter::keyed(quota),
            overflow: DefaultDirectRateLimiter::direct(quota),
            clock: DefaultClock::default(),
            last_sweep: Mutex::new(Instant::now()),
            max_clients,
        })
    }

    /// Takes a token for `ip`, or tells how long until one is due.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let ip = ip.to_canonical();
        if self.clients.len() >= self.max_clients {
            self.sweep();
            if self.clients.len() >= self.max_clients {
                return self
                    .overflow
                    .check()
                    .map_err(|not_until| not_until.wait_time_from(self.clock.now()));
            }
        }
        self.clients
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn sweep(&self) {
        let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= SWEEP_EVERY {
            *last = Instant::now();
            self.clients.retain_recent();
            self.clients.shrink_to_fit();
        }
    }

    /// Client addresses tracked now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn off_at_zero() {
        assert!(RateLimit::new(0.0, 10).is_none());
        // Only 0 is off: an absurd rate is clamped, never "no limit".
        for rate in [f64::NAN, 1e-20, f64::MIN_POSITIVE, f64::INFINITY, 1e300] {
            assert!(RateLimit::new(rate, 1).is_some(), "{rate}");
        }
        let slow = RateLimit::new(1e-20, 1).unwrap();
        assert!(slow.check(ip(1)).is_ok());
        assert!(slow.check(ip(1)).is_err());
        assert!(parse_rate("0").is_ok() && parse_rate("0.5").is_ok());
        for bad in ["1e-20", "-1", "NaN", "inf", "1e7", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_then_a_wait_per_client() {
        let limit = RateLimit::new(1.0, 3).unwrap();
        for _ in 0..3 {
            assert!(limit.check(ip(1)).is_ok());
        }
        let wait = limit.check(ip(1)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert!(limit.check(ip(2)).is_ok());
        // An IPv4-mapped IPv6 address is the same client.
        let mapped: IpAddr = "::ffff:0.0.0.1".parse().unwrap();
        assert!(limit.check(mapped).is_err());
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let limit = RateLimit::with_max_clients(1.0, 1, 100).unwrap();
        for n in 0..1000 {
            let _ = limit.check(ip(n));
        }
        assert!(limit.clients() <= 100, "{}", limit.clients());
        // New clients beyond the bound share the overflow bucket.
        assert!(limit.check(ip(5000)).is_err() || limit.check(ip(5001)).is_err());
    }
}
