//! The one observer of a pool: the only place the exporter fetches a pool
//! document, whoever asks (`/metrics`, `/probe`, `/ready`, the REST API,
//! the status page, the background poll of `--monitor.interval`).
//!
//! Each document has its own fetcher, so a hanging `/healthz` never delays
//! the status view. A fetch runs on its own task (a client hanging up never
//! cancels a fetch others wait for) and everyone who asks while it is in
//! flight joins it, scrapes and API calls alike. Two kinds of read:
//!
//! * **fresh** (the scrape path): a fetch in flight that ends no later than
//!   the reader's deadline, else a new one. Nothing completed earlier is
//!   served, so `/metrics` never shows old data.
//! * **recent** (the API, the status page, readiness): the copy kept from
//!   the last fetch when that was attempted within the TTL, else a fetch;
//!   when the last attempt failed, the last good copy is served flagged
//!   stale until it is older than `stale_max` (never for health: a health
//!   check that says "healthy" from a copy would lie).
//!
//! What a fetch brings is handled once, here: the secrets the exporter
//! knows are scrubbed from the body before it is decoded, the limits are
//! applied at decode (native series, label length, and
//! `--collector.max-connections`: the worst connections kept as the status
//! document is read, see [`super::status_doc`]), the derived counters
//! and rate window are fed, the fetch is counted and a failure logged
//! through the one throttle.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use secure_channel_client::ErrorKind;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{failure_reason_of, PoolClient};
use super::history::{DerivedCounters, ListedCounters, PoolHistory};
use super::limits::PoolSettings;
use super::native::{self, NativeSummary};
use super::redact::Redactor;
use super::status_doc::StatusDoc;
use super::window::{RateWindow, Rates};
use super::{Document, FailureReason, Health};
use crate::exposition::ParsedExposition;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where every fetch is counted (the `source_*` counters of the pool's
/// `/metrics`), so that the counts are the pool's, not one reader's.
pub trait FetchSink: Send + Sync {
    fn fetched(&self, doc: Document, reason: Option<FailureReason>);
}

/// A failed fetch as the exporter shows it: the kind, and a message with
/// every known secret removed.
#[derive(Debug, Clone)]
pub struct PoolFailure {
    pub kind: ErrorKind,
    pub message: Arc<str>,
    pub at: SystemTime,
}

impl PoolFailure {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> FailureReason {
        failure_reason_of(self.kind)
    }

    fn new(kind: ErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            at: SystemTime::now(),
        }
    }
}

impl std::fmt::Display for PoolFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What one fetch of one document produced, for the readers that joined it.
#[derive(Debug)]
pub struct Outcome<T> {
    pub result: Result<Arc<T>, PoolFailure>,
    pub duration: Duration,
}

impl<T> Clone for Outcome<T> {
    fn clone(&self) -> Self {
        Self {
            result: self.result.clone(),
            duration: self.duration,
        }
    }
}

/// The pool's native exposition: the text as sent (secrets scrubbed), one
/// copy shared by every API answer; its reading within the limits; and
/// what the API and the rates use of it.
#[derive(Debug)]
pub struct NativeDoc {
    pub text: Bytes,
    pub parsed: Arc<ParsedExposition>,
    pub summary: NativeSummary,
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

/// What the last fetches of one document left.
pub struct Slot<T> {
    good: Option<Good<T>>,
    attempted: Option<Instant>,
    /// Set when the latest attempt failed; cleared by a success.
    failure: Option<PoolFailure>,
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

/// Why a document cannot be served.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// The last attempt failed and no good copy young enough is left.
    Failed(PoolFailure),
    /// Never fetched.
    NotYet,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::NotYet => f.write_str("the document has not been fetched yet"),
        }
    }
}

impl<T> Slot<T> {
    fn due(&self, ttl: Duration) -> bool {
        self.attempted.is_none_or(|at| at.elapsed() >= ttl)
    }

    fn store(&mut self, result: Result<Arc<T>, PoolFailure>) {
        self.attempted = Some(Instant::now());
        match result {
            Ok(value) => {
                self.good = Some(Good {
                    value,
                    fetched: Stamp::now(),
                });
                self.failure = None;
            }
            Err(failure) => self.failure = Some(failure),
        }
    }

    /// When the last attempt was made.
    pub fn attempted(&self) -> Option<Instant> {
        self.attempted
    }

    /// The copy to serve: fresh, stale (the last attempt failed) while
    /// younger than `stale_max`, else why not.
    pub fn serve(&self, stale_max: Duration, allow_stale: bool) -> Result<Served<T>, Unavailable> {
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
            (_, Some(failure)) => Err(Unavailable::Failed(failure.clone())),
            (None, None) => Err(Unavailable::NotYet),
        }
    }
}

/// One document as a reader gets it.
#[derive(Debug)]
pub struct Served<T> {
    pub value: Arc<T>,
    pub fetched: Stamp,
    /// The last attempt failed; this is the last good copy.
    pub stale: bool,
    /// Why, when stale.
    pub failure: Option<PoolFailure>,
}

impl<T> Served<T> {
    pub fn age(&self) -> Duration {
        self.fetched.at.elapsed()
    }
}

/// How a recent read was served, for the API's cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Everything was kept (or came from a fetch another reader drove).
    Hit,
    /// This read started a fetch.
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

/// The documents and rates one recent read works from.
pub struct Recent {
    status: Slot<StatusDoc>,
    health: Slot<Health>,
    metrics: Slot<NativeDoc>,
    stale_max: Duration,
    pub rates: Rates,
    /// The counters derived from every status document so far: the same
    /// values `/metrics` shows as `*_seen_total`.
    pub derived: Option<DerivedCounters>,
    /// The pool's base URL, credentials removed.
    pub source: String,
}

impl Recent {
    pub fn status(&self) -> Result<Served<StatusDoc>, Unavailable> {
        self.status.serve(self.stale_max, true)
    }

    /// Never served stale (see the module's documentation).
    pub fn health(&self) -> Result<Served<Health>, Unavailable> {
        self.health.serve(self.stale_max, false)
    }

    pub fn metrics(&self) -> Result<Served<NativeDoc>, Unavailable> {
        self.metrics.serve(self.stale_max, true)
    }

    /// What the last status fetches left, for readiness.
    pub fn status_slot(&self) -> &Slot<StatusDoc> {
        &self.status
    }

    fn any_stale(&self, docs: &[Document]) -> bool {
        docs.iter().any(|doc| match doc {
            Document::Status => self.status().is_ok_and(|s| s.stale),
            Document::Health => false,
            Document::Metrics => self.metrics().is_ok_and(|s| s.stale),
        })
    }
}

struct Flight<T> {
    id: u64,
    deadline: Instant,
    result: watch::Receiver<Option<Outcome<T>>>,
}

struct FetchState<T, K> {
    flight: Option<Flight<T>>,
    next_id: u64,
    slot: Slot<K>,
}

/// One document's fetches: the one in flight and what the last ones left.
struct Fetcher<T, K> {
    state: Mutex<FetchState<T, K>>,
}

impl<T, K> Default for Fetcher<T, K> {
    fn default() -> Self {
        Self {
            state: Mutex::new(FetchState {
                flight: None,
                next_id: 0,
                slot: Slot::default(),
            }),
        }
    }
}

impl<T, K> Fetcher<T, K> {
    fn lock(&self) -> MutexGuard<'_, FetchState<T, K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the observer remembers across documents.
#[derive(Default)]
struct Memory {
    history: PoolHistory,
    window: RateWindow,
    last_endpoint: Option<String>,
}

struct Inner {
    client: PoolClient,
    settings: PoolSettings,
    redactor: Redactor,
    sink: Option<Arc<dyn FetchSink>>,
    status: Fetcher<StatusDoc, StatusDoc>,
    health: Fetcher<Health, Health>,
    metrics: Fetcher<NativeDoc, NativeDoc>,
    memory: Mutex<Memory>,
}

/// A document the observer fetches: how, where its fetcher is, and what
/// a fetched copy leaves behind.
trait Observed: Sized + Send + Sync + 'static {
    type Kept: Send + Sync + 'static;
    const DOC: Document;
    fn fetcher(inner: &Inner) -> &Fetcher<Self, Self::Kept>;
    fn fetch(inner: Arc<Inner>, deadline: Instant) -> BoxFuture<Result<Self, PoolFailure>>;
    /// Feeds the memory and returns what later readers get.
    fn absorb(inner: &Inner, value: &Arc<Self>) -> Arc<Self::Kept>;
}

impl Observed for StatusDoc {
    type Kept = StatusDoc;
    const DOC: Document = Document::Status;
    fn fetcher(inner: &Inner) -> &Fetcher<Self, StatusDoc> {
        &inner.status
    }
    fn fetch(inner: Arc<Inner>, deadline: Instant) -> BoxFuture<Result<Self, PoolFailure>> {
        Box::pin(async move {
            let body = inner.body(Document::Status, deadline).await?;
            // Decoding megabytes off the runtime's threads, which keep
            // answering liveness and other requests meanwhile.
            let max = inner.settings.max_connections;
            let decoded = tokio::task::spawn_blocking(move || StatusDoc::decode(&body, max))
                .await
                .map_err(|e| inner.failure(ErrorKind::Decode, &e.to_string()))?;
            let (doc, listed) = decoded.map_err(|e| {
                inner.failure(
                    ErrorKind::Decode,
                    &format!(
                        "cannot decode the body of {}: {e}",
                        inner.client.display_url(Document::Status)
                    ),
                )
            })?;
            inner.remember(&doc, &listed);
            Ok(doc)
        })
    }
    fn absorb(_: &Inner, value: &Arc<Self>) -> Arc<StatusDoc> {
        value.clone()
    }
}

impl Observed for Health {
    type Kept = Health;
    const DOC: Document = Document::Health;
    fn fetcher(inner: &Inner) -> &Fetcher<Self, Health> {
        &inner.health
    }
    fn fetch(inner: Arc<Inner>, deadline: Instant) -> BoxFuture<Result<Self, PoolFailure>> {
        Box::pin(async move {
            let fetched = inner.fetched(Document::Health, deadline).await?;
            let url = inner.client.display_url(Document::Health);
            let body = inner.redactor.bytes(fetched.body().clone());
            // A 503 carrying the health document is an answer
            // ("unhealthy"); without one it is a failed fetch.
            serde_json::from_slice::<Health>(&body).map_err(|e| {
                if fetched.status() == 503 {
                    inner.failure(ErrorKind::Status, &format!("{url} answered HTTP 503"))
                } else {
                    inner.failure(
                        ErrorKind::Decode,
                        &format!("cannot decode the body of {url}: {e}"),
                    )
                }
            })
        })
    }
    fn absorb(_: &Inner, value: &Arc<Self>) -> Arc<Health> {
        value.clone()
    }
}

impl Observed for NativeDoc {
    type Kept = NativeDoc;
    const DOC: Document = Document::Metrics;
    fn fetcher(inner: &Inner) -> &Fetcher<Self, NativeDoc> {
        &inner.metrics
    }
    fn fetch(inner: Arc<Inner>, deadline: Instant) -> BoxFuture<Result<Self, PoolFailure>> {
        Box::pin(async move {
            let fetched = inner.fetched(Document::Metrics, deadline).await?;
            // The format the pool states, if any, decides how it is read.
            let content_type = fetched.content_type().map(str::to_owned);
            let text = inner.redactor.bytes(fetched.into_body());
            let (url, limits) = (
                inner.client.display_url(Document::Metrics).to_owned(),
                inner.settings.limits.parse(),
            );
            let read = tokio::task::spawn_blocking(move || -> Result<NativeDoc, String> {
                let parsed = super::client::parse_native(&text, content_type.as_deref(), limits)
                    .map_err(|detail| format!("cannot decode the body of {url}: {detail}"))?;
                let summary = native::summarize(&parsed);
                Ok(NativeDoc {
                    text,
                    parsed: Arc::new(parsed),
                    summary,
                })
            });
            match read.await {
                Ok(Ok(doc)) => Ok(doc),
                Ok(Err(detail)) => Err(inner.failure(ErrorKind::Decode, &detail)),
                Err(e) => Err(inner.failure(ErrorKind::Decode, &e.to_string())),
            }
        })
    }
    fn absorb(inner: &Inner, value: &Arc<Self>) -> Arc<NativeDoc> {
        inner.memory().window.push_native(&value.summary);
        value.clone()
    }
}

impl Inner {
    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds a decoded status document to the history and the rate window.
    fn remember(&self, doc: &StatusDoc, listed: &ListedCounters) {
        let endpoint = &doc.status.endpoint;
        let mut memory = self.memory();
        memory.history.observe_listed(endpoint, listed);
        if let Some(counters) = memory.history.counters().cloned() {
            memory.window.push_status(&counters);
        }
        if memory.last_endpoint.as_deref() != Some(endpoint.as_str()) {
            memory.last_endpoint = Some(endpoint.clone());
        }
    }

    fn failure(&self, kind: ErrorKind, message: &str) -> PoolFailure {
        PoolFailure::new(kind, self.redactor.text(message).as_ref())
    }

    async fn fetched(
        &self,
        doc: Document,
        deadline: Instant,
    ) -> Result<secure_channel_client::Fetched, PoolFailure> {
        self.client
            .api_client()
            .fetch(
                doc,
                secure_channel_client::CallOptions::new().deadline(deadline),
            )
            .await
            .map_err(|e| self.failure(e.kind(), &e.to_string()))
    }

    /// The body of `doc`, every known secret scrubbed before anything
    /// reads it.
    async fn body(&self, doc: Document, deadline: Instant) -> Result<Bytes, PoolFailure> {
        let fetched = self.fetched(doc, deadline).await?;
        Ok(self.redactor.bytes(fetched.into_body()))
    }

    /// Counts a fetch and logs a failure (throttled: a pool that fails
    /// every scrape would otherwise write a line per document per scrape).
    fn count(&self, doc: Document, failure: Option<&PoolFailure>) {
        if let Some(sink) = &self.sink {
            sink.fetched(doc, failure.map(PoolFailure::reason));
        }
        if let Some(e) = failure {
            let reason = e.reason().as_str();
            let url = self.client.display_url(doc);
            // Keyed by document and reason, not URL: /probe of hundreds of
            // failing targets is one line per reason and window, with the
            // count of the others.
            let key = format!("pool fetch failed {} {reason}", doc.as_str());
            if let Some(repeats) = crate::logging::throttle().admit(&key) {
                tracing::warn!(
                    document = doc.as_str(),
                    reason,
                    url = %crate::logging::truncated(url),
                    error = %crate::logging::truncated(&e.message),
                    "pool fetch failed{repeats}"
                );
            }
        }
    }
}

/// Starts a fetch of `T` ending by `deadline` on its own task, as the
/// fetch in flight of its document.
fn start<T: Observed>(
    inner: &Arc<Inner>,
    state: &mut FetchState<T, T::Kept>,
    deadline: Instant,
) -> watch::Receiver<Option<Outcome<T>>> {
    let (tx, rx) = watch::channel(None);
    let id = state.next_id;
    state.next_id += 1;
    state.flight = Some(Flight {
        id,
        deadline,
        result: rx.clone(),
    });
    let inner = inner.clone();
    tokio::spawn(async move {
        let began = Instant::now();
        let result = T::fetch(inner.clone(), deadline).await;
        let duration = began.elapsed();
        inner.count(T::DOC, result.as_ref().err());
        let result = result.map(Arc::new);
        let kept = match &result {
            Ok(value) => Ok(T::absorb(&inner, value)),
            Err(e) => Err(e.clone()),
        };
        {
            // Stored and closed under one lock: a reader arriving from now
            // on sees this fetch's copy, never a flight that is over.
            let mut state = T::fetcher(&inner).lock();
            state.slot.store(kept);
            if state.flight.as_ref().is_some_and(|f| f.id == id) {
                state.flight = None;
            }
        }
        let _ = tx.send(Some(Outcome { result, duration }));
    });
    rx
}

async fn wait<T>(mut rx: watch::Receiver<Option<Outcome<T>>>) -> Outcome<T> {
    match rx.wait_for(Option::is_some).await {
        Ok(done) => done.clone().expect("waited for a value"),
        // Only when the runtime shuts down under the task.
        Err(_) => Outcome {
            result: Err(PoolFailure::new(
                ErrorKind::Connect,
                "the fetch was abandoned (shutting down)",
            )),
            duration: Duration::ZERO,
        },
    }
}

/// One pool as every feature sees it. Cheap to clone.
#[derive(Clone)]
pub struct PoolObserver {
    inner: Arc<Inner>,
}

impl PoolObserver {
    pub fn new(client: PoolClient, settings: PoolSettings, redactor: Redactor) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                settings,
                redactor,
                sink: None,
                status: Fetcher::default(),
                health: Fetcher::default(),
                metrics: Fetcher::default(),
                memory: Mutex::default(),
            }),
        }
    }

    /// The same observer counting its fetches in `sink`. Only before it is
    /// shared.
    pub fn with_sink(self, sink: Arc<dyn FetchSink>) -> Self {
        let Ok(mut inner) = Arc::try_unwrap(self.inner) else {
            panic!("with_sink before the observer is shared");
        };
        inner.sink = Some(sink);
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn settings(&self) -> PoolSettings {
        self.inner.settings
    }

    /// The pool's base URL, credentials removed.
    pub fn pool_url(&self) -> &str {
        self.inner.client.display_base()
    }

    /// Every known secret removed from `text` (for anything else the pool
    /// sent that a feature shows).
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.inner.redactor.text(text)
    }

    /// The counters derived from the status documents so far.
    pub fn derived(&self) -> Option<DerivedCounters> {
        self.inner.memory().history.counters().cloned()
    }

    /// The `endpoint` of the last status document that named one.
    pub fn last_endpoint(&self) -> Option<String> {
        self.inner.memory().last_endpoint.clone()
    }

    async fn fresh<T: Observed>(&self, deadline: Instant) -> Outcome<T> {
        let rx = {
            let mut state = T::fetcher(&self.inner).lock();
            match &state.flight {
                Some(flight) if flight.deadline <= deadline => flight.result.clone(),
                _ => start(&self.inner, &mut state, deadline),
            }
        };
        wait(rx).await
    }

    /// The status document from a fetch in flight that ends by `deadline`,
    /// else a new one: never a copy completed before the call.
    pub async fn fresh_status(&self, deadline: Instant) -> Outcome<StatusDoc> {
        self.fresh(deadline).await
    }

    pub async fn fresh_health(&self, deadline: Instant) -> Outcome<Health> {
        self.fresh(deadline).await
    }

    pub async fn fresh_metrics(&self, deadline: Instant) -> Outcome<NativeDoc> {
        self.fresh(deadline).await
    }

    /// Joins or starts a fetch of `T` when its last attempt is older than
    /// `ttl`; whether this call started it.
    async fn refresh<T: Observed>(&self, ttl: Duration) -> bool {
        let (rx, started) = {
            let mut state = T::fetcher(&self.inner).lock();
            if let Some(flight) = &state.flight {
                if !state.slot.due(ttl) {
                    return false;
                }
                (flight.result.clone(), false)
            } else if state.slot.due(ttl) {
                let deadline = Instant::now() + self.inner.settings.timeout;
                (start(&self.inner, &mut state, deadline), true)
            } else {
                return false;
            }
        };
        wait(rx).await;
        started
    }

    /// `docs` as kept, each fetched first when its last attempt is older
    /// than `ttl`; documents are fetched independently, so a slow one
    /// delays only the readers that need it.
    pub async fn recent(
        &self,
        docs: &[Document],
        ttl: Duration,
        stale_max: Duration,
    ) -> (Recent, Lookup) {
        let wants = |doc| docs.contains(&doc);
        let (a, b, c) = tokio::join!(
            async { wants(Document::Status) && self.refresh::<StatusDoc>(ttl).await },
            async { wants(Document::Health) && self.refresh::<Health>(ttl).await },
            async { wants(Document::Metrics) && self.refresh::<NativeDoc>(ttl).await },
        );
        let recent = self.kept(stale_max);
        let lookup = if recent.any_stale(docs) {
            Lookup::Stale
        } else if a || b || c {
            Lookup::Miss
        } else {
            Lookup::Hit
        };
        (recent, lookup)
    }

    /// What the last fetches left, without fetching.
    pub fn kept(&self, stale_max: Duration) -> Recent {
        let i = &self.inner;
        let (rates, derived) = {
            let memory = i.memory();
            (memory.window.rates(), memory.history.counters().cloned())
        };
        Recent {
            status: i.status.lock().slot.clone(),
            health: i.health.lock().slot.clone(),
            metrics: i.metrics.lock().slot.clone(),
            stale_max,
            rates,
            derived,
            source: i.client.display_base().to_owned(),
        }
    }

    /// Polls status and health every `interval` on a task of its own
    /// (`--monitor.interval`), keeping them warm for the API and logging
    /// each change of the pool's health once. Stops when the observer's
    /// last other holder is gone.
    pub fn keep_warm(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let timeout = self
            .inner
            .settings
            .timeout
            .min(interval.max(Duration::from_millis(100)));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<&'static str> = None;
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let observer = PoolObserver { inner };
                let deadline = Instant::now() + timeout;
                let (_, health) = tokio::join!(
                    observer.fresh_status(deadline),
                    observer.fresh_health(deadline)
                );
                let (to, reason) = match &health.result {
                    Ok(h) => match h.is_healthy() {
                        Some(true) => ("healthy", h.status.clone().unwrap_or_default()),
                        _ => (
                            "unhealthy",
                            h.status.clone().unwrap_or_else(|| "no status".into()),
                        ),
                    },
                    Err(e) => ("unreachable", e.message.to_string()),
                };
                if last != Some(to) {
                    tracing::info!(
                        from = last.unwrap_or("none"),
                        to,
                        reason = %crate::logging::truncated(&reason),
                        "pool health changed"
                    );
                    last = Some(to);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_then_error_after_stale_max() {
        let mut slot = Slot::<u32>::default();
        assert!(slot.serve(Duration::from_secs(60), true).is_err());
        slot.store(Ok(Arc::new(7)));
        let served = slot.serve(Duration::from_secs(60), true).unwrap();
        assert!(!served.stale);
        slot.store(Err(PoolFailure::new(ErrorKind::Timeout, "late")));
        let served = slot.serve(Duration::from_secs(60), true).unwrap();
        assert!(served.stale);
        assert_eq!(*served.value, 7);
        // Not for health, and not past stale_max.
        assert!(matches!(
            slot.serve(Duration::from_secs(60), false),
            Err(Unavailable::Failed(_))
        ));
        std::thread::sleep(Duration::from_millis(5));
        assert!(slot.serve(Duration::from_millis(1), true).is_err());
    }
}
