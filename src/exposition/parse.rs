//! A small, tolerant parser for the pool's exposition, in either of the
//! formats a pool may send: the Prometheus text format 0.0.4 (the published
//! pool, without a Content-Type) or OpenMetrics 1.0 (builds using an
//! OpenMetrics encoder).
//!
//! Hand-written on purpose: the pool's exposition is passed through, so we
//! need its families with HELP, TYPE and UNIT intact, and one bad line must
//! cost that line only, never the scrape. Each format is read by its own
//! rules (timestamps in milliseconds or seconds, exemplars, UNIT, the
//! OpenMetrics types, HELP escapes); whether what was read may be re-emitted
//! is decided later, by the scrape's native passthrough. Lines that cannot
//! be read are skipped and counted; histogram families without a `+Inf`
//! bucket (or with a bucket without `le`) are dropped and counted.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{
    is_valid_label_name, is_valid_metric_name, Exemplar, Label, MetricFamily, MetricType, Sample,
};

/// The format a pool's exposition is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceFormat {
    /// Prometheus text format 0.0.4: timestamps in milliseconds.
    #[default]
    Text,
    /// OpenMetrics 1.0: timestamps in seconds, exemplars, UNIT, more types.
    OpenMetrics,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedExposition {
    pub families: Vec<MetricFamily>,
    /// The format the document was read as.
    pub format: SourceFormat,
    /// Lines that were neither a comment, metadata nor a readable sample
    /// (and UNIT lines that do not fit their family, and anything after an
    /// OpenMetrics `# EOF`).
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

/// The format of a pool's exposition: its Content-Type when it states one
/// of the two, otherwise the document's own OpenMetrics markers (`# EOF`,
/// `# UNIT`, an OpenMetrics-only TYPE word, an exemplar, or a `_created`
/// sample of a counter, histogram or summary declared by its OpenMetrics
/// name). Without any, it is the text format, as the published pool sends.
pub fn detect_format(content_type: Option<&str>, text: &str) -> SourceFormat {
    if let Some(ct) = content_type {
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            return SourceFormat::OpenMetrics;
        }
        if media.eq_ignore_ascii_case("text/plain") {
            return SourceFormat::Text;
        }
    }
    // Every marker holds one of these; most documents (the published
    // pool's) hold none, and are told apart by a few fast substring scans
    // rather than a second pass over their lines.
    let candidates = [
        "# EOF",
        "# UNIT ",
        " # {",
        "_created",
        " gaugehistogram",
        " stateset",
        " info",
        " unknown",
    ];
    if !candidates.iter().any(|c| text.contains(c)) {
        return SourceFormat::Text;
    }
    // TYPE lines seen so far, by family name (few; a list beats a map).
    let mut typed: Vec<(&str, &str)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(meta) = line.strip_prefix("# ") {
            if meta == "EOF" || meta.starts_with("UNIT ") {
                return SourceFormat::OpenMetrics;
            }
            if let Some(rest) = meta.strip_prefix("TYPE ") {
                let (name, word) = split_token(rest);
                let word = word.trim_end();
                if matches!(word, "gaugehistogram" | "stateset" | "info" | "unknown") {
                    return SourceFormat::OpenMetrics;
                }
                typed.push((name, word));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.contains(" # {") {
            return SourceFormat::OpenMetrics;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if let Some(base) = name.strip_suffix("_created") {
            let family_typed = type_of(&typed, base)
                .is_some_and(|w| matches!(w, "counter" | "histogram" | "summary"));
            if family_typed && type_of(&typed, name).is_none() {
                return SourceFormat::OpenMetrics;
            }
        }
    }
    SourceFormat::Text
}

/// The TYPE word declared for `name`, among those seen.
fn type_of<'t>(typed: &[(&str, &'t str)], name: &str) -> Option<&'t str> {
    typed.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

/// Parses a document in the format its markers show ([`detect_format`]).
pub fn parse(text: &str) -> ParsedExposition {
    parse_limited(text, ParseLimits::NONE)
}

/// Parses a document known to be in `format`.
pub fn parse_as(text: &str, format: SourceFormat) -> ParsedExposition {
    parse_limited_as(text, ParseLimits::NONE, format)
}

/// [`parse`] keeping no more than `limits` allow; what is left out is
/// counted in [`ParsedExposition::over_limit`] and
/// [`ParsedExposition::truncated_values`].
pub fn parse_limited(text: &str, limits: ParseLimits) -> ParsedExposition {
    parse_limited_as(text, limits, detect_format(None, text))
}

/// [`parse_as`] within `limits`.
pub fn parse_limited_as(text: &str, limits: ParseLimits, format: SourceFormat) -> ParsedExposition {
    let mut parser = Parser {
        limits,
        format,
        out: ParsedExposition {
            format,
            ..ParsedExposition::default()
        },
        index: HashMap::new(),
        typed: Vec::new(),
        current: None,
        kept: 0,
        eof: false,
    };
    for line in text.split('\n') {
        // A CRLF line keeps its '\r' here: sample and TYPE lines tolerate it
        // as trailing whitespace, and HELP text may legitimately hold one.
        let line = line.trim_start_matches([' ', '\t']);
        if line.trim_end_matches('\r').is_empty() {
            continue;
        }
        if parser.eof {
            // Nothing may follow an OpenMetrics `# EOF`.
            parser.out.skipped_lines += 1;
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
    format: SourceFormat,
    /// Samples and sample-less families kept so far.
    kept: usize,
    out: ParsedExposition,
    /// Families by the name their metadata lines use (in OpenMetrics the
    /// family name, e.g. `x` for a counter whose samples are `x_total`).
    index: HashMap<String, usize>,
    /// Families whose TYPE line has been seen (a second one is an error).
    typed: Vec<bool>,
    current: Option<usize>,
    /// An OpenMetrics `# EOF` has been read.
    eof: bool,
}

impl Parser {
    fn openmetrics(&self) -> bool {
        self.format == SourceFormat::OpenMetrics
    }

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
        if self.openmetrics() && rest.trim_end_matches('\r') == " EOF" {
            self.eof = true;
            return true;
        }
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
                let mut help = unescape_help(help, self.openmetrics());
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
                let kind = if self.openmetrics() {
                    MetricType::from_openmetrics_word(word)
                } else {
                    MetricType::from_type_word(word)
                };
                let Some(kind) = kind else {
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
            "UNIT" if self.openmetrics() => {
                let (name, rest) = split_token(rest);
                let (unit, trailing) = split_token(rest.trim_end_matches('\r'));
                let unit_ok = unit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
                if !is_valid_metric_name(name) || !unit_ok || !trailing.trim().is_empty() {
                    return false;
                }
                let Some(i) = self.family_index(name) else {
                    self.out.over_limit += 1;
                    return true;
                };
                let family = &mut self.out.families[i];
                if !family.unit.is_empty() || !family.samples.is_empty() {
                    return false;
                }
                family.unit = unit.to_owned();
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
        let Some(mut sample) = parse_sample(line, self.format) else {
            return false;
        };
        for (_, value) in &mut sample.labels {
            if truncate_at_char(value, self.limits.max_value_len) {
                self.out.truncated_values += 1;
            }
        }
        let found = if self.openmetrics() {
            let Ok(found) = self.openmetrics_family_for_sample(&sample.name) else {
                return false;
            };
            found
        } else {
            self.family_for_sample(&sample.name)
        };
        let Some(i) = found else {
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
        let family = &mut self.out.families[i];
        if matches!(
            family.kind,
            MetricType::Histogram | MetricType::GaugeHistogram
        ) && sample.name.ends_with("_bucket")
        {
            canonical_infinity(&mut sample.labels);
        }
        family.samples.push(sample);
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

    /// The same for OpenMetrics, where a family is named without its
    /// samples' suffixes (`# TYPE x counter` for `x_total`).
    /// `Err` when the sample cannot belong anywhere: its name is that of a
    /// declared family whose type gives its samples other names.
    fn openmetrics_family_for_sample(&mut self, sample_name: &str) -> Result<Option<usize>, ()> {
        let fits = |family: &MetricFamily| {
            sample_name
                .strip_prefix(family.name.as_str())
                .is_some_and(|suffix| openmetrics_suffixes(family.kind).contains(&suffix))
        };
        if let Some(i) = self.current {
            if fits(&self.out.families[i]) {
                return Ok(Some(i));
            }
        }
        let candidates = std::iter::once(sample_name).chain(
            [
                "_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info",
            ]
            .iter()
            .filter_map(|suffix| sample_name.strip_suffix(suffix)),
        );
        for base in candidates {
            if let Some(&i) = self.index.get(base) {
                if fits(&self.out.families[i]) {
                    return Ok(Some(i));
                }
            }
        }
        // A sample fitting no declared family starts an unknown one; its
        // name may not be a declared family's of another type.
        if self.index.contains_key(sample_name) {
            return Err(());
        }
        Ok(self.family_index(sample_name))
    }

    fn finish(mut self) -> ParsedExposition {
        if self.openmetrics() {
            for family in &mut self.out.families {
                // UNIT must be the family name's last component, and info
                // and stateset families have none.
                let unit_fits = family.unit.is_empty()
                    || (family.name.ends_with(&format!("_{}", family.unit))
                        && !matches!(family.kind, MetricType::Info | MetricType::StateSet));
                if !unit_fits {
                    family.unit.clear();
                    self.out.skipped_lines += 1;
                }
                // The model names families as the text format does.
                match family.kind {
                    MetricType::Counter => family.name.push_str("_total"),
                    MetricType::Info => family.name.push_str("_info"),
                    _ => {}
                }
            }
        }
        let before = self.out.families.len();
        self.out.families.retain(|f| {
            !matches!(f.kind, MetricType::Histogram | MetricType::GaugeHistogram)
                || histogram_is_complete(f)
        });
        self.out.invalid_families = before - self.out.families.len();
        self.out
    }
}

/// Sample-name suffixes of an OpenMetrics family of this type, the family
/// named as OpenMetrics names it.
fn openmetrics_suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Info => &["_info"],
        other => other.sample_suffixes(),
    }
}

fn belongs_to(family: &MetricFamily, sample_name: &str) -> bool {
    // A counter `x_total` may carry its creation time as `x_created`.
    if family.kind == MetricType::Counter {
        if let Some(base) = family.name.strip_suffix("_total") {
            if sample_name.strip_prefix(base) == Some("_created") {
                return true;
            }
        }
    }
    sample_name
        .strip_prefix(family.name.as_str())
        .is_some_and(|suffix| family.kind.sample_suffixes().contains(&suffix))
}

/// `le="+INF"`, `le="inf"`, ... mean `+Inf`, and are written so: strict
/// OpenMetrics parsers accept only the canonical spelling.
fn canonical_infinity(labels: &mut [Label]) {
    if let Some((_, le)) = labels.iter_mut().find(|(n, _)| n == "le") {
        let spelled_otherwise = le != "+Inf" && le.bytes().any(|b| b == b'i' || b == b'I');
        if spelled_otherwise && parse_value(le).is_some_and(|v| v == f64::INFINITY) {
            *le = "+Inf".to_owned();
        }
    }
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
                    if le == "+Inf" || parse_value(le).is_some_and(|v| v == f64::INFINITY) {
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

/// HELP text: `\\` and `\n` in both formats, `\"` in OpenMetrics too; any
/// other backslash is kept as written.
fn unescape_help(s: &str, openmetrics: bool) -> String {
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
            Some('"') if openmetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_sample(line: &str, format: SourceFormat) -> Option<Sample> {
    let line = line.trim_end_matches([' ', '\t', '\r']);
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
    let (value, rest) = split_token(rest.trim_start_matches([' ', '\t']));
    let value = parse_value(value)?;
    let (timestamp, rest) = if rest.starts_with('#') {
        (None, rest)
    } else {
        let (ts, rest) = split_token(rest);
        let ts = match ts {
            "" => None,
            ts => Some(match format {
                SourceFormat::Text => ts.parse::<i64>().ok()?,
                SourceFormat::OpenMetrics => seconds_to_ms(ts)?,
            }),
        };
        (ts, rest)
    };
    let exemplar = match rest {
        "" => None,
        _ if format == SourceFormat::OpenMetrics => Some(Box::new(parse_exemplar(rest)?)),
        _ => return None,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms: timestamp,
        exemplar,
    })
}

/// `# {labels} value [timestamp]`, after a sample's value and timestamp.
fn parse_exemplar(s: &str) -> Option<Exemplar> {
    let s = s.strip_prefix('#')?;
    if !s.starts_with([' ', '\t']) {
        return None;
    }
    let s = s.trim_start_matches([' ', '\t']).strip_prefix('{')?;
    let mut labels = Vec::new();
    let rest = parse_labels(s, &mut labels)?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let (value, rest) = split_token(rest.trim_start_matches([' ', '\t']));
    let value = parse_value(value)?;
    let (timestamp, rest) = split_token(rest);
    if !rest.is_empty() {
        return None;
    }
    let timestamp = match timestamp {
        "" => None,
        ts => Some(parse_value(ts).filter(|t| t.is_finite())?),
    };
    Some(Exemplar {
        labels: labels
            .into_iter()
            .map(|(n, v)| (n.into_owned(), v))
            .collect(),
        value,
        timestamp,
    })
}

/// An OpenMetrics timestamp (seconds, possibly fractional or with an
/// exponent) in milliseconds, digits past the millisecond dropped, as
/// Prometheus stores it; `None` when it is not a finite number or does
/// not fit.
fn seconds_to_ms(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let ms = if plain(whole) && plain(fraction) && !(whole.is_empty() && fraction.is_empty()) {
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut millis = 0i64;
        for (i, b) in fraction
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .enumerate()
        {
            millis += i64::from(b - b'0') * [100, 10, 1][i];
        }
        whole.checked_mul(1000)?.checked_add(millis)?
    } else {
        let v = parse_value(digits)?;
        let ms = (v * 1000.0).trunc();
        if !ms.is_finite() || ms.abs() >= 9.2e18 {
            return None;
        }
        ms as i64
    };
    Some(if negative { -ms } else { ms })
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

/// Reads an escaped label value up to its closing quote. `\\`, `\"` and
/// `\n` are escapes; any other backslash stands for itself, as Prometheus
/// reads it.
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
                    // The next character (possibly multi-byte) is read as
                    // ordinary text on the next round.
                    _ => {
                        out.push('\\');
                        i += 1;
                        start = i;
                        continue;
                    }
                }
                i += 2;
                start = i;
            }
            _ => i += 1,
        }
    }
    None
}

/// A sample value as Prometheus reads one: a decimal or exponent number,
/// or an infinity or NaN spelled in any case.
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return s.parse().ok();
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    None
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

    #[test]
    fn format_from_content_type_then_markers() {
        let om = "# TYPE a gauge\na 1\n# EOF\n";
        assert_eq!(detect_format(None, om), SourceFormat::OpenMetrics);
        assert_eq!(
            detect_format(Some("text/plain; version=0.0.4"), om),
            SourceFormat::Text
        );
        assert_eq!(
            detect_format(Some("application/openmetrics-text; version=1.0.0"), "a 1\n"),
            SourceFormat::OpenMetrics
        );
        for marker in [
            "# UNIT a_seconds seconds\n",
            "# TYPE a info\n",
            "# TYPE a gaugehistogram\n",
            "a_total 1 # {t=\"1\"} 1\n",
            "# TYPE a counter\na_total 1\na_created 2\n",
        ] {
            assert_eq!(
                detect_format(None, marker),
                SourceFormat::OpenMetrics,
                "{marker}"
            );
        }
        // A text-format `_created` family of its own (as Prometheus' Python
        // client writes it) is no marker, nor is the published pool's text.
        let text = "# TYPE a_total counter\na_total 1\n# TYPE a_created gauge\na_created 2\n";
        assert_eq!(detect_format(None, text), SourceFormat::Text);
        let pool = include_str!("../../tests/fixtures/native_metrics.txt");
        assert_eq!(detect_format(None, pool), SourceFormat::Text);
    }

    #[test]
    fn openmetrics_is_read_by_its_own_rules() {
        let text = concat!(
            "# HELP c A \\\"counter\\\".\n# TYPE c counter\n# UNIT c seconds\n",
            "c_total{a=\"x\\ty\"} 3 1234567890.1239 # {trace=\"t\"} 1 1.5\nc_created 12\n",
            "# TYPE i info\ni_info{v=\"1\"} 1\n",
            "# TYPE q_seconds gauge\n# UNIT q_seconds seconds\nq_seconds -1e3 -1\n",
            "# EOF\nafter 1\n",
        );
        let p = parse(text);
        assert_eq!(p.format, SourceFormat::OpenMetrics);
        // The UNIT of `c` does not end its name: dropped, like the line after EOF.
        assert_eq!(p.skipped_lines, 2);
        let names: Vec<_> = p.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["c_total", "i_info", "q_seconds"]);
        let c = &p.families[0];
        assert_eq!(
            (c.kind, c.help.as_str(), c.unit.as_str()),
            (MetricType::Counter, "A \"counter\".", "")
        );
        let total = &c.samples[0];
        assert_eq!(total.timestamp_ms, Some(1_234_567_890_123));
        assert_eq!(label(total, "a"), Some("x\\ty"));
        let exemplar = total.exemplar.as_ref().unwrap();
        assert_eq!((exemplar.value, exemplar.timestamp), (1.0, Some(1.5)));
        assert_eq!(c.samples[1].name, "c_created");
        assert_eq!(p.families[1].kind, MetricType::Info);
        let q = &p.families[2];
        assert_eq!(q.unit, "seconds");
        assert_eq!(
            (q.samples[0].value, q.samples[0].timestamp_ms),
            (-1000.0, Some(-1000))
        );
        // In the text format the same timestamp is milliseconds.
        assert_eq!(
            parse_as("a 1 1234\n", SourceFormat::Text).families[0].samples[0].timestamp_ms,
            Some(1234)
        );
        assert_eq!(
            parse_as("a 1 1234\n", SourceFormat::OpenMetrics).families[0].samples[0].timestamp_ms,
            Some(1_234_000)
        );
    }

    #[test]
    fn infinities_and_unknown_escapes_read_as_prometheus_reads_them() {
        let p = parse(
            "# TYPE h histogram\nh_bucket{le=\"+INF\"} 1\nh_count 1\nh_sum 1\ng{a=\"\\q\"} inf\n",
        );
        assert_eq!(p.skipped_lines, 0);
        assert_eq!(label(&p.families[0].samples[0], "le"), Some("+Inf"));
        assert_eq!(label(&p.families[1].samples[0], "a"), Some("\\q"));
        assert_eq!(p.families[1].samples[0].value, f64::INFINITY);
    }
}
