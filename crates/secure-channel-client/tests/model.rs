//! The model decodes every captured pool document and every variant.

use secure_channel_client::{ConnectionId, Health, PoolStatus, Timestamp};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/", $name))
    };
}

const REAL_STATUS: [(&str, &str); 4] = [
    ("busy", fixture!("real_busy_status.json")),
    ("quiet", fixture!("real_quiet_status.json")),
    ("slow-relay", fixture!("real_slow_relay_status.json")),
    (
        "returning-build",
        fixture!("real_returning_build_status.json"),
    ),
];

const REAL_HEALTH: [(&str, &str, bool); 4] = [
    ("busy", fixture!("real_busy_health.json"), false),
    ("quiet", fixture!("real_quiet_health.json"), true),
    ("slow-relay", fixture!("real_slow_relay_health.json"), true),
    (
        "returning-build",
        fixture!("real_returning_build_health.json"),
        true,
    ),
];

#[test]
fn decodes_every_captured_status_document() {
    for (name, doc) in REAL_STATUS {
        let s: PoolStatus = serde_json::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.endpoint.starts_with("localhost:194"), "{name}");
        assert_eq!(
            s.active_connections,
            Some(s.connections.len() as f64),
            "{name}"
        );
        let sum: f64 = s.connections.iter().map(|c| c.errors).sum();
        assert_eq!(s.total_errors, Some(sum), "{name}");
        for c in &s.connections {
            assert!(c.connection_id.is_numeric());
            let t = c.last_activity.expect("last_activity");
            assert!(t.unix_seconds() > 1_795_748_000, "{name}");
            assert_eq!(c.is_healthy, None);
        }
        assert_eq!(s.backend, None);
    }
    let busy: PoolStatus = serde_json::from_str(REAL_STATUS[0].1).unwrap();
    assert!(busy.connections.is_empty());
    let returning: PoolStatus = serde_json::from_str(REAL_STATUS[3].1).unwrap();
    let c = returning.connection(194u64).unwrap();
    assert_eq!((c.errors, c.p95_latency_ms), (1.0, Some(3.0)));
    assert_eq!(
        c.last_activity.unwrap(),
        Timestamp::from_unix(1_795_748_956, 726_978_634)
    );
}

#[test]
fn decodes_every_captured_health_document() {
    for (name, doc, healthy) in REAL_HEALTH {
        let h: Health = serde_json::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(h.is_healthy(), Some(healthy), "{name}");
        assert!(h.timestamp.is_some());
        assert_eq!(h.error_rate, None);
    }
}

#[test]
fn decodes_the_design_document_example_and_go_variant() {
    let s: PoolStatus = serde_json::from_str(fixture!("status_systemtime.json")).unwrap();
    assert_eq!(s.endpoint, "relay.example.net:443");
    assert_eq!(s.connections[0].connection_id.as_str(), "1");
    assert_eq!(
        s.connections[0].last_activity.unwrap().as_secs_f64(),
        1_764_072_000.12
    );

    let g: PoolStatus = serde_json::from_str(fixture!("status_rfc3339.json")).unwrap();
    assert_eq!(g.backend.as_deref(), Some("tokio-rustls"));
    let c = &g.connections;
    assert_eq!(
        c[0].last_activity,
        Some(Timestamp::from_unix(1_756_119_600, 0))
    );
    assert_eq!(c[1].connection_id, "7");
    assert!(!c[1].connection_id.is_numeric());
    assert_eq!(
        c[1].last_activity,
        Some(Timestamp::from_unix(1_756_119_600, 250_000_000))
    );
    assert_eq!(
        c[2].last_activity,
        Some(Timestamp::from_unix(1_756_119_600, 500_000_000))
    );
    assert_eq!(c[0].remote_addr.as_deref(), Some("203.0.113.7:443"));
    assert_eq!(c[1].is_healthy, Some(false));
    assert_eq!(c[2].p95_latency_ms, None);
    assert_eq!(
        g.last_updated,
        Some(Timestamp::from_unix(1_756_119_600, 123_456_789))
    );

    let h: Health = serde_json::from_str(fixture!("health_unhealthy_rfc3339.json")).unwrap();
    assert_eq!(h.is_healthy(), Some(false));
    assert_eq!((h.error_rate, h.avg_latency_ms), (Some(2.5), Some(45.2)));
}

#[test]
fn three_time_formats_are_the_same_instant() {
    let forms = [
        r#"{"secs_since_epoch":1756119600,"nanos_since_epoch":500000000}"#,
        r#""2025-08-25T11:00:00.5Z""#,
        r#""2025-08-25T13:00:00.500+02:00""#,
        "1756119600.5",
    ];
    let want = Timestamp::from_unix(1_756_119_600, 500_000_000);
    for f in forms {
        assert_eq!(serde_json::from_str::<Timestamp>(f).unwrap(), want, "{f}");
    }
    assert_eq!(
        serde_json::from_str::<Timestamp>("1756119600").unwrap(),
        Timestamp::from_unix(1_756_119_600, 0)
    );
    // Unknown keys inside the SystemTime object are ignored.
    let t: Timestamp =
        serde_json::from_str(r#"{"nanos_since_epoch":1,"x":[1],"secs_since_epoch":2}"#).unwrap();
    assert_eq!(t, Timestamp::from_unix(2, 1));
    assert_eq!(
        want.to_system_time(),
        std::time::UNIX_EPOCH + std::time::Duration::new(1_756_119_600, 500_000_000)
    );
    assert_eq!(Timestamp::from(want.to_system_time()), want);
}

#[test]
fn serializes_times_as_rfc3339_and_ids_as_given() {
    let g: PoolStatus = serde_json::from_str(fixture!("status_rfc3339.json")).unwrap();
    let out = serde_json::to_value(&g).unwrap();
    let conns = out["connections"].as_array().unwrap();
    assert_eq!(conns[0]["connection_id"], serde_json::json!(1));
    assert_eq!(conns[1]["connection_id"], serde_json::json!("7"));
    assert_eq!(conns[0]["last_activity"], "2025-08-25T11:00:00Z");
    assert_eq!(conns[1]["last_activity"], "2025-08-25T11:00:00.25Z");
    assert_eq!(out["last_updated"], "2025-08-25T11:00:00.123456789Z");
    assert_eq!(out["active_connections"], serde_json::json!(3));
    assert_eq!(out["pool_p95_latency_ms"], serde_json::json!(45.5));
    assert!(conns[2].get("p95_latency_ms").is_none());
    assert!(out.get("some_new_field").is_none());
    // A round trip gives the same value.
    let back: PoolStatus = serde_json::from_value(out).unwrap();
    assert_eq!(back, g);

    for (_, doc) in REAL_STATUS {
        let s: PoolStatus = serde_json::from_str(doc).unwrap();
        let again: PoolStatus = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }
    let h: Health = serde_json::from_str(REAL_HEALTH[0].1).unwrap();
    let text = serde_json::to_string(&h).unwrap();
    assert_eq!(
        text,
        r#"{"status":"unhealthy","timestamp":"2026-11-27T03:00:47.808666781Z","pool_healthy":false,"active_connections":0}"#
    );
}

#[test]
fn connection_ids_compare_by_text() {
    let a = ConnectionId::from(7u64);
    let b = ConnectionId::from("7");
    assert_eq!(a, b);
    assert_eq!(a.as_u64(), Some(7));
    assert_eq!(ConnectionId::from("abc").as_u64(), None);
    let set: std::collections::HashSet<ConnectionId> = [a, b].into_iter().collect();
    assert_eq!(set.len(), 1);
}

#[test]
fn rejects_what_is_not_a_document() {
    for bad in [
        "",
        "<html>502</html>",
        r#"{"endpoint": 5}"#,
        r#"{"active_connections": 1}"#,
        r#"{"endpoint":"e","connections":[{"connection_id":true}]}"#,
        r#"{"endpoint":"e","connections":[{"connection_id":1,"last_activity":"yesterday"}]}"#,
        r#"{"endpoint":"e","connections":[{"connection_id":1,"last_activity":{"nanos_since_epoch":1}}]}"#,
        r#"{"endpoint":"e","active_conn"#,
    ] {
        assert!(serde_json::from_str::<PoolStatus>(bad).is_err(), "{bad}");
    }
}
