//! A decoder of the status document specialised to the layout pools send,
//! with serde as the general fallback.
//!
//! Decoding the status JSON is the largest cost of a scrape at 10,000
//! connections, and general-purpose decoders (serde_json, SIMD ones) gain
//! little on this small-keyed, number-dense document. The scanner here
//! reads the fields the model knows, in any order, straight into
//! [`PoolStatus`]; whenever it meets anything it does not handle itself
//! (an unknown field, `null`, a duplicate key, a negative or fractional
//! number where an integer goes, an escaped key, malformed JSON), it gives
//! up and the whole document goes to serde_json, which then decides: the
//! result or the error is serde's own. So the scanner only has to be right
//! on what it accepts, never on what it rejects, and the differential tests
//! (`tests/scan.rs`) and the fuzz target (`fuzz/fuzz_targets/decode_status.rs`)
//! check exactly that: on every input, the result equals serde's.
//!
//! Numbers the scanner does not convert exactly itself (fractions,
//! exponents, more than 15 digits, negatives) are handed to serde_json's
//! own number parser, so every value is rounded the way serde rounds it.

use std::borrow::Cow;

use crate::model::{Connection, ConnectionId, PoolStatus, Timestamp};
use crate::sink::{deserialize_status, ConnectionSink};

/// Decodes a status document: the specialised scanner when it can, serde
/// otherwise. Always the same result as `serde_json::from_slice`.
pub(crate) fn decode_status(input: &[u8]) -> Result<PoolStatus, serde_json::Error> {
    match scan_status(input) {
        Some(status) => Ok(status),
        None => serde_json::from_slice(input),
    }
}

/// Decodes a status document handing each connection to a sink made by
/// `new_sink`: the scanner when it can, else serde through the same sink
/// interface. When the scanner gives up partway, the connections it had
/// handed over go with its sink, and serde starts over with a new one.
pub(crate) fn decode_status_into<S: ConnectionSink>(
    input: &[u8],
    mut new_sink: impl FnMut() -> S,
) -> Result<(PoolStatus, S), serde_json::Error> {
    if let Some(done) = scan_status_into(input, new_sink()) {
        return Ok(done);
    }
    let mut sink = new_sink();
    let status = deserialize_status(input, &mut sink)?;
    Ok((status, sink))
}

/// The scanner alone: `None` when it leaves the document to serde.
pub(crate) fn scan_status(input: &[u8]) -> Option<PoolStatus> {
    let (mut status, connections) = scan_status_into(input, Vec::new())?;
    status.connections = connections;
    Some(status)
}

/// The sink is taken and given back by value: held in a local while the
/// list is scanned, a `Vec` sink's pushes stay as fast as a plain loop's
/// (through a reference they measured ~9% slower on the whole decode).
fn scan_status_into<S: ConnectionSink>(input: &[u8], sink: S) -> Option<(PoolStatus, S)> {
    let mut s = Scanner { b: input, i: 0 };
    let done = s.status(sink)?;
    s.ws();
    (s.i == s.b.len()).then_some(done)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// A JSON number as written: its text, and whether it is a plain
/// non-negative integer (no sign, fraction or exponent).
struct Num<'a> {
    text: &'a [u8],
    plain: bool,
}

impl<'a> Num<'a> {
    /// The value as serde would give an `f64` field.
    fn f64(&self) -> Option<f64> {
        if self.plain && self.text.len() <= 15 {
            // Below 2^53: exact, as serde's u64-then-cast is.
            return Some(digits(self.text) as f64);
        }
        serde_json::from_slice::<f64>(self.text).ok()
    }

    /// The value as a non-negative integer of at most `max_digits` digits.
    fn uint(&self, max_digits: usize) -> Option<u64> {
        (self.plain && self.text.len() <= max_digits).then(|| digits(self.text))
    }
}

fn digits(text: &[u8]) -> u64 {
    text.iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))
}

/// Which fields of an object were seen, to give a duplicate to serde
/// (which rejects it).
#[derive(Default)]
struct Seen(u16);

impl Seen {
    fn first(&mut self, bit: u16) -> Option<()> {
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// After a value inside an object or array: `true` if another member
    /// follows (a comma), `false` at the closing `close`.
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            c if c == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// Opens an object: `true` if it has members.
    fn open_object(&mut self) -> Option<bool> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(false);
        }
        Some(true)
    }

    /// An object key (no escapes) and its colon.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let key = &self.b[start..self.i];
        self.i += 1;
        self.eat(b':')?;
        Some(key)
    }

    /// A string value; escapes are decoded by serde_json.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let end = self.i;
        self.i += 1;
        if escaped {
            serde_json::from_slice::<String>(&self.b[start - 1..=end])
                .ok()
                .map(Cow::Owned)
        } else {
            std::str::from_utf8(&self.b[start..end])
                .ok()
                .map(Cow::Borrowed)
        }
    }

    /// A number, checked against JSON's grammar.
    fn number(&mut self) -> Option<Num<'a>> {
        self.ws();
        let start = self.i;
        let at = |s: &Self, i: usize| s.b.get(i).copied();
        let mut i = self.i;
        let mut plain = true;
        if at(self, i) == Some(b'-') {
            plain = false;
            i += 1;
        }
        match at(self, i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = at(self, i) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if at(self, i) == Some(b'.') {
            plain = false;
            i += 1;
            let from = i;
            while let Some(b'0'..=b'9') = at(self, i) {
                i += 1;
            }
            if i == from {
                return None;
            }
        }
        if let Some(b'e' | b'E') = at(self, i) {
            plain = false;
            i += 1;
            if let Some(b'+' | b'-') = at(self, i) {
                i += 1;
            }
            let from = i;
            while let Some(b'0'..=b'9') = at(self, i) {
                i += 1;
            }
            if i == from {
                return None;
            }
        }
        self.i = i;
        Some(Num {
            text: &self.b[start..i],
            plain,
        })
    }

    fn boolean(&mut self) -> Option<bool> {
        self.ws();
        let rest = &self.b[self.i..];
        if rest.starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    /// A time: a serde `SystemTime` object, an RFC 3339 string or Unix
    /// seconds.
    fn timestamp(&mut self) -> Option<Timestamp> {
        match self.peek()? {
            b'{' => {
                if !self.open_object()? {
                    return None;
                }
                let (mut secs, mut nanos, mut seen) = (None, 0u32, Seen::default());
                loop {
                    match self.key()? {
                        b"secs_since_epoch" => {
                            seen.first(1)?;
                            secs = Some(self.number()?.uint(18)? as i64);
                        }
                        b"nanos_since_epoch" => {
                            seen.first(2)?;
                            nanos = self.number()?.uint(9)? as u32;
                        }
                        _ => return None,
                    }
                    if !self.more(b'}')? {
                        break;
                    }
                }
                Some(Timestamp::from_unix(secs?, nanos))
            }
            b'"' => Timestamp::parse_rfc3339(&self.string()?),
            _ => {
                let n = self.number()?;
                if n.plain {
                    return Some(Timestamp::from_unix(n.uint(18)? as i64, 0));
                }
                // serde gives whole negative numbers to its integer visitor:
                // left to it. Fractions and exponents go to the float one.
                if !n.text.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                    return None;
                }
                Timestamp::from_secs_f64(n.f64()?)
            }
        }
    }

    fn connection_id(&mut self) -> Option<ConnectionId> {
        if self.peek()? == b'"' {
            return Some(ConnectionId::from(self.string()?.into_owned()));
        }
        let n = self.number()?;
        n.uint(19)?;
        // Plain digits without a leading zero: the text serde would print.
        let text = std::str::from_utf8(n.text).ok()?;
        Some(ConnectionId::from_numeric_text(text.to_owned()))
    }

    fn connection(&mut self) -> Option<Connection> {
        let mut id = None;
        let mut c = Connection {
            connection_id: ConnectionId::from(0u64),
            last_activity: None,
            reconnects: 0.0,
            errors: 0.0,
            p95_latency_ms: None,
            is_healthy: None,
            remote_addr: None,
        };
        let mut seen = Seen::default();
        if self.open_object()? {
            loop {
                match self.key()? {
                    b"connection_id" => {
                        seen.first(1)?;
                        id = Some(self.connection_id()?);
                    }
                    b"last_activity" => {
                        seen.first(2)?;
                        c.last_activity = Some(self.timestamp()?);
                    }
                    b"reconnects" => {
                        seen.first(4)?;
                        c.reconnects = self.number()?.f64()?;
                    }
                    b"errors" => {
                        seen.first(8)?;
                        c.errors = self.number()?.f64()?;
                    }
                    b"p95_latency_ms" => {
                        seen.first(16)?;
                        c.p95_latency_ms = Some(self.number()?.f64()?);
                    }
                    b"is_healthy" => {
                        seen.first(32)?;
                        c.is_healthy = Some(self.boolean()?);
                    }
                    b"remote_addr" => {
                        seen.first(64)?;
                        c.remote_addr = Some(self.string()?.into_owned());
                    }
                    _ => return None,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        c.connection_id = id?;
        Some(c)
    }

    /// The literal `lit` next, with no whitespace before it.
    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    /// A plain non-negative integer of at most `max` digits right here (no
    /// whitespace, sign, fraction or exponent; JSON allows no leading zero),
    /// and its digits.
    fn digits_here(&mut self, max: usize) -> Option<(u64, &'a [u8])> {
        let start = self.i;
        let mut v = 0u64;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            v = v.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            self.i += 1;
        }
        let text = &self.b[start..self.i];
        let ok = !text.is_empty()
            && text.len() <= max
            && (text[0] != b'0' || text.len() == 1)
            && !matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'));
        ok.then_some((v, text))
    }

    /// One connection exactly as the published pool's serde writes it:
    /// `{"connection_id":N,"last_activity":{"secs_since_epoch":S,
    /// "nanos_since_epoch":NS},"reconnects":R,"errors":E,"p95_latency_ms":P}`
    /// with no whitespace and integers only. Matching the layout as
    /// literals is what makes the scanner several times faster than a
    /// general decoder; any other connection takes [`connection`](Self::connection).
    fn published_connection(&mut self) -> Option<Connection> {
        self.lit(b"{\"connection_id\":")?;
        let (_, id) = self.digits_here(19)?;
        self.lit(b",\"last_activity\":{\"secs_since_epoch\":")?;
        let (secs, _) = self.digits_here(18)?;
        self.lit(b",\"nanos_since_epoch\":")?;
        let (nanos, _) = self.digits_here(9)?;
        self.lit(b"},\"reconnects\":")?;
        let (reconnects, _) = self.digits_here(15)?;
        self.lit(b",\"errors\":")?;
        let (errors, _) = self.digits_here(15)?;
        self.lit(b",\"p95_latency_ms\":")?;
        let (p95, _) = self.digits_here(15)?;
        self.lit(b"}")?;
        Some(Connection {
            // Digits only, checked above.
            connection_id: ConnectionId::from_numeric_text(
                std::str::from_utf8(id).ok()?.to_owned(),
            ),
            last_activity: Some(Timestamp::from_unix(secs as i64, nanos as u32)),
            reconnects: reconnects as f64,
            errors: errors as f64,
            p95_latency_ms: Some(p95 as f64),
            is_healthy: None,
            remote_addr: None,
        })
    }

    fn connections<S: ConnectionSink>(&mut self, mut out: S) -> Option<S> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(out);
        }
        // The pool writes about 130 bytes per connection.
        out.size_hint((self.b.len() / 128).min(1 << 16));
        loop {
            self.ws();
            let at = self.i;
            let c = match self.published_connection() {
                Some(c) => c,
                None => {
                    self.i = at;
                    self.connection()?
                }
            };
            out.connection(c);
            if !self.more(b']')? {
                return Some(out);
            }
        }
    }

    fn status<S: ConnectionSink>(&mut self, mut sink: S) -> Option<(PoolStatus, S)> {
        let mut endpoint = None;
        let mut s = PoolStatus {
            endpoint: String::new(),
            active_connections: None,
            total_reconnects: None,
            total_errors: None,
            pool_p95_latency_ms: None,
            connections: Vec::new(),
            backend: None,
            last_updated: None,
        };
        let mut seen = Seen::default();
        if self.open_object()? {
            loop {
                match self.key()? {
                    b"endpoint" => {
                        seen.first(1)?;
                        endpoint = Some(self.string()?.into_owned());
                    }
                    b"active_connections" => {
                        seen.first(2)?;
                        s.active_connections = Some(self.number()?.f64()?);
                    }
                    b"total_reconnects" => {
                        seen.first(4)?;
                        s.total_reconnects = Some(self.number()?.f64()?);
                    }
                    b"total_errors" => {
                        seen.first(8)?;
                        s.total_errors = Some(self.number()?.f64()?);
                    }
                    b"pool_p95_latency_ms" => {
                        seen.first(16)?;
                        s.pool_p95_latency_ms = Some(self.number()?.f64()?);
                    }
                    b"connections" => {
                        seen.first(32)?;
                        sink = self.connections(sink)?;
                    }
                    b"backend" => {
                        seen.first(64)?;
                        s.backend = Some(self.string()?.into_owned());
                    }
                    b"last_updated" => {
                        seen.first(128)?;
                        s.last_updated = Some(self.timestamp()?);
                    }
                    _ => return None,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        s.endpoint = endpoint?;
        Some((s, sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(doc: &str) -> bool {
        let serde = serde_json::from_str::<PoolStatus>(doc);
        let ours = decode_status(doc.as_bytes());
        match (&serde, &ours) {
            (Ok(a), Ok(b)) => format!("{a:?}") == format!("{b:?}"),
            (Err(_), Err(_)) => true,
            _ => false,
        }
    }

    #[test]
    fn the_pools_layout_is_scanned_not_left_to_serde() {
        let doc = r#"{"endpoint":"relay.example.net:443","active_connections":2,"total_reconnects":3,"total_errors":1,
 "pool_p95_latency_ms":45,
 "connections":[
  {"connection_id":1,"last_activity":{"secs_since_epoch":1764072000,"nanos_since_epoch":120000000},
   "reconnects":2,"errors":1,"p95_latency_ms":45},
  {"connection_id":"b-2","last_activity":"2025-08-25T13:00:00.25+02:00",
   "reconnects":1,"errors":0,"p95_latency_ms":12.5,"is_healthy":true,"remote_addr":"10.0.0.1:443"}]}"#;
        let scanned = scan_status(doc.as_bytes()).expect("scanned");
        assert_eq!(
            format!("{scanned:?}"),
            format!("{:?}", serde_json::from_str::<PoolStatus>(doc).unwrap())
        );
        assert!(scanned.connections[0].connection_id.is_numeric());
        assert_eq!(scanned.connections[1].p95_latency_ms, Some(12.5));
    }

    #[test]
    fn what_the_scanner_leaves_is_decided_by_serde() {
        for doc in [
            r#"{"endpoint":"e","extra":[1,{"a":null}]}"#,
            r#"{"endpoint":"e","endpoint":"f"}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":-3}]}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":1.5}]}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":1,"errors":null}]}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":1,"p95_latency_ms":null}]}"#,
            r#"{"endpoint":"e","connections":null}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":01}]}"#,
            r#"{"endpoint":"e","connections":[{"connection_id":1},]}"#,
            r#"{"\u0065ndpoint":"e"}"#,
            r#"{"endpoint":"a\"b\u00e9"}"#,
            r#"{"endpoint":"e","last_updated":-1}"#,
            r#"{"endpoint":"e","last_updated":-1.5}"#,
            r#"{"endpoint":"e","last_updated":1e3}"#,
            r#"{"endpoint":"e","last_updated":{"secs_since_epoch":1,"secs_since_epoch":2}}"#,
            r#"{"endpoint":"e","last_updated":{"nanos_since_epoch":5000000000,"secs_since_epoch":1}}"#,
            r#"{"endpoint":"e","total_errors":-0}"#,
            r#"{"endpoint":"e","total_errors":123456789012345678901234567890}"#,
            r#"{"endpoint":"e","total_errors":1.7976931348623157e309}"#,
            r#"{"endpoint":"e"} x"#,
            r#"{"endpoint":"e"}  "#,
            r#"{"endpoint":"e""#,
            "{\"endpoint\":\"tab\there\"}",
            "",
            "[]",
        ] {
            assert!(same(doc), "{doc}");
        }
    }
}

#[cfg(test)]
#[path = "scan_proptests.rs"]
mod proptests;
