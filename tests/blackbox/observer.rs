//! One observer of the pool under every feature (issue 15): the findings
//! about the seam between the scrape path and the REST API, each shown on
//! the real binary against a fake pool whose answers the test controls,
//! or against the simulator's two models. Figures (memory, latency) are
//! printed for the record; what is asserted are events and values.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::fake_pool::{self, Answer, FakePool, HEALTHY, NATIVE};

const S: &str = "/api/v1/secure-channel";

/// Peak resident memory of a process so far, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Waits until `n` connections to the exporter are established and their
/// requests read (nothing left in the server side's receive queue), from
/// the kernel's table of TCP sockets.
async fn wait_until_read(exp: &Proc, n: usize) {
    let port = exp
        .address
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let local = format!(":{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let read = table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // local address, state 01 (established), rx queue empty.
                f.len() > 4 && f[1].ends_with(&local) && f[3] == "01" && f[4].ends_with(":00000000")
            })
            .count();
        if read >= n {
            // The handlers run on the exporter's runtime right after the
            // read; give them a moment to register.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {read} of {n} requests read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get(url: String) -> (u16, String, Duration) {
    let start = Instant::now();
    let resp = client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    let code = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    (code, body, start.elapsed())
}

/// A status document of minimal connections just under `cap` bytes.
fn minimal_status(cap: usize) -> (String, usize) {
    let mut body = String::with_capacity(cap);
    body.push_str(r#"{"endpoint":"e:443","connections":["#);
    let mut n = 0;
    while body.len() < cap - 64 {
        if n > 0 {
            body.push(',');
        }
        n += 1;
        // Every 1,000th fails: the worst must survive the cap.
        let errors = u64::from(n % 1000 == 0) * 9;
        body.push_str(&format!(r#"{{"connection_id":{n},"errors":{errors}}}"#));
    }
    body.push_str("]}");
    (body, n)
}

/// 40 concurrent API calls and scrapes on a status of ~8 MiB of minimal
/// connections: the API keeps only `--collector.max-connections` of them
/// (the worst), says how many it omits, and answers small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o1_the_api_honours_the_connection_cap_under_a_burst() {
    let (status, listed) = minimal_status(8 << 20);
    let pool = FakePool::start([Answer::ok(status), Answer::ok(HEALTHY), Answer::ok(NATIVE)]);
    let exp = exporter_with_env(
        &pool.url(),
        &[
            "--api.rate-limit",
            "0",
            "--collector.max-connections",
            "1000",
            "--pool.timeout",
            "30s",
        ],
        &[],
    );
    let mut tasks = tokio::task::JoinSet::new();
    let paths = [
        format!("{S}/status"),
        format!("{S}/connections?sort=errors&order=desc&limit=1000"),
        format!("{S}/stats"),
        "/api/v1/status".to_owned(),
    ];
    for i in 0..40 {
        let url = exp.url(&paths[i % paths.len()]);
        tasks.spawn(async move { (i, get(url).await) });
    }
    let mut scrapes = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let url = exp.url("/metrics");
        scrapes.spawn(async move { get(url).await });
    }
    let health = get(exp.url("/health")).await;
    let mut largest = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, (code, body, _)) = done.unwrap();
        assert_eq!(
            code,
            200,
            "{}: {}",
            paths[i % paths.len()],
            &body[..body.len().min(300)]
        );
        largest = largest.max(body.len());
        let json: Value = serde_json::from_str(&body).unwrap();
        match i % paths.len() {
            0 => {
                assert_eq!(json["connections_listed"], listed);
                assert_eq!(json["connections_omitted"], listed - 1000);
                assert_eq!(json["connections"].as_array().unwrap().len(), 1000);
                // The worst are kept: every failing connection is there.
                let failing = json["connections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["errors"] == 9)
                    .count();
                assert_eq!(failing, listed / 1000);
            }
            1 => {
                assert_eq!(json["connections_omitted"], listed - 1000);
                assert_eq!(json["items"][0]["errors"], 9);
            }
            2 => assert_eq!(json["connections"]["listed"], listed),
            _ => {}
        }
    }
    let mut scrape_took = Vec::new();
    while let Some(done) = scrapes.join_next().await {
        let (code, body, took) = done.unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("secure_channel_exporter_connections_omitted"));
        scrape_took.push(took);
    }
    let peak = peak_rss_mib(exp.child.id());
    eprintln!(
        "o1: {listed} connections listed; largest API answer {largest} B; peak RSS {peak:.1} MiB; \
         /health {:?} and /metrics {scrape_took:?} during the burst",
        health.2
    );
    assert!(largest < 1 << 20, "answer of {largest} B");
    assert!(peak < 96.0, "peak RSS {peak:.1} MiB");
}

/// `/health` (and `/-/healthy`) answer while every request slot is held
/// by API calls waiting on a pool that does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_liveness_answers_while_the_pool_holds_every_request_slot() {
    let pool = FakePool::start([
        Answer::ok(fake_pool::status(4)).hanging(),
        Answer::ok(HEALTHY).hanging(),
        Answer::ok(NATIVE).hanging(),
    ]);
    let exp = exporter_with_env(
        &pool.url(),
        &[
            "--web.max-requests",
            "1",
            "--api.rate-limit",
            "0",
            "--pool.timeout",
            "60s",
        ],
        &[],
    );
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = exp.url(&format!("{S}/status"));
        calls.spawn(async move { get(url).await.0 });
    }
    // The call holding the only slot has asked the pool, which holds it.
    pool.wait_for_requests(0, 1);
    for path in ["/health", "/-/healthy"] {
        let (code, body, took) = get(exp.url(path)).await;
        assert_eq!((code, body.as_str()), (200, "OK\n"), "{path}");
        eprintln!("o2: {path} answered in {took:?} with the slot held");
    }
    assert_eq!(calls.len(), 8);
    assert!(
        calls.try_join_next().is_none(),
        "the API calls were answered early"
    );
    pool.release();
    while let Some(code) = calls.join_next().await {
        assert_eq!(code.unwrap(), 200);
    }
    // One fetch of the status document for all eight calls.
    assert_eq!(pool.requests()[0], 1);
    let (code, body, _) = get(exp.url("/-/ready")).await;
    assert_eq!(code, 200, "{body}");
}

/// The status view does not wait for a health document that hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o3_the_status_view_does_not_wait_for_a_hanging_health_document() {
    let pool = FakePool::start([
        Answer::ok(fake_pool::status(3)),
        Answer::ok(HEALTHY).hanging(),
        Answer::ok(NATIVE),
    ]);
    let exp = exporter_with_env(
        &pool.url(),
        &[
            "--api.rate-limit",
            "0",
            "--pool.timeout",
            "60s",
            "--api.cache-ttl",
            "0s",
        ],
        &[],
    );
    let health_url = exp.url(&format!("{S}/health"));
    let health = tokio::spawn(async move { get(health_url).await });
    pool.wait_for_requests(1, 1);
    for _ in 0..3 {
        let (code, body, took) = get(exp.url(&format!("{S}/status"))).await;
        assert_eq!(code, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["connections_listed"], 3);
        eprintln!("o3: status view in {took:?} while health hangs");
    }
    assert!(
        !health.is_finished(),
        "the health view did not wait for the pool"
    );
    pool.release();
    assert_eq!(health.await.unwrap().0, 200);
}

/// A pool that echoes the token it refused, and puts the token and the
/// URL's password in its native metrics: neither appears in any answer of
/// the exporter nor in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o4_the_token_and_url_password_are_never_republished() {
    const TOKEN: &str = "tok-SECRET-4242";
    const PASSWORD: &str = "pw-SECRET-77";
    let refused = format!("invalid token {TOKEN} (expected another one)");
    let native = format!(
        "# HELP pool_token_echo Echo of {TOKEN}.\n# TYPE pool_token_echo gauge\npool_token_echo{{token=\"{TOKEN}\",pw=\"{PASSWORD}\"}} 1\n{NATIVE}"
    );
    let pool = FakePool::start([
        Answer::code(401, refused.clone()),
        Answer::code(401, refused),
        Answer::ok(native),
    ]);
    let url = pool
        .url()
        .replace("http://", &format!("http://user:{PASSWORD}@"));
    let exp = exporter_with_env(
        &url,
        &["--api.rate-limit", "0", "--api.cache-ttl", "0s"],
        &[("SECURE_CHANNEL_POOL_TOKEN", TOKEN)],
    );
    let mut seen = Vec::new();
    for path in [
        format!("{S}/status"),
        format!("{S}/health"),
        format!("{S}/stats"),
        format!("{S}/connections"),
        format!("{S}/metrics"),
        "/api/v1/status".into(),
        "/status".into(),
        "/ready".into(),
        "/-/ready".into(),
        "/metrics".into(),
        "/".into(),
    ] {
        let (code, body, _) = get(exp.url(&path)).await;
        assert!(
            !body.contains(TOKEN),
            "{path} ({code}) shows the token:\n{body}"
        );
        assert!(
            !body.contains(PASSWORD),
            "{path} ({code}) shows the password:\n{body}"
        );
        seen.push((path, code, body));
    }
    // The pool's words are still there, with the secrets cut out.
    let (_, _, status) = &seen[0];
    assert!(status.contains("invalid token <redacted>"), "{status}");
    let (_, _, native) = &seen[4];
    assert!(native.contains("Echo of <redacted>."), "{native}");
    let logs = exp.logs();
    assert!(logs.contains("pool fetch failed"), "{logs}");
    assert!(!logs.contains(TOKEN) && !logs.contains(PASSWORD), "{logs}");
}

/// The API's totals of errors and reconnects seen are the `*_seen_total`
/// counters of `/metrics`: one history of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o5_the_api_and_metrics_share_one_history() {
    for model in ["published", "returning"] {
        let sim = sim(&[
            "--model",
            model,
            "--callers",
            "4",
            "--ops-per-second",
            "200",
        ]);
        let exp = exporter(&sim, &["--api.rate-limit", "0", "--api.cache-ttl", "1h"]);
        let mut last = (0.0, 0.0);
        for _ in 0..3 {
            let scrape = scrape(&exp).await;
            let errors = scrape.value("secure_channel_pool_connection_errors_seen_total", &[]);
            let reconnects =
                scrape.value("secure_channel_pool_connection_reconnects_seen_total", &[]);
            let (code, stats) = get_json(&exp.url(&format!("{S}/stats")), &[]).await;
            assert_eq!(code, 200, "{stats}");
            assert_eq!(
                stats["errors"]["seen_total"].as_f64(),
                Some(errors),
                "{model}"
            );
            assert_eq!(
                stats["reconnects"]["seen_total"].as_f64(),
                Some(reconnects),
                "{model}"
            );
            last = (errors, reconnects);
        }
        eprintln!("o5: {model}: errors and reconnects seen {last:?} in both");
    }
}

/// Scrapes and API calls arriving while a status fetch is in flight join
/// it: the pool is asked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o6_scrapes_and_api_calls_join_one_fetch() {
    let pool = FakePool::start([
        Answer::ok(fake_pool::status(5)).hanging(),
        Answer::ok(HEALTHY),
        Answer::ok(NATIVE),
    ]);
    let exp = exporter_with_env(
        &pool.url(),
        &["--api.rate-limit", "0", "--pool.timeout", "60s"],
        &[],
    );
    let mut calls = tokio::task::JoinSet::new();
    let first = exp.url(&format!("{S}/status"));
    calls.spawn(async move { get(first).await });
    pool.wait_for_requests(0, 1);
    for i in 0..12 {
        let url = exp.url(if i % 2 == 0 {
            "/metrics"
        } else {
            "/api/v1/secure-channel/stats"
        });
        calls.spawn(async move { get(url).await });
    }
    // Every request has been read by the exporter (and so has joined the
    // fetch); none could be answered without the status.
    wait_until_read(&exp, 13).await;
    assert!(calls.try_join_next().is_none());
    pool.release();
    while let Some(done) = calls.join_next().await {
        let (code, body, _) = done.unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(!body.contains("secure_channel_exporter_source_up{source=\"status\"} 0"));
    }
    assert_eq!(
        pool.requests()[0],
        1,
        "one fetch of the status for all: {:?}",
        pool.requests()
    );
    let scrape = scrape(&exp).await;
    // Every fetch counted once, whoever asked: the one shared and this one.
    assert_eq!(
        scrape.value(
            "secure_channel_exporter_source_requests_total",
            &[("source", "status")]
        ),
        2.0
    );
}

/// 120 readers of the native passthrough that do not read share one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o7_slow_readers_of_the_native_passthrough_share_one_copy() {
    let mut native = String::with_capacity(8 << 20);
    native.push_str(NATIVE);
    let mut i = 0;
    while native.len() < (8 << 20) - 64 {
        native.push_str(&format!("m_{i} 1\n"));
        i += 1;
    }
    let size = native.len();
    let pool = FakePool::start([
        Answer::ok(fake_pool::status(3)),
        Answer::ok(HEALTHY),
        Answer::ok(native),
    ]);
    let exp = exporter_with_env(
        &pool.url(),
        &[
            "--api.rate-limit",
            "0",
            "--api.cache-ttl",
            "1h",
            "--pool.timeout",
            "30s",
        ],
        &[],
    );
    // Warm: one fetch, then 120 readers that take the headers and stall.
    let (code, _, _) = get(exp.url(&format!("{S}/metrics"))).await;
    assert_eq!(code, 200);
    let mut readers = Vec::new();
    for _ in 0..120 {
        let resp = client()
            .get(exp.url(&format!("{S}/metrics")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), Some(size as u64));
        readers.push(resp);
    }
    let peak = peak_rss_mib(exp.child.id());
    eprintln!("o7: 120 stalled readers of a {size} B native text: peak RSS {peak:.1} MiB");
    assert_eq!(pool.requests()[2], 1);
    assert!(peak < 96.0, "peak RSS {peak:.1} MiB");
    drop(readers);
}

/// The pool's own exposition over the API is labelled with the format it
/// is in: an OpenMetrics pool's text is not announced as text 0.0.4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o8_the_native_text_over_the_api_states_its_own_format() {
    const OPENMETRICS: &str = "# TYPE secure_channel_errors counter\n# UNIT secure_channel_errors errors\nsecure_channel_errors_total{endpoint=\"e:443\"} 3\n# EOF\n";
    const OM_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    for (native, sent_as, expected) in [
        (
            NATIVE,
            "text/plain; version=0.0.4",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (OPENMETRICS, OM_TYPE, OM_TYPE),
        // No Content-Type at all, as the published pool sends: the
        // document's own markers decide.
        (OPENMETRICS, "", OM_TYPE),
    ] {
        let pool = FakePool::start([
            Answer::ok(fake_pool::status(2)),
            Answer::ok(HEALTHY),
            Answer::ok(native).with_content_type(sent_as),
        ]);
        let exp = exporter_with_env(&pool.url(), &["--api.rate-limit", "0"], &[]);
        let resp = client()
            .get(exp.url(&format!("{S}/metrics")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            expected,
            "{native}"
        );
        assert_eq!(resp.text().await.unwrap(), native);
    }
}
