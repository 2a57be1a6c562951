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

use crate::http::bind::ListenAddress;
use crate::logging::{LogFormat, LogLevel};
use crate::pool::PoolClientConfig;
use crate::scrape::probe::TargetPattern;
use secure_channel_client::Token;

pub const ENV_POOL_URL: &str = "SECURE_CHANNEL_POOL_URL";
pub const ENV_POOL_TOKEN: &str = "SECURE_CHANNEL_POOL_TOKEN";
pub const DEFAULT_POOL_URL: &str = "http://127.0.0.1:9090";
/// `--web.listen-address` when none is given: `:10090`, clear of the
/// crowded 9100-9999 exporter range.
pub const DEFAULT_PORT: u16 = 10090;

/// Prometheus exporter for a SecureChannelPool: each scrape of the telemetry
/// path fetches the pool's status, health and native metrics and answers with
/// per-connection series. Flags may be written --like.this or --like-this.
/// `secure-channel-exporter check --help`: test the pool flags against the
/// pool and see what the exporter would.
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
    /// largest pool response body accepted, e.g. 8MiB or 500KB (default 8MiB)
    #[argh(option)]
    pub pool_max_body_size: Option<String>,
    /// address to listen on: host:port (an IPv6 host in brackets), or :port for every interface, IPv6 and IPv4 (default :10090); repeat the flag to listen on several
    #[argh(option)]
    pub web_listen_address: Vec<String>,
    /// take the listening sockets from systemd socket activation instead of --web.listen-address (Linux)
    #[argh(switch)]
    pub web_systemd_socket: bool,
    /// path under which metrics are served (default /metrics)
    #[argh(option)]
    pub web_telemetry_path: Option<String>,
    /// taken off Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time to answer (default 0.5s)
    #[argh(option)]
    pub web_scrape_timeout_offset: Option<String>,
    /// exporter-toolkit web config file (TLS, client certificates, basic auth); re-read when it changes
    #[argh(option)]
    pub web_config_file: Option<String>,
    /// most client connections open at once, idle or not; more wait in the listen queue (default 1024)
    #[argh(option)]
    pub web_max_connections: Option<String>,
    /// most requests answered at once; more wait for a slot (default 64)
    #[argh(option)]
    pub web_max_requests: Option<String>,
    /// time a client has to finish the TLS handshake and send its request headers, and the longest a kept-alive connection may idle (default 5s)
    #[argh(option)]
    pub web_read_header_timeout: Option<String>,
    /// longest writing an answer may make no progress (a client that stopped reading) before the connection is closed (default 10s)
    #[argh(option)]
    pub web_write_timeout: Option<String>,
    /// comma-separated scheme://host:port patterns (* wildcards) that /probe?target= may scrape; /probe is off without it
    #[argh(option)]
    pub probe_allowed_targets: Option<String>,
    /// most connections exported per scrape; beyond it the worst are kept (default 1000)
    #[argh(option)]
    pub collector_max_connections: Option<String>,
    /// how long the REST API reuses a fetched pool document, e.g. 2s or 500ms (default 2s; /metrics is never cached)
    #[argh(option)]
    pub api_cache_ttl: Option<String>,
    /// how long the REST API keeps serving the last good pool document, flagged stale, while the pool fails (default 5m)
    #[argh(option)]
    pub api_stale_max: Option<String>,
    /// comma-separated origins (scheme://host:port) allowed to call the REST API from a browser, or * for any (then without credentials); off by default
    #[argh(option)]
    pub api_cors_allowed_origins: Option<String>,
    /// REST API requests per second per client IP, 0 for no limit (default 20)
    #[argh(option)]
    pub api_rate_limit: Option<String>,
    /// REST API requests a client IP may burst above --api.rate-limit (default 40)
    #[argh(option)]
    pub api_rate_limit_burst: Option<String>,
    /// poll the pool's status and health this often in the background, keeping the REST API's snapshot warm and logging each health change once, e.g. 10s (default off)
    #[argh(option)]
    pub monitor_interval: Option<String>,
    /// most native series read and passed through per scrape; the rest are dropped and counted (default 10000)
    #[argh(option)]
    pub collector_max_native_series: Option<String>,
    /// longest label value exported, in bytes; longer values from the pool are truncated and counted (default 1024)
    #[argh(option)]
    pub collector_max_label_value_length: Option<String>,
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
    "--web.systemd-socket",
    "--web.telemetry-path",
    "--web.scrape-timeout-offset",
    "--web.config.file",
    "--web.max-connections",
    "--web.max-requests",
    "--web.read-header-timeout",
    "--web.write-timeout",
    "--probe.allowed-targets",
    "--collector.max-connections",
    "--api.cache-ttl",
    "--api.stale-max",
    "--api.cors-allowed-origins",
    "--api.rate-limit",
    "--api.rate-limit-burst",
    "--monitor.interval",
    "--collector.max-native-series",
    "--collector.max-label-value-length",
    "--collector.connections",
    "--log.level",
    "--log.format",
    "--demo.model",
];

/// secure-channel-exporter check: fetch each of the pool's documents once
/// with the exporter's pool flags and report what the exporter would see:
/// reachable, auth, each document's status, size, format and decoding, the
/// pool build it looks like, its timestamp encoding, and which shipped
/// alerts can fire for that build. Exits 0 when every document is fine, 1
/// when one failed, 2 for bad flags.
#[derive(FromArgs, Debug, Default)]
pub struct CheckArgs {
    /// base URL of the pool API (default http://127.0.0.1:9090, or env SECURE_CHANNEL_POOL_URL)
    #[argh(option)]
    pub pool_url: Option<String>,
    /// file holding the pool's X-Auth-Token; without it the token comes from env SECURE_CHANNEL_POOL_TOKEN, if set
    #[argh(option)]
    pub pool_auth_token_file: Option<String>,
    /// time budget for the three fetches, e.g. 5s or 800ms (default 5s)
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
    /// largest pool response body accepted, e.g. 8MiB or 500KB (default 8MiB)
    #[argh(option)]
    pub pool_max_body_size: Option<String>,
    /// report format: text or json (default text)
    #[argh(option)]
    pub format: Option<String>,
}

/// How `check` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    Text,
    Json,
}

/// The `check` subcommand's validated flags.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub pool: PoolClientConfig,
    pub pool_timeout: Duration,
    pub format: CheckFormat,
}

impl CheckConfig {
    /// Validates the pool flags exactly as the exporter does.
    pub fn from_args(
        args: CheckArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FlagError> {
        let format = flag_or("--format", &args.format, CheckFormat::Text, |v| match v {
            "text" => Ok(CheckFormat::Text),
            "json" => Ok(CheckFormat::Json),
            _ => Err("expected text or json".into()),
        })?;
        let exporter_args = Args {
            pool_url: args.pool_url,
            pool_auth_token_file: args.pool_auth_token_file,
            pool_timeout: args.pool_timeout,
            pool_ca_file: args.pool_ca_file,
            pool_client_cert_file: args.pool_client_cert_file,
            pool_client_key_file: args.pool_client_key_file,
            pool_tls_server_name: args.pool_tls_server_name,
            pool_max_body_size: args.pool_max_body_size,
            ..Args::default()
        };
        let (pool, pool_timeout) = pool_flags(&exporter_args, &env)?;
        Ok(Self {
            pool,
            pool_timeout,
            format,
        })
    }
}

/// argh's message for a command line it cannot read, with the flag as the
/// user typed it and, for an unknown one, the closest flag in `help` when
/// one is close (a typo, not a different word). `words` are the other
/// things that may be typed there (subcommands).
pub fn explain_parse_error(output: &str, typed: &[String], help: &str, words: &[&str]) -> String {
    let message = dotted_help(output.trim_end());
    let Some(unknown) = message.strip_prefix("Unrecognized argument: ") else {
        return message;
    };
    let unknown = unknown.trim();
    // argh saw the normalized spelling; show the one the user typed.
    let shown = typed
        .iter()
        .map(|t| t.split_once('=').map_or(t.as_str(), |(name, _)| name))
        .find(|t| t.replace('.', "-") == unknown)
        .unwrap_or(unknown);
    let mut candidates: Vec<String> = help
        .split("Options:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(',').to_owned())
        .collect();
    candidates.extend(words.iter().map(|w| (*w).to_owned()));
    let is_flag = shown.starts_with('-');
    let what = if is_flag {
        format!("unknown flag {shown}")
    } else {
        format!("unexpected argument {shown:?}")
    };
    match closest(shown, &candidates) {
        Some(best) => format!("{what}: did you mean {best}?"),
        None if is_flag => what,
        None => format!("{what} (flags take the form --name value)"),
    }
}

/// The candidate nearest `typed` by edit distance (dots and dashes count
/// alike), when the distance is small for its length.
fn closest<'a>(typed: &str, candidates: &'a [String]) -> Option<&'a str> {
    let key = |s: &str| s.to_ascii_lowercase().replace('.', "-");
    let typed_key = key(typed);
    let allowed = (typed_key.len() / 4).clamp(2, 3);
    let near = candidates
        .iter()
        .map(|c| (edit_distance(&typed_key, &key(c)), c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str());
    // `--url` for `--pool.url`: the flag without its section, when only
    // one section has it.
    let bare = typed.trim_start_matches('-');
    let mut sections = candidates
        .iter()
        .filter(|c| c.rsplit_once('.').is_some_and(|(_, name)| name == bare));
    near.or_else(|| match (sections.next(), sections.next()) {
        (Some(only), None) => Some(only.as_str()),
        _ => None,
    })
}

/// Edit distance over bytes (flag names are ASCII) in which swapping two
/// neighbouring characters costs one edit, as typing them does.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

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
    /// Where to listen (each `--web.listen-address`); empty with
    /// `systemd_socket`.
    pub listen_addresses: Vec<ListenAddress>,
    /// Take the sockets systemd passes instead.
    pub systemd_socket: bool,
    pub telemetry_path: String,
    pub scrape_timeout_offset: Duration,
    pub web_config_file: Option<PathBuf>,
    pub web_max_connections: usize,
    pub web_max_requests: usize,
    pub web_read_header_timeout: Duration,
    pub web_write_timeout: Duration,
    pub probe_allowed_targets: Vec<TargetPattern>,
    pub max_connections: usize,
    pub api: ApiFlags,
    /// Limits on what the pool's documents may make the exporter hold.
    pub limits: crate::pool::Limits,
    pub connections: crate::scrape::translate::ConnectionFilter,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Run against a built-in simulated pool of this model.
    pub demo: Option<crate::sim::Model>,
}

/// The REST API's settings.
#[derive(Debug, Clone)]
pub struct ApiFlags {
    pub cache_ttl: Duration,
    pub stale_max: Duration,
    pub cors: Option<crate::rest::Cors>,
    pub rate_limit: f64,
    pub rate_limit_burst: u32,
    pub monitor_interval: Option<Duration>,
}

impl ApiFlags {
    fn from_args(args: &Args) -> Result<Self, FlagError> {
        let positive = |v: &str| {
            parse_duration(v).and_then(|d| {
                if d.is_zero() {
                    Err("must be greater than zero".to_owned())
                } else {
                    Ok(d)
                }
            })
        };
        Ok(Self {
            cache_ttl: flag_or(
                "--api.cache-ttl",
                &args.api_cache_ttl,
                Duration::from_secs(2),
                parse_duration,
            )?,
            stale_max: flag_or(
                "--api.stale-max",
                &args.api_stale_max,
                Duration::from_secs(300),
                parse_duration,
            )?,
            cors: flag_or(
                "--api.cors-allowed-origins",
                &args.api_cors_allowed_origins,
                None,
                crate::rest::Cors::parse,
            )?,
            rate_limit: flag_or(
                "--api.rate-limit",
                &args.api_rate_limit,
                20.0,
                crate::rest::limit::parse_rate,
            )?,
            rate_limit_burst: flag_or(
                "--api.rate-limit-burst",
                &args.api_rate_limit_burst,
                40,
                |v| {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| "expected a whole number above 0".into())
                },
            )?,
            monitor_interval: args
                .monitor_interval
                .as_ref()
                .map(|v| positive(v).map_err(|r| flag_error("--monitor.interval", v, r)))
                .transpose()?,
        })
    }
}

/// Rewrites `--a.b` to `--a-b` and splits `--flag=value` (which argh does
/// not accept) into two arguments. Stops at a bare `--`.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest_literal = false;
    for arg in args {
        if !rest_literal && arg == "-h" {
            out.push("--help".to_owned());
            continue;
        }
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
        let (pool, pool_timeout) = pool_flags(&args, &env)?;
        Ok(Config {
            pool,
            pool_timeout,
            listen_addresses: listen_addresses(&args.web_listen_address, args.web_systemd_socket)?,
            systemd_socket: args.web_systemd_socket,
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
                1024,
                positive,
            )?,
            web_max_requests: flag_or("--web.max-requests", &args.web_max_requests, 64, positive)?,
            web_read_header_timeout: flag_or(
                "--web.read-header-timeout",
                &args.web_read_header_timeout,
                crate::http::listener::HEADER_READ_TIMEOUT,
                positive_duration,
            )?,
            web_write_timeout: flag_or(
                "--web.write-timeout",
                &args.web_write_timeout,
                crate::http::listener::WRITE_TIMEOUT,
                positive_duration,
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
            api: ApiFlags::from_args(&args)?,
            limits: crate::pool::Limits {
                max_native_series: flag_or(
                    "--collector.max-native-series",
                    &args.collector_max_native_series,
                    crate::pool::Limits::DEFAULT.max_native_series,
                    |v| {
                        v.parse::<usize>()
                            .map_err(|_| "expected a whole number".into())
                    },
                )?,
                max_label_value_len: flag_or(
                    "--collector.max-label-value-length",
                    &args.collector_max_label_value_length,
                    crate::pool::Limits::DEFAULT.max_label_value_len,
                    |v| {
                        v.parse::<usize>()
                            .ok()
                            .filter(|n| *n >= 16)
                            .ok_or_else(|| "expected a whole number of at least 16".into())
                    },
                )?,
            },
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

/// The pool flags (`--pool.*`), shared by the exporter and `check`.
fn pool_flags(
    args: &Args,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(PoolClientConfig, Duration), FlagError> {
    let base_url = pool_url(args.pool_url.clone(), env)?;
    let pool_timeout = flag_or(
        "--pool.timeout",
        &args.pool_timeout,
        Duration::from_secs(5),
        positive_duration,
    )?;
    if let Some(name) = &args.pool_tls_server_name {
        check_tls_server_name(name, &base_url)?;
    }
    if let Some(path) = &args.pool_ca_file {
        check_readable("--pool.ca-file", path)?;
    }
    let pool = PoolClientConfig {
        token: pool_token(&args.pool_auth_token_file, env)?,
        connect_timeout: pool_timeout,
        max_body_bytes: flag_or(
            "--pool.max-body-size",
            &args.pool_max_body_size,
            // A 10,000-connection status is ~2 MB. Decoding a status
            // costs ~4 bytes of memory per byte of body, so this also
            // keeps the exporter under the sidecar's 64 MiB limit.
            8 << 20,
            parse_size,
        )?,
        ca_file: args.pool_ca_file.as_ref().map(PathBuf::from),
        client_cert: client_cert(&args.pool_client_cert_file, &args.pool_client_key_file)?,
        tls_server_name: args.pool_tls_server_name.clone(),
        base_url,
    };
    Ok((pool, pool_timeout))
}

fn positive(v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "expected a whole number above 0".into())
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    parse_duration(v).and_then(|d| {
        if d.is_zero() {
            Err("must be greater than zero".into())
        } else {
            Ok(d)
        }
    })
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

fn listen_addresses(flags: &[String], systemd: bool) -> Result<Vec<ListenAddress>, FlagError> {
    let flag = "--web.listen-address";
    if systemd {
        return match flags.first() {
            Some(v) => Err(flag_error(flag, v, "cannot be combined with --web.systemd-socket, which takes the sockets systemd passes")),
            None => Ok(Vec::new()),
        };
    }
    if flags.is_empty() {
        return Ok(vec![ListenAddress::AnyHost(DEFAULT_PORT)]);
    }
    flags
        .iter()
        .map(|v| v.parse().map_err(|r: String| flag_error(flag, v, r)))
        .collect()
}

fn check_readable(flag: &'static str, path: &str) -> Result<(), FlagError> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| flag_error(flag, path, format!("cannot read: {e}")))
}

/// `--pool.url`, else its environment variable, else the default.
fn pool_url(flag: Option<String>, env: &impl Fn(&str) -> Option<String>) -> Result<Url, FlagError> {
    // An error names where the value came from: the flag, or the
    // environment variable standing in for it.
    let (source, url_text) = match (flag, env(ENV_POOL_URL)) {
        (Some(v), _) => ("--pool.url", v),
        (None, Some(v)) => (
            "SECURE_CHANNEL_POOL_URL (environment, standing in for --pool.url)",
            v,
        ),
        (None, None) => ("--pool.url", DEFAULT_POOL_URL.to_owned()),
    };
    // The URL may carry credentials: errors show it redacted.
    let shown_url = secure_channel_client::redact_url_text(&url_text);
    let base_url = Url::parse(&url_text).map_err(|e| {
        flag_error(
            source,
            &shown_url,
            format!("{e}; expected a URL like http://127.0.0.1:9090"),
        )
    })?;
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host().is_none() {
        return Err(flag_error(
            source,
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
    if matches!(path, "/health" | "/ready" | "/probe" | "/status" | "/api")
        || path.starts_with("/api/")
    {
        return Err(
            "is reserved for the liveness, readiness, probe, status page and REST API endpoints"
                .into(),
        );
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
        let local = vec![ListenAddress::Host("127.0.0.1".into(), 0)];
        assert_eq!(a.listen_addresses, local);
        assert_eq!(b.listen_addresses, local);
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.pool.base_url.as_str(), "http://127.0.0.1:9090/");
        assert_eq!(c.listen_addresses, [ListenAddress::AnyHost(10090)]);
        assert_eq!(c.pool_timeout, Duration::from_secs(5));
        assert_eq!(c.pool.max_body_bytes, 8 << 20);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.api.cache_ttl, Duration::from_secs(2));
        assert_eq!(c.api.stale_max, Duration::from_secs(300));
        assert!(c.api.cors.is_none());
        assert_eq!((c.api.rate_limit, c.api.rate_limit_burst), (20.0, 40));
        assert!(c.api.monitor_interval.is_none());
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
                "http://host:port",
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
            (&["--api.cache-ttl", "soon"][..], "--api.cache-ttl"),
            (&["--api.stale-max", "-5s"][..], "--api.stale-max"),
            (
                &["--api.cors-allowed-origins", "*,https://a.example"][..],
                "--api.cors-allowed-origins",
            ),
            (
                &["--api.cors-allowed-origins", "https://a.example/app"][..],
                "--api.cors-allowed-origins",
            ),
            (&["--api.rate-limit", "-1"][..], "--api.rate-limit"),
            (
                &["--api.rate-limit-burst", "0"][..],
                "--api.rate-limit-burst",
            ),
            (&["--monitor.interval", "0s"][..], "--monitor.interval"),
            (
                &["--web.telemetry-path", "/api/v1/status"][..],
                "--web.telemetry-path",
            ),
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
    fn close_typos_get_a_suggestion_and_other_words_none() {
        let flags: Vec<String> = ["--model", "--pool.url", "--web.listen-address", "--demo"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(closest("--modle", &flags), Some("--model"));
        assert_eq!(closest("--pool-ulr", &flags), Some("--pool.url"));
        assert_eq!(
            closest("--web.listen-adres", &flags),
            Some("--web.listen-address")
        );
        assert_eq!(closest("--frobnicate", &flags), None);
        assert_eq!(closest("--url", &flags), Some("--pool.url"));
        assert_eq!(closest("--address", &flags), None);
        assert_eq!(edit_distance("abcd", "acbd"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
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
