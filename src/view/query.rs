//! Query strings, parsed strictly: the one of
//! `/api/v1/secure-channel/connections`, and the empty one every other API
//! path takes. A typo, a repeated parameter or a number written any way but
//! plain digits is a 400 naming the parameter rather than a silently
//! ignored filter.

use super::error::ApiError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Longest query string read; longer ones are refused before parsing.
const MAX_QUERY_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Id,
    P95,
    Errors,
    Reconnects,
    LastActivity,
}

impl SortKey {
    pub const NAMES: [&'static str; 5] = ["id", "p95", "errors", "reconnects", "last_activity"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::P95 => "p95",
            Self::Errors => "errors",
            Self::Reconnects => "reconnects",
            Self::LastActivity => "last_activity",
        }
    }

    fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "id" => Self::Id,
            "p95" => Self::P95,
            "errors" => Self::Errors,
            "reconnects" => Self::Reconnects,
            "last_activity" => Self::LastActivity,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionsQuery {
    pub sort: SortKey,
    pub order: Order,
    pub limit: usize,
    pub offset: usize,
    pub healthy: Option<bool>,
}

impl Default for ConnectionsQuery {
    fn default() -> Self {
        Self {
            sort: SortKey::Id,
            order: Order::Asc,
            limit: DEFAULT_LIMIT,
            offset: 0,
            healthy: None,
        }
    }
}

/// A whole number written as plain ASCII digits: no sign (`+5`, `-1`), no
/// spaces, no exponent, at most 20 digits. `str::parse` alone accepts a
/// leading `+`, which the API does not document.
pub fn whole_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The query of a path that takes no parameters: any parameter is a
/// `bad_query` naming it (an empty query string, `?` alone, is fine).
pub fn no_parameters(query: Option<&str>) -> Result<(), ApiError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_query(
            "query",
            format!("longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    match form_urlencoded::parse(query.as_bytes()).next() {
        Some((name, _)) => Err(ApiError::bad_query(
            &name,
            "unknown parameter; this path takes no query parameters",
        )),
        None => Ok(()),
    }
}

impl ConnectionsQuery {
    /// Parses `query` (the URI's query string, if any).
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut out = Self::default();
        let Some(query) = query.filter(|q| !q.is_empty()) else {
            return Ok(out);
        };
        if query.len() > MAX_QUERY_BYTES {
            return Err(ApiError::bad_query(
                "query",
                format!("longer than {MAX_QUERY_BYTES} bytes"),
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if seen.iter().any(|s| *s == name) {
                return Err(ApiError::bad_query(&name, "given more than once"));
            }
            seen.push(name.clone().into_owned());
            match name.as_ref() {
                "sort" => {
                    out.sort = SortKey::parse(&value).ok_or_else(|| {
                        ApiError::bad_query(
                            "sort",
                            format!("{value:?} is not one of {}", SortKey::NAMES.join(", ")),
                        )
                    })?;
                }
                "order" => {
                    out.order = match value.as_ref() {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => {
                            return Err(ApiError::bad_query(
                                "order",
                                format!("{value:?} is not asc or desc"),
                            ))
                        }
                    };
                }
                "limit" => {
                    out.limit = whole_number(&value)
                        .filter(|n| *n <= MAX_LIMIT as u64)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            ApiError::bad_query(
                                "limit",
                                format!(
                                    "{value:?} is not a whole number from 0 to {MAX_LIMIT} (digits only)"
                                ),
                            )
                        })?;
                }
                "offset" => {
                    out.offset = whole_number(&value)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            ApiError::bad_query(
                                "offset",
                                format!("{value:?} is not a whole number from 0 (digits only)"),
                            )
                        })?;
                }
                "healthy" => {
                    out.healthy = Some(match value.as_ref() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ApiError::bad_query(
                                "healthy",
                                format!("{value:?} is not true or false"),
                            ))
                        }
                    });
                }
                other => {
                    return Err(ApiError::bad_query(
                        other,
                        "unknown parameter; use sort, order, limit, offset or healthy",
                    ))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(q: &str) -> String {
        match ConnectionsQuery::parse(Some(q)).unwrap_err() {
            ApiError::BadQuery { param, .. } => param,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(
            ConnectionsQuery::parse(None).unwrap(),
            ConnectionsQuery::default()
        );
        let q = ConnectionsQuery::parse(Some(
            "sort=last_activity&order=desc&limit=1000&offset=5&healthy=false",
        ))
        .unwrap();
        assert_eq!(q.sort, SortKey::LastActivity);
        assert_eq!(q.order, Order::Desc);
        assert_eq!((q.limit, q.offset, q.healthy), (1000, 5, Some(false)));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (q, param) in [
            ("sort=name", "sort"),
            ("order=up", "order"),
            ("limit=1001", "limit"),
            ("limit=-1", "limit"),
            ("limit=", "limit"),
            ("offset=x", "offset"),
            ("offset=99999999999999999999999", "offset"),
            ("healthy=yes", "healthy"),
            ("colour=red", "colour"),
            ("limit=1&limit=2", "limit"),
            ("limit=%2B5", "limit"),
            ("limit=+5", "limit"),
            ("offset=%2B1", "offset"),
            ("limit=5%20", "limit"),
            ("limit=1e2", "limit"),
        ] {
            assert_eq!(param_of(q), param, "{q}");
        }
        assert_eq!(param_of(&"a".repeat(3000)), "query");
        assert_eq!(whole_number("007"), Some(7));
        assert_eq!(whole_number("18446744073709551616"), None);
        // Percent-decoding garbage never panics.
        assert_eq!(param_of("sort=%FF%FE"), "sort");
    }
}
