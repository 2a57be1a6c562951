//! CORS for the API (`--api.cors-allowed-origins`): exact origins, or `*`
//! alone (then without credentials, as the Fetch standard requires).
//! Off by default: browsers then keep other origins out.

use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use hyper::{Response, StatusCode};

use crate::http::{json_error, Body};

pub const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";
/// Request headers a cross-origin caller may send: basic auth and content
/// negotiation.
pub const ALLOWED_HEADERS: &str = "Authorization, Accept, Content-Type";
/// How long a browser may reuse a preflight answer, in seconds.
const MAX_AGE: &str = "600";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*`: any origin, never with credentials.
    Any,
    /// These exact origins (`scheme://host[:port]`), with credentials.
    Origins(Vec<String>),
}

impl Cors {
    /// Parses the flag's comma-separated list; `None` when it is empty.
    pub fn parse(list: &str) -> Result<Option<Self>, String> {
        let items: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(None);
        }
        if items.contains(&"*") {
            if items.len() > 1 {
                return Err("* allows every origin and cannot be combined with others".into());
            }
            return Ok(Some(Self::Any));
        }
        let mut origins = Vec::with_capacity(items.len());
        for item in items {
            let url = reqwest::Url::parse(item).map_err(|e| {
                format!("{item:?} is not an origin like https://app.example.com: {e}")
            })?;
            let origin = url.origin().ascii_serialization();
            if !matches!(url.scheme(), "http" | "https")
                || origin != item.trim_end_matches('/')
                || url.path() != "/"
            {
                return Err(format!(
                    "{item:?} is not an origin (scheme://host[:port], no path): did you mean {origin:?}?"
                ));
            }
            origins.push(origin);
        }
        Ok(Some(Self::Origins(origins)))
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin`.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Self::Any => Some(HeaderValue::from_static("*")),
            Self::Origins(list) => {
                let origin = origin?;
                let text = origin.to_str().ok()?;
                list.iter().any(|o| o == text).then(|| origin.clone())
            }
        }
    }

    /// Adds the CORS headers to an API answer for a request with
    /// `request_headers`.
    pub fn decorate(&self, request_headers: &HeaderMap, resp: &mut Response<Body>) {
        let headers = resp.headers_mut();
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(allow) = self.allow(request_headers.get(ORIGIN)) {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Retry-After, Age"),
            );
            if matches!(self, Self::Origins(_)) {
                headers.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }

    /// The answer to a preflight `OPTIONS`: 204 with the allowed methods
    /// and headers for an allowed origin, 403 otherwise.
    pub fn preflight(&self, request_headers: &HeaderMap) -> Response<Body> {
        let mut resp = if self.allow(request_headers.get(ORIGIN)).is_some() {
            let mut resp = Response::new(Body::default());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            let h = resp.headers_mut();
            h.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            h.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
            resp
        } else {
            json_error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin is not in --api.cors-allowed-origins",
            )
        };
        self.decorate(request_headers, &mut resp);
        resp.headers_mut().append(
            VARY,
            HeaderValue::from_static(
                "Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn parses_origins_and_refuses_the_rest() {
        assert_eq!(Cors::parse(" , ").unwrap(), None);
        assert_eq!(Cors::parse("*").unwrap(), Some(Cors::Any));
        assert_eq!(
            Cors::parse("https://a.example, http://b.example:8080/").unwrap(),
            Some(Cors::Origins(vec![
                "https://a.example".into(),
                "http://b.example:8080".into()
            ]))
        );
        for bad in [
            "*,https://a.example",
            "https://a.example/path",
            "a.example",
            "ftp://a.example",
        ] {
            assert!(Cors::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_origins_get_credentials_star_does_not() {
        let cors = Cors::parse("https://a.example").unwrap().unwrap();
        let mut resp = Response::new(Body::default());
        cors.decorate(&headers("https://a.example"), &mut resp);
        assert_eq!(
            resp.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
        assert_eq!(resp.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(resp.headers()[VARY], "Origin");
        let mut resp = Response::new(Body::default());
        cors.decorate(&headers("https://evil.example"), &mut resp);
        assert!(resp.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(
            cors.preflight(&headers("https://evil.example")).status(),
            403
        );

        let any = Cors::Any;
        let pre = any.preflight(&headers("https://x.example"));
        assert_eq!(pre.status(), 204);
        assert_eq!(pre.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(pre
            .headers()
            .get(ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none());
        assert_eq!(pre.headers()[ACCESS_CONTROL_ALLOW_METHODS], ALLOWED_METHODS);
    }
}
