//! `secure-channel-exporter check` against real simulated pools, a stopped
//! one and one that refuses the token: what it reports, and its exit code.

use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// Runs `check` with `args`; the exit code, stdout and stderr.
fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(EXPORTER)
        .arg("check")
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

fn check_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = check(&all);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, report)
}

fn alert_names(report: &Value, list: &str) -> Vec<String> {
    report["alerts"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .collect()
}

const BLIND_ON_PUBLISHED: [&str; 3] = [
    "SecureChannelErrorBudgetFastBurn",
    "SecureChannelErrorBudgetSlowBurn",
    "SecureChannelConnectionFlapping",
];

#[test]
fn published_pool_is_recognised_and_its_blind_alerts_named() {
    let pool = sim(&["--model", "published"]);
    let (code, r) = check_json(&["--pool.url", &pool.url("/")]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["ok"], true);
    assert_eq!(r["reachable"], true);
    assert_eq!(r["auth"], "not_required");
    assert_eq!(r["build"], "published", "{r:#}");
    assert_eq!(r["timestamps"], "systemtime");
    for (doc, format) in [
        ("status", "json"),
        ("health", "json"),
        ("metrics", "prometheus_text"),
    ] {
        let d = &r["documents"][doc];
        assert_eq!(d["ok"], true, "{doc}: {d:#}");
        assert_eq!(d["result"], "ok");
        assert_eq!(d["http_status"], 200);
        assert_eq!(d["format"], format);
        assert!(d["size_bytes"].as_u64().unwrap() > 100, "{d:#}");
        assert_eq!(d["url"], pool.url(&format!("/{}", doc_path(doc))));
    }
    assert_eq!(alert_names(&r, "cannot_fire"), BLIND_ON_PUBLISHED);
    assert!(alert_names(&r, "can_fire").contains(&"SecureChannelPoolDown".to_owned()));
    // The pool was asked once per document.
    let (_, state) = blocking_json(&pool.url("/sim/state"));
    assert_eq!(state["requests"]["status"], 1);
    assert_eq!(state["requests"]["health"], 1);
    assert_eq!(state["requests"]["metrics"], 1);
}

fn doc_path(doc: &str) -> &'static str {
    match doc {
        "status" => "status/connections",
        "health" => "healthz",
        _ => "metrics",
    }
}

fn blocking_json(url: &str) -> (u16, Value) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(get_json(url, &[]))
}

#[test]
fn returning_pool_is_recognised_and_every_alert_can_fire() {
    let pool = sim(&["--model", "returning", "--time-format", "rfc3339"]);
    let (code, r) = check_json(&["--pool.url", &pool.url("/")]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["build"], "returning", "{r:#}");
    assert_eq!(r["timestamps"], "rfc3339");
    assert!(alert_names(&r, "cannot_fire").is_empty());
    assert_eq!(alert_names(&r, "can_fire").len(), 9);
}

#[test]
fn quiet_pool_build_is_unknown() {
    let pool = sim(&["--callers", "0", "--time-format", "unix"]);
    let (code, r) = check_json(&["--pool.url", &pool.url("/")]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["build"], "unknown", "{r:#}");
    assert_eq!(r["timestamps"], "unix");
    assert_eq!(alert_names(&r, "cannot_fire"), BLIND_ON_PUBLISHED);
}

#[test]
fn stopped_pool_is_unreachable_and_exits_1() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let (code, r) = check_json(&["--pool.url", &url]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["ok"], false);
    assert_eq!(r["reachable"], false);
    assert_eq!(r["auth"], "unknown");
    assert_eq!(r["build"], "unknown");
    for doc in ["status", "health", "metrics"] {
        let d = &r["documents"][doc];
        assert_eq!(d["ok"], false);
        assert_eq!(d["result"], "connect", "{d:#}");
        assert_eq!(d["http_status"], Value::Null);
    }
    let (code, text, _) = check(&["--pool.url", &url]);
    assert_eq!(code, 1);
    assert!(text.contains("reachable   no"), "{text}");
    assert!(
        text.contains("result      FAILED: status, health, metrics"),
        "{text}"
    );
}

#[test]
fn pool_answering_401_is_reachable_with_auth_refused_and_exits_1() {
    let token = temp_file("check-token", "right-token\n");
    let wrong = temp_file("check-wrong-token", "wrong-token\n");
    let pool = sim(&["--token-file", token.to_str().unwrap()]);
    let (code, r) = check_json(&[
        "--pool.url",
        &pool.url("/"),
        "--pool.auth-token-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["reachable"], true);
    assert_eq!(r["auth"], "refused");
    assert_eq!(r["token_sent"], true);
    for doc in ["status", "metrics"] {
        let d = &r["documents"][doc];
        assert_eq!(d["result"], "unauthorized", "{d:#}");
        assert_eq!(d["http_status"], 401);
    }
    // Health needs no token: it still decodes.
    assert_eq!(r["documents"]["health"]["ok"], true);
    assert!(!r.to_string().contains("wrong-token"), "{r}");

    let (code, r) = check_json(&[
        "--pool.url",
        &pool.url("/"),
        "--pool.auth-token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["auth"], "accepted");

    let (code, text, _) = check(&["--pool.url", &pool.url("/")]);
    assert_eq!(code, 1);
    assert!(
        text.contains("auth        refused: the pool wants a token (--pool.auth-token-file)"),
        "{text}"
    );
}

#[test]
fn html_answers_fail_decoding_and_say_what_came_back() {
    let pool = sim(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(fault(&pool, "html", "", true));
    let (code, r) = check_json(&["--pool.url", &pool.url("/")]);
    assert_eq!(code, 1, "{r:#}");
    for doc in ["status", "health", "metrics"] {
        let d = &r["documents"][doc];
        assert_eq!(d["ok"], false, "{doc}: {d:#}");
        assert_eq!(d["format"], "html");
        assert_eq!(d["result"], "decode");
    }
}

#[test]
fn bad_check_flags_exit_2_naming_the_flag() {
    for (args, needle) in [
        (&["--format", "xml"][..], "--format"),
        (&["--pool.url", "notaurl"][..], "--pool.url"),
        (&["--pool.timeout", "0s"][..], "--pool.timeout"),
        (&["--pool.ulr", "http://x"][..], "did you mean --pool.url?"),
        (&["--web.listen-address", ":1"][..], "--web.listen-address"),
    ] {
        let (code, stdout, stderr) = check(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
