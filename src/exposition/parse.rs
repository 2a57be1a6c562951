//! A small, tolerant parser for the Prometheus text format 0.0.4.
//!
//! Hand-written on purpose: the pool's exposition is passed
//! through, so we need its families with HELP and TYPE intact, and one bad line
//! must cost that line only, never the scrape. Lines that cannot be read are
//! skipped and counted; histogram families that Prometheus would reject in
//! OpenMetrics (a series without a `+Inf` bucket) are dropped and counted.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{is_valid_label_name, is_valid_metric_name, Label, MetricFamily, MetricType, Sample};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedExposition {
    pub families: Vec<MetricFamily>,
    /// Lines that were neither a comment, metadata nor a readable sample.
    pub skipped_lines: usize,
    /// Families dropped because their samples are structurally invalid.
    pub invalid_families: usize,
    /// Samples (and families) not kept because [`ParseLimits::max_samples`]
    /// was reached.
    pub over_limit: usize,
    /// Label values and HELP texts cut to [`ParseLimits::max_value_len`].
    pub truncated_values: usize,
}

/// What one parse may keep, so that memory follows the limits and not the
/// size of the text (a 16 MiB exposition of short lines is ~580,000
/// samples, each a few hundred bytes once parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Samples kept; families without a sample count against it too.
    pub max_samples: usize,
    /// Bytes kept of a label value or HELP text (cut at a character
    /// boundary).
    pub max_value_len: usize,
}

impl ParseLimits {
    pub const NONE: ParseLimits = ParseLimits {
        max_samples: usize::MAX,
        max_value_len: usize::MAX,
    };
}

/// Cuts `s` to at most `max` bytes at a character boundary; whether it cut.
pub fn truncate_at_char(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

impl ParsedExposition {
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

pub fn parse(text: &str) -> ParsedExposition {
    parse_limited(text, ParseLimits::NONE)
}

/// [`parse`] keeping no more than `limits` allow; what is left out is
/// counted in [`ParsedExposition::over_limit`] and
/// [`ParsedExposition::truncated_values`].
pub fn parse_limited(text: &str, limits: ParseLimits) -> ParsedExposition {
    let mut parser = Parser {
        limits,
        out: ParsedExposition::default(),
        index: HashMap::new(),
        typed: Vec::new(),
        current: None,
        kept: 0,
    };
    for line in text.split('\n') {
        // A CRLF line keeps its '\r' here: sample and TYPE lines tolerate it
        // as trailing whitespace, and HELP text may legitimately hold one.
        let line = line.trim_start_matches([' ', '\t']);
        if line.trim_end_matches('\r').is_empty() {
            continue;
        }
        let ok = if let Some(comment) = line.strip_prefix('#') {
            parser.comment(comment)
        } else {
            parser.sample_line(line)
        };
        if !ok {
            parser.out.skipped_lines += 1;
        }
    }
    parser.finish()
}

struct Parser {
    limits: ParseLimits,
    /// Samples and sample-less families kept so far.
    kept: usize,
    out: ParsedExposition,
    index: HashMap<String, usize>,
    /// Families whose TYPE line has been seen (a second one is an error).
    typed: Vec<bool>,
    current: Option<usize>,
}

impl Parser {
    fn full(&self) -> bool {
        self.kept >= self.limits.max_samples
    }

    /// The family called `name`, created if there is room.
    fn family_index(&mut self, name: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        if self.full() {
            return None;
        }
        // A family counts against the limit until it has a sample, so that
        // metadata lines alone cannot grow memory without bound either.
        self.kept += 1;
        let i = self.out.families.len();
        self.out
            .families
            .push(MetricFamily::new(name, String::new(), MetricType::Untyped));
        self.typed.push(false);
        self.index.insert(name.to_owned(), i);
        Some(i)
    }

    fn comment(&mut self, rest: &str) -> bool {
        let rest = rest.trim_start_matches([' ', '\t']);
        let (keyword, rest) = split_token(rest);
        match keyword {
            "HELP" => {
                let (name, help) = split_token(rest);
                if !is_valid_metric_name(name) {
                    return false;
                }
                let Some(i) = self.family_index(name) else {
                    self.out.over_limit += 1;
                    return true;
                };
                let mut help = unescape_help(help);
                if truncate_at_char(&mut help, self.limits.max_value_len) {
                    self.out.truncated_values += 1;
                }
                self.out.families[i].help = help;
                self.current = Some(i);
                true
            }
            "TYPE" => {
                let (name, rest) = split_token(rest);
                let (word, trailing) = split_token(rest.trim_end_matches('\r'));
                let Some(kind) = MetricType::from_type_word(word) else {
                    return false;
                };
                if !is_valid_metric_name(name) || !trailing.trim().is_empty() {
                    return false;
                }
                let Some(i) = self.family_index(name) else {
                    self.out.over_limit += 1;
                    return true;
                };
                if self.typed[i] || !self.out.families[i].samples.is_empty() {
                    return false;
                }
                self.typed[i] = true;
                self.out.families[i].kind = kind;
                self.current = Some(i);
                true
            }
            // Any other comment is free text.
            _ => true,
        }
    }

    fn sample_line(&mut self, line: &str) -> bool {
        // Past the limit a line costs a count only (it is not even parsed),
        // unless it is the first sample of the family just declared, which
        // already holds its slot.
        let declared_empty = self
            .current
            .is_some_and(|i| self.out.families[i].samples.is_empty());
        if self.full() && !declared_empty {
            self.out.over_limit += 1;
            return true;
        }
        let Some(mut sample) = parse_sample(line) else {
            return false;
        };
        for (_, value) in &mut sample.labels {
            if truncate_at_char(value, self.limits.max_value_len) {
                self.out.truncated_values += 1;
            }
        }
        let Some(i) = self.family_for_sample(&sample.name) else {
            self.out.over_limit += 1;
            return true;
        };
        // The family's own slot (taken while it had no sample) becomes
        // this sample's.
        if !self.out.families[i].samples.is_empty() {
            if self.full() {
                self.out.over_limit += 1;
                return true;
            }
            self.kept += 1;
        }
        self.out.families[i].samples.push(sample);
        self.current = Some(i);
        true
    }

    /// Finds the family a sample belongs to, as Prometheus does: the current
    /// family when the name fits its type, else a declared family it fits,
    /// else a new untyped family of its own.
    fn family_for_sample(&mut self, sample_name: &str) -> Option<usize> {
        if let Some(i) = self.current {
            if belongs_to(&self.out.families[i], sample_name) {
                return Some(i);
            }
        }
        let candidates = std::iter::once(sample_name).chain(
            ["_bucket", "_sum", "_count", "_total", "_created"]
                .iter()
                .filter_map(|suffix| sample_name.strip_suffix(suffix)),
        );
        for base in candidates {
            if let Some(&i) = self.index.get(base) {
                if belongs_to(&self.out.families[i], sample_name) {
                    return Some(i);
                }
            }
        }
        self.family_index(sample_name)
    }

    fn finish(mut self) -> ParsedExposition {
        let before = self.out.families.len();
        self.out
            .families
            .retain(|f| f.kind != MetricType::Histogram || histogram_is_complete(f));
        self.out.invalid_families = before - self.out.families.len();
        self.out
    }
}

fn belongs_to(family: &MetricFamily, sample_name: &str) -> bool {
    sample_name
        .strip_prefix(family.name.as_str())
        .is_some_and(|suffix| family.kind.sample_suffixes().contains(&suffix))
}

/// Every histogram series needs a `+Inf` bucket, and every bucket an `le`.
fn histogram_is_complete(family: &MetricFamily) -> bool {
    let bucket_name = format!("{}_bucket", family.name);
    let mut series: HashMap<Vec<&Label>, bool> = HashMap::new();
    for sample in &family.samples {
        let key: Vec<&Label> = sample.labels.iter().filter(|(n, _)| n != "le").collect();
        let has_inf = series.entry(key).or_insert(false);
        if sample.name == bucket_name {
            match sample.labels.iter().find(|(n, _)| n == "le") {
                Some((_, le)) => {
                    if le.parse::<f64>().is_ok_and(|v| v == f64::INFINITY) {
                        *has_inf = true;
                    }
                }
                None => return false,
            }
        }
    }
    series.values().all(|&has_inf| has_inf)
}

/// Splits off the first whitespace-separated token; the rest keeps its
/// inner spacing but loses the separating blanks.
fn split_token(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(at) => (&s[..at], s[at..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn unescape_help(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_valid_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    let timestamp_ms = match fields.next() {
        Some(ts) => Some(ts.parse::<i64>().ok()?),
        None => None,
    };
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<Label>) -> Option<&'a str> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some(rest);
        }
        let eq = s.find('=')?;
        let label_name = s[..eq].trim_end_matches([' ', '\t']);
        if !is_valid_label_name(label_name) || labels.iter().any(|(n, _)| n == label_name) {
            return None;
        }
        s = s[eq + 1..]
            .trim_start_matches([' ', '\t'])
            .strip_prefix('"')?;
        let (value, rest) = parse_quoted(s)?;
        labels.push((Cow::Owned(label_name.to_owned()), value));
        s = rest.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// Reads an escaped label value up to its closing quote.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut out = String::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                out.push_str(&s[start..i]);
                return Some((out, &s[i + 1..]));
            }
            b'\\' => {
                out.push_str(&s[start..i]);
                match bytes.get(i + 1)? {
                    b'n' => out.push('\n'),
                    b'\\' => out.push('\\'),
                    b'"' => out.push('"'),
                    _ => return None,
                }
                i += 2;
                start = i;
            }
            _ => i += 1,
        }
    }
    None
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn limits_bound_what_is_kept() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!(
                "# HELP f{i} {}\n# TYPE f{i} gauge\nf{i}{{v=\"{}\"}} 1\n",
                "h".repeat(100),
                "x".repeat(100)
            ));
        }
        let limits = ParseLimits {
            max_samples: 10,
            max_value_len: 16,
        };
        let p = parse_limited(&text, limits);
        assert_eq!(p.sample_count(), 10);
        assert_eq!(p.families.len(), 10);
        assert!(p.families.iter().all(|f| f.help.len() == 16));
        assert!(p.families[0].samples[0].labels[0].1.len() == 16);
        assert_eq!(p.truncated_values, 20);
        // 990 families: HELP, TYPE and sample each counted.
        assert_eq!(p.over_limit, 990 * 3);
        assert_eq!(p.skipped_lines, 0);
        // Metadata alone cannot grow it either.
        let meta: String = (0..1000).map(|i| format!("# TYPE m{i} gauge\n")).collect();
        assert_eq!(parse_limited(&meta, limits).families.len(), 10);
    }

    use super::*;

    fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
        s.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn reads_the_pools_native_exposition() {
        let text = include_str!("../../tests/fixtures/native_metrics.txt");
        let parsed = parse(text);
        assert_eq!(parsed.skipped_lines, 0);
        assert_eq!(parsed.invalid_families, 0);
        let names: Vec<_> = parsed.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "secure_channel_active_connections",
                "secure_channel_reconnects_total",
                "secure_channel_errors_total",
                "secure_channel_latency_ms",
            ]
        );
        let hist = &parsed.families[3];
        assert_eq!(hist.kind, MetricType::Histogram);
        assert_eq!(hist.samples.len(), 13);
        let inf = hist
            .samples
            .iter()
            .find(|s| label(s, "le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 1000.0);
        assert_eq!(label(inf, "endpoint"), Some("relay.example.net:443"));
        assert_eq!(parsed.families[1].kind, MetricType::Counter);
        assert_eq!(
            parsed.families[1].help,
            "Total reconnects performed by the pool"
        );
    }

    #[test]
    fn unescapes_labels_and_help() {
        let text =
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\",b=\"ü\"} 1\n";
        let parsed = parse(text);
        let fam = &parsed.families[0];
        assert_eq!(fam.help, "a \\ b\nc \"q\"");
        assert_eq!(label(&fam.samples[0], "a"), Some("x\"y\\z\nw"));
        assert_eq!(label(&fam.samples[0], "b"), Some("ü"));
    }

    #[test]
    fn special_values_timestamps_and_untyped() {
        let text = "a +Inf\nb -Inf 123\nc NaN\nd{x=\"1\",} 1.5e3 -5\n";
        let parsed = parse(text);
        assert_eq!(parsed.skipped_lines, 0);
        let v: Vec<_> = parsed.families.iter().map(|f| &f.samples[0]).collect();
        assert_eq!(v[0].value, f64::INFINITY);
        assert_eq!(v[1].value, f64::NEG_INFINITY);
        assert_eq!(v[1].timestamp_ms, Some(123));
        assert!(v[2].value.is_nan());
        assert_eq!(v[3].value, 1500.0);
        assert_eq!(v[3].timestamp_ms, Some(-5));
        assert!(parsed
            .families
            .iter()
            .all(|f| f.kind == MetricType::Untyped));
    }

    #[test]
    fn summaries_keep_their_parts_together() {
        let text = "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc{quantile=\"0.9\"} 2\nrpc_sum 10\nrpc_count 4\n";
        let parsed = parse(text);
        assert_eq!(parsed.families.len(), 1);
        assert_eq!(parsed.families[0].samples.len(), 4);
    }

    #[test]
    fn bad_lines_are_skipped_and_counted() {
        let text = "<html>\nok 1\nbad{ 1\nbad{a=\"1\" 2\nnovalue\nx 1 2 3\nx{a=\"1\",a=\"2\"} 1\n# TYPE t bogus\ny 12abc\nz 1\n";
        let parsed = parse(text);
        assert_eq!(parsed.skipped_lines, 8);
        assert_eq!(parsed.sample_count(), 2);
    }

    #[test]
    fn second_type_line_is_skipped() {
        let parsed = parse("# TYPE a gauge\na 1\n# TYPE a counter\n");
        assert_eq!(parsed.skipped_lines, 1);
        assert_eq!(parsed.families[0].kind, MetricType::Gauge);
    }

    #[test]
    fn histogram_without_inf_bucket_is_dropped() {
        let text =
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n# TYPE g gauge\ng 1\n";
        let parsed = parse(text);
        assert_eq!(parsed.invalid_families, 1);
        assert_eq!(parsed.families.len(), 1);
        assert_eq!(parsed.families[0].name, "g");
    }

    #[test]
    fn interleaved_families_are_merged() {
        let text = "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 2\na{x=\"2\"} 3\n";
        let parsed = parse(text);
        assert_eq!(parsed.families.len(), 2);
        assert_eq!(parsed.families[0].samples.len(), 2);
    }

    #[test]
    fn crlf_and_blank_lines() {
        let parsed = parse("# TYPE a gauge\r\n\r\n  a 1\r\n");
        assert_eq!(parsed.skipped_lines, 0);
        assert_eq!(parsed.families[0].samples[0].value, 1.0);
    }
}
