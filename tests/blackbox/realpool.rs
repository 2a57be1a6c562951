//! The exporter against the simulator's two pool models (docs/pool-behaviour.md):
//! what a busy, a quiet and a failing published pool look like through the
//! exporter, and what a pool that returns connections adds.

use std::time::Duration;

use crate::common::*;

const EP: (&str, &str) = ("endpoint", "relay.example.net:443");

/// A published pool whose two callers hold every connection (as the real
/// pool's `busy` capture), with a fast cleanup so tests need not wait.
fn busy_published() -> Proc {
    sim(&[
        "--tick",
        "100ms",
        "--cleanup-interval",
        "1s",
        "--callers",
        "2",
        "--ops-per-second",
        "55",
        "--ops-per-checkout",
        "10",
        "--error-fraction",
        "0.1",
    ])
}

async fn sim_state(sim: &Proc) -> serde_json::Value {
    get_json(&sim.url("/sim/state"), &[]).await.1
}

/// Scrapes until `done` holds (at most 600 tries, a minute or more) and
/// returns that scrape.
async fn scrape_until(exp: &Proc, done: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..600 {
        let s = scrape(exp).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "condition not reached; last scrape:\n{}",
        scrape(exp).await.body
    );
}

#[tokio::test]
async fn busy_published_pool_lists_nothing_and_hides_operation_errors() {
    let sim = busy_published();
    let exp = exporter(&sim, &[]);
    let s = scrape_until(&exp, |s| {
        s.samples("secure_channel_pool_active_connections")
            .first()
            .is_some_and(|x| x.value == 0.0)
    })
    .await;
    // Health answers 503, which is data: the pool is fine and busy.
    assert_eq!(s.value("secure_channel_pool_healthy", &[EP]), 0.0);
    assert_eq!(s.source_up("health"), 1.0);
    assert_eq!(s.value("secure_channel_up", &[]), 1.0);
    assert!(s
        .samples("secure_channel_connection_errors_total")
        .is_empty());
    let ops_before = s.value("secure_channel_latency_ms_count", &[EP]);
    let opened_before = s.value("secure_channel_pool_connections_opened_total", &[EP]);

    // Until the callers have failed operations (about 10% of them do) and
    // a cleanup has refilled the list with new ids.
    loop {
        let state = sim_state(&sim).await;
        if state["operation_errors"].as_u64().unwrap() > 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The native histogram counts the operations.
    let s = scrape_until(&exp, |s| {
        s.value("secure_channel_pool_connections_opened_total", &[EP]) > opened_before
            && s.value("secure_channel_latency_ms_count", &[EP]) - ops_before > 50.0
    })
    .await;
    // Nothing the pool publishes shows the failed operations: the
    // exporter must not claim otherwise.
    assert_eq!(
        s.value("secure_channel_pool_connection_errors_seen_total", &[EP]),
        0.0
    );
    assert_eq!(s.value("secure_channel_errors_total", &[EP]), 0.0);
}

#[tokio::test]
async fn quiet_published_pool_lists_unused_connections_that_never_move() {
    let sim = sim(&["--tick", "100ms", "--callers", "0"]);
    let exp = exporter(&sim, &[]);
    let first = scrape(&exp).await;
    assert_eq!(first.value("secure_channel_pool_healthy", &[EP]), 1.0);
    assert_eq!(
        first.value("secure_channel_pool_active_connections", &[EP]),
        4.0
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = scrape(&exp).await;
    let stamps = |s: &Scrape| -> Vec<f64> {
        s.samples("secure_channel_connection_last_activity_timestamp_seconds")
            .iter()
            .map(|x| x.value)
            .collect()
    };
    assert_eq!(stamps(&first).len(), 4);
    assert_eq!(
        stamps(&first),
        stamps(&later),
        "idle connections do not move"
    );
    for name in [
        "secure_channel_connection_errors_total",
        "secure_channel_connection_p95_latency_seconds",
    ] {
        assert!(later.samples(name).iter().all(|x| x.value == 0.0), "{name}");
    }
    // The pool observed only the four handshakes.
    assert_eq!(later.value("secure_channel_latency_ms_count", &[EP]), 4.0);
}

#[tokio::test]
async fn returning_pool_errors_count_from_before_their_first_scrape() {
    let sim = sim(&[
        "--model",
        "returning",
        "--tick",
        "100ms",
        "--callers",
        "2",
        "--ops-per-second",
        "400",
        "--error-fraction",
        "0.05",
    ]);
    let exp = exporter(&sim, &[]);
    let s = scrape(&exp).await;
    let listed: f64 = s
        .samples("secure_channel_connection_errors_total")
        .iter()
        .map(|x| x.value)
        .sum();
    assert!(listed > 0.0, "the returning model lists used connections");
    // The first scrape already counts what the connections had: rate() of
    // the per-connection series would see none of it.
    assert_eq!(
        s.value("secure_channel_pool_connection_errors_seen_total", &[EP]),
        listed
    );
    assert!(s.value("secure_channel_pool_p95_latency_seconds", &[EP]) > 0.0);
}

#[tokio::test]
async fn relay_outage_blocks_status_and_health_and_fails_opens() {
    let sim = busy_published();
    let exp = exporter(&sim, &["--pool.timeout", "1s"]);
    let before = scrape(&exp).await;
    assert_eq!(before.value("secure_channel_up", &[]), 1.0);
    let open_errors_before = before.value("secure_channel_errors_total", &[EP]);
    fault(&sim, "relay_outage", "", true).await;
    // Until the blocked documents time out and failed opens show.
    let s = scrape_until(&exp, |s| {
        s.value("secure_channel_up", &[]) == 0.0
            && s.value("secure_channel_errors_total", &[EP]) > open_errors_before
    })
    .await;
    // Cut at the 1 s deadline, not held for the pool's 30 s.
    assert!(
        s.took < Duration::from_secs(15),
        "held past the deadline: {:?}",
        s.took
    );
    // Both blocked documents timed out (in this scrape, and perhaps in
    // the ones before it that waited for the failed opens to show).
    assert_eq!(s.source_up("status"), 0.0);
    assert_eq!(s.source_up("health"), 0.0);
    assert!(s.failures("status", "timeout") >= 1.0, "{}", s.body);
    assert!(s.failures("health", "timeout") >= 1.0, "{}", s.body);
    // The native metrics do not take the pool's lock: they still answer,
    // and show the failed opens.
    assert_eq!(s.source_up("metrics"), 1.0);
    assert!(s.value("secure_channel_errors_total", &[EP]) > open_errors_before);
    // Without an endpoint from the status document, pool_healthy keeps the
    // one the native metrics name, or is absent: never unlabelled.
    assert!(s
        .samples("secure_channel_pool_healthy")
        .iter()
        .all(|x| x.labels.iter().any(|(n, _)| n == "endpoint")));

    fault(&sim, "relay_outage", "", false).await;
    let s = scrape_until(&exp, |s| s.value("secure_channel_up", &[]) == 1.0).await;
    assert_eq!(s.source_up("health"), 1.0);
}

#[tokio::test]
async fn a_pool_restart_keeps_the_opened_counter_monotonic() {
    // Idle connections live 2 s, so ids climb while the pool runs.
    let sim = sim(&[
        "--tick",
        "100ms",
        "--callers",
        "0",
        "--connections",
        "6",
        "--max-age",
        "2s",
        "--cleanup-interval",
        "1s",
    ]);
    let exp = exporter(&sim, &[]);
    let ids = |s: &Scrape| -> Vec<u64> {
        s.samples("secure_channel_connection_errors_total")
            .iter()
            .flat_map(|x| x.labels.iter().filter(|(n, _)| n == "connection_id"))
            .map(|(_, v)| v.parse().unwrap())
            .collect()
    };
    // A minute of simulated history behind it: ids are well past 12.
    let before = scrape_until(&exp, |s| ids(s).iter().min().is_some_and(|id| *id > 12)).await;
    let opened_before = before.value("secure_channel_pool_connections_opened_total", &[EP]);
    fault(&sim, "restart", "", true).await;
    let after = scrape(&exp).await;
    let highest = *ids(&after).iter().max().unwrap();
    assert!(highest <= 12, "ids restarted at 1: {:?}", ids(&after));
    // Every id of the new process is a connection opened since.
    assert_eq!(
        after.value("secure_channel_pool_connections_opened_total", &[EP]),
        opened_before + highest as f64
    );
}

#[tokio::test]
async fn pool_healthy_is_absent_until_a_document_names_the_pool() {
    let sim = sim(&[]);
    fault(&sim, "http_500", "?documents=status,metrics", true).await;
    let exp = exporter(&sim, &[]);
    let s = scrape(&exp).await;
    assert_eq!(s.source_up("health"), 1.0);
    assert!(
        s.samples("secure_channel_pool_healthy").is_empty(),
        "{}",
        s.body
    );
    fault(&sim, "http_500", "", false).await;
    let s = scrape(&exp).await;
    assert_eq!(s.value("secure_channel_pool_healthy", &[EP]), 1.0);
}

#[tokio::test]
async fn simulator_refuses_tokens_in_the_pool_own_words() {
    let token = temp_file("realpool-token", "s3cret\n");
    let sim = sim(&["--token-file", token.to_str().unwrap()]);
    for (given, body) in [
        (None, "Unauthorized: Missing X-Auth-Token header"),
        (Some("wrong"), "Unauthorized: Invalid token"),
    ] {
        let mut req = client().get(sim.url("/metrics"));
        if let Some(t) = given {
            req = req.header("x-auth-token", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("content-type").is_none());
        assert_eq!(resp.text().await.unwrap(), body);
    }
    let ok = client()
        .get(sim.url("/metrics"))
        .header("x-auth-token", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn demo_runs_either_model() {
    for (model, extended) in [("published", false), ("returning", true)] {
        let exp = Proc::start(
            EXPORTER,
            &[
                "--web.listen-address",
                "127.0.0.1:0",
                "--demo",
                "--demo.model",
                model,
            ],
            &[],
        );
        let s = scrape(&exp).await;
        assert_eq!(s.value("secure_channel_up", &[]), 1.0, "{model}");
        assert_eq!(
            !s.samples("secure_channel_connection_healthy").is_empty(),
            extended,
            "{model}: only builds that return connections report is_healthy"
        );
    }
}
