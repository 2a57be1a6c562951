//! Every way the pool can fail: the scrape still answers 200 with what
//! worked, marks the failed source with its reason, and logs why.

use crate::common::*;

const SOURCES: [&str; 3] = ["status", "health", "metrics"];

/// Asserts `failed` sources are down for `reason`, the others up, and a
/// warning names the URL and the reason.
fn assert_failed(s: &Scrape, exp: &Proc, failed: &[&str], reason: &str) {
    assert_eq!(s.status, 200, "{}", s.body);
    for source in SOURCES {
        let is_failed = failed.contains(&source);
        assert_eq!(
            s.source_up(source),
            if is_failed { 0.0 } else { 1.0 },
            "source {source}; body:\n{}",
            s.body
        );
        assert_eq!(
            s.failures(source, reason),
            if is_failed { 1.0 } else { 0.0 },
            "failures {source}/{reason}"
        );
        assert!(
            s.value(
                "secure_channel_exporter_source_requests_total",
                &[("source", source)]
            ) >= 1.0
        );
    }
    assert_eq!(
        s.value("secure_channel_up", &[]),
        if failed.contains(&"status") { 0.0 } else { 1.0 }
    );
    if failed.contains(&"status") {
        assert!(s
            .samples("secure_channel_connection_errors_total")
            .is_empty());
    }
    if !failed.contains(&"metrics") {
        assert!(!s.samples("secure_channel_active_connections").is_empty());
    }
    for source in failed {
        let line = exp.wait_for_log(&format!("document={source} reason={reason}"));
        assert!(line.contains("level=WARN"), "{line}");
        assert!(line.contains("url=http://127.0.0.1:"), "{line}");
    }
}

async fn with_fault(fault_name: &str, documents: &str) -> (Proc, Proc, Scrape) {
    let sim = sim(&[]);
    fault(&sim, fault_name, &format!("?documents={documents}"), true).await;
    let exp = exporter(&sim, &["--pool.timeout", "3s"]);
    let s = scrape(&exp).await;
    (sim, exp, s)
}

#[tokio::test]
async fn pool_refusing_connections() {
    let port = closed_port();
    let exp = exporter_with_env(&format!("http://127.0.0.1:{port}/"), &[], &[]);
    let s = scrape(&exp).await;
    assert_failed(&s, &exp, &SOURCES, "connect");
    assert!(s.value("process_open_fds", &[]) > 0.0);
}

#[tokio::test]
async fn pool_dropping_connections() {
    let (_sim, exp, s) = with_fault("down", "status,health,metrics").await;
    assert_failed(&s, &exp, &SOURCES, "connect");
}

#[tokio::test]
async fn pool_answering_500() {
    let (_sim, exp, s) = with_fault("http_500", "status").await;
    assert_failed(&s, &exp, &["status"], "status");
    // Health and metrics still tell the story, with the endpoint label.
    assert_eq!(
        s.value(
            "secure_channel_pool_healthy",
            &[("endpoint", "relay.example.net:443")]
        ),
        1.0
    );
}

#[tokio::test]
async fn health_500_without_json_is_a_failure() {
    let (_sim, exp, s) = with_fault("http_500", "health").await;
    assert_failed(&s, &exp, &["health"], "status");
    assert!(s.samples("secure_channel_pool_healthy").is_empty());
}

#[tokio::test]
async fn pool_answering_401() {
    let (_sim, exp, s) = with_fault("unauthorized", "status,metrics").await;
    assert_failed(&s, &exp, &["status", "metrics"], "unauthorized");
}

#[tokio::test]
async fn html_error_pages() {
    let (_sim, exp, s) = with_fault("html", "status,health,metrics").await;
    assert_failed(&s, &exp, &SOURCES, "decode");
}

#[tokio::test]
async fn malformed_documents() {
    let (_sim, exp, s) = with_fault("malformed", "status,health,metrics").await;
    assert_failed(&s, &exp, &SOURCES, "decode");
}

#[tokio::test]
async fn truncated_documents() {
    let (_sim, exp, s) = with_fault("truncated", "status,health,metrics").await;
    // Half a JSON document cannot be decoded; half an exposition still has
    // readable families, and what is cut off is counted.
    assert_failed(&s, &exp, &["status", "health"], "decode");
    let lost = s.value("secure_channel_exporter_native_lines_skipped", &[])
        + s.value(
            "secure_channel_exporter_native_families_dropped",
            &[("reason", "invalid")],
        );
    assert!(lost >= 1.0, "{}", s.body);
    assert!(s.family("secure_channel_active_connections").is_some());
}

#[tokio::test]
async fn oversized_bodies_are_refused_while_streaming() {
    let (sim, exp, s) = with_fault("oversized", "status,metrics").await;
    assert_failed(&s, &exp, &["status", "metrics"], "too_large");
    // The cap is a flag: with room for 32 MiB the same bodies decode. Two
    // 32 MiB bodies take a debug build on a busy machine longer than the
    // default --pool.timeout, which is not what this case is about.
    let roomy = exporter(
        &sim,
        &["--pool.max-body-size", "40MiB", "--pool.timeout", "120s"],
    );
    let s = scrape(&roomy).await;
    assert_eq!(s.value("secure_channel_up", &[]), 1.0);
    assert_eq!(s.source_up("metrics"), 1.0);
}

#[tokio::test]
async fn garbage_metrics_text_keeps_the_json_series() {
    let (_sim, exp, s) = with_fault("malformed", "metrics").await;
    assert_failed(&s, &exp, &["metrics"], "decode");
    assert_eq!(s.samples("secure_channel_connection_errors_total").len(), 4);
}

#[tokio::test]
async fn slow_pool_is_cut_at_the_scrape_deadline() {
    let sim = sim(&[]);
    fault(
        &sim,
        "slow",
        "?documents=status,metrics&delay_ms=60000",
        true,
    )
    .await;
    // A 4 s scrape timeout less a 2 s offset: a 2 s budget, and 2 s of
    // room for the answer to reach Prometheus even on a busy machine.
    let exp = exporter(
        &sim,
        &["--pool.timeout", "90s", "--web.scrape-timeout-offset", "2s"],
    );
    let s = scrape_with(&exp, &[("x-prometheus-scrape-timeout-seconds", "4")]).await;
    assert!(
        s.took.as_secs_f64() < 4.0,
        "answered after {:?}, past Prometheus' 4 s timeout",
        s.took
    );
    assert_failed(&s, &exp, &["status", "metrics"], "timeout");
    // The fetch was given the budget, not less, and let go of at its end,
    // long before the pool's minute.
    let took = s.value(
        "secure_channel_exporter_source_duration_seconds",
        &[("source", "status")],
    );
    assert!((1.8..4.0).contains(&took), "{took}");
}

#[tokio::test]
async fn pool_timeout_caps_the_deadline() {
    let sim = sim(&[]);
    fault(&sim, "slow", "?documents=health&delay_ms=60000", true).await;
    let exp = exporter(&sim, &["--pool.timeout", "800ms"]);
    // Prometheus would wait a minute; --pool.timeout lets go after 0.8 s.
    let s = scrape_with(&exp, &[("x-prometheus-scrape-timeout-seconds", "60")]).await;
    assert_failed(&s, &exp, &["health"], "timeout");
    let took = s.value(
        "secure_channel_exporter_source_duration_seconds",
        &[("source", "health")],
    );
    assert!((0.7..30.0).contains(&took), "{took}");
    assert!(s.took.as_secs_f64() < 30.0, "{:?}", s.took);
}

#[tokio::test]
async fn unhealthy_pool_is_data_not_a_failure() {
    let sim = sim(&["--tick", "100ms"]);
    fault(&sim, "empty_pool", "", true).await;
    let raw = client().get(sim.url("/healthz")).send();
    let exp = exporter(&sim, &[]);
    // Wait for the simulator to close its connections.
    let mut s = scrape(&exp).await;
    for _ in 0..50 {
        if s.value("secure_channel_pool_active_connections", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s = scrape(&exp).await;
    }
    assert_eq!(raw.await.unwrap().status(), 503);
    assert_failed(&s, &exp, &[], "status");
    let ep = ("endpoint", "relay.example.net:443");
    assert_eq!(s.value("secure_channel_pool_healthy", &[ep]), 0.0);
    assert_eq!(
        s.value("secure_channel_pool_active_connections", &[ep]),
        0.0
    );
    assert!(s
        .samples("secure_channel_connection_errors_total")
        .is_empty());
}

#[tokio::test]
async fn failures_accumulate_across_scrapes_and_recover() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &[]);
    fault(&sim, "http_500", "?documents=status", true).await;
    scrape(&exp).await;
    scrape(&exp).await;
    fault(&sim, "http_500", "", false).await;
    let s = scrape(&exp).await;
    assert_eq!(s.value("secure_channel_up", &[]), 1.0);
    assert_eq!(s.failures("status", "status"), 2.0);
    assert_eq!(
        s.value(
            "secure_channel_exporter_source_requests_total",
            &[("source", "status")]
        ),
        3.0
    );
}
