//! Faults the simulator can inject, switched on and off over HTTP.

use std::str::FromStr;

use crate::pool::Document;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Pool paths drop the connection without answering.
    Down,
    /// Pool paths answer after `delay_ms`.
    Slow,
    /// HTTP 500 with an HTML page.
    Http500,
    /// HTTP 401, as for a wrong token.
    Unauthorized,
    /// HTTP 200 with an HTML error page instead of the document.
    Html,
    /// A body that is not the document's format.
    Malformed,
    /// The first half of the real body.
    Truncated,
    /// A 32 MiB body.
    Oversized,
    /// Every connection's p95 becomes 800-1500 ms.
    LatencySpike,
    /// About 20% of operations fail.
    ErrorBurst,
    /// Every connection closes and none reopens: /healthz answers 503.
    EmptyPool,
    /// Every connection reconnects several times a second.
    ReconnectStorm,
    /// Callers stop doing operations.
    Stale,
    /// The relay cannot be reached: opening connections fails (native
    /// `secure_channel_errors_total` rises at each cleanup), checkouts fail
    /// (a breaker opens after 5 in a row), and while callers want
    /// connections `/status/connections` and `/healthz` block until the
    /// fault is cleared or `delay_ms` (default 30 s) has passed.
    RelayOutage,
    /// The native exposition also carries families that pose as the
    /// exporter's own (`secure_channel_exporter_*`), its process's
    /// (`process_*`) and the series Prometheus writes (`up`, `scrape_*`).
    Impostors,
    /// The pool process restarts, once: ids start again at 1 and the native
    /// counters at 0. Not kept as a state.
    Restart,
}

impl Fault {
    pub const ALL: [Fault; 16] = [
        Fault::Down,
        Fault::Slow,
        Fault::Http500,
        Fault::Unauthorized,
        Fault::Html,
        Fault::Malformed,
        Fault::Truncated,
        Fault::Oversized,
        Fault::LatencySpike,
        Fault::ErrorBurst,
        Fault::EmptyPool,
        Fault::ReconnectStorm,
        Fault::Stale,
        Fault::RelayOutage,
        Fault::Impostors,
        Fault::Restart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Down => "down",
            Fault::Slow => "slow",
            Fault::Http500 => "http_500",
            Fault::Unauthorized => "unauthorized",
            Fault::Html => "html",
            Fault::Malformed => "malformed",
            Fault::Truncated => "truncated",
            Fault::Oversized => "oversized",
            Fault::LatencySpike => "latency_spike",
            Fault::ErrorBurst => "error_burst",
            Fault::EmptyPool => "empty_pool",
            Fault::ReconnectStorm => "reconnect_storm",
            Fault::Stale => "stale",
            Fault::RelayOutage => "relay_outage",
            Fault::Impostors => "impostors",
            Fault::Restart => "restart",
        }
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {s:?}; known: {}", names.join(", "))
            })
    }
}

/// Where and how a fault applies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FaultSpec {
    /// The documents it affects, by `source` name.
    pub documents: Vec<&'static str>,
    pub delay_ms: u64,
}

impl FaultSpec {
    pub fn all_documents() -> Self {
        Self {
            documents: Document::ALL.iter().map(|d| d.as_str()).collect(),
            delay_ms: 10_000,
        }
    }

    pub fn applies_to(&self, doc: Document) -> bool {
        self.documents.contains(&doc.as_str())
    }

    /// How `fault` applies when the query says nothing: everywhere with a
    /// 10 s delay, but a relay outage blocks the two documents that take
    /// the pool's lock, for up to the pool's 30 s of backoff.
    pub fn default_for(fault: Fault) -> Self {
        match fault {
            Fault::RelayOutage => Self {
                documents: vec![Document::Status.as_str(), Document::Health.as_str()],
                delay_ms: 30_000,
            },
            _ => Self::all_documents(),
        }
    }

    /// Reads `documents=status,health&delay_ms=500` style query strings.
    pub fn from_query(fault: Fault, query: Option<&str>) -> Result<Self, String> {
        let mut spec = Self::default_for(fault);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "documents" => {
                    spec.documents = value
                        .split(',')
                        .map(|name| {
                            Document::ALL
                                .iter()
                                .map(|d| d.as_str())
                                .find(|s| *s == name)
                                .ok_or_else(|| {
                                    format!(
                                        "unknown document {name:?}; use status, health, metrics"
                                    )
                                })
                        })
                        .collect::<Result<_, _>>()?;
                }
                "delay_ms" => {
                    spec.delay_ms = value
                        .parse()
                        .map_err(|_| format!("delay_ms {value:?} is not a number"))?;
                }
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(spec)
    }
}
