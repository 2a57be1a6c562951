//! Any bytes as the pool's native exposition: no panic, and whatever the
//! parser keeps re-encodes into text that parses back without loss.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secure_channel_exporter::exposition::{encode, parse, Format};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse(&text);

    let encoded = encode(&parsed.families, Format::PrometheusText);
    let again = parse(&encoded);
    assert_eq!(again.skipped_lines, 0, "{encoded}");
    assert_eq!(again.sample_count(), parsed.sample_count(), "{encoded}");

    // OpenMetrics writes timestamps in seconds, which the 0.0.4 parser
    // (milliseconds) does not read back: compare without them.
    let mut untimed = parsed.families.clone();
    for sample in untimed.iter_mut().flat_map(|f| f.samples.iter_mut()) {
        sample.timestamp_ms = None;
    }
    let encoded = encode(&untimed, Format::OpenMetrics);
    let again = parse(&encoded);
    assert_eq!(again.skipped_lines, 0, "{encoded}");
    assert_eq!(again.sample_count(), parsed.sample_count(), "{encoded}");
});
