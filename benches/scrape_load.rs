//! End-to-end benchmark: the exporter against the least any exporter must
//! spend, on the real release binaries over loopback.
//!
//! For each pool size it interleaves, round after round:
//! * the limit: a plain client fetching the pool's three documents
//!   concurrently and reading them whole, nothing else;
//! * the exporter: a full scrape of `/metrics`, in the Prometheus text
//!   format and in OpenMetrics.
//!
//! Then 64 concurrent scrapers for a fixed time (throughput, latency, and
//! the requests the pool received, counted by the pool), and the exporter's
//! resources from /proc. Run it with `scripts/bench.sh` (which builds the
//! release binaries first) or `cargo bench --bench scrape_load`;
//! `-- --quick` runs a short smoke version. It prints a Markdown report.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EXPORTER: &str = env!("CARGO_BIN_EXE_secure-channel-exporter");
/// Names another exporter binary to measure instead (an A/B comparison of
/// two builds against the same simulator and load).
const EXPORTER_OVERRIDE: &str = "SCRAPE_LOAD_EXPORTER";
const SIM: &str = env!("CARGO_BIN_EXE_secure-channel-sim");
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
const SCRAPERS: usize = 64;

struct Plan {
    /// Pool sizes, with the interleaved rounds measured at each.
    sizes: Vec<(usize, usize)>,
    /// Pool size and the pool's answer delay (ms) of each concurrency run,
    /// and how long each runs.
    concurrent: Vec<(usize, u64)>,
    concurrent_for: Duration,
    /// Batches the rounds are split into, to show that the medians hold.
    batches: usize,
    starts: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            sizes: vec![(10, 3000), (100, 3000), (1_000, 1500), (10_000, 400)],
            concurrent: vec![(1_000, 0), (10_000, 0), (1_000, 20)],
            concurrent_for: Duration::from_secs(10),
            batches: 5,
            starts: 7,
        }
    }

    fn quick() -> Self {
        Self {
            sizes: vec![(10, 200), (100, 200), (1_000, 100), (10_000, 25)],
            concurrent: vec![(10_000, 0), (1_000, 20)],
            concurrent_for: Duration::from_secs(2),
            batches: 5,
            starts: 3,
        }
    }
}

/// A child process, killed (by its own pid) when dropped.
struct Proc {
    child: Child,
    address: String,
}

impl Proc {
    fn start(bin: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("SECURE_CHANNEL_POOL_URL")
            .env_remove("SECURE_CHANNEL_POOL_TOKEN")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Keeps draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("msg=listening") || line.contains("message=listening") {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("address="))
                    {
                        let _ = tx.send(addr.to_owned());
                    }
                } else if line.contains("level=warn") || line.contains("level=error") {
                    eprintln!("  child: {line}");
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{bin} did not log its listening address"));
        Proc { child, address }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU time of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of proc(5); 3 are before `after`.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf only reads a process-wide setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2 * SCRAPERS)
        .build()
        .expect("an HTTP client")
}

async fn get(client: &reqwest::Client, url: &str, accept: Option<&str>) -> usize {
    let mut req = client.get(url);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = req.send().await.expect("request failed");
    assert!(
        resp.status().is_success() || resp.status().as_u16() == 503,
        "{url}: {}",
        resp.status()
    );
    resp.bytes().await.expect("body").len()
}

/// The least any exporter must spend: the three documents, concurrently.
async fn limit_fetch(client: &reqwest::Client, urls: &[String; 3]) -> usize {
    let (a, b, c) = tokio::join!(
        get(client, &urls[0], None),
        get(client, &urls[1], None),
        get(client, &urls[2], None)
    );
    a + b + c
}

async fn scrape(client: &reqwest::Client, url: &str, format: Kind) -> usize {
    let accept = match format {
        Kind::Text => None,
        Kind::OpenMetrics => Some(OPENMETRICS),
        Kind::Limit | Kind::Transfer => unreachable!("not a scrape"),
    };
    get(client, url, accept).await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Limit,
    Text,
    OpenMetrics,
    /// One GET of a body as large as the exporter's text answer: what
    /// merely moving those bytes to the scraper costs.
    Transfer,
}

const KINDS: [Kind; 4] = [Kind::Limit, Kind::Text, Kind::OpenMetrics, Kind::Transfer];

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v
}

fn ms(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

struct SizeResult {
    connections: usize,
    rounds: usize,
    bytes: [usize; 3],
    /// Seconds per request, per kind, in round order.
    latencies: [Vec<f64>; 4],
    cpu_per_1000: f64,
}

impl SizeResult {
    fn p(&self, kind: Kind, p: f64) -> f64 {
        percentile(&sorted(self.latencies[kind as usize].clone()), p)
    }

    /// Ratio of the exporter's p50 to the limit's in each batch of rounds.
    fn batch_ratios(&self, kind: Kind, batches: usize) -> Vec<f64> {
        let per = self.rounds.div_ceil(batches);
        (0..batches)
            .filter_map(|b| {
                let range = b * per..((b + 1) * per).min(self.rounds);
                if range.is_empty() {
                    return None;
                }
                let of = |k: Kind| {
                    percentile(
                        &sorted(self.latencies[k as usize][range.clone()].to_vec()),
                        0.5,
                    )
                };
                Some(of(kind) / of(Kind::Limit))
            })
            .collect()
    }
}

async fn set_connections(http: &reqwest::Client, sim: &Proc, n: usize) {
    let resp = http
        .put(sim.url(&format!("/sim/connections?count={n}")))
        .send()
        .await
        .expect("sim control");
    assert!(resp.status().is_success());
}

async fn pool_requests(http: &reqwest::Client, sim: &Proc) -> [u64; 3] {
    let body = http
        .get(sim.url("/sim/state"))
        .send()
        .await
        .expect("sim state")
        .bytes()
        .await
        .expect("sim state body");
    let state: serde_json::Value = serde_json::from_slice(&body).expect("sim state JSON");
    ["status", "health", "metrics"].map(|d| state["requests"][d].as_u64().unwrap_or(0))
}

async fn measure_size(
    sim: &Proc,
    exporter: &Proc,
    connections: usize,
    rounds: usize,
) -> SizeResult {
    let control = client();
    set_connections(&control, sim, connections).await;
    let limit_client = client();
    let scrape_client = client();
    let urls = ["/status/connections", "/healthz", "/metrics"].map(|p| sim.url(p));
    let metrics_url = exporter.url("/metrics");
    let mut bytes = [0; 3];
    // Warm both paths: connections open, allocator and caches settled.
    for _ in 0..(rounds / 10).clamp(5, 100) {
        bytes[0] = limit_fetch(&limit_client, &urls).await;
        bytes[1] = scrape(&scrape_client, &metrics_url, Kind::Text).await;
        bytes[2] = scrape(&scrape_client, &metrics_url, Kind::OpenMetrics).await;
    }
    let transfer_url = sim.url(&format!("/sim/blob?bytes={}", bytes[1]));
    let mut latencies: [Vec<f64>; 4] = Default::default();
    let mut exporter_cpu = 0.0;
    for round in 0..rounds {
        // Each kind takes every place in the order equally often, so drift
        // and the neighbours' noise fall on all of them alike.
        for i in 0..KINDS.len() {
            let kind = KINDS[(round + i) % KINDS.len()];
            let scrape_kind = matches!(kind, Kind::Text | Kind::OpenMetrics);
            let cpu_before = scrape_kind.then(|| cpu_seconds(exporter.pid()));
            let start = Instant::now();
            match kind {
                Kind::Limit => {
                    limit_fetch(&limit_client, &urls).await;
                }
                Kind::Transfer => {
                    get(&limit_client, &transfer_url, None).await;
                }
                format => {
                    scrape(&scrape_client, &metrics_url, format).await;
                }
            }
            latencies[kind as usize].push(start.elapsed().as_secs_f64());
            if let Some(before) = cpu_before {
                exporter_cpu += cpu_seconds(exporter.pid()) - before;
            }
        }
    }
    SizeResult {
        connections,
        rounds,
        bytes,
        latencies,
        cpu_per_1000: exporter_cpu / (2 * rounds) as f64 * 1000.0,
    }
}

struct ConcurrentResult {
    connections: usize,
    delay_ms: u64,
    seconds: f64,
    scrapes: usize,
    p50: f64,
    p99: f64,
    pool_requests: [u64; 3],
    peak_rss_kib: u64,
}

async fn measure_concurrent(
    sim: &Proc,
    exporter: &Proc,
    (connections, delay_ms): (usize, u64),
    run_for: Duration,
) -> ConcurrentResult {
    let control = client();
    set_connections(&control, sim, connections).await;
    // A pool that takes a while to answer: every scrape that arrives
    // meanwhile should share the one fetch in flight.
    let slow = sim.url(&format!("/sim/faults/slow?delay_ms={delay_ms}"));
    if delay_ms > 0 {
        let resp = control.put(&slow).send().await.expect("sim control");
        assert!(resp.status().is_success());
    }
    let http = client();
    let url = exporter.url("/metrics");
    // Settle at this size before counting.
    scrape(&http, &url, Kind::Text).await;
    let before = pool_requests(&control, sim).await;
    let start = Instant::now();
    let stop = start + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SCRAPERS {
        let http = http.clone();
        let url = url.clone();
        tasks.spawn(async move {
            let mut took = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                scrape(&http, &url, Kind::Text).await;
                took.push(t.elapsed().as_secs_f64());
            }
            took
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("scraper task"));
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = pool_requests(&control, sim).await;
    if delay_ms > 0 {
        let resp = control.delete(&slow).send().await.expect("sim control");
        assert!(resp.status().is_success());
    }
    let all = sorted(all);
    ConcurrentResult {
        connections,
        delay_ms,
        seconds,
        scrapes: all.len(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        pool_requests: [0, 1, 2].map(|i| after[i] - before[i]),
        peak_rss_kib: memory_kib(exporter.pid()).1,
    }
}

fn exporter_args(sim: &Proc) -> Vec<String> {
    [
        "--web.listen-address",
        "127.0.0.1:0",
        "--pool.url",
        &sim.url("/"),
        // Export every connection: the full scrape, not the capped one.
        "--collector.max-connections",
        "1000000",
        // 64 scrapers plus the latency phase's idle keep-alive connections.
        "--web.max-connections",
        "256",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Time from spawning the exporter until `/ready` answers 200.
async fn start_to_ready(sim: &Proc) -> (Duration, Proc) {
    let http = client();
    let args = exporter_args(sim);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let exporter = Proc::start(&exporter_bin(), &args);
    let url = exporter.url("/ready");
    loop {
        if let Ok(resp) = http.get(&url).send().await {
            if resp.status().as_u16() == 200 {
                return (start.elapsed(), exporter);
            }
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
        assert!(start.elapsed() < Duration::from_secs(20), "never ready");
    }
}

fn exporter_bin() -> String {
    std::env::var(EXPORTER_OVERRIDE).unwrap_or_else(|_| EXPORTER.to_owned())
}

fn median(v: &[f64]) -> f64 {
    percentile(&sorted(v.to_vec()), 0.5)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench
    // targets too, and must not start a multi-minute load test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scrape_load: not run as a benchmark (use cargo bench or scripts/bench.sh)");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(plan));
}

async fn run(plan: Plan) {
    let sim = Proc::start(
        SIM,
        &[
            "--steady",
            "--connections",
            "10",
            "--web.listen-address",
            "127.0.0.1:0",
        ],
    );

    let mut ready_times = Vec::new();
    for _ in 1..plan.starts {
        let (took, exporter) = start_to_ready(&sim).await;
        ready_times.push(took.as_secs_f64());
        drop(exporter);
    }
    let (took, exporter) = start_to_ready(&sim).await;
    ready_times.push(took.as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = memory_kib(exporter.pid());

    let mut sizes = Vec::new();
    for &(n, rounds) in &plan.sizes {
        eprintln!("measuring {n} connections, {rounds} interleaved rounds");
        sizes.push(measure_size(&sim, &exporter, n, rounds).await);
    }
    let mut concurrent = Vec::new();
    for &(n, delay) in &plan.concurrent {
        eprintln!(
            "{SCRAPERS} concurrent scrapers for {:?} at {n} connections, pool delay {delay} ms",
            plan.concurrent_for
        );
        concurrent.push(measure_concurrent(&sim, &exporter, (n, delay), plan.concurrent_for).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, peak_rss) = memory_kib(exporter.pid());
    let binary = std::fs::metadata(exporter_bin())
        .map(|m| m.len())
        .unwrap_or(0);

    report(&plan, &sizes, &concurrent, |out| {
        out.push_str("\n### Resources\n\n| what | value |\n| --- | --- |\n");
        out.push_str(&format!(
            "| idle RSS (started, `/ready` answered, no scrape yet) | {:.1} MiB |\n",
            idle_rss as f64 / 1024.0
        ));
        out.push_str(&format!(
            "| RSS 1 s after the last scrape | {:.1} MiB |\n",
            rss_after as f64 / 1024.0
        ));
        out.push_str(&format!(
            "| peak RSS over the whole run (VmHWM, reached under 64 scrapers at 10,000 connections) | {:.1} MiB |\n",
            peak_rss as f64 / 1024.0
        ));
        if let Some(s) = sizes.iter().find(|s| s.connections == 1_000) {
            out.push_str(&format!(
                "| CPU per 1,000 scrapes at 1,000 connections (user + system) | {:.2} s |\n",
                s.cpu_per_1000
            ));
        }
        out.push_str(&format!(
            "| release binary size | {:.2} MiB |\n",
            binary as f64 / (1024.0 * 1024.0)
        ));
        out.push_str(&format!(
            "| start to `/ready` 200 (median of {} starts) | {} ms |\n",
            ready_times.len(),
            ms(median(&ready_times))
        ));
    });
}

fn report(
    plan: &Plan,
    sizes: &[SizeResult],
    concurrent: &[ConcurrentResult],
    resources: impl FnOnce(&mut String),
) {
    let mut out = String::new();
    out.push_str("### Latency: exporter against the limit (sequential, interleaved)\n\n");
    out.push_str(
        "| connections | rounds | limit p50 / p99 ms | text p50 / p99 ms | **text / limit** p50 (range over batches) | OpenMetrics p50 / p99 ms | **OM / limit** p50 (range) | transfer of the text answer p50 ms | text / (limit + transfer) p50 | exporter CPU s per 1,000 scrapes | bytes: limit / text |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for s in sizes {
        let limit50 = s.p(Kind::Limit, 0.5);
        let cell = |kind: Kind| {
            let ratios = s.batch_ratios(kind, plan.batches);
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            (
                format!("{} / {}", ms(s.p(kind, 0.5)), ms(s.p(kind, 0.99))),
                format!("**{:.2}×** ({lo:.2}–{hi:.2})", s.p(kind, 0.5) / limit50),
            )
        };
        let (text, text_ratio) = cell(Kind::Text);
        let (om, om_ratio) = cell(Kind::OpenMetrics);
        let transfer50 = s.p(Kind::Transfer, 0.5);
        out.push_str(&format!(
            "| {} | {} | {} / {} | {text} | {text_ratio} | {om} | {om_ratio} | {} | {:.2}× | {:.2} | {} / {} |\n",
            s.connections,
            s.rounds,
            ms(limit50),
            ms(s.p(Kind::Limit, 0.99)),
            ms(transfer50),
            s.p(Kind::Text, 0.5) / (limit50 + transfer50),
            s.cpu_per_1000,
            s.bytes[0],
            s.bytes[1],
        ));
    }
    out.push_str(&format!(
        "\n### {SCRAPERS} concurrent scrapers (text format, closed loop)\n\n\
         | connections | pool answers after | seconds | scrapes | scrapes/s | p50 / p99 ms | pool requests status / health / metrics | scrapes per pool fetch | peak RSS so far |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    ));
    for c in concurrent {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {} | {:.0} | {} / {} | {} / {} / {} | {:.1} | {:.1} MiB |\n",
            c.connections,
            if c.delay_ms == 0 {
                "at once".to_owned()
            } else {
                format!("{} ms", c.delay_ms)
            },
            c.seconds,
            c.scrapes,
            c.scrapes as f64 / c.seconds,
            ms(c.p50),
            ms(c.p99),
            c.pool_requests[0],
            c.pool_requests[1],
            c.pool_requests[2],
            c.scrapes as f64 / c.pool_requests[0].max(1) as f64,
            c.peak_rss_kib as f64 / 1024.0,
        ));
    }
    resources(&mut out);
    println!("{out}");
}
