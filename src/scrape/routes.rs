//! The answers of `/metrics`, `/probe` and `/ready`.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, VARY};
use hyper::{Request, Response, StatusCode};
use tokio::time::Instant;

use super::collector::Collector;
use super::probe::{Probe, ProbeError};
use crate::exposition::{negotiate, negotiate_encoding, Encoding, Families};
use crate::http::{respond, text, Body};

/// Floor for a scrape deadline, so a tiny scrape timeout still tries.
const MIN_SCRAPE_BUDGET: Duration = Duration::from_millis(100);

/// The fetch budget: Prometheus' scrape timeout minus the offset, capped by
/// `--pool.timeout`.
pub fn scrape_budget(
    header: Option<&HeaderValue>,
    offset: Duration,
    pool_timeout: Duration,
) -> Duration {
    let Some(scrape_timeout) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
    else {
        return pool_timeout;
    };
    let budget = if scrape_timeout > offset * 2 {
        scrape_timeout - offset
    } else {
        // Offset too large for this timeout: keep half of it instead.
        scrape_timeout / 2
    };
    budget.max(MIN_SCRAPE_BUDGET).min(pool_timeout)
}

/// One scrape of `collector` in the negotiated format and content coding,
/// with `extra`'s families written into the same answer. Scrapes that
/// shared one pool fetch also share the rendered body and its compressed
/// forms (no per-response copy or compression of a multi-megabyte answer).
pub async fn metrics(
    collector: &Collector,
    req: &Request<Incoming>,
    offset: Duration,
    extra: &(dyn Families + Sync),
) -> Response<Body> {
    let budget = scrape_budget(
        req.headers().get("x-prometheus-scrape-timeout-seconds"),
        offset,
        collector.pool_timeout(),
    );
    let format = negotiate(req.headers().get(ACCEPT).and_then(|h| h.to_str().ok()));
    let encoding = negotiate_encoding(
        req.headers()
            .get(ACCEPT_ENCODING)
            .and_then(|h| h.to_str().ok()),
    );
    let collected = collector.collect(Instant::now() + budget).await;
    let (body, encoding) = collector.render_bytes(&collected, format, extra, encoding);
    collector.count_answer(encoding);
    let mut resp = respond(StatusCode::OK, format.content_type(), body);
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Caches must not hand a gzip answer to a client that did not ask.
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if encoding != Encoding::Identity {
        headers.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(encoding.as_str()),
        );
    }
    resp
}

/// `/probe?target=`: a scrape of another pool, when the allow-list admits it.
pub async fn probe(
    probe: Option<&Probe>,
    req: &Request<Incoming>,
    offset: Duration,
) -> Response<Body> {
    let Some(probe) = probe else {
        return text(
            StatusCode::NOT_FOUND,
            "probe mode is off: start the exporter with --probe.allowed-targets\n",
        );
    };
    let target = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "target")
            .map(|(_, v)| v.into_owned())
    });
    match probe.collector_for(target.as_deref()) {
        Ok(collector) => metrics(&collector, req, offset, &()).await,
        Err(e) => {
            // The error carries the target cut short; the throttle keys on
            // the kind of refusal, so varying targets do not defeat it.
            let kind = match &e {
                ProbeError::MissingTarget => "missing",
                ProbeError::InvalidTarget(..) => "invalid",
                ProbeError::NotAllowed(_) => "not_allowed",
            };
            if let Some(repeats) =
                crate::logging::throttle().admit(&format!("probe refused {kind}"))
            {
                tracing::warn!(error = %crate::logging::truncated(&e.to_string()), "probe refused{repeats}");
            }
            let code = match e {
                ProbeError::NotAllowed(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            text(code, format!("{e}\n"))
        }
    }
}

/// `/ready`: 200 while the latest status fetch succeeded, 503 with the
/// reason otherwise.
pub async fn ready(collector: &Collector) -> Response<Body> {
    let readiness = collector.readiness().await;
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&readiness).unwrap_or_else(|_| "{}".into());
    respond(code, "application/json", body + "\n")
}
