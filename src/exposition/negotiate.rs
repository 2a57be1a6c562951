//! Picks the exposition format from a scrape's `Accept` header, and states
//! it (with its name-escaping scheme) in the answer's `Content-Type`.

use super::Format;

/// What a scrape is answered in: the format, the text format's version
/// spelled as the client asked for it, and the name-escaping scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    /// `text/plain; version=1.0.0` (Prometheus 3): the 0.0.4 text with
    /// UTF-8 names allowed. Every name the exporter writes is a legacy
    /// name, so the text is the same; only the Content-Type says 1.0.0.
    text_v1: bool,
    /// The escaping scheme to state: the one the client asked for when it
    /// is one Prometheus defines, `underscores` otherwise; `None` keeps the
    /// plain 0.0.4 Content-Type for clients that ask nothing of it.
    escaping: Option<Escaping>,
}

/// Prometheus' name-escaping schemes. The exporter's names are all valid
/// legacy names, which every scheme leaves as they are, so any of them
/// describes the answer truthfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escaping {
    AllowUtf8,
    Underscores,
    Dots,
    Values,
}

impl Escaping {
    fn from_param(value: &str) -> Option<Self> {
        Some(match value {
            "allow-utf-8" => Self::AllowUtf8,
            "underscores" => Self::Underscores,
            "dots" => Self::Dots,
            "values" => Self::Values,
            _ => return None,
        })
    }
}

impl Negotiated {
    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        use Escaping::*;
        match (self.format, self.text_v1, self.escaping) {
            (Format::PrometheusText, false, None) => self.format.content_type(),
            (Format::PrometheusText, false, Some(e)) => match e {
                AllowUtf8 => "text/plain; version=0.0.4; charset=utf-8; escaping=allow-utf-8",
                Underscores => "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
                Dots => "text/plain; version=0.0.4; charset=utf-8; escaping=dots",
                Values => "text/plain; version=0.0.4; charset=utf-8; escaping=values",
            },
            (Format::PrometheusText, true, e) => match e.unwrap_or(Underscores) {
                AllowUtf8 => "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
                Underscores => "text/plain; version=1.0.0; charset=utf-8; escaping=underscores",
                Dots => "text/plain; version=1.0.0; charset=utf-8; escaping=dots",
                Values => "text/plain; version=1.0.0; charset=utf-8; escaping=values",
            },
            (Format::OpenMetrics, _, e) => match e.unwrap_or(Underscores) {
                AllowUtf8 => {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
                }
                Underscores => {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
                }
                Dots => "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=dots",
                Values => {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=values"
                }
            },
        }
    }
}

/// OpenMetrics when the client prefers it (by q-value) over the text format,
/// the Prometheus text format otherwise, as Prometheus servers expect.
pub fn negotiate(accept: Option<&str>) -> Format {
    negotiate_answer(accept).format
}

/// [`negotiate`], with what the answer's Content-Type must state: the text
/// version asked for (0.0.4 or 1.0.0) and the escaping scheme.
pub fn negotiate_answer(accept: Option<&str>) -> Negotiated {
    let plain = Negotiated {
        format: Format::PrometheusText,
        text_v1: false,
        escaping: None,
    };
    let Some(accept) = accept else {
        return plain;
    };
    // (q, answer) of the best acceptable range of each format.
    let mut best_openmetrics: Option<(f32, Negotiated)> = None;
    let mut best_text: Option<(f32, Negotiated)> = None;
    for entry in accept.split(',') {
        let mut params = entry.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0_f32;
        let mut version = None;
        let mut escaping = None;
        for param in params {
            if let Some((key, value)) = param.split_once('=') {
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse().unwrap_or(0.0),
                    "version" => version = Some(value.to_owned()),
                    "escaping" => escaping = Escaping::from_param(value),
                    _ => {}
                }
            }
        }
        if q <= 0.0 {
            continue;
        }
        let (slot, answer) = match media.as_str() {
            "application/openmetrics-text"
                if matches!(version.as_deref(), None | Some("1.0.0") | Some("0.0.1")) =>
            {
                (
                    &mut best_openmetrics,
                    Negotiated {
                        format: Format::OpenMetrics,
                        text_v1: false,
                        escaping,
                    },
                )
            }
            "text/plain" if matches!(version.as_deref(), None | Some("0.0.4") | Some("1.0.0")) => (
                &mut best_text,
                Negotiated {
                    format: Format::PrometheusText,
                    text_v1: version.as_deref() == Some("1.0.0"),
                    escaping,
                },
            ),
            "*/*" | "text/*" => (&mut best_text, plain),
            _ => continue,
        };
        if slot.is_none_or(|(best, _)| q > best) {
            *slot = Some((q, answer));
        }
    }
    match (best_openmetrics, best_text) {
        (Some((om, answer)), text) if text.is_none_or(|(t, _)| om >= t) => answer,
        (_, Some((_, answer))) => answer,
        _ => plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_default_accept_header_gets_openmetrics() {
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(accept)), Format::OpenMetrics);
    }

    #[test]
    fn text_when_asked_or_unspecified() {
        assert_eq!(negotiate(None), Format::PrometheusText);
        assert_eq!(negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(
            negotiate(Some("text/plain;version=0.0.4")),
            Format::PrometheusText
        );
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.9"
            )),
            Format::PrometheusText
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::PrometheusText
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::PrometheusText
        );
    }

    /// The Accept headers Prometheus 3 sends: its default protocol list,
    /// then each `scrape_protocols` value alone (as it weighs them).
    #[test]
    fn prometheus_3_accept_headers() {
        let ct = |accept: &str| negotiate_answer(Some(accept)).content_type();
        assert_eq!(
            ct("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"),
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
        );
        let cases = [
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.2,*/*;q=0.1",
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
            ),
            (
                "application/openmetrics-text;version=0.0.1;q=0.2,*/*;q=0.1",
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
            ),
            (
                "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.2,*/*;q=0.1",
                "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
            ),
            (
                "text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (
                "text/plain;version=0.0.4;escaping=underscores;q=0.2,*/*;q=0.1",
                "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
            ),
            // No protobuf here: the wildcard gets the text format.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.2,*/*;q=0.1",
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            // Prometheus 2.42's default.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
            ),
            // Text 1.0.0 preferred over OpenMetrics; an unknown scheme is
            // answered with the default one.
            (
                "application/openmetrics-text;version=1.0.0;q=0.3,text/plain;version=1.0.0;escaping=bogus;q=0.9",
                "text/plain; version=1.0.0; charset=utf-8; escaping=underscores",
            ),
            (
                "text/plain;version=2.0.0,application/openmetrics-text;version=1.0.0;escaping=dots;q=0.1",
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=dots",
            ),
        ];
        for (accept, expected) in cases {
            assert_eq!(ct(accept), expected, "{accept}");
        }
        assert_eq!(
            negotiate_answer(None).content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
