//! Wires a validated [`Config`] into a running exporter: the features'
//! routes in one table, behind the gate, on the listener.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;

use crate::cli::Config;
use crate::http::router::{literal, RouteError};
use crate::http::web::{WebConfigError, WebConfigWatcher};
use crate::http::{self, text, Gate, Router, ServeOptions, WebStats};
use crate::pool::client::ClientBuildError;
use crate::pool::PoolClient;
use crate::scrape::self_metrics::WebMetrics;
use crate::scrape::{self, Collector, Probe};
use crate::sim::{self, SimConfig, SimHandle, SimPool};
use crate::ui;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot start the demo pool: {0}")]
    Demo(std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error("invalid --web.telemetry-path: {0}")]
    Route(#[from] RouteError),
}

/// What the routes of a running exporter share.
struct Exporter {
    collector: Collector,
    probe: Option<Probe>,
    telemetry_path: String,
    scrape_timeout_offset: Duration,
    web: Option<Arc<WebConfigWatcher>>,
    web_metrics: WebMetrics,
}

/// Every path the exporter answers.
fn routes(telemetry_path: &str) -> Result<Router<Exporter>, RouteError> {
    Router::<Exporter>::default()
        // Liveness stays open so orchestrators need no credentials.
        .public("/health", |_: Arc<Exporter>, _, _| async {
            text(StatusCode::OK, "OK\n")
        })?
        .route("/", |app: Arc<Exporter>, _, _| async move {
            ui::landing::page(&app.telemetry_path, app.collector.pool_url())
        })?
        .route("/ready", |app: Arc<Exporter>, _, _| async move {
            scrape::routes::ready(&app.collector).await
        })?
        .route(
            &literal(telemetry_path),
            |app: Arc<Exporter>, req, _| async move {
                let reload_ok = app.web.as_ref().is_none_or(|w| w.last_reload_ok());
                let web_metrics = |format| app.web_metrics.render(reload_ok, format);
                scrape::routes::metrics(
                    &app.collector,
                    &req,
                    app.scrape_timeout_offset,
                    web_metrics,
                )
                .await
            },
        )?
        .route("/probe", |app: Arc<Exporter>, req, _| async move {
            scrape::routes::probe(app.probe.as_ref(), &req, app.scrape_timeout_offset).await
        })
}

/// Runs the exporter until `shutdown` resolves.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let demo = if let Some(model) = config.demo {
        Some(start_demo_pool(model, &mut config, shutdown_rx.clone()).await?)
    } else {
        None
    };

    // Validate everything that can fail before binding the port.
    let web = config
        .web_config_file
        .clone()
        .map(WebConfigWatcher::new)
        .transpose()?
        .map(Arc::new);
    let router = routes(&config.telemetry_path)?;
    let client = PoolClient::new(&config.pool)?;
    let probe = (!config.probe_allowed_targets.is_empty()).then(|| {
        Probe::new(
            config.probe_allowed_targets.clone(),
            client.clone(),
            config.max_connections,
            config.pool_timeout,
        )
        .with_connection_filter(config.connections)
    });
    let listener = TcpListener::bind(&config.listen_address)
        .await
        .map_err(|source| StartError::Listen {
            address: config.listen_address.clone(),
            source,
        })?;
    let collector = Collector::new(client, config.max_connections, config.pool_timeout)
        .with_connection_filter(config.connections);
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.listen_address.clone());
    let settings = web.as_ref().map(|w| w.settings());
    tracing::info!(
        address = %address,
        telemetry_path = %config.telemetry_path,
        pool = collector.pool_url(),
        tls = settings.as_ref().is_some_and(|s| s.tls.is_some()),
        basic_auth = settings.as_ref().is_some_and(|s| s.auth_enabled()),
        probe = probe.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    let stats = Arc::new(WebStats::default());
    let exporter = Arc::new(Exporter {
        collector,
        probe,
        telemetry_path: config.telemetry_path.clone(),
        scrape_timeout_offset: config.scrape_timeout_offset,
        web_metrics: WebMetrics::new(&stats, web.is_some()),
        web: web.clone(),
    });
    let gate = Arc::new(Gate::new(web.clone(), stats.clone()));
    let router = Arc::new(router);
    let handler = move |req: Request<Incoming>| {
        let (gate, router, exporter) = (gate.clone(), router.clone(), exporter.clone());
        async move { Ok::<_, Infallible>(gate.handle(&router, exporter, req).await) }
    };
    let options = ServeOptions {
        max_connections: config.web_max_connections,
        web,
        stats,
    };
    http::serve_with(listener, handler, shutdown, options).await;
    let _ = shutdown_tx.send(true);
    if let Some(demo) = demo {
        let _ = tokio::time::timeout(Duration::from_secs(2), demo).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the simulated pool on a free loopback port and points the
/// exporter at it.
async fn start_demo_pool(
    model: sim::Model,
    config: &mut Config,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(StartError::Demo)?;
    let address = listener.local_addr().map_err(StartError::Demo)?;
    // A lightly used pool whose cleanup runs often enough that the idle
    // list visibly drains and refills within a minute or two.
    let sim_config = SimConfig {
        model,
        backend: Some("demo".into()),
        max_age: Duration::from_secs(120),
        cleanup_interval: Duration::from_secs(30),
        // Builds that return connections also report the optional fields.
        extended: model == sim::Model::Returning,
        ..SimConfig::default()
    };
    let handle = SimHandle::new(SimPool::new(sim_config, sim::server::now_unix()));
    config.pool.base_url = format!("http://{address}/")
        .parse()
        .expect("a socket address forms a valid URL");
    tracing::info!(
        pool = %config.pool.base_url,
        model = model.name(),
        faults = %format!("curl -X PUT http://{address}/sim/faults/latency_spike"),
        "demo mode: serving a simulated pool"
    );
    Ok(tokio::spawn(sim::serve(
        listener,
        handle,
        Duration::from_secs(1),
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        },
    )))
}
