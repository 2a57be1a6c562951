//! Any bytes as the pool's status document: no panic; the specialised
//! decoder (`PoolStatus::from_slice`) gives serde_json's result exactly (the
//! same value on every input serde accepts, an error on every input it
//! rejects); the pool layer's decoder (the connection cap applied as the
//! list is read) accepts exactly the same documents; and a document that
//! decodes always translates into a readable exposition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secure_channel_exporter::exposition::{encode, parse, Format};
use secure_channel_exporter::pool::{PoolStatus, StatusDoc};
use secure_channel_exporter::scrape::translate::{
    translate, BuildInfo, Snapshot, SourceCounters, SourceOutcome, TranslateOptions,
};

fuzz_target!(|data: &[u8]| {
    let serde = serde_json::from_slice::<PoolStatus>(data);
    let fast = PoolStatus::from_slice(data);
    // Debug, so that an integer and a string id with the same text, or -0
    // and 0, differ.
    match (&serde, &fast) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(_), Err(_)) => {}
        _ => panic!("serde {serde:?} vs specialised {fast:?}"),
    }
    let capped = StatusDoc::decode(data, 2);
    assert_eq!(capped.is_ok(), fast.is_ok());
    let Ok((doc, _)) = capped else {
        return;
    };
    assert!(doc.status.connections.len() <= 2);
    let snapshot = Snapshot {
        status: SourceOutcome {
            result: Ok(std::sync::Arc::new(doc)),
            duration: Default::default(),
        },
        health: SourceOutcome {
            result: Err(secure_channel_exporter::pool::FailureReason::Timeout),
            duration: Default::default(),
        },
        metrics: SourceOutcome {
            result: Ok(std::sync::Arc::new(parse(""))),
            duration: Default::default(),
        },
    };
    let options = TranslateOptions {
        max_connections: 16,
        connections: Default::default(),
        fallback_endpoint: None,
        build: &BuildInfo::CURRENT,
        max_label_value_len: 1024,
    };
    let translation = translate(&snapshot, &SourceCounters::default(), &options);
    let text = encode(&translation.own, Format::PrometheusText);
    assert_eq!(parse(&text).skipped_lines, 0, "{text}");
});
