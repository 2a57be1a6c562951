//! The client against a fake pool on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use secure_channel_client::{CallOptions, Document, ErrorKind, PoolClient, Token};

fn client(url: &str) -> PoolClient {
    PoolClient::builder()
        .base_url(url)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn fetches_status_health_metrics_and_a_connection() {
    let pool = FakePool::start(pool_routes(None, STATUS_RFC3339, (200, HEALTH_HEALTHY))).await;
    let c = client(&pool.url());
    let s = c.status(CallOptions::new()).await.unwrap();
    assert_eq!(s.endpoint, "relay.bitcoin-sprint.inc:443");
    assert_eq!(
        c.health(CallOptions::new()).await.unwrap().is_healthy(),
        Some(true)
    );
    assert_eq!(c.metrics_text(CallOptions::new()).await.unwrap(), NATIVE);
    let conn = c.connection(7u64, CallOptions::new()).await.unwrap();
    assert_eq!(conn.errors, 2.0);
    let conn = c.connection("9", CallOptions::new()).await.unwrap();
    assert_eq!(conn.reconnects, 0.0);
    let missing = c.connection(8u64, CallOptions::new()).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        missing.to_string().contains("no connection with id 8"),
        "{missing}"
    );

    // The raw path returns the bytes as sent.
    let raw = c
        .fetch(
            Document::Status,
            CallOptions::new().timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(&raw.body()[..], STATUS_RFC3339.as_bytes());
    assert_eq!(raw.url(), format!("{}/status/connections", pool.url()));
    let paths: Vec<String> = pool.requests().into_iter().map(|r| r.path).collect();
    assert!(paths
        .iter()
        .all(|p| p == "/status/connections" || p == "/healthz" || p == "/metrics"));
}

#[tokio::test]
async fn base_path_is_kept() {
    let pool = FakePool::start(|req, _| {
        if req.path == "/pool/a/status/connections" {
            Reply::json(200, STATUS_SYSTEMTIME)
        } else {
            Reply::empty(404)
        }
    })
    .await;
    let c = client(&format!("{}/pool/a/", pool.url()));
    assert_eq!(
        c.status(CallOptions::new())
            .await
            .unwrap()
            .connections
            .len(),
        2
    );
}

#[tokio::test]
async fn health_503_with_body_is_an_unhealthy_value() {
    let pool = FakePool::start(pool_routes(
        None,
        STATUS_SYSTEMTIME,
        (503, HEALTH_UNHEALTHY),
    ))
    .await;
    let c = client(&pool.url());
    let h = c.health(CallOptions::new()).await.unwrap();
    assert_eq!(h.is_healthy(), Some(false));
    assert_eq!(h.active_connections, Some(0.0));
    let raw = c
        .fetch(
            Document::Health,
            CallOptions::new().timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(raw.status(), 503);

    // A 503 without a health document is a status error.
    let bare = FakePool::start(|_, _| Reply::text(503, "<html>busy</html>")).await;
    let e = client(&bare.url())
        .health(CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Status);
    assert_eq!(e.status(), Some(503));
    // ... and a 503 on the status document too.
    let e = client(&bare.url())
        .status(CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Status, Some(503)));
}

#[tokio::test]
async fn unauthorized_carries_the_pool_message() {
    let pool = FakePool::start(pool_routes(
        Some("right"),
        STATUS_SYSTEMTIME,
        (200, HEALTH_HEALTHY),
    ))
    .await;
    let missing = client(&pool.url())
        .status(CallOptions::new())
        .await
        .unwrap_err();
    assert!(missing.is_unauthorized(), "{missing:?}");
    assert_eq!(missing.status(), Some(401));
    assert_eq!(
        missing.pool_message(),
        Some("Unauthorized: Missing X-Auth-Token header")
    );
    assert_eq!(missing.kind().as_str(), "unauthorized");
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token(Token::value("wrong"))
        .build()
        .unwrap();
    let e = c.metrics_text(CallOptions::new()).await.unwrap_err();
    assert!(
        e.is_unauthorized() && e.pool_message() == Some("Unauthorized: Invalid token"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong"));
    // Health needs no token.
    assert!(c.health(CallOptions::new()).await.is_ok());

    // A long body is trimmed and cut.
    let long = FakePool::start(|_, _| Reply::text(401, &format!("  {}\n", "x".repeat(5000)))).await;
    let e = client(&long.url())
        .status(CallOptions::new())
        .await
        .unwrap_err();
    let body = e.pool_message().unwrap();
    assert!(
        body.chars().count() <= 201 && body.starts_with("xxx"),
        "{}",
        body.len()
    );
}

#[tokio::test]
async fn not_found_and_other_statuses() {
    let pool = FakePool::start(|req, _| match req.path.as_str() {
        "/metrics" => Reply::empty(500),
        _ => Reply::empty(404),
    })
    .await;
    let c = client(&pool.url());
    let e = c.status(CallOptions::new()).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Status, Some(404)));
    assert!(e.to_string().contains("answered HTTP 404"), "{e}");
    let e = c.metrics_text(CallOptions::new()).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = FakePool::start(|_, _| Reply::json(200, STATUS_SYSTEMTIME)).await;
    let location = format!("{}/status/connections", target.url());
    let pool = FakePool::start(move |_, _| Reply::Http {
        status: 302,
        headers: vec![("location", location.clone())],
        body: vec![],
    })
    .await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token(Token::value("t0k"))
        .build()
        .unwrap();
    let e = c.status(CallOptions::new()).await.unwrap_err();
    assert_eq!(e.status(), Some(302));
    assert_eq!(target.count(), 0);
}

#[tokio::test]
async fn garbage_is_a_decode_error_with_position() {
    let pool = FakePool::start(|req, _| match req.path.as_str() {
        "/status/connections" => Reply::json(200, "{\"endpoint\":\"e\",\n \"connections\": [tru"),
        "/healthz" => {
            Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n\xff\xfe{}!".to_vec())
        }
        _ => Reply::text(200, "not \u{1F600} metrics but still text"),
    })
    .await;
    let c = client(&pool.url());
    let e = c.status(CallOptions::new()).await.unwrap_err();
    assert!(e.is_decode(), "{e:?}");
    assert!(e.url().unwrap().ends_with("/status/connections"));
    // The cause is kept: serde's error, with the position.
    let serde = std::error::Error::source(&e)
        .and_then(|c| c.downcast_ref::<serde_json::Error>())
        .expect("serde_json::Error as the source");
    assert_eq!(serde.line(), 2, "{serde}");
    assert!(serde.column() > 0);
    assert_eq!(e.kind().as_str(), "decode");
    assert_eq!(
        c.health(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::Decode
    );
    // Metrics text is not parsed here: any UTF-8 text is returned as is.
    assert!(c
        .metrics_text(CallOptions::new())
        .await
        .unwrap()
        .contains("still text"));
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let big = "x".repeat(10_000);
    let chunks = vec![vec![b'y'; 4000]; 5];
    let pool = FakePool::start(move |req, _| match req.path.as_str() {
        "/metrics" => Reply::text(200, &big),
        _ => Reply::Chunked {
            status: 200,
            chunks: chunks.clone(),
        },
    })
    .await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .max_body_bytes(8192)
        .build()
        .unwrap();
    for e in [
        c.metrics_text(CallOptions::new()).await.unwrap_err(),
        c.status(CallOptions::new()).await.unwrap_err(),
    ] {
        assert!(e.is_too_large(), "{e:?}");
        assert_eq!(e.kind().as_str(), "too_large");
        assert!(e.to_string().contains("8192 byte limit"));
    }
    // Under the cap it is fine.
    let c = PoolClient::builder()
        .base_url(pool.url())
        .max_body_bytes(20_000)
        .build()
        .unwrap();
    assert_eq!(
        c.metrics_text(CallOptions::new()).await.unwrap().len(),
        10_000
    );
}

#[tokio::test]
async fn slow_answers_time_out_at_the_deadline() {
    let pool = FakePool::start(|_, _| {
        Reply::json(200, STATUS_SYSTEMTIME).delayed(Duration::from_secs(30))
    })
    .await;
    let c = client(&pool.url());
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let e = c
        .status(CallOptions::new().deadline(deadline))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.kind().as_str(), "timeout");
    // Not before the deadline, and let go of at it rather than held for
    // the pool's 30 s (the half of those is room for a busy machine).
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(e.to_string().contains("did not answer within"), "{e}");

    let quick = PoolClient::builder()
        .base_url(pool.url())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(
        quick.health(CallOptions::new()).await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
}

#[tokio::test]
async fn connection_errors() {
    let pool = FakePool::start(|_, _| Reply::Reset).await;
    let e = client(&pool.url())
        .status(CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "connect", "{e:?}");

    // Nothing listening.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = client(&format!("http://{addr}"))
        .status(CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach http://{addr}/status/connections")),
        "{e}"
    );
}

#[tokio::test]
async fn token_goes_only_where_it_should() {
    let pool = FakePool::start(pool_routes(
        Some("s3cret"),
        STATUS_SYSTEMTIME,
        (200, HEALTH_HEALTHY),
    ))
    .await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token(Token::value("s3cret"))
        .user_agent("test-agent/1")
        .build()
        .unwrap();
    c.status(CallOptions::new()).await.unwrap();
    c.health(CallOptions::new()).await.unwrap();
    c.metrics_text(CallOptions::new()).await.unwrap();
    let reqs = pool.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        let token = r.header("x-auth-token");
        match r.path.as_str() {
            "/healthz" => assert_eq!(token, None),
            _ => assert_eq!(token, Some("s3cret")),
        }
        assert_eq!(r.header("user-agent"), Some("test-agent/1"));
        assert_eq!(r.method, "GET");
    }

    // A client for another pool does not carry the token over.
    let other = FakePool::start(pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY))).await;
    let o = c.with_base_url(&other.url(), Token::none()).unwrap();
    o.status(CallOptions::new()).await.unwrap();
    assert_eq!(other.requests()[0].header("x-auth-token"), None);
}

/// Writes a token file whose modification time says it was finished a
/// while ago (settled) or is still being written (a time in the near
/// future stands for "just now" without depending on how fast this runs).
fn write_token(path: &std::path::Path, content: &str, settled: bool) {
    std::fs::write(path, content).unwrap();
    let when = if settled {
        std::time::SystemTime::now() - Duration::from_secs(10)
    } else {
        std::time::SystemTime::now() + Duration::from_secs(30)
    };
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn last_token(pool: &FakePool) -> String {
    pool.requests()
        .last()
        .unwrap()
        .header("x-auth-token")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn token_file_is_reread_when_it_changes() {
    let dir = TempDir::new("token");
    let file = dir.path("token");
    std::fs::write(&file, "first\n").unwrap();
    let pool = FakePool::start(pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY))).await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token(Token::file(&file))
        .build()
        .unwrap();
    c.status(CallOptions::new()).await.unwrap();
    c.status(CallOptions::new()).await.unwrap();
    // Rewritten with another length: picked up by the next request.
    write_token(&file, "second-token", true);
    c.metrics_text(CallOptions::new()).await.unwrap();
    // Replaced by rename (how Kubernetes updates secrets), same length.
    let tmp = dir.path("token.new");
    write_token(&tmp, "third-token\n", true);
    std::fs::rename(&tmp, &file).unwrap();
    c.status(CallOptions::new()).await.unwrap();
    let tokens: Vec<String> = pool
        .requests()
        .iter()
        .map(|r| r.header("x-auth-token").unwrap().to_owned())
        .collect();
    assert_eq!(tokens, ["first", "first", "second-token", "third-token"]);
    assert!(!format!("{c:?}").contains("third-token"));

    // Briefly missing or empty mid-rotation: the last good token stays.
    std::fs::remove_file(&file).unwrap();
    c.status(CallOptions::new()).await.unwrap();
    write_token(&file, "", true);
    c.status(CallOptions::new()).await.unwrap();
    assert_eq!(last_token(&pool), "third-token");
    write_token(&file, "fourth", true);
    c.status(CallOptions::new()).await.unwrap();
    assert_eq!(last_token(&pool), "fourth");

    // A token file that never could be read is a configuration error
    // naming the file.
    std::fs::remove_file(&file).unwrap();
    let e = PoolClient::builder()
        .base_url(pool.url())
        .token(Token::file(&file))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("cannot read token file"), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    // The I/O error is kept as the cause.
    let io = std::error::Error::source(&e).and_then(|c| c.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound)
    );
}

/// Issue 18, item 11: a file rewritten in place is half written for a
/// moment; that prefix must never be sent. A TAB refused at start-up is
/// refused on re-read too.
#[tokio::test]
async fn a_token_file_being_written_or_holding_control_characters_is_not_sent() {
    let dir = TempDir::new("token-rotation");
    let file = dir.path("token");
    std::fs::write(&file, "original-token\n").unwrap();
    let pool = FakePool::start(pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY))).await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token(Token::file(&file))
        .build()
        .unwrap();
    c.status(CallOptions::new()).await.unwrap();
    // Half written, still being written: the old token is sent.
    write_token(&file, "rotated-", false);
    c.status(CallOptions::new()).await.unwrap();
    assert_eq!(last_token(&pool), "original-token");
    // Finished (left alone past the settle time): the new one.
    write_token(&file, "rotated-token-2\n", true);
    c.status(CallOptions::new()).await.unwrap();
    assert_eq!(last_token(&pool), "rotated-token-2");
    // A TAB inside: refused as at start-up; the last good token stays.
    write_token(&file, "tab\tinside", true);
    c.status(CallOptions::new()).await.unwrap();
    c.metrics_text(CallOptions::new()).await.unwrap();
    assert_eq!(last_token(&pool), "rotated-token-2");
    let tokens: Vec<String> = pool
        .requests()
        .iter()
        .filter_map(|r| r.header("x-auth-token").map(str::to_owned))
        .collect();
    assert!(
        !tokens.iter().any(|t| t == "rotated-" || t.contains('\t')),
        "{tokens:?}"
    );
    // At start-up the same token is refused.
    let e = PoolClient::builder()
        .token(Token::file(&file))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("control characters"), "{e}");
    // SIGHUP-style reload reads at once, settled or not, with the same rule.
    write_token(&file, "reloaded", false);
    let t = Token::file(&file);
    assert!(t.reload().unwrap());
    write_token(&file, "bad\u{7}", false);
    assert!(t.reload().unwrap_err().is_config());
}

#[test]
fn configuration_errors_name_the_problem() {
    let dir = TempDir::new("config");
    let missing = dir.path("missing.pem");
    let e = PoolClient::builder().ca_file(&missing).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("cannot read CA file") && e.to_string().contains("missing.pem"),
        "{e}"
    );
    let junk = dir.path("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = PoolClient::builder().ca_file(&junk).build().unwrap_err();
    assert!(e.to_string().contains("junk.pem"), "{e}");
    let e = PoolClient::builder()
        .client_cert(&junk, &missing)
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("client key file") && e.to_string().contains("missing.pem"),
        "{e}"
    );
    let e = PoolClient::builder()
        .base_url("ftp://u:pw@pool/")
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("bad base URL") && !e.to_string().contains("pw"),
        "{e}"
    );
    let e = PoolClient::builder()
        .token(Token::value(""))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = PoolClient::builder()
        .token(Token::value("bad\ntoken"))
        .build()
        .unwrap_err();
    assert!(!e.to_string().contains("bad\ntoken"));
}

#[tokio::test]
async fn debug_and_errors_hide_credentials() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let builder = PoolClient::builder()
        .base_url(format!("http://alice:hunter2@{addr}/x?token=qs-secret"))
        .token(Token::value("tok-secret-123"));
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("tok-secret-123")
            && !shown.contains("hunter2")
            && !shown.contains("qs-secret"),
        "{shown}"
    );
    let c = builder.build().unwrap();
    for shown in [format!("{c:?}"), format!("{c:#?}")] {
        assert!(!shown.contains("tok-secret-123"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("qs-secret"),
            "{shown}"
        );
    }
    assert_eq!(c.base_url(), format!("http://{addr}/x"));
    let e = c.status(CallOptions::new()).await.unwrap_err();
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(
            !text.contains("hunter2") && !text.contains("alice"),
            "{text}"
        );
        assert!(
            !text.contains("qs-secret") && !text.contains("tok-secret-123"),
            "{text}"
        );
    }
    assert_eq!(
        e.url(),
        Some(format!("http://{addr}/x/status/connections").as_str())
    );
}

#[tokio::test]
async fn clones_share_one_client() {
    let pool = FakePool::start(pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY))).await;
    let c = client(&pool.url());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.status(CallOptions::new())
                    .await
                    .map(|s| s.connections.len())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 2);
    }
    assert_eq!(pool.count(), 8);
}

/// The server-name override resolves the URL's host when a connection is
/// made, not once when the client is built: a name that does not resolve
/// yet does not stop the build (it used to: the addresses were pinned), and
/// each call asks the resolver again.
#[tokio::test]
async fn a_server_name_override_resolves_per_connection() {
    let c = PoolClient::builder()
        .base_url("https://pool-not-registered-yet.invalid:9443")
        .tls_server_name("pool.internal")
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building must not resolve the host");
    for _ in 0..2 {
        let e = c.status(CallOptions::new()).await.unwrap_err();
        assert!(e.is_connect(), "{e:?}");
        // The URL shown is the real one, not the override.
        assert_eq!(
            e.url(),
            Some("https://pool-not-registered-yet.invalid:9443/status/connections")
        );
    }
    // An IP address cannot be the name to verify.
    let e = PoolClient::builder()
        .tls_server_name("10.0.0.1")
        .build()
        .unwrap_err();
    assert!(e.is_config() && e.to_string().contains("DNS name"), "{e}");
}

/// A server that keeps the connection alive after its first answer, then
/// closes it as the next request arrives (its idle timeout running out
/// just then): the client sends that GET again on a new connection instead
/// of failing the call.
#[tokio::test]
async fn a_kept_alive_connection_closed_as_the_request_goes_out_is_retried_once() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let body = r#"{"status":"healthy","timestamp":"2026-12-01T00:00:00Z","pool_healthy":true,"active_connections":1}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let read_request = |s: &mut std::net::TcpStream| {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut byte).unwrap_or(0) == 0 {
                    return false;
                }
                head.push(byte[0]);
            }
            true
        };
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(read_request(&mut s));
            s.write_all(answer.as_bytes()).unwrap();
            if n == 0 {
                // The second request on this connection: read, then close
                // without a byte of answer.
                if read_request(&mut s) {
                    drop(s);
                }
            }
        }
    });
    let c = client(&url);
    for call in 0..2 {
        let h = c
            .health(CallOptions::new())
            .await
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(h.pool_healthy, Some(true));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}
