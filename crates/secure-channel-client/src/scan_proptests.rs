//! Differential property tests: on every input, generated pool documents
//! in every layout the pool's builds write (docs/pool-behaviour.md), their mutations and arbitrary
//! bytes, [`decode_status`] gives exactly serde_json's result (the same
//! value, or an error when serde errs).

use proptest::prelude::*;

use super::*;

/// serde's result and ours, compared by `Debug` so that an integer id and
/// a string id with the same text, or -0.0 and 0.0, count as different.
fn assert_same(doc: &[u8]) -> Result<(), TestCaseError> {
    let serde = serde_json::from_slice::<PoolStatus>(doc).map(|s| format!("{s:?}"));
    let ours = decode_status(doc).map(|s| format!("{s:?}"));
    // The streaming entry point, and its serde path on its own (the
    // scanner takes most generated documents before it).
    let streamed = decode_status_into(doc, Vec::new).map(|(mut s, c)| {
        s.connections = c;
        format!("{s:?}")
    });
    let mut sunk = Vec::new();
    let serde_sunk = crate::sink::deserialize_status(doc, &mut sunk).map(|mut s| {
        s.connections = sunk;
        format!("{s:?}")
    });
    for ours in [ours, streamed, serde_sunk] {
        match (&serde, ours) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, &b, "{}", String::from_utf8_lossy(doc)),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(
                false,
                "serde {:?} vs ours {:?} on {}",
                a,
                b,
                String::from_utf8_lossy(doc)
            ),
        }
    }
    Ok(())
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => "[ \t\r\n]{1,3}",
    ]
}

/// A JSON number as some pool build might write it.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u64..100_000).prop_map(|v| v.to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        2 => (0.0f64..10_000.0).prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| format!("{v:e}")),
        1 => prop_oneof![
            Just("-0".to_owned()),
            Just("0.0".to_owned()),
            Just("1E2".to_owned()),
            Just("1e-400".to_owned()),
            Just("1e400".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just("9007199254740993".to_owned()),
            Just("0.1e+1".to_owned()),
        ],
    ]
}

/// A JSON string literal, escapes included.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9.:-]{0,20}".prop_map(|s| format!("\"{s}\"")),
        1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => Just(r#""a\"b\\c\u00e9\n\ud83d\ude00""#.to_owned()),
    ]
}

fn timestamp() -> impl Strategy<Value = String> {
    let object = (
        prop_oneof![
            3 => (1_500_000_000u64..2_000_000_000).prop_map(|v| v.to_string()),
            1 => number(),
        ],
        prop_oneof![
            3 => (0u32..1_000_000_000).prop_map(|v| v.to_string()),
            1 => number(),
        ],
        any::<bool>(),
        ws(),
    )
        .prop_map(|(secs, nanos, swap, w)| {
            let s = format!("\"secs_since_epoch\":{w}{secs}");
            let n = format!("\"nanos_since_epoch\":{nanos}");
            if swap {
                format!("{{{n},{w}{s}}}")
            } else {
                format!("{{{s},{n}}}")
            }
        });
    prop_oneof![
        4 => object,
        1 => Just(r#"{"secs_since_epoch":1764072000}"#.to_owned()),
        1 => Just(r#"{"nanos_since_epoch":5}"#.to_owned()),
        2 => prop_oneof![
            Just("\"2025-08-25T13:00:00.25+02:00\"".to_owned()),
            Just("\"2025-08-25T11:00:00Z\"".to_owned()),
            Just("\"2025-13-25T11:00:00Z\"".to_owned()),
            Just("\"yesterday\"".to_owned()),
        ],
        2 => number(),
        1 => Just("null".to_owned()),
    ]
}

/// One member's value: of the right type in a clean document; in a noisy
/// one, sometimes not.
fn value(right: BoxedStrategy<String>, noisy: bool) -> BoxedStrategy<String> {
    if !noisy {
        return right;
    }
    prop_oneof![
        12 => right,
        1 => Just("null".to_owned()),
        1 => string(),
        1 => number(),
        1 => Just("true".to_owned()),
        1 => Just("[1,{\"a\":[]}]".to_owned()),
    ]
    .boxed()
}

/// An object from `(key, value)` members: some left out, shuffled, with
/// an occasional unknown member or duplicate.
fn object(members: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
    let parts: Vec<BoxedStrategy<Option<String>>> = members
        .into_iter()
        .map(|(key, v)| {
            prop_oneof![
                8 => (v, ws()).prop_map(move |(v, w)| Some(format!("\"{key}\"{w}:{w}{v}"))),
                1 => Just(None),
            ]
            .boxed()
        })
        .collect();
    (
        parts,
        prop_oneof![
            10 => Just(None),
            1 => Just(Some("\"unknown\":{\"x\":[1,2,null]}".to_owned())),
            1 => Just(Some("\"k\u{1}\":1".to_owned())),
            1 => Just(Some("\"endpoint\":\"again\"".to_owned())),
            1 => Just(Some("\"connection_id\":3".to_owned())),
        ],
        ws(),
    )
        .prop_flat_map(|(parts, extra, w)| {
            let mut members: Vec<String> = parts.into_iter().flatten().collect();
            members.extend(extra);
            Just(members)
                .prop_shuffle()
                .prop_map(move |m| format!("{{{w}{}{w}}}", m.join(&format!(",{w}"))))
        })
        .boxed()
}

fn connection(noisy: bool) -> BoxedStrategy<String> {
    let id = prop_oneof![
        4 => (1u64..1_000_000).prop_map(|v| v.to_string()),
        1 => string(),
        1 => number(),
    ];
    object(vec![
        ("connection_id", value(id.boxed(), noisy)),
        ("last_activity", value(timestamp().boxed(), noisy)),
        ("reconnects", value(number().boxed(), noisy)),
        ("errors", value(number().boxed(), noisy)),
        ("p95_latency_ms", value(number().boxed(), noisy)),
        (
            "is_healthy",
            value(any::<bool>().prop_map(|b| b.to_string()).boxed(), noisy),
        ),
        ("remote_addr", value(string().boxed(), noisy)),
    ])
}

/// A status document: `noisy` ones put values of the wrong type here and
/// there (mostly serde's to decide), clean ones only the irregularities
/// pools may really send (order, whitespace, escapes, the variants of
/// times, ids and numbers, an unknown or duplicate member now and then),
/// which the scanner mostly decides itself.
fn status_of(noisy: bool) -> BoxedStrategy<String> {
    let connections = (proptest::collection::vec(connection(noisy), 0..6), ws())
        .prop_map(|(c, w)| format!("[{w}{}]", c.join(",")));
    object(vec![
        ("endpoint", value(string().boxed(), noisy)),
        ("active_connections", value(number().boxed(), noisy)),
        ("total_reconnects", value(number().boxed(), noisy)),
        ("total_errors", value(number().boxed(), noisy)),
        ("pool_p95_latency_ms", value(number().boxed(), noisy)),
        ("connections", value(connections.boxed(), noisy)),
        ("backend", value(string().boxed(), noisy)),
        ("last_updated", value(timestamp().boxed(), noisy)),
    ])
}

fn status() -> BoxedStrategy<String> {
    prop_oneof![3 => status_of(false), 1 => status_of(true)].boxed()
}

/// The published pool's exact layout, as its serde writes it.
fn published(n: usize, seed: u64) -> String {
    let conns: Vec<String> = (0..n as u64)
        .map(|i| {
            format!(
                r#"{{"connection_id":{},"last_activity":{{"secs_since_epoch":{},"nanos_since_epoch":{}}},"reconnects":{},"errors":{},"p95_latency_ms":{}}}"#,
                seed + i,
                1_764_072_000 + i,
                (seed * 7919 + i) % 1_000_000_000,
                i % 3,
                i % 5,
                (seed + i) % 700
            )
        })
        .collect();
    format!(
        r#"{{"endpoint":"relay.example.net:443","active_connections":{n},"total_reconnects":0,"total_errors":0,"pool_p95_latency_ms":45,"connections":[{}]}}"#,
        conns.join(",")
    )
}

/// A document with one edit: a byte cut, inserted, replaced or the text
/// truncated.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (status(), any::<usize>(), any::<u8>(), 0u8..4).prop_map(|(doc, at, byte, how)| {
        let mut b = doc.into_bytes();
        let at = at % (b.len() + 1);
        match how {
            0 => b.truncate(at),
            1 => b.insert(at, byte),
            2 if at < b.len() => b[at] = byte,
            _ if at < b.len() => {
                b.remove(at);
            }
            _ => {}
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_documents_decode_as_serde_does(doc in status()) {
        assert_same(doc.as_bytes())?;
    }

    #[test]
    fn mutated_documents_decode_or_fail_as_serde_does(doc in mutated()) {
        assert_same(&doc)?;
    }

    #[test]
    fn arbitrary_bytes_decode_or_fail_as_serde_does(doc in proptest::collection::vec(any::<u8>(), 0..64)) {
        assert_same(&doc)?;
    }

    /// The published layout with one edit (the literal-matching path's
    /// own edge cases: a digit too many, a sign, a fraction, a cut).
    #[test]
    fn mutated_published_documents_decode_or_fail_as_serde_does(
        n in 1usize..4,
        seed in 1u64..1_000_000,
        at in any::<usize>(),
        byte in prop_oneof![Just(b'-'), Just(b'.'), Just(b'0'), Just(b'9'), Just(b'e'), Just(b' '), Just(b'"'), Just(b','), Just(b'}'), any::<u8>()],
        how in 0u8..3,
    ) {
        let mut b = published(n, seed).into_bytes();
        let at = at % b.len();
        match how {
            0 => b.insert(at, byte),
            1 => b[at] = byte,
            _ => {
                b.remove(at);
            }
        }
        assert_same(&b)?;
    }

    /// The fast path is taken on what pools send, not only the fallback.
    #[test]
    fn the_published_layout_is_scanned(n in 0usize..50, seed in 1u64..1_000_000) {
        let doc = published(n, seed);
        let scanned = scan_status(doc.as_bytes());
        prop_assert!(scanned.is_some(), "{}", doc);
        prop_assert_eq!(
            format!("{:?}", scanned.unwrap()),
            format!("{:?}", serde_json::from_str::<PoolStatus>(&doc).unwrap())
        );
    }
}
