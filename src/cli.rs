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
    "--log.level",
    "--log.format",
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
        let url_text = args
            .pool_url
            .or_else(|| env(ENV_POOL_URL))
            .unwrap_or_else(|| DEFAULT_POOL_URL.to_owned());
        // The URL may carry credentials: errors show it redacted.
        let shown_url = crate::redact::redact_url_text(&url_text);
        let base_url = Url::parse(&url_text)
            .map_err(|e| flag_error("--pool.url", &shown_url, e.to_string()))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host().is_none() {
            return Err(flag_error(
                "--pool.url",
                &shown_url,
                "expected an http:// or https:// URL with a host",
            ));
        }

        // A file is checked now, so a bad one stops the start with the
        // flag's name, and re-read by the client whenever it changes.
        let token = match &args.pool_auth_token_file {
            Some(path) => {
                check_token_file(path)?;
                Token::file(path)
            }
            None => match env(ENV_POOL_TOKEN).map(|t| t.trim().to_owned()) {
                Some(t) if t.is_empty() => Token::none(),
                Some(t) => {
                    validate_token(&t).map_err(|reason| FlagError {
                        flag: "SECURE_CHANNEL_POOL_TOKEN",
                        value: "<redacted>".into(),
                        reason: reason.into(),
                    })?;
                    Token::value(t)
                }
                None => Token::none(),
            },
        };

        let duration = |flag: &'static str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|r| flag_error(flag, &v, r)),
        };
        let pool_timeout = duration("--pool.timeout", args.pool_timeout, Duration::from_secs(5))?;
        if pool_timeout.is_zero() {
            return Err(flag_error(
                "--pool.timeout",
                "0",
                "must be greater than zero",
            ));
        }
        let scrape_timeout_offset = duration(
            "--web.scrape-timeout-offset",
            args.web_scrape_timeout_offset,
            Duration::from_millis(500),
        )?;

        let max_body_bytes = match &args.pool_max_body_size {
            None => 16 << 20,
            Some(v) => parse_size(v).map_err(|r| flag_error("--pool.max-body-size", v, r))?,
        };
        if let Some(path) = &args.pool_ca_file {
            std::fs::metadata(path)
                .map_err(|e| flag_error("--pool.ca-file", path, format!("cannot read: {e}")))?;
        }

        let listen_text = args
            .web_listen_address
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen_address = parse_listen_address(&listen_text)
            .map_err(|r| flag_error("--web.listen-address", &listen_text, r))?;

        let telemetry_path = args
            .web_telemetry_path
            .unwrap_or_else(|| "/metrics".to_owned());
        if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 {
            return Err(flag_error(
                "--web.telemetry-path",
                &telemetry_path,
                "must start with / and not be / itself (the landing page)",
            ));
        }
        if matches!(telemetry_path.as_str(), "/health" | "/ready") {
            return Err(flag_error(
                "--web.telemetry-path",
                &telemetry_path,
                "is reserved for the liveness and readiness endpoints",
            ));
        }

        let client_cert = match (&args.pool_client_cert_file, &args.pool_client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                for (flag, path) in [
                    ("--pool.client-cert-file", cert),
                    ("--pool.client-key-file", key),
                ] {
                    std::fs::metadata(path)
                        .map_err(|e| flag_error(flag, path, format!("cannot read: {e}")))?;
                }
                Some((PathBuf::from(cert), PathBuf::from(key)))
            }
            (Some(cert), None) => {
                return Err(flag_error(
                    "--pool.client-cert-file",
                    cert,
                    "needs --pool.client-key-file too",
                ))
            }
            (None, Some(key)) => {
                return Err(flag_error(
                    "--pool.client-key-file",
                    key,
                    "needs --pool.client-cert-file too",
                ))
            }
        };
        if let Some(name) = &args.pool_tls_server_name {
            if base_url.scheme() != "https" {
                return Err(flag_error(
                    "--pool.tls-server-name",
                    name,
                    "only applies to an https --pool.url",
                ));
            }
            if name.is_empty() || name.contains(['/', ':', '@', ' ']) {
                return Err(flag_error(
                    "--pool.tls-server-name",
                    name,
                    "expected a DNS name",
                ));
            }
        }

        let web_config_file = args.web_config_file.map(PathBuf::from);
        let web_max_connections = match &args.web_max_connections {
            None => 64,
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                flag_error(
                    "--web.max-connections",
                    v,
                    "expected a whole number above 0",
                )
            })?,
        };
        let probe_allowed_targets = match &args.probe_allowed_targets {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(str::parse)
                .collect::<Result<Vec<TargetPattern>, String>>()
                .map_err(|r| flag_error("--probe.allowed-targets", v, r))?,
        };

        let max_connections = match &args.collector_max_connections {
            None => 1000,
            Some(v) => v.parse::<usize>().map_err(|_| {
                flag_error("--collector.max-connections", v, "expected a whole number")
            })?,
        };

        let log_level = match &args.log_level {
            None => LogLevel::Info,
            Some(v) => v
                .parse()
                .map_err(|r: String| flag_error("--log.level", v, r))?,
        };
        let log_format = match &args.log_format {
            None => LogFormat::Logfmt,
            Some(v) => v
                .parse()
                .map_err(|r: String| flag_error("--log.format", v, r))?,
        };

        let demo = match (&args.demo_model, args.demo) {
            (None, false) => None,
            (None, true) => Some(crate::sim::Model::Published),
            (Some(v), false) => {
                return Err(flag_error("--demo.model", v, "only applies with --demo"))
            }
            (Some(v), true) => Some(
                v.parse()
                    .map_err(|r: String| flag_error("--demo.model", v, r))?,
            ),
        };

        Ok(Config {
            pool: PoolClientConfig {
                base_url,
                token,
                connect_timeout: pool_timeout,
                max_body_bytes,
                ca_file: args.pool_ca_file.map(PathBuf::from),
                client_cert,
                tls_server_name: args.pool_tls_server_name,
            },
            pool_timeout,
            listen_address,
            telemetry_path,
            scrape_timeout_offset,
            web_config_file,
            web_max_connections,
            probe_allowed_targets,
            max_connections,
            log_level,
            log_format,
            demo,
        })
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
