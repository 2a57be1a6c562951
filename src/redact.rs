//! Keeps credentials out of logs, metrics and pages.

use reqwest::Url;

/// The URL as it may be shown: user info replaced, query dropped (it may
/// carry tokens).
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username("redacted");
        let _ = shown.set_password(None);
    }
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_user_info_and_query() {
        let url = Url::parse("https://alice:s3cret@pool:9090/x?token=abc").unwrap();
        let shown = redact_url(&url);
        assert_eq!(shown, "https://redacted@pool:9090/x");
        assert!(!shown.contains("s3cret") && !shown.contains("abc"));
    }
}
