//! Wire types of the pool's JSON documents.
//!
//! The types are tolerant of every pool build we know (see the crate
//! documentation): times may be serde `SystemTime` objects, RFC 3339 strings
//! or Unix seconds; connection ids may be integers or strings; fields that
//! only some builds send are optional; unknown fields are ignored.
//!
//! Every type also implements [`Serialize`]: times are written as RFC 3339
//! strings, connection ids as the pool sent them (integer or string), whole
//! numbers without a fractional part, and absent optional fields are left
//! out.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::sink::ConnectionSink;

/// The pool status document (`GET /status/connections`).
///
/// The published pool lists only its **idle** connections: a connection a
/// caller has checked out never appears again, so `active_connections` is
/// the idle count and is 0 on a busy, healthy pool.
///
/// ```
/// use secure_channel_client::PoolStatus;
///
/// let doc = r#"{"endpoint":"relay.example.net:443","active_connections":1,
///   "total_reconnects":0,"total_errors":0,"pool_p95_latency_ms":12,
///   "connections":[{"connection_id":1,
///     "last_activity":{"secs_since_epoch":1764072000,"nanos_since_epoch":0},
///     "reconnects":0,"errors":0,"p95_latency_ms":12}]}"#;
/// let status: PoolStatus = serde_json::from_str(doc)?;
/// assert_eq!(status.endpoint, "relay.example.net:443");
/// assert_eq!(status.connections[0].connection_id, 1u64);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PoolStatus {
    /// The relay endpoint the pool connects to, e.g. `relay.example.net:443`.
    pub endpoint: String,
    /// Number of connections listed (the idle ones, for the published pool).
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub active_connections: Option<f64>,
    /// Sum of `reconnects` over the listed connections (not a counter).
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub total_reconnects: Option<f64>,
    /// Sum of `errors` over the listed connections (not a counter).
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub total_errors: Option<f64>,
    /// The largest p95 latency of the listed connections, in milliseconds.
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub pool_p95_latency_ms: Option<f64>,
    /// The listed connections.
    #[serde(default)]
    pub connections: Vec<Connection>,
    /// TLS backend name, sent by some builds only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// When the document was produced, sent by some builds only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Timestamp>,
}

impl PoolStatus {
    /// Decodes a status document from JSON bytes, with the same result as
    /// `serde_json::from_slice` (value or error) but several times faster
    /// on the layout pools send: a scanner specialised to it reads the
    /// document, and anything it does not handle itself goes to serde.
    ///
    /// ```
    /// # use secure_channel_client::PoolStatus;
    /// let doc = br#"{"endpoint":"e","connections":[{"connection_id":7,"errors":2}]}"#;
    /// let status = PoolStatus::from_slice(doc)?;
    /// assert_eq!(status, serde_json::from_slice::<PoolStatus>(doc)?);
    /// assert_eq!(status.connections[0].errors, 2.0);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn from_slice(json: &[u8]) -> Result<Self, serde_json::Error> {
        crate::scan::decode_status(json)
    }

    /// Decodes a status document like [`from_slice`](Self::from_slice),
    /// but hands each listed connection to a [`ConnectionSink`] as soon as
    /// it is decoded instead of collecting them: the returned document's
    /// `connections` is empty, and the sink has received exactly the
    /// connections `from_slice` would list, in the same order. A caller
    /// that keeps a few of a huge list (the worst N, counts, sums) never
    /// holds the rest.
    ///
    /// `new_sink` makes the sink: once, or a second time when the fast
    /// scanner leaves the document to serde partway (the first sink and
    /// what it received are then dropped, so nothing is seen twice). The
    /// result or error is the same as `from_slice`'s; when decoding fails
    /// the sink may have received some connections before the error.
    ///
    /// ```
    /// # use secure_channel_client::{Connection, ConnectionSink, PoolStatus};
    /// /// Counts the connections and keeps the one with most errors.
    /// #[derive(Default)]
    /// struct Worst { listed: usize, worst: Option<Connection> }
    /// impl ConnectionSink for Worst {
    ///     fn connection(&mut self, c: Connection) {
    ///         self.listed += 1;
    ///         if self.worst.as_ref().is_none_or(|w| c.errors > w.errors) {
    ///             self.worst = Some(c);
    ///         }
    ///     }
    /// }
    /// let doc = br#"{"endpoint":"e","connections":[
    ///   {"connection_id":1,"errors":0},{"connection_id":2,"errors":5},
    ///   {"connection_id":3,"errors":1}]}"#;
    /// let (status, worst) = PoolStatus::from_slice_into(doc, Worst::default)?;
    /// assert!(status.connections.is_empty());
    /// assert_eq!(worst.listed, 3);
    /// assert_eq!(worst.worst.unwrap().connection_id, 2u64);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn from_slice_into<S: ConnectionSink>(
        json: &[u8],
        new_sink: impl FnMut() -> S,
    ) -> Result<(Self, S), serde_json::Error> {
        crate::scan::decode_status_into(json, new_sink)
    }

    /// The listed connection with this id, if any.
    ///
    /// Ids compare by their text, so `7` and `"7"` are the same id.
    ///
    /// ```
    /// # use secure_channel_client::PoolStatus;
    /// let status: PoolStatus = serde_json::from_str(
    ///     r#"{"endpoint":"e","connections":[{"connection_id":"7"}]}"#)?;
    /// assert!(status.connection(7u64).is_some());
    /// assert!(status.connection("8").is_none());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn connection(&self, id: impl Into<ConnectionId>) -> Option<&Connection> {
        let id = id.into();
        self.connections.iter().find(|c| c.connection_id == id)
    }
}

/// One listed connection of the [`PoolStatus`] document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Connection {
    /// The connection's id: restarts at 1 when the pool restarts.
    pub connection_id: ConnectionId,
    /// Last read or write; for a connection never used, its creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Timestamp>,
    /// Reconnects of this connection (key rotations, for the published pool).
    #[serde(default, with = "number")]
    pub reconnects: f64,
    /// Errors counted on this connection.
    #[serde(default, with = "number")]
    pub errors: f64,
    /// p95 latency in milliseconds; `0` means "no samples" on the published pool.
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub p95_latency_ms: Option<f64>,
    /// Health flag, sent by builds that return connections to the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_healthy: Option<bool>,
    /// Peer address, sent by some builds only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
}

/// The health document (`GET /healthz`).
///
/// The published pool answers **HTTP 503 with this same document** whenever
/// its idle list is empty, which happens on a busy pool that is working
/// fine: "unhealthy" is not by itself an outage.
///
/// ```
/// use secure_channel_client::Health;
///
/// let h: Health = serde_json::from_str(
///     r#"{"status":"unhealthy","timestamp":"2025-08-25T11:00:00Z",
///         "pool_healthy":false,"active_connections":0}"#)?;
/// assert_eq!(h.is_healthy(), Some(false));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Health {
    /// `"healthy"` or `"unhealthy"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When the pool answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Whether the pool considers itself healthy (idle list not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_healthy: Option<bool>,
    /// Number of listed (idle) connections.
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub active_connections: Option<f64>,
    /// Error rate, sent by some builds only.
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Average latency in milliseconds, sent by some builds only.
    #[serde(default, with = "opt_number", skip_serializing_if = "Option::is_none")]
    pub avg_latency_ms: Option<f64>,
}

impl Health {
    /// `pool_healthy` when reported, else whether `status` is `"healthy"`
    /// (case-insensitive); `None` when the document says neither.
    ///
    /// ```
    /// # use secure_channel_client::Health;
    /// let h: Health = serde_json::from_str(r#"{"status":"healthy"}"#)?;
    /// assert_eq!(h.is_healthy(), Some(true));
    /// let h: Health = serde_json::from_str("{}")?;
    /// assert_eq!(h.is_healthy(), None);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn is_healthy(&self) -> Option<bool> {
        self.pool_healthy.or_else(|| {
            self.status
                .as_deref()
                .map(|s| s.eq_ignore_ascii_case("healthy"))
        })
    }
}

/// A connection id: the pool sends integers, other builds strings.
///
/// Ids compare, hash and display by their text, so `7` and `"7"` are equal;
/// serializing writes the id back the way it was received (an integer stays
/// an integer).
///
/// ```
/// use secure_channel_client::ConnectionId;
///
/// let a: ConnectionId = serde_json::from_str("7")?;
/// let b: ConnectionId = serde_json::from_str(r#""7""#)?;
/// assert_eq!(a, b);
/// assert_eq!(a.as_str(), "7");
/// assert_eq!(serde_json::to_string(&a)?, "7");
/// assert_eq!(serde_json::to_string(&b)?, r#""7""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct ConnectionId {
    text: String,
    numeric: bool,
}

impl ConnectionId {
    /// An id the pool sent as a JSON integer, from its decimal text.
    pub(crate) fn from_numeric_text(text: String) -> Self {
        Self {
            text,
            numeric: true,
        }
    }

    /// The id as text (an integer id in decimal).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The id as an integer, when it was sent as one or is all digits.
    pub fn as_u64(&self) -> Option<u64> {
        self.text.parse().ok()
    }

    /// Whether the pool sent the id as a JSON number.
    pub fn is_numeric(&self) -> bool {
        self.numeric
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.numeric {
            f.write_str(&self.text)
        } else {
            fmt::Debug::fmt(&self.text, f)
        }
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for ConnectionId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ConnectionId {}

impl std::hash::Hash for ConnectionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialEq<u64> for ConnectionId {
    fn eq(&self, other: &u64) -> bool {
        self.as_u64() == Some(*other)
    }
}

impl PartialEq<str> for ConnectionId {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for ConnectionId {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl From<u64> for ConnectionId {
    fn from(v: u64) -> Self {
        Self {
            text: v.to_string(),
            numeric: true,
        }
    }
}

impl From<i64> for ConnectionId {
    fn from(v: i64) -> Self {
        Self {
            text: v.to_string(),
            numeric: true,
        }
    }
}

impl From<u32> for ConnectionId {
    fn from(v: u32) -> Self {
        u64::from(v).into()
    }
}

impl From<i32> for ConnectionId {
    fn from(v: i32) -> Self {
        i64::from(v).into()
    }
}

impl From<&str> for ConnectionId {
    fn from(v: &str) -> Self {
        Self {
            text: v.to_owned(),
            numeric: false,
        }
    }
}

impl From<String> for ConnectionId {
    fn from(text: String) -> Self {
        Self {
            text,
            numeric: false,
        }
    }
}

impl From<&ConnectionId> for ConnectionId {
    fn from(v: &ConnectionId) -> Self {
        v.clone()
    }
}

impl<'de> Deserialize<'de> for ConnectionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = ConnectionId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or string connection id")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(v.into())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(v.into())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(v.into())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(v.into())
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.numeric {
            if let Ok(v) = self.text.parse::<u64>() {
                return s.serialize_u64(v);
            }
            if let Ok(v) = self.text.parse::<i64>() {
                return s.serialize_i64(v);
            }
        }
        s.serialize_str(&self.text)
    }
}

/// A point in time, to the nanosecond, as the pool reported it.
///
/// Accepted on input: a serde `SystemTime` object
/// (`{"secs_since_epoch":…,"nanos_since_epoch":…}`), an RFC 3339 string
/// (any offset) or a number of Unix seconds (integer or fractional).
/// Written as an RFC 3339 string in UTC.
///
/// *Change from the exporter's model:* the exporter's `Timestamp(f64)` is
/// now an opaque type; use [`Timestamp::as_secs_f64`] where `.0` was used.
///
/// ```
/// use secure_channel_client::Timestamp;
///
/// let a: Timestamp =
///     serde_json::from_str(r#"{"secs_since_epoch":1756119600,"nanos_since_epoch":250000000}"#)?;
/// let b: Timestamp = serde_json::from_str(r#""2025-08-25T13:00:00.25+02:00""#)?;
/// let c: Timestamp = serde_json::from_str("1756119600.25")?;
/// assert_eq!(a, b);
/// assert_eq!(b, c);
/// assert_eq!(serde_json::to_string(&a)?, r#""2025-08-25T11:00:00.25Z""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    /// Earliest time a calendar date is given for: 0001-01-01T00:00:00Z.
    pub const MIN_UNIX_SECONDS: i64 = -62_135_596_800;
    /// Latest: 9999-12-31T23:59:59Z.
    pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

    /// A time from whole seconds and nanoseconds since the Unix epoch
    /// (nanoseconds past one second carry into the seconds, saturating at
    /// the ends of `i64`: never wrapping). The result may be out of range;
    /// see [`in_range`](Self::in_range).
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        Self {
            secs: secs.saturating_add(i64::from(nanos / 1_000_000_000)),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// Whether this is a time between years 1 and 9999
    /// ([`MIN_UNIX_SECONDS`](Self::MIN_UNIX_SECONDS) to
    /// [`MAX_UNIX_SECONDS`](Self::MAX_UNIX_SECONDS)). A pool can send any
    /// number (`i64::MAX` seconds, `1e308`); such a value is kept, so that
    /// "a time was sent but is unusable" differs from "no time", but it
    /// has no calendar date: it serializes as `null`, and callers should
    /// not compute with it.
    ///
    /// ```
    /// use secure_channel_client::Timestamp;
    /// let t: Timestamp = serde_json::from_str(
    ///     r#"{"secs_since_epoch":9223372036854775807,"nanos_since_epoch":4000000000}"#)?;
    /// assert!(!t.in_range());
    /// assert_eq!(serde_json::to_string(&t)?, "null");
    /// let far: Timestamp = serde_json::from_str("1e308")?;
    /// assert!(!far.in_range());
    /// assert!(Timestamp::from_unix(1_764_072_000, 0).in_range());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn in_range(&self) -> bool {
        (Self::MIN_UNIX_SECONDS..=Self::MAX_UNIX_SECONDS).contains(&self.secs)
    }

    /// A number of seconds no calendar holds, kept saturated at the ends
    /// of `i64`.
    fn out_of_range(v: f64) -> Self {
        Self {
            secs: if v < 0.0 { i64::MIN } else { i64::MAX },
            nanos: 0,
        }
    }

    /// A time from fractional Unix seconds; `None` if not finite or out of range.
    pub fn from_secs_f64(v: f64) -> Option<Self> {
        if !v.is_finite() || v.abs() > 1e15 {
            return None;
        }
        let secs = v.floor();
        let mut nanos = ((v - secs) * 1e9).round() as u32;
        let mut secs = secs as i64;
        if nanos >= 1_000_000_000 {
            secs += 1;
            nanos -= 1_000_000_000;
        }
        Some(Self { secs, nanos })
    }

    /// Whole seconds since the Unix epoch (floor).
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds past [`unix_seconds`](Self::unix_seconds).
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Seconds since the Unix epoch as a float (what the exporter's
    /// `Timestamp.0` was).
    pub fn as_secs_f64(&self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }

    /// The time as a [`SystemTime`].
    pub fn to_system_time(&self) -> SystemTime {
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::new(self.secs as u64, self.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs())
                + Duration::from_nanos(u64::from(self.nanos))
        }
    }

    /// The time as an RFC 3339 string in UTC, e.g. `2025-08-25T11:00:00.25Z`;
    /// out of [`in_range`](Self::in_range), `out of range (S s since the
    /// Unix epoch)`.
    pub fn to_rfc3339(&self) -> String {
        let nanos = i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos);
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("out of range ({} s since the Unix epoch)", self.secs))
    }

    /// Parses an RFC 3339 string.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Self {
            secs: t.unix_timestamp(),
            nanos: t.nanosecond(),
        })
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self::from_unix(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (mut secs, mut nanos) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Self { secs, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    /// RFC 3339 in UTC; `null` when out of [`Timestamp::in_range`].
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.in_range() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_none()
        }
    }
}

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
                Ok(i64::try_from(v)
                    .map(|s| Timestamp::from_unix(s, 0))
                    .unwrap_or(Timestamp::out_of_range(1.0)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Timestamp::from_unix(v, 0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.is_nan() {
                    return Err(E::custom("time is not a number"));
                }
                Ok(Timestamp::from_secs_f64(v).unwrap_or(Timestamp::out_of_range(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Timestamp::parse_rfc3339(v)
                    .ok_or_else(|| E::custom(format!("invalid RFC 3339 time {v:?}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut secs: Option<Timestamp> = None;
                let mut nanos: u32 = 0;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        // Any number: what no calendar holds is kept out
                        // of range rather than refusing the document.
                        "secs_since_epoch" => secs = Some(map.next_value::<Timestamp>()?),
                        "nanos_since_epoch" => {
                            nanos = map.next_value::<u64>()?.min(u64::from(u32::MAX)) as u32
                        }
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let secs = secs.ok_or_else(|| de::Error::missing_field("secs_since_epoch"))?;
                Ok(Timestamp::from_unix(secs.secs, nanos))
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

/// Numbers are kept as `f64` (builds send integers or fractions) and written
/// back as integers when they have no fractional part.
mod number {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
            s.serialize_i64(*v as i64)
        } else {
            s.serialize_f64(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        f64::deserialize(d)
    }
}

mod opt_number {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::number::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}
