//! Any bytes as the pool's status document: no panic, and a document that
//! decodes always translates into a readable exposition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secure_channel_exporter::exposition::{encode, parse, Format};
use secure_channel_exporter::pool::PoolStatus;
use secure_channel_exporter::scrape::translate::{
    translate, BuildInfo, Snapshot, SourceCounters, SourceOutcome, TranslateOptions,
};

fuzz_target!(|data: &[u8]| {
    let Ok(status) = serde_json::from_slice::<PoolStatus>(data) else {
        return;
    };
    let snapshot = Snapshot {
        status: SourceOutcome {
            result: Ok(status),
            duration: Default::default(),
        },
        health: SourceOutcome {
            result: Err(secure_channel_exporter::pool::FailureReason::Timeout),
            duration: Default::default(),
        },
        metrics: SourceOutcome {
            result: Ok(parse("")),
            duration: Default::default(),
        },
    };
    let options = TranslateOptions {
        max_connections: 16,
        fallback_endpoint: None,
        build: &BuildInfo::CURRENT,
        max_label_value_len: 1024,
    };
    let translation = translate(&snapshot, &SourceCounters::default(), &options);
    let text = encode(&translation.own, Format::PrometheusText);
    assert_eq!(parse(&text).skipped_lines, 0, "{text}");
});
