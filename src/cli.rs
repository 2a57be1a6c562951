//! Command line: argh flags, the dotted-flag spelling, environment
//! fallbacks, and validation into a [`Config`].
//!
//! Users type Prometheus-style dotted flags (`--web.listen-address`); argh
//! only knows dashes, so flag names are rewritten before parsing and help
//! text is rewritten back.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use reqwest::Url;

use crate::logging::{LogFormat, LogLevel};
use crate::pool::PoolClientConfig;
use crate::scrape::probe::TargetPattern;
use secure_channel_client::Token;

pub const ENV_POOL_URL: &str = "SECURE_CHANNEL_POOL_URL";
pub const ENV_POOL_TOKEN: &str = "SECURE_CHANNEL_POOL_TOKEN";
pub const DEFAULT_POOL_URL: &str = "http://127.0.0.1:9090";
pub const DEFAULT_LISTEN: &str = ":10090";

/// Prometheus exporter for a SecureChannelPool: each scrape of the telemetry
/// path fetches the pool's status, health and native metrics and answers with
/// per-connection series. Flags may be written --like.this or --like-this.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// base URL of the pool API (default http://127.0.0.1:9090, or env SECURE_CHANNEL_POOL_URL)
    #[argh(option)]
    pub pool_url: Option<String>,
    /// file holding the pool's X-Auth-Token; without it the token comes from env SECURE_CHANNEL_POOL_TOKEN, if set
    #[argh(option)]
    pub pool_auth_token_file: Option<String>,
    /// time budget for the pool fetches of one scrape, e.g. 5s or 800ms (default 5s)
    #[argh(option)]
    pub pool_timeout: Option<String>,
    /// PEM bundle of CA certificates trusted for an https pool, instead of the system roots
    #[argh(option)]
    pub pool_ca_file: Option<String>,
    /// client certificate (PEM) presented to an https pool for mutual TLS; needs --pool.client-key-file
    #[argh(option)]
    pub pool_client_cert_file: Option<String>,
    /// private key (PEM) of --pool.client-cert-file
    #[argh(option)]
    pub pool_client_key_file: Option<String>,
    /// name to verify the pool's certificate against instead of the host in --pool.url
    #[argh(option)]
    pub pool_tls_server_name: Option<String>,
    /// largest pool response body accepted, e.g. 16MiB or 500KB (default 16MiB)
    #[argh(option)]
    pub pool_max_body_size: Option<String>,
    /// address to listen on, host:port or :port for all interfaces (default :10090)
    #[argh(option)]
    pub web_listen_address: Option<String>,
    /// path under which metrics are served (default /metrics)
    #[argh(option)]
    pub web_telemetry_path: Option<String>,
    /// taken off Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time to answer (default 0.5s)
    #[argh(option)]
    pub web_scrape_timeout_offset: Option<String>,
    /// exporter-toolkit web config file (TLS, client certificates, basic auth); re-read when it changes
    #[argh(option)]
    pub web_config_file: Option<String>,
    /// most client connections served at once; more wait in the listen queue (default 64)
    #[argh(option)]
    pub web_max_connections: Option<String>,
    /// comma-separated scheme://host:port patterns (* wildcards) that /probe?target= may scrape; /probe is off without it
    #[argh(option)]
    pub probe_allowed_targets: Option<String>,
    /// most connections exported per scrape; beyond it the worst are kept (default 1000)
    #[argh(option)]
    pub collector_max_connections: Option<String>,
    /// which listed connections get per-connection series: all, used (an error, reconnect or latency sample) or none (default all)
    #[argh(option)]
    pub collector_connections: Option<String>,
    /// log level: error, warn, info or debug (default info)
    #[argh(option)]
    pub log_level: Option<String>,
    /// log format: logfmt or json (default logfmt)
    #[argh(option)]
    pub log_format: Option<String>,
    /// start a built-in simulated pool on a loopback port and export it, to try the exporter with nothing else running
    #[argh(switch)]
    pub demo: bool,
    /// which pool build --demo simulates: published (lists only idle connections, as the pool built from its public source) or returning (default published)
    #[argh(option)]
    pub demo_model: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
}

/// The dotted names users type, in the order of [`Args`].
pub const DOTTED_FLAGS: &[&str] = &[
    "--pool.url",
    "--pool.auth-token-file",
    "--pool.timeout",
    "--pool.ca-file",
    "--pool.client-cert-file",
    "--pool.client-key-file",
    "--pool.tls-server-name",
    "--pool.max-body-size",
    "--web.listen-address",
    "--web.telemetry-path",
    "--web.scrape-timeout-offset",
    "--web.config.file",
    "--web.max-connections",
    "--probe.allowed-targets",
    "--collector.max-connections",
    "--collector.connections",
    "--log.level",
    "--log.format",
    "--demo.model",
];

/// A flag value that cannot be used; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

fn flag_error(flag: &'static str, value: &str, reason: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub pool: PoolClientConfig,
    pub pool_timeout: Duration,
    pub listen_address: String,
    pub telemetry_path: String,
    pub scrape_timeout_offset: Duration,
    pub web_config_file: Option<PathBuf>,
    pub web_max_connections: usize,
    pub probe_allowed_targets: Vec<TargetPattern>,
    pub max_connections: usize,
    pub connections: crate::scrape::translate::ConnectionFilter,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Run against a built-in simulated pool of this model.
    pub demo: Option<crate::sim::Model>,
}

/// Rewrites `--a.b` to `--a-b` and splits `--flag=value` (which argh does
/// not accept) into two arguments. Stops at a bare `--`.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest_literal = false;
    for arg in args {
        if rest_literal || !arg.starts_with("--") {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            rest_literal = true;
            out.push(arg);
            continue;
        }
        match arg.split_once('=') {
            Some((name, value)) => {
                out.push(name.replace('.', "-"));
                out.push(value.to_owned());
            }
            None => out.push(arg.replace('.', "-")),
        }
    }
    out
}

/// Shows help with the dotted flag names users are told to type.
pub fn dotted_help(help: &str) -> String {
    let mut text = help.to_owned();
    for dotted in DOTTED_FLAGS {
        let dashed = dotted.replace('.', "-");
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(&dashed) {
            let after = &rest[at + dashed.len()..];
            // Only whole flag names: `--pool-url` but not `--pool-url-x`.
            let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-');
            out.push_str(&rest[..at]);
            out.push_str(if whole { dotted } else { &dashed });
            rest = after;
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// Parses a duration: `5s`, `500ms`, `1m30s`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| format!("{e}; expected a duration like 5s or 800ms"))
}

/// Parses a byte size: `16MiB`, `500KB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "expected a size like 16MiB, 500KB or 1048576".to_owned())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KB, MB, KiB, MiB or GiB"
            ))
        }
    };
    let bytes = number * multiplier as f64;
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err("size must be at least 1 byte".into());
    }
    Ok(bytes as u64)
}

/// `:port` means every interface, as in the other Prometheus exporters.
pub fn parse_listen_address(s: &str) -> Result<String, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    let (host, port) = full
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port or :port".to_owned())?;
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    if host.is_empty() {
        return Err("expected host:port or :port".into());
    }
    Ok(full)
}

fn check_token_file(path: &str) -> Result<(), FlagError> {
    let flag = "--pool.auth-token-file";
    let raw = std::fs::read_to_string(path)
        .map_err(|e| flag_error(flag, path, format!("cannot read the file: {e}")))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(flag_error(flag, path, "the file is empty"));
    }
    validate_token(token).map_err(|reason| flag_error(flag, path, reason))
}

fn validate_token(token: &str) -> Result<(), &'static str> {
    if token.bytes().any(|b| b.is_ascii_control()) {
        return Err("the token contains control characters, which cannot go in an HTTP header");
    }
    Ok(())
}

impl Config {
    /// Validates flags, falling back to `env` (injected for tests).
    pub fn from_args(args: Args, env: impl Fn(&str) -> Option<String>) -> Result<Self, FlagError> {
        let base_url = pool_url(args.pool_url.clone(), &env)?;
        let pool_timeout = flag_or(
            "--pool.timeout",
            &args.pool_timeout,
            Duration::from_secs(5),
            |v| {
                parse_duration(v).and_then(|d| {
                    if d.is_zero() {
                        Err("must be greater than zero".into())
                    } else {
                        Ok(d)
                    }
                })
            },
        )?;
        if let Some(name) = &args.pool_tls_server_name {
            check_tls_server_name(name, &base_url)?;
        }
        if let Some(path) = &args.pool_ca_file {
            check_readable("--pool.ca-file", path)?;
        }
        let pool = PoolClientConfig {
            token: pool_token(&args.pool_auth_token_file, &env)?,
            connect_timeout: pool_timeout,
            max_body_bytes: flag_or(
                "--pool.max-body-size",
                &args.pool_max_body_size,
                16 << 20,
                parse_size,
            )?,
            ca_file: args.pool_ca_file.as_ref().map(PathBuf::from),
            client_cert: client_cert(&args.pool_client_cert_file, &args.pool_client_key_file)?,
            tls_server_name: args.pool_tls_server_name.clone(),
            base_url,
        };
        Ok(Config {
            pool,
            pool_timeout,
            listen_address: listen_address(args.web_listen_address.as_deref())?,
            telemetry_path: flag_or(
                "--web.telemetry-path",
                &args.web_telemetry_path,
                "/metrics".to_owned(),
                check_telemetry_path,
            )?,
            scrape_timeout_offset: flag_or(
                "--web.scrape-timeout-offset",
                &args.web_scrape_timeout_offset,
                Duration::from_millis(500),
                parse_duration,
            )?,
            web_config_file: args.web_config_file.as_ref().map(PathBuf::from),
            web_max_connections: flag_or(
                "--web.max-connections",
                &args.web_max_connections,
                64,
                |v| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| "expected a whole number above 0".into())
                },
            )?,
            probe_allowed_targets: flag_or(
                "--probe.allowed-targets",
                &args.probe_allowed_targets,
                Vec::new(),
                |v| {
                    v.split(',')
                        .filter(|p| !p.trim().is_empty())
                        .map(str::parse)
                        .collect::<Result<Vec<TargetPattern>, String>>()
                },
            )?,
            max_connections: flag_or(
                "--collector.max-connections",
                &args.collector_max_connections,
                1000,
                |v| {
                    v.parse::<usize>()
                        .map_err(|_| "expected a whole number".into())
                },
            )?,
            connections: flag_or(
                "--collector.connections",
                &args.collector_connections,
                Default::default(),
                str::parse,
            )?,
            log_level: flag_or("--log.level", &args.log_level, LogLevel::Info, str::parse)?,
            log_format: flag_or(
                "--log.format",
                &args.log_format,
                LogFormat::Logfmt,
                str::parse,
            )?,
            demo: demo_model(&args.demo_model, args.demo)?,
        })
    }
}

/// `value` parsed, or `default` when the flag is absent; a bad value is an
/// error naming the flag.
fn flag_or<T>(
    flag: &'static str,
    value: &Option<String>,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, FlagError> {
    match value {
        None => Ok(default),
        Some(v) => parse(v).map_err(|reason| flag_error(flag, v, reason)),
    }
}

fn listen_address(flag: Option<&str>) -> Result<String, FlagError> {
    let text = flag.unwrap_or(DEFAULT_LISTEN);
    parse_listen_address(text).map_err(|r| flag_error("--web.listen-address", text, r))
}

fn check_readable(flag: &'static str, path: &str) -> Result<(), FlagError> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| flag_error(flag, path, format!("cannot read: {e}")))
}

/// `--pool.url`, else its environment variable, else the default.
fn pool_url(flag: Option<String>, env: &impl Fn(&str) -> Option<String>) -> Result<Url, FlagError> {
    let url_text = flag
        .or_else(|| env(ENV_POOL_URL))
        .unwrap_or_else(|| DEFAULT_POOL_URL.to_owned());
    // The URL may carry credentials: errors show it redacted.
    let shown_url = crate::redact::redact_url_text(&url_text);
    let base_url =
        Url::parse(&url_text).map_err(|e| flag_error("--pool.url", &shown_url, e.to_string()))?;
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host().is_none() {
        return Err(flag_error(
            "--pool.url",
            &shown_url,
            "expected an http:// or https:// URL with a host",
        ));
    }
    Ok(base_url)
}

/// The token from `--pool.auth-token-file` (checked now, so a bad file
/// stops the start with the flag's name, and re-read by the client
/// whenever it changes), else from the environment.
fn pool_token(
    file: &Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Token, FlagError> {
    if let Some(path) = file {
        check_token_file(path)?;
        return Ok(Token::file(path));
    }
    match env(ENV_POOL_TOKEN).map(|t| t.trim().to_owned()) {
        Some(t) if !t.is_empty() => {
            validate_token(&t).map_err(|reason| FlagError {
                flag: "SECURE_CHANNEL_POOL_TOKEN",
                value: "<redacted>".into(),
                reason: reason.into(),
            })?;
            Ok(Token::value(t))
        }
        _ => Ok(Token::none()),
    }
}

fn client_cert(
    cert: &Option<String>,
    key: &Option<String>,
) -> Result<Option<(PathBuf, PathBuf)>, FlagError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            check_readable("--pool.client-cert-file", cert)?;
            check_readable("--pool.client-key-file", key)?;
            Ok(Some((PathBuf::from(cert), PathBuf::from(key))))
        }
        (Some(cert), None) => Err(flag_error(
            "--pool.client-cert-file",
            cert,
            "needs --pool.client-key-file too",
        )),
        (None, Some(key)) => Err(flag_error(
            "--pool.client-key-file",
            key,
            "needs --pool.client-cert-file too",
        )),
    }
}

fn check_tls_server_name(name: &str, base_url: &Url) -> Result<(), FlagError> {
    let flag = "--pool.tls-server-name";
    if base_url.scheme() != "https" {
        return Err(flag_error(
            flag,
            name,
            "only applies to an https --pool.url",
        ));
    }
    if name.is_empty() || name.contains(['/', ':', '@', ' ']) {
        return Err(flag_error(flag, name, "expected a DNS name"));
    }
    Ok(())
}

fn check_telemetry_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.len() < 2 {
        return Err("must start with / and not be / itself (the landing page)".into());
    }
    if matches!(path, "/health" | "/ready" | "/probe") {
        return Err("is reserved for the liveness, readiness and probe endpoints".into());
    }
    Ok(path.to_owned())
}

fn demo_model(model: &Option<String>, demo: bool) -> Result<Option<crate::sim::Model>, FlagError> {
    match (model, demo) {
        (None, false) => Ok(None),
        (None, true) => Ok(Some(crate::sim::Model::Published)),
        (Some(v), false) => Err(flag_error("--demo.model", v, "only applies with --demo")),
        (Some(v), true) => v
            .parse()
            .map(Some)
            .map_err(|r: String| flag_error("--demo.model", v, r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let argv = normalize_args(args.iter().map(|s| s.to_string()));
        let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let parsed = Args::from_args(&["secure-channel-exporter"], &strs).map_err(|e| e.output)?;
        Config::from_args(parsed, |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn dotted_dashed_and_equals_spellings() {
        let a = parse(&[
            "--pool.url",
            "http://p:1",
            "--web.listen-address=127.0.0.1:0",
        ])
        .unwrap();
        let b = parse(&[
            "--pool-url=http://p:1",
            "--web-listen-address",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(a.pool.base_url, b.pool.base_url);
        assert_eq!(a.listen_address, "127.0.0.1:0");
        assert_eq!(b.listen_address, "127.0.0.1:0");
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.pool.base_url.as_str(), "http://127.0.0.1:9090/");
        assert_eq!(c.listen_address, "0.0.0.0:10090");
        assert_eq!(c.pool_timeout, Duration::from_secs(5));
        assert_eq!(c.pool.max_body_bytes, 16 << 20);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.max_connections, 1000);
    }

    #[test]
    fn env_fallbacks() {
        let args = Args::default();
        let c = Config::from_args(args, |k| match k {
            ENV_POOL_URL => Some("https://pool.internal:9443".into()),
            ENV_POOL_TOKEN => Some("tok\n".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.pool.base_url.as_str(), "https://pool.internal:9443/");
        assert!(c.pool.token.is_some());
        assert!(!format!("{c:?}").contains("\"tok\""), "{c:?}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["--pool.url", "not a url"][..], "--pool.url"),
            (&["--pool.url", "ftp://x"][..], "--pool.url"),
            (
                &["--pool.url", "http://u:secret@host:port"][..],
                "redacted@host:port",
            ),
            (&["--pool.timeout", "soon"][..], "--pool.timeout"),
            (&["--pool.timeout", "0s"][..], "--pool.timeout"),
            (
                &["--pool.max-body-size", "lots"][..],
                "--pool.max-body-size",
            ),
            (
                &["--pool.auth-token-file", "/nonexistent/token"][..],
                "--pool.auth-token-file",
            ),
            (
                &["--web.listen-address", "10090"][..],
                "--web.listen-address",
            ),
            (
                &["--web.telemetry-path", "metrics"][..],
                "--web.telemetry-path",
            ),
            (&["--log.level", "loud"][..], "--log.level"),
            (&["--log.format", "xml"][..], "--log.format"),
            (
                &["--collector.max-connections", "-1"][..],
                "--collector.max-connections",
            ),
            (
                &["--collector.connections", "some"][..],
                "--collector.connections",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("800ms"), Ok(Duration::from_millis(800)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn help_shows_dotted_flags() {
        let early = Args::from_args(&["secure-channel-exporter"], &["--help"]).unwrap_err();
        let help = dotted_help(&early.output);
        let options = help.split("Options:").nth(1).unwrap();
        for flag in DOTTED_FLAGS {
            let listed = options
                .lines()
                .any(|l| l.split_whitespace().next() == Some(flag));
            assert!(listed, "{flag} not listed under Options:\n{help}");
        }
        assert!(!options.contains("--pool-"), "{options}");
    }
}
