//! The check's only I/O: each of the pool's documents fetched once, at the
//! same time, through the exporter's own pool client.

use std::time::Duration;

use secure_channel_client::{CallOptions, Document};
use tokio::time::Instant;

use super::{assess, Report};
use crate::pool::{client::ClientBuildError, PoolClient, PoolClientConfig};

/// Fetches the status, health and metrics documents within `timeout` and
/// reads them. Fails only when the client cannot be built (a CA,
/// certificate or key file that cannot be used).
pub async fn run(config: &PoolClientConfig, timeout: Duration) -> Result<Report, ClientBuildError> {
    let client = PoolClient::new(config)?;
    let api = client.api_client();
    let within = CallOptions::new().deadline(Instant::now() + timeout);
    let (status, health, metrics) = tokio::join!(
        api.fetch(Document::Status, within),
        api.fetch(Document::Health, within),
        api.fetch(Document::Metrics, within),
    );
    let url = |doc| client.display_url(doc).to_owned();
    Ok(assess(
        client.display_base().to_owned(),
        config.token.is_some(),
        [
            (url(Document::Status), status),
            (url(Document::Health), health),
            (url(Document::Metrics), metrics),
        ],
    ))
}
