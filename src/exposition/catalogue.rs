//! The one catalogue of the metric families the exporter itself writes:
//! name, type and HELP. Every own family is built from an entry here, and
//! the guard that keeps the pool's native families from shadowing ours,
//! or the series Prometheus makes up for every target, is derived from it.

use crate::exposition::{MetricFamily, MetricType};

/// One family the exporter writes.
#[derive(Debug)]
pub struct FamilyDef {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

impl FamilyDef {
    /// An empty family with this name, type and HELP.
    pub fn family(&self) -> MetricFamily {
        MetricFamily::new(self.name, self.help, self.kind)
    }
}

macro_rules! families {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $($(#[$doc])* pub const $id: FamilyDef = FamilyDef {
            name: $name,
            kind: MetricType::$kind,
            help: $help,
        };)*
        /// Every family above.
        pub const ALL: &[&FamilyDef] = &[$(&$id),*];
    };
}

families! {
    // The pool, from its status and health documents.
    UP = "secure_channel_up", Gauge,
        "1 if the pool's status document was fetched and decoded in this scrape, 0 otherwise.";
    POOL_HEALTHY = "secure_channel_pool_healthy", Gauge,
        "1 if the pool's /healthz says healthy, 0 if unhealthy. The published pool answers unhealthy (503) whenever its idle list is empty, which a busy, working pool does: 0 alone is not an outage.";
    POOL_CONNECTION_ERRORS_SEEN_TOTAL = "secure_channel_pool_connection_errors_seen_total", Counter,
        "Errors reported by listed connections, counted by this exporter: each connection's errors once, from its first sighting (including those it had before it was first scraped). Only connections the pool lists count: the published pool never lists used ones, so there it stays 0.";
    POOL_CONNECTION_RECONNECTS_SEEN_TOTAL = "secure_channel_pool_connection_reconnects_seen_total", Counter,
        "Reconnects (key rotations) reported by listed connections, counted by this exporter the same way as secure_channel_pool_connection_errors_seen_total.";
    POOL_CONNECTIONS_OPENED_TOTAL = "secure_channel_pool_connections_opened_total", Counter,
        "Connections (TLS handshakes) the pool opened since this exporter started, derived from the growth of the highest integer connection_id listed. It lags while the pool lists nothing and catches up when it lists a newer connection; ids restarting at 1 (a pool restart) are counted as new connections.";
    POOL_INFO = "secure_channel_pool_info", Gauge,
        "Identity of the pool; the value is always 1.";
    POOL_ACTIVE_CONNECTIONS = "secure_channel_pool_active_connections", Gauge,
        "Connections the pool lists now (its active_connections). The published pool lists only idle connections, so this is 0 on a busy pool whose callers hold every connection; builds that return connections list those too.";
    POOL_OPEN_CONNECTION_ERRORS = "secure_channel_pool_open_connection_errors", Gauge,
        "Errors summed over the connections listed now (the pool's total_errors); the published pool never lists a connection that was used, so there it is always 0. It drops when a connection closes: a gauge, not a counter; rate secure_channel_pool_connection_errors_seen_total instead.";
    POOL_OPEN_CONNECTION_RECONNECTS = "secure_channel_pool_open_connection_reconnects", Gauge,
        "Reconnects (key rotations) summed over the connections listed now (the pool's total_reconnects). It drops when a connection closes: a gauge, not a counter; rate secure_channel_pool_connection_reconnects_seen_total instead.";
    POOL_P95_LATENCY_SECONDS = "secure_channel_pool_p95_latency_seconds", Gauge,
        "Highest p95 latency of the connections listed now, in seconds; 0 when none has samples (the published pool lists only unused connections). The pool closes connections above 0.5 s, so this never stays above it: use the native secure_channel_latency_ms histogram.";
    // Each listed connection.
    CONNECTION_ERRORS_TOTAL = "secure_channel_connection_errors_total", Counter,
        "Read/write errors of this listed connection since it opened (0 for connections never used, which is all the published pool lists).";
    CONNECTION_RECONNECTS_TOTAL = "secure_channel_connection_reconnects_total", Counter,
        "Reconnects (key rotations) of this listed connection since it opened.";
    CONNECTION_P95_LATENCY_SECONDS = "secure_channel_connection_p95_latency_seconds", Gauge,
        "p95 read/write latency of this listed connection in seconds; 0 means no samples yet (a never-used connection), not a fast one.";
    CONNECTION_LAST_ACTIVITY_TIMESTAMP_SECONDS = "secure_channel_connection_last_activity_timestamp_seconds", Gauge,
        "Unix time of the last read or write on this listed connection, or of its creation if it was never used (it does not move on an idle connection).";
    CONNECTION_HEALTHY = "secure_channel_connection_healthy", Gauge,
        "1 if the pool reports this connection healthy, 0 if not (only for pools that report it).";
    CONNECTION_INFO = "secure_channel_connection_info", Gauge,
        "Remote address of this connection; the value is always 1 (only for pools that report it).";
    // The exporter itself.
    EXPORTER_SOURCE_UP = "secure_channel_exporter_source_up", Gauge,
        "1 if this pool document was fetched and decoded in this scrape, 0 otherwise.";
    EXPORTER_SOURCE_DURATION_SECONDS = "secure_channel_exporter_source_duration_seconds", Gauge,
        "Time spent fetching and decoding this pool document in this scrape.";
    EXPORTER_SOURCE_REQUESTS_TOTAL = "secure_channel_exporter_source_requests_total", Counter,
        "Fetches of this pool document since the exporter started.";
    EXPORTER_SOURCE_FAILURES_TOTAL = "secure_channel_exporter_source_failures_total", Counter,
        "Failed fetches of this pool document since the exporter started, by reason.";
    EXPORTER_SCRAPE_ANSWERS_TOTAL = "secure_channel_exporter_scrape_answers_total", Counter,
        "Answers to /metrics and /probe since the exporter started, by content encoding (identity, gzip, zstd); an answer shows the count as it stood before itself.";
    EXPORTER_CONNECTIONS_OMITTED = "secure_channel_exporter_connections_omitted", Gauge,
        "Connections left out of this scrape by --collector.max-connections.";
    EXPORTER_NATIVE_FAMILIES_DROPPED = "secure_channel_exporter_native_families_dropped", Gauge,
        "Native metric families not passed through in this scrape, by reason.";
    EXPORTER_NATIVE_LINES_SKIPPED = "secure_channel_exporter_native_lines_skipped", Gauge,
        "Lines of the pool's native exposition that could not be read in this scrape.";
    EXPORTER_NATIVE_SERIES_DROPPED = "secure_channel_exporter_native_series_dropped", Gauge,
        "Native series not passed through in this scrape (their family kept), by reason.";
    EXPORTER_DUPLICATE_CONNECTIONS = "secure_channel_exporter_duplicate_connections", Gauge,
        "Listed connections left out of this scrape because another listed connection has the same id (the worst of them is kept).";
    EXPORTER_VALUES_DROPPED = "secure_channel_exporter_values_dropped", Gauge,
        "Values in the pool's status document not exported in this scrape because no sample can hold them, by reason (time_out_of_range: a last_activity outside years 1 to 9999).";
    EXPORTER_LABEL_VALUES_TRUNCATED = "secure_channel_exporter_label_values_truncated", Gauge,
        "Label values and HELP texts from the pool cut to --collector.max-label-value-length in this scrape.";
    EXPORTER_BUILD_INFO = "secure_channel_exporter_build_info", Gauge,
        "Build of the exporter; the value is always 1.";
    EXPORTER_WEB_AUTH_FAILURES_TOTAL = "secure_channel_exporter_web_auth_failures_total", Counter,
        "Requests refused for missing or wrong basic-auth credentials.";
    EXPORTER_WEB_TLS_HANDSHAKE_FAILURES_TOTAL = "secure_channel_exporter_web_tls_handshake_failures_total", Counter,
        "Client connections that failed the TLS handshake (unknown CA, missing client certificate, plain HTTP).";
    EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL = "secure_channel_exporter_web_config_last_reload_successful", Gauge,
        "1 if the last load of --web.config.file succeeded, 0 if the last good one is still in force.";
    // The REST API.
    EXPORTER_API_REQUESTS_TOTAL = "secure_channel_exporter_api_requests_total", Counter,
        "Requests answered by the REST API under /api/, by route (path template) and HTTP status code. Refusals of the gate (wrong method, missing credentials) are not counted here.";
    EXPORTER_API_REQUEST_DURATION_SECONDS = "secure_channel_exporter_api_request_duration_seconds", Histogram,
        "Time the REST API took to answer, by route (path template).";
    EXPORTER_API_CACHE_REQUESTS_TOTAL = "secure_channel_exporter_api_cache_requests_total", Counter,
        "REST API requests by how the cached pool snapshot served them: hit (no fetch of its own), miss (fetched from the pool), stale (the pool failed; the last good copy was served).";
    // The exporter process.
    PROCESS_CPU_SECONDS_TOTAL = "process_cpu_seconds_total", Counter,
        "Total user and system CPU time spent in seconds.";
    PROCESS_START_TIME_SECONDS = "process_start_time_seconds", Gauge,
        "Start time of the process since unix epoch in seconds.";
    PROCESS_VIRTUAL_MEMORY_BYTES = "process_virtual_memory_bytes", Gauge,
        "Virtual memory size in bytes.";
    PROCESS_RESIDENT_MEMORY_BYTES = "process_resident_memory_bytes", Gauge,
        "Resident memory size in bytes.";
    PROCESS_OPEN_FDS = "process_open_fds", Gauge,
        "Number of open file descriptors.";
    PROCESS_MAX_FDS = "process_max_fds", Gauge,
        "Maximum number of open file descriptors.";
}

/// Name prefixes the exporter owns or Prometheus reserves: a native family
/// under one of them would pose as the exporter's own self-metrics, as the
/// exporter process, or as the series Prometheus writes for every scrape
/// (`scrape_duration_seconds`, `scrape_samples_scraped`, ...).
pub const RESERVED_PREFIXES: &[&str] = &["secure_channel_exporter_", "process_", "scrape_"];

/// Names Prometheus writes itself for every target: a native `up` would
/// overwrite the exporter's and fire the exporter-down alert.
pub const RESERVED_NAMES: &[&str] = &["up"];

/// Whether a native family or sample called `name` must not pass through:
/// it is one of ours (or a sample of one, `_bucket`, `_created` and the
/// like included), or lies in a reserved namespace.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMES.contains(&name)
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || ALL.iter().any(|f| {
            // A counter's family is written without `_total` in OpenMetrics,
            // and its samples hang their suffixes on that shorter name.
            let base = f.name.strip_suffix("_total").unwrap_or(f.name);
            name == f.name
                || name == base
                || name
                    .strip_prefix(base)
                    .is_some_and(|suffix| SAMPLE_SUFFIXES.contains(&suffix))
        })
}

/// Suffixes of the samples of a family, in either format.
const SAMPLE_SUFFIXES: &[&str] = &["_total", "_created", "_bucket", "_count", "_sum", "_info"];

/// Registers `metric` under the catalogue's name and HELP (the crate adds
/// `_total` to counters and a full stop to HELP itself).
pub fn register(
    registry: &mut prometheus_client::registry::Registry,
    def: &FamilyDef,
    metric: impl prometheus_client::registry::Metric,
) {
    let name = def.name.strip_suffix("_total").unwrap_or(def.name);
    registry.register(name, def.help.trim_end_matches('.'), metric);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ours() {
        let mut names: Vec<_> = ALL.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for f in ALL {
            assert!(
                f.name.starts_with("secure_channel_") || f.name.starts_with("process_"),
                "{}",
                f.name
            );
            assert_eq!(
                f.kind == MetricType::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn guard_covers_ours_reserved_namespaces_and_prometheus_series() {
        for reserved in [
            "up",
            "scrape_duration_seconds",
            "scrape_series_added",
            "process_open_fds",
            "process_anything",
            "secure_channel_exporter_web_auth_failures_total",
            "secure_channel_exporter_web_auth_failures",
            "secure_channel_exporter_not_yet_invented",
            "secure_channel_up",
            "secure_channel_connection_errors",
            "secure_channel_connection_errors_total",
            "secure_channel_pool_connections_opened_created",
        ] {
            assert!(is_reserved(reserved), "{reserved}");
        }
        for native in [
            "secure_channel_active_connections",
            "secure_channel_errors_total",
            "secure_channel_latency_ms",
            "secure_channel_latency_ms_bucket",
            "secure_channel_reconnects_total",
            "upstream_requests_total",
            "secure_channel_up_since",
        ] {
            assert!(!is_reserved(native), "{native}");
        }
    }
}
