//! Retries against flaky fake pools: what is retried, and the deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use secure_channel_client::{CallOptions, ErrorKind, Jitter, PoolClient, RetryPolicy};

fn retrying(url: &str, policy: RetryPolicy) -> PoolClient {
    PoolClient::builder()
        .base_url(url)
        .timeout(Duration::from_secs(20))
        .retry(policy)
        .build()
        .unwrap()
}

fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts)
        .base_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
}

/// Fails the first `n` requests with `fail`, then serves the pool documents.
fn flaky(n: usize, fail: Reply) -> impl Fn(&Request, usize) -> Reply + Send + Sync + 'static {
    let ok = pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY));
    move |req, i| if i < n { fail.clone() } else { ok(req, i) }
}

#[tokio::test]
async fn recovers_from_503_502_504_and_resets() {
    for fail in [
        Reply::empty(503),
        Reply::empty(502),
        Reply::empty(504),
        Reply::Reset,
    ] {
        let pool = FakePool::start(flaky(3, fail.clone())).await;
        for jitter in [Jitter::Full] {
            let c = retrying(&pool.url(), quick(5).jitter(jitter));
            let s = c
                .status(CallOptions::new())
                .await
                .unwrap_or_else(|e| panic!("{fail:?}: {e}"));
            assert_eq!(s.connections.len(), 2);
        }
        assert_eq!(pool.count(), 4, "{fail:?}");
    }
    // Decorrelated and no jitter recover too.
    for jitter in [Jitter::Decorrelated, Jitter::None] {
        let pool = FakePool::start(flaky(2, Reply::empty(503))).await;
        retrying(&pool.url(), quick(3).jitter(jitter))
            .metrics_text(CallOptions::new())
            .await
            .unwrap();
        assert_eq!(pool.count(), 3);
    }
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let pool = FakePool::start(flaky(100, Reply::empty(502))).await;
    let e = retrying(&pool.url(), quick(3))
        .status(CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Status, Some(502)));
    assert_eq!(pool.count(), 3);
}

#[tokio::test]
async fn off_by_default() {
    let pool = FakePool::start(flaky(1, Reply::empty(503))).await;
    let c = PoolClient::builder().base_url(pool.url()).build().unwrap();
    assert_eq!(
        c.status(CallOptions::new()).await.unwrap_err().status(),
        Some(503)
    );
    assert_eq!(pool.count(), 1);
}

#[tokio::test]
async fn never_retries_unauthorized_decode_other_statuses_or_health_503() {
    let cases: Vec<(Reply, ErrorKind)> = vec![
        (
            Reply::text(401, "Unauthorized: Invalid token"),
            ErrorKind::Unauthorized,
        ),
        (Reply::json(200, "{\"endpoint\":"), ErrorKind::Decode),
        (Reply::text(200, "<html>proxy</html>"), ErrorKind::Decode),
        (Reply::empty(500), ErrorKind::Status),
        (Reply::empty(404), ErrorKind::Status),
    ];
    for (reply, kind) in cases {
        let pool = FakePool::start(flaky(100, reply.clone())).await;
        let e = retrying(&pool.url(), quick(5))
            .status(CallOptions::new())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{reply:?}");
        assert_eq!(pool.count(), 1, "{reply:?} was retried");
    }
    // A 503 from /healthz is the pool's health answer: returned, not retried.
    let pool = FakePool::start(flaky(100, Reply::json(503, HEALTH_UNHEALTHY))).await;
    let h = retrying(&pool.url(), quick(5))
        .health(CallOptions::new())
        .await
        .unwrap();
    assert_eq!(h.is_healthy(), Some(false));
    assert_eq!(pool.count(), 1);
    let pool = FakePool::start(flaky(100, Reply::empty(503))).await;
    let e = retrying(&pool.url(), quick(5))
        .health(CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(pool.count(), 1);
}

#[tokio::test]
async fn retries_stay_within_the_deadline() {
    let pool = FakePool::start(flaky(usize::MAX, Reply::empty(503))).await;
    let c = retrying(
        &pool.url(),
        RetryPolicy::new(1000)
            .base_backoff(Duration::from_millis(30))
            .max_backoff(Duration::from_millis(150)),
    );
    let budget = Duration::from_millis(800);
    let started = Instant::now();
    let e = c
        .status(CallOptions::new().deadline(tokio::time::Instant::now() + budget))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // The last error is the pool's 503, or, when the deadline falls in the
    // middle of an attempt (a loaded machine), that attempt's timeout.
    assert!(
        e.status() == Some(503) || e.kind() == secure_channel_client::ErrorKind::Timeout,
        "{e}"
    );
    // A thousand attempts would take minutes; stopping at the deadline
    // takes the budget. Ten budgets is room for a busy machine.
    assert!(elapsed < budget * 10, "{elapsed:?}");
    assert!(pool.count() >= 2, "{}", pool.count());
}

#[tokio::test]
async fn a_backoff_past_the_deadline_returns_the_last_error_at_once() {
    let pool = FakePool::start(flaky(usize::MAX, Reply::empty(503))).await;
    let c = retrying(
        &pool.url(),
        RetryPolicy::new(5)
            .base_backoff(Duration::from_secs(60))
            .max_backoff(Duration::from_secs(60))
            .jitter(Jitter::None),
    );
    // A backoff of a minute against a deadline in 20 s: waiting for
    // either would take 20 s or more; at once is one prompt 503.
    let started = Instant::now();
    let e = c
        .status(CallOptions::new().deadline(tokio::time::Instant::now() + Duration::from_secs(20)))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pool.count(), 1);
}

#[tokio::test]
async fn attempt_timeout_leaves_room_for_another_attempt() {
    // The first answer blocks (like the pool during a relay outage), the
    // second is prompt.
    let ok = pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY));
    let pool = FakePool::start(move |req, i| {
        if i == 0 {
            ok(req, i).delayed(Duration::from_secs(30))
        } else {
            ok(req, i)
        }
    })
    .await;
    let c = retrying(
        &pool.url(),
        quick(3).attempt_timeout(Some(Duration::from_millis(300))),
    );
    let s = c
        .status(CallOptions::new().deadline(tokio::time::Instant::now() + Duration::from_secs(10)))
        .await
        .unwrap();
    // Answered (so within the 10 s deadline) by the second attempt: the
    // first was let go of at its attempt timeout.
    assert_eq!(s.connections.len(), 2);
    assert_eq!(pool.count(), 2);

    // Always slow: a timeout, within the deadline.
    let slow = FakePool::start(|_, _| Reply::empty(200).delayed(Duration::from_secs(30))).await;
    let c = retrying(
        &slow.url(),
        quick(100).attempt_timeout(Some(Duration::from_millis(200))),
    );
    // A hundred attempts of 200 ms would take 20 s or more.
    let budget = Duration::from_millis(900);
    let started = Instant::now();
    let e = c
        .status(CallOptions::new().deadline(tokio::time::Instant::now() + budget))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < budget * 10, "{:?}", started.elapsed());
    assert!(slow.count() >= 2);
}
