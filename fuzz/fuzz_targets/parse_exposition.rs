//! Any bytes as the pool's native exposition, read as text 0.0.4, as
//! OpenMetrics and as detected: no panic, and what the native passthrough
//! lets through is an answer a strict reader accepts in both formats. The
//! strict reader is the exporter's own parser in the answer's format (no
//! line skipped, every sample read back, nothing after `# EOF`) followed
//! by the passthrough's OpenMetrics rules (nothing of the answer dropped a
//! second time), plus the text format's own limits: no negative or
//! fractional timestamp, no exemplar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secure_channel_exporter::exposition::encode::Encoder;
use secure_channel_exporter::exposition::{
    parse_as, Format, MetricFamily, ParsedExposition, SourceFormat,
};
use secure_channel_exporter::pool::FailureReason;
use secure_channel_exporter::scrape::translate::{
    translate, BuildInfo, ConnectionFilter, Snapshot, SourceCounters, SourceOutcome,
    TranslateOptions,
};

fn failed<T>() -> SourceOutcome<T> {
    SourceOutcome {
        result: Err(FailureReason::Timeout),
        duration: std::time::Duration::ZERO,
    }
}

fn snapshot(parsed: ParsedExposition) -> Snapshot {
    Snapshot {
        status: failed(),
        health: failed(),
        metrics: SourceOutcome {
            result: Ok(std::sync::Arc::new(parsed)),
            duration: std::time::Duration::ZERO,
        },
    }
}

const OPTIONS: TranslateOptions<'static> = TranslateOptions {
    max_connections: 10,
    connections: ConnectionFilter::All,
    fallback_endpoint: None,
    build: &BuildInfo::CURRENT,
    max_label_value_len: 1024,
};

/// The passed-through families and the total of every native drop counter.
fn pass(parsed: ParsedExposition) -> (Vec<MetricFamily>, f64) {
    let snap = snapshot(parsed);
    let t = translate(&snap, &SourceCounters::default(), &OPTIONS);
    let dropped: f64 = t
        .own
        .iter()
        .filter(|f| {
            f.name == "secure_channel_exporter_native_families_dropped"
                || f.name == "secure_channel_exporter_native_series_dropped"
        })
        .flat_map(|f| &f.samples)
        .map(|s| s.value)
        .sum();
    let native = t.native.iter().map(|f| (**f).clone()).collect();
    (native, dropped)
}

fn encode(families: &[MetricFamily], format: Format) -> String {
    let mut encoder = Encoder::new(format, 0);
    encoder.families(families);
    encoder.finish()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for source in [SourceFormat::Text, SourceFormat::OpenMetrics] {
        let (native, _) = pass(parse_as(&text, source));
        let samples: usize = native.iter().map(|f| f.samples.len()).sum();
        for (format, reread) in [
            (Format::PrometheusText, SourceFormat::Text),
            (Format::OpenMetrics, SourceFormat::OpenMetrics),
        ] {
            let answer = encode(&native, format);
            let back = parse_as(&answer, reread);
            assert_eq!(back.skipped_lines, 0, "{answer}");
            assert_eq!(back.invalid_families, 0, "{answer}");
            assert_eq!(back.sample_count(), samples, "{answer}");
            let negative_free = back
                .families
                .iter()
                .flat_map(|f| &f.samples)
                .all(|s| s.timestamp_ms.is_none_or(|t| t >= 0));
            let (again, dropped) = pass(back);
            assert_eq!(dropped, 0.0, "{answer}");
            assert_eq!(
                again.iter().map(|f| f.samples.len()).sum::<usize>(),
                samples,
                "{answer}"
            );
            if format == Format::PrometheusText {
                // An exemplar would have made a line unreadable above; a
                // negative timestamp is readable but not by Prometheus.
                assert!(negative_free, "{answer}");
            } else {
                assert!(answer.ends_with("# EOF\n"));
                assert_eq!(answer.lines().filter(|l| *l == "# EOF").count(), 1);
            }
        }
    }
});
