//! Property tests: any input is handled without panic, and whatever we
//! encode parses back to the same families.

use std::borrow::Cow;
use std::sync::Arc;

use proptest::prelude::*;
use secure_channel_exporter::exposition::{
    encode, parse, Format, MetricFamily, MetricType, Sample,
};
use secure_channel_exporter::pool::{Health, PoolStatus, StatusDoc};
use secure_channel_exporter::scrape::translate::{
    translate, BuildInfo, Snapshot, SourceCounters, SourceOutcome, TranslateOptions,
};

fn metric_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}".prop_filter("reserved", |n| n != "le" && n != "quantile")
}

/// Any Unicode, with the characters that need escaping well represented.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[\"\\\\\n{}=, a-zü€]{0,16}",]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
    ]
}

fn family(with_timestamps: bool) -> impl Strategy<Value = MetricFamily> {
    (
        metric_name(),
        // Leading blanks separate HELP from the name, in Prometheus too.
        "([^\"\\s][^\"]{0,40})?",
        prop_oneof![
            Just(MetricType::Gauge),
            Just(MetricType::Counter),
            Just(MetricType::Untyped)
        ],
        prop::collection::vec(
            (
                prop::collection::btree_map(label_name(), label_value(), 0..4),
                value(),
                prop::option::of(-10_000_000_000_000i64..10_000_000_000_000),
            ),
            1..5,
        ),
    )
        .prop_map(move |(name, help, kind, samples)| {
            let name = if kind == MetricType::Counter {
                format!("{name}_total")
            } else {
                name
            };
            let samples = samples
                .into_iter()
                .map(|(labels, value, ts)| Sample {
                    name: name.clone(),
                    labels: labels
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), v))
                        .collect(),
                    value,
                    timestamp_ms: if with_timestamps { ts } else { None },
                    exemplar: None,
                })
                .collect();
            MetricFamily {
                name,
                help,
                kind,
                unit: String::new(),
                samples,
            }
        })
}

/// Families with distinct names (an exposition cannot repeat one).
fn families(with_timestamps: bool) -> impl Strategy<Value = Vec<MetricFamily>> {
    prop::collection::vec(family(with_timestamps), 1..6).prop_map(|mut fams| {
        let mut seen = std::collections::HashSet::new();
        fams.retain(|f| {
            let base = f.name.trim_end_matches("_total").to_owned();
            seen.insert(base.clone()) && seen.insert(format!("{base}_total"))
        });
        fams
    })
}

/// Comparable form: OpenMetrics names a counter family without `_total`.
fn normalized(fams: &[MetricFamily]) -> Vec<(String, String, MetricType, Vec<String>)> {
    fams.iter()
        .map(|f| {
            let name = match f.kind {
                MetricType::Counter => f.name.trim_end_matches("_total").to_owned(),
                _ => f.name.clone(),
            };
            let samples = f
                .samples
                .iter()
                .map(|s| {
                    format!(
                        "{}{:?} {} {:?}",
                        s.name,
                        s.labels,
                        // -0 and 0 are the same sample value.
                        if s.value.is_nan() {
                            "NaN".into()
                        } else {
                            format!("{:?}", s.value + 0.0)
                        },
                        s.timestamp_ms
                    )
                })
                .collect();
            (name, f.help.clone(), f.kind, samples)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_never_panics(text in any::<String>()) {
        let parsed = parse(&text);
        prop_assert!(parsed.skipped_lines <= text.lines().count() + 1);
    }

    #[test]
    fn parser_never_panics_on_exposition_like_text(
        text in "(# (HELP|TYPE) [a-z_]{1,8} [a-z ]{0,10}\n|[a-z_]{1,8}(\\{[a-z]{1,3}=\"[^\"\n]{0,6}\"(,[a-z]{1,3}=\"[\\\\\"n]{0,4}\")?,?\\})? [-+0-9.eEInfa]{1,8}( [0-9]{1,5})?\n|[^\n]{0,20}\n){0,20}"
    ) {
        let _ = parse(&text);
    }

    #[test]
    fn text_format_round_trips(fams in families(true)) {
        let text = encode(&fams, Format::PrometheusText);
        let back = parse(&text);
        prop_assert_eq!(back.skipped_lines, 0, "{}", text);
        prop_assert_eq!(normalized(&back.families), normalized(&fams), "{}", text);
    }

    #[test]
    fn openmetrics_round_trips(fams in families(false)) {
        let text = encode(&fams, Format::OpenMetrics);
        prop_assert!(text.ends_with("# EOF\n"));
        let back = parse(&text);
        prop_assert_eq!(back.skipped_lines, 0, "{}", text);
        prop_assert_eq!(normalized(&back.families), normalized(&fams), "{}", text);
    }

    #[test]
    fn status_decoder_never_panics(bytes in any::<Vec<u8>>()) {
        let _ = serde_json::from_slice::<PoolStatus>(&bytes);
        let _ = serde_json::from_slice::<Health>(&bytes);
    }

    #[test]
    fn every_time_format_decodes_to_the_same_instant(
        secs in 0i64..4_000_000_000,
        millis in 0u32..1000,
        offset_minutes in -720i32..720,
    ) {
        let t = secs as f64 + f64::from(millis) / 1000.0;
        let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
        let rfc = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(secs) * 1_000_000_000 + i128::from(millis) * 1_000_000,
        )
        .unwrap()
        .to_offset(offset)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
        for last_activity in [
            format!(r#"{{"secs_since_epoch":{secs},"nanos_since_epoch":{}}}"#, millis * 1_000_000),
            format!("\"{rfc}\""),
            format!("{t}"),
        ] {
            let json = format!(
                r#"{{"endpoint":"e","connections":[{{"connection_id":"c-1","last_activity":{last_activity},"reconnects":1,"errors":2}}]}}"#
            );
            let status: PoolStatus = serde_json::from_str(&json).map_err(|e| {
                TestCaseError::fail(format!("{e}: {json}"))
            })?;
            let got = status.connections[0].last_activity.unwrap().as_secs_f64();
            prop_assert!((got - t).abs() < 1e-3, "{} vs {} from {}", got, t, json);
        }
    }

    /// Whatever strings the pool reports, our exposition stays readable.
    #[test]
    fn translated_output_is_always_valid(
        endpoint in label_value(),
        backend in prop::option::of(label_value()),
        ids in prop::collection::vec(label_value(), 0..6),
        addr in label_value(),
        max in 0usize..8,
    ) {
        let conns: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                format!(
                    r#"{{"connection_id":{},"reconnects":{i},"errors":{},"p95_latency_ms":{},"remote_addr":{},"is_healthy":true}}"#,
                    serde_json::to_string(id).unwrap(),
                    i * 3 % 5,
                    i * 7,
                    serde_json::to_string(&addr).unwrap()
                )
            })
            .collect();
        let json = format!(
            r#"{{"endpoint":{},"backend":{},"total_errors":3,"connections":[{}]}}"#,
            serde_json::to_string(&endpoint).unwrap(),
            serde_json::to_string(&backend).unwrap(),
            conns.join(",")
        );
        let status: PoolStatus = serde_json::from_str(&json).unwrap();
        let snapshot = Snapshot {
            status: SourceOutcome { result: Ok(Arc::new(StatusDoc::capped(status, max))), duration: Default::default() },
            health: SourceOutcome { result: Ok(Arc::new(serde_json::from_str(r#"{"status":"healthy"}"#).unwrap())), duration: Default::default() },
            metrics: SourceOutcome { result: Ok(Arc::new(parse(""))), duration: Default::default() },
        };
        let options = TranslateOptions { max_connections: max, connections: Default::default(), fallback_endpoint: None, build: &BuildInfo::CURRENT, max_label_value_len: 1024 };
        let t = translate(&snapshot, &SourceCounters::default(), &options);
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = encode(&t.own, format);
            let back = parse(&text);
            prop_assert_eq!(back.skipped_lines, 0, "{}", text);
            let connection_series = back.families.iter()
                .find(|f| f.name.starts_with("secure_channel_connection_errors"))
                .map_or(0, |f| f.samples.len());
            // One series per distinct id (duplicates keep the worst).
            let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len();
            prop_assert_eq!(connection_series, distinct.min(max));
        }
    }
}
