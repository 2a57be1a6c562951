//! A status document as every reader gets it: decoded one connection at a
//! time, with at most `--collector.max-connections` of its connections
//! kept (the worst), the figures over the whole list, and what the
//! derived counters' history needs of every listed connection.
//!
//! The cap is applied while decoding, not after: a status document within
//! the body cap can list hundreds of thousands of minimal connections
//! (8 MiB of `{"connection_id":N}`), and holding them all decoded, about
//! 150 bytes each, was most of the exporter's peak memory.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use secure_channel_client::ConnectionSink;

use super::history::ListedCounters;
use super::limits::{badness, worse_badness_first, worse_first};
use super::{Connection, ConnectionId, PoolStatus, Timestamp};

/// A status document as kept for later readers: at most
/// `--collector.max-connections` connections (the worst), with what the
/// whole list said.
#[derive(Debug)]
pub struct StatusDoc {
    /// The document; its `connections` are the kept ones, in list order.
    pub status: Arc<PoolStatus>,
    /// How many connections the document listed.
    pub listed: usize,
    /// Repeated ids: every copy but the worst of an id is dropped.
    pub duplicates: usize,
    /// How many distinct connections are not kept (the cap).
    pub omitted: usize,
    /// Distinct connections that report activity (see
    /// [`reports_activity`]), kept or not.
    pub distinct_active: usize,
    /// Figures over every listed connection: gathered while decoding when
    /// the list is cut, else taken from the kept list when first asked for
    /// (a scrape never needs them).
    summary: OnceLock<ConnectionSummary>,
}

impl StatusDoc {
    /// Decodes a status document, keeping at most `max_connections` of its
    /// connections (the worst); also returns what the history needs of
    /// every listed connection.
    pub fn decode(
        body: &[u8],
        max_connections: usize,
    ) -> Result<(Self, ListedCounters), serde_json::Error> {
        let (status, listing) =
            PoolStatus::from_slice_into(body, || Listing::new(max_connections))?;
        Ok(listing.finish(status))
    }

    /// A decoded document cut to `max_connections` the same way.
    pub fn capped(mut status: PoolStatus, max_connections: usize) -> Self {
        let mut listing = Listing::new(max_connections);
        for c in std::mem::take(&mut status.connections) {
            listing.connection(c);
        }
        listing.finish(status).0
    }

    /// Every connection kept (tests, and documents within the cap).
    pub fn keep_all(status: PoolStatus) -> Self {
        Self::capped(status, usize::MAX)
    }

    /// Figures over every connection the document listed.
    pub fn summary(&self) -> &ConnectionSummary {
        self.summary
            .get_or_init(|| ConnectionSummary::of(&self.status.connections))
    }
}

/// The pool closes listed connections whose p95 exceeds this
/// (`max_latency_ms`, docs/pool-behaviour.md): its own idea of a healthy one.
pub const POOL_MAX_LATENCY_MS: f64 = 500.0;

/// A connection's health: the pool's `is_healthy` where it reports one,
/// else the pool's own rule (p95 within `max_latency_ms`; 0 = no samples).
pub fn connection_healthy(c: &Connection) -> (bool, &'static str) {
    match c.is_healthy {
        Some(h) => (h, "reported"),
        None => (
            c.p95_latency_ms.unwrap_or(0.0) <= POOL_MAX_LATENCY_MS,
            "p95_within_pool_limit",
        ),
    }
}

/// Whether a listed connection shows it was used: then this pool returns
/// connections to its list and their errors are visible. The published
/// pool lists only never-used ones (p95 0, errors 0).
pub fn shows_use(c: &Connection) -> bool {
    c.is_healthy.is_some() || c.errors > 0.0 || c.p95_latency_ms.is_some_and(|p| p > 0.0)
}

/// Whether a connection has anything to say: an error, a reconnect or a
/// latency sample (`--collector.connections=used`).
pub fn reports_activity(c: &Connection) -> bool {
    c.errors != 0.0 || c.reconnects != 0.0 || c.p95_latency_ms.is_some_and(|p| p != 0.0)
}

/// Figures over every connection a status document listed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionSummary {
    pub healthy: usize,
    pub errors_total: f64,
    pub reconnects_total: f64,
    /// p95 values above 0, ascending.
    pub p95_samples: Vec<f64>,
    /// Oldest and newest `last_activity`, in Unix seconds.
    pub oldest_activity: Option<f64>,
    pub newest_activity: Option<f64>,
    pub shows_use: bool,
}

impl ConnectionSummary {
    pub fn of<'a>(connections: impl IntoIterator<Item = &'a Connection>) -> Self {
        let mut s = Self::default();
        for c in connections {
            s.add(c);
        }
        s.finish()
    }

    fn add(&mut self, c: &Connection) {
        self.healthy += usize::from(connection_healthy(c).0);
        self.errors_total += c.errors;
        self.reconnects_total += c.reconnects;
        if let Some(p) = c.p95_latency_ms.filter(|p| *p > 0.0) {
            self.p95_samples.push(p);
        }
        // A time out of any calendar's range says nothing of age.
        if let Some(t) = c
            .last_activity
            .filter(|t| t.in_range())
            .as_ref()
            .map(Timestamp::as_secs_f64)
        {
            self.oldest_activity = Some(self.oldest_activity.map_or(t, |o| o.min(t)));
            self.newest_activity = Some(self.newest_activity.map_or(t, |n| n.max(t)));
        }
        self.shows_use |= shows_use(c);
    }

    fn finish(mut self) -> Self {
        self.p95_samples.sort_by(f64::total_cmp);
        self
    }
}

/// Receives a status document's connections as they are decoded and
/// keeps the worst `max` of them, one copy per id (the worst copy, as the
/// scrape's own de-duplication does): the list is cut back to `max`
/// whenever it reaches `max` plus `max.max(1024)`, so each cut drops at
/// least as many as it keeps and the work per connection stays constant.
/// Every connection not kept goes into the figures first.
struct Listing {
    max: usize,
    cut_at: usize,
    listed: usize,
    duplicates: usize,
    /// Distinct ids of which a copy reports activity.
    active: usize,
    /// The connections kept so far, in list order, and their positions in
    /// the list.
    kept: Vec<Connection>,
    positions: Vec<usize>,
    /// Every id listed so far, with its copy's position in the list.
    ids: Ids,
    /// The rank of the last connection kept by the latest cut: the ranks
    /// kept only rise, so a connection ranking below it will be cut too.
    floor: Option<([f64; 3], usize)>,
    /// Figures over the connections dropped so far (p95 unsorted).
    dropped: Option<ConnectionSummary>,
    counters: ListedCounters,
}

/// An id's copy: its position in the list (found in `kept` by a binary
/// search of the positions, or cut when it is not there; ids are remembered
/// after their copy is cut, so a later copy is still known as a duplicate),
/// and whether any of its copies reports activity.
#[derive(Debug, Clone, Copy)]
struct Held {
    position: usize,
    active: bool,
}

/// An id by its text: canonical integers (every known pool build) as
/// numbers, so they are kept without an allocation.
#[derive(Clone, Copy)]
enum Key<'a> {
    Number(u64),
    Name(&'a str),
}

impl<'a> Key<'a> {
    /// The key of `id`, and the id as an integer when it is all digits
    /// (how the history keys it).
    fn of(id: &'a ConnectionId) -> (Self, Option<u64>) {
        let number = id.as_u64();
        // `7`, not `07` or `+7`, which are other ids.
        let canonical = match id.as_str().as_bytes() {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        match number {
            Some(n) if canonical => (Key::Number(n), number),
            _ => (Key::Name(id.as_str()), number),
        }
    }
}

/// Every id listed so far. The hash is keyed per process: the ids are the
/// pool's to choose.
#[derive(Default)]
struct Ids {
    numbers: HashMap<u64, Held, foldhash::fast::RandomState>,
    names: HashMap<Box<str>, Held, foldhash::fast::RandomState>,
}

impl Ids {
    fn get_mut(&mut self, key: Key) -> Option<&mut Held> {
        match key {
            Key::Number(n) => self.numbers.get_mut(&n),
            Key::Name(name) => self.names.get_mut(name),
        }
    }

    fn insert(&mut self, key: Key, held: Held) {
        match key {
            Key::Number(n) => self.numbers.insert(n, held),
            Key::Name(name) => self.names.insert(name.into(), held),
        };
    }
}

impl Listing {
    fn new(max: usize) -> Self {
        Self {
            max,
            cut_at: max.saturating_add(max.max(1024)),
            listed: 0,
            duplicates: 0,
            active: 0,
            kept: Vec::new(),
            positions: Vec::new(),
            ids: Ids::default(),
            floor: None,
            dropped: None,
            counters: ListedCounters::default(),
        }
    }

    fn drop_copy(&mut self, c: &Connection) {
        self.dropped
            .get_or_insert_with(ConnectionSummary::default)
            .add(c);
    }

    /// Remembers the connection at `position` as the copy of `key`'s id;
    /// `keep` then takes the connection in (two steps, as the key borrows
    /// from the connection).
    fn hold(&mut self, key: Key, position: usize, active: bool) {
        self.ids.insert(key, Held { position, active });
        self.positions.push(position);
    }

    /// The connection whose id `hold` just took in.
    fn keep(&mut self, connection: Connection) {
        self.kept.push(connection);
        if self.kept.len() >= self.cut_at {
            self.cut();
        }
    }

    /// Keeps the worst `self.max`; ties go to the one listed first, so the
    /// choice does not depend on when the cuts happen. The kept stay in
    /// list order (a later copy of a cut id comes after everything kept),
    /// so their index in `kept` orders ties as their position does.
    fn cut(&mut self) {
        let len = self.kept.len();
        if len <= self.max {
            return;
        }
        let mut keep = vec![false; len];
        if self.max > 0 {
            let bad: Vec<[f64; 3]> = self.kept.iter().map(badness).collect();
            let mut order: Vec<u32> = (0..len as u32).collect();
            order.select_nth_unstable_by(self.max - 1, |&a, &b| {
                worse_badness_first(&bad[a as usize], &bad[b as usize]).then(a.cmp(&b))
            });
            let last = order[self.max - 1] as usize;
            self.floor = Some((bad[last], self.positions[last]));
            for &i in &order[..self.max] {
                keep[i as usize] = true;
            }
        }
        let mut dropped = self.dropped.take().unwrap_or_default();
        let mut at = 0;
        self.kept.retain(|c| {
            let kept = keep[at];
            at += 1;
            if !kept {
                dropped.add(c);
            }
            kept
        });
        let mut at = 0;
        self.positions.retain(|_| {
            at += 1;
            keep[at - 1]
        });
        self.dropped = Some(dropped);
    }

    /// Whether `c`, listed at `position`, ranks below what the cuts keep.
    fn below_floor(&self, c: &Connection, position: usize) -> bool {
        if self.max == 0 {
            return true;
        }
        self.floor.is_some_and(|(floor, at)| {
            worse_badness_first(&badness(c), &floor)
                .then(position.cmp(&at))
                .is_gt()
        })
    }

    fn finish(mut self, mut status: PoolStatus) -> (StatusDoc, ListedCounters) {
        self.cut();
        let summary = match self.dropped.take() {
            Some(mut whole) => {
                for c in &self.kept {
                    whole.add(c);
                }
                OnceLock::from(whole.finish())
            }
            None => OnceLock::new(),
        };
        status.connections = self.kept;
        let distinct = self.listed - self.duplicates;
        let doc = StatusDoc {
            omitted: distinct - status.connections.len(),
            status: Arc::new(status),
            listed: self.listed,
            duplicates: self.duplicates,
            distinct_active: self.active,
            summary,
        };
        (doc, self.counters)
    }
}

impl ConnectionSink for Listing {
    fn connection(&mut self, connection: Connection) {
        let (key, number) = Key::of(&connection.connection_id);
        self.counters.push_numbered(&connection, number);
        let position = self.listed;
        self.listed += 1;
        let active = reports_activity(&connection);
        let Some(held) = self.ids.get_mut(key) else {
            self.active += usize::from(active);
            self.hold(key, position, active);
            self.keep(connection);
            return;
        };
        self.duplicates += 1;
        // An id reports activity when any copy does (for counters that
        // never go below zero, exactly when its worst copy does).
        if active && !held.active {
            held.active = true;
            self.active += 1;
        }
        let held = *held;
        let Ok(slot) = self.positions.binary_search(&held.position) else {
            // The id's copy was cut. A copy ranking below what is kept is
            // cut too; one ranking above is worse than the copy that was
            // cut, so it becomes the id's copy.
            if self.below_floor(&connection, position) {
                self.drop_copy(&connection);
            } else {
                self.hold(key, position, held.active);
                self.keep(connection);
            }
            return;
        };
        if worse_first(&connection, &self.kept[slot]).is_lt() {
            // The worse copy takes the first one's place in the list.
            let before = std::mem::replace(&mut self.kept[slot], connection);
            self.drop_copy(&before);
        } else {
            self.drop_copy(&connection);
        }
    }

    fn size_hint(&mut self, connections: usize) {
        let kept = connections.min(self.cut_at);
        self.kept.reserve(kept);
        self.positions.reserve(kept);
        self.ids.numbers.reserve(connections);
        self.counters.reserve(connections);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(doc: &StatusDoc) -> Vec<String> {
        doc.status
            .connections
            .iter()
            .map(|c| c.connection_id.to_string())
            .collect()
    }

    #[test]
    fn a_capped_status_keeps_the_worst_and_the_whole_list_figures() {
        let body = br#"{"endpoint":"e:1","backend":"b","active_connections":4,"connections":[
            {"connection_id":1,"errors":0,"p95_latency_ms":10},
            {"connection_id":2,"errors":7,"p95_latency_ms":900},
            {"connection_id":3,"errors":0,"p95_latency_ms":0},
            {"connection_id":4,"errors":2,"p95_latency_ms":20}]}"#;
        let (doc, _) = StatusDoc::decode(body, 2).unwrap();
        assert_eq!((doc.listed, doc.omitted), (4, 2));
        assert_eq!(ids(&doc), ["2", "4"]);
        assert_eq!(doc.status.endpoint, "e:1");
        assert_eq!(doc.status.backend.as_deref(), Some("b"));
        assert_eq!(doc.status.active_connections, Some(4.0));
        assert_eq!(doc.summary().healthy, 3);
        assert_eq!(doc.summary().errors_total, 9.0);
        assert_eq!(doc.summary().p95_samples, [10.0, 20.0, 900.0]);
    }

    /// Many cuts while decoding give what one cut of the whole list gives:
    /// the same connections, in list order, and the same figures.
    #[test]
    fn cutting_while_decoding_is_one_cut_of_the_whole_list() {
        let n = 10_000u64;
        let conns: Vec<String> = (1..=n)
            .map(|i| {
                // Errors in a few bands so many connections tie.
                let errors = (i * 7919) % 13 / 4;
                let p95 = (i * 104_729) % 5;
                format!(
                    r#"{{"connection_id":{i},"errors":{errors},"p95_latency_ms":{p95},"reconnects":{}}}"#,
                    i % 3
                )
            })
            .collect();
        let body = format!(r#"{{"endpoint":"e","connections":[{}]}}"#, conns.join(","));
        let whole = PoolStatus::from_slice(body.as_bytes()).unwrap();
        for max in [0, 1, 7, 1000, 1023, 1024, 1025, 3000, 9_999, 10_000, 20_000] {
            let (doc, _) = StatusDoc::decode(body.as_bytes(), max).unwrap();
            // The reference: rank the whole list once (worst first, ties
            // by position), keep `max`, back in list order.
            let mut order: Vec<usize> = (0..whole.connections.len()).collect();
            order.sort_by(|&i, &j| {
                worse_first(&whole.connections[i], &whole.connections[j]).then(i.cmp(&j))
            });
            order.truncate(max);
            order.sort_unstable();
            let expected: Vec<String> = order
                .iter()
                .map(|&i| whole.connections[i].connection_id.to_string())
                .collect();
            assert_eq!(ids(&doc), expected, "max {max}");
            assert_eq!(doc.listed, n as usize);
            assert_eq!(doc.omitted, (n as usize).saturating_sub(max));
            assert_eq!(
                *doc.summary(),
                ConnectionSummary::of(&whole.connections),
                "max {max}"
            );
        }
    }

    /// Repeated ids, some repeated after their first copy was cut: one
    /// copy of each id is kept, the worst, and the kept ids are the worst
    /// `max` of the distinct ids (every connection here differs in
    /// badness, so there is one right answer).
    #[test]
    fn one_copy_of_each_id_the_worst_even_across_cuts() {
        let distinct = 5_000u64;
        let mut conns = Vec::new();
        let mut worst = std::collections::HashMap::new();
        for i in 0..(distinct * 2) {
            let id = (i * 7_919) % distinct;
            // A unique badness per copy: errors, then p95 in thousandths.
            let errors = (i * 104_729) % 9_973;
            let p95 = i as f64 / 1000.0;
            conns.push(format!(
                r#"{{"connection_id":{id},"errors":{errors},"p95_latency_ms":{p95}}}"#
            ));
            let entry = worst.entry(id).or_insert((errors, p95));
            if (errors, p95) > *entry {
                *entry = (errors, p95);
            }
        }
        let body = format!(r#"{{"endpoint":"e","connections":[{}]}}"#, conns.join(","));
        let whole = PoolStatus::from_slice(body.as_bytes()).unwrap();
        let mut ranked: Vec<(u64, (u64, f64))> = worst.into_iter().collect();
        ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        for max in [1, 10, 1000, 2500, 5000, 6000] {
            let (doc, _) = StatusDoc::decode(body.as_bytes(), max).unwrap();
            let mut got: Vec<(u64, (u64, f64))> = doc
                .status
                .connections
                .iter()
                .map(|c| {
                    let errors = c.errors as u64;
                    (
                        c.connection_id.as_u64().unwrap(),
                        (errors, c.p95_latency_ms.unwrap()),
                    )
                })
                .collect();
            got.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
            let expected: Vec<_> = ranked.iter().take(max).cloned().collect();
            assert_eq!(got, expected, "max {max}");
            assert_eq!(doc.listed, 2 * distinct as usize);
            assert_eq!(doc.duplicates, distinct as usize);
            assert_eq!(doc.omitted, (distinct as usize).saturating_sub(max));
            // The figures count every copy.
            assert_eq!(
                *doc.summary(),
                ConnectionSummary::of(&whole.connections),
                "max {max}"
            );
            assert_eq!(doc.distinct_active, distinct as usize);
        }
    }

    #[test]
    fn ids_are_told_apart_by_their_text() {
        let body = br#"{"endpoint":"e","connections":[
            {"connection_id":7,"errors":1},{"connection_id":"7","errors":2},
            {"connection_id":"07","errors":3},{"connection_id":"+7","errors":4},
            {"connection_id":"a","errors":0},{"connection_id":"a","errors":0}]}"#;
        let (doc, _) = StatusDoc::decode(body, 10).unwrap();
        assert_eq!(ids(&doc), ["7", "07", "+7", "a"]);
        assert_eq!(doc.status.connections[0].errors, 2.0);
        assert_eq!(
            (doc.duplicates, doc.omitted, doc.distinct_active),
            (2, 0, 3)
        );
    }

    #[test]
    fn the_history_input_lists_every_connection() {
        let body = br#"{"endpoint":"e","connections":[
            {"connection_id":5,"errors":1},{"connection_id":"x","errors":2},
            {"connection_id":9,"errors":3}]}"#;
        let (_, listed) = StatusDoc::decode(body, 1).unwrap();
        let mut history = super::super::history::PoolHistory::default();
        history.observe_listed("e", &listed);
        assert_eq!(history.counters().unwrap().errors_seen, 6.0);
        assert_eq!(history.counters().unwrap().connections_opened, Some(0.0));
    }
}
