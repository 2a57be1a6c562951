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

/// For text that did not parse as a URL: hides anything that looks like
/// user info (`scheme://user:password@`).
pub fn redact_url_text(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..authority_end].rfind('@') {
        Some(at) => format!("{}redacted{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
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

    #[test]
    fn strips_user_info_from_unparsable_text() {
        assert_eq!(
            redact_url_text("http://bob:pa:ss@host:bad/x@y"),
            "http://redacted@host:bad/x@y"
        );
        assert_eq!(redact_url_text("not a url"), "not a url");
    }
}
