//! The REST API and the status page, end to end: the real exporter against
//! the simulator (both pool models), every answer recorded and validated
//! against the OpenAPI document by tests/api/validate.py.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const S: &str = "/api/v1/secure-channel";

/// One answer of the API.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// Calls the API of one exporter and keeps every answer for validation.
struct Api<'a> {
    exporter: &'a Proc,
    client: reqwest::Client,
    records: Mutex<Vec<Value>>,
}

/// The OpenAPI path template of `path`; `*` for paths outside the API.
fn template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    if let Some(id) = path.strip_prefix(&format!("{S}/connections/")) {
        if !id.is_empty() && !id.contains('/') {
            return format!("{S}/connections/{{id}}");
        }
    }
    let known = ["status", "health", "connections", "stats", "metrics"]
        .iter()
        .any(|p| path == format!("{S}/{p}"))
        || path == "/api/v1/status"
        || path == "/api/v1/openapi.json";
    if known {
        path.to_owned()
    } else {
        "*".to_owned()
    }
}

impl<'a> Api<'a> {
    fn new(exporter: &'a Proc) -> Self {
        Self {
            exporter,
            client: client(),
            records: Mutex::new(Vec::new()),
        }
    }

    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method.clone(), self.exporter.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        if path.starts_with("/api") {
            let header_map: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                .collect();
            self.records.lock().unwrap().push(json!({
                "method": method.as_str(),
                "route": template(path),
                "status": status,
                "content_type": headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or(""),
                "headers": header_map,
                "body": text,
            }));
        }
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, &[]).await
    }

    /// Validates every recorded answer against the OpenAPI document.
    fn validate(&self, tag: &str) {
        let records = self.records.lock().unwrap();
        let lines: String = records.iter().map(|r| r.to_string() + "\n").collect();
        let path = temp_file(&format!("api-{tag}.jsonl"), &lines);
        let out = Command::new("python3")
            .arg(format!("{ROOT}/tests/api/validate.py"))
            .arg(format!("{ROOT}/src/rest/openapi.json"))
            .arg(&path)
            .output()
            .expect("python3 is needed to validate API answers against the OpenAPI document");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            out.status.code(),
            Some(3),
            "the OpenAPI validator's packages are missing (scripts/test.sh installs them): {report}"
        );
        assert!(
            out.status.success(),
            "answers do not match the OpenAPI document:\n{report}"
        );
        assert!(
            report.contains(&format!("{} answers, 0 failures", records.len())),
            "{report}"
        );
    }
}

async fn sim_json(sim: &Proc, path: &str) -> Value {
    let (status, json) = get_json(&sim.url(path), &[]).await;
    assert_eq!(status, 200, "{path}: {json}");
    json
}

/// The simulator's per-document request counts.
async fn pool_requests(sim: &Proc) -> [u64; 3] {
    let state = sim_json(sim, "/sim/state").await;
    ["status", "health", "metrics"].map(|d| state["requests"][d].as_u64().unwrap())
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match &c["connection_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Polls `path` until `done` holds for its answer (at most 20 s).
async fn until(api: &Api<'_>, path: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = api.get(path).await;
        if done(&a) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every path answers with the right shape (both pool models call this).
async fn every_path(api: &Api<'_>, sim: &Proc) {
    let pool = sim_json(sim, "/status/connections").await;
    let status = api.get(&format!("{S}/status")).await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.json["endpoint"], pool["endpoint"]);
    assert_eq!(status.json["source"], sim.url("/"));
    let list = api.get(&format!("{S}/connections?limit=1000")).await;
    assert_eq!(list.status, 200, "{}", list.text);
    if let Some(first) = ids(&list.json["items"]).first() {
        let one = api.get(&format!("{S}/connections/{first}")).await;
        assert_eq!(one.status, 200, "{}", one.text);
        assert_eq!(
            ids(&json!([one.json["connection"]])),
            std::slice::from_ref(first)
        );
    }
    let health = api.get(&format!("{S}/health")).await;
    assert!(matches!(health.status, 200 | 503), "{}", health.text);
    assert_eq!(health.json["exporter_view"]["pool_api_reachable"], true);
    let stats = api.get(&format!("{S}/stats")).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(
        stats.json["connections"]["listed"],
        json!(list.json["total"]),
        "{}",
        stats.text
    );
    let metrics = api.get(&format!("{S}/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics.text.contains("_latency_ms_bucket"),
        "{}",
        metrics.text
    );
    let service = api.get("/api/v1/status").await;
    assert_eq!(service.status, 200, "{}", service.text);
    assert_eq!(service.json["service"], "secure-channel-exporter");
    assert!(service.json.get("memory_protection").is_none());
    let openapi = api.get("/api/v1/openapi.json").await;
    assert_eq!(openapi.json["openapi"], "3.1.0");
}

#[tokio::test]
async fn views_of_a_published_pool_match_the_pool() {
    // Steady: fixed numbers, every connection listed with stats, so the
    // API's answers can be compared with the pool's value for value.
    let sim = sim(&["--steady", "--connections", "7"]);
    let exp = exporter(&sim, &["--api.rate-limit", "0"]);
    let api = Api::new(&exp);
    every_path(&api, &sim).await;
    let pool = sim_json(&sim, "/status/connections").await;
    let pool_conns = pool["connections"].as_array().unwrap().clone();
    assert_eq!(pool_conns.len(), 7);

    // /status: the document, normalized, with its freshness.
    let status = api.get(&format!("{S}/status")).await;
    assert_eq!(status.json["stale"], false);
    assert_eq!(status.json["error"], Value::Null);
    assert!(num(&status.json["age_seconds"]) < 5.0);
    let ours = status.json["connections"].as_array().unwrap();
    assert_eq!(ids(&status.json["connections"]), ids(&pool["connections"]));
    for (a, b) in ours.iter().zip(&pool_conns) {
        for field in ["connection_id", "errors", "reconnects", "p95_latency_ms"] {
            assert_eq!(a[field], b[field], "{field}: {a} vs {b}");
        }
        let t = a["last_activity"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
        let secs = b["last_activity"]["secs_since_epoch"].as_i64().unwrap();
        assert!(
            t.starts_with(&secure_channel_client::Timestamp::from_unix(secs, 0).to_rfc3339()[..19]),
            "{t}"
        );
    }

    // /connections: sorted by every key, both ways, paged, filtered.
    let all = api.get(&format!("{S}/connections")).await;
    assert_eq!(all.json["total"], 7);
    assert_eq!(
        (all.json["limit"].as_u64(), all.json["offset"].as_u64()),
        (Some(100), Some(0))
    );
    let mut by_id: Vec<u64> = pool_conns
        .iter()
        .map(|c| c["connection_id"].as_u64().unwrap())
        .collect();
    by_id.sort_unstable();
    assert_eq!(
        ids(&all.json["items"]),
        by_id.iter().map(u64::to_string).collect::<Vec<_>>()
    );
    for (key, field) in [
        ("p95", "p95_latency_ms"),
        ("errors", "errors"),
        ("reconnects", "reconnects"),
        ("last_activity", "last_activity"),
        ("id", "connection_id"),
    ] {
        for order in ["asc", "desc"] {
            let a = api
                .get(&format!("{S}/connections?sort={key}&order={order}"))
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
            let values: Vec<String> = a.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| match &c[field] {
                    // RFC 3339 UTC strings of one format sort as text.
                    Value::String(s) => s.clone(),
                    v => format!("{:020.6}", num(v)),
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort();
            if order == "desc" {
                sorted.reverse();
            }
            assert_eq!(values, sorted, "sort={key}&order={order}");
        }
    }
    let page = api.get(&format!("{S}/connections?limit=2&offset=2")).await;
    assert_eq!(
        ids(&page.json["items"]),
        [by_id[2].to_string(), by_id[3].to_string()]
    );
    assert_eq!(page.json["total"], 7);
    let past = api.get(&format!("{S}/connections?offset=100")).await;
    assert_eq!(past.json["items"], json!([]));
    let zero = api.get(&format!("{S}/connections?limit=0")).await;
    assert_eq!(
        (zero.json["items"].clone(), zero.json["total"].clone()),
        (json!([]), json!(7))
    );
    let healthy = api.get(&format!("{S}/connections?healthy=true")).await;
    let unhealthy = api.get(&format!("{S}/connections?healthy=false")).await;
    assert_eq!(
        num(&healthy.json["total"]) + num(&unhealthy.json["total"]),
        7.0
    );
    for item in healthy.json["items"].as_array().unwrap() {
        assert_eq!(item["healthy"], true);
        assert!(num(&item["p95_latency_ms"]) <= 500.0);
        assert_eq!(item["healthy_basis"], "p95_within_pool_limit");
    }

    // One connection, and ids the pool does not list.
    let first = &pool_conns[0];
    let one = api
        .get(&format!("{S}/connections/{}", first["connection_id"]))
        .await;
    assert_eq!(one.json["connection"]["errors"], first["errors"]);
    for missing in ["999999", "abc", "%20"] {
        let a = api.get(&format!("{S}/connections/{missing}")).await;
        assert_eq!(
            (a.status, a.error_code()),
            (404, "connection_not_found"),
            "{}",
            a.text
        );
    }

    // Bad queries: 400 naming the parameter.
    for (query, param) in [
        ("sort=name", "sort"),
        ("order=up", "order"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("offset=x", "offset"),
        ("healthy=yes", "healthy"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ] {
        let a = api.get(&format!("{S}/connections?{query}")).await;
        assert_eq!(
            (a.status, a.error_code()),
            (400, "bad_query"),
            "{query}: {}",
            a.text
        );
        let message = a.json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("\"{param}\"")),
            "{query}: {message}"
        );
    }

    // Stats: the p95 spread of the listed connections, nulls with reasons.
    let stats = api.get(&format!("{S}/stats")).await;
    let p95s: Vec<f64> = pool_conns
        .iter()
        .map(|c| num(&c["p95_latency_ms"]))
        .filter(|p| *p > 0.0)
        .collect();
    let min = p95s.iter().copied().fold(f64::INFINITY, f64::min);
    let max = p95s.iter().copied().fold(0.0, f64::max);
    assert_eq!(
        num(&stats.json["p95_latency_ms"]["min"]),
        min,
        "{}",
        stats.text
    );
    assert_eq!(
        num(&stats.json["p95_latency_ms"]["max"]),
        max,
        "{}",
        stats.text
    );
    assert_eq!(stats.json["connections"]["in_use"], Value::Null);
    assert_eq!(stats.json["circuit_breaker_open"], Value::Null);
    let unknown: BTreeSet<&str> = stats.json["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["field"].as_str().unwrap())
        .collect();
    assert!(
        unknown.contains("connections.in_use") && unknown.contains("circuit_breaker_open"),
        "{unknown:?}"
    );
    assert_eq!(
        num(&stats.json["errors"]["listed_total"]),
        pool_conns.iter().map(|c| num(&c["errors"])).sum::<f64>()
    );

    // The native metrics as the pool sent them (steady: the same text).
    let native = api.get(&format!("{S}/metrics")).await;
    assert_eq!(native.text, get_text(&sim.url("/metrics")).await);
    assert_eq!(native.header("x-snapshot-stale"), "false");

    // Errors of the gate and of unknown paths.
    let nope = api.get("/api/v1/nope").await;
    assert_eq!((nope.status, nope.error_code()), (404, "not_found"));
    let root = api.get("/api").await;
    assert_eq!((root.status, root.error_code()), (404, "not_found"));
    let outside = client().get(exp.url("/nope")).send().await.unwrap();
    assert_eq!(outside.status(), 404);
    assert_eq!(
        outside.text().await.unwrap(),
        "not found\n",
        "outside /api/ stays text"
    );
    let post = api.call("POST", "/api/v1/status", &[]).await;
    assert_eq!(
        (post.status, post.error_code()),
        (405, "method_not_allowed")
    );
    assert_eq!(post.header("allow"), "GET, HEAD");
    let head = api.call("HEAD", &format!("{S}/status"), &[]).await;
    assert_eq!((head.status, head.text.as_str()), (200, ""));
    api.validate("published-steady");
}

#[tokio::test]
async fn health_tells_a_busy_published_pool_from_a_dead_one() {
    // More callers than idle connections: the idle list stays empty, the
    // pool answers 503, and yet operations flow.
    let sim = sim(&[
        "--callers",
        "8",
        "--connections",
        "2",
        "--ops-per-second",
        "200",
    ]);
    let exp = exporter(&sim, &["--api.cache-ttl", "300ms", "--api.rate-limit", "0"]);
    let api = Api::new(&exp);
    every_path(&api, &sim).await;
    let health = until(&api, &format!("{S}/health"), |a| {
        !a.json["exporter_view"]["window_seconds"].is_null()
            && a.json["exporter_view"]["operations_per_second"].as_f64() > Some(0.0)
    })
    .await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["status"], "unhealthy");
    assert_eq!(health.json["pool"]["pool_healthy"], false);
    assert_eq!(
        health.json["exporter_view"]["assessment"], "busy",
        "{}",
        health.text
    );
    assert_eq!(health.json["exporter_view"]["listed_connections"], 0);

    let stats = api.get(&format!("{S}/stats")).await;
    assert_eq!(stats.json["returns_connections"], false);
    assert_eq!(
        stats.json["errors"]["seen_per_second"],
        Value::Null,
        "{}",
        stats.text
    );
    let reason = stats.json["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["field"] == "errors.seen_per_second")
        .expect("the null has a reason");
    assert!(reason["reason"]
        .as_str()
        .unwrap()
        .contains("never lists a connection that was used"));
    assert!(
        num(&stats.json["native"]["operations_per_second"]) > 0.0,
        "{}",
        stats.text
    );
    let service = api.get("/api/v1/status").await;
    assert_eq!(
        (service.status, service.json["status"].as_str()),
        (200, Some("ok")),
        "{}",
        service.text
    );
    assert_eq!(service.json["secure_channel"]["assessment"], "busy");

    // A dead pool is another answer: 502, and the service is down.
    fault(&sim, "down", "", true).await;
    // Once the cached answer (300 ms) has expired.
    let dead = until(&api, &format!("{S}/health"), |a| a.status != 503).await;
    assert_eq!(
        (dead.status, dead.error_code()),
        (502, "pool_unreachable"),
        "{}",
        dead.text
    );
    let service = api.get("/api/v1/status").await;
    assert_eq!(service.status, 503, "{}", service.text);
    assert_eq!(service.json["status"], "down");
    assert_eq!(service.json["secure_channel"]["status"], "unreachable");
    api.validate("published-busy");
}

#[tokio::test]
async fn a_returning_pool_shows_errors_and_rates() {
    let sim = sim(&[
        "--model",
        "returning",
        "--extended",
        "--callers",
        "3",
        "--ops-per-second",
        "200",
        "--error-fraction",
        "0.05",
    ]);
    let exp = exporter(&sim, &["--api.cache-ttl", "200ms", "--api.rate-limit", "0"]);
    let api = Api::new(&exp);
    every_path(&api, &sim).await;
    let stats = until(&api, &format!("{S}/stats"), |a| {
        a.json["errors"]["seen_per_second"].is_number()
            && a.json["native"]["operations_per_second"].is_number()
    })
    .await;
    assert_eq!(stats.json["returns_connections"], true, "{}", stats.text);
    assert!(
        num(&stats.json["p95_latency_ms"]["max"]) > 0.0,
        "{}",
        stats.text
    );
    assert!(
        num(&stats.json["connection_age_seconds"]["oldest"])
            >= num(&stats.json["connection_age_seconds"]["newest"])
    );
    let health = api.get(&format!("{S}/health")).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json["exporter_view"]["assessment"], "healthy");
    let list = api
        .get(&format!("{S}/connections?sort=errors&order=desc"))
        .await;
    for item in list.json["items"].as_array().unwrap() {
        assert_eq!(item["healthy_basis"], "reported", "{item}");
        assert_eq!(item["healthy"], item["is_healthy"]);
    }
    let service = api.get("/api/v1/status").await;
    assert!(
        service.json["performance"]["avg_response_time_ms"].is_number(),
        "{}",
        service.text
    );
    api.validate("returning");
}

#[tokio::test]
async fn many_calls_within_the_ttl_cost_the_pool_one_fetch_per_document() {
    let sim = sim(&["--callers", "0"]);
    // Sixty clients at once on a busy machine may take longer than the
    // default 5 s to get their request heads read; that limit is not what
    // this case is about.
    let exp = exporter(
        &sim,
        &[
            "--api.cache-ttl",
            "60s",
            "--api.rate-limit",
            "0",
            "--web.read-header-timeout",
            "120s",
        ],
    );
    let before = pool_requests(&sim).await;
    let paths = [
        format!("{S}/status"),
        format!("{S}/health"),
        format!("{S}/connections?sort=p95"),
        format!("{S}/stats"),
        format!("{S}/metrics"),
        "/api/v1/status".to_owned(),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let url = exp.url(&paths[i % paths.len()]);
        tasks.spawn(async move { client().get(url).send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = tasks.join_next().await {
        assert!(matches!(status.unwrap(), 200 | 503));
    }
    for path in &paths {
        let status = client().get(exp.url(path)).send().await.unwrap().status();
        assert!(status == 200 || status == 503);
    }
    let after = pool_requests(&sim).await;
    let cost: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        cost,
        [1, 1, 1],
        "66 API calls cost the pool {cost:?} (status, health, metrics)"
    );

    // /metrics is never cached: every scrape asks the pool again.
    for _ in 0..3 {
        assert_eq!(scrape(&exp).await.status, 200);
    }
    let scraped = pool_requests(&sim).await;
    assert_eq!(scraped[0] - after[0], 3, "scrapes must fetch fresh");
    let s = scrape(&exp).await;
    let lookups = |result: &str| {
        s.value(
            "secure_channel_exporter_api_cache_requests_total",
            &[("result", result)],
        )
    };
    assert!(
        lookups("miss") >= 1.0 && lookups("miss") <= 3.0,
        "{}",
        lookups("miss")
    );
    assert_eq!(lookups("hit") + lookups("miss"), 66.0);
    assert_eq!(lookups("stale"), 0.0);
    assert_eq!(
        s.value(
            "secure_channel_exporter_api_requests_total",
            &[
                ("route", "/api/v1/secure-channel/connections"),
                ("code", "200")
            ]
        ),
        11.0
    );
    assert!(s
        .body
        .contains("secure_channel_exporter_api_request_duration_seconds_bucket"));
    println!(
        "pool-side fetches for 66 API calls within the TTL: status {}, health {}, metrics {}",
        cost[0], cost[1], cost[2]
    );
}

#[tokio::test]
async fn the_last_good_snapshot_is_served_stale_then_502() {
    let sim = sim(&["--callers", "0"]);
    let exp = exporter(
        &sim,
        &[
            "--api.cache-ttl",
            "200ms",
            "--api.stale-max",
            "8s",
            "--api.rate-limit",
            "0",
        ],
    );
    let api = Api::new(&exp);
    let fresh = api.get(&format!("{S}/status")).await;
    assert_eq!(fresh.json["stale"], false);
    assert_eq!(api.get(&format!("{S}/metrics")).await.status, 200);
    fault(&sim, "http_500", "", true).await;
    // Once the cached answer (200 ms) has expired, the next fetch fails
    // and the last good one is served, marked.
    let stale = until(&api, &format!("{S}/status"), |a| a.json["stale"] != false).await;
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_eq!(stale.json["stale"], true);
    assert_eq!(
        stale.json["error"]["code"], "pool_bad_answer",
        "{}",
        stale.text
    );
    assert!(stale.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    // No younger than the TTL it outlived.
    assert!(num(&stale.json["age_seconds"]) >= 0.2, "{}", stale.text);
    assert_eq!(stale.json["connections"], fresh.json["connections"]);
    let list = api.get(&format!("{S}/connections")).await;
    assert_eq!(list.json["stale"], true);
    let native = api.get(&format!("{S}/metrics")).await;
    assert_eq!(
        (native.status, native.header("x-snapshot-stale")),
        (200, "true")
    );
    // Health is never stale.
    let health = api.get(&format!("{S}/health")).await;
    assert_eq!(
        (health.status, health.error_code()),
        (502, "pool_bad_answer"),
        "{}",
        health.text
    );
    // Past --api.stale-max: 502.
    let gone = until(&api, &format!("{S}/status"), |a| a.status != 200).await;
    assert_eq!(
        (gone.status, gone.error_code()),
        (502, "pool_bad_answer"),
        "{}",
        gone.text
    );
    let s = scrape(&exp).await;
    assert!(
        s.value(
            "secure_channel_exporter_api_cache_requests_total",
            &[("result", "stale")]
        ) >= 3.0
    );
    fault(&sim, "http_500", "", false).await;
    let back = until(&api, &format!("{S}/status"), |a| a.status == 200).await;
    assert_eq!(
        (back.status, back.json["stale"].clone()),
        (200, json!(false))
    );
    api.validate("stale");

    // A pool too slow from the start: 504.
    let slow_sim = sim_with_fault("slow", "?delay_ms=3000").await;
    let slow = exporter(
        &slow_sim,
        &["--pool.timeout", "500ms", "--api.rate-limit", "0"],
    );
    let api = Api::new(&slow);
    let t = api.get(&format!("{S}/status")).await;
    assert_eq!(
        (t.status, t.error_code()),
        (504, "pool_timeout"),
        "{}",
        t.text
    );
    api.validate("timeout");
}

async fn sim_with_fault(name: &str, query: &str) -> Proc {
    let s = sim(&["--callers", "0"]);
    fault(&s, name, query, true).await;
    s
}

fn basic_auth_config(tag: &str) -> String {
    // bcrypt of "correct horse" (cost 4), as in security.rs.
    let hash = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
    temp_file(
        &format!("rest-{tag}-web.yml"),
        &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
    )
    .to_str()
    .unwrap()
    .to_owned()
}

#[tokio::test]
async fn cors_preflight_answers_without_credentials_and_requests_need_them() {
    let sim = sim(&["--callers", "0"]);
    let cfg = basic_auth_config("cors");
    let exp = exporter(
        &sim,
        &[
            "--api.cors-allowed-origins",
            "https://app.example",
            "--web.config.file",
            &cfg,
        ],
    );
    let api = Api::new(&exp);
    let status = format!("{S}/status");
    let origin = ("Origin", "https://app.example");
    let pre = api
        .call(
            "OPTIONS",
            &status,
            &[
                origin,
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
        )
        .await;
    assert_eq!(pre.status, 204, "{}", pre.text);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(
        pre.header("access-control-allow-methods"),
        "GET, HEAD, OPTIONS"
    );
    assert!(pre
        .header("access-control-allow-headers")
        .contains("Authorization"));
    assert_eq!(pre.header("access-control-allow-credentials"), "true");
    let vary: Vec<&str> = pre
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(vary.iter().any(|v| v.contains("Origin")), "{vary:?}");
    let evil = api
        .call("OPTIONS", &status, &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(
        (evil.status, evil.error_code()),
        (403, "origin_not_allowed")
    );
    assert_eq!(evil.header("access-control-allow-origin"), "");

    let anonymous = api.call("GET", &status, &[origin]).await;
    assert_eq!(
        (anonymous.status, anonymous.error_code()),
        (401, "unauthorized")
    );
    assert!(anonymous.header("www-authenticate").starts_with("Basic"));
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("prometheus:correct horse")
    );
    let ok = api
        .call("GET", &status, &[origin, ("Authorization", &auth)])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(ok.header("vary"), "Origin");
    // Outside the API, OPTIONS stays refused.
    let metrics = client()
        .request(reqwest::Method::OPTIONS, exp.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 405);
    api.validate("cors");

    // Without the flag, no preflight gets through; `*` never allows credentials.
    let closed = exporter(&sim, &[]);
    let api = Api::new(&closed);
    let refused = api.call("OPTIONS", &status, &[origin]).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (405, "method_not_allowed")
    );
    assert_eq!(refused.header("allow"), "GET, HEAD");
    assert_eq!(
        api.call("GET", &status, &[origin])
            .await
            .header("access-control-allow-origin"),
        ""
    );
    let any = exporter(&sim, &["--api.cors-allowed-origins", "*"]);
    let api_any = Api::new(&any);
    let pre = api_any.call("OPTIONS", &status, &[origin]).await;
    assert_eq!(
        (pre.status, pre.header("access-control-allow-origin")),
        (204, "*")
    );
    assert_eq!(pre.header("access-control-allow-credentials"), "");
    api.validate("cors-off");
    api_any.validate("cors-any");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    // One token per 5 s: a slow machine cannot refill the bucket between
    // the burst and the request that must be refused.
    let sim = sim(&["--callers", "0"]);
    let exp = exporter(
        &sim,
        &["--api.rate-limit", "0.2", "--api.rate-limit-burst", "3"],
    );
    let api = Api::new(&exp);
    let status = format!("{S}/status");
    for _ in 0..3 {
        assert_eq!(api.get(&status).await.status, 200);
    }
    let limited = api.get(&status).await;
    assert_eq!(
        (limited.status, limited.error_code()),
        (429, "rate_limited"),
        "{}",
        limited.text
    );
    let wait: u64 = limited
        .header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=5).contains(&wait), "{wait}");
    // Unknown API paths count against the bucket too; /metrics does not.
    assert_eq!(api.get("/api/v1/whatever").await.status, 429);
    for _ in 0..3 {
        assert_eq!(scrape(&exp).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 200)).await;
    assert_eq!(api.get(&status).await.status, 200);
    let s = scrape(&exp).await;
    assert_eq!(
        s.value(
            "secure_channel_exporter_api_requests_total",
            &[("route", "/api/v1/secure-channel/status"), ("code", "429")]
        ),
        1.0
    );
    api.validate("rate-limit");
}

#[tokio::test]
async fn the_status_page_says_what_a_returning_pool_lists() {
    let sim = sim(&[
        "--model",
        "returning",
        "--callers",
        "3",
        "--ops-per-second",
        "200",
        "--error-fraction",
        "0.05",
    ]);
    let exp = exporter(&sim, &["--api.rate-limit", "0"]);
    // Once a listed connection shows use, the pool is known to return them.
    let mut html = String::new();
    for _ in 0..300 {
        html = get_text(&exp.url("/status")).await;
        if html.contains(">This pool gives used connections back") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        html.contains(">This pool gives used connections back"),
        "{html}"
    );
    assert!(!html.contains(">This pool lists only idle"), "{html}");
}

/// Chromium from Debian; the test fails (never skips) without it.
fn chromium() -> String {
    for bin in ["chromium", "chromium-browser"] {
        if Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin.to_owned();
        }
    }
    panic!("the status page test needs Chromium: apt-get install -y chromium (scripts/test.sh installs it)");
}

#[tokio::test]
async fn the_status_page_in_a_real_browser() {
    let browser = chromium();
    let sim = sim(&["--callers", "0", "--connections", "5"]);
    let exp = exporter(&sim, &["--api.cache-ttl", "300ms", "--api.rate-limit", "0"]);

    // Without JavaScript: the server-rendered view, sortable by links.
    let html = get_text(&exp.url("/status?sort=id&order=desc")).await;
    let rows: Vec<&str> = html
        .split("<tr data-connection-id=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap())
        .collect();
    let mut pool_ids = ids(&sim_json(&sim, "/status/connections").await["connections"]);
    pool_ids.sort_by_key(|id| std::cmp::Reverse(id.parse::<u64>().unwrap()));
    assert_eq!(rows, pool_ids);
    assert!(
        html.contains("aria-sort=\"descending\" data-sort=\"id\""),
        "{html}"
    );
    assert!(html.contains("data-state=\"healthy\""));
    // The first view has no rate yet, and says why.
    assert!(
        html.contains("<dd id=\"ops\">unknown (needs two fetches"),
        "{html}"
    );
    // What the table can show, for the build the pool looks like.
    assert!(
        html.contains("lists only idle connections (the published build)"),
        "{html}"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets"
    );
    let bad = client()
        .get(exp.url("/status?refresh=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let landing = get_text(&exp.url("/")).await;
    assert!(landing.contains("href=\"/status\""));

    let shot = temp_file("status-page.png", "");
    let (exporter_url, sim_url) = (exp.url(""), sim.url(""));
    let shot_arg = shot.clone();
    // The exporter and simulator are child processes: blocking here is fine,
    // but keep the runtime free for the other tests.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(format!("{ROOT}/tests/browser/status_page.py"))
            .args([
                "--chromium",
                &browser,
                "--exporter",
                &exporter_url,
                "--sim",
                &sim_url,
            ])
            .arg("--screenshot")
            .arg(&shot_arg)
            .output()
            .expect("python3 runs the browser test")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "status page in Chromium:\n{report}");
    assert!(report.contains("browser: ok"), "{report}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 5000);
}

#[tokio::test]
async fn the_monitor_keeps_the_snapshot_warm_and_logs_each_transition_once() {
    let sim = sim(&["--callers", "0"]);
    let exp = exporter(
        &sim,
        &[
            "--monitor.interval",
            "200ms",
            "--api.cache-ttl",
            "60s",
            "--api.rate-limit",
            "0",
        ],
    );
    let api = Api::new(&exp);
    let first = exp.wait_for_log("pool health changed");
    assert!(first.contains("to=healthy"), "{first}");
    // The TTL is a minute, yet the status served keeps being fresh: the
    // monitor's polls, not API calls, refresh it. Measured against the
    // test's own clock: a snapshot kept since the first call would be at
    // least as old as the time between the two calls.
    let first_call = Instant::now();
    let first_status = api.get(&format!("{S}/status")).await;
    assert_eq!(first_status.status, 200, "{}", first_status.text);
    let before = pool_requests(&sim).await;
    while pool_requests(&sim).await[0] < before[0] + 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = api.get(&format!("{S}/status")).await;
    let between = first_call.elapsed().as_secs_f64();
    assert!(
        num(&status.json["age_seconds"]) < between,
        "served a snapshot older than {between:.2} s: {}",
        status.text
    );

    fault(&sim, "empty_pool", "", true).await;
    let health = until(&api, &format!("{S}/health"), |a| a.status == 503).await;
    assert_eq!(health.json["status"], "unhealthy");
    exp.wait_for_log("to=unhealthy");
    // A few more polls of the unhealthy pool, each a chance to log the
    // transition again; then every line they caused is collected.
    let polled = pool_requests(&sim).await;
    while pool_requests(&sim).await[0] < polled[0] + 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exp.settle_logs();
    let logs = exp.logs();
    let changes = logs
        .lines()
        .filter(|l| l.contains("pool health changed"))
        .count();
    assert_eq!(changes, 2, "each transition logged once:\n{logs}");
    api.validate("monitor");
}
