//! The auth token: a fixed value or a file re-read when it changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use reqwest::header::HeaderValue;

use crate::error::ConfigError;

/// Where the `X-Auth-Token` comes from.
///
/// The token is sent only to the client's base URL, only on
/// `/status/connections` and `/metrics` (never on `/healthz`), and never
/// appears in `Debug` output or error messages.
///
/// A file token is re-read when the file changes: before each request the
/// client compares the file's modification time and length (and inode on
/// Unix) with what it read last, one `stat` call, with no background task.
/// Surrounding whitespace (a trailing newline) is removed.
///
/// ```
/// use secure_channel_client::Token;
///
/// let t = Token::value("s3cret");
/// assert!(!format!("{t:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct Token {
    source: Source,
}

#[derive(Clone)]
enum Source {
    None,
    Value(HeaderValue),
    /// A value that is not a valid header: refused when the client is built.
    Invalid,
    File(Arc<TokenFile>),
}

impl Token {
    /// No token: no `X-Auth-Token` header.
    pub fn none() -> Self {
        Self {
            source: Source::None,
        }
    }

    /// A fixed token.
    pub fn value(token: impl Into<String>) -> Self {
        let token = token.into();
        let source = match HeaderValue::from_str(token.trim()) {
            Ok(mut v) if !token.trim().is_empty() => {
                v.set_sensitive(true);
                Source::Value(v)
            }
            _ => Source::Invalid,
        };
        Self { source }
    }

    /// A token read from `path`, and read again whenever the file changes
    /// (its modification time, length or inode). While a rewrite leaves it
    /// missing, empty or unreadable, the last token read from it is kept;
    /// a file that was never readable fails each call with
    /// [`Error::Config`](crate::Error::Config).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::File(Arc::new(TokenFile {
                path: path.into(),
                cache: Mutex::new(None),
            })),
        }
    }

    /// Whether a token is configured.
    pub fn is_some(&self) -> bool {
        !matches!(self.source, Source::None)
    }

    /// Reads a file token again now, even if its modification time,
    /// length and inode look unchanged (a rewrite within the same second
    /// to a token of the same length keeps all three). On failure the
    /// last good token stays in use and the error says why. Returns
    /// whether there was a file to read. A server calls it on SIGHUP.
    pub fn reload(&self) -> Result<bool, crate::Error> {
        match &self.source {
            Source::File(file) => file.reload().map(|()| true).map_err(Into::into),
            _ => Ok(false),
        }
    }

    /// `text` with every occurrence of the token now in use replaced by
    /// `<redacted>`; borrowed when it holds none. For text a pool sends
    /// back (a 401 body that echoes the token it received) before it is
    /// shown, logged or republished: the token itself never leaves the
    /// crate.
    ///
    /// ```
    /// let token = secure_channel_client::Token::value("s3cret");
    /// assert_eq!(token.scrub(b"bad token s3cret"), &b"bad token <redacted>"[..]);
    /// assert_eq!(token.scrub(b"no echo"), &b"no echo"[..]);
    /// ```
    pub fn scrub<'a>(&self, text: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self.header() {
            Ok(Some(value)) => scrub_secret(text, value.as_bytes()),
            _ => std::borrow::Cow::Borrowed(text),
        }
    }

    /// Checks the token can be used (reads the file once).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match &self.source {
            Source::Invalid => Err(ConfigError::Invalid(
                "the token is empty or not a valid HTTP header value".into(),
            )),
            _ => self.header().map(|_| ()),
        }
    }

    /// The header value to send now.
    pub(crate) fn header(&self) -> Result<Option<HeaderValue>, ConfigError> {
        match &self.source {
            Source::None => Ok(None),
            Source::Value(v) => Ok(Some(v.clone())),
            Source::Invalid => Err(ConfigError::Invalid(
                "the token is empty or not a valid HTTP header value".into(),
            )),
            Source::File(f) => f.current().map(Some),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::None => f.write_str("Token::None"),
            Source::Value(_) | Source::Invalid => f.write_str("Token::Value(<redacted>)"),
            Source::File(file) => write!(f, "Token::File({:?})", file.path),
        }
    }
}

struct TokenFile {
    path: PathBuf,
    cache: Mutex<Option<(Stamp, HeaderValue)>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

impl TokenFile {
    fn current(&self) -> Result<HeaderValue, ConfigError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = Stamp::of(&self.path).ok();
        if let (Some(stamp), Some((cached, value))) = (stamp, cache.as_ref()) {
            if stamp == *cached {
                return Ok(value.clone());
            }
        }
        match (self.read(), cache.as_ref()) {
            (Ok((stamp, value)), _) => {
                *cache = Some((stamp, value.clone()));
                Ok(value)
            }
            // Mid-rotation (a Kubernetes Secret swaps a symlink; an editor
            // writes a new file), the file can be briefly missing, empty or
            // half written: keep the token that last worked rather than
            // fail every request. The next change of the file is read again.
            (Err(_), Some((_, last_good))) => Ok(last_good.clone()),
            (Err(e), None) => Err(e),
        }
    }

    fn reload(&self) -> Result<(), ConfigError> {
        let (stamp, value) = self.read()?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((stamp, value));
        Ok(())
    }

    /// Reads and checks the file, with the stamp it had.
    fn read(&self) -> Result<(Stamp, HeaderValue), ConfigError> {
        let file_error = |e: std::io::Error| ConfigError::File {
            what: "token",
            path: self.path.display().to_string(),
            detail: e.to_string(),
        };
        let stamp = Stamp::of(&self.path).map_err(file_error)?;
        let bytes = std::fs::read(&self.path).map_err(file_error)?;
        let bad = |detail: &str| ConfigError::BadFile {
            what: "token",
            path: self.path.display().to_string(),
            detail: detail.to_owned(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8 text"))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(bad("the file is empty"));
        }
        let mut value =
            HeaderValue::from_str(text).map_err(|_| bad("not a valid HTTP header value"))?;
        value.set_sensitive(true);
        Ok((stamp, value))
    }
}

/// `text` with every occurrence of `secret` replaced by `<redacted>`;
/// borrowed when there is none. [`Token::scrub`] for other secrets (a
/// password in a URL).
///
/// ```
/// assert_eq!(secure_channel_client::scrub_secret(b"a pw b", b"pw"), &b"a <redacted> b"[..]);
/// ```
pub fn scrub_secret<'a>(text: &'a [u8], secret: &[u8]) -> std::borrow::Cow<'a, [u8]> {
    if secret.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let finder = memchr::memmem::Finder::new(secret);
    let mut hits = finder.find_iter(text).peekable();
    if hits.peek().is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut from = 0;
    for at in hits {
        // Overlapping echoes (a token inside itself) were covered already.
        if at < from {
            continue;
        }
        out.extend_from_slice(&text[from..at]);
        out.extend_from_slice(b"<redacted>");
        from = at + secret.len();
    }
    out.extend_from_slice(&text[from..]);
    std::borrow::Cow::Owned(out)
}
