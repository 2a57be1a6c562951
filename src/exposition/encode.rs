//! Encoders for the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
//!
//! Written here rather than taken from prometheus-client because the exporter
//! re-emits arbitrary parsed families (not only registered ones), must speak
//! both formats, and prometheus-client's OpenMetrics encoder leaves HELP text
//! unescaped, which lets a hostile HELP line break the exposition.

use std::fmt::Write;

use super::{MetricFamily, MetricType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PrometheusText,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes families in order; call [`Encoder::finish`] for the final text.
pub struct Encoder {
    format: Format,
    out: String,
}

impl Encoder {
    pub fn new(format: Format, capacity: usize) -> Self {
        Self {
            format,
            out: String::with_capacity(capacity),
        }
    }

    pub fn families<'a>(&mut self, families: impl IntoIterator<Item = &'a MetricFamily>) {
        for family in families {
            self.family(family);
        }
    }

    pub fn family(&mut self, family: &MetricFamily) {
        if family.samples.is_empty() {
            return;
        }
        let (name, type_word) = match self.format {
            Format::PrometheusText => text_metadata(family),
            Format::OpenMetrics => openmetrics_metadata(family),
        };
        self.write_header(name, &family.help, type_word);
        for sample in &family.samples {
            let out = &mut self.out;
            out.push_str(&sample.name);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (label, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(label);
                    out.push_str("=\"");
                    escape_into(out, value, true);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(out, sample.value);
            if let Some(ts) = sample.timestamp_ms {
                self.write_timestamp(ts);
            }
            self.out.push('\n');
        }
    }

    /// HELP and TYPE of a family whose samples are all named like the
    /// family itself; the caller then writes the sample lines with
    /// [`Encoder::buffer`]. Lets a caller stream thousands of series
    /// without building a [`MetricFamily`] for them first; the text is the
    /// same as [`Encoder::family`] writes for such a family.
    pub fn header(&mut self, name: &str, help: &str, kind: MetricType) {
        let (name, type_word) = match self.format {
            Format::PrometheusText => (name, type_word(kind)),
            Format::OpenMetrics => match kind {
                // Samples named like the family fit an OpenMetrics counter
                // only when that name ends in `_total`.
                MetricType::Counter => match name.strip_suffix("_total") {
                    Some(base) => (base, "counter"),
                    None => (name, "unknown"),
                },
                MetricType::Untyped => (name, "unknown"),
                other => (name, type_word(other)),
            },
        };
        self.write_header(name, help, type_word);
    }

    /// The text written so far, to append sample lines after [`Encoder::header`].
    pub fn buffer(&mut self) -> &mut String {
        &mut self.out
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn write_header(&mut self, name: &str, help: &str, type_word: &str) {
        let out = &mut self.out;
        if !help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_into(out, help, self.format == Format::OpenMetrics);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(type_word);
        out.push('\n');
    }

    fn write_timestamp(&mut self, ts: i64) {
        let out = &mut self.out;
        match self.format {
            Format::PrometheusText => {
                out.push(' ');
                write_int(out, ts);
            }
            Format::OpenMetrics => {
                let sign = if ts < 0 { "-" } else { "" };
                let abs = ts.unsigned_abs();
                let _ = write!(out, " {sign}{}.{:03}", abs / 1000, abs % 1000);
            }
        }
    }

    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// Encodes one list of families as a complete exposition.
pub fn encode(families: &[MetricFamily], format: Format) -> String {
    let mut encoder = Encoder::new(format, families.len() * 128);
    encoder.families(families);
    encoder.finish()
}

fn type_word(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped => "untyped",
    }
}

fn text_metadata(family: &MetricFamily) -> (&str, &'static str) {
    (&family.name, type_word(family.kind))
}

/// OpenMetrics names a counter family without `_total` and requires every
/// counter sample to carry it; a counter that does not fit is re-typed
/// `unknown` rather than producing text Prometheus would refuse.
fn openmetrics_metadata(family: &MetricFamily) -> (&str, &'static str) {
    match family.kind {
        MetricType::Counter => {
            let base = family.name.strip_suffix("_total").unwrap_or(&family.name);
            let fits = family.samples.iter().all(|s| {
                s.name
                    .strip_prefix(base)
                    .is_some_and(|suffix| suffix == "_total" || suffix == "_created")
            });
            if fits {
                (base, "counter")
            } else {
                (&family.name, "unknown")
            }
        }
        MetricType::Gauge => (&family.name, "gauge"),
        MetricType::Histogram => (&family.name, "histogram"),
        MetricType::Summary => (&family.name, "summary"),
        MetricType::Untyped => (&family.name, "unknown"),
    }
}

/// Escapes backslash and newline, and the double quote when `quote` is set
/// (label values in both formats, HELP text in OpenMetrics).
pub fn escape_into(out: &mut String, s: &str, quote: bool) {
    let needs = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !s.bytes().any(needs) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes a sample value: integers without a fraction, other numbers in
/// their shortest round-tripping form.
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        write_int(out, v as i64);
    } else {
        // Debug is the shortest representation that round-trips, and uses
        // an exponent for very large or small magnitudes.
        let _ = write!(out, "{v:?}");
    }
}

/// Decimal digits of an integer. Most sample values are integers (counters,
/// 0/1 gauges); `fmt`'s machinery costs several times this per value, which
/// shows at 40,000 series per scrape.
pub fn write_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{parse, Sample};
    use std::borrow::Cow;

    fn gauge(help: &str, label_value: &str) -> MetricFamily {
        MetricFamily::new("g", help, MetricType::Gauge)
            .with_sample(vec![(Cow::Borrowed("l"), label_value.into())], 1.5)
    }

    #[test]
    fn escapes_help_per_format() {
        let fam = gauge("a \"quoted\" \\ back\nslash", "v");
        let text = encode(std::slice::from_ref(&fam), Format::PrometheusText);
        assert!(text.contains("# HELP g a \"quoted\" \\\\ back\\nslash\n"));
        let om = encode(&[fam], Format::OpenMetrics);
        assert!(om.contains("# HELP g a \\\"quoted\\\" \\\\ back\\nslash\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn escapes_label_values_and_round_trips() {
        let hostile = "q\"b\\n\nü}{,=";
        let fam = gauge("h", hostile);
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = encode(std::slice::from_ref(&fam), format);
            assert!(text.contains(r#"g{l="q\"b\\n\nü}{,="} 1.5"#), "{text}");
            let back = parse(&text);
            assert_eq!(back.skipped_lines, 0);
            assert_eq!(back.families[0].samples[0].labels[0].1, hostile);
        }
    }

    #[test]
    fn counters_follow_each_format() {
        let fam = MetricFamily::new("c_total", "h", MetricType::Counter).with_sample(vec![], 3.0);
        assert!(encode(std::slice::from_ref(&fam), Format::PrometheusText)
            .contains("# TYPE c_total counter\nc_total 3\n"));
        assert!(encode(std::slice::from_ref(&fam), Format::OpenMetrics)
            .contains("# TYPE c counter\nc_total 3\n"));
        let odd = MetricFamily::new("c", "h", MetricType::Counter).with_sample(vec![], 3.0);
        assert!(encode(&[odd], Format::OpenMetrics).contains("# TYPE c unknown\nc 3\n"));
    }

    #[test]
    fn values_and_timestamps() {
        let mut fam = MetricFamily::new("v", "", MetricType::Untyped);
        for (value, ts) in [
            (f64::INFINITY, None),
            (f64::NEG_INFINITY, None),
            (f64::NAN, None),
            (0.25, Some(1_500)),
            (1e-9, Some(-1_500)),
            (1e300, None),
        ] {
            fam.samples.push(Sample {
                name: "v".into(),
                labels: vec![],
                value,
                timestamp_ms: ts,
            });
        }
        let text = encode(std::slice::from_ref(&fam), Format::PrometheusText);
        assert_eq!(
            text,
            "# TYPE v untyped\nv +Inf\nv -Inf\nv NaN\nv 0.25 1500\nv 1e-9 -1500\nv 1e300\n"
        );
        let om = encode(&[fam], Format::OpenMetrics);
        assert!(om.contains("v 0.25 1.500\nv 1e-9 -1.500\n"), "{om}");
    }

    #[test]
    fn empty_families_are_left_out() {
        let fam = MetricFamily::new("e", "h", MetricType::Gauge);
        assert_eq!(encode(&[fam], Format::PrometheusText), "");
    }
}
