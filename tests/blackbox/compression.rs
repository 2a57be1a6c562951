//! Compressed answers and the per-connection series knob, against the
//! real binaries.

use std::io::Read;

use crate::common::*;

/// One GET of /metrics with `accept_encoding`: (Content-Encoding, Vary,
/// body as sent).
async fn fetch(
    exporter: &Proc,
    accept_encoding: Option<&str>,
) -> (Option<String>, String, Vec<u8>) {
    let mut req = client().get(exporter.url("/metrics"));
    if let Some(ae) = accept_encoding {
        req = req.header("accept-encoding", ae);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (encoding, vary) = (
        header("content-encoding"),
        header("vary").unwrap_or_default(),
    );
    (encoding, vary, resp.bytes().await.unwrap().to_vec())
}

/// The series that do not move between scrapes of a steady pool (the
/// exporter's own counters and timings do).
fn pool_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.starts_with("secure_channel_connection_") || l.starts_with("secure_channel_pool_")
        })
        .collect()
}

fn answers(text: &str, encoding: &str) -> Option<f64> {
    let prefix =
        format!("secure_channel_exporter_scrape_answers_total{{encoding=\"{encoding}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn gzip_and_zstd_answers_decode_to_the_same_exposition() {
    let sim = sim(&["--steady", "--connections", "500"]);
    let exporter = exporter(&sim, &[]);

    let (enc, vary, identity) = fetch(&exporter, None).await;
    assert_eq!(enc, None);
    assert_eq!(vary, "accept-encoding");
    let identity = String::from_utf8(identity).unwrap();

    // What Prometheus sends.
    let (enc, vary, gz) = fetch(&exporter, Some("gzip")).await;
    assert_eq!(enc.as_deref(), Some("gzip"));
    assert_eq!(vary, "accept-encoding");
    let mut gunzipped = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut gunzipped)
        .unwrap();

    // A browser or curl --compressed: zstd preferred on a tie.
    let (enc, _, zs) = fetch(&exporter, Some("gzip, deflate, br, zstd")).await;
    assert_eq!(enc.as_deref(), Some("zstd"));
    let unzstd = String::from_utf8(zstd::stream::decode_all(&zs[..]).unwrap()).unwrap();

    // q-values: gzip refused, identity preferred.
    let (enc, _, _) = fetch(&exporter, Some("gzip;q=0, identity")).await;
    assert_eq!(enc, None);

    assert!(pool_lines(&identity).len() >= 4 * 500, "{identity}");
    assert_eq!(pool_lines(&gunzipped), pool_lines(&identity));
    assert_eq!(pool_lines(&unzstd), pool_lines(&identity));
    // At 500 connections already far smaller.
    assert!(
        gz.len() * 10 < identity.len(),
        "gzip {} of {}",
        gz.len(),
        identity.len()
    );
    assert!(
        zs.len() * 10 < identity.len(),
        "zstd {} of {}",
        zs.len(),
        identity.len()
    );

    // Counted by encoding; each answer shows the count before itself.
    let (_, _, last) = fetch(&exporter, None).await;
    let last = String::from_utf8(last).unwrap();
    assert_eq!(answers(&last, "identity"), Some(2.0), "{last}");
    assert_eq!(answers(&last, "gzip"), Some(1.0));
    assert_eq!(answers(&last, "zstd"), Some(1.0));
    assert_eq!(answers(&identity, "gzip"), Some(0.0));
}

/// A pool large enough that gzip is made in pieces on a machine with
/// several cores, and answers that reuse the buffers of the ones before:
/// every answer, in any coding and order, is the same exposition, ends
/// once, and the reused buffers never carry text of an earlier answer.
#[tokio::test]
async fn large_answers_in_pieces_and_reused_buffers_stay_whole() {
    let sim = sim(&["--steady", "--connections", "3000"]);
    let exporter = exporter(&sim, &["--collector.max-connections", "100000"]);
    let gunzip = |gz: &[u8]| {
        let mut text = String::new();
        let mut decoder = flate2::read::GzDecoder::new(gz);
        decoder.read_to_string(&mut text).unwrap();
        // One gzip member, nothing after it.
        assert!(decoder.into_inner().is_empty());
        text
    };
    let (_, _, first) = fetch(&exporter, None).await;
    let first = String::from_utf8(first).unwrap();
    assert!(first.len() > 1_000_000, "{} bytes", first.len());
    let expected = pool_lines(&first);
    assert_eq!(
        expected
            .iter()
            .filter(|l| l.starts_with("secure_channel_connection_errors_total{"))
            .count(),
        3000
    );
    for coding in ["gzip", "identity", "zstd", "gzip", "gzip", "identity"] {
        let (enc, _, body) = fetch(&exporter, Some(coding)).await;
        let text = match enc.as_deref() {
            Some("gzip") => gunzip(&body),
            Some("zstd") => {
                String::from_utf8(zstd::stream::decode_all(&body[..]).unwrap()).unwrap()
            }
            None => String::from_utf8(body).unwrap(),
            Some(other) => panic!("unexpected coding {other}"),
        };
        assert_eq!(pool_lines(&text), expected, "{coding}");
        assert_eq!(
            text.matches("# HELP secure_channel_up ").count(),
            1,
            "{coding}"
        );
        assert!(text.ends_with('\n'));
    }
    let om = client()
        .get(exporter.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let om = gunzip(&om.bytes().await.unwrap());
    assert_eq!(om.matches("# EOF").count(), 1);
    assert!(om.ends_with("# EOF\n"));
}

fn connection_series(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("secure_channel_connection_errors_total{"))
        .count()
}

#[tokio::test]
async fn collector_connections_keeps_only_series_that_carry_something() {
    // A quiet published pool: it lists 6 connections, none ever used.
    let quiet = sim(&["--callers", "0", "--connections", "6"]);
    // A steady pool whose connections all have stats.
    let steady = sim(&["--steady", "--connections", "7"]);
    for (pool, mode, expected) in [
        (&quiet, "all", 6),
        (&quiet, "used", 0),
        (&steady, "used", 7),
        (&steady, "none", 0),
    ] {
        let exporter = exporter(pool, &["--collector.connections", mode]);
        let text = get_text(&exporter.url("/metrics")).await;
        assert_eq!(connection_series(&text), expected, "{mode}: {text}");
        // Pool-level series stay whatever the mode.
        assert!(text.contains("secure_channel_up 1\n"), "{mode}");
        assert!(
            text.contains("secure_channel_pool_active_connections{"),
            "{mode}"
        );
        // Left out by choice, not by the cap.
        assert!(
            text.contains("secure_channel_exporter_connections_omitted 0\n"),
            "{mode}"
        );
    }
}
