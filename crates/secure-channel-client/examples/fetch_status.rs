//! Fetches the pool's status and health once and prints them.
//!
//! ```text
//! cargo run -p secure-channel-client --example fetch_status -- http://127.0.0.1:9090
//! POOL_TOKEN_FILE=/run/secrets/pool-token cargo run -p secure-channel-client --example fetch_status
//! ```

use std::time::Duration;

use secure_channel_client::{CallOptions, PoolClient, RetryPolicy, Token};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:9090".to_owned());
    let mut builder = PoolClient::builder()
        .base_url(base_url)
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy::new(3));
    if let Some(path) = std::env::var_os("POOL_TOKEN_FILE") {
        builder = builder.token(Token::file(path));
    }
    let client = builder.build()?;

    let (status, health) = tokio::join!(
        client.status(CallOptions::new()),
        client.health(CallOptions::new())
    );
    match status {
        Ok(status) => {
            println!(
                "{}: {} listed (idle) connections, p95 {:?} ms",
                status.endpoint,
                status.connections.len(),
                status.pool_p95_latency_ms
            );
            for c in &status.connections {
                println!(
                    "  connection {:>4}: errors {}, reconnects {}, p95 {:?} ms, last activity {}",
                    c.connection_id,
                    c.errors,
                    c.reconnects,
                    c.p95_latency_ms,
                    c.last_activity
                        .map_or_else(|| "-".to_owned(), |t| t.to_string())
                );
            }
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        Err(e) => eprintln!("status failed ({}): {e}", e.kind()),
    }
    match health {
        Ok(h) => println!("health: {:?} (healthy: {:?})", h.status, h.is_healthy()),
        Err(e) => eprintln!("health failed ({}): {e}", e.kind()),
    }
    Ok(())
}
