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
    let layer = match format {
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_span_name(false)
            .with_span_path(false)
            .with_target(false)
            .layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
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

    #[test]
    fn repeats_are_counted_then_summarised() {
        let t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.admit("a").unwrap().to_string(), "");
        for _ in 0..5 {
            assert!(t.admit("a").is_none());
        }
        // Another warning is not held back by the first.
        assert!(t.admit("b").is_some());
        std::thread::sleep(Duration::from_millis(250));
        let r = t.admit("a").unwrap();
        assert_eq!(r.suppressed, 5);
        assert!(r
            .to_string()
            .starts_with(" (repeated 5 times in the last 0 s"));
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
