//! What a person sees in a browser.

pub mod landing;
pub mod status;

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Response;

use crate::http::Body;

/// The headers that keep a page from being framed, sniffed as another
/// type or made to run anything but its own code: `csp` is its
/// Content-Security-Policy (which also forbids framing with
/// `frame-ancestors`; `X-Frame-Options` says it to older browsers).
pub fn protect(resp: &mut Response<Body>, csp: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(hyper::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        hyper::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
}

/// The CSP source for an inline `<script>` or `<style>` whose text is
/// exactly `text`: `sha256-…`.
pub fn csp_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}
