//! The per-connection families: which connections get series, and the
//! series themselves, streamed straight from the decoded status.

use std::collections::HashMap;

use super::{bool_value, cap, l};
use crate::exposition::catalogue::{self, FamilyDef};
use crate::exposition::encode::{escape_into, write_value, Encoder};
use crate::exposition::{MetricFamily, MetricType};
use crate::pool::limits::worse_first;
use crate::pool::status_doc::reports_activity;
use crate::pool::{Connection, StatusDoc, Timestamp};

/// Which listed connections get per-connection series
/// (`--collector.connections`).
///
/// Connection ids never repeat within a pool process, so every connection
/// the pool opens starts new series; the published pool lists only idle
/// connections, all with zero errors, reconnects and latency samples,
/// whose series say nothing the pool-level ones do not (docs/scale.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionFilter {
    /// Every listed connection (the default, as before).
    #[default]
    All,
    /// Only connections with something to say: an error, a reconnect or
    /// a latency sample.
    Used,
    /// No per-connection series; the pool-level ones stay.
    None,
}

impl ConnectionFilter {
    pub fn admits(self, c: &Connection) -> bool {
        match self {
            ConnectionFilter::All => true,
            ConnectionFilter::Used => reports_activity(c),
            ConnectionFilter::None => false,
        }
    }

    /// How many of the distinct connections the document listed (kept or
    /// not) this filter admits.
    pub fn admitted_of(self, doc: &StatusDoc) -> usize {
        match self {
            ConnectionFilter::All => doc.listed - doc.duplicates,
            ConnectionFilter::Used => doc.distinct_active,
            ConnectionFilter::None => 0,
        }
    }
}

impl std::str::FromStr for ConnectionFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "used" => Ok(Self::Used),
            "none" => Ok(Self::None),
            _ => Err("expected all, used or none".into()),
        }
    }
}

/// A per-connection family labelled `endpoint` and `connection_id`; its
/// series is absent for a connection whose `value` is `None`.
struct ConnectionFamily {
    def: &'static FamilyDef,
    value: fn(&Connection) -> Option<f64>,
    /// Typical length of a value, to size the output buffer.
    value_len: usize,
}

const CONNECTION_FAMILIES: [ConnectionFamily; 5] = [
    ConnectionFamily {
        def: &catalogue::CONNECTION_ERRORS_TOTAL,
        value: |c| Some(c.errors),
        value_len: 3,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_RECONNECTS_TOTAL,
        value: |c| Some(c.reconnects),
        value_len: 2,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_P95_LATENCY_SECONDS,
        value: |c| c.p95_latency_ms.map(|v| v / 1000.0),
        value_len: 6,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_LAST_ACTIVITY_TIMESTAMP_SECONDS,
        // A time no calendar holds (i64::MAX seconds, 1e308) is dropped
        // and counted (`values_dropped`), never exported as a number.
        value: |c| {
            c.last_activity
                .filter(Timestamp::in_range)
                .map(|t| t.as_secs_f64())
        },
        value_len: 17,
    },
    ConnectionFamily {
        def: &catalogue::CONNECTION_HEALTHY,
        value: |c| c.is_healthy.map(bool_value),
        value_len: 1,
    },
];

const CONNECTION_INFO: &FamilyDef = &catalogue::CONNECTION_INFO;

/// The connections that survived the cap, with their pool's endpoint
/// (already cut to `max_len`; ids and addresses are cut as written).
pub(super) struct ConnectionSeries<'a> {
    pub(super) endpoint: &'a str,
    pub(super) kept: Vec<&'a Connection>,
    pub(super) max_len: usize,
}

impl ConnectionSeries<'_> {
    /// Every per-connection family, empty ones included.
    pub(super) fn families(&self) -> Vec<MetricFamily> {
        let (endpoint, max_len) = (self.endpoint, self.max_len);
        let labels = |conn: &Connection| {
            vec![
                l("endpoint", endpoint),
                l("connection_id", cap(conn.connection_id.as_str(), max_len)),
            ]
        };
        let mut out: Vec<MetricFamily> = CONNECTION_FAMILIES
            .iter()
            .map(|spec| {
                let mut family = spec.def.family();
                for conn in &self.kept {
                    if let Some(v) = (spec.value)(conn) {
                        family.push(labels(conn), v);
                    }
                }
                family
            })
            .collect();
        let mut info = CONNECTION_INFO.family();
        for conn in &self.kept {
            if let Some(addr) = &conn.remote_addr {
                let mut with_addr = labels(conn);
                with_addr.push(l("remote_addr", cap(addr, max_len)));
                info.push(with_addr, 1.0);
            }
        }
        out.push(info);
        out
    }

    /// Close to the size of [`encode`](Self::encode)'s text, erring a
    /// little high: the buffer is shared by every scrape of one fetch and
    /// lives until the last of them is sent, so an estimate far too high
    /// wastes memory under concurrent scrapes, and one too low doubles the
    /// buffer and copies it.
    pub(super) fn estimated_bytes(&self) -> usize {
        // `{endpoint="` `",connection_id="` `"} ` and the newline.
        let per_line = self.endpoint.len() + 32;
        let ids: usize = self
            .kept
            .iter()
            .map(|c| c.connection_id.as_str().len().min(self.max_len))
            .sum();
        let Some(first) = self.kept.first() else {
            return 0;
        };
        let lines: usize = CONNECTION_FAMILIES
            .iter()
            // Pools report a field for all their connections or for none.
            .filter(|spec| (spec.value)(first).is_some())
            .map(|spec| {
                512 + self.kept.len() * (spec.def.name.len() + per_line + spec.value_len) + ids
            })
            .sum();
        let info = if first.remote_addr.is_some() {
            self.kept.len() * (CONNECTION_INFO.name.len() + per_line + 40) + ids
        } else {
            0
        };
        let total = lines + info;
        total + total / 32
    }

    /// Writes the same text as encoding [`families`](Self::families), one
    /// line at a time from a prefix shared by the whole family.
    pub(super) fn encode(&self, encoder: &mut Encoder) {
        let mut endpoint = String::with_capacity(self.endpoint.len());
        escape_into(&mut endpoint, self.endpoint, true);
        let mut prefix = String::with_capacity(128);
        for spec in &CONNECTION_FAMILIES {
            if !self.kept.iter().any(|c| (spec.value)(c).is_some()) {
                continue;
            }
            encoder.header(spec.def.name, spec.def.help, spec.def.kind);
            line_prefix(&mut prefix, spec.def.name, &endpoint);
            let out = encoder.buffer();
            for conn in &self.kept {
                if let Some(v) = (spec.value)(conn) {
                    out.push_str(&prefix);
                    escape_into(out, cap(conn.connection_id.as_str(), self.max_len), true);
                    out.push_str("\"} ");
                    write_value(out, v);
                    out.push('\n');
                }
            }
        }
        if self.kept.iter().any(|c| c.remote_addr.is_some()) {
            encoder.header(
                CONNECTION_INFO.name,
                CONNECTION_INFO.help,
                MetricType::Gauge,
            );
            line_prefix(&mut prefix, CONNECTION_INFO.name, &endpoint);
            let out = encoder.buffer();
            for conn in &self.kept {
                if let Some(addr) = &conn.remote_addr {
                    out.push_str(&prefix);
                    escape_into(out, cap(conn.connection_id.as_str(), self.max_len), true);
                    out.push_str("\",remote_addr=\"");
                    escape_into(out, cap(addr, self.max_len), true);
                    out.push_str("\"} 1\n");
                }
            }
        }
    }
}

/// `name{endpoint="...",connection_id="`: what every line of a
/// per-connection family starts with.
fn line_prefix(prefix: &mut String, name: &str, escaped_endpoint: &str) {
    prefix.clear();
    prefix.push_str(name);
    prefix.push_str("{endpoint=\"");
    prefix.push_str(escaped_endpoint);
    prefix.push_str("\",connection_id=\"");
}

/// One connection per id (as exported, so `1` and `"1"` are one id, and so
/// are ids equal once cut to `max_len`): the worst of them, the first on a
/// tie, in the place of the first. Two series with one label set would
/// make Prometheus keep one of them silently. Returns how many were left
/// out.
pub(super) fn dedupe_connections(
    connections: &[Connection],
    max_len: usize,
) -> (Vec<&Connection>, usize) {
    // The ids are the pool's to choose, so the hash is keyed (seeded per
    // process), but with foldhash rather than SipHash, which showed in
    // profiles of large pools.
    let mut seen: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(connections.len(), Default::default());
    let mut kept: Vec<&Connection> = Vec::with_capacity(connections.len());
    for conn in connections {
        let id = cap(conn.connection_id.as_str(), max_len);
        match seen.get(id) {
            Some(&at) => {
                let worse = worse_first(conn, kept[at]).is_lt();
                if worse {
                    kept[at] = conn;
                }
            }
            None => {
                seen.insert(id, kept.len());
                kept.push(conn);
            }
        }
    }
    let dropped = connections.len() - kept.len();
    (kept, dropped)
}
