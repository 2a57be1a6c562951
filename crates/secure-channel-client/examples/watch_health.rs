//! Monitors a pool and prints each health transition for `WATCH_SECONDS`
//! (default 60), then the latest snapshot.
//!
//! ```text
//! cargo run -p secure-channel-client --example watch_health -- http://127.0.0.1:9090
//! ```
//!
//! Remember (published pool): "unhealthy" means the idle list is empty,
//! which a busy pool that works fine also reports.

use std::time::Duration;

use secure_channel_client::{Monitor, PoolClient, Timestamp};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:9090".to_owned());
    let seconds: u64 = std::env::var("WATCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let client = PoolClient::builder()
        .base_url(base_url)
        .timeout(Duration::from_secs(5))
        .build()?;
    let monitor = Monitor::builder(client)
        .interval(Duration::from_secs(1))
        .start();
    let mut transitions = monitor.subscribe();
    let watch = async {
        while let Ok(t) = transitions.recv().await {
            let from = t.from.map_or("(start)".to_owned(), |s| s.to_string());
            println!("{from} -> {}: {}", t.to, t.reason);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(seconds), watch).await;
    if let Some(last) = monitor.latest() {
        println!(
            "after {} polls: {} since {}",
            last.sequence,
            last.state,
            Timestamp::from(last.state_since)
        );
    }
    monitor.shutdown().await;
    Ok(())
}
