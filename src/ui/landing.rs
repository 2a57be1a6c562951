//! The landing page at `/`: name, version, the pool, links.

use hyper::{Response, StatusCode};

use crate::http::{respond, Body};

pub fn page(telemetry_path: &str, pool_url: &str) -> Response<Body> {
    let path = html_escape(telemetry_path);
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>SecureChannelPool exporter</title></head>\n\
         <body><h1>SecureChannelPool exporter</h1>\n\
         <p>Version {version} (revision {revision})</p>\n\
         <p>Pool: <code>{pool}</code></p>\n\
         <ul><li><a href=\"{path}\">Metrics</a> ({path})</li>\n\
         <li><a href=\"/health\">Liveness</a> (/health)</li>\n\
         <li><a href=\"/ready\">Readiness</a> (/ready)</li>\n\
         <li><a href=\"/status\">Live status page</a> (/status)</li>\n\
         <li><a href=\"/api/v1/openapi.json\">REST API</a> (OpenAPI document; /api/v1/secure-channel/…)</li></ul>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        revision = env!("BUILD_REVISION"),
        pool = html_escape(pool_url),
    );
    let mut resp = respond(StatusCode::OK, "text/html; charset=utf-8", html);
    // No script, no style: nothing may run or load.
    super::protect(
        &mut resp,
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    resp
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
