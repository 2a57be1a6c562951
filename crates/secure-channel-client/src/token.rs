//! The auth token: a fixed value or a file re-read when it changes.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;

use crate::Error;

/// How long a changed token file must stay unchanged before it is used.
///
/// A file rewritten in place (`>` in a shell, most editors' "save") is
/// briefly empty or half written; a token read in between would be sent
/// and refused. Files replaced by a rename (Kubernetes Secrets, `mv`) are
/// complete at once but wait too: one rule, one second.
pub const TOKEN_FILE_SETTLE: Duration = Duration::from_secs(1);

/// A modification time further in the future than this is clock skew
/// (a network file system), not a file being written.
const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// Largest token file read; a token is a header value, not a document.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Where the `X-Auth-Token` comes from; given to the client with
/// [`PoolClientBuilder::token`](crate::PoolClientBuilder::token).
///
/// The token is sent only to the client's base URL, only on
/// `/status/connections` and `/metrics` (never on `/healthz`), and never
/// appears in `Debug` output or error messages. Surrounding whitespace (a
/// trailing newline) is removed; a token that is empty or contains a
/// control character (a TAB, a stray `\r`) is refused, when the client is
/// built and on every re-read of a file.
///
/// A file token is checked before each request with one `stat`
/// (modification time, length and, on Unix, inode), without a background
/// task. A changed file is read once it has stayed unchanged for
/// [`TOKEN_FILE_SETTLE`], and only if it did not change while being read;
/// until then, and whenever the new content is unusable (the file was
/// removed, emptied, or holds a control character), the last good token
/// stays in use and a warning is logged through `tracing` (target
/// `secure_channel_client::token`), once per problem.
///
/// ```
/// use secure_channel_client::Token;
///
/// let t = Token::value("s3cret");
/// assert!(!format!("{t:?}").contains("s3cret"));
/// let f = Token::file("/run/secrets/pool-token");
/// assert!(f.is_some());
/// ```
#[derive(Clone)]
pub struct Token {
    source: Source,
}

#[derive(Clone)]
enum Source {
    None,
    Value(HeaderValue),
    /// A value that cannot be sent: refused when the client is built.
    Invalid(&'static str),
    File(Arc<TokenFile>),
}

impl Default for Token {
    /// No token.
    fn default() -> Self {
        Self::none()
    }
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
        let source = match header_value(&token.into()) {
            Ok(v) => Source::Value(v),
            Err(reason) => Source::Invalid(reason),
        };
        Self { source }
    }

    /// A token read from `path` when the client is built, and again
    /// whenever the file changes; see the type's documentation.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::File(Arc::new(TokenFile {
                path: path.into(),
                state: Mutex::new(FileState::default()),
            })),
        }
    }

    /// Whether a token is configured.
    pub fn is_some(&self) -> bool {
        !matches!(self.source, Source::None)
    }

    /// Reads a file token again now, without waiting for
    /// [`TOKEN_FILE_SETTLE`] and even if its modification time, length
    /// and inode look unchanged (a rewrite within the same second to a
    /// token of the same length keeps all three). On failure the last good
    /// token stays in use and the error says why. Returns whether there
    /// was a file to read. A server calls it on SIGHUP.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the file and
    /// what is wrong with it.
    pub fn reload(&self) -> Result<bool, Error> {
        match &self.source {
            Source::File(file) => file.reload().map(|()| true),
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
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.header().map(|_| ())
    }

    /// The header value to send now.
    pub(crate) fn header(&self) -> Result<Option<HeaderValue>, Error> {
        match &self.source {
            Source::None => Ok(None),
            Source::Value(v) => Ok(Some(v.clone())),
            Source::Invalid(reason) => Err(Error::config(format_args!("the token {reason}"))),
            Source::File(f) => f.current().map(Some),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::None => f.write_str("Token::None"),
            Source::Value(_) | Source::Invalid(_) => f.write_str("Token::Value(<redacted>)"),
            Source::File(file) => write!(f, "Token::File({:?})", file.path),
        }
    }
}

/// The one rule for what may be sent, for values and files alike.
fn header_value(raw: &str) -> Result<HeaderValue, &'static str> {
    let token = raw.trim();
    if token.is_empty() {
        return Err("is empty");
    }
    if token.chars().any(char::is_control) {
        return Err("contains control characters, which cannot go in an HTTP header");
    }
    let mut value = HeaderValue::from_str(token).map_err(|_| "is not a valid HTTP header value")?;
    value.set_sensitive(true);
    Ok(value)
}

struct TokenFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Default)]
struct FileState {
    /// The token in use and the stamp of the file it was read from.
    current: Option<(Stamp, HeaderValue)>,
    /// A stamp whose content was refused: not read again.
    refused: Option<Stamp>,
    /// The problem last logged, so each is logged once.
    logged_problem: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

    /// Whether the file has been left alone long enough to be complete.
    fn settled(&self, now: SystemTime) -> bool {
        match self.modified.map(|m| now.duration_since(m)) {
            None => true,
            Some(Ok(age)) => age >= TOKEN_FILE_SETTLE,
            Some(Err(ahead)) => ahead.duration() > FUTURE_SKEW,
        }
    }
}

enum ReadFailure {
    /// Changed while being read: try again later, nothing to report.
    Changing,
    /// Missing, unreadable or unusable.
    Unusable(Error, String),
}

impl TokenFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Result<HeaderValue, Error> {
        let mut state = self.lock();
        let Some((cached, last_good)) = state.current.clone() else {
            // Never read (the client validates at build, so only a token
            // shared with a client built before the file existed): read
            // it now, settled or not, and fail the call if it is unusable.
            return match self.read() {
                Ok((stamp, value)) => {
                    state.current = Some((stamp, value.clone()));
                    Ok(value)
                }
                Err(ReadFailure::Unusable(e, _)) => Err(e),
                Err(ReadFailure::Changing) => Err(Error::config(format_args!(
                    "token file {} changed while being read",
                    self.path.display()
                ))),
            };
        };
        let stamp = match Stamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(e) => {
                let problem = if e.kind() == std::io::ErrorKind::NotFound {
                    "was removed".to_owned()
                } else {
                    format!("cannot be read ({e})")
                };
                self.report(&mut state, problem);
                return Ok(last_good);
            }
        };
        if stamp == cached || Some(stamp) == state.refused || !stamp.settled(SystemTime::now()) {
            return Ok(last_good);
        }
        match self.read() {
            Ok((stamp, value)) => {
                state.current = Some((stamp, value.clone()));
                state.refused = None;
                if state.logged_problem.take().is_some() {
                    tracing::info!(
                        target: "secure_channel_client::token",
                        path = %self.path.display(),
                        "token file usable again: its new token is in use"
                    );
                }
                Ok(value)
            }
            Err(ReadFailure::Changing) => Ok(last_good),
            Err(ReadFailure::Unusable(_, problem)) => {
                state.refused = Some(stamp);
                self.report(&mut state, problem);
                Ok(last_good)
            }
        }
    }

    /// Logs a problem with the file once (until it changes or clears).
    fn report(&self, state: &mut FileState, problem: String) {
        if state.logged_problem.as_deref() != Some(problem.as_str()) {
            tracing::warn!(
                target: "secure_channel_client::token",
                path = %self.path.display(),
                "token file {problem}: keeping the last token read from it"
            );
            state.logged_problem = Some(problem);
        }
    }

    fn reload(&self) -> Result<(), Error> {
        match self.read() {
            Ok((stamp, value)) => {
                let mut state = self.lock();
                state.current = Some((stamp, value));
                state.refused = None;
                state.logged_problem = None;
                Ok(())
            }
            Err(ReadFailure::Unusable(e, _)) => Err(e),
            Err(ReadFailure::Changing) => Err(Error::config(format_args!(
                "token file {} changed while being read; try again",
                self.path.display()
            ))),
        }
    }

    /// Reads and checks the file, with the stamp it had; a file whose
    /// stamp differs after the read was being written meanwhile.
    fn read(&self) -> Result<(Stamp, HeaderValue), ReadFailure> {
        let path = self.path.display();
        let io = |e: std::io::Error| {
            let problem = if e.kind() == std::io::ErrorKind::NotFound {
                "was removed".to_owned()
            } else {
                format!("cannot be read ({e})")
            };
            ReadFailure::Unusable(
                Error::config_caused(format_args!("cannot read token file {path}"), e),
                problem,
            )
        };
        let before = Stamp::of(&self.path).map_err(io)?;
        let mut bytes = Vec::new();
        std::fs::File::open(&self.path)
            .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(io)?;
        let after = Stamp::of(&self.path).map_err(io)?;
        if before != after {
            return Err(ReadFailure::Changing);
        }
        let unusable = |reason: &str| {
            ReadFailure::Unusable(
                Error::config(format_args!("token file {path} is unusable: {reason}")),
                format!("is unusable ({reason})"),
            )
        };
        if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(unusable("larger than 64 KiB"));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| unusable("not UTF-8 text"))?;
        let value = header_value(text).map_err(|reason| match reason {
            "is empty" => unusable("the file is empty"),
            other => unusable(&format!("the token {other}")),
        })?;
        Ok((after, value))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_start_up_rule() {
        assert!(header_value(" s3cret\n").is_ok());
        assert!(header_value("").is_err());
        assert!(header_value("a\tb").is_err());
        assert!(header_value("a\u{7f}b").is_err());
        assert!(Token::value("a\tb").validate().is_err());
    }

    #[test]
    fn settle_rule() {
        let now = SystemTime::now();
        let stamp = |m: SystemTime| Stamp {
            modified: Some(m),
            len: 1,
            inode: 1,
        };
        assert!(!stamp(now).settled(now));
        assert!(stamp(now - TOKEN_FILE_SETTLE).settled(now));
        assert!(!stamp(now + Duration::from_secs(5)).settled(now));
        assert!(stamp(now + Duration::from_secs(3600)).settled(now));
    }
}
