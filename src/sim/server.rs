//! The simulator's HTTP face: the pool's three documents (with faults
//! applied) and the `/sim/...` control API.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::faults::{Fault, FaultSpec};
use super::pool::SimPool;
use crate::http::Body;
use crate::pool::Document;

/// Size of the body served under the `oversized` fault.
pub const OVERSIZED_BYTES: usize = 32 << 20;

/// Shared handle on a running simulated pool.
#[derive(Clone)]
pub struct SimHandle {
    pool: Arc<Mutex<SimPool>>,
}

/// Returned by the handler to drop the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("simulated pool is down")]
pub struct Dropped;

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl SimHandle {
    pub fn new(pool: SimPool) -> Self {
        Self {
            pool: Arc::new(Mutex::new(pool)),
        }
    }

    pub fn with_pool<T>(&self, f: impl FnOnce(&mut SimPool) -> T) -> T {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut pool)
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
        let path = req.uri().path().to_owned();
        if let Some(control) = path.strip_prefix("/sim/") {
            return Ok(self.control(req.method(), control, req.uri().query()));
        }
        let doc = match (req.method(), path.as_str()) {
            (&Method::GET, "/status/connections") => Document::Status,
            (&Method::GET, "/healthz") => Document::Health,
            (&Method::GET, "/metrics") => Document::Metrics,
            _ => return Ok(respond(StatusCode::NOT_FOUND, None, Bytes::new())),
        };
        self.pool_document(doc, &req).await
    }

    async fn pool_document(
        &self,
        doc: Document,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, Dropped> {
        // One look at the state per request rather than one per fault: under
        // 64 concurrent scrapers the lock is the simulator's hot spot.
        let (faults, refusal) = self.with_pool(|p| {
            p.count_request(doc);
            let faults: Vec<(Fault, u64)> = p
                .faults()
                .iter()
                .filter(|(_, spec)| spec.applies_to(doc))
                .map(|(f, spec)| (*f, spec.delay_ms))
                .collect();
            let refusal = match (doc, p.config.token.as_deref()) {
                (Document::Health, _) | (_, None) => None,
                (_, Some(token)) => token_refusal(req.headers().get("x-auth-token"), token),
            };
            (faults, refusal)
        });
        let fault = |f: Fault| faults.iter().find(|(g, _)| *g == f).map(|(_, d)| *d);
        if fault(Fault::Down).is_some() {
            return Err(Dropped);
        }
        if let Some(delay_ms) = fault(Fault::Slow) {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if let Some(delay_ms) = fault(Fault::RelayOutage) {
            self.block_while_relay_is_out(Duration::from_millis(delay_ms))
                .await;
        }
        if fault(Fault::Http500).is_some() {
            return Ok(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error",
            ));
        }
        let refusal = refusal.or(fault(Fault::Unauthorized).map(|_| INVALID_TOKEN));
        if let Some(body) = refusal {
            // As the pool answers: no Content-Type, a one-line reason.
            return Ok(respond(
                StatusCode::UNAUTHORIZED,
                None,
                Bytes::from_static(body.as_bytes()),
            ));
        }
        if fault(Fault::Html).is_some() {
            return Ok(html(StatusCode::OK, "Service temporarily unavailable"));
        }

        let (code, body) = self.with_pool(|p| p.document(doc));
        let content_type = match doc {
            Document::Status | Document::Health => Some("application/json"),
            // The real pool sends its exposition with no Content-Type.
            Document::Metrics => None,
        };
        let body = if fault(Fault::Malformed).is_some() {
            malformed(doc)
        } else if fault(Fault::Truncated).is_some() {
            // Documents are ASCII except for a hostile endpoint; cut on a
            // character boundary so the body stays valid UTF-8.
            let text = String::from_utf8_lossy(&body);
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            Bytes::from(text[..cut].to_owned())
        } else if fault(Fault::Oversized).is_some() {
            // Leading blanks keep it a valid document, just far too big.
            let mut big = Vec::with_capacity(OVERSIZED_BYTES + body.len());
            big.resize(OVERSIZED_BYTES, b' ');
            big.extend_from_slice(&body);
            Bytes::from(big)
        } else if fault(Fault::Impostors).is_some() && doc == Document::Metrics {
            let mut text = body.to_vec();
            text.extend_from_slice(IMPOSTORS.as_bytes());
            Bytes::from(text)
        } else {
            body
        };
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        Ok(respond(code, content_type, body))
    }

    /// The pool's lock is held through a checkout's backoff during a relay
    /// outage: documents that need it wait until the outage ends or the
    /// backoff (`limit`) runs out.
    async fn block_while_relay_is_out(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.with_pool(|p| p.blocks_documents()) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn control(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
        let parts: Vec<&str> = path.split('/').collect();
        let result: Result<(), (StatusCode, String)> = match (method, parts.as_slice()) {
            (&Method::GET, ["blob"]) => {
                return match query
                    .and_then(|q| q.strip_prefix("bytes="))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n <= OVERSIZED_BYTES)
                {
                    Some(n) => respond(
                        StatusCode::OK,
                        Some("text/plain; charset=utf-8"),
                        self.with_pool(|p| p.blob(n)),
                    ),
                    None => respond(
                        StatusCode::BAD_REQUEST,
                        Some("text/plain; charset=utf-8"),
                        Bytes::from_static(b"expected ?bytes=N (at most 32 MiB)\n"),
                    ),
                };
            }
            (&Method::GET, ["state"]) => {
                let state = self.with_pool(|p| p.state_json());
                return respond(
                    StatusCode::OK,
                    Some("application/json"),
                    Bytes::from(state.to_string() + "\n"),
                );
            }
            (&Method::PUT | &Method::POST, ["faults", name]) => name
                .parse::<Fault>()
                .and_then(|fault| FaultSpec::from_query(fault, query).map(|spec| (fault, spec)))
                .map(|(fault, spec)| self.with_pool(|p| p.set_fault(fault, Some(spec))))
                .map_err(|e| (StatusCode::BAD_REQUEST, e)),
            (&Method::DELETE, ["faults", name]) => name
                .parse::<Fault>()
                .map(|fault| self.with_pool(|p| p.set_fault(fault, None)))
                .map_err(|e| (StatusCode::BAD_REQUEST, e)),
            (&Method::DELETE, ["faults"]) => {
                self.with_pool(SimPool::clear_faults);
                Ok(())
            }
            (&Method::PUT | &Method::POST, ["load"]) => self.with_pool(|p| {
                let mut load = p.config.load.clone();
                load.apply_query(query)
                    .map(|()| p.set_load(load))
                    .map_err(|e| (StatusCode::BAD_REQUEST, e))
            }),
            (&Method::PUT | &Method::POST, ["connections"]) => query
                .and_then(|q| q.strip_prefix("count="))
                .and_then(|n| n.parse::<usize>().ok())
                .map(|n| self.with_pool(|p| p.set_target_connections(n)))
                .ok_or((
                    StatusCode::BAD_REQUEST,
                    "expected ?count=N".to_owned(),
                )),
            _ => Err((
                StatusCode::NOT_FOUND,
                "unknown control path; see GET /sim/state, PUT|DELETE /sim/faults/NAME, PUT /sim/connections?count=N, PUT /sim/load?callers=N&ops_per_second=F&ops_per_checkout=N&error_fraction=F&slow_fraction=F".to_owned(),
            )),
        };
        match result {
            Ok(()) => {
                let state = self.with_pool(|p| p.state_json());
                respond(
                    StatusCode::OK,
                    Some("application/json"),
                    Bytes::from(state.to_string() + "\n"),
                )
            }
            Err((code, message)) => respond(
                code,
                Some("text/plain; charset=utf-8"),
                Bytes::from(message + "\n"),
            ),
        }
    }
}

/// Native families posing as the exporter's, its process's and Prometheus'
/// own series (the `impostors` fault).
const IMPOSTORS: &str = "\
# HELP secure_channel_exporter_web_auth_failures_total Impostor.
# TYPE secure_channel_exporter_web_auth_failures_total counter
secure_channel_exporter_web_auth_failures_total 999
# HELP secure_channel_exporter_something_new Impostor in the exporter's namespace.
# TYPE secure_channel_exporter_something_new gauge
secure_channel_exporter_something_new 1
# HELP process_cpu_seconds_total Impostor.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12345
# HELP up Impostor: would overwrite the target's up.
# TYPE up gauge
up 0
# HELP scrape_duration_seconds Impostor.
# TYPE scrape_duration_seconds gauge
scrape_duration_seconds 99
# HELP secure_channel_custom_total A family of the pool's own, passed through.
# TYPE secure_channel_custom_total counter
secure_channel_custom_total{endpoint=\"relay.example.net:443\"} 7
";

const MISSING_TOKEN: &str = "Unauthorized: Missing X-Auth-Token header";
const INVALID_TOKEN: &str = "Unauthorized: Invalid token";
const INVALID_TOKEN_FORMAT: &str = "Unauthorized: Invalid token format";

/// The pool's 401 reasons, in its words; `None` when the token is right.
fn token_refusal(given: Option<&HeaderValue>, token: &str) -> Option<&'static str> {
    match given.map(HeaderValue::to_str) {
        None => Some(MISSING_TOKEN),
        Some(Err(_)) => Some(INVALID_TOKEN_FORMAT),
        Some(Ok(t)) if t == token => None,
        Some(Ok(_)) => Some(INVALID_TOKEN),
    }
}

fn respond(code: StatusCode, content_type: Option<&'static str>, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = code;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

fn html(code: StatusCode, title: &str) -> Response<Body> {
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1><hr><p>nginx</p></body></html>\n"
    );
    respond(code, Some("text/html"), Bytes::from(page))
}

fn malformed(doc: Document) -> Bytes {
    static GARBAGE: OnceLock<Bytes> = OnceLock::new();
    match doc {
        Document::Status => Bytes::from_static(
            br#"{"endpoint":"relay.example.net:443","active_connections":"two",,"connections":[{"#,
        ),
        Document::Health => Bytes::from_static(br#"{"status":healthy}"#),
        Document::Metrics => GARBAGE
            .get_or_init(|| {
                Bytes::from_static(
                    b"secure_channel_active_connections{endpoint=\"relay\" 2 3 4\n\x00\x01garbage{{{\n= 12\n",
                )
            })
            .clone(),
    }
}

/// Runs a simulated pool on `listener` until `shutdown` resolves, moving
/// its numbers every `tick` (unless it is steady).
pub async fn serve(
    listener: TcpListener,
    handle: SimHandle,
    tick: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_with(
        listener,
        handle,
        tick,
        shutdown,
        crate::http::ServeOptions::default(),
    )
    .await;
}

/// [`serve`] with listener options, e.g. TLS from a web-config file (so
/// tests can stand up an https pool that requires client certificates).
pub async fn serve_with(
    listener: TcpListener,
    handle: SimHandle,
    tick: Duration,
    shutdown: impl std::future::Future<Output = ()>,
    options: crate::http::ServeOptions,
) {
    let steady = handle.with_pool(|p| p.config.steady);
    let ticker = (!steady).then(|| {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                handle.with_pool(|p| p.advance_to(now_unix()));
            }
        })
    });
    let handler = move |req: Request<Incoming>| handle.clone().handle(req);
    crate::http::serve_with(listener, handler, shutdown, options).await;
    if let Some(t) = ticker {
        t.abort();
    }
}
