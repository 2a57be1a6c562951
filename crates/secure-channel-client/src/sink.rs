//! Decoding a status document one connection at a time.
//!
//! A status document within a few MiB can list hundreds of thousands of
//! connections; a caller that keeps only some of them (the worst N, a
//! count, a sum) should not have to hold all of them first. The fast
//! scanner and the serde fallback both hand each connection to a
//! [`ConnectionSink`] as soon as it is decoded, and the result is the
//! same as [`PoolStatus::from_slice`] would give, connection for
//! connection, in the same order.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::model::{Connection, PoolStatus, Timestamp};

/// Receives the connections of a status document, in document order, as
/// they are decoded (see [`PoolStatus::from_slice_into`]).
pub trait ConnectionSink {
    /// The next listed connection.
    fn connection(&mut self, connection: Connection);

    /// How many connections the document may list at most, as a hint for
    /// sinks that keep them all; the default ignores it.
    fn size_hint(&mut self, _connections: usize) {}
}

impl ConnectionSink for Vec<Connection> {
    #[inline]
    fn connection(&mut self, connection: Connection) {
        self.push(connection);
    }

    fn size_hint(&mut self, connections: usize) {
        self.reserve(connections);
    }
}

/// The serde path of [`PoolStatus::from_slice_into`]: the same as the
/// derived `Deserialize` of [`PoolStatus`] (unknown fields ignored,
/// duplicates and a missing `endpoint` rejected, the sequence form of a
/// struct accepted), except that connections go to the sink.
pub(crate) fn deserialize_status<S: ConnectionSink>(
    json: &[u8],
    sink: &mut S,
) -> Result<PoolStatus, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let status = StatusSeed { sink }.deserialize(&mut de)?;
    de.end()?;
    Ok(status)
}

const FIELDS: &[&str] = &[
    "endpoint",
    "active_connections",
    "total_reconnects",
    "total_errors",
    "pool_p95_latency_ms",
    "connections",
    "backend",
    "last_updated",
];

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Endpoint,
    ActiveConnections,
    TotalReconnects,
    TotalErrors,
    PoolP95LatencyMs,
    Connections,
    Backend,
    LastUpdated,
    #[serde(other)]
    Other,
}

struct StatusSeed<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: ConnectionSink> DeserializeSeed<'de> for StatusSeed<'_, S> {
    type Value = PoolStatus;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PoolStatus, D::Error> {
        d.deserialize_struct("PoolStatus", FIELDS, self)
    }
}

impl<'de, S: ConnectionSink> Visitor<'de> for StatusSeed<'_, S> {
    type Value = PoolStatus;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct PoolStatus")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PoolStatus, A::Error> {
        let mut endpoint: Option<String> = None;
        let mut numbers: [Option<Option<f64>>; 4] = [None; 4];
        let mut connections = false;
        let mut backend: Option<Option<String>> = None;
        let mut last_updated: Option<Option<Timestamp>> = None;
        // The derived code rejects a second occurrence of any field, even
        // after a `null`.
        fn once<T, E: de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        while let Some(key) = map.next_key::<Field>()? {
            let number = |f: &Field| match f {
                Field::ActiveConnections => Some((0, "active_connections")),
                Field::TotalReconnects => Some((1, "total_reconnects")),
                Field::TotalErrors => Some((2, "total_errors")),
                Field::PoolP95LatencyMs => Some((3, "pool_p95_latency_ms")),
                _ => None,
            };
            if let Some((i, name)) = number(&key) {
                once(&numbers[i], name)?;
                numbers[i] = Some(map.next_value()?);
                continue;
            }
            match key {
                Field::Endpoint => {
                    once(&endpoint, "endpoint")?;
                    endpoint = Some(map.next_value()?);
                }
                Field::Connections => {
                    if connections {
                        return Err(de::Error::duplicate_field("connections"));
                    }
                    connections = true;
                    map.next_value_seed(ConnectionsSeed {
                        sink: &mut *self.sink,
                    })?;
                }
                Field::Backend => {
                    once(&backend, "backend")?;
                    backend = Some(map.next_value()?);
                }
                Field::LastUpdated => {
                    once(&last_updated, "last_updated")?;
                    last_updated = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let [active_connections, total_reconnects, total_errors, pool_p95_latency_ms] =
            numbers.map(Option::flatten);
        Ok(PoolStatus {
            endpoint: endpoint.ok_or_else(|| de::Error::missing_field("endpoint"))?,
            active_connections,
            total_reconnects,
            total_errors,
            pool_p95_latency_ms,
            connections: Vec::new(),
            backend: backend.flatten(),
            last_updated: last_updated.flatten(),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PoolStatus, A::Error> {
        let endpoint = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &"struct PoolStatus with 8 elements"))?;
        let mut number = || -> Result<Option<f64>, A::Error> {
            Ok(seq.next_element::<Option<f64>>()?.flatten())
        };
        let (active_connections, total_reconnects, total_errors, pool_p95_latency_ms) =
            (number()?, number()?, number()?, number()?);
        seq.next_element_seed(ConnectionsSeed { sink: self.sink })?;
        let backend = seq.next_element::<Option<String>>()?.flatten();
        let last_updated = seq.next_element::<Option<Timestamp>>()?.flatten();
        Ok(PoolStatus {
            endpoint,
            active_connections,
            total_reconnects,
            total_errors,
            pool_p95_latency_ms,
            connections: Vec::new(),
            backend,
            last_updated,
        })
    }
}

struct ConnectionsSeed<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: ConnectionSink> DeserializeSeed<'de> for ConnectionsSeed<'_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: ConnectionSink> Visitor<'de> for ConnectionsSeed<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(c) = seq.next_element::<Connection>()? {
            self.sink.connection(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every connection it is given, and counts how many sinks
    /// were made.
    struct Ids<'a> {
        made: &'a std::cell::Cell<usize>,
        ids: Vec<String>,
    }

    impl ConnectionSink for Ids<'_> {
        fn connection(&mut self, c: Connection) {
            self.ids.push(c.connection_id.to_string());
        }
    }

    fn decode(doc: &str) -> (Result<PoolStatus, serde_json::Error>, usize, Vec<String>) {
        let made = std::cell::Cell::new(0);
        let result = PoolStatus::from_slice_into(doc.as_bytes(), || {
            made.set(made.get() + 1);
            Ids {
                made: &made,
                ids: Vec::new(),
            }
        });
        match result {
            Ok((status, sink)) => (Ok(status), sink.made.get(), sink.ids),
            Err(e) => (Err(e), made.get(), Vec::new()),
        }
    }

    #[test]
    fn a_document_the_scanner_leaves_partway_is_sunk_once_by_serde() {
        // The unknown field after the list makes the scanner give up after
        // it handed over both connections.
        let doc = r#"{"endpoint":"e","connections":[{"connection_id":1,"errors":3},
            {"connection_id":"b"}],"extra":{"x":[null]},"total_errors":3}"#;
        let (status, made, ids) = decode(doc);
        let status = status.unwrap();
        assert_eq!(made, 2);
        assert_eq!(ids, ["1", "b"]);
        assert!(status.connections.is_empty());
        assert_eq!(status.total_errors, Some(3.0));
        let whole = PoolStatus::from_slice(doc.as_bytes()).unwrap();
        assert_eq!(
            PoolStatus {
                connections: whole.connections.clone(),
                ..status
            },
            whole
        );
    }

    #[test]
    fn the_scanned_layout_makes_one_sink() {
        let (status, made, ids) = decode(
            r#"{"endpoint":"e","connections":[{"connection_id":1,"last_activity":{"secs_since_epoch":1,"nanos_since_epoch":0},"reconnects":0,"errors":0,"p95_latency_ms":0}]}"#,
        );
        assert!(status.is_ok());
        assert_eq!((made, ids.as_slice()), (1, ["1".to_owned()].as_slice()));
    }

    #[test]
    fn serde_decides_errors_and_the_sequence_form() {
        for doc in [
            r#"{"endpoint":"e","connections":[{"connection_id":1}],"connections":[]}"#,
            r#"{"endpoint":"e","backend":null,"backend":"b"}"#,
            r#"{"connections":[{"connection_id":1}]}"#,
            r#"{"endpoint":"e","connections":null}"#,
            r#"{"endpoint":"e","connections":[{"errors":1}]}"#,
            r#"["e"]"#,
            r#"["e",1,null,2,3,[{"connection_id":4}],"b",12]"#,
            r#"["e",1,null,2,3,[{"connection_id":4}],"b",12,0]"#,
            r#"[]"#,
            r#"{"endpoint":"e"} {"#,
        ] {
            let serde = serde_json::from_str::<PoolStatus>(doc);
            let mut sunk = Vec::new();
            let ours = deserialize_status(doc.as_bytes(), &mut sunk).map(|mut s| {
                s.connections = sunk;
                s
            });
            match (&serde, &ours) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{doc}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{doc}"),
                _ => panic!("{doc}: serde {serde:?}, ours {ours:?}"),
            }
        }
    }
}
