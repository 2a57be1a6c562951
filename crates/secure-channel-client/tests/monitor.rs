//! The monitor: snapshots and transitions, each reported once.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use secure_channel_client::{HealthState, Monitor, PoolClient, Snapshot, Transition};
use tokio::sync::{broadcast, watch};

const HEALTHY: u8 = 0;
const UNHEALTHY: u8 = 1;
const UNREACHABLE: u8 = 2;

async fn next_transition(rx: &mut broadcast::Receiver<Transition>) -> Transition {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no transition within 20 s")
        .expect("transition channel closed")
}

/// Waits until `n` more polls have been published; returns the last snapshot.
async fn polls(rx: &mut watch::Receiver<Option<Arc<Snapshot>>>, n: u64) -> Arc<Snapshot> {
    let start = rx.borrow_and_update().as_ref().map_or(0, |s| s.sequence);
    loop {
        tokio::time::timeout(Duration::from_secs(20), rx.changed())
            .await
            .expect("no snapshot within 20 s")
            .unwrap();
        let snap = rx.borrow_and_update().clone().unwrap();
        if snap.sequence >= start + n {
            return snap;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_each_transition_exactly_once_and_publishes_snapshots() {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let m = mode.clone();
    let pool = FakePool::start(
        move |req, _| match (m.load(Ordering::SeqCst), req.path.as_str()) {
            (UNREACHABLE, _) => Reply::Reset,
            (_, "/status/connections") => Reply::json(200, STATUS_SYSTEMTIME),
            (HEALTHY, "/healthz") => Reply::json(200, HEALTH_HEALTHY),
            (_, "/healthz") => Reply::json(503, HEALTH_UNHEALTHY),
            _ => Reply::empty(404),
        },
    )
    .await;
    let client = PoolClient::builder().base_url(pool.url()).build().unwrap();
    let monitor = Monitor::builder(client)
        .interval(Duration::from_millis(40))
        .timeout(Duration::from_secs(5))
        .start();
    let mut transitions = monitor.subscribe();
    let mut snapshots = monitor.snapshots();

    let t = next_transition(&mut transitions).await;
    assert_eq!((t.from, t.to), (None, HealthState::Healthy));
    assert_eq!(t.previous_since, None);
    assert!(t.reason.contains("healthy (HTTP 200"), "{}", t.reason);
    let snap = polls(&mut snapshots, 3).await;
    assert_eq!(snap.state, HealthState::Healthy);
    assert_eq!(snap.status.as_ref().unwrap().connections.len(), 2);
    assert_eq!(snap.health.as_ref().unwrap().is_healthy(), Some(true));
    assert!(snap.last_error.is_none());
    assert!(snap.state_since <= snap.fetched_at);
    let healthy_since = t.at;

    let steps = [
        (
            UNHEALTHY,
            HealthState::Healthy,
            HealthState::Unhealthy,
            "unhealthy (HTTP 503",
        ),
        (
            UNREACHABLE,
            HealthState::Unhealthy,
            HealthState::Unreachable,
            "cannot reach",
        ),
        (
            HEALTHY,
            HealthState::Unreachable,
            HealthState::Healthy,
            "healthy (HTTP 200",
        ),
    ];
    let mut previous_at = healthy_since;
    for (next_mode, from, to, reason) in steps {
        mode.store(next_mode, Ordering::SeqCst);
        let t = next_transition(&mut transitions).await;
        assert_eq!((t.from, t.to), (Some(from), to));
        assert_eq!(t.previous_since, Some(previous_at));
        assert!(t.at >= previous_at);
        assert!(t.reason.contains(reason), "{}", t.reason);
        previous_at = t.at;
        // Several more polls in the same state report nothing new.
        let snap = polls(&mut snapshots, 4).await;
        assert_eq!(snap.state, to);
        assert_eq!(snap.state_since, t.at);
        match to {
            HealthState::Unhealthy => {
                assert_eq!(snap.health.as_ref().unwrap().is_healthy(), Some(false))
            }
            HealthState::Unreachable => {
                assert_eq!(snap.health.as_ref().unwrap_err().kind().as_str(), "connect");
                assert!(snap.status.is_err());
                assert!(snap.last_error.is_some());
            }
            HealthState::Healthy => {
                // The last error stays visible after recovery.
                let (_, e) = snap.last_error.as_ref().unwrap();
                assert_eq!(e.kind().as_str(), "connect");
                assert!(snap.status.is_ok());
            }
        }
        assert!(
            matches!(
                transitions.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ),
            "a transition was reported twice"
        );
    }
    assert_eq!(monitor.latest().unwrap().state, HealthState::Healthy);

    // A later subscriber sees only later transitions.
    let mut late = monitor.subscribe();
    assert!(late.try_recv().is_err());

    monitor.shutdown().await;
    assert!(matches!(
        transitions.recv().await,
        Err(broadcast::error::RecvError::Closed)
    ));
}

#[tokio::test]
async fn dropping_the_monitor_stops_polling() {
    let pool = FakePool::start(pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY))).await;
    let client = PoolClient::builder().base_url(pool.url()).build().unwrap();
    let monitor = Monitor::builder(client)
        .interval(Duration::from_millis(20))
        .start();
    let mut snapshots = monitor.snapshots();
    polls(&mut snapshots, 3).await;
    drop(monitor);
    // The task is gone: the channel closes (after any last unseen value).
    tokio::time::timeout(Duration::from_secs(30), async {
        while snapshots.changed().await.is_ok() {}
    })
    .await
    .expect("the snapshot channel should close");
    // Then no poll comes: over fifteen intervals the count stays. A
    // request already on the wire when the task ended may still land
    // first; it is given half a second (a lost poll would be sent anew
    // every 20 ms, and counted in the window below).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_drop = pool.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.count(), after_drop);
}

#[tokio::test]
async fn a_pool_that_answers_garbage_is_unreachable() {
    let pool = FakePool::start(|_, _| Reply::text(503, "<html>maintenance</html>")).await;
    let client = PoolClient::builder().base_url(pool.url()).build().unwrap();
    let monitor = Monitor::builder(client)
        .interval(Duration::from_millis(50))
        .start();
    let mut transitions = monitor.subscribe();
    let t = next_transition(&mut transitions).await;
    assert_eq!(t.to, HealthState::Unreachable);
    assert!(t.reason.contains("answered HTTP 503"), "{}", t.reason);
}
