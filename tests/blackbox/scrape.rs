//! A healthy pool: the exporter's values match what the pool says.

use std::collections::BTreeMap;

use secure_channel_exporter::pool::PoolStatus;

use crate::common::*;

const NATIVE: [&str; 4] = [
    "secure_channel_active_connections",
    "secure_channel_reconnects_total",
    "secure_channel_errors_total",
    "secure_channel_latency_ms",
];

async fn pool_status(sim: &Proc) -> PoolStatus {
    serde_json::from_str(&get_text(&sim.url("/status/connections")).await).unwrap()
}

async fn check_values_match(time_format: &str) {
    let sim = sim(&[
        "--steady",
        "--connections",
        "5",
        "--extended",
        "--backend",
        "tokio-rustls",
        "--time-format",
        time_format,
    ]);
    let exp = exporter(&sim, &[]);
    let s = scrape(&exp).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(s.parsed.skipped_lines, 0, "{}", s.body);
    assert_eq!(s.value("secure_channel_up", &[]), 1.0);
    for source in ["status", "health", "metrics"] {
        assert_eq!(s.source_up(source), 1.0);
    }
    let pool = pool_status(&sim).await;
    let ep = ("endpoint", "relay.example.net:443");
    assert_eq!(
        s.value(
            "secure_channel_pool_info",
            &[ep, ("backend", "tokio-rustls")]
        ),
        1.0
    );
    assert_eq!(
        s.value("secure_channel_pool_active_connections", &[ep]),
        5.0
    );
    assert_eq!(
        s.value("secure_channel_pool_open_connection_errors", &[ep]),
        pool.total_errors.unwrap()
    );
    assert_eq!(
        s.value("secure_channel_pool_p95_latency_seconds", &[ep]),
        pool.pool_p95_latency_ms.unwrap() / 1000.0
    );
    assert_eq!(s.value("secure_channel_pool_healthy", &[ep]), 1.0);
    assert_eq!(pool.connections.len(), 5);
    for c in &pool.connections {
        let id = ("connection_id", c.connection_id.as_str());
        assert_eq!(
            s.value("secure_channel_connection_errors_total", &[ep, id]),
            c.errors
        );
        assert_eq!(
            s.value("secure_channel_connection_reconnects_total", &[ep, id]),
            c.reconnects
        );
        assert_eq!(
            s.value("secure_channel_connection_p95_latency_seconds", &[ep, id]),
            c.p95_latency_ms.unwrap() / 1000.0
        );
        let last = s.value(
            "secure_channel_connection_last_activity_timestamp_seconds",
            &[ep, id],
        );
        assert!(
            (last - c.last_activity.unwrap().as_secs_f64()).abs() < 1e-3,
            "{last}"
        );
        assert_eq!(s.value("secure_channel_connection_healthy", &[ep, id]), 1.0);
        let addr = c.remote_addr.as_deref().unwrap();
        assert_eq!(
            s.value(
                "secure_channel_connection_info",
                &[ep, id, ("remote_addr", addr)]
            ),
            1.0
        );
    }
    // Native families are passed through with their types and values.
    for name in NATIVE {
        assert!(s.family(name).is_some(), "{name} missing");
    }
    assert_eq!(s.value("secure_channel_active_connections", &[ep]), 5.0);
    let count = s.value("secure_channel_latency_ms_count", &[ep]);
    assert!(count > 0.0);
    assert_eq!(
        s.value("secure_channel_latency_ms_bucket", &[ep, ("le", "+Inf")]),
        count
    );
    assert!(s.value("process_resident_memory_bytes", &[]) > 0.0);
    let build = s.samples("secure_channel_exporter_build_info");
    assert_eq!(build.len(), 1);
    assert!(build[0]
        .labels
        .iter()
        .any(|(n, v)| n == "version" && v == env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn values_match_the_pool_systemtime() {
    check_values_match("systemtime").await;
}

#[tokio::test]
async fn values_match_the_pool_rfc3339() {
    check_values_match("rfc3339").await;
}

#[tokio::test]
async fn values_match_the_pool_unix_seconds() {
    check_values_match("unix").await;
}

/// Every sample of the pool's families, keyed for comparison.
fn pool_samples(s: &Scrape) -> BTreeMap<String, String> {
    s.parsed
        .families
        .iter()
        .filter(|f| {
            f.name.starts_with("secure_channel_") && !f.name.starts_with("secure_channel_exporter_")
        })
        .flat_map(|f| &f.samples)
        .map(|sample| {
            (
                format!("{}{:?}", sample.name, sample.labels),
                format!("{:?}", sample.value),
            )
        })
        .collect()
}

#[tokio::test]
async fn both_formats_carry_the_same_series() {
    let sim = sim(&["--steady", "--connections", "3", "--extended"]);
    let exp = exporter(&sim, &[]);
    let text = scrape(&exp).await;
    let om = scrape_with(&exp, &[("accept", OPENMETRICS)]).await;
    assert_eq!(
        om.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om
        .body
        .contains("# TYPE secure_channel_connection_errors counter\n"));
    assert!(text
        .body
        .contains("# TYPE secure_channel_connection_errors_total counter\n"));
    assert!(om
        .body
        .contains("# TYPE secure_channel_reconnects counter\n"));
    assert_eq!(om.parsed.skipped_lines, 0);
    let a = pool_samples(&text);
    let b = pool_samples(&om);
    assert!(a.len() > 30, "{}", a.len());
    assert_eq!(a, b);
}

/// The exposition without the pool's native families (which are the
/// pool's naming, not ours).
fn own_families(body: &str) -> String {
    body.lines()
        .filter(|line| {
            let name = line
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            !NATIVE.iter().any(|n| name.starts_with(n))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test]
async fn promtool_accepts_our_families() {
    let sim = sim(&["--connections", "3", "--extended", "--backend", "b"]);
    let exp = exporter(&sim, &[]);
    let s = scrape(&exp).await;
    let own = own_families(&s.body);
    assert!(own.contains("secure_channel_connection_errors_total{"));
    let complaints = promtool_check_metrics(&own);
    assert!(
        complaints.trim().is_empty(),
        "promtool: {complaints}\n{own}"
    );
}

#[tokio::test]
async fn promtool_parses_the_whole_text_exposition() {
    let sim = sim(&["--connections", "3", "--extended"]);
    let exp = exporter(&sim, &[]);
    let s = scrape(&exp).await;
    let complaints = promtool_check_metrics(&s.body);
    // The only complaints allowed are naming lints on the pool's own
    // families (e.g. "_ms" in secure_channel_latency_ms), never parse errors.
    for line in complaints.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            NATIVE.iter().any(|n| line.starts_with(n)),
            "promtool: {line}\n{complaints}"
        );
    }
}

#[tokio::test]
async fn hostile_label_values_are_escaped_in_both_formats() {
    let hostile = "re\"l\\ay\nü}{,= 443";
    let backend = "b\\\"\n\u{202e}x";
    let sim = sim(&["--steady", "--endpoint", hostile, "--backend", backend]);
    let exp = exporter(&sim, &[]);
    for accept in ["text/plain", OPENMETRICS] {
        let s = scrape_with(&exp, &[("accept", accept)]).await;
        assert_eq!(s.parsed.skipped_lines, 0, "{}", s.body);
        let ep = ("endpoint", hostile);
        assert_eq!(
            s.value("secure_channel_pool_active_connections", &[ep]),
            4.0
        );
        assert_eq!(
            s.value("secure_channel_pool_info", &[ep, ("backend", backend)]),
            1.0
        );
        // Native series carry the same label, re-escaped.
        assert_eq!(s.value("secure_channel_active_connections", &[ep]), 4.0);
        // A raw newline or quote would have left unreadable lines.
        if accept == "text/plain" {
            let complaints = promtool_check_metrics(&own_families(&s.body));
            assert!(complaints.trim().is_empty(), "promtool: {complaints}");
        }
    }
}

#[tokio::test]
async fn landing_health_and_unknown_paths() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &[]);
    let landing = client().get(exp.url("/")).send().await.unwrap();
    assert_eq!(landing.status(), 200);
    let html = landing.text().await.unwrap();
    assert!(html.contains(env!("CARGO_PKG_VERSION")));
    assert!(html.contains(&sim.url("/")), "{html}");
    assert!(html.contains("href=\"/metrics\""));
    let health = client().get(exp.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let missing = client().get(exp.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let post = client().post(exp.url("/metrics")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn connection_cap_keeps_the_worst_and_reports_the_rest() {
    let sim = sim(&["--steady", "--connections", "50"]);
    let exp = exporter(&sim, &["--collector.max-connections", "10"]);
    let s = scrape(&exp).await;
    assert_eq!(
        s.samples("secure_channel_connection_errors_total").len(),
        10
    );
    assert_eq!(
        s.value("secure_channel_exporter_connections_omitted", &[]),
        40.0
    );
    let pool = pool_status(&sim).await;
    let mut errors: Vec<f64> = pool.connections.iter().map(|c| c.errors).collect();
    errors.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let kept_min = s
        .samples("secure_channel_connection_errors_total")
        .iter()
        .map(|x| x.value)
        .fold(f64::INFINITY, f64::min);
    assert!(
        kept_min >= errors[9],
        "kept {kept_min}, 10th worst {}",
        errors[9]
    );
}

#[tokio::test]
async fn native_impostors_are_dropped_and_counted() {
    let sim = sim(&[]);
    fault(&sim, "impostors", "?documents=metrics", true).await;
    let exp = exporter(&sim, &[]);
    let s = scrape(&exp).await;
    // Ours appears once, with our value, never the pool's 999.
    let ours = s.samples("secure_channel_exporter_web_auth_failures_total");
    assert_eq!(ours.len(), 1, "{}", s.body);
    assert_eq!(ours[0].value, 0.0);
    for impostor in [
        "secure_channel_exporter_something_new",
        "up",
        "scrape_duration_seconds",
    ] {
        assert!(s.samples(impostor).is_empty(), "{impostor} passed through");
    }
    assert!(s
        .samples("process_cpu_seconds_total")
        .iter()
        .all(|x| x.value < 12345.0));
    assert_eq!(
        s.value(
            "secure_channel_exporter_native_families_dropped",
            &[("reason", "name_collision")]
        ),
        5.0
    );
    // The pool's own families still pass.
    assert_eq!(s.value("secure_channel_custom_total", &[]), 7.0);
    assert!(s.value("secure_channel_latency_ms_count", &[]) > 0.0);
    let complaints = promtool_check_metrics(&own_families(&s.body));
    assert!(complaints.trim().is_empty(), "promtool: {complaints}");
}
