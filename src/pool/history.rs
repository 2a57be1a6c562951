//! Signals the pool does not give but successive status documents reveal,
//! derived by the exporter (docs/pool-behaviour.md):
//!
//! * errors and reconnects *seen* on listed connections, each connection
//!   counted from its first sighting, including what it had before it was
//!   first scraped. `rate()` of a per-connection counter ignores the value of
//!   a series' first sample, so a short-lived connection's errors (most of
//!   them, in a pool that returns connections) never reach a burn-rate rule
//!   written over per-connection series;
//! * connections the pool has opened, from the growth of the highest
//!   integer `connection_id` listed: ids are issued one per opened
//!   connection within a pool process and restart at 1 with the process.
//!
//! Pure: the pool's observer feeds it what each status document listed.

use std::collections::HashMap;

use crate::pool::{Connection, PoolStatus};

/// Entries of connections not listed for this many status documents are
/// forgotten: long enough for a connection that is checked out and given
/// back (returning builds) not to be counted twice, short enough that the
/// memory stays in proportion to the pool.
const FORGET_AFTER_OBSERVATIONS: u64 = 240;

/// Totals exported as counters (all start at 0 with the exporter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DerivedCounters {
    /// The `endpoint` of the status documents they come from.
    pub endpoint: String,
    pub errors_seen: f64,
    pub reconnects_seen: f64,
    /// `None` until a status document has listed an integer id.
    pub connections_opened: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    errors: f64,
    reconnects: f64,
    observation: u64,
}

/// The last numbers of each connection listed, by id. Integer ids (every
/// known pool build) are keyed as integers: at 10,000 connections a scrape
/// looks up 10,000 ids, and hashing strings with SipHash (and allocating a
/// key for each) cost about 10 % of the scrape. The hash is foldhash,
/// seeded per process: the ids are the pool's to choose, and an unseeded
/// hash lets chosen ids (multiples of a power of two, for a
/// multiplicative hash) collide into one bucket and make every lookup a
/// scan.
#[derive(Debug, Default)]
struct SeenConnections {
    by_number: HashMap<u64, Seen, foldhash::fast::RandomState>,
    by_name: HashMap<String, Seen, foldhash::fast::RandomState>,
}

impl SeenConnections {
    /// Stores `now` for an integer id and returns what was there before.
    fn record_number(&mut self, id: u64, now: Seen) -> Option<Seen> {
        self.by_number.insert(id, now)
    }

    /// Stores `now` for a text id and returns what was there before.
    fn record_name(&mut self, id: &str, now: Seen) -> Option<Seen> {
        match self.by_name.get_mut(id) {
            Some(slot) => Some(std::mem::replace(slot, now)),
            None => self.by_name.insert(id.to_owned(), now),
        }
    }

    fn retain(&mut self, keep: impl Fn(&Seen) -> bool) {
        self.by_number.retain(|_, s| keep(s));
        self.by_name.retain(|_, s| keep(s));
    }

    fn clear(&mut self) {
        self.by_number.clear();
        self.by_name.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_number.len() + self.by_name.len()
    }
}

/// What the history needs of one status document's connections, in list
/// order: id, errors and reconnects (24 bytes for an integer id). The
/// observer keeps at most `--collector.max-connections` of a document's
/// connections, so this is all it holds of the rest while it decodes.
#[derive(Debug, Default)]
pub struct ListedCounters {
    /// Integer ids (and text ids that are all digits), keyed as numbers.
    numbers: Vec<(u64, f64, f64)>,
    names: Vec<(Box<str>, f64, f64)>,
    /// Lowest and highest integer id listed.
    id_range: Option<(u64, u64)>,
}

impl ListedCounters {
    /// Everything `connections` lists.
    pub fn of<'a>(connections: impl IntoIterator<Item = &'a Connection>) -> Self {
        let mut listed = Self::default();
        for c in connections {
            listed.push(c);
        }
        listed
    }

    /// Room for `connections` more integer ids.
    pub fn reserve(&mut self, connections: usize) {
        self.numbers.reserve(connections);
    }

    /// The next listed connection.
    pub fn push(&mut self, c: &Connection) {
        self.push_numbered(c, c.connection_id.as_u64());
    }

    /// The next listed connection, whose id as an integer (when it is all
    /// digits) the caller has already read.
    pub fn push_numbered(&mut self, c: &Connection, number: Option<u64>) {
        match number {
            Some(n) => {
                self.id_range = Some(match self.id_range {
                    Some((lo, hi)) => (lo.min(n), hi.max(n)),
                    None => (n, n),
                });
                self.numbers.push((n, c.errors, c.reconnects));
            }
            None => self
                .names
                .push((c.connection_id.as_str().into(), c.errors, c.reconnects)),
        }
    }
}

/// What earlier status documents of one pool said, as far as the derived
/// counters need it.
#[derive(Debug, Default)]
pub struct PoolHistory {
    counters: Option<DerivedCounters>,
    seen: SeenConnections,
    /// The highest integer id listed since the pool (re)started.
    highest_id: Option<u64>,
    /// The lowest integer id of the last document that listed any.
    lowest_listed: Option<u64>,
    observations: u64,
}

impl PoolHistory {
    /// The counters as they stand, once a status document has been seen.
    pub fn counters(&self) -> Option<&DerivedCounters> {
        self.counters.as_ref()
    }

    /// Takes in the next status document fetched from the pool, whole.
    pub fn observe(&mut self, status: &PoolStatus) {
        self.observe_listed(&status.endpoint, &ListedCounters::of(&status.connections));
    }

    /// Takes in what the next status document, of the pool named
    /// `endpoint`, listed.
    pub fn observe_listed(&mut self, endpoint: &str, listed: &ListedCounters) {
        let counters = match &mut self.counters {
            Some(c) if c.endpoint == endpoint => c,
            // A different pool behind the same URL: its numbers are not
            // comparable with the last one's.
            _ => {
                self.seen.clear();
                self.highest_id = None;
                self.lowest_listed = None;
                self.counters.insert(DerivedCounters {
                    endpoint: endpoint.to_owned(),
                    ..DerivedCounters::default()
                })
            }
        };
        self.observations += 1;
        let now = self.observations;

        if let Some((lowest, highest)) = listed.id_range {
            let opened = counters.connections_opened.get_or_insert(0.0);
            match (self.highest_id, self.lowest_listed) {
                // Every id listed is below every id listed before: ids
                // restarted at 1, so the pool process restarted and each id
                // up to `highest` is a connection opened since. (A pool that
                // hands out its newest idle connection first lists lower
                // ids as it drains, but never ids below all it listed.)
                (Some(_), Some(before)) if highest < before => {
                    *opened += highest as f64;
                    self.highest_id = Some(highest);
                    self.seen.clear();
                }
                (Some(before), _) if highest > before => {
                    *opened += (highest - before) as f64;
                    self.highest_id = Some(highest);
                }
                (Some(_), _) => {}
                (None, _) => self.highest_id = Some(highest),
            }
            self.lowest_listed = Some(lowest);
        }

        let mut grown = (0.0, 0.0);
        for &(id, errors, reconnects) in &listed.numbers {
            let seen = Seen {
                errors,
                reconnects,
                observation: now,
            };
            let before = self.seen.record_number(id, seen);
            add_growth(&mut grown, before, seen);
        }
        for (id, errors, reconnects) in &listed.names {
            let seen = Seen {
                errors: *errors,
                reconnects: *reconnects,
                observation: now,
            };
            let before = self.seen.record_name(id, seen);
            add_growth(&mut grown, before, seen);
        }
        counters.errors_seen += grown.0;
        counters.reconnects_seen += grown.1;
        if now.is_multiple_of(16) {
            self.seen
                .retain(|s| now - s.observation < FORGET_AFTER_OBSERVATIONS);
        }
    }
}

/// Adds what one connection's errors and reconnects grew by since `before`
/// (all of them at its first sighting).
fn add_growth(total: &mut (f64, f64), before: Option<Seen>, now: Seen) {
    let (errors, reconnects) = match before {
        Some(before) => (
            growth(before.errors, now.errors),
            growth(before.reconnects, now.reconnects),
        ),
        None => (non_negative(now.errors), non_negative(now.reconnects)),
    };
    total.0 += errors;
    total.1 += reconnects;
}

/// How much a connection's counter grew; a counter that went down belongs
/// to a new connection under a reused id, so all of it is new.
fn growth(before: f64, now: f64) -> f64 {
    if now >= before {
        now - before
    } else {
        non_negative(now)
    }
}

fn non_negative(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(endpoint: &str, conns: &[(&str, f64, f64)]) -> PoolStatus {
        let connections: Vec<String> = conns
            .iter()
            .map(|(id, errors, reconnects)| {
                format!(
                    r#"{{"connection_id":{id},"last_activity":1764072000,"reconnects":{reconnects},"errors":{errors},"p95_latency_ms":3}}"#
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"endpoint":"{endpoint}","active_connections":{},"total_reconnects":0,"total_errors":0,"pool_p95_latency_ms":0,"connections":[{}]}}"#,
            conns.len(),
            connections.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn errors_before_the_first_sighting_count_once() {
        let mut h = PoolHistory::default();
        h.observe(&status("r", &[("1", 3.0, 0.0)]));
        assert_eq!(h.counters().unwrap().errors_seen, 3.0);
        // Same connection, 2 more errors; a new one arrives with 5.
        h.observe(&status("r", &[("1", 5.0, 0.0), ("2", 5.0, 1.0)]));
        let c = h.counters().unwrap();
        assert_eq!(c.errors_seen, 10.0);
        assert_eq!(c.reconnects_seen, 1.0);
        // Connection 1 is checked out (not listed), then given back with one
        // more error: only that one counts.
        h.observe(&status("r", &[("2", 5.0, 1.0)]));
        h.observe(&status("r", &[("1", 6.0, 0.0), ("2", 5.0, 1.0)]));
        assert_eq!(h.counters().unwrap().errors_seen, 11.0);
    }

    #[test]
    fn opened_connections_follow_the_highest_id_across_a_restart() {
        let mut h = PoolHistory::default();
        h.observe(&status("r", &[("7", 0.0, 0.0), ("9", 0.0, 0.0)]));
        assert_eq!(h.counters().unwrap().connections_opened, Some(0.0));
        // Nothing listed while busy: no change.
        h.observe(&status("r", &[]));
        h.observe(&status("r", &[("30", 0.0, 0.0)]));
        assert_eq!(h.counters().unwrap().connections_opened, Some(21.0));
        // A pool that hands out its newest idle connection first lists
        // lower ids as it drains: not a restart.
        h.observe(&status(
            "r",
            &[("28", 0.0, 0.0), ("29", 0.0, 0.0), ("30", 0.0, 0.0)],
        ));
        h.observe(&status("r", &[("28", 0.0, 0.0)]));
        assert_eq!(h.counters().unwrap().connections_opened, Some(21.0));
        // The pool restarted: ids 1..=4 are new connections.
        h.observe(&status("r", &[("3", 0.0, 0.0), ("4", 0.0, 0.0)]));
        assert_eq!(h.counters().unwrap().connections_opened, Some(25.0));
    }

    #[test]
    fn string_ids_give_no_opened_count_but_do_give_errors() {
        let mut h = PoolHistory::default();
        h.observe(&status("r", &[(r#""conn-a""#, 2.0, 0.0)]));
        let c = h.counters().unwrap();
        assert_eq!(c.connections_opened, None);
        assert_eq!(c.errors_seen, 2.0);
    }

    #[test]
    fn a_reused_id_with_fewer_errors_is_a_new_connection() {
        let mut h = PoolHistory::default();
        h.observe(&status("r", &[("1", 8.0, 0.0)]));
        h.observe(&status("r", &[("1", 2.0, 0.0)]));
        assert_eq!(h.counters().unwrap().errors_seen, 10.0);
    }

    #[test]
    fn another_endpoint_starts_over() {
        let mut h = PoolHistory::default();
        h.observe(&status("a", &[("1", 8.0, 0.0)]));
        h.observe(&status("b", &[("1", 1.0, 0.0)]));
        let c = h.counters().unwrap();
        assert_eq!((c.endpoint.as_str(), c.errors_seen), ("b", 1.0));
    }

    #[test]
    fn forgotten_connections_do_not_pile_up() {
        let mut h = PoolHistory::default();
        for i in 0..2000u64 {
            let id = i.to_string();
            h.observe(&status("r", &[(id.as_str(), 0.0, 0.0)]));
        }
        assert!(h.seen.len() <= FORGET_AFTER_OBSERVATIONS as usize + 16);
    }
}
