//! The HTTP plumbing under the features: a route-free listener, a path
//! table, the gate every request passes (methods, bodies, basic auth,
//! configured headers) and the exporter-toolkit web-config file. It knows
//! no route of its own.

pub mod bind;
pub mod gate;
pub mod listener;
pub mod router;
pub mod web;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub use gate::Gate;
pub use listener::{serve, serve_with, shutdown_signal, PeerAddr, ServeOptions};
pub use router::{Params, RouteOptions, Router};

pub type Body = Full<Bytes>;

/// Counters of the listener's defences, exported on the telemetry path
/// (plain atomic counters; the scrape feature registers them).
#[derive(Debug, Default)]
pub struct WebStats {
    pub auth_failures: prometheus_client::metrics::counter::Counter,
    pub tls_handshake_failures: prometheus_client::metrics::counter::Counter,
}

/// A response with `body` and its content type.
pub fn respond(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A plain-text response.
pub fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(code, "text/plain; charset=utf-8", body)
}

/// The JSON error body of the REST API,
/// `{"error":{"code":"…","message":"…"}}`, with `status`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    respond(status, JSON, body.to_string() + "\n")
}

/// The content type of the REST API's answers.
pub const JSON: &str = "application/json; charset=utf-8";
