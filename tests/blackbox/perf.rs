//! Load on the pool: scrapes that arrive while a fetch is in flight share
//! it, counted where it matters, at the pool.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// Requests the simulated pool has received, per document.
async fn pool_requests(sim: &Proc) -> [u64; 3] {
    let (status, state) = get_json(&sim.url("/sim/state"), &[]).await;
    assert_eq!(status, 200);
    ["status", "health", "metrics"].map(|d| state["requests"][d].as_u64().unwrap())
}

fn requests_total(s: &Scrape, source: &str) -> f64 {
    s.value(
        "secure_channel_exporter_source_requests_total",
        &[("source", source)],
    )
}

#[tokio::test]
async fn concurrent_scrapes_share_one_pool_fetch() {
    const SCRAPES: usize = 16;
    let sim = sim(&["--steady", "--connections", "50"]);
    let exp = Arc::new(exporter(&sim, &[]));
    // Slow enough that every scrape arrives while the first fetch is out,
    // even on a busy machine.
    fault(&sim, "slow", "?delay_ms=3000", true).await;
    let before = pool_requests(&sim).await;

    let mut scrapes = tokio::task::JoinSet::new();
    for _ in 0..SCRAPES {
        let exp = exp.clone();
        scrapes.spawn(async move { scrape(&exp).await });
    }
    let mut bodies = Vec::new();
    while let Some(s) = scrapes.join_next().await {
        bodies.push(s.unwrap());
    }
    let after = pool_requests(&sim).await;
    for (i, doc) in ["status", "health", "metrics"].iter().enumerate() {
        let fetched = after[i] - before[i];
        assert!(
            (1..=2).contains(&fetched),
            "{SCRAPES} concurrent scrapes sent the pool {fetched} {doc} requests"
        );
    }
    for s in &bodies {
        assert_eq!(s.status, 200);
        assert_eq!(s.value("secure_channel_up", &[]), 1.0, "{}", s.body);
        assert_eq!(s.value("secure_channel_pool_active_connections", &[]), 50.0);
    }
    // The exporter counts real fetches: what the pool received, not scrapes.
    let counted = bodies
        .iter()
        .map(|s| requests_total(s, "status"))
        .fold(0.0, f64::max);
    assert_eq!(counted, (after[0] - before[0]) as f64);

    // Once the shared fetch is over, the next scrape asks the pool again:
    // nothing is served from a cache.
    fault(&sim, "slow", "", false).await;
    let later = scrape(&exp).await;
    assert_eq!(pool_requests(&sim).await, after.map(|n| n + 1));
    assert_eq!(requests_total(&later, "status"), counted + 1.0);
}

#[tokio::test]
async fn a_scrape_with_a_shorter_timeout_does_not_wait_for_a_slow_shared_fetch() {
    let sim = sim(&["--steady", "--connections", "5"]);
    let exp = Arc::new(exporter(&sim, &["--pool.timeout", "30s"]));
    fault(&sim, "slow", "?delay_ms=5000", true).await;
    // Without the header the fetch may take --pool.timeout: it waits the
    // pool's 5 s out.
    let patient = {
        let exp = exp.clone();
        tokio::spawn(async move { scrape(&exp).await })
    };
    // Its fetch is out once the pool has its requests.
    while pool_requests(&sim).await != [1, 1, 1] {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A 2 s scrape timeout leaves a 1.5 s budget: the hasty scrape is
    // answered, marked as timed out, while the shared fetch is still out.
    let hasty = scrape_with(&exp, &[("X-Prometheus-Scrape-Timeout-Seconds", "2")]).await;
    assert!(
        !patient.is_finished(),
        "the hasty scrape waited for the shared fetch ({:?})",
        hasty.took
    );
    assert_eq!(hasty.source_up("status"), 0.0);
    assert_eq!(hasty.failures("status", "timeout"), 1.0);
    let patient = patient.await.unwrap();
    assert_eq!(patient.source_up("status"), 1.0);
    // Two fetches: the shared one did not serve the hasty scrape.
    assert_eq!(pool_requests(&sim).await, [2, 2, 2]);
}
