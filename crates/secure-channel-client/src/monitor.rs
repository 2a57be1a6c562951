//! Polls a pool on an interval, publishes snapshots and health transitions.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{CallOptions, Document, Error, Health, PoolClient, PoolStatus};

/// The pool's health as the monitor sees it.
///
/// Note (published pool): `/healthz` answers 503 "unhealthy" whenever the
/// idle list is empty, which is the normal state of a busy pool whose
/// callers hold every connection. A transition to
/// [`Unhealthy`](HealthState::Unhealthy) is therefore not by itself an
/// outage; [`Unreachable`](HealthState::Unreachable) is the stronger signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// The pool answered its health document saying healthy.
    Healthy,
    /// The pool answered its health document saying unhealthy (or neither).
    Unhealthy,
    /// No usable health answer: connect error, timeout, unexpected status,
    /// undecodable body, open circuit breaker.
    Unreachable,
}

impl HealthState {
    /// `healthy`, `unhealthy` or `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of [`HealthState`], reported once per change.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state before; `None` for the monitor's first observation.
    pub from: Option<HealthState>,
    /// The new state.
    pub to: HealthState,
    /// When the new state was observed.
    pub at: SystemTime,
    /// When the previous state was first observed (`None` for the first
    /// observation).
    pub previous_since: Option<SystemTime>,
    /// Why: the pool's answer, or the error.
    pub reason: String,
}

/// The latest result of one poll of the pool.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// 1 for the first poll, then increasing by one per poll.
    pub sequence: u64,
    /// When the poll finished.
    pub fetched_at: SystemTime,
    /// The health state this poll observed.
    pub state: HealthState,
    /// Since when the state has been [`state`](Self::state).
    pub state_since: SystemTime,
    /// The status document, or why it could not be had.
    pub status: Result<PoolStatus, Error>,
    /// The health document (a 503 answer included), or why it could not be had.
    pub health: Result<Health, Error>,
    /// The most recent error of any poll so far, with when it happened (it
    /// stays after later polls succeed).
    pub last_error: Option<(SystemTime, Error)>,
}

/// Starts a [`Monitor`]; see [`Monitor::builder`].
#[derive(Debug, Clone)]
pub struct MonitorBuilder {
    client: PoolClient,
    interval: Duration,
    timeout: Option<Duration>,
    capacity: usize,
}

impl MonitorBuilder {
    /// Time between the starts of two polls (default 15 s; at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Deadline of each poll (default: the client's timeout). A poll that
    /// takes longer than the interval delays the next one; polls never
    /// overlap.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many transitions a slow subscriber may fall behind before it
    /// misses some (default 64; see [`broadcast`]).
    pub fn transition_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Starts polling at once, on a task of the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(self) -> Monitor {
        let (snap_tx, snap_rx) = watch::channel(None);
        let (trans_tx, first_rx) = broadcast::channel(self.capacity);
        let (stop_tx, stop_rx) = oneshot::channel();
        let timeout = self.timeout.unwrap_or_else(|| self.client.timeout());
        let task = tokio::spawn(run(
            self.client,
            self.interval,
            timeout,
            snap_tx,
            trans_tx.clone(),
            stop_rx,
        ));
        Monitor {
            snapshots: snap_rx,
            transitions: trans_tx,
            first: Mutex::new(Some(first_rx)),
            stop: Some(stop_tx),
            task: Some(task),
        }
    }
}

/// A background poller of one pool.
///
/// Every interval it fetches the status and health documents concurrently,
/// publishes a [`Snapshot`] on a [`watch`] channel and, when the
/// [`HealthState`] changed, sends one [`Transition`] on a [`broadcast`]
/// channel. It stops when dropped or on [`shutdown`](Self::shutdown).
///
/// ```no_run
/// use std::time::Duration;
/// use secure_channel_client::{Monitor, PoolClient};
///
/// # async fn run() -> Result<(), secure_channel_client::Error> {
/// let client = PoolClient::builder().base_url("http://127.0.0.1:9090").build()?;
/// let monitor = Monitor::builder(client).interval(Duration::from_secs(5)).start();
/// let mut transitions = monitor.subscribe();
/// while let Ok(t) = transitions.recv().await {
///     println!("{:?} -> {} ({})", t.from, t.to, t.reason);
/// }
/// # Ok(()) }
/// ```
pub struct Monitor {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    transitions: broadcast::Sender<Transition>,
    first: Mutex<Option<broadcast::Receiver<Transition>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field(
                "running",
                &self.task.as_ref().is_some_and(|t| !t.is_finished()),
            )
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A builder polling with `client` (15 s interval by default).
    pub fn builder(client: PoolClient) -> MonitorBuilder {
        MonitorBuilder {
            client,
            interval: Duration::from_secs(15),
            timeout: None,
            capacity: 64,
        }
    }

    /// The latest snapshot, `None` before the first poll finished.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.snapshots.borrow().clone()
    }

    /// A receiver of every new snapshot (`None` before the first poll).
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.snapshots.clone()
    }

    /// A receiver of health transitions.
    ///
    /// The first call returns a receiver that has every transition since
    /// the monitor started (the first observation included), so nothing is
    /// lost between [`MonitorBuilder::start`] and subscribing; later calls
    /// get the transitions from the moment of the call. The current state
    /// is always in [`latest`](Self::latest).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        first.take().unwrap_or_else(|| self.transitions.subscribe())
    }

    /// Stops polling and waits for the task to end (a poll in progress is
    /// abandoned).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    client: PoolClient,
    interval: Duration,
    timeout: Duration,
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    transitions: broadcast::Sender<Transition>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut current: Option<(HealthState, SystemTime)> = None;
    let mut last_error: Option<(SystemTime, Error)> = None;
    let mut sequence = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let deadline = Instant::now() + timeout;
        let poll = async {
            tokio::join!(
                client.status(CallOptions::new().deadline(deadline)),
                client.fetch(Document::Health, CallOptions::new().deadline(deadline))
            )
        };
        let (status, health) = tokio::select! {
            _ = &mut stop => return,
            r = poll => r,
        };
        let now = SystemTime::now();
        let (state, reason, health) = classify(health);
        if current.map(|(s, _)| s) != Some(state) {
            let _ = transitions.send(Transition {
                from: current.map(|(s, _)| s),
                to: state,
                at: now,
                previous_since: current.map(|(_, since)| since),
                reason,
            });
            current = Some((state, now));
        }
        for e in [health.as_ref().err(), status.as_ref().err()]
            .into_iter()
            .flatten()
        {
            last_error = Some((now, e.clone()));
        }
        sequence += 1;
        snapshots.send_replace(Some(Arc::new(Snapshot {
            sequence,
            fetched_at: now,
            state,
            state_since: current.map_or(now, |(_, since)| since),
            status,
            health,
            last_error: last_error.clone(),
        })));
    }
}

fn classify(
    fetched: Result<crate::Fetched, Error>,
) -> (HealthState, String, Result<Health, Error>) {
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => return (HealthState::Unreachable, e.to_string(), Err(e)),
    };
    let health: Health = match fetched.json() {
        Ok(h) => h,
        Err(e) => {
            let e = if fetched.status() == 503 {
                Error::http_status(fetched.url(), 503)
            } else {
                e
            };
            return (HealthState::Unreachable, e.to_string(), Err(e));
        }
    };
    let idle = health
        .active_connections
        .map(|n| format!(", {n} idle connections"))
        .unwrap_or_default();
    let (state, reason) = match health.is_healthy() {
        Some(true) => (
            HealthState::Healthy,
            format!("pool answered healthy (HTTP {}{idle})", fetched.status()),
        ),
        Some(false) => (
            HealthState::Unhealthy,
            format!("pool answered unhealthy (HTTP {}{idle})", fetched.status()),
        ),
        None => (
            HealthState::Unhealthy,
            format!(
                "pool answered HTTP {} with a health document saying neither healthy nor unhealthy",
                fetched.status()
            ),
        ),
    };
    (state, reason, Ok(health))
}
