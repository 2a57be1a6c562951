//! Structured logs to stderr, as logfmt (the Prometheus ecosystem's default)
//! or JSON.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            _ => Err("expected error, warn, info or debug".into()),
        }
    }
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "logfmt" => Ok(Self::Logfmt),
            "json" => Ok(Self::Json),
            _ => Err("expected logfmt or json".into()),
        }
    }
}

/// Installs the global subscriber. Only our own crate logs at the chosen
/// level; dependencies (hyper, reqwest, rustls) are held to warnings.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::WARN.min(level.into()))
        .with_target("secure_channel_exporter", level)
        .with_target("secure_channel_sim", level);
    let _ = tracing_subscriber::registry()
        .with(PromLayer { format }.with_filter(filter))
        .try_init();
}

/// Writes each event as one line the way Prometheus' own components
/// (promslog) do: `time`, `level`, `source`, `msg`, then the fields, flat,
/// as logfmt or as a JSON object.
struct PromLayer {
    format: LogFormat,
}

impl<S: tracing::Subscriber> Layer<S> for PromLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let source = match (meta.file(), meta.line()) {
            (Some(file), Some(line)) => {
                let file = file.rsplit('/').next().unwrap_or(file);
                format!("{file}:{line}")
            }
            _ => meta.target().to_owned(),
        };
        let record = Record {
            time: now_rfc3339(),
            level: level_name(*meta.level()),
            source,
            msg: fields.message,
            fields: fields.others,
        };
        let mut line = match self.format {
            LogFormat::Logfmt => record.logfmt(),
            LogFormat::Json => record.json(),
        };
        line.push('\n');
        // One write per line, so that lines from several threads never
        // interleave.
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }
}

fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "ERROR",
        tracing::Level::WARN => "WARN",
        tracing::Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let millis = now.millisecond();
    now.replace_millisecond(millis)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// A field's value: text, or a number or boolean JSON keeps unquoted.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Raw(serde_json::Value),
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, Value)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, Value::Text(value.to_owned()));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.put(field, Value::Raw(value.into()));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.put(field, Value::Raw(value.into()));
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.put(field, Value::Raw(value.into()));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.put(field, Value::Raw(value.into()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, field: &tracing::field::Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::Text(t) => t,
                Value::Raw(v) => v.to_string(),
            };
        } else {
            self.others.push((field.name(), value));
        }
    }
}

/// One log line before it is written.
struct Record {
    time: String,
    level: &'static str,
    source: String,
    msg: String,
    fields: Vec<(&'static str, Value)>,
}

impl Record {
    fn logfmt(&self) -> String {
        let mut out = String::with_capacity(128);
        let mut pair = |key: &str, value: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            logfmt_value(&mut out, value);
        };
        pair("time", &self.time);
        pair("level", self.level);
        pair("source", &self.source);
        pair("msg", &self.msg);
        for (key, value) in &self.fields {
            match value {
                Value::Text(t) => pair(key, t),
                Value::Raw(v) => pair(key, &v.to_string()),
            }
        }
        out
    }

    fn json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("time".into(), self.time.clone().into());
        map.insert("level".into(), self.level.into());
        map.insert("source".into(), self.source.clone().into());
        map.insert("msg".into(), self.msg.clone().into());
        for (key, value) in &self.fields {
            let value = match value {
                Value::Text(t) => serde_json::Value::String(t.clone()),
                Value::Raw(v) => v.clone(),
            };
            // The four keys above are the line's own: a field that would
            // overwrite one keeps its value under a prefixed key.
            let key = if map.contains_key(*key) {
                format!("field_{key}")
            } else {
                (*key).to_owned()
            };
            map.insert(key, value);
        }
        serde_json::Value::Object(map).to_string()
    }
}

/// A logfmt value, quoted (with `\`, `"` and control characters escaped)
/// when it is empty or holds a space, `=` or `"`.
fn logfmt_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c > ' ' && c != '=' && c != '"' && c != '\\' && !c.is_control());
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = fmt::Write::write_fmt(out, format_args!("\\u{{{:04x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How long identical warnings are summarised rather than repeated.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Longest text from outside (an error body, a request value) put in a
/// log line.
pub const MAX_LOGGED_VALUE: usize = 256;

/// Keeps a warning that repeats (a pool that fails every scrape, a client
/// sending the same bad request) from flooding the log: the first one is
/// logged, the repeats within [`REPEAT_WINDOW`] are only counted, and the
/// first one after it says how many there were.
pub struct Throttle {
    window: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    logged_at: Instant,
    suppressed: u64,
}

/// Whether to log now, and what was held back since the last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats {
    pub suppressed: u64,
    pub over: Duration,
}

impl fmt::Display for Repeats {
    /// Empty for a first occurrence, else ` (repeated N times in the last M s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suppressed == 0 {
            return Ok(());
        }
        write!(
            f,
            " (repeated {} times in the last {} s)",
            self.suppressed,
            self.over.as_secs()
        )
    }
}

/// Most distinct warnings tracked; past it the table starts over.
const MAX_KEYS: usize = 1024;

impl Throttle {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some` when the warning identified by `key` should be logged now.
    pub fn admit(&self, key: &str) -> Option<Repeats> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(entry) = seen.get_mut(key) {
            let over = now.duration_since(entry.logged_at);
            if over < self.window {
                entry.suppressed += 1;
                return None;
            }
            let repeats = Repeats {
                suppressed: entry.suppressed,
                over,
            };
            *entry = Seen {
                logged_at: now,
                suppressed: 0,
            };
            return Some(repeats);
        }
        if seen.len() >= MAX_KEYS {
            seen.clear();
        }
        seen.insert(
            key.to_owned(),
            Seen {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(Repeats {
            suppressed: 0,
            over: Duration::ZERO,
        })
    }
}

/// The process-wide throttle for warnings.
pub fn throttle() -> &'static Throttle {
    static THROTTLE: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(REPEAT_WINDOW));
    &THROTTLE
}

/// `text` cut to [`MAX_LOGGED_VALUE`] bytes (at a character boundary),
/// with the full length noted.
pub fn truncated(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_LOGGED_VALUE {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_LOGGED_VALUE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…({} bytes)", &text[..end], text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(msg: &str, fields: Vec<(&'static str, Value)>) -> Record {
        Record {
            time: "2026-11-27T04:09:34.120Z".into(),
            level: "WARN",
            source: "collector.rs:42".into(),
            msg: msg.into(),
            fields,
        }
    }

    #[test]
    fn logfmt_lines_have_promslog_keys_and_quote_what_needs_it() {
        let line = record(
            "pool fetch failed",
            vec![
                ("document", Value::Text("status".into())),
                ("url", Value::Text("http://pool:9090/healthz".into())),
                ("error", Value::Text("said \"no\"\nthen=left".into())),
                ("took", Value::Raw(1.5.into())),
                ("empty", Value::Text(String::new())),
            ],
        )
        .logfmt();
        assert_eq!(
            line,
            "time=2026-11-27T04:09:34.120Z level=WARN source=collector.rs:42 msg=\"pool fetch failed\" \
             document=status url=http://pool:9090/healthz error=\"said \\\"no\\\"\\nthen=left\" took=1.5 empty=\"\""
        );
    }

    #[test]
    fn json_lines_are_flat_with_typed_values() {
        let line = record(
            "listening",
            vec![
                ("port", Value::Raw(10090.into())),
                ("tls", Value::Raw(false.into())),
            ],
        )
        .json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "listening");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["time"], "2026-11-27T04:09:34.120Z");
        assert_eq!(v["port"], 10090);
        assert_eq!(v["tls"], false);
    }

    #[test]
    fn the_clock_is_rfc3339_utc_with_milliseconds() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-11-27T04:09:34.120Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn repeats_are_counted_then_summarised() {
        // A window long enough that a busy machine cannot stretch the
        // quick calls below past it.
        let t = Throttle::new(Duration::from_secs(2));
        assert_eq!(t.admit("a").unwrap().to_string(), "");
        for _ in 0..5 {
            assert!(t.admit("a").is_none());
        }
        // Another warning is not held back by the first.
        assert!(t.admit("b").is_some());
        std::thread::sleep(Duration::from_millis(2100));
        let r = t.admit("a").unwrap();
        assert_eq!(r.suppressed, 5);
        assert!(r.over >= Duration::from_secs(2));
        let said = r.to_string();
        assert!(
            said.starts_with(" (repeated 5 times in the last ") && said.ends_with(" s)"),
            "{said}"
        );
        assert!(t.admit("a").is_none());
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(1000);
        let cut = truncated(&long);
        assert!(cut.len() < MAX_LOGGED_VALUE + 32);
        assert!(cut.ends_with("(2000 bytes)"));
        assert_eq!(truncated("short"), "short");
    }
}
