//! One scrape end to end: fetch the pool's three documents concurrently
//! within the deadline, keep the counters that live across scrapes, and
//! render the translation in the negotiated format.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::exposition::encode::Encoder;
use crate::exposition::Format;
use crate::pool::client::{Document, FailureReason};
use crate::pool::{FetchError, PoolClient};
use crate::translate::{
    translate, BuildInfo, Snapshot, SourceCounters, SourceOutcome, TranslateOptions,
};

/// How long a status fetch vouches for readiness before `/ready` asks again.
pub const READINESS_CACHE: Duration = Duration::from_secs(5);

pub struct Collector {
    client: PoolClient,
    max_connections: usize,
    pool_timeout: Duration,
    counters: Mutex<SourceCounters>,
    last_endpoint: Mutex<Option<String>>,
    last_status: Mutex<Option<StatusCheck>>,
}

#[derive(Debug, Clone)]
struct StatusCheck {
    at: Instant,
    error: Option<String>,
}

/// The answer of `/ready`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub pool_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub checked_seconds_ago: f64,
}

impl Collector {
    pub fn new(client: PoolClient, max_connections: usize, pool_timeout: Duration) -> Self {
        Self {
            client,
            max_connections,
            pool_timeout,
            counters: Mutex::new(SourceCounters::default()),
            last_endpoint: Mutex::new(None),
            last_status: Mutex::new(None),
        }
    }

    pub fn pool_url(&self) -> &str {
        self.client.display_base()
    }

    pub fn pool_timeout(&self) -> Duration {
        self.pool_timeout
    }

    /// Fetches the three documents concurrently; each failure is counted,
    /// logged and recorded in the snapshot, never propagated.
    pub async fn collect(&self, deadline: Instant) -> Snapshot {
        let (status, health, metrics) = tokio::join!(
            timed(self.client.status(deadline)),
            timed(self.client.health(deadline)),
            timed(self.client.metrics(deadline)),
        );
        let snapshot = Snapshot {
            status: self.record(Document::Status, status),
            health: self.record(Document::Health, health),
            metrics: self.record(Document::Metrics, metrics),
        };
        if let Ok(status) = &snapshot.status.result {
            let mut last = self.last_endpoint.lock().unwrap_or_else(|e| e.into_inner());
            if last.as_deref() != Some(status.endpoint.as_str()) {
                *last = Some(status.endpoint.clone());
            }
        }
        snapshot
    }

    fn record<T>(
        &self,
        doc: Document,
        (result, duration): (Result<T, FetchError>, Duration),
    ) -> SourceOutcome<T> {
        let reason = result.as_ref().err().map(FetchError::reason);
        {
            let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            counters.requests[doc as usize] += 1;
            if let Some(reason) = reason {
                let i = FailureReason::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or(0);
                counters.failures[doc as usize][i] += 1;
            }
        }
        if let Err(e) = &result {
            tracing::warn!(
                source = doc.source(),
                reason = e.reason().as_str(),
                url = self.client.display_url(doc),
                error = %e,
                "pool fetch failed"
            );
        }
        if doc == Document::Status {
            self.note_status(result.as_ref().err().map(ToString::to_string));
        }
        SourceOutcome {
            result: result.map_err(|e| e.reason()),
            duration,
        }
    }

    fn note_status(&self, error: Option<String>) {
        *self.last_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(StatusCheck {
            at: Instant::now(),
            error,
        });
    }

    /// Renders a snapshot with the counters as they stand now.
    pub fn render(&self, snapshot: &Snapshot, format: Format) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fallback = self
            .last_endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let options = TranslateOptions {
            max_connections: self.max_connections,
            fallback_endpoint: fallback.as_deref(),
            build: &BuildInfo::CURRENT,
        };
        let translation = translate(snapshot, &counters, &options);
        let series: usize = translation
            .own
            .iter()
            .map(|f| f.samples.len())
            .sum::<usize>()
            + translation
                .native
                .iter()
                .map(|f| f.samples.len())
                .sum::<usize>();
        let mut encoder = Encoder::new(format, 4096 + series * 96);
        encoder.families(&translation.own);
        encoder.families(&crate::process::families());
        encoder.families(translation.native.iter().copied());
        encoder.finish()
    }

    /// Ready when the latest status fetch succeeded; a result older than
    /// [`READINESS_CACHE`] is refreshed with a fetch of our own.
    pub async fn readiness(&self) -> Readiness {
        let recent = self
            .last_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|c| c.at.elapsed() < READINESS_CACHE);
        let check = match recent {
            Some(check) => check,
            None => {
                let (result, took) =
                    timed(self.client.status(Instant::now() + self.pool_timeout)).await;
                let error = result.as_ref().err().map(ToString::to_string);
                self.record(Document::Status, (result, took));
                StatusCheck {
                    at: Instant::now(),
                    error,
                }
            }
        };
        Readiness {
            ready: check.error.is_none(),
            pool_url: self.pool_url().to_owned(),
            reason: check.error,
            checked_seconds_ago: check.at.elapsed().as_secs_f64(),
        }
    }
}

async fn timed<T>(fut: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = fut.await;
    (out, start.elapsed())
}
