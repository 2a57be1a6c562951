//! Multi-target mode: `/probe?target=` scrapes another pool, but only one
//! that `--probe.allowed-targets` names. An exporter that fetches any URL it
//! is handed would be a server-side request forgery hole, so the mode is
//! off unless targets are listed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;

use crate::pool::PoolClient;
use crate::scrape::collector::Collector;
use crate::scrape::translate::ConnectionFilter;

/// Most per-target collectors kept (each holds its own counters).
const MAX_TARGETS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeError {
    #[error("missing ?target= parameter")]
    MissingTarget,
    #[error("invalid target {0:?}: {1}")]
    InvalidTarget(String, String),
    #[error("target {0} is not allowed by --probe.allowed-targets")]
    NotAllowed(String),
}

/// One allowed-target pattern: `scheme://host:port`, where `*` in the host
/// or port matches any run of characters within that part.
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
        self.scheme == url.scheme() && glob(&self.host, &host) && glob(&self.port, &port)
    }
}

/// Parses `target=` into a pool base URL: `host:port` means http; no user
/// info, path, query or fragment.
pub fn parse_target(target: &str) -> Result<Url, ProbeError> {
    let invalid = |why: &str| ProbeError::InvalidTarget(target.to_owned(), why.to_owned());
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
    max_connections: usize,
    connections: ConnectionFilter,
    pool_timeout: Duration,
    collectors: Mutex<HashMap<String, Arc<Collector>>>,
}

impl Probe {
    pub fn new(
        allowed: Vec<TargetPattern>,
        template: PoolClient,
        max_connections: usize,
        pool_timeout: Duration,
    ) -> Self {
        Self {
            allowed,
            template,
            max_connections,
            connections: ConnectionFilter::All,
            pool_timeout,
            collectors: Mutex::new(HashMap::new()),
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
            return Err(ProbeError::NotAllowed(url.to_string()));
        }
        let key = url.to_string();
        let mut collectors = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = collectors.get(&key) {
            return Ok(c.clone());
        }
        if collectors.len() >= MAX_TARGETS {
            collectors.clear();
        }
        let client = self
            .template
            .for_base_url(&url)
            .map_err(|e| ProbeError::InvalidTarget(key.clone(), e.to_string()))?;
        let collector = Arc::new(
            Collector::new(client, self.max_connections, self.pool_timeout)
                .with_connection_filter(self.connections),
        );
        collectors.insert(key, collector.clone());
        Ok(collector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
