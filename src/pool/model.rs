//! Wire types of the pool's JSON documents, tolerant of every build we know:
//! serde `SystemTime` objects, RFC 3339 strings and Unix numbers for times;
//! integer or string connection ids; unknown fields ignored, optional ones used.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PoolStatus {
    pub endpoint: String,
    #[serde(default)]
    pub active_connections: Option<f64>,
    #[serde(default)]
    pub total_reconnects: Option<f64>,
    #[serde(default)]
    pub total_errors: Option<f64>,
    #[serde(default)]
    pub pool_p95_latency_ms: Option<f64>,
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub last_updated: Option<Timestamp>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Connection {
    pub connection_id: ConnectionId,
    #[serde(default)]
    pub last_activity: Option<Timestamp>,
    #[serde(default)]
    pub reconnects: f64,
    #[serde(default)]
    pub errors: f64,
    #[serde(default)]
    pub p95_latency_ms: Option<f64>,
    #[serde(default)]
    pub is_healthy: Option<bool>,
    #[serde(default)]
    pub remote_addr: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Health {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    #[serde(default)]
    pub pool_healthy: Option<bool>,
    #[serde(default)]
    pub active_connections: Option<f64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub avg_latency_ms: Option<f64>,
}

impl Health {
    /// `pool_healthy` when reported, else the `status` word.
    pub fn is_healthy(&self) -> Option<bool> {
        self.pool_healthy.or_else(|| {
            self.status
                .as_deref()
                .map(|s| s.eq_ignore_ascii_case("healthy"))
        })
    }
}

/// A connection id as a label value: integers and strings both accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub String);

impl<'de> Deserialize<'de> for ConnectionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = ConnectionId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or string connection id")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConnectionId(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ConnectionId(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConnectionId(v.to_owned()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// A point in time as seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Timestamp(pub f64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a SystemTime object {secs_since_epoch, nanos_since_epoch}, \
                     an RFC 3339 string or a number of Unix seconds",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Timestamp(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Timestamp(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Timestamp(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_rfc3339(v)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom(format!("invalid RFC 3339 time {v:?}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut secs: Option<i64> = None;
                let mut nanos: u32 = 0;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "secs_since_epoch" => secs = Some(map.next_value()?),
                        "nanos_since_epoch" => nanos = map.next_value()?,
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let secs = secs.ok_or_else(|| de::Error::missing_field("secs_since_epoch"))?;
                Ok(Timestamp(secs as f64 + f64::from(nanos) / 1e9))
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

fn parse_rfc3339(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rust_pool_document() {
        let s: PoolStatus =
            serde_json::from_str(include_str!("../../tests/fixtures/status_systemtime.json"))
                .unwrap();
        assert_eq!(s.endpoint, "relay.example.net:443");
        assert_eq!(s.connections.len(), 2);
        assert_eq!(s.connections[0].connection_id.0, "1");
        assert_eq!(
            s.connections[0].last_activity,
            Some(Timestamp(1_764_072_000.12))
        );
        assert_eq!(s.backend, None);
    }

    #[test]
    fn decodes_the_go_client_variant() {
        let s: PoolStatus =
            serde_json::from_str(include_str!("../../tests/fixtures/status_rfc3339.json")).unwrap();
        assert_eq!(s.backend.as_deref(), Some("tokio-rustls"));
        let c = &s.connections;
        assert_eq!(c[0].last_activity, Some(Timestamp(1_756_119_600.0)));
        assert_eq!(c[1].connection_id.0, "7");
        assert_eq!(c[1].last_activity, Some(Timestamp(1_756_119_600.25)));
        assert_eq!(c[2].last_activity, Some(Timestamp(1_756_119_600.5)));
        assert_eq!(c[0].remote_addr.as_deref(), Some("203.0.113.7:443"));
        assert_eq!(c[1].is_healthy, Some(false));
        assert_eq!(c[2].p95_latency_ms, None);
        let last = s.last_updated.unwrap().0;
        assert!((last - 1_756_119_600.123_456).abs() < 1e-5);
    }

    #[test]
    fn health_in_both_time_formats() {
        let h: Health =
            serde_json::from_str(include_str!("../../tests/fixtures/health_healthy.json")).unwrap();
        assert_eq!(h.is_healthy(), Some(true));
        let u: Health = serde_json::from_str(include_str!(
            "../../tests/fixtures/health_unhealthy_rfc3339.json"
        ))
        .unwrap();
        assert_eq!(u.is_healthy(), Some(false));
        assert_eq!(u.timestamp, Some(Timestamp(1_756_119_600.0)));
        let word_only: Health = serde_json::from_str(r#"{"status":"healthy"}"#).unwrap();
        assert_eq!(word_only.is_healthy(), Some(true));
    }

    #[test]
    fn rejects_what_is_not_a_status() {
        for bad in [
            "",
            "<html>502</html>",
            r#"{"endpoint": 5}"#,
            r#"{"active_connections": 1}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":true}]}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":1,"last_activity":"yesterday"}]}"#,
            r#"{"endpoint":"e","active_conn"#,
        ] {
            assert!(serde_json::from_str::<PoolStatus>(bad).is_err(), "{bad}");
        }
    }
}
