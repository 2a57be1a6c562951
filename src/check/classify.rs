//! What the pool's answers say about the pool: which build it looks like,
//! how it writes times, what each body is. Pure functions of the answers.

use secure_channel_client::Document;
use serde::{Deserialize, Serialize};

use super::Build;
use crate::exposition::ParsedExposition;
use crate::pool::{Connection, PoolStatus};
use crate::scrape::translate::ConnectionFilter;

/// A listed connection that carries an error, a reconnect or a latency
/// sample: one a caller used (the published pool never lists those).
pub fn used(c: &Connection) -> bool {
    ConnectionFilter::Used.admits(c)
}

/// The build the pool looks like, and why.
///
/// A used connection in the list means used connections come back: the
/// returning build. A list of unused connections while the latency
/// histogram counted more than the pool's handshakes (one per connection
/// ever opened, and ids count those) means operations ran on connections
/// that were never listed again: the published build. A quiet pool (no
/// operation beyond handshakes) looks the same in both.
pub fn build_of(status: Option<&PoolStatus>, native: Option<&ParsedExposition>) -> (Build, String) {
    let Some(status) = status else {
        return (
            Build::Unknown,
            "the status document did not decode: its list of connections is needed".into(),
        );
    };
    let listed = status.connections.len();
    let in_use = status.connections.iter().filter(|c| used(c)).count();
    if in_use > 0 {
        return (
            Build::Returning,
            format!("{in_use} of {listed} listed connections were used (errors, reconnects or latency samples): used connections are given back"),
        );
    }
    let Some(observations) = native.and_then(|n| crate::pool::native::summarize(n).observations)
    else {
        return (
            Build::Unknown,
            format!("{listed} listed connections, none used, and no native latency histogram to compare with"),
        );
    };
    // Ids count the connections opened (handshakes) since the pool started.
    let opened = status
        .connections
        .iter()
        .filter_map(|c| c.connection_id.as_u64())
        .max()
        .unwrap_or(0)
        .max(listed as u64) as f64;
    if observations > opened {
        (
            Build::Published,
            format!("{listed} listed connections, none used, while the latency histogram counted {observations} observations for at most {opened} handshakes: operations ran on connections that are never listed again"),
        )
    } else {
        (
            Build::Unknown,
            format!("{listed} listed connections, none used, and the latency histogram counted no more than the handshakes ({observations}): a quiet pool looks the same in both builds"),
        )
    }
}

/// How the pool writes times in its JSON documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampEncoding {
    /// serde's `SystemTime`: `{"secs_since_epoch":..,"nanos_since_epoch":..}`
    /// (the published pool).
    Systemtime,
    /// RFC 3339 strings.
    Rfc3339,
    /// A number of Unix seconds.
    Unix,
    /// No time found, or one of none of these shapes.
    Unknown,
}

impl TimestampEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Systemtime => "systemtime",
            Self::Rfc3339 => "rfc3339",
            Self::Unix => "unix",
            Self::Unknown => "unknown",
        }
    }

    fn of(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Object(o) if o.contains_key("secs_since_epoch") => Self::Systemtime,
            serde_json::Value::String(s) if crate::pool::Timestamp::parse_rfc3339(s).is_some() => {
                Self::Rfc3339
            }
            serde_json::Value::Number(_) => Self::Unix,
            _ => Self::Unknown,
        }
    }
}

/// The encoding of the health document's `timestamp`, else of the first
/// listed connection's `last_activity`.
pub fn timestamp_encoding(health: Option<&[u8]>, status: Option<&[u8]>) -> TimestampEncoding {
    #[derive(Deserialize)]
    struct HealthTime {
        timestamp: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct StatusTimes {
        #[serde(default)]
        connections: Vec<ConnectionTime>,
    }
    #[derive(Deserialize)]
    struct ConnectionTime {
        last_activity: Option<serde_json::Value>,
    }
    let from_health = health
        .and_then(|b| serde_json::from_slice::<HealthTime>(b).ok())
        .and_then(|h| h.timestamp);
    let from_status = || {
        status
            .and_then(|b| serde_json::from_slice::<StatusTimes>(b).ok())
            .and_then(|s| s.connections.into_iter().find_map(|c| c.last_activity))
    };
    from_health
        .or_else(from_status)
        .map_or(TimestampEncoding::Unknown, |v| TimestampEncoding::of(&v))
}

/// What a body looks like, whatever it claims to be.
pub fn body_format(doc: Document, body: &[u8]) -> &'static str {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &body[i..]);
    let lower: Vec<u8> = start.iter().take(15).map(u8::to_ascii_lowercase).collect();
    if start.is_empty() {
        "empty"
    } else if lower.starts_with(b"<!doctype") || lower.starts_with(b"<html") {
        "html"
    } else if start[0] == b'{' || start[0] == b'[' {
        "json"
    } else if doc == Document::Metrics
        && (start.starts_with(b"# HELP ")
            || start.starts_with(b"# TYPE ")
            || start[0].is_ascii_alphabetic()
            || start[0] == b'_')
    {
        "prometheus_text"
    } else {
        "text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Load, Model, SimConfig, SimPool, TimeFormat};

    const T0: f64 = 1_764_072_000.0;

    fn documents(config: SimConfig) -> (PoolStatus, ParsedExposition, String) {
        let mut pool = SimPool::new(config, T0);
        pool.advance_to(T0 + 600.0);
        (
            PoolStatus::from_slice(pool.status_json().as_bytes()).unwrap(),
            crate::exposition::parse(&pool.metrics_text()),
            pool.health().1,
        )
    }

    #[test]
    fn a_busy_published_pool_looks_published_and_a_returning_one_returning() {
        let (status, native, _) = documents(SimConfig::default());
        assert_eq!(build_of(Some(&status), Some(&native)).0, Build::Published);
        let (status, native, _) = documents(SimConfig {
            model: Model::Returning,
            ..SimConfig::default()
        });
        assert_eq!(build_of(Some(&status), Some(&native)).0, Build::Returning);
    }

    #[test]
    fn a_quiet_pool_or_a_missing_document_is_unknown() {
        let quiet = SimConfig {
            load: Load {
                callers: 0,
                ..Load::default()
            },
            ..SimConfig::default()
        };
        let (status, native, _) = documents(quiet);
        assert!(!status.connections.is_empty());
        assert_eq!(build_of(Some(&status), Some(&native)).0, Build::Unknown);
        assert_eq!(build_of(None, Some(&native)).0, Build::Unknown);
        assert_eq!(build_of(Some(&status), None).0, Build::Unknown);
    }

    #[test]
    fn timestamp_encodings_are_recognised_from_either_document() {
        for (format, expected) in [
            (TimeFormat::SystemTime, TimestampEncoding::Systemtime),
            (TimeFormat::Rfc3339, TimestampEncoding::Rfc3339),
            (TimeFormat::Unix, TimestampEncoding::Unix),
        ] {
            let pool = SimPool::new(
                SimConfig {
                    time_format: format,
                    load: Load {
                        callers: 0,
                        ..Load::default()
                    },
                    ..SimConfig::default()
                },
                T0,
            );
            let health = pool.health().1;
            let status = pool.status_json();
            assert_eq!(timestamp_encoding(Some(health.as_bytes()), None), expected);
            assert_eq!(timestamp_encoding(None, Some(status.as_bytes())), expected);
        }
        assert_eq!(
            timestamp_encoding(Some(b"<html>"), Some(b"{\"connections\":[]}")),
            TimestampEncoding::Unknown
        );
    }

    #[test]
    fn body_formats() {
        assert_eq!(body_format(Document::Status, b" {\"a\":1}"), "json");
        assert_eq!(
            body_format(Document::Health, b"<!DOCTYPE html>\n<html>"),
            "html"
        );
        assert_eq!(
            body_format(Document::Metrics, b"# HELP x y\nx 1\n"),
            "prometheus_text"
        );
        assert_eq!(body_format(Document::Status, b"Unauthorized"), "text");
        assert_eq!(body_format(Document::Metrics, b"  \n"), "empty");
    }
}
