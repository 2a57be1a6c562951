//! The pool's native families passed through: which may be re-emitted and
//! why the others are not.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::exposition::{MetricFamily, MetricType, ParsedExposition};
use crate::scrape::catalogue;

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
    /// Series (families, for histograms and summaries, which cannot lose a
    /// series and stay valid) carrying a `__`-prefixed label, which
    /// Prometheus reserves (`__name__` makes it reject the scrape).
    pub(super) reserved_label: Kind,
    /// Series with the same name and labels as an earlier one.
    pub(super) duplicate: Kind,
    /// Counter (or histogram count and bucket) series with a negative value.
    pub(super) negative_counter: Kind,
}

/// A count of series and one of whole families.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Kind {
    pub(super) series: usize,
    pub(super) families: usize,
}

/// What a native sample is wrong with, if anything.
fn sample_fault(
    family: &MetricFamily,
    sample: &crate::exposition::Sample,
    seen: &mut HashSet<(String, Vec<(String, String)>)>,
) -> Option<fn(&mut NativeDrops) -> &mut Kind> {
    if sample.labels.iter().any(|(n, _)| n.starts_with("__")) {
        return Some(|d| &mut d.reserved_label);
    }
    let counts = match family.kind {
        MetricType::Counter => !sample.name.ends_with("_created"),
        MetricType::Histogram => {
            sample.name.ends_with("_bucket") || sample.name.ends_with("_count")
        }
        MetricType::Summary => sample.name.ends_with("_count"),
        _ => false,
    };
    if counts && sample.value < 0.0 {
        return Some(|d| &mut d.negative_counter);
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

/// The names a family takes in OpenMetrics: its family name there and
/// every sample name its type allows.
fn openmetrics_names(family: &MetricFamily) -> Vec<String> {
    let base = match family.kind {
        MetricType::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
        _ => &family.name,
    };
    let suffixes: &[&str] = match family.kind {
        MetricType::Counter => &["", "_total", "_created"],
        MetricType::Histogram => &["", "_bucket", "_sum", "_count", "_created"],
        MetricType::Summary => &["", "_sum", "_count", "_created"],
        MetricType::Gauge | MetricType::Untyped => &[""],
    };
    let mut names: Vec<String> = suffixes.iter().map(|s| format!("{base}{s}")).collect();
    names.extend(family.samples.iter().map(|s| s.name.clone()));
    names
}

/// Native families that may be re-emitted, and why the rest were not: a
/// name the catalogue reserves (ours, `process_`, `up`, `scrape_`), a name
/// clash in OpenMetrics, reserved labels, duplicate series or negative
/// counters. A family loses only its bad series when it stays valid
/// without them, the whole family otherwise (histograms, summaries).
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
        let mut seen = HashSet::new();
        let faults: Vec<_> = family
            .samples
            .iter()
            .map(|s| sample_fault(family, s, &mut seen))
            .collect();
        let family: Cow<'_, MetricFamily> = if faults.iter().all(Option::is_none) {
            Cow::Borrowed(family)
        } else if matches!(family.kind, MetricType::Histogram | MetricType::Summary) {
            if let Some(reason) = faults.iter().flatten().next() {
                reason(&mut drops).families += 1;
            }
            continue;
        } else {
            let mut owned =
                MetricFamily::new(family.name.clone(), family.help.clone(), family.kind);
            for (sample, fault) in family.samples.iter().zip(&faults) {
                match fault {
                    Some(reason) => reason(&mut drops).series += 1,
                    None => owned.samples.push(sample.clone()),
                }
            }
            Cow::Owned(owned)
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
