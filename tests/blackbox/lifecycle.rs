//! Tokens, readiness, shutdown.

use std::time::{Duration, Instant};

use crate::common::*;

const TOKEN: &str = "s3cr3t-t0ken-value";

#[tokio::test]
async fn token_from_file_or_environment() {
    let token_file = temp_file("pool-token", &format!("{TOKEN}\n"));
    let sim = sim(&["--token-file", token_file.to_str().unwrap()]);

    let without = exporter(&sim, &[]);
    let s = scrape(&without).await;
    assert_eq!(s.source_up("status"), 0.0);
    assert_eq!(s.failures("status", "unauthorized"), 1.0);
    assert_eq!(s.failures("metrics", "unauthorized"), 1.0);
    // /healthz needs no token.
    assert_eq!(s.source_up("health"), 1.0);
    without.wait_for_log("reason=unauthorized");

    let with_file = exporter(
        &sim,
        &["--pool.auth-token-file", token_file.to_str().unwrap()],
    );
    let with_env = exporter_with_env(&sim.url("/"), &[], &[("SECURE_CHANNEL_POOL_TOKEN", TOKEN)]);
    for exp in [&with_file, &with_env] {
        let s = scrape(exp).await;
        assert_eq!(s.value("secure_channel_up", &[]), 1.0, "{}", s.body);
        assert_eq!(s.source_up("metrics"), 1.0);
        assert!(!s.body.contains(TOKEN));
        let landing = get_text(&exp.url("/")).await;
        assert!(!landing.contains(TOKEN));
    }

    // A wrong token is reported as such, and never logged.
    let wrong = exporter_with_env(
        &sim.url("/"),
        &[],
        &[("SECURE_CHANNEL_POOL_TOKEN", "wrong-token-123")],
    );
    let s = scrape(&wrong).await;
    assert_eq!(s.failures("status", "unauthorized"), 1.0);
    wrong.wait_for_log("reason=unauthorized");
    for exp in [&without, &with_file, &with_env, &wrong] {
        let logs = exp.logs();
        assert!(
            !logs.contains(TOKEN) && !logs.contains("wrong-token-123"),
            "{logs}"
        );
    }
}

#[tokio::test]
async fn readiness_follows_the_pool() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &[]);
    let (code, body) = get_json(&exp.url("/ready"), &[]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ready"], true);

    fault(&sim, "http_500", "?documents=status", true).await;
    // A scrape records the failed status fetch; /ready reflects it at once.
    scrape(&exp).await;
    let (code, body) = get_json(&exp.url("/ready"), &[]).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false);
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("HTTP 500"), "{reason}");

    fault(&sim, "http_500", "", false).await;
    scrape(&exp).await;
    let (code, _) = get_json(&exp.url("/ready"), &[]).await;
    assert_eq!(code, 200);

    // With no scrape, /ready checks the pool itself once its cache expires.
    fault(&sim, "down", "?documents=status", true).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = get_json(&exp.url("/ready"), &[]).await;
        if code == 503 {
            assert!(
                body["reason"].as_str().unwrap().contains("cannot reach"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed 200 with the pool down"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn ready_is_503_when_the_pool_never_answered() {
    let port = closed_port();
    let exp = exporter_with_env(&format!("http://127.0.0.1:{port}"), &[], &[]);
    let (code, body) = get_json(&exp.url("/ready"), &[]).await;
    assert_eq!(code, 503);
    assert_eq!(body["ready"], false);
    // Liveness does not depend on the pool.
    let (code, _) = get_json(&exp.url("/health"), &[]).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn sigterm_lets_in_flight_scrapes_finish() {
    let sim = sim(&[]);
    fault(&sim, "slow", "?delay_ms=1500", true).await;
    let mut exp = exporter(&sim, &[]);
    let in_flight = tokio::spawn({
        let url = exp.url("/metrics");
        async move {
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    });
    // In flight once the pool has the exporter's request.
    while get_json(&sim.url("/sim/state"), &[]).await.1["requests"]["status"]
        .as_u64()
        .unwrap()
        == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    exp.signal(libc::SIGTERM);
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("secure_channel_up 1"), "{body}");
    let exit = exp.wait_exit(Duration::from_secs(8)).await;
    assert!(exit.success(), "{exit:?}");
    // New connections are refused once it has stopped.
    assert!(client().get(exp.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn sigint_with_nothing_in_flight_exits_at_once() {
    let sim = sim(&[]);
    let mut exp = exporter(&sim, &[]);
    scrape(&exp).await;
    exp.signal(libc::SIGINT);
    let exit = exp.wait_exit(Duration::from_secs(5)).await;
    assert!(exit.success());
}

#[tokio::test]
async fn json_log_format() {
    let port = closed_port();
    // JSON logs: the harness cannot find the logfmt "listening" line, so
    // run the binary directly and read its first line.
    let mut child = std::process::Command::new(EXPORTER)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.format",
            "json",
            "--pool.url",
            "http://127.0.0.1:1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let json: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    // Flat, with the keys Prometheus' own components (promslog) write.
    assert_eq!(json["level"], "INFO");
    assert_eq!(json["msg"], "listening");
    assert!(json["time"].as_str().unwrap().ends_with('Z'), "{line}");
    assert!(json["source"].as_str().unwrap().contains(".rs:"), "{line}");
    assert!(json["address"].as_str().unwrap().contains(":"), "{line}");
    assert!(json.get("fields").is_none(), "{line}");
}
