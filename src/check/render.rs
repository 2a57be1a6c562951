//! The check's report for a person.

use std::fmt::Write;

use super::{Auth, DocumentReport, Report};

/// The report as aligned lines of text, ending with the verdict.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pool        {}", r.pool);
    let _ = writeln!(
        out,
        "reachable   {}",
        if r.reachable { "yes" } else { "no" }
    );
    let auth = match (r.auth, r.token_sent) {
        (Auth::Accepted, _) => "accepted (token sent)",
        (Auth::NotRequired, _) => "not required (no token sent, the pool answered)",
        (Auth::Refused, true) => "refused: the pool does not accept the token",
        (Auth::Refused, false) => "refused: the pool wants a token (--pool.auth-token-file)",
        (Auth::Unknown, _) => "unknown (no answer to a document that needs the token)",
    };
    let _ = writeln!(out, "auth        {auth}");
    for (name, d) in [
        ("status", &r.documents.status),
        ("health", &r.documents.health),
        ("metrics", &r.documents.metrics),
    ] {
        let _ = writeln!(out, "{name:<11} {}", document_line(d));
    }
    let _ = writeln!(
        out,
        "build       {}: {}",
        r.build.as_str(),
        r.build_evidence
    );
    let _ = writeln!(out, "timestamps  {}", r.timestamps.as_str());
    let _ = writeln!(out, "alerts that can fire for this build:");
    for a in &r.alerts.can_fire {
        let _ = writeln!(out, "  {:<40} {}", a.alert, a.why);
    }
    if r.alerts.cannot_fire.is_empty() {
        let _ = writeln!(out, "alerts that cannot fire: none");
    } else {
        let heading = if r.build == super::Build::Unknown {
            "alerts that fire only for one build (which one this is is unknown):"
        } else {
            "alerts that cannot fire for this build:"
        };
        let _ = writeln!(out, "{heading}");
        for a in &r.alerts.cannot_fire {
            let _ = writeln!(out, "  {:<40} {}", a.alert, a.why);
        }
    }
    let failed: Vec<&str> = [
        ("status", &r.documents.status),
        ("health", &r.documents.health),
        ("metrics", &r.documents.metrics),
    ]
    .iter()
    .filter(|(_, d)| !d.ok)
    .map(|(n, _)| *n)
    .collect();
    if failed.is_empty() {
        let _ = writeln!(out, "result      ok: every document fetched and decoded");
    } else {
        let _ = writeln!(out, "result      FAILED: {}", failed.join(", "));
    }
    out
}

fn document_line(d: &DocumentReport) -> String {
    let verdict = if d.ok { "ok" } else { "FAILED" };
    let http = d
        .http_status
        .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
    let mut line = format!("{verdict:<6} {http:<9}");
    if let Some(size) = d.size_bytes {
        let _ = write!(line, " {size} bytes");
    }
    if let Some(format) = d.format {
        let _ = write!(line, " {format}");
    }
    let mut line = line.trim_end().to_owned();
    match (&d.summary, &d.error) {
        (Some(summary), _) => {
            let _ = write!(line, ": {summary}");
        }
        (None, Some(error)) => {
            let _ = write!(line, ": {} ({error})", d.result);
        }
        (None, None) => {}
    }
    line
}
