//! Issue 18's findings, one case each, against the real binary: what an
//! operator or a browser sees.

use std::io::{Read, Write};
use std::time::Duration;

use crate::adversarial::{basic, connection, dir, status_json, write, CannedPool, NATIVE_OK};
use crate::common::*;

const API: &str = "/api/v1/secure-channel";
/// bcrypt (cost 4) of "correct horse".
const HASH4: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
const ORIGIN: &str = "https://dash.example";

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Item 1: ids are percent-decoded, so every id the pool lists can be
/// fetched, whatever characters it holds.
#[tokio::test]
async fn connection_ids_are_percent_decoded() {
    let pool = CannedPool::start(
        status_json(
            "e:443",
            &[
                connection("1", 1),
                connection(r#""a b/c?#%""#, 2),
                connection(r#""été""#, 3),
            ],
        ),
        NATIVE_OK.into(),
    );
    let exp = exporter_with_env(&pool.url(), &[], &[]);
    for (path, id, errors) in [
        ("%31", "1", 1),
        ("1", "1", 1),
        ("a%20b%2Fc%3F%23%25", "a b/c?#%", 2),
        ("%C3%A9t%C3%A9", "été", 3),
    ] {
        let (code, body) = get_json(&exp.url(&format!("{API}/connections/{path}")), &[]).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(
            body["connection"]["connection_id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body["connection"]["connection_id"].to_string()),
            id,
            "{path}: {body}"
        );
        assert_eq!(body["connection"]["errors"], errors, "{path}: {body}");
    }
    // Not UTF-8 once decoded: no listed connection can have it.
    let (code, body) = get_json(&exp.url(&format!("{API}/connections/%FF")), &[]).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("connection_not_found")),
        "{body}"
    );
}

/// Item 2: unknown and repeated parameters are 400 `bad_query` on every
/// API path and on the status page, and numbers are plain digits.
#[tokio::test]
async fn unknown_repeated_and_signed_parameters_are_refused_everywhere() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &[]);
    for (path, param) in [
        ("/api/v1/secure-channel/status?foo=bar", "foo"),
        ("/api/v1/secure-channel/stats?limit=-1", "limit"),
        ("/api/v1/secure-channel/health?x", "x"),
        ("/api/v1/secure-channel/metrics?a=1&a=2", "a"),
        ("/api/v1/secure-channel/connections/1?sort=id", "sort"),
        ("/api/v1/status?verbose=1", "verbose"),
        ("/api/v1/openapi.json?v=2", "v"),
        ("/api/v1/secure-channel/connections?limit=%2B5", "limit"),
        ("/api/v1/secure-channel/connections?offset=+1", "offset"),
        (
            "/api/v1/secure-channel/connections?limit=1&limit=1",
            "limit",
        ),
    ] {
        let (code, body) = get_json(&exp.url(path), &[]).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_query", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{param:?}")), "{path}: {message}");
    }
    // An empty query is no parameter at all.
    let (code, _) = get_json(&exp.url("/api/v1/secure-channel/status?"), &[]).await;
    assert_eq!(code, 200);
    for query in ["refresh=%2B5", "refresh=5&refresh=6", "colour=red"] {
        let resp = get(&exp.url(&format!("/status?{query}")), &[]).await;
        assert_eq!(resp.status(), 400, "{query}");
    }
}

/// Item 3: the gate's refusals on API routes carry the CORS headers, so a
/// page on an allowed origin can read them; hyper's own 400 and 431
/// answers have a body saying why.
#[tokio::test]
async fn gate_refusals_carry_cors_headers_and_parse_errors_a_body() {
    let d = dir("hardening-cors");
    let web = write(
        &d,
        "web.yml",
        &format!("basic_auth_users:\n  prometheus: '{HASH4}'\n"),
    );
    let sim = sim(&[]);
    let exp = exporter(
        &sim,
        &[
            "--web.config.file",
            &web,
            "--api.cors-allowed-origins",
            ORIGIN,
        ],
    );
    let url = exp.url(&format!("{API}/status"));
    let auth = basic("prometheus", "correct horse");
    let cases = [
        (client().get(&url), 401),
        (client().post(&url).header("authorization", &auth), 405),
        (
            client()
                .get(&url)
                .header("authorization", &auth)
                .body("12345"),
            413,
        ),
    ];
    for (req, code) in cases {
        let resp = req.header("origin", ORIGIN).send().await.unwrap();
        assert_eq!(resp.status(), code);
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some(ORIGIN),
            "{code}: {:?}",
            resp.headers()
        );
        let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    // Another origin gets no CORS headers, refusal or not.
    let resp = client()
        .get(&url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // hyper's own answers to requests it cannot read.
    for (request, code) in [
        (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            "400",
        ),
        (
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(32 * 1024)
            )
            .into_bytes(),
            "431",
        ),
    ] {
        let answer = raw_exchange(&exp.address, &request);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.starts_with(&format!("HTTP/1.1 {code}")), "{answer}");
        assert!(!body.trim().is_empty(), "{code} without a body: {answer:?}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain"),
            "{head}"
        );
    }
}

/// Writes `request` on a fresh connection and reads the answer until the
/// server closes it.
fn raw_exchange(address: &str, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Item 4: only 0 switches the rate limit off; a rate so small that its
/// period overflowed is refused at start naming the flag.
#[test]
fn absurd_rate_limits_are_refused_naming_the_flag() {
    for value in ["1e-20", "1e-300", "1e7", "NaN", "inf", "-1"] {
        let out = std::process::Command::new(EXPORTER)
            .args(["--api.rate-limit", value])
            .env_remove("SECURE_CHANNEL_POOL_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        assert!(stderr.contains("--api.rate-limit"), "{value}: {stderr}");
        assert!(stderr.contains("0 (off)"), "{value}: {stderr}");
    }
}

/// Item 4, the limit itself: the slowest allowed rate still limits.
#[tokio::test]
async fn the_slowest_rate_limit_still_limits() {
    let sim = sim(&[]);
    let exp = exporter(
        &sim,
        &["--api.rate-limit", "0.0001", "--api.rate-limit-burst", "1"],
    );
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            get(&exp.url("/api/v1/openapi.json"), &[])
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 429, 429, 429, 429]);
}

/// Item 5: times no calendar holds (i64::MAX seconds plus 4e9 ns, 1e308)
/// are never wrapped or exported: the API shows null with a reason, and
/// /metrics drops the series, counting why.
#[tokio::test]
async fn out_of_range_times_are_null_with_a_reason_and_never_exported() {
    let huge = format!(
        r#"{{"connection_id":7,"reconnects":0,"errors":0,"p95_latency_ms":3,"last_activity":{{"secs_since_epoch":{},"nanos_since_epoch":4000000000}}}}"#,
        i64::MAX
    );
    let float =
        r#"{"connection_id":8,"reconnects":0,"errors":0,"p95_latency_ms":3,"last_activity":1e308}"#;
    let pool = CannedPool::start(
        status_json("e:443", &[huge, float.to_owned(), connection("9", 0)]),
        NATIVE_OK.into(),
    );
    let exp = exporter_with_env(&pool.url(), &[], &[]);
    let (code, body) = get_json(&exp.url(&format!("{API}/connections")), &[]).await;
    assert_eq!(code, 200, "{body}");
    let items = body["items"].as_array().unwrap_or_else(|| panic!("{body}"));
    for item in items {
        let id = item["connection_id"].to_string();
        let last = &item["last_activity"];
        if id == "9" {
            assert!(last.as_str().unwrap().starts_with("2025-"), "{item}");
            continue;
        }
        assert!(last.is_null(), "{id}: {item}");
        let reasons = item["unknown"]
            .as_array()
            .unwrap_or_else(|| panic!("{item}"));
        assert!(
            reasons.iter().any(|u| u["field"] == "last_activity"
                && u["reason"].as_str().unwrap().contains("out of range")),
            "{item}"
        );
    }
    let s = scrape(&exp).await;
    assert_eq!(s.value("secure_channel_up", &[]), 1.0, "{}", s.body);
    let times = s.samples("secure_channel_connection_last_activity_timestamp_seconds");
    assert_eq!(times.len(), 1, "{}", s.body);
    for t in &times {
        assert!(t.value > 1e9 && t.value < 1e11, "{}", s.body);
    }
    assert_eq!(
        s.value(
            "secure_channel_exporter_values_dropped",
            &[("reason", "time_out_of_range")]
        ),
        2.0,
        "{}",
        s.body
    );
}

/// Item 6: past 256 probed targets the least recently used collector goes,
/// not all of them: a target probed all along keeps its counters. And 260
/// failing targets are a handful of log lines, not one per target.
#[tokio::test]
async fn probe_collectors_are_evicted_least_recently_used() {
    let pool = CannedPool::start(
        status_json("e:443", &[connection("1", 0)]),
        NATIVE_OK.into(),
    );
    let exp = exporter_with_env(
        &pool.url(),
        &["--probe.allowed-targets", "http://127.0.0.1:*"],
        &[],
    );
    let kept = pool.url().trim_end_matches('/').to_owned();
    let probe = |target: String| {
        let url = exp.url(&format!("/probe?target={target}"));
        async move { get_text(&url).await }
    };
    for _ in 0..3 {
        probe(kept.clone()).await;
    }
    let requests_of_kept = |body: &str| -> f64 {
        let parsed = secure_channel_exporter::exposition::parse(body);
        parsed
            .families
            .iter()
            .find(|f| f.name == "secure_channel_exporter_source_requests_total")
            .and_then(|f| {
                f.samples
                    .iter()
                    .find(|s| s.labels.iter().any(|(k, v)| k == "source" && v == "status"))
            })
            .map_or(0.0, |s| s.value)
    };
    // 260 other targets (closed ports: each fails), the kept one in between.
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < 260 {
        let p = closed_port();
        if !ports.contains(&p) && kept != format!("http://127.0.0.1:{p}") {
            ports.push(p);
        }
    }
    for (i, port) in ports.iter().enumerate() {
        probe(format!("127.0.0.1:{port}")).await;
        if i % 50 == 0 {
            probe(kept.clone()).await;
        }
    }
    let body = probe(kept.clone()).await;
    // 3 + 6 (every 50th of 260) + this one: nothing was reset.
    assert_eq!(requests_of_kept(&body), 10.0, "{body}");
    let logs = exp.logs();
    let failure_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("pool fetch failed"))
        .collect();
    let warnings = failure_lines.len();
    eprintln!(
        "kept target: {} status requests; {warnings} fetch-failure lines, {} bytes, for 260 failing targets",
        requests_of_kept(&body),
        failure_lines.iter().map(|l| l.len() + 1).sum::<usize>()
    );
    assert!(
        warnings <= 6,
        "{warnings} fetch-failure lines:\n{}",
        exp.logs()
    );
}

/// Item 7: `--web.max-connections` fits the open-file limit: under 64 open
/// files, 80 idle clients cannot starve the scrape's own pool connection.
#[tokio::test]
async fn max_connections_fit_the_open_file_limit() {
    let sim = sim(&[]);
    let pool = sim.url("/");
    let exp = Proc::start(
        "prlimit",
        &[
            "--nofile=64:64",
            EXPORTER,
            "--web.listen-address",
            "127.0.0.1:0",
            "--pool.url",
            &pool,
            "--web.read-header-timeout",
            "1s",
        ],
        &[],
    );
    let line = exp.wait_for_log("does not fit the open-file limit");
    assert!(line.contains("capped=32"), "{line}");
    // Idle clients holding connections (more than the limit allows).
    let idle: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(&exp.address).ok())
        .collect();
    assert!(idle.len() >= 40, "{}", idle.len());
    let s = scrape(&exp).await;
    assert_eq!(
        s.value("secure_channel_up", &[]),
        1.0,
        "{}\n{}",
        s.body,
        exp.logs()
    );
    assert!(
        !exp.logs().contains("Too many open files"),
        "{}",
        exp.logs()
    );
    drop(idle);
}

/// Item 8: the pages a browser renders say what may run, that they must not
/// be framed and must not be sniffed as another type.
#[tokio::test]
async fn pages_send_csp_nosniff_and_frame_headers() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &[]);
    for path in ["/", "/status"] {
        let resp = get(&exp.url(path), &[]).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    // The status page's own inline script and style are the ones allowed.
    let resp = get(&exp.url("/status"), &[]).await;
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = resp.text().await.unwrap();
    for (tag, directive) in [("script", "script-src"), ("style", "style-src")] {
        let open = format!("<{tag}>");
        let start = html.find(&open).unwrap() + open.len();
        let end = start + html[start..].find(&format!("</{tag}>")).unwrap();
        let hash = secure_channel_exporter::ui::csp_hash(&html[start..end]);
        assert!(
            csp.contains(&format!("{directive} '{hash}'")),
            "{tag}: {csp}"
        );
    }
}

/// Item 11, as an operator sees it: a token file that is removed or
/// emptied is logged at the next fetch (no SIGHUP needed), and the last
/// good token keeps the scrapes working.
#[tokio::test]
async fn a_removed_or_emptied_token_file_is_logged() {
    let d = dir("hardening-token");
    let token = write(&d, "token", "s3cret-hardening\n");
    let sim = sim(&["--token-file", &token]);
    let exp = exporter(&sim, &["--pool.auth-token-file", &token]);
    assert_eq!(scrape(&exp).await.source_up("status"), 1.0);
    std::fs::remove_file(&token).unwrap();
    let s = scrape(&exp).await;
    assert_eq!(s.source_up("status"), 1.0, "the last good token is kept");
    let line = exp.wait_for_log("token file was removed");
    assert!(
        line.contains("level=warn") || line.contains("WARN"),
        "{line}"
    );
    // Emptied, and left alone long enough to count as finished.
    std::fs::write(&token, "").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&token)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(10))
        .unwrap();
    let s = scrape(&exp).await;
    assert_eq!(s.source_up("status"), 1.0);
    exp.wait_for_log("the file is empty");
    assert!(!exp.logs().contains("s3cret-hardening"));
}
