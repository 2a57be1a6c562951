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
///
/// A scrape's answer is written by one encoder from the first family to
/// the last, straight into the buffer that is sent: the translated pool,
/// the process metrics, the counters kept in prometheus-client registries
/// ([`Encoder::registry`]), the families of the web and API layers
/// ([`Families`]) and the pool's native families, then OpenMetrics'
/// `# EOF` once, from [`Encoder::finish`].
pub struct Encoder {
    format: Format,
    out: String,
}

/// Families that a feature adds to the scrape's answer, written by the
/// answer's encoder in its format.
pub trait Families {
    fn encode(&self, encoder: &mut Encoder);
    /// Changes whenever what [`encode`](Self::encode) writes may have: a
    /// rendering shared by several scrapes is reused only while it holds.
    fn version(&self) -> u64;
}

/// No families.
impl Families for () {
    fn encode(&self, _: &mut Encoder) {}
    fn version(&self) -> u64 {
        0
    }
}

impl Encoder {
    pub fn new(format: Format, capacity: usize) -> Self {
        Self::with_buffer(format, Vec::with_capacity(capacity))
    }

    /// An encoder writing into `buffer` (emptied first), e.g. one taken
    /// from [`super::buffer::answers`].
    pub fn with_buffer(format: Format, mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        Self {
            format,
            out: String::from_utf8(buffer).expect("an empty buffer is valid UTF-8"),
        }
    }

    /// Makes room for `additional` more bytes, so that the text is not
    /// copied into a larger buffer halfway.
    pub fn reserve(&mut self, additional: usize) {
        self.out.reserve(additional);
    }

    /// Every family of a prometheus-client `registry` (the counters that
    /// live across scrapes), by that crate's encoders for the two formats.
    pub fn registry(&mut self, registry: &prometheus_client::registry::Registry) {
        use prometheus_client::encoding::{prometheus_text, text};
        // Writing into a String cannot fail; `encode_registry` writes no
        // `# EOF` of its own.
        let _ = match self.format {
            Format::OpenMetrics => text::encode_registry(&mut self.out, registry),
            Format::PrometheusText => prometheus_text::encode(&mut self.out, registry),
        };
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
        if self.format == Format::OpenMetrics && !family.unit.is_empty() {
            let out = &mut self.out;
            out.push_str("# UNIT ");
            out.push_str(name);
            out.push(' ');
            out.push_str(&family.unit);
            out.push('\n');
        }
        for sample in &family.samples {
            let out = &mut self.out;
            out.push_str(&sample.name);
            if !sample.labels.is_empty() {
                out.push('{');
                write_label_pairs(out, &sample.labels);
                out.push('}');
            }
            out.push(' ');
            write_value(out, sample.value);
            if let Some(ts) = sample.timestamp_ms {
                self.write_timestamp(ts);
            }
            // The text format has no exemplars.
            if let (Some(exemplar), Format::OpenMetrics) = (&sample.exemplar, self.format) {
                write_exemplar(&mut self.out, exemplar);
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

/// `name="value",…`, values escaped (a sample's or an exemplar's labels).
fn write_label_pairs<N: AsRef<str>>(out: &mut String, labels: &[(N, String)]) {
    for (i, (label, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label.as_ref());
        out.push_str("=\"");
        escape_into(out, value, true);
        out.push('"');
    }
}

/// ` # {labels} value [timestamp]`.
fn write_exemplar(out: &mut String, exemplar: &super::Exemplar) {
    out.push_str(" # {");
    write_label_pairs(out, &exemplar.labels);
    out.push_str("} ");
    write_value(out, exemplar.value);
    if let Some(ts) = exemplar.timestamp {
        out.push(' ');
        write_value(out, ts);
    }
}

/// The text format's TYPE word; the OpenMetrics-only types take the word
/// Prometheus' Python client writes for them.
fn type_word(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge | MetricType::StateSet | MetricType::Info => "gauge",
        MetricType::Histogram | MetricType::GaugeHistogram => "histogram",
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
        MetricType::GaugeHistogram => (&family.name, "gaugehistogram"),
        MetricType::Summary => (&family.name, "summary"),
        MetricType::StateSet => (&family.name, "stateset"),
        // An info family is named `x` for its samples `x_info`.
        MetricType::Info => match family.name.strip_suffix("_info") {
            Some(base) if family.samples.iter().all(|s| s.name == family.name) => (base, "info"),
            _ => (&family.name, "gauge"),
        },
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
    } else if v.abs() < 1e15 && (v as i64) as f64 == v {
        // The cast truncates in one instruction; `fract()` is a libm call.
        write_int(out, v as i64);
    } else if !write_short_decimal(out, v) {
        // Debug is the shortest representation that round-trips, and uses
        // an exponent for very large or small magnitudes.
        let _ = write!(out, "{v:?}");
    }
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
/// 2^53: below it every integer is an exact f64.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// Writes `v` exactly as `{v:?}` would when its shortest round-tripping
/// form is a plain decimal of at most 15 fractional digits that can be
/// proven unique cheaply; returns false (writing nothing) otherwise.
///
/// Most of our non-integer values are such decimals (a p95 of 45 ms is
/// 0.045, a timestamp has a few fractional digits), and the general
/// shortest-digits search behind `{v:?}` was the largest single cost of
/// encoding a big pool. For k = 1, 2, ... fractional digits: the decimal
/// m/10^k reads back as `v` exactly when `m as f64 / 10^k == v` (both
/// operands exact, so the quotient is the correctly rounded decimal, as a
/// parser rounds it). While 10^-k is wider than one ulp of `v`, at most one
/// k-digit decimal can read back as `v`, and it lies within one unit of
/// `v * 10^k`; so the first k with a hit gives the unique shortest form,
/// the digits `{v:?}` prints. Once 10^-k is no wider than an ulp, several
/// decimals may tie and we leave the choice to the standard library.
fn write_short_decimal(out: &mut String, v: f64) -> bool {
    let a = v.abs();
    // Debug switches to exponent notation below 1e-4; integers are handled
    // before and large values go to the standard library.
    if !(1e-4..EXACT_INTEGERS / 10.0).contains(&a) {
        return false;
    }
    let ulp = f64::from_bits(a.to_bits() + 1) - a;
    for (k, &scale) in POW10.iter().enumerate().skip(1) {
        if scale * ulp >= 1.0 {
            return false;
        }
        let t = a * scale;
        // Below 2^52, `t + 0.5` is exact and truncating it rounds to nearest
        // without a libm call.
        if t >= EXACT_INTEGERS / 2.0 {
            return false;
        }
        let n = ((t + 0.5) as u64) as f64;
        // A decimal that reads back as `v` is within half an ulp of it,
        // i.e. within `scale * ulp / 2` units of `t`; `t` itself is off by
        // at most half an ulp of `t`. Anything farther cannot match.
        let slack = scale * ulp / 2.0 + (f64::from_bits(t.to_bits() + 1) - t);
        if (t - n).abs() > slack {
            continue;
        }
        let mut found = None;
        for m in [n - 1.0, n, n + 1.0] {
            if m > 0.0 && m / scale == a {
                if found.is_some() {
                    return false;
                }
                found = Some(m as u64);
            }
        }
        let Some(m) = found else {
            continue;
        };
        let unit = 10u64.pow(k as u32);
        if v < 0.0 {
            out.push('-');
        }
        write_digits(out, m / unit, 0);
        out.push('.');
        write_digits(out, m % unit, k);
        return true;
    }
    false
}

/// "00" to "99", so that digits are produced two at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Decimal digits of an integer. Most sample values are integers (counters,
/// 0/1 gauges); `fmt`'s machinery costs several times this per value, which
/// shows at 40,000 series per scrape.
pub fn write_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    write_digits(out, v.unsigned_abs(), 0);
}

/// Writes `n` in decimal, left-padded with zeros to at least `width` digits.
fn write_digits(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[n as usize * 2..n as usize * 2 + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    at = at.min(buf.len() - width.min(buf.len()));
    push_ascii(out, &buf[at..]);
}

/// Appends bytes known to be ASCII digits without validating them again:
/// `from_utf8` on every number was a tenth of the encoding time.
fn push_ascii(out: &mut String, digits: &[u8]) {
    debug_assert!(digits.is_ascii());
    // SAFETY: callers pass only ASCII digits (the buffers above start as
    // b'0' and receive only digit pairs), and ASCII is valid UTF-8.
    unsafe { out.as_mut_vec().extend_from_slice(digits) }
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
                exemplar: None,
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

    /// `write_value` must print what `{v:?}` prints (or the integer).
    fn expected(v: f64) -> String {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v:?}")
        }
    }

    fn check(v: f64) {
        let mut out = String::new();
        write_value(&mut out, v);
        assert_eq!(out, expected(v), "{:e} ({:#x})", v, v.to_bits());
    }

    #[test]
    fn short_decimals_match_the_standard_library() {
        // xorshift64*: a fixed, dependency-free sequence.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for ms in 0..200_000u32 {
            // p95 in seconds from whole or fractional milliseconds.
            check(f64::from(ms) / 1000.0);
            check(f64::from(ms) / 10.0 / 1000.0);
        }
        for _ in 0..200_000 {
            let r = next();
            let secs = 1_000_000_000 + (r >> 34) % 1_500_000_000;
            let nanos = (r % 1_000_000_000) as u32;
            // Timestamps as the model builds them, at every precision.
            for scale in [1, 1_000, 1_000_000, 10_000_000, 100_000_000] {
                let n = nanos / scale * scale;
                check(secs as f64 + f64::from(n) / 1e9);
            }
            // Arbitrary doubles, short decimals of every length, negatives.
            let bits = f64::from_bits(next());
            if bits.is_finite() {
                check(bits);
            }
            let digits = (next() % 16) as i32;
            let decimal = (next() % 10u64.pow(digits as u32).max(1)) as f64
                / 10f64.powi((next() % 17) as i32);
            check(decimal);
            check(-decimal);
            check((next() >> 11) as f64 / (1u64 << 53) as f64);
        }
        // The fast path does take the common values.
        let mut out = String::new();
        for v in [0.045, 0.001, 1_795_639_963.514_952, 1_764_072_000.12, -2.5] {
            out.clear();
            assert!(write_short_decimal(&mut out, v), "{v}");
            assert_eq!(out, format!("{v:?}"));
        }
        assert!(!write_short_decimal(&mut out, 0.1 + 0.2));
        for v in [
            0.1 + 0.2,
            1e-4,
            0.99e-4,
            1.5e-4,
            0.000_123,
            123_456_789.123_456_7,
            9.007_199_254_740_99e14,
            900_719_925_474_099.1,
            1e15 + 0.5,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
        ] {
            check(v);
            check(-v);
        }
    }

    #[test]
    fn empty_families_are_left_out() {
        let fam = MetricFamily::new("e", "h", MetricType::Gauge);
        assert_eq!(encode(&[fam], Format::PrometheusText), "");
    }
}
