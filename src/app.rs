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
use crate::exposition::{Encoder, Families};
use crate::http::bind::{bind_all, systemd_listeners, BindError};
use crate::http::router::{literal, RouteError};
use crate::http::web::{WebConfigError, WebConfigWatcher};
use crate::http::{self, text, Gate, RouteOptions, Router, ServeOptions, WebStats};
use crate::pool::client::ClientBuildError;
use crate::pool::{PoolClient, PoolSettings, Redactor};
use crate::rest::{self, Api, ApiConfig, ApiMetrics, CacheSettings};
use crate::scrape::self_metrics::{WebFamilies, WebMetrics};
use crate::scrape::{self, Collector, Probe};
use crate::sim::{self, SimConfig, SimHandle, SimPool};
use crate::ui;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Listen(#[from] BindError),
    #[error("cannot start the demo pool: {0}")]
    Demo(std::io::Error),
    #[error("invalid --pool.* settings: {0}")]
    Client(#[from] ClientBuildError),
    #[error("invalid --web.config.file: {0}")]
    WebConfig(#[from] WebConfigError),
    #[error("invalid --web.telemetry-path: {0}")]
    Route(#[from] RouteError),
    #[error("cannot handle SIGHUP: {0}")]
    Signal(std::io::Error),
}

impl StartError {
    /// The process's exit code: 2 for a setting that cannot work (as for a
    /// bad flag), 1 for a failure of the moment (a port in use).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Client(_) | Self::WebConfig(_) | Self::Route(_) => 2,
            Self::Listen(BindError::Systemd(_)) => 2,
            Self::Listen(_) | Self::Demo(_) | Self::Signal(_) => 1,
        }
    }
}

/// SIGHUP reloads the web config (even if its files look unchanged) and
/// re-reads the token file, as Prometheus components do; it never stops
/// the process. A reload that fails keeps the last good settings.
#[cfg(unix)]
fn reload_on_sighup(
    web: Option<Arc<WebConfigWatcher>>,
    token: secure_channel_client::Token,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the web config and the token file");
            if let Some(web) = web.clone() {
                // File reads and, with basic auth, one bcrypt hash.
                let _ = tokio::task::spawn_blocking(move || web.force_reload()).await;
            }
            match token.reload() {
                Ok(true) => tracing::info!("token file re-read"),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "token file reload failed; keeping the last good token"
                ),
            }
        }
    });
    Ok(())
}

/// What the routes of a running exporter share.
struct Exporter {
    collector: Collector,
    probe: Option<Probe>,
    telemetry_path: String,
    scrape_timeout_offset: Duration,
    web: Option<Arc<WebConfigWatcher>>,
    web_metrics: WebMetrics,
    api: Api,
}

/// The liveness paths: ours and Prometheus' own spelling.
pub const LIVENESS: [&str; 2] = ["/health", "/-/healthy"];
/// The families of the web and API layers in the scrape's answer.
struct WebAndApi<'a> {
    web: WebFamilies<'a>,
    api: &'a ApiMetrics,
}

impl Families for WebAndApi<'_> {
    fn encode(&self, encoder: &mut Encoder) {
        self.web.encode(encoder);
        self.api.encode(encoder);
    }

    fn version(&self) -> u64 {
        // Either changing changes the sum's bits somewhere; a collision
        // would only serve web counters one scrape old.
        self.web.version() ^ self.api.version().rotate_left(32)
    }
}

/// Every path the exporter answers. `cors`: whether CORS preflights reach
/// the API.
fn routes(telemetry_path: &str, cors: bool) -> Result<Router<Exporter>, RouteError> {
    let api = RouteOptions {
        preflight: cors,
        json_errors: true,
        ..RouteOptions::default()
    };
    let mut router = Router::<Exporter>::default();
    for &(path, endpoint) in rest::ROUTES {
        router = router.route_with(
            path,
            api,
            move |app: Arc<Exporter>, req, params| async move {
                let id = params
                    .iter()
                    .find(|(k, _)| k == "id")
                    .map(|(_, v)| v.as_str());
                app.api.handle(endpoint, &req, id).await
            },
        )?;
    }
    for path in LIVENESS {
        // Liveness stays open so orchestrators need no credentials, and
        // waits for nothing (see `ServeOptions::unmetered`).
        router = router.public(path, |_: Arc<Exporter>, _, _| async {
            text(StatusCode::OK, "OK\n")
        })?;
    }
    router
        .route("/", |app: Arc<Exporter>, _, _| async move {
            ui::landing::page(&app.telemetry_path, app.collector.pool_url())
        })?
        .route("/status", |app: Arc<Exporter>, req, _| async move {
            ui::status::page(req.uri().query(), || app.api.views()).await
        })?
        .route("/ready", |app: Arc<Exporter>, _, _| async move {
            scrape::routes::ready(&app.collector).await
        })?
        // Prometheus' own spelling of readiness.
        .route("/-/ready", |app: Arc<Exporter>, _, _| async move {
            scrape::routes::ready(&app.collector).await
        })?
        .route(
            &literal(telemetry_path),
            |app: Arc<Exporter>, req, _| async move {
                let reload_ok = app.web.as_ref().is_none_or(|w| w.last_reload_ok());
                let extra = WebAndApi {
                    web: app.web_metrics.with_reload(reload_ok),
                    api: app.api.metrics(),
                };
                scrape::routes::metrics(&app.collector, &req, app.scrape_timeout_offset, &extra)
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
    let router = routes(&config.telemetry_path, config.api.cors.is_some())?;
    let client = PoolClient::new(&config.pool)?;
    // Before the port opens, so that no SIGHUP finds the default action
    // (exit) in place once we are reachable.
    #[cfg(unix)]
    reload_on_sighup(web.clone(), config.pool.token.clone()).map_err(StartError::Signal)?;
    let settings = PoolSettings {
        max_connections: config.max_connections,
        limits: config.limits,
        timeout: config.pool_timeout,
    };
    let probe = (!config.probe_allowed_targets.is_empty()).then(|| {
        Probe::new(
            config.probe_allowed_targets.clone(),
            client.clone(),
            settings,
        )
        .with_connection_filter(config.connections)
    });
    let listeners = if config.systemd_socket {
        systemd_listeners(|k| std::env::var(k).ok())?
    } else {
        bind_all(&config.listen_addresses)?
    };
    // One observer of the pool under every feature: the collector's.
    let redactor = Redactor::new(config.pool.token.clone(), &config.pool.base_url);
    let collector =
        Collector::new(client, settings, redactor).with_connection_filter(config.connections);
    let api = Api::new(
        collector.observer().clone(),
        ApiConfig {
            cache: CacheSettings {
                ttl: config.api.cache_ttl,
                stale_max: config.api.stale_max,
            },
            cors: config.api.cors.clone(),
            rate_limit: config.api.rate_limit,
            rate_limit_burst: config.api.rate_limit_burst,
            monitor_interval: config.api.monitor_interval,
        },
    );
    let settings = web.as_ref().map(|w| w.settings());
    for listener in &listeners {
        tracing::info!(
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            systemd_socket = config.systemd_socket,
            telemetry_path = %config.telemetry_path,
            pool = collector.pool_url(),
            tls = settings.as_ref().is_some_and(|s| s.tls.is_some()),
            basic_auth = settings.as_ref().is_some_and(|s| s.auth_enabled()),
            probe = probe.is_some(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
    }
    let stats = Arc::new(WebStats::default());
    let exporter = Arc::new(Exporter {
        collector,
        probe,
        telemetry_path: config.telemetry_path.clone(),
        scrape_timeout_offset: config.scrape_timeout_offset,
        web_metrics: WebMetrics::new(&stats, web.is_some()),
        web: web.clone(),
        api,
    });
    let mut gate = Gate::new(web.clone(), stats.clone());
    if let Some(cors) = config.api.cors.clone() {
        gate =
            gate.with_refusal_headers(Arc::new(move |headers, resp| cors.decorate(headers, resp)));
    }
    let gate = Arc::new(gate);
    let router = Arc::new(router);
    let handler = move |req: Request<Incoming>| {
        let (gate, router, exporter) = (gate.clone(), router.clone(), exporter.clone());
        async move { Ok::<_, Infallible>(gate.handle(&router, exporter, req).await) }
    };
    let options = ServeOptions {
        max_connections: crate::http::listener::fit_open_file_limit(config.web_max_connections),
        max_requests: config.web_max_requests,
        header_read_timeout: config.web_read_header_timeout,
        write_timeout: config.web_write_timeout,
        web,
        stats,
        unmetered: LIVENESS.map(str::to_owned).to_vec(),
    };
    http::serve_with(listeners, handler, shutdown, options).await;
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
