//! The listener's defences and the pool-side TLS, end to end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::certs::{Ca, Issued};
use crate::common::*;

/// bcrypt of "correct horse" (cost 4, so tests stay fast).
const HASH: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
const PASSWORD: &str = "correct horse";

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sce-sec-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn basic(user: &str, pass: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {enc}")
}

fn https_client(ca: &str, identity: Option<&Issued>) -> reqwest::Client {
    crate::common::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap());
    if let Some(id) = identity {
        let pem = format!("{}\n{}", id.cert, id.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn https_url(exp: &Proc, path: &str) -> String {
    format!(
        "https://localhost:{}{path}",
        exp.address.rsplit(':').next().unwrap()
    )
}

/// A simulator and an exporter whose web config (in the returned folder,
/// as `web.yml`) lets user `prometheus` in with [`PASSWORD`].
fn behind_basic_auth(tag: &str) -> (Proc, Proc, PathBuf) {
    let d = dir(tag);
    let cfg = write(
        &d,
        "web.yml",
        &format!("basic_auth_users:\n  prometheus: '{HASH}'\n"),
    );
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.config.file", &cfg]);
    (sim, exp, d)
}

#[tokio::test]
async fn basic_auth_guards_everything_but_health() {
    let (_sim, exp, _) = behind_basic_auth("auth");
    for path in ["/metrics", "/", "/ready"] {
        let resp = client().get(exp.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }
    let wrong = client()
        .get(exp.url("/metrics"))
        .header("authorization", basic("prometheus", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let health = client().get(exp.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let s = scrape_with(&exp, &[("authorization", &basic("prometheus", PASSWORD))]).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.value("secure_channel_up", &[]), 1.0);
    assert_eq!(
        s.value("secure_channel_exporter_web_auth_failures_total", &[]),
        4.0
    );
    assert_eq!(
        s.value(
            "secure_channel_exporter_web_config_last_reload_successful",
            &[]
        ),
        1.0
    );
}

#[tokio::test]
async fn web_config_reloads_and_keeps_the_last_good_one() {
    let (_sim, exp, d) = behind_basic_auth("reload");
    let auth = basic("prometheus", PASSWORD);
    assert_eq!(
        scrape_with(&exp, &[("authorization", &auth)]).await.status,
        200
    );

    // A broken file: the last good settings stay in force.
    write(&d, "web.yml", "basic_auth_users: [not, a, map]\n");
    let s = scrape_with(&exp, &[("authorization", &auth)]).await;
    assert_eq!(s.status, 200);
    assert_eq!(
        s.value(
            "secure_channel_exporter_web_config_last_reload_successful",
            &[]
        ),
        0.0
    );
    exp.wait_for_log("web config reload failed");

    // A new user replaces the old one without a restart.
    let other = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
    write(
        &d,
        "web.yml",
        &format!("basic_auth_users:\n  grafana: '{other}'\n"),
    );
    let old = scrape_with(&exp, &[("authorization", &auth)]).await;
    assert_eq!(old.status, 401);
    let new = scrape_with(&exp, &[("authorization", &basic("grafana", PASSWORD))]).await;
    assert_eq!(new.status, 200);
}

#[test]
fn broken_web_config_is_a_start_up_error_naming_the_field() {
    let d = dir("broken");
    let cfg = write(
        &d,
        "web.yml",
        "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n",
    );
    let out = std::process::Command::new(EXPORTER)
        .args([
            "--web.config.file",
            &cfg,
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    // A setting that cannot work: exit 2, one line naming the flag and
    // the field.
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls_server_config.cert_file"), "{stderr}");
    assert!(stderr.contains("--web.config.file"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

struct TlsSetup {
    dir: PathBuf,
    ca: Ca,
    cfg: String,
}

fn tls_setup(tag: &str, client_auth: Option<&Ca>) -> TlsSetup {
    let d = dir(tag);
    let ca = Ca::new("test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    write(&d, "server.crt", &server.cert);
    write(&d, "server.key", &server.key);
    let mut yaml =
        String::from("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    if let Some(client_ca) = client_auth {
        write(&d, "client-ca.crt", &client_ca.pem);
        yaml.push_str(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n",
        );
    }
    let cfg = write(&d, "web.yml", &yaml);
    TlsSetup { dir: d, ca, cfg }
}

#[tokio::test]
async fn tls_listener_good_cert_wrong_ca_and_plain_http() {
    let t = tls_setup("tls", None);
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.config.file", &t.cfg]);
    let good = https_client(&t.ca.pem, None)
        .get(https_url(&exp, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert!(good.text().await.unwrap().contains("secure_channel_up 1"));

    let other_ca = Ca::new("someone else");
    let wrong = https_client(&other_ca.pem, None)
        .get(https_url(&exp, "/metrics"))
        .send()
        .await;
    assert!(wrong.is_err(), "a client trusting another CA connected");

    let plain = client().get(exp.url("/metrics")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    let s = https_client(&t.ca.pem, None)
        .get(https_url(&exp, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = secure_channel_exporter::exposition::parse(&s)
        .families
        .into_iter()
        .find(|f| f.name == "secure_channel_exporter_web_tls_handshake_failures_total")
        .unwrap();
    assert!(failures.samples[0].value >= 2.0, "{s}");
}

#[tokio::test]
async fn tls_listener_expired_certificate_is_refused_by_clients() {
    let d = dir("expired");
    let ca = Ca::new("test CA");
    let server = ca.expired_server(&["localhost"]);
    write(&d, "server.crt", &server.cert);
    write(&d, "server.key", &server.key);
    let cfg = write(
        &d,
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.config.file", &cfg]);
    let err = https_client(&ca.pem, None)
        .get(https_url(&exp, "/health"))
        .send()
        .await
        .unwrap_err();
    let mut chain = format!("{err}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(chain.to_lowercase().contains("expired"), "{chain}");
}

#[tokio::test]
async fn client_certificates_required_and_verified() {
    let client_ca = Ca::new("client CA");
    let t = tls_setup("mtls", Some(&client_ca));
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.config.file", &t.cfg]);
    let url = https_url(&exp, "/metrics");
    assert!(
        https_client(&t.ca.pem, None)
            .get(&url)
            .send()
            .await
            .is_err(),
        "no client certificate, still served"
    );
    let stranger = Ca::new("stranger").client("mallory");
    assert!(
        https_client(&t.ca.pem, Some(&stranger))
            .get(&url)
            .send()
            .await
            .is_err(),
        "certificate from an unknown CA, still served"
    );
    let good = client_ca.client("prometheus");
    let resp = https_client(&t.ca.pem, Some(&good))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = &t.dir;
}

#[tokio::test]
async fn rotated_certificate_takes_effect_without_restart() {
    let t = tls_setup("rotate", None);
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.config.file", &t.cfg]);
    let url = https_url(&exp, "/health");
    assert_eq!(
        https_client(&t.ca.pem, None)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let new_ca = Ca::new("rotated CA");
    let server = new_ca.server(&["localhost"]);
    // Key first, then the certificate: a reload between the two fails and
    // keeps the old pair, the next connection picks up the new one.
    write(&t.dir, "server.key", &server.key);
    write(&t.dir, "server.crt", &server.cert);
    let mut ok = false;
    for _ in 0..300 {
        if let Ok(resp) = https_client(&new_ca.pem, None).get(&url).send().await {
            ok = resp.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the rotated certificate was not served");
}

#[tokio::test]
async fn pool_over_mutual_tls_with_server_name_override() {
    let d = dir("pool-mtls");
    let ca = Ca::new("pool CA");
    let client_ca = Ca::new("exporter CA");
    let pool_cert = ca.server(&["pool.internal"]);
    write(&d, "pool.crt", &pool_cert.cert);
    write(&d, "pool.key", &pool_cert.key);
    write(&d, "client-ca.crt", &client_ca.pem);
    let cfg = write(
        &d,
        "pool-web.yml",
        "tls_server_config:\n  cert_file: pool.crt\n  key_file: pool.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n",
    );
    let pool_ca = write(&d, "pool-ca.crt", &ca.pem);
    let id = client_ca.client("exporter");
    let cert = write(&d, "exporter.crt", &id.cert);
    let key = write(&d, "exporter.key", &id.key);
    let sim = sim(&["--web.config.file", &cfg]);
    let pool_url = format!("https://{}/", sim.address);

    // The pool's certificate names pool.internal, not 127.0.0.1.
    let exp = exporter_with_env(
        &pool_url,
        &[
            "--pool.ca-file",
            &pool_ca,
            "--pool.client-cert-file",
            &cert,
            "--pool.client-key-file",
            &key,
            "--pool.tls-server-name",
            "pool.internal",
        ],
        &[],
    );
    let s = scrape(&exp).await;
    assert_eq!(
        s.value("secure_channel_up", &[]),
        1.0,
        "{}\n{}",
        s.body,
        exp.logs()
    );
    assert_eq!(s.source_up("metrics"), 1.0);

    // Without the client certificate the pool refuses the handshake.
    let no_cert = exporter_with_env(
        &pool_url,
        &[
            "--pool.ca-file",
            &pool_ca,
            "--pool.tls-server-name",
            "pool.internal",
        ],
        &[],
    );
    let s = scrape(&no_cert).await;
    assert_eq!(s.failures("status", "connect"), 1.0, "{}", s.body);

    // Without the name override, the certificate does not match the address.
    let no_name = exporter_with_env(
        &pool_url,
        &[
            "--pool.ca-file",
            &pool_ca,
            "--pool.client-cert-file",
            &cert,
            "--pool.client-key-file",
            &key,
        ],
        &[],
    );
    let s = scrape(&no_name).await;
    assert_eq!(s.failures("status", "connect"), 1.0, "{}", s.body);
}

#[tokio::test]
async fn probe_only_for_allowed_targets() {
    let sim = sim(&["--endpoint", "relay-b:443"]);
    let port = sim.address.rsplit(':').next().unwrap().to_owned();
    let off = exporter_with_env("http://127.0.0.1:1/", &[], &[]);
    let resp = client()
        .get(off.url(&format!("/probe?target=127.0.0.1:{port}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let exp = exporter_with_env(
        "http://127.0.0.1:1/",
        &[
            "--probe.allowed-targets",
            "http://127.0.0.1:*,https://*.pools.internal:9443",
        ],
        &[],
    );
    let target = format!("http%3A%2F%2F127.0.0.1%3A{port}");
    let resp = client()
        .get(exp.url(&format!("/probe?target={target}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("secure_channel_pool_active_connections{endpoint=\"relay-b:443\"} 4"),
        "{body}"
    );

    for (query, code) in [
        ("/probe?target=http://169.254.169.254:80", 403),
        ("/probe?target=localhost:9090", 403),
        ("/probe?target=http://u:p@127.0.0.1:1", 400),
        ("/probe", 400),
    ] {
        let resp = client().get(exp.url(query)).send().await.unwrap();
        assert_eq!(resp.status(), code, "{query}");
    }
}

#[tokio::test]
async fn request_bodies_are_refused() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &[]);
    let mut stream = std::net::TcpStream::connect(&exp.address).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Sockets a process holds open (listening, accepted and outgoing).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test]
async fn connection_limit_queues_extra_clients() {
    let sim = sim(&[]);
    let exp = exporter(&sim, &["--web.max-connections", "2"]);
    let sockets_before = open_sockets(exp.child.id());
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&exp.address).unwrap())
        .collect();
    // Both taken by the exporter (its two slots) before the third comes.
    while open_sockets(exp.child.id()) < sockets_before + 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = tokio::spawn({
        let url = exp.url("/health");
        async move { client().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past the limit"
    );
    drop(idle);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("queued client never served")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn secrets_never_leak() {
    let d = dir("secrets");
    let token = "tok-9f8e7d6c5b4a";
    let token_file = write(&d, "token", token);
    let t = tls_setup("secrets-tls", None);
    let key_pem = std::fs::read_to_string(t.dir.join("server.key")).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap().to_owned();
    let cfg = write(
        &t.dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: '{HASH}'\n"
        ),
    );
    let sim = sim(&["--token-file", &token_file]);
    let pool_url = format!("http://user:urlpass@{}/", sim.address);
    let exp = exporter_with_env(
        &pool_url,
        &[
            "--web.config.file",
            &cfg,
            "--pool.auth-token-file",
            &token_file,
            "--log.level",
            "debug",
            "--probe.allowed-targets",
            "http://127.0.0.1:*",
        ],
        &[],
    );
    let https = https_client(&t.ca.pem, None);
    let auth = basic("prometheus", PASSWORD);
    let mut seen = String::new();
    for path in [
        "/",
        "/metrics",
        "/ready",
        "/health",
        "/nope",
        "/probe?target=127.0.0.1:1",
    ] {
        for authz in [
            None,
            Some(auth.as_str()),
            Some("Basic cHJvbWV0aGV1czp3cm9uZw=="),
        ] {
            let mut req = https.get(https_url(&exp, path));
            if let Some(a) = authz {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            seen.push_str(&format!("{:?}\n", resp.headers()));
            seen.push_str(&resp.text().await.unwrap());
        }
    }
    // Make the pool fail too, so error paths are logged.
    fault(&sim, "unauthorized", "", true).await;
    let resp = https
        .get(https_url(&exp, "/metrics"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    seen.push_str(&resp.text().await.unwrap());
    assert!(seen.contains("secure_channel_up"), "{seen}");
    exp.wait_for_log("reason=unauthorized");
    let logs = exp.logs();
    for secret in [token, PASSWORD, "urlpass", key_line.as_str(), HASH] {
        assert!(!seen.contains(secret), "{secret:?} in responses");
        assert!(!logs.contains(secret), "{secret:?} in logs:\n{logs}");
    }
}
