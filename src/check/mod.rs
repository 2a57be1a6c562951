//! `secure-channel-exporter check`: can the exporter talk to this pool, and
//! what will it see? Each document is fetched once ([`run`], the only I/O
//! here); everything else reads those answers: whether each decodes, which
//! pool build the answers look like, how times are written, and which
//! shipped alerts can fire for that build.

pub mod alerts;
mod classify;
mod render;
mod run;

use secure_channel_client::{ErrorKind, Fetched};
use serde::Serialize;

pub use alerts::AlertVerdict;
pub use classify::{body_format, build_of, timestamp_encoding, TimestampEncoding};
pub use render::text;
pub use run::run;

use crate::exposition::ParsedExposition;
use crate::pool::{FetchError, Health, PoolStatus};

/// Which pool build the answers look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Build {
    /// Lists only connections that were never used, while the latency
    /// histogram shows operations: checked-out connections never come back.
    Published,
    /// Lists connections that were used: they are given back.
    Returning,
    /// Cannot tell: a quiet pool looks the same in both builds, or a
    /// document needed to tell is missing.
    Unknown,
}

impl Build {
    pub fn as_str(self) -> &'static str {
        match self {
            Build::Published => "published",
            Build::Returning => "returning",
            Build::Unknown => "unknown",
        }
    }
}

/// Whether the pool took the token on the documents that need one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// A token was sent and the pool answered.
    Accepted,
    /// No token was sent and the pool answered anyway.
    NotRequired,
    /// The pool answered 401 or 403.
    Refused,
    /// No answer to a document that needs the token.
    Unknown,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Accepted => "accepted",
            Auth::NotRequired => "not_required",
            Auth::Refused => "refused",
            Auth::Unknown => "unknown",
        }
    }
}

/// What the check found about one document.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentReport {
    /// The URL fetched, credentials removed.
    pub url: String,
    /// Fetched and decoded.
    pub ok: bool,
    /// The HTTP status, when the pool answered.
    pub http_status: Option<u16>,
    /// Bytes of body received (absent when no body was kept).
    pub size_bytes: Option<usize>,
    /// What the body looks like: `json`, `prometheus_text`, `html`, `text`
    /// or `empty`.
    pub format: Option<&'static str>,
    /// `ok`, or the failure's kind (`connect`, `timeout`, `status`,
    /// `unauthorized`, `too_large`, `decode`, ...).
    pub result: &'static str,
    /// What failed, in words.
    pub error: Option<String>,
    /// What the document says, in a few words.
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Documents {
    pub status: DocumentReport,
    pub health: DocumentReport,
    pub metrics: DocumentReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertReach {
    pub can_fire: Vec<AlertVerdict>,
    pub cannot_fire: Vec<AlertVerdict>,
}

/// The check's whole answer; `--format json` prints it as is.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The pool's base URL, credentials removed.
    pub pool: String,
    /// Every document fetched and decoded.
    pub ok: bool,
    /// The pool answered at least one request over HTTP.
    pub reachable: bool,
    pub auth: Auth,
    pub token_sent: bool,
    pub documents: Documents,
    pub build: Build,
    /// What the build was told from.
    pub build_evidence: String,
    pub timestamps: TimestampEncoding,
    pub alerts: AlertReach,
}

/// One document's fetch, as the pool answered it.
pub type Answer = Result<Fetched, FetchError>;

/// Reads the three answers. Pure: no I/O.
pub fn assess(pool: String, token_sent: bool, answers: [(String, Answer); 3]) -> Report {
    let [status, health, metrics] = answers;
    let status_raw = status.1.as_ref().ok().map(|f| f.body().clone());
    let (status_report, status_doc) = decode(status, |f| {
        let s: PoolStatus = f.json()?;
        let summary = format!(
            "{} connections listed, {} used",
            s.connections.len(),
            s.connections.iter().filter(|c| classify::used(c)).count()
        );
        Ok((summary, s))
    });
    let health_raw = health.1.as_ref().ok().map(|f| f.body().clone());
    let (health_report, _) = decode(health, |f| {
        let h: Health = f.json()?;
        let summary = match h.is_healthy() {
            Some(true) => "healthy".to_owned(),
            Some(false) => "unhealthy (the pool's word for: no idle connection now)".to_owned(),
            None => "says neither healthy nor unhealthy".to_owned(),
        };
        Ok((summary, h))
    });
    let (metrics_report, native) = decode(metrics, |f| {
        let parsed: ParsedExposition = crate::pool::client::parse_native(
            f.body(),
            f.content_type(),
            crate::pool::Limits::DEFAULT.parse(),
        )
        .map_err(|detail| f.decode_error(detail))?;
        let summary = format!(
            "{} families, {} samples",
            parsed.families.len(),
            parsed.sample_count()
        );
        Ok((summary, parsed))
    });
    let documents = Documents {
        status: status_report,
        health: health_report,
        metrics: metrics_report,
    };
    let reports = [&documents.status, &documents.health, &documents.metrics];
    // A body over the cap still came from a pool that answered.
    let reachable = reports
        .iter()
        .any(|d| d.http_status.is_some() || d.result == ErrorKind::TooLarge.as_str());
    let token_docs = [&documents.status, &documents.metrics];
    let auth = if token_docs
        .iter()
        .any(|d| d.result == ErrorKind::Unauthorized.as_str())
    {
        Auth::Refused
    } else if token_docs.iter().any(|d| d.http_status.is_some()) {
        if token_sent {
            Auth::Accepted
        } else {
            Auth::NotRequired
        }
    } else {
        Auth::Unknown
    };
    let (build, build_evidence) = build_of(status_doc.as_ref(), native.as_ref());
    let timestamps = timestamp_encoding(health_raw.as_deref(), status_raw.as_deref());
    let (can_fire, cannot_fire) = alerts::reach(build);
    Report {
        pool,
        ok: reports.iter().all(|d| d.ok),
        reachable,
        auth,
        token_sent,
        documents,
        build,
        build_evidence,
        timestamps,
        alerts: AlertReach {
            can_fire,
            cannot_fire,
        },
    }
}

/// One document's report, and its decoded value when it decoded.
fn decode<T>(
    (url, answer): (String, Answer),
    read: impl FnOnce(&Fetched) -> Result<(String, T), FetchError>,
) -> (DocumentReport, Option<T>) {
    match answer {
        Ok(fetched) => {
            let mut report = DocumentReport {
                url,
                ok: false,
                http_status: Some(fetched.status()),
                size_bytes: Some(fetched.body().len()),
                format: Some(body_format(fetched.document(), fetched.body())),
                result: "ok",
                error: None,
                summary: None,
            };
            match read(&fetched) {
                Ok((summary, value)) => {
                    report.ok = true;
                    report.summary = Some(summary);
                    (report, Some(value))
                }
                Err(e) => {
                    report.result = e.kind().as_str();
                    report.error = Some(e.to_string());
                    (report, None)
                }
            }
        }
        Err(e) => {
            let report = DocumentReport {
                url,
                ok: false,
                http_status: e.status(),
                size_bytes: None,
                format: None,
                result: e.kind().as_str(),
                error: Some(e.to_string()),
                summary: None,
            };
            (report, None)
        }
    }
}
