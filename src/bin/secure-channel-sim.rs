//! A simulated SecureChannelPool for demos, tests and benchmarks.

use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use secure_channel_exporter::cli::{
    dotted_help, explain_parse_error, normalize_args, parse_duration, parse_listen_address,
};
use secure_channel_exporter::http::web::WebConfigWatcher;
use secure_channel_exporter::http::{shutdown_signal, ServeOptions};
use secure_channel_exporter::logging::{self, LogFormat, LogLevel};
use secure_channel_exporter::sim::{self, Load, Model, SimConfig, SimHandle, SimPool, TimeFormat};

/// A simulated SecureChannelPool speaking the pool's wire format, with faults
/// and load switchable at run time: PUT/DELETE /sim/faults/NAME, PUT
/// /sim/load?callers=N&ops_per_second=F&..., PUT /sim/connections?count=N,
/// GET /sim/state. With --pools N, one process serves N independent pools
/// on N consecutive ports, each with its own control API.
#[derive(FromArgs)]
struct SimArgs {
    /// address to listen on (default 127.0.0.1:9090); with --pools N, the first of N consecutive ports
    #[argh(option, default = "String::from(\"127.0.0.1:9090\")")]
    web_listen_address: String,
    /// independent pools to serve, one per port from --web.listen-address up; each gets seed+i and the endpoint pool-I.ENDPOINT (I from 0) (default 1)
    #[argh(option, default = "1")]
    pools: u16,
    /// pool build to behave like: published (checked-out connections never come back; only idle ones are listed) or returning (default published)
    #[argh(option, default = "String::from(\"published\")")]
    model: String,
    /// min_idle: idle connections the cleanup refills to (returning model: connections listed) (default 4)
    #[argh(option, default = "4")]
    connections: usize,
    /// callers using the pool at once; 0 is a quiet pool (default 1)
    #[argh(option, default = "1")]
    callers: u32,
    /// operations per second over all callers (default 5)
    #[argh(option, default = "5.0")]
    ops_per_second: f64,
    /// operations a caller does on one checked-out connection (default 500)
    #[argh(option, default = "500")]
    ops_per_checkout: u32,
    /// share of operations that fail (default 0.001)
    #[argh(option, default = "0.001")]
    error_fraction: f64,
    /// share of operations that take ~800 ms (default 0)
    #[argh(option, default = "0.0")]
    slow_fraction: f64,
    /// how often the pool's cleanup runs (default 300s, the pool's own default)
    #[argh(option, default = "String::from(\"300s\")")]
    cleanup_interval: String,
    /// the pool's endpoint (default relay.example.net:443)
    #[argh(option, default = "String::from(\"relay.example.net:443\")")]
    endpoint: String,
    /// report a backend name in the status document
    #[argh(option)]
    backend: Option<String>,
    /// require this token (read from the file) in X-Auth-Token
    #[argh(option)]
    token_file: Option<String>,
    /// time format of the JSON documents: systemtime, rfc3339 or unix (default systemtime)
    #[argh(option, default = "String::from(\"systemtime\")")]
    time_format: String,
    /// simulation step (default 1s)
    #[argh(option, default = "String::from(\"1s\")")]
    tick: String,
    /// max_lifetime: idle connections older than this are closed at cleanup (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    max_age: String,
    /// fixed numbers and no churn, for benchmarks
    #[argh(switch)]
    steady: bool,
    /// also report optional fields (is_healthy, remote_addr, last_updated, error_rate)
    #[argh(switch)]
    extended: bool,
    /// exporter-toolkit web config file: serve https (and require client certificates) like a TLS-fronted pool
    #[argh(option)]
    web_config_file: Option<String>,
    /// seed of the simulation's random numbers (default 1)
    #[argh(option, default = "1")]
    seed: u64,
}

fn fail(message: String) -> ExitCode {
    eprintln!("secure-channel-sim: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let typed: Vec<String> = std::env::args().skip(1).collect();
    let argv = normalize_args(typed.iter().cloned());
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match SimArgs::from_args(&["secure-channel-sim"], &strs) {
        Ok(a) => a,
        Err(early) => {
            if early.status.is_ok() {
                print!("{}", early.output);
                return ExitCode::SUCCESS;
            }
            let help = SimArgs::from_args(&["secure-channel-sim"], &["--help"])
                .err()
                .map(|e| dotted_help(&e.output))
                .unwrap_or_default();
            return fail(explain_parse_error(&early.output, &typed, &help, &[]));
        }
    };
    let time_format: TimeFormat = match args.time_format.parse() {
        Ok(f) => f,
        Err(e) => return fail(format!("invalid --time-format: {e}")),
    };
    let positive = |flag: &str, value: &str| match parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(fail(format!(
            "invalid --{flag} {value:?}: expected a positive duration"
        ))),
    };
    let (tick, max_age, cleanup_interval) = match (
        positive("tick", &args.tick),
        positive("max-age", &args.max_age),
        positive("cleanup-interval", &args.cleanup_interval),
    ) {
        (Ok(t), Ok(m), Ok(c)) => (t, m, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    let model: Model = match args.model.parse() {
        Ok(m) => m,
        Err(e) => return fail(format!("invalid --model: {e}")),
    };
    let load = Load {
        callers: args.callers,
        ops_per_second: args.ops_per_second,
        ops_per_checkout: args.ops_per_checkout,
        error_fraction: args.error_fraction,
        slow_fraction: args.slow_fraction,
    };
    if let Err(e) = load.validate() {
        return fail(format!("invalid load: {e}"));
    }
    let token = match args.token_file.as_deref().map(std::fs::read_to_string) {
        None => None,
        Some(Ok(t)) => Some(t.trim().to_owned()),
        Some(Err(e)) => return fail(format!("cannot read --token-file: {e}")),
    };
    let address = match parse_listen_address(&args.web_listen_address) {
        Ok(a) => a,
        Err(e) => return fail(format!("invalid --web.listen-address: {e}")),
    };
    let addresses = match pool_addresses(&address, args.pools) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let web = match args
        .web_config_file
        .map(|f| WebConfigWatcher::new(f.into()))
    {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => return fail(e.to_string()),
    };
    logging::init(LogLevel::Info, LogFormat::Logfmt);
    let config = SimConfig {
        model,
        load,
        cleanup_interval,
        endpoint: args.endpoint,
        backend: args.backend,
        connections: args.connections,
        max_age,
        steady: args.steady,
        time_format,
        token,
        extended: args.extended,
        seed: args.seed,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let mut listeners = Vec::with_capacity(addresses.len());
        for address in &addresses {
            match tokio::net::TcpListener::bind(address).await {
                Ok(l) => listeners.push(l),
                Err(e) => return fail(format!("cannot listen on {address}: {e}")),
            }
        }
        let web = web.map(Arc::new);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let now = sim::server::now_unix();
        let several = listeners.len() > 1;
        let mut servers = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let local = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addresses[i].clone());
            let mut config = config.clone();
            if several {
                // Distinct pools: their own endpoint label and random numbers.
                config.endpoint = format!("pool-{i}.{}", config.endpoint);
                config.seed = config.seed.wrapping_add(i as u64);
            }
            tracing::info!(address = %local, endpoint = %config.endpoint, "listening");
            let handle = SimHandle::new(SimPool::new(config, now));
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            servers.push(tokio::spawn(sim::serve_with(
                listener,
                handle,
                tick,
                shutdown,
                ServeOptions {
                    web: web.clone(),
                    ..ServeOptions::default()
                },
            )));
        }
        shutdown_signal().await;
        let _ = stop.send(true);
        for server in servers {
            let _ = server.await;
        }
        ExitCode::SUCCESS
    })
}

/// `count` addresses on consecutive ports from `first` (one when `count`
/// is 1; port 0 then means any free port).
fn pool_addresses(first: &str, count: u16) -> Result<Vec<String>, String> {
    if count <= 1 {
        return Ok(vec![first.to_owned()]);
    }
    let (host, port) = first
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("invalid --web.listen-address {first:?}"))?;
    if port == 0 || u32::from(port) + u32::from(count) > 65_536 {
        return Err(format!(
            "invalid --pools {count}: needs {count} consecutive ports from a fixed --web.listen-address port (not 0) up to 65535"
        ));
    }
    Ok((0..count).map(|i| format!("{host}:{}", port + i)).collect())
}
