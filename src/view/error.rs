//! The API's errors: one type, one JSON body
//! (`{"error":{"code":"…","message":"…"}}`), one status per kind.

use std::time::Duration;

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use secure_channel_client::ErrorKind;

use crate::http::{json_error, Body};
use crate::pool::{PoolFailure, Unavailable};

/// What the API answers instead of a view.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A query parameter that cannot be used; names the parameter.
    #[error("invalid query parameter {param:?}: {reason}")]
    BadQuery { param: String, reason: String },
    /// No listed connection has this id.
    #[error("no listed connection has id {id:?} (the published pool lists only idle connections: a checked-out one is never listed again)")]
    ConnectionNotFound { id: String },
    /// A path under `/api/` that does not exist.
    #[error("no API path {path:?}; the paths are listed in /api/v1/openapi.json")]
    PathNotFound { path: String },
    /// The client's token bucket is empty.
    #[error("too many requests from this client: retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    /// The pool did not answer within the deadline.
    #[error("the pool did not answer in time: {detail}")]
    PoolTimeout { detail: String },
    /// The pool could not be reached.
    #[error("the pool cannot be reached: {detail}")]
    PoolUnreachable { detail: String },
    /// The pool answered, but not with the document (HTTP error, refused
    /// token, garbage, too large).
    #[error("the pool's answer cannot be used: {detail}")]
    PoolBadAnswer { detail: String },
}

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> Self {
        match e {
            Unavailable::Failed(failure) => Self::from_pool(&failure),
            Unavailable::NotYet => Self::PoolUnreachable {
                detail: e.to_string(),
            },
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl ApiError {
    pub fn bad_query(param: &str, reason: impl Into<String>) -> Self {
        Self::BadQuery {
            param: param.to_owned(),
            reason: reason.into(),
        }
    }

    /// The API error for a failed fetch of a pool document (its message
    /// already free of every secret the exporter knows).
    pub fn from_pool(failure: &PoolFailure) -> Self {
        let detail = failure.message.to_string();
        match failure.kind {
            ErrorKind::Timeout => Self::PoolTimeout { detail },
            ErrorKind::Connect | ErrorKind::CircuitOpen => Self::PoolUnreachable { detail },
            _ => Self::PoolBadAnswer { detail },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadQuery { .. } => StatusCode::BAD_REQUEST,
            Self::ConnectionNotFound { .. } | Self::PathNotFound { .. } => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PoolTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::PoolUnreachable { .. } | Self::PoolBadAnswer { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadQuery { .. } => "bad_query",
            Self::ConnectionNotFound { .. } => "connection_not_found",
            Self::PathNotFound { .. } => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::PoolTimeout { .. } => "pool_timeout",
            Self::PoolUnreachable { .. } => "pool_unreachable",
            Self::PoolBadAnswer { .. } => "pool_bad_answer",
        }
    }

    pub fn response(&self) -> Response<Body> {
        let mut resp = json_error(self.status(), self.code(), &self.to_string());
        if let Self::RateLimited { retry_after } = self {
            resp.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(*retry_after)),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_codes_and_retry_after() {
        let e = ApiError::bad_query("limit", "expected a whole number from 0 to 1000");
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("\"limit\""), "{e}");
        let e = ApiError::RateLimited {
            retry_after: Duration::from_millis(1200),
        };
        let resp = e.response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[RETRY_AFTER], "2");
        let failure = |kind, message: &str| PoolFailure {
            kind,
            message: message.into(),
            at: std::time::SystemTime::now(),
        };
        let timeout = failure(ErrorKind::Timeout, "http://p/healthz did not answer");
        assert_eq!(ApiError::from_pool(&timeout).status(), 504);
        let status = failure(ErrorKind::Status, "http://p/healthz answered HTTP 500");
        assert_eq!(ApiError::from_pool(&status).code(), "pool_bad_answer");
    }
}
