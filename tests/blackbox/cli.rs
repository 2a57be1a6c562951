//! The command line as a user meets it.

use std::process::Command;

use crate::common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(EXPORTER)
        .args(args)
        .env_remove("SECURE_CHANNEL_POOL_URL")
        .env_remove("SECURE_CHANNEL_POOL_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flag_values_exit_non_zero_naming_the_flag() {
    for (args, flag) in [
        (&["--pool.url", "::not a url"][..], "--pool.url"),
        (&["--pool.timeout", "fast"][..], "--pool.timeout"),
        (
            &["--pool.auth-token-file", "/nonexistent/token"][..],
            "--pool.auth-token-file",
        ),
        (
            &["--web.listen-address", "nowhere"][..],
            "--web.listen-address",
        ),
        (&["--log.level", "chatty"][..], "--log.level"),
        (
            &["--pool.max-body-size", "huge"][..],
            "--pool.max-body-size",
        ),
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    }
}

#[test]
fn unknown_flags_are_refused_with_the_closest_flag() {
    for (typed, suggestion) in [
        ("--web.listen-adress", "--web.listen-address"),
        ("--pool.ur", "--pool.url"),
        ("--pool-url", ""),
        ("--web.telemetry-pth", "--web.telemetry-path"),
        ("--collector.conections", "--collector.connections"),
        ("--verison", "--version"),
    ] {
        let (code, _, stderr) = run(&[typed, "x"]);
        if suggestion.is_empty() {
            // The dashed spelling is a known flag: it is the value that fails.
            assert!(!stderr.contains("unknown flag"), "{stderr}");
            continue;
        }
        assert_eq!(code, 2, "{typed}: {stderr}");
        assert!(
            stderr.contains(&format!("unknown flag {typed}: did you mean {suggestion}?")),
            "{typed}: {stderr}"
        );
        assert!(stderr.contains("--help"), "{stderr}");
    }
    // Nothing close: no guess.
    let (code, _, stderr) = run(&["--frobnicate", "x"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown flag --frobnicate"), "{stderr}");
    assert!(!stderr.contains("did you mean"), "{stderr}");
    // A misspelt subcommand.
    let (code, _, stderr) = run(&["chek"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did you mean check?"), "{stderr}");
}

#[test]
fn every_bad_value_names_its_flag() {
    let file = temp_file("cli-cert", "not a certificate");
    let file = file.to_str().unwrap();
    for args in [
        &["--pool.url", "notaurl"][..],
        &["--pool.url", "ftp://pool:21"],
        &["--pool.timeout", "0s"],
        &["--pool.ca-file", "/nonexistent/ca.pem"],
        &["--pool.client-cert-file", file],
        &["--pool.client-key-file", file],
        &["--pool.tls-server-name", "pool.internal"],
        &["--pool.max-body-size", "0"],
        &["--web.telemetry-path", "/"],
        &["--web.scrape-timeout-offset", "soon"],
        &["--web.max-connections", "none"],
        &["--web.max-requests", "0"],
        &["--web.read-header-timeout", "0s"],
        &["--web.write-timeout", "never"],
        &["--probe.allowed-targets", "ftp://x:1"],
        &["--collector.max-connections", "many"],
        &["--collector.max-native-series", "-3"],
        &["--collector.max-label-value-length", "4"],
        &["--collector.connections", "some"],
        &["--api.cache-ttl", "x"],
        &["--api.stale-max", "x"],
        &["--api.cors-allowed-origins", "not an origin"],
        &["--api.rate-limit", "fast"],
        &["--api.rate-limit-burst", "0"],
        &["--monitor.interval", "0s"],
        &["--log.level", "chatty"],
        &["--log.format", "xml"],
        &["--demo.model", "other"],
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
    let (_, _, stderr) = run(&["--pool.url", "notaurl"]);
    assert!(
        stderr.contains("invalid --pool.url \"notaurl\""),
        "{stderr}"
    );
}

#[test]
fn occupied_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&["--web.listen-address", &addr]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!(
        "secure-channel-exporter {}",
        env!("CARGO_PKG_VERSION")
    )));
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--pool.url",
        "--pool.auth-token-file",
        "--pool.timeout",
        "--web.listen-address",
        "--web.telemetry-path",
        "--log.level",
        "--log.format",
        "--demo",
        "SECURE_CHANNEL_POOL_TOKEN",
    ] {
        assert!(help.contains(flag), "{flag} not in help:\n{help}");
    }
}

#[tokio::test]
async fn demo_mode_exports_a_simulated_pool() {
    let exp = Proc::start(
        EXPORTER,
        &["--demo", "--web.listen-address", "127.0.0.1:0"],
        &[],
    );
    let s = scrape(&exp).await;
    assert_eq!(s.value("secure_channel_up", &[]), 1.0, "{}", s.body);
    assert_eq!(
        s.value(
            "secure_channel_pool_info",
            &[("endpoint", "relay.example.net:443"), ("backend", "demo")]
        ),
        1.0
    );
    assert_eq!(s.samples("secure_channel_connection_errors_total").len(), 4);
    assert!(s.value("secure_channel_latency_ms_count", &[]) > 0.0);
}

#[tokio::test]
async fn custom_telemetry_path() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.telemetry-path", "/custom"]);
    let resp = client().get(exp.url("/custom")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("secure_channel_up 1"));
    let old = client().get(exp.url("/metrics")).send().await.unwrap();
    assert_eq!(old.status(), 404);
}

#[test]
fn the_simulator_suggests_flags_too() {
    let out = Command::new(SIM)
        .args(["--modle", "returning"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown flag --modle: did you mean --model?"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["--url", "http://pool:9090"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did you mean --pool.url?"), "{stderr}");
}
