//! Opt-in retries with exponential backoff and jitter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the backoff before a retry is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `min(max_backoff, base * 2^(retry-1))`.
    None,
    /// "Full jitter": a uniform draw in `[0, min(max_backoff, base * 2^(retry-1))]`.
    #[default]
    Full,
    /// "Decorrelated jitter": a uniform draw in `[base, previous * 3]`,
    /// capped at `max_backoff`.
    Decorrelated,
}

/// When and how often a failed call is tried again. Off unless set with
/// [`PoolClientBuilder::retry`](crate::PoolClientBuilder::retry).
///
/// Only failures that are safe and useful to retry are retried: connect
/// errors, timeouts and HTTP 502, 503 and 504, except a 503 from
/// `/healthz` (that is the pool's health answer, not a failure). A 401/403,
/// a too-large body, a decode error or any other status is returned at once.
///
/// A retry never sleeps past the caller's deadline: if the next backoff
/// would end at or after it, the last error is returned instead.
///
/// ```
/// use std::time::Duration;
/// use secure_channel_client::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::new(4)
///     .base_backoff(Duration::from_millis(50))
///     .max_backoff(Duration::from_secs(1))
///     .jitter(Jitter::Decorrelated)
///     .attempt_timeout(Some(Duration::from_secs(2)));
/// assert_eq!(policy.max_attempts(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    jitter: Jitter,
    attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Three attempts, 100 ms base, 2 s max backoff, full jitter, no
    /// per-attempt timeout.
    fn default() -> Self {
        Self::new(3)
    }
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (the first call included;
    /// values below 1 count as 1), 100 ms base, 2 s max backoff, full
    /// jitter, no per-attempt timeout.
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            jitter: Jitter::Full,
            attempt_timeout: None,
        }
    }

    /// The backoff before the first retry (doubled for each further one).
    pub fn base_backoff(mut self, base: Duration) -> Self {
        self.base_backoff = base;
        self
    }

    /// The longest backoff.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// The jitter strategy.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Cuts each attempt short after this long so that a pool that blocks
    /// (the published pool blocks up to 30 s during a relay outage) leaves
    /// time for another attempt. `None` (the default): every attempt may
    /// use all the time left before the deadline.
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The per-attempt timeout, if any.
    pub fn attempt_timeout_value(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The backoff before retry number `retry` (1 for the first retry),
    /// given the previous backoff (for decorrelated jitter).
    pub(crate) fn backoff(&self, retry: u32, previous: Duration) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        match self.jitter {
            Jitter::None => exp,
            Jitter::Full => random_between(Duration::ZERO, exp),
            Jitter::Decorrelated => {
                let low = self.base_backoff.min(self.max_backoff);
                let high = previous.max(self.base_backoff).saturating_mul(3);
                random_between(low, high).min(self.max_backoff)
            }
        }
    }
}

/// A uniform draw in `[low, high]` from a xorshift generator seeded from
/// the clock: good enough to spread retries, not for anything secret.
fn random_between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_nanos().min(u128::from(u64::MAX)) as u64;
    low + Duration::from_nanos(next_random() % span.saturating_add(1).max(1))
}

fn next_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        x = nanos ^ 0x9E37_79B9_7F4A_7C15 ^ (&STATE as *const _ as u64);
        if x == 0 {
            x = 1;
        }
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_bounds() {
        let p = RetryPolicy::new(10)
            .base_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1));
        let none = p.clone().jitter(Jitter::None);
        assert_eq!(none.backoff(1, Duration::ZERO), Duration::from_millis(100));
        assert_eq!(none.backoff(3, Duration::ZERO), Duration::from_millis(400));
        assert_eq!(none.backoff(40, Duration::ZERO), Duration::from_secs(1));
        for retry in 1..20 {
            let full = p.backoff(retry, Duration::ZERO);
            assert!(full <= Duration::from_secs(1));
            let d = p
                .clone()
                .jitter(Jitter::Decorrelated)
                .backoff(retry, Duration::from_millis(300));
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
    }

    #[test]
    fn random_draws_vary() {
        let draws: std::collections::HashSet<u64> = (0..100).map(|_| next_random()).collect();
        assert!(draws.len() > 90);
    }
}
