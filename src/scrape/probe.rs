//! Multi-target mode: `/probe?target=` scrapes another pool, but only one
//! that `--probe.allowed-targets` names. An exporter that fetches any URL it
//! is handed would be a server-side request forgery hole, so the mode is
//! off unless targets are listed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::Url;

use secure_channel_client::Token;

use crate::pool::{PoolClient, PoolSettings, Redactor};
use crate::scrape::collector::Collector;
use crate::scrape::translate::ConnectionFilter;

/// Most per-target collectors kept (each holds its own counters). Past it
/// the least recently probed target's collector is dropped, so the targets
/// Prometheus keeps probing keep their counters however many others pass.
pub const MAX_TARGETS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeError {
    #[error("missing ?target= parameter")]
    MissingTarget,
    #[error("invalid target {0:?}: {1}")]
    InvalidTarget(String, String),
    #[error("target {0} is not allowed by --probe.allowed-targets")]
    NotAllowed(String),
}

/// Longest piece of a client-supplied target repeated in logs and answers:
/// a refused target of 60 KB must not cost 60 KB of log per request.
pub const MAX_TARGET_SHOWN: usize = 128;

/// `target` cut to [`MAX_TARGET_SHOWN`] bytes, with a note of the length.
pub fn shown(target: &str) -> String {
    if target.len() <= MAX_TARGET_SHOWN {
        return target.to_owned();
    }
    let mut end = MAX_TARGET_SHOWN;
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &target[..end], target.len())
}

/// One allowed-target pattern: `scheme://host:port`, where `*` matches
/// any run of characters within one label of the host (between dots) or
/// within the port. So `http://10.0.0.*:9090` admits `10.0.0.7` but not
/// `10.0.0.1.attacker.example`, and `*.pools.internal` admits
/// `a.pools.internal` but not `a.b.pools.internal`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetPattern {
    scheme: String,
    host: String,
    port: String,
}

impl std::str::FromStr for TargetPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://").unwrap_or(("http", s));
        if !matches!(scheme, "http" | "https") {
            return Err(format!("{s:?}: scheme must be http or https"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{s:?}: expected scheme://host:port, without path or user"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, p.to_owned()),
            _ => (rest, default_port(scheme).to_string()),
        };
        if host.is_empty() || port.is_empty() {
            return Err(format!("{s:?}: expected scheme://host:port"));
        }
        check_glob_host(s, host)?;
        if port != "*" && port.parse::<u16>().is_err() {
            return Err(format!("{s:?}: port must be a number or *"));
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// Refuses host patterns that are not host names, addresses and `*`: a
/// pattern written as a regular expression (`10\.0\..*`, `(a|b).pool`,
/// `pool-[0-9]+`) would otherwise be read as a glob meaning something else.
fn check_glob_host(whole: &str, host: &str) -> Result<(), String> {
    const REGEX_LIKE: &[char] = &['\\', '^', '$', '(', ')', '|', '+', '?', '{', '}'];
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let inner = if bracketed {
        &host[1..host.len() - 1]
    } else {
        host
    };
    let bad = inner.chars().find(|&c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '.' | '-' | '_' | '*')
            || (bracketed && c == ':'))
    });
    let looks_like_regex =
        inner.contains(REGEX_LIKE) || inner.contains(['[', ']']) || inner.contains("**");
    match bad {
        Some(c) if looks_like_regex || REGEX_LIKE.contains(&c) => Err(format!(
            "{whole:?}: looks like a regular expression ({c:?}); patterns are globs: \
             * matches within one host label or the port, e.g. http://10.0.0.*:9090 or https://*.pools.internal:*"
        )),
        Some(c) => Err(format!("{whole:?}: {c:?} cannot appear in a host name")),
        None if looks_like_regex => Err(format!(
            "{whole:?}: looks like a regular expression; patterns are globs: \
             * matches within one host label or the port"
        )),
        None => Ok(()),
    }
}

/// Matches a host pattern label by label: as many labels as the pattern,
/// each matched by [`glob`] (a `*` never crosses a dot).
fn glob_host(pattern: &str, host: &str) -> bool {
    let pattern_labels: Vec<&str> = pattern.split('.').collect();
    let host_labels: Vec<&str> = host.split('.').collect();
    pattern_labels.len() == host_labels.len()
        && pattern_labels
            .iter()
            .zip(&host_labels)
            .all(|(p, h)| glob(p, h))
}

/// `*` matches any (possibly empty) run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

impl TargetPattern {
    fn matches(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0).to_string();
        self.scheme == url.scheme() && glob_host(&self.host, &host) && glob(&self.port, &port)
    }
}

/// Parses `target=` into a pool base URL: `host:port` means http; no user
/// info, path, query or fragment.
pub fn parse_target(target: &str) -> Result<Url, ProbeError> {
    let invalid = |why: &str| ProbeError::InvalidTarget(shown(target), shown(why));
    let with_scheme = if target.contains("://") {
        target.to_owned()
    } else {
        format!("http://{target}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid("expected http(s)://host:port"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("user info is not accepted"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "expected http(s)://host:port without path or query",
        ));
    }
    Ok(url)
}

pub struct Probe {
    allowed: Vec<TargetPattern>,
    template: PoolClient,
    settings: PoolSettings,
    connections: ConnectionFilter,
    collectors: Mutex<Targets>,
}

/// Per-target collectors with the order of their last use.
#[derive(Default)]
struct Targets {
    by_url: HashMap<String, (Arc<Collector>, u64)>,
    /// Incremented at each use: the entry with the smallest stamp is the
    /// least recently used.
    clock: u64,
}

impl Probe {
    /// Probed pools are read with the settings of `--pool.url`'s
    /// collector (`settings`), each through an observer of its own.
    pub fn new(allowed: Vec<TargetPattern>, template: PoolClient, settings: PoolSettings) -> Self {
        Self {
            allowed,
            template,
            settings,
            connections: ConnectionFilter::All,
            collectors: Mutex::new(Targets::default()),
        }
    }

    /// Which connections of probed pools get series (`--collector.connections`).
    pub fn with_connection_filter(mut self, filter: ConnectionFilter) -> Self {
        self.connections = filter;
        self
    }

    /// The collector for an allowed target; its counters live across probes.
    pub fn collector_for(&self, target: Option<&str>) -> Result<Arc<Collector>, ProbeError> {
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or(ProbeError::MissingTarget)?;
        let url = parse_target(target)?;
        if !self.allowed.iter().any(|p| p.matches(&url)) {
            return Err(ProbeError::NotAllowed(shown(url.as_str())));
        }
        let key = url.to_string();
        let mut targets = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
        targets.clock += 1;
        let now = targets.clock;
        if let Some((c, used)) = targets.by_url.get_mut(&key) {
            *used = now;
            return Ok(c.clone());
        }
        if targets.by_url.len() >= MAX_TARGETS {
            // A linear scan of at most MAX_TARGETS entries, only when a new
            // target arrives at a full table.
            let oldest = targets
                .by_url
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(url, _)| url.clone());
            if let Some(url) = oldest {
                targets.by_url.remove(&url);
            }
        }
        let client = self
            .template
            .for_base_url(&url)
            .map_err(|e| ProbeError::InvalidTarget(key.clone(), e.to_string()))?;
        let collector = Arc::new(
            // The token of `--pool.url` never goes to a probed pool, so the
            // target's own URL password is the only secret it could echo.
            Collector::new(client, self.settings, Redactor::new(Token::none(), &url))
                .with_connection_filter(self.connections),
        );
        targets.by_url.insert(key, (collector.clone(), now));
        Ok(collector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(s: &str) -> TargetPattern {
        s.parse().unwrap()
    }

    fn allowed(pattern: &str, target: &str) -> bool {
        p(pattern).matches(&parse_target(target).unwrap())
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        assert!(allowed("http://10.0.0.*:9090", "10.0.0.7:9090"));
        assert!(allowed("http://10.0.0.*:9090", "http://10.0.0.7:9090/"));
        assert!(!allowed("http://10.0.0.*:9090", "10.0.1.7:9090"));
        assert!(!allowed("http://10.0.0.*:9090", "10.0.0.7:9091"));
        assert!(!allowed("http://10.0.0.*:9090", "https://10.0.0.7:9090"));
        assert!(allowed(
            "https://*.pools.internal:*",
            "https://a.pools.internal:9443"
        ));
        assert!(!allowed(
            "https://*.pools.internal:*",
            "https://pools.internal.evil.com:9443"
        ));
        assert!(allowed("pool-a:9090", "http://POOL-A:9090"));
        assert!(allowed("https://pool", "https://pool"));
        assert!(!allowed(
            "http://pool:9090",
            "http://pool:90901".replace("90901", "9091").as_str()
        ));
    }

    #[test]
    fn a_star_stays_within_one_host_label() {
        assert!(allowed("http://127.0.0.*:9090", "127.0.0.1:9090"));
        assert!(!allowed(
            "http://127.0.0.*:9090",
            "127.0.0.1.attacker.example:9090"
        ));
        assert!(!allowed(
            "https://*.pools.internal:*",
            "https://a.b.pools.internal:9443"
        ));
        assert!(allowed("http://pool-*:*", "http://pool-7:1"));
        assert!(!allowed("http://pool-*:*", "http://pool-7.evil:1"));
    }

    #[test]
    fn regex_looking_patterns_are_refused_with_a_clear_message() {
        for s in [
            r"http://10\.0\.0\.\d+:9090",
            "http://(a|b).pools:1",
            "http://pool-[0-9]+:1",
            "http://^pool$:1",
            "http://pool**:1",
        ] {
            let e = s.parse::<TargetPattern>().unwrap_err();
            assert!(e.contains("regular expression"), "{s}: {e}");
        }
        assert!("http://[::1]:9090".parse::<TargetPattern>().is_ok());
        assert!("http://10.0.*.*:*".parse::<TargetPattern>().is_ok());
    }

    #[test]
    fn long_targets_are_cut_in_errors() {
        let long = format!("http://{}:1", "a".repeat(60_000));
        let Err(e) = Probe::new(
            vec![p("http://x:1")],
            dummy_client(),
            PoolSettings::new(10, Duration::from_secs(1)),
        )
        .collector_for(Some(&long)) else {
            panic!("a 60 KB target was admitted");
        };
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }

    fn dummy_client() -> PoolClient {
        let config = crate::pool::PoolClientConfig {
            base_url: "http://127.0.0.1:1/".parse().unwrap(),
            token: secure_channel_client::Token::none(),
            connect_timeout: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            ca_file: None,
            client_cert: None,
            tls_server_name: None,
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        PoolClient::new(&config).unwrap()
    }

    #[test]
    fn hostile_targets_are_refused() {
        for t in [
            "http://user:pw@pool:9090",
            "http://pool:9090/admin",
            "http://pool:9090/?x=1",
            "file:///etc/passwd",
            "gopher://pool:70",
            "http://",
        ] {
            assert!(parse_target(t).is_err(), "{t}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for s in [
            "ftp://x:1",
            "http://x:port",
            "http://x:1/path",
            "http://u@x:1",
        ] {
            assert!(s.parse::<TargetPattern>().is_err(), "{s}");
        }
    }
}
