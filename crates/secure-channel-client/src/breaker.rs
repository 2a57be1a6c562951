//! Opt-in circuit breaker shared by all clones of a client.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Circuit breaker settings. Off unless set with
/// [`PoolClientBuilder::circuit_breaker`](crate::PoolClientBuilder::circuit_breaker).
///
/// After `failure_threshold` consecutive failures the breaker opens: calls
/// fail fast with [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen) (saying
/// until when) without touching the network. After `cooldown` one call is
/// let through as a probe (half-open); others keep failing fast while it
/// runs. A successful probe closes the breaker, a failed one opens it for
/// another cooldown.
///
/// Failures are what the pool did: connect errors, HTTP 5xx answers (but
/// not the 503 health answer of `/healthz`), and timeouts of the client's
/// own limits (its [`timeout`](crate::PoolClientBuilder::timeout), the
/// retry policy's per-attempt timeout, the connect timeout, or a caller's
/// deadline at least as long as the client's timeout). A caller's shorter
/// deadline that cuts an answer off counts as nothing, and a deadline that
/// has already passed never reaches the breaker or the pool. Any other
/// answer, including 401 and an undecodable body, shows the pool is
/// reachable and counts as a success. The state is shared by every clone
/// of the client.
///
/// ```
/// use std::time::Duration;
/// use secure_channel_client::CircuitBreaker;
///
/// let breaker = CircuitBreaker::new(5, Duration::from_secs(30));
/// assert_eq!(breaker.failure_threshold(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cooldown: Duration,
}

impl Default for CircuitBreaker {
    /// Opens after 5 consecutive failures, for 30 s.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(30))
    }
}

impl CircuitBreaker {
    /// Opens after `failure_threshold` consecutive failures (at least 1)
    /// for `cooldown`.
    pub fn new(failure_threshold: u32, cooldown: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cooldown,
        }
    }

    /// Consecutive failures that open the breaker.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// How long the breaker stays open before a probe.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }
}

/// The state of a client's circuit breaker, from
/// [`PoolClient::circuit_state`](crate::PoolClient::circuit_state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Calls fail fast until `until`.
    Open {
        /// When a probe will be let through.
        until: SystemTime,
    },
    /// The cooldown is over: the next call (or the one running) is the probe.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed,
    Open {
        until: Instant,
        until_wall: SystemTime,
    },
    HalfOpen {
        probe_in_flight: bool,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
}

/// The shared state of one breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: CircuitBreaker,
    inner: Mutex<Inner>,
}

/// Refusal: the breaker is open.
pub(crate) struct Refused {
    pub until: SystemTime,
    pub retry_in: Duration,
    pub failures: u32,
}

/// Permission to make one call; report its outcome with [`Permit::record`].
/// Dropped unrecorded (the call was cancelled), a probe permit frees the
/// probe slot.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreaker) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn acquire(&self) -> Result<Permit<'_>, Refused> {
        let mut inner = self.lock();
        let now = Instant::now();
        let probe = match inner.state {
            State::Closed => false,
            State::Open { until, until_wall } => {
                if now < until {
                    return Err(Refused {
                        until: until_wall,
                        retry_in: until - now,
                        failures: inner.failures,
                    });
                }
                inner.state = State::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
            State::HalfOpen { probe_in_flight } => {
                if probe_in_flight {
                    return Err(Refused {
                        until: SystemTime::now(),
                        retry_in: Duration::ZERO,
                        failures: inner.failures,
                    });
                }
                inner.state = State::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            recorded: false,
        })
    }

    pub(crate) fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.state {
            State::Closed => CircuitState::Closed {
                failures: inner.failures,
            },
            State::Open { until, until_wall } if Instant::now() < until => {
                CircuitState::Open { until: until_wall }
            }
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

impl Permit<'_> {
    /// The call ended without saying anything about the pool (the caller's
    /// deadline cut it short): neither a success nor a failure. A probe
    /// slot is freed for the next call.
    pub(crate) fn release(self) {}

    pub(crate) fn record(mut self, success: bool) {
        self.recorded = true;
        let breaker = self.breaker;
        let mut inner = breaker.lock();
        if success {
            inner.failures = 0;
            inner.state = State::Closed;
            return;
        }
        inner.failures = inner.failures.saturating_add(1);
        let open = match inner.state {
            State::HalfOpen { .. } => self.probe,
            State::Closed => inner.failures >= breaker.config.failure_threshold,
            State::Open { .. } => false,
        };
        if open {
            inner.state = State::Open {
                until: Instant::now() + breaker.config.cooldown,
                until_wall: SystemTime::now() + breaker.config.cooldown,
            };
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut inner = self.breaker.lock();
            if let State::HalfOpen { .. } = inner.state {
                inner.state = State::HalfOpen {
                    probe_in_flight: false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn state_machine_with_paused_time() {
        let b = Breaker::new(CircuitBreaker::new(2, Duration::from_secs(30)));
        b.acquire().ok().unwrap().record(false);
        assert_eq!(b.state(), CircuitState::Closed { failures: 1 });
        b.acquire().ok().unwrap().record(true);
        assert_eq!(b.state(), CircuitState::Closed { failures: 0 });
        b.acquire().ok().unwrap().record(false);
        b.acquire().ok().unwrap().record(false);
        let refused = b.acquire().err().unwrap();
        assert_eq!(refused.retry_in, Duration::from_secs(30));
        assert_eq!(refused.failures, 2);

        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.acquire().err().unwrap().retry_in, Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        // One probe; a concurrent call is refused.
        let probe = b.acquire().ok().unwrap();
        assert!(b.acquire().is_err());
        // A cancelled probe frees the slot.
        drop(probe);
        let probe = b.acquire().ok().unwrap();
        probe.record(false);
        assert!(matches!(b.state(), CircuitState::Open { .. }));
        tokio::time::advance(Duration::from_secs(30)).await;
        b.acquire().ok().unwrap().record(true);
        assert_eq!(b.state(), CircuitState::Closed { failures: 0 });
    }
}
