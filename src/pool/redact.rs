//! Every secret the exporter knows about one pool (its token and the
//! password of `--pool.url`), kept out of whatever the pool sends that the
//! exporter shows again: documents served by the API, error messages in
//! answers, pages and the log. A pool that echoes the token it refused
//! would otherwise have it republished on unauthenticated routes.

use std::borrow::Cow;

use bytes::Bytes;
use reqwest::Url;
use secure_channel_client::Token;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    token: Option<Token>,
    /// The URL's password, as written and percent-decoded.
    url_secrets: Vec<String>,
}

impl Redactor {
    pub fn new(token: Token, base_url: &Url) -> Self {
        let mut url_secrets = Vec::new();
        if let Some(password) = base_url.password().filter(|p| !p.is_empty()) {
            url_secrets.push(password.to_owned());
            let decoded: String = form_urlencoded::parse(format!("p={password}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if !decoded.is_empty() && decoded != password {
                url_secrets.push(decoded);
            }
        }
        Self {
            token: token.is_some().then_some(token),
            url_secrets,
        }
    }

    /// `body` with every known secret replaced by `<redacted>`; the same
    /// buffer when it holds none (the usual case costs one search per
    /// secret, no copy).
    pub fn bytes(&self, body: Bytes) -> Bytes {
        match self.scrub(&body) {
            Cow::Borrowed(_) => body,
            Cow::Owned(clean) => Bytes::from(clean),
        }
    }

    /// `text` with every known secret replaced by `<redacted>`.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.scrub(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Replacing whole UTF-8 sequences with ASCII keeps it UTF-8.
            Cow::Owned(clean) => Cow::Owned(String::from_utf8_lossy(&clean).into_owned()),
        }
    }

    fn scrub<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = match &self.token {
            Some(token) => token.scrub(text),
            None => Cow::Borrowed(text),
        };
        for secret in &self.url_secrets {
            if let Cow::Owned(clean) = secure_channel_client::scrub_secret(&out, secret.as_bytes())
            {
                out = Cow::Owned(clean);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_url_password_are_removed() {
        let url = Url::parse("http://user:p%40ss@pool:9090/").unwrap();
        let r = Redactor::new(Token::value("tok123"), &url);
        assert_eq!(
            r.text("401: bad token tok123 for user:p@ss and p%40ss"),
            "401: bad token <redacted> for user:<redacted> and <redacted>"
        );
        let clean = Bytes::from_static(b"nothing secret");
        assert_eq!(r.bytes(clean.clone()).as_ptr(), clean.as_ptr(), "no copy");
        assert_eq!(
            &r.bytes(Bytes::from_static(b"{\"endpoint\":\"tok123\"}"))[..],
            b"{\"endpoint\":\"<redacted>\"}"
        );
        let none = Redactor::new(Token::none(), &Url::parse("http://pool/").unwrap());
        assert_eq!(none.text("tok123"), "tok123");
    }
}
