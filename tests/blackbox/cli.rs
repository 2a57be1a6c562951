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
fn unknown_flags_are_refused() {
    let (code, _, stderr) = run(&["--web.listen-adress", ":1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--web-listen-adress") || stderr.contains("Unrecognized"),
        "{stderr}"
    );
    assert!(stderr.contains("--help"));
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
