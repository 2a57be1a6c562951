//! Criterion micro-benchmarks of the pure parts of a scrape: decoding the
//! pool's status JSON, translating and encoding it, and the native text
//! parser. Run with `cargo bench --bench pipeline`; docs/performance.md
//! has the figures and how to read them.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use secure_channel_exporter::exposition::encode::Encoder;
use secure_channel_exporter::exposition::{buffer, parse, Encoding, Format};
use secure_channel_exporter::pool::{Health, PoolStatus, StatusDoc};
use secure_channel_exporter::scrape::translate::{
    encode_scrape, translate, write_scrape, BuildInfo, ConnectionFilter, Snapshot, SourceCounters,
    SourceOutcome, TranslateOptions,
};
use secure_channel_exporter::sim::{SimConfig, SimPool};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// A fixed instant, so every run benchmarks the same documents.
const T0: f64 = 1_764_072_000.0;

/// The three documents of a steady simulated pool with `n` connections.
fn documents(n: usize) -> (String, String, String) {
    let pool = SimPool::new(
        SimConfig {
            connections: n,
            steady: true,
            ..SimConfig::default()
        },
        T0,
    );
    (pool.status_json(), pool.health().1, pool.metrics_text())
}

fn ok<T>(result: T) -> SourceOutcome<std::sync::Arc<T>> {
    SourceOutcome {
        result: Ok(std::sync::Arc::new(result)),
        duration: Duration::from_millis(2),
    }
}

fn snapshot(status: &str, health: &str, metrics: &str) -> Snapshot {
    Snapshot {
        // As the pool layer decodes it, every connection kept.
        status: ok(StatusDoc::decode(status.as_bytes(), usize::MAX).unwrap().0),
        health: ok(serde_json::from_str::<Health>(health).unwrap()),
        metrics: ok(parse(metrics)),
    }
}

/// Every connection exported, as in the end-to-end benchmark.
fn options() -> TranslateOptions<'static> {
    TranslateOptions {
        max_connections: usize::MAX,
        connections: ConnectionFilter::All,
        fallback_endpoint: None,
        build: &BuildInfo::CURRENT,
        max_label_value_len: usize::MAX,
    }
}

fn pipeline(c: &mut Criterion) {
    let counters = SourceCounters::default();
    for n in SIZES {
        let (status, health, metrics) = documents(n);
        let snap = snapshot(&status, &health, &metrics);
        let mut group = c.benchmark_group(format!("pipeline/{n}"));
        // Throughput is the status document, the bulk of what is decoded.
        group.throughput(Throughput::Bytes(status.len() as u64));

        // The yardstick of the target: what serde_json alone costs.
        group.bench_function("decode_serde", |b| {
            b.iter(|| serde_json::from_slice::<PoolStatus>(black_box(status.as_bytes())).unwrap())
        });
        // The client crate's decoder: the specialised scanner, serde's result.
        group.bench_function("decode_specialised", |b| {
            b.iter(|| PoolStatus::from_slice(black_box(status.as_bytes())).unwrap())
        });
        // The pool layer's decoder: the same, every connection kept, and
        // with the default cap of 1,000 applied as the list is read.
        group.bench_function("decode_pool_layer_all", |b| {
            b.iter(|| StatusDoc::decode(black_box(status.as_bytes()), usize::MAX).unwrap())
        });
        group.bench_function("decode_pool_layer_capped_1000", |b| {
            b.iter(|| StatusDoc::decode(black_box(status.as_bytes()), 1000).unwrap())
        });
        for (name, format) in [
            ("translate_encode_text", Format::PrometheusText),
            ("translate_encode_openmetrics", Format::OpenMetrics),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| encode_scrape(black_box(&snap), &counters, &options(), &[], format))
            });
        }
        // The general path (a MetricFamily per series, then the encoder),
        // kept to show what streaming the per-connection series saves.
        group.bench_function("translate_then_encode_families", |b| {
            b.iter(|| {
                let t = translate(black_box(&snap), &counters, &options());
                let mut encoder = Encoder::new(Format::PrometheusText, 4096);
                encoder.families(&t.own);
                encoder.families(t.native.iter().map(|f| &**f));
                encoder.finish()
            })
        });
        // As the exporter writes an answer: into a buffer of the answers'
        // pool, shared and given back, so a steady pool's answer reuses
        // the pages of the last one instead of faulting in fresh ones.
        group.bench_function("translate_encode_text_pooled", |b| {
            let answers = buffer::answers();
            b.iter(|| {
                let mut encoder = Encoder::with_buffer(Format::PrometheusText, answers.take(0));
                write_scrape(black_box(&snap), &counters, &options(), &[], &mut encoder);
                answers.share(encoder.finish().into_bytes())
            })
        });
        // All the CPU work of one scrape but the I/O.
        group.bench_function("decode_translate_encode_text", |b| {
            b.iter(|| {
                let snap = snapshot(black_box(&status), &health, &metrics);
                encode_scrape(&snap, &counters, &options(), &[], Format::PrometheusText)
            })
        });
        group.finish();
    }
}

fn parser(c: &mut Criterion) {
    // A large, realistic exposition: our own output for 10,000 connections
    // (40,000 labelled series), and the pool's own small one.
    let (status, health, metrics) = documents(10_000);
    let big = encode_scrape(
        &snapshot(&status, &health, &metrics),
        &SourceCounters::default(),
        &options(),
        &[],
        Format::PrometheusText,
    );
    let mut group = c.benchmark_group("parse");
    for (name, text) in [
        ("exporter_10000_connections", &big),
        ("pool_native", &metrics),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter(|| parse(black_box(text)))
        });
    }
    group.finish();
}

/// The per-connection families of a status document through
/// prometheus-client's `Collector` interface, for comparison with our
/// streaming encoder (docs/architecture.md quotes the figures).
/// A per-connection family for the comparison: its name and value.
type Column = (
    &'static str,
    fn(&secure_channel_exporter::pool::Connection) -> f64,
);

#[derive(Debug)]
struct ConnectionCollector(std::sync::Arc<PoolStatus>);

impl prometheus_client::collector::Collector for ConnectionCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::NoLabelSet;
        use prometheus_client::metrics::MetricType;
        let status = &*self.0;
        let ep = status.endpoint.as_str();
        let counters: [Column; 2] = [
            ("secure_channel_connection_errors", |c| c.errors),
            ("secure_channel_connection_reconnects", |c| c.reconnects),
        ];
        for (name, value) in counters {
            let mut family = encoder.encode_descriptor(name, "h", None, MetricType::Counter)?;
            for conn in &status.connections {
                let labels = [
                    ("endpoint", ep),
                    ("connection_id", conn.connection_id.as_str()),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&(value(conn) as u64), None)?;
            }
        }
        let gauges: [Column; 2] = [
            ("secure_channel_connection_p95_latency_seconds", |c| {
                c.p95_latency_ms.unwrap_or(0.0) / 1000.0
            }),
            (
                "secure_channel_connection_last_activity_timestamp_seconds",
                |c| c.last_activity.map_or(0.0, |t| t.as_secs_f64()),
            ),
        ];
        for (name, value) in gauges {
            let mut family = encoder.encode_descriptor(name, "h", None, MetricType::Gauge)?;
            for conn in &status.connections {
                let labels = [
                    ("endpoint", ep),
                    ("connection_id", conn.connection_id.as_str()),
                ];
                family.encode_family(&labels)?.encode_gauge(&value(conn))?;
            }
        }
        Ok(())
    }
}

fn per_connection_families(c: &mut Criterion) {
    let (status, _, _) = documents(10_000);
    let decoded: PoolStatus = serde_json::from_str(&status).unwrap();
    // Ours: the whole answer of a scrape whose health and native metrics
    // failed, i.e. the four per-connection families plus a few dozen
    // pool-level and self-metric series.
    let snap = Snapshot {
        status: ok(StatusDoc::keep_all(decoded.clone())),
        health: SourceOutcome {
            result: Err(secure_channel_exporter::pool::FailureReason::Timeout),
            duration: Duration::from_millis(2),
        },
        metrics: SourceOutcome {
            result: Err(secure_channel_exporter::pool::FailureReason::Timeout),
            duration: Duration::from_millis(2),
        },
    };
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(ConnectionCollector(std::sync::Arc::new(decoded))));
    let mut group = c.benchmark_group("per_connection_families/10000");
    group.bench_function("ours_streaming_text", |b| {
        b.iter(|| {
            encode_scrape(
                black_box(&snap),
                &SourceCounters::default(),
                &options(),
                &[],
                Format::PrometheusText,
            )
        })
    });
    group.bench_function("prometheus_client_collector_text", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(4 << 20);
            prometheus_client::encoding::prometheus_text::encode(&mut out, black_box(&registry))
                .unwrap();
            out
        })
    });
    group.bench_function("prometheus_client_collector_openmetrics", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(4 << 20);
            prometheus_client::encoding::text::encode(&mut out, black_box(&registry)).unwrap();
            out
        })
    });
    group.finish();
}

/// The exporter's history of successive status documents (derived
/// counters), which every scrape updates.
fn derived_history(c: &mut Criterion) {
    let (status, _, _) = documents(10_000);
    let decoded: PoolStatus = serde_json::from_str(&status).unwrap();
    let mut history = secure_channel_exporter::pool::history::PoolHistory::default();
    history.observe(&decoded);
    c.bench_function("derived/observe/10000", |b| {
        b.iter(|| history.observe(black_box(&decoded)))
    });
}

/// The answer's compression at each level worth considering, with the
/// compressed sizes printed (the figures behind the levels and threshold
/// in src/exposition/compress.rs).
fn compression(c: &mut Criterion) {
    use std::io::Write;
    for n in [10, 100, 1_000, 10_000] {
        let (status, health, metrics) = documents(n);
        let body = encode_scrape(
            &snapshot(&status, &health, &metrics),
            &SourceCounters::default(),
            &options(),
            &[],
            Format::PrometheusText,
        );
        let gzip = |level: u32| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(body.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let zstd = |level: i32| zstd::bulk::compress(body.as_bytes(), level).unwrap();
        let mut group = c.benchmark_group(format!("compress/{n}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        for level in [1, 2, 6] {
            eprintln!(
                "compress/{n}: identity {} bytes, gzip level {level} {} bytes",
                body.len(),
                gzip(level).len()
            );
            group.bench_function(format!("gzip_{level}"), |b| {
                b.iter(|| gzip(black_box(level)))
            });
        }
        // What the exporter sends: gzip level 2 in pieces on every core,
        // zstd level 1 with a kept context, into the answers' buffer pool.
        for encoding in [Encoding::Gzip, Encoding::Zstd] {
            let ours = || encoding.compress(body.as_bytes()).unwrap();
            eprintln!(
                "compress/{n}: identity {} bytes, exporter {} {} bytes",
                body.len(),
                encoding.as_str(),
                ours().len()
            );
            group.bench_function(format!("exporter_{}", encoding.as_str()), |b| {
                b.iter(|| black_box(ours()))
            });
        }
        for level in [1, 3] {
            eprintln!(
                "compress/{n}: identity {} bytes, zstd level {level} {} bytes",
                body.len(),
                zstd(level).len()
            );
            group.bench_function(format!("zstd_{level}"), |b| {
                b.iter(|| zstd(black_box(level)))
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    // Two shared cores: short, many-sample runs; criterion reports the
    // median and its confidence interval.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = pipeline, parser, per_connection_families, derived_history, compression
}
criterion_main!(benches);
