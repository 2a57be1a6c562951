//! The documents of one scrape as fetched: each one's result and how long
//! it took.

use std::sync::Arc;
use std::time::Duration;

use crate::exposition::ParsedExposition;
use crate::pool::{Document, FailureReason};
use crate::pool::{Health, StatusDoc};

/// What one fetch of one document produced.
#[derive(Debug)]
pub struct SourceOutcome<T> {
    pub result: Result<T, FailureReason>,
    pub duration: Duration,
}

/// The three documents of one scrape.
#[derive(Debug)]
pub struct Snapshot {
    /// At most `--collector.max-connections` connections, the worst (the
    /// pool layer cuts the list as it decodes it).
    pub status: SourceOutcome<Arc<StatusDoc>>,
    pub health: SourceOutcome<Arc<Health>>,
    pub metrics: SourceOutcome<Arc<ParsedExposition>>,
}

impl Snapshot {
    pub(super) fn source_results(&self) -> [(Document, Option<FailureReason>, Duration); 3] {
        [
            (
                Document::Status,
                self.status.result.as_ref().err().copied(),
                self.status.duration,
            ),
            (
                Document::Health,
                self.health.result.as_ref().err().copied(),
                self.health.duration,
            ),
            (
                Document::Metrics,
                self.metrics.result.as_ref().err().copied(),
                self.metrics.duration,
            ),
        ]
    }

    /// The pool's `endpoint`: from the status document, else from the
    /// native metrics' const label.
    pub fn endpoint(&self) -> Option<&str> {
        if let Ok(doc) = &self.status.result {
            return Some(&doc.status.endpoint);
        }
        let native = self.metrics.result.as_ref().ok()?;
        native
            .families
            .iter()
            .flat_map(|f| f.samples.first())
            .find_map(|s| s.labels.iter().find(|(n, _)| n == "endpoint"))
            .map(|(_, v)| v.as_str())
    }
}
