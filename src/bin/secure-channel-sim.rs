//! A simulated SecureChannelPool for demos, tests and benchmarks.

use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use secure_channel_exporter::cli::{normalize_args, parse_duration, parse_listen_address};
use secure_channel_exporter::logging::{self, LogFormat, LogLevel};
use secure_channel_exporter::server::{shutdown_signal, ServeOptions};
use secure_channel_exporter::sim::{self, SimConfig, SimHandle, SimPool, TimeFormat};
use secure_channel_exporter::web::WebConfigWatcher;

/// A simulated SecureChannelPool speaking the pool's wire format, with faults
/// switchable at run time: PUT/DELETE /sim/faults/NAME, PUT
/// /sim/connections?count=N, GET /sim/state.
#[derive(FromArgs)]
struct SimArgs {
    /// address to listen on (default 127.0.0.1:9090)
    #[argh(option, default = "String::from(\"127.0.0.1:9090\")")]
    web_listen_address: String,
    /// number of open connections (default 4)
    #[argh(option, default = "4")]
    connections: usize,
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
    /// age after which connections are recycled (default 30m)
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
    let argv = normalize_args(std::env::args().skip(1));
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match SimArgs::from_args(&["secure-channel-sim"], &strs) {
        Ok(a) => a,
        Err(early) => {
            if early.status.is_ok() {
                print!("{}", early.output);
                return ExitCode::SUCCESS;
            }
            return fail(early.output.trim_end().to_owned());
        }
    };
    let time_format: TimeFormat = match args.time_format.parse() {
        Ok(f) => f,
        Err(e) => return fail(format!("invalid --time-format: {e}")),
    };
    let (tick, max_age) = match (parse_duration(&args.tick), parse_duration(&args.max_age)) {
        (Ok(t), Ok(m)) if !t.is_zero() && !m.is_zero() => (t, m),
        _ => return fail("invalid --tick or --max-age: expected a positive duration".into()),
    };
    let token = match args.token_file.as_deref().map(std::fs::read_to_string) {
        None => None,
        Some(Ok(t)) => Some(t.trim().to_owned()),
        Some(Err(e)) => return fail(format!("cannot read --token-file: {e}")),
    };
    let address = match parse_listen_address(&args.web_listen_address) {
        Ok(a) => a,
        Err(e) => return fail(format!("invalid --web.listen-address: {e}")),
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
        let listener = match tokio::net::TcpListener::bind(&address).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on {address}: {e}")),
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(address);
        tracing::info!(address = %local, "listening");
        let handle = SimHandle::new(SimPool::new(config, sim::server::now_unix()));
        let options = ServeOptions {
            web: web.map(Arc::new),
            ..ServeOptions::default()
        };
        sim::serve_with(listener, handle, tick, shutdown_signal(), options).await;
        ExitCode::SUCCESS
    })
}
