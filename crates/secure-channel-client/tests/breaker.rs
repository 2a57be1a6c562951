//! The circuit breaker: opens, fails fast, half-opens, closes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use secure_channel_client::{CallOptions, CircuitBreaker, CircuitState, ErrorKind, PoolClient};

/// Serves 503 while `down` is set, the documents otherwise.
async fn switchable(down: Arc<AtomicBool>, delay: Duration) -> FakePool {
    let ok = pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY));
    FakePool::start(move |req, i| {
        let r = if down.load(Ordering::SeqCst) {
            Reply::empty(503)
        } else {
            ok(req, i)
        };
        if delay.is_zero() {
            r
        } else {
            r.delayed(delay)
        }
    })
    .await
}

fn with_breaker(url: &str, threshold: u32, cooldown: Duration) -> PoolClient {
    PoolClient::builder()
        .base_url(url)
        .circuit_breaker(CircuitBreaker::new(threshold, cooldown))
        .build()
        .unwrap()
}

#[tokio::test]
async fn opens_fails_fast_half_opens_and_closes() {
    let down = Arc::new(AtomicBool::new(true));
    let pool = switchable(down.clone(), Duration::ZERO).await;
    // Long enough that the checks of the open state below run within it
    // even on a busy machine.
    let cooldown = Duration::from_secs(2);
    let c = with_breaker(&pool.url(), 3, cooldown);
    assert_eq!(
        c.circuit_state(),
        Some(CircuitState::Closed { failures: 0 })
    );
    for _ in 0..3 {
        assert_eq!(
            c.status(CallOptions::new()).await.unwrap_err().status(),
            Some(503)
        );
    }
    assert_eq!(pool.count(), 3);
    assert!(matches!(c.circuit_state(), Some(CircuitState::Open { .. })));

    // Open: fails fast without a request (the pool's count stays), for
    // this client and its clones.
    let clone = c.clone();
    for e in [
        c.status(CallOptions::new()).await.unwrap_err(),
        clone.metrics_text(CallOptions::new()).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        assert_eq!(e.kind().as_str(), "circuit_open");
        assert!(e.is_circuit_open());
        let retry_at = e.retry_at().expect("an open breaker says until when");
        assert!(retry_at <= std::time::SystemTime::now() + cooldown);
        assert!(
            e.to_string().contains("after 3 consecutive failures"),
            "{e}"
        );
        assert!(e.to_string().contains("failing fast for another"), "{e}");
        assert!(e.to_string().contains("(until 20"), "{e}");
    }
    assert_eq!(pool.count(), 3);

    // After the cooldown one probe goes through; it succeeds and closes.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    assert_eq!(c.circuit_state(), Some(CircuitState::HalfOpen));
    c.status(CallOptions::new()).await.unwrap();
    assert_eq!(pool.count(), 4);
    assert_eq!(
        c.circuit_state(),
        Some(CircuitState::Closed { failures: 0 })
    );
    clone.health(CallOptions::new()).await.unwrap();
}

#[tokio::test]
async fn a_failed_probe_opens_again() {
    let down = Arc::new(AtomicBool::new(true));
    let pool = switchable(down, Duration::ZERO).await;
    let cooldown = Duration::from_secs(2);
    let c = with_breaker(&pool.url(), 2, cooldown);
    for _ in 0..2 {
        c.status(CallOptions::new()).await.unwrap_err();
    }
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().status(),
        Some(503)
    );
    assert_eq!(pool.count(), 3);
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(pool.count(), 3);
}

#[tokio::test]
async fn only_one_probe_at_a_time() {
    let down = Arc::new(AtomicBool::new(true));
    // The probe is held 2 s by the pool: the concurrent call below comes
    // while it is out, even on a busy machine.
    let pool = switchable(down.clone(), Duration::from_secs(2)).await;
    let cooldown = Duration::from_millis(300);
    let c = with_breaker(&pool.url(), 1, cooldown);
    c.status(CallOptions::new()).await.unwrap_err();
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    let probe = {
        let c = c.clone();
        tokio::spawn(async move { c.status(CallOptions::new()).await })
    };
    // Wait until the probe reached the server, then try concurrently.
    let waited = Instant::now();
    while pool.count() < 2 && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    probe.await.unwrap().unwrap();
    c.status(CallOptions::new()).await.unwrap();
    assert_eq!(pool.count(), 3);
}

#[tokio::test]
async fn answers_are_not_failures() {
    // 401s, undecodable bodies and health 503 answers show the pool is up.
    let pool = FakePool::start(|req, _| match req.path.as_str() {
        "/status/connections" => Reply::text(401, "Unauthorized: Invalid token"),
        "/metrics" => Reply::text(200, "\u{0}"),
        _ => Reply::json(503, HEALTH_UNHEALTHY),
    })
    .await;
    let c = with_breaker(&pool.url(), 1, Duration::from_secs(60));
    for _ in 0..3 {
        assert_eq!(
            c.status(CallOptions::new()).await.unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            c.health(CallOptions::new()).await.unwrap().is_healthy(),
            Some(false)
        );
    }
    assert_eq!(
        c.circuit_state(),
        Some(CircuitState::Closed { failures: 0 })
    );
    assert_eq!(pool.count(), 6);
}

#[tokio::test]
async fn connect_failures_open_it() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = with_breaker(&format!("http://{addr}"), 2, Duration::from_secs(60));
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::Connect
    );
    assert_eq!(
        c.health(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::Connect
    );
    assert_eq!(
        c.metrics_text(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
}

#[tokio::test]
async fn retries_stop_when_the_breaker_opens() {
    let pool = FakePool::start(|_, _| Reply::empty(503)).await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .circuit_breaker(CircuitBreaker::new(2, Duration::from_secs(60)))
        .retry(
            secure_channel_client::RetryPolicy::new(10)
                .base_backoff(Duration::from_millis(10))
                .max_backoff(Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    // Two attempts open the breaker; the call returns the last real error.
    let e = c.status(CallOptions::new()).await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(pool.count(), 2);
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
}

/// Issue 18, item 10: a caller's own short deadline says nothing about the
/// pool. Three calls cut off by a short deadline leave the breaker closed
/// for every clone; ten calls with an expired deadline never reach the pool.
#[tokio::test]
async fn caller_deadlines_are_not_pool_failures() {
    // The first three requests are answered far too late, the rest at once.
    let ok = pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY));
    let pool = FakePool::start(move |req, i| {
        let r = ok(req, i);
        if i < 3 {
            r.delayed(Duration::from_secs(30))
        } else {
            r
        }
    })
    .await;
    let c = with_breaker(&pool.url(), 3, Duration::from_secs(60));
    let clone = c.clone();
    // Long enough for each request to reach the pool even on a busy
    // machine, so that the count below is the pool's and not the clock's.
    for _ in 0..3 {
        let e = c
            .status(CallOptions::new().timeout(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while pool.count() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the three timed-out requests reached the pool");
    assert_eq!(
        c.circuit_state(),
        Some(CircuitState::Closed { failures: 0 })
    );
    for _ in 0..10 {
        let expired = tokio::time::Instant::now() - Duration::from_millis(1);
        let e = clone
            .status(CallOptions::new().deadline(expired))
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(e.to_string().contains("had passed before the call"), "{e}");
    }
    assert_eq!(pool.count(), 3, "an expired deadline reached the pool");
    assert_eq!(
        clone.circuit_state(),
        Some(CircuitState::Closed { failures: 0 })
    );
    clone.status(CallOptions::new()).await.unwrap();
}

/// The client's own timeout is the pool's failure to answer in the time
/// the operator allowed: that counts.
#[tokio::test]
async fn the_clients_own_timeout_counts() {
    let pool = FakePool::start(|_, _| {
        Reply::json(200, STATUS_SYSTEMTIME).delayed(Duration::from_secs(30))
    })
    .await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .timeout(Duration::from_millis(100))
        .circuit_breaker(CircuitBreaker::new(2, Duration::from_secs(60)))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(c.status(CallOptions::new()).await.unwrap_err().is_timeout());
    }
    assert!(c
        .status(CallOptions::new())
        .await
        .unwrap_err()
        .is_circuit_open());
    assert_eq!(pool.count(), 2);
}
