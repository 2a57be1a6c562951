//! The pool's native families passed through: which may be re-emitted and
//! why the others are not.
//!
//! Whatever the pool sends, what is passed through must be accepted by
//! Prometheus (2.x and 3.x, either format) and by a strict OpenMetrics
//! parser. The rules are those of OpenMetrics, the stricter of the two
//! formats, and apply to both answers alike, so that the drop counters do
//! not depend on who scrapes. A family loses only its bad series when it
//! stays valid without them, the whole family otherwise (histograms,
//! gauge histograms, summaries, whose series only mean something whole).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::exposition::catalogue;
use crate::exposition::parse::parse_value;
use crate::exposition::{Label, MetricFamily, MetricType, ParsedExposition, Sample};

/// Why native families or series were not passed through, counted per
/// scrape.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct NativeDrops {
    /// Families named like ours or a reserved name (`up`, `process_*`, ...).
    pub(super) name_collision: usize,
    /// Families whose names clash in OpenMetrics with an earlier family's
    /// (a counter `a_total` after a gauge `a`; a gauge `b_count` after a
    /// summary `b`): Prometheus would refuse the whole scrape.
    pub(super) openmetrics_clash: usize,
    /// Series carrying a `__`-prefixed label, which Prometheus reserves
    /// (`__name__` makes it reject the scrape).
    pub(super) reserved_label: Kind,
    /// Series with the same name and labels as an earlier one.
    pub(super) duplicate: Kind,
    /// Counter-like series (a counter's total, a histogram's buckets, count
    /// and sum, a summary's count and sum) with a negative value.
    pub(super) negative_counter: Kind,
    /// Series with a timestamp before 1970: the text format cannot carry
    /// one (Prometheus rejects the whole answer).
    pub(super) negative_timestamp: Kind,
    /// Series whose value its type does not allow: NaN where a count or sum
    /// is expected, a fractional or infinite count or bucket, an info
    /// series other than 1, a state other than 0 or 1 (or a state set
    /// series without its state label).
    pub(super) invalid_value: Kind,
    /// Series of one group (a counter's total and created time, one state
    /// set) some with a timestamp and some without, or going backwards.
    pub(super) mixed_timestamps: Kind,
    /// Histograms and gauge histograms whose series do not make one:
    /// decreasing buckets, `_count` other than the `+Inf` bucket, `_sum`
    /// without `_count` or the reverse, a `_sum` with negative buckets, an
    /// unreadable `le`.
    pub(super) invalid_histogram: usize,
    /// Summaries with a quantile label missing, unreadable or outside
    /// 0..1, or a negative quantile value.
    pub(super) invalid_summary: usize,
}

/// A count of series and one of whole families.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Kind {
    pub(super) series: usize,
    pub(super) families: usize,
}

type Reason = fn(&mut NativeDrops) -> &mut Kind;

/// Families that only mean something whole.
fn is_composite(kind: MetricType) -> bool {
    matches!(
        kind,
        MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary
    )
}

fn is_count(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0
}

/// What a native sample is wrong with on its own, if anything.
fn sample_fault(
    family: &MetricFamily,
    sample: &Sample,
    seen: &mut HashSet<(String, Vec<(String, String)>)>,
) -> Option<Reason> {
    if sample.labels.iter().any(|(n, _)| n.starts_with("__")) {
        return Some(|d| &mut d.reserved_label);
    }
    if sample.timestamp_ms.is_some_and(|t| t < 0) {
        return Some(|d| &mut d.negative_timestamp);
    }
    let suffix = sample.name.strip_prefix(family.name.as_str()).unwrap_or("");
    let v = sample.value;
    // (must be a whole number, may be NaN, may be negative)
    let rule = match (family.kind, suffix) {
        (MetricType::Counter, "" | "_total") => Some((false, false, false)),
        (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket")
        | (MetricType::Histogram | MetricType::Summary, "_count")
        | (MetricType::GaugeHistogram, "_gcount") => Some((true, false, false)),
        (MetricType::Histogram | MetricType::Summary, "_sum") => Some((false, false, false)),
        (MetricType::GaugeHistogram, "_gsum") => Some((false, false, true)),
        _ => None,
    };
    if let Some((whole, nan_ok, negative_ok)) = rule {
        if (v.is_nan() && !nan_ok) || (whole && !v.is_nan() && !is_count(v)) {
            return Some(|d| &mut d.invalid_value);
        }
        if v < 0.0 && !negative_ok {
            return Some(|d| &mut d.negative_counter);
        }
    }
    let valid_for_type = match family.kind {
        MetricType::Info => v == 1.0,
        MetricType::StateSet => {
            (v == 0.0 || v == 1.0) && sample.labels.iter().any(|(n, _)| *n == family.name)
        }
        _ => true,
    };
    if !valid_for_type {
        return Some(|d| &mut d.invalid_value);
    }
    let mut labels: Vec<(String, String)> = sample
        .labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    labels.sort_unstable();
    if !seen.insert((sample.name.clone(), labels)) {
        return Some(|d| &mut d.duplicate);
    }
    None
}

/// The label that tells a group's series apart, if the type has one.
fn member_label(family: &MetricFamily, sample: &Sample) -> Option<&'static str> {
    match family.kind {
        MetricType::Histogram | MetricType::GaugeHistogram
            if sample.name.len() == family.name.len() + "_bucket".len()
                && sample.name.ends_with("_bucket") =>
        {
            Some("le")
        }
        MetricType::Summary if sample.name == family.name => Some("quantile"),
        _ => None,
    }
}

/// The group a sample belongs to: its labels but the one that tells the
/// group's series apart (`le`, `quantile`, a state set's state). All info
/// series of a family are one group, as OpenMetrics defines it.
fn group_key<'s>(family: &MetricFamily, sample: &'s Sample) -> Vec<&'s Label> {
    if family.kind == MetricType::Info {
        return Vec::new();
    }
    let member = member_label(family, sample);
    let mut key: Vec<&Label> = sample
        .labels
        .iter()
        .filter(|(n, _)| Some(n.as_ref()) != member)
        .filter(|(n, _)| !(family.kind == MetricType::StateSet && *n == family.name))
        .collect();
    key.sort_unstable();
    key
}

/// Where a sample goes within its group, for histograms: buckets first, by
/// `le`; the rest (count, sum, created time) after them as they came.
fn order_in_group(family: &MetricFamily, sample: &Sample) -> (u8, f64) {
    match member_label(family, sample) {
        Some(_) => (0, le_of(sample).unwrap_or(f64::NAN)),
        None => (1, 0.0),
    }
}

fn label<'s>(sample: &'s Sample, name: &str) -> Option<&'s str> {
    sample
        .labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn le_of(sample: &Sample) -> Option<f64> {
    label(sample, "le")
        .and_then(parse_value)
        .filter(|v| !v.is_nan())
}

/// Timestamps of one group: all present or all absent, never going
/// backwards (info families excepted, as OpenMetrics says).
fn timestamps_agree(family: &MetricFamily, samples: &[&Sample]) -> bool {
    let Some(first) = samples.first() else {
        return true;
    };
    let present = first.timestamp_ms.is_some();
    samples.iter().all(|s| s.timestamp_ms.is_some() == present)
        && (family.kind == MetricType::Info
            || samples
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms))
}

/// Why one histogram group (already in bucket order) is not a histogram.
fn histogram_group_ok(family: &MetricFamily, group: &[&Sample]) -> bool {
    let suffix = |s: &Sample| s.name[family.name.len()..].to_owned();
    let gauge = family.kind == MetricType::GaugeHistogram;
    let (count_suffix, sum_suffix) = if gauge {
        ("_gcount", "_gsum")
    } else {
        ("_count", "_sum")
    };
    let mut last: Option<(f64, f64)> = None;
    let mut negative_buckets = false;
    let mut count = None;
    let mut sum = None;
    for s in group {
        match suffix(s).as_str() {
            "_bucket" => {
                let Some(le) = le_of(s) else {
                    return false;
                };
                if let Some((last_le, last_value)) = last {
                    if le <= last_le || s.value < last_value {
                        return false;
                    }
                }
                negative_buckets |= le < 0.0;
                last = Some((le, s.value));
            }
            x if x == count_suffix => count = Some(s.value),
            x if x == sum_suffix => sum = Some(s.value),
            _ => {}
        }
    }
    let Some((inf, inf_value)) = last else {
        return false;
    };
    inf == f64::INFINITY
        && count.is_none_or(|c| c == inf_value)
        && count.is_some() == sum.is_some()
        && !(negative_buckets && !gauge && sum.is_some())
        && !(gauge && !negative_buckets && sum.is_some_and(|s| s < 0.0))
}

fn summary_group_ok(family: &MetricFamily, group: &[&Sample]) -> bool {
    group.iter().filter(|s| s.name == family.name).all(|s| {
        let q = label(s, "quantile").and_then(parse_value);
        q.is_some_and(|q| (0.0..=1.0).contains(&q)) && (s.value.is_nan() || s.value >= 0.0)
    })
}

/// A family's samples put in OpenMetrics order (each group's samples
/// together, a histogram's buckets by `le`); `None` when they already are.
fn regrouped(family: &MetricFamily) -> Option<Vec<usize>> {
    let mut first_seen: HashMap<Vec<&Label>, usize> = HashMap::new();
    let keys: Vec<(usize, (u8, f64), usize)> = family
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let next = first_seen.len();
            let group = *first_seen.entry(group_key(family, s)).or_insert(next);
            let within = if matches!(
                family.kind,
                MetricType::Histogram | MetricType::GaugeHistogram
            ) {
                order_in_group(family, s)
            } else {
                (0, 0.0)
            };
            (group, within, i)
        })
        .collect();
    let mut order = keys.clone();
    order.sort_by(|a, b| {
        (a.0, a.1 .0)
            .cmp(&(b.0, b.1 .0))
            .then(a.1 .1.total_cmp(&b.1 .1))
            .then(a.2.cmp(&b.2))
    });
    if order.iter().zip(&keys).all(|(a, b)| a.2 == b.2) {
        return None;
    }
    Some(order.into_iter().map(|k| k.2).collect())
}

/// The groups of a family's samples, in order, as index ranges.
fn groups<'f>(family: &'f MetricFamily, samples: &[&'f Sample]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=samples.len() {
        if i == samples.len() || group_key(family, samples[i]) != group_key(family, samples[start])
        {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// An exemplar OpenMetrics allows: on a histogram bucket or a counter's
/// total, with at most 128 characters of label names and values.
fn exemplar_allowed(family: &MetricFamily, sample: &Sample) -> bool {
    let Some(exemplar) = &sample.exemplar else {
        return true;
    };
    let on_allowed_sample = match family.kind {
        MetricType::Histogram | MetricType::GaugeHistogram => {
            member_label(family, sample).is_some()
        }
        MetricType::Counter => {
            sample.name.ends_with("_total")
                && matches!(&sample.name[family.name.len()..], "" | "_total")
        }
        _ => false,
    };
    let length: usize = exemplar
        .labels
        .iter()
        .map(|(n, v)| n.chars().count() + v.chars().count())
        .sum();
    on_allowed_sample && length <= 128
}

/// The names a family takes in OpenMetrics: its family name there and
/// every sample name its type allows.
fn openmetrics_names(family: &MetricFamily) -> Vec<String> {
    let base = match family.kind {
        MetricType::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
        MetricType::Info => family.name.strip_suffix("_info").unwrap_or(&family.name),
        _ => &family.name,
    };
    let suffixes: &[&str] = match family.kind {
        MetricType::Counter => &["", "_total", "_created"],
        MetricType::Histogram => &["", "_bucket", "_sum", "_count", "_created"],
        MetricType::GaugeHistogram => &["", "_bucket", "_gsum", "_gcount"],
        MetricType::Summary => &["", "_sum", "_count", "_created"],
        MetricType::Info => &["", "_info"],
        MetricType::Gauge | MetricType::Untyped | MetricType::StateSet => &[""],
    };
    let mut names: Vec<String> = suffixes.iter().map(|s| format!("{base}{s}")).collect();
    names.extend(family.samples.iter().map(|s| s.name.clone()));
    names
}

/// One family checked: what of it may be re-emitted (borrowed when all of
/// it), or `None` when nothing may.
fn check_family<'a>(
    family: &'a MetricFamily,
    drops: &mut NativeDrops,
) -> Option<Cow<'a, MetricFamily>> {
    let composite = is_composite(family.kind);
    let mut seen = HashSet::new();
    let faults: Vec<Option<Reason>> = family
        .samples
        .iter()
        .map(|s| sample_fault(family, s, &mut seen))
        .collect();
    if composite {
        if let Some(reason) = faults.iter().flatten().next() {
            reason(drops).families += 1;
            return None;
        }
    }
    let order = regrouped(family);
    let mut changed = order.is_some();
    let mut indices: Vec<usize> = order.unwrap_or_else(|| (0..family.samples.len()).collect());
    if faults.iter().any(Option::is_some) {
        indices.retain(|&i| match faults[i] {
            Some(reason) => {
                reason(drops).series += 1;
                false
            }
            None => true,
        });
        changed = true;
    }
    let mut kept: Vec<&Sample> = indices.iter().map(|&i| &family.samples[i]).collect();
    // Groups: timestamps, then the type's own rules.
    let mut dropped_groups = Vec::new();
    for range in groups(family, &kept) {
        let group = &kept[range.clone()];
        if !timestamps_agree(family, group) {
            if composite {
                drops.mixed_timestamps.families += 1;
                return None;
            }
            drops.mixed_timestamps.series += group.len();
            dropped_groups.push(range);
            continue;
        }
        let ok = match family.kind {
            MetricType::Histogram | MetricType::GaugeHistogram => histogram_group_ok(family, group),
            MetricType::Summary => summary_group_ok(family, group),
            _ => true,
        };
        if !ok {
            match family.kind {
                MetricType::Summary => drops.invalid_summary += 1,
                _ => drops.invalid_histogram += 1,
            }
            return None;
        }
    }
    for range in dropped_groups.into_iter().rev() {
        kept.drain(range);
        changed = true;
    }
    let strip_exemplars = kept.iter().any(|s| !exemplar_allowed(family, s));
    if !changed && !strip_exemplars {
        return Some(Cow::Borrowed(family));
    }
    let mut owned = MetricFamily::new(family.name.clone(), family.help.clone(), family.kind);
    owned.unit = family.unit.clone();
    owned.samples = kept
        .into_iter()
        .map(|s| {
            let mut s = s.clone();
            if !exemplar_allowed(family, &s) {
                s.exemplar = None;
            }
            s
        })
        .collect();
    Some(Cow::Owned(owned))
}

/// Native families that may be re-emitted, and why the rest were not: a
/// name the catalogue reserves (ours, `process_`, `up`, `scrape_`), a name
/// clash in OpenMetrics, or the reasons of [`NativeDrops`].
pub(super) fn pass_through(parsed: &ParsedExposition) -> (Vec<Cow<'_, MetricFamily>>, NativeDrops) {
    let mut drops = NativeDrops::default();
    let mut taken: HashSet<String> = HashSet::new();
    let mut kept = Vec::with_capacity(parsed.families.len());
    for family in &parsed.families {
        let reserved = catalogue::is_reserved(&family.name)
            || family
                .samples
                .iter()
                .any(|s| catalogue::is_reserved(&s.name));
        if reserved {
            drops.name_collision += 1;
            continue;
        }
        let Some(family) = check_family(family, &mut drops) else {
            continue;
        };
        if family.samples.is_empty() {
            continue;
        }
        let names = openmetrics_names(&family);
        if names.iter().any(|n| taken.contains(n)) {
            drops.openmetrics_clash += 1;
            continue;
        }
        taken.extend(names);
        kept.push(family);
    }
    (kept, drops)
}
