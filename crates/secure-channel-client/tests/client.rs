//! The client against a fake pool on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use secure_channel_client::{Document, Error, ErrorKind, PoolClient, Token};

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
    let s = c.status().await.unwrap();
    assert_eq!(s.endpoint, "relay.bitcoin-sprint.inc:443");
    assert_eq!(c.health().await.unwrap().is_healthy(), Some(true));
    assert_eq!(c.metrics_text().await.unwrap(), NATIVE);
    let conn = c.connection(7u64).await.unwrap();
    assert_eq!(conn.errors, 2.0);
    let conn = c.connection("9").await.unwrap();
    assert_eq!(conn.reconnects, 0.0);
    let missing = c.connection(8u64).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        missing.to_string().contains("no connection with id 8"),
        "{missing}"
    );

    // The raw path returns the bytes as sent.
    let raw = c
        .fetch(
            Document::Status,
            tokio::time::Instant::now() + Duration::from_secs(10),
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
    assert_eq!(c.status().await.unwrap().connections.len(), 2);
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
    let h = c.health().await.unwrap();
    assert_eq!(h.is_healthy(), Some(false));
    assert_eq!(h.active_connections, Some(0.0));
    let raw = c
        .fetch(
            Document::Health,
            tokio::time::Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(raw.status(), 503);

    // A 503 without a health document is a status error.
    let bare = FakePool::start(|_, _| Reply::text(503, "<html>busy</html>")).await;
    let e = client(&bare.url()).health().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Status);
    assert_eq!(e.status(), Some(503));
    // ... and a 503 on the status document too.
    let e = client(&bare.url()).status().await.unwrap_err();
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
    let missing = client(&pool.url()).status().await.unwrap_err();
    match &missing {
        Error::Unauthorized { status, body, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(body, "Unauthorized: Missing X-Auth-Token header");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(missing.kind().as_str(), "unauthorized");
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token("wrong")
        .build()
        .unwrap();
    let e = c.metrics_text().await.unwrap_err();
    assert!(
        matches!(&e, Error::Unauthorized { body, .. } if body == "Unauthorized: Invalid token"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong"));
    // Health needs no token.
    assert!(c.health().await.is_ok());

    // A long body is trimmed and cut.
    let long = FakePool::start(|_, _| Reply::text(401, &format!("  {}\n", "x".repeat(5000)))).await;
    let e = client(&long.url()).status().await.unwrap_err();
    let Error::Unauthorized { body, .. } = e else {
        panic!()
    };
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
    let e = c.status().await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::Status, Some(404)));
    assert!(e.to_string().contains("answered HTTP 404"), "{e}");
    let e = c.metrics_text().await.unwrap_err();
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
        .token("t0k")
        .build()
        .unwrap();
    let e = c.status().await.unwrap_err();
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
    let e = c.status().await.unwrap_err();
    match &e {
        Error::Decode {
            detail,
            line,
            column,
            url,
        } => {
            assert_eq!(*line, 2, "{detail}");
            assert!(*column > 0);
            assert!(url.ends_with("/status/connections"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.kind().as_str(), "decode");
    assert_eq!(c.health().await.unwrap_err().kind(), ErrorKind::Decode);
    // Metrics text is not parsed here: any UTF-8 text is returned as is.
    assert!(c.metrics_text().await.unwrap().contains("still text"));
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
        c.metrics_text().await.unwrap_err(),
        c.status().await.unwrap_err(),
    ] {
        match &e {
            Error::TooLarge { limit, .. } => assert_eq!(*limit, 8192),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.kind().as_str(), "too_large");
        assert!(e.to_string().contains("8192 byte limit"));
    }
    // Under the cap it is fine.
    let c = PoolClient::builder()
        .base_url(pool.url())
        .max_body_bytes(20_000)
        .build()
        .unwrap();
    assert_eq!(c.metrics_text().await.unwrap().len(), 10_000);
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
    let e = c.status_until(deadline).await.unwrap_err();
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
    assert_eq!(quick.health().await.unwrap_err().kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn connection_errors() {
    let pool = FakePool::start(|_, _| Reply::Reset).await;
    let e = client(&pool.url()).status().await.unwrap_err();
    assert_eq!(e.kind().as_str(), "connect", "{e:?}");

    // Nothing listening.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = client(&format!("http://{addr}"))
        .status()
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
        .token("s3cret")
        .user_agent("test-agent/1")
        .build()
        .unwrap();
    c.status().await.unwrap();
    c.health().await.unwrap();
    c.metrics_text().await.unwrap();
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
    o.status().await.unwrap();
    assert_eq!(other.requests()[0].header("x-auth-token"), None);
}

#[tokio::test]
async fn token_file_is_reread_when_it_changes() {
    let dir = TempDir::new("token");
    let file = dir.path("token");
    std::fs::write(&file, "first\n").unwrap();
    let pool = FakePool::start(pool_routes(None, STATUS_SYSTEMTIME, (200, HEALTH_HEALTHY))).await;
    let c = PoolClient::builder()
        .base_url(pool.url())
        .token_file(&file)
        .build()
        .unwrap();
    c.status().await.unwrap();
    c.status().await.unwrap();
    // Rewritten with another length: picked up by the next request.
    std::fs::write(&file, "second-token").unwrap();
    c.metrics_text().await.unwrap();
    // Replaced by rename (how Kubernetes updates secrets), same length.
    let tmp = dir.path("token.new");
    std::fs::write(&tmp, "third-token\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    c.status().await.unwrap();
    let tokens: Vec<String> = pool
        .requests()
        .iter()
        .map(|r| r.header("x-auth-token").unwrap().to_owned())
        .collect();
    assert_eq!(tokens, ["first", "first", "second-token", "third-token"]);
    assert!(!format!("{c:?}").contains("third-token"));

    // Briefly missing or empty mid-rotation: the last good token stays.
    std::fs::remove_file(&file).unwrap();
    c.status().await.unwrap();
    std::fs::write(&file, "").unwrap();
    c.status().await.unwrap();
    let last = pool
        .requests()
        .last()
        .unwrap()
        .header("x-auth-token")
        .unwrap()
        .to_owned();
    assert_eq!(last, "third-token");
    std::fs::write(&file, "fourth").unwrap();
    c.status().await.unwrap();
    let last = pool
        .requests()
        .last()
        .unwrap()
        .header("x-auth-token")
        .unwrap()
        .to_owned();
    assert_eq!(last, "fourth");

    // A token file that never could be read is a configuration error
    // naming the file.
    std::fs::remove_file(&file).unwrap();
    let never = PoolClient::builder()
        .base_url(pool.url())
        .token_source(secure_channel_client::Token::file(&file))
        .build();
    if let Ok(client) = never {
        let e = client.status().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    }
    let e = PoolClient::builder()
        .base_url(pool.url())
        .token_file(&file)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("cannot read token file"), "{e}");
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
    let e = PoolClient::builder().token("").build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = PoolClient::builder()
        .token("bad\ntoken")
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
        .token("tok-secret-123");
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
    let e = c.status().await.unwrap_err();
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
            tokio::spawn(async move { c.status().await.map(|s| s.connections.len()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 2);
    }
    assert_eq!(pool.count(), 8);
}
