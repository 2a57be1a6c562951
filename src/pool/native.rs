//! What the exporter reads from the pool's native exposition: the latency
//! histogram (its `_count` is the operation count, handshakes included,
//! docs/pool-behaviour.md) and the counter of failures to open connections. Pure.

use crate::exposition::{MetricType, ParsedExposition};

/// The native families the API uses, summed over their series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NativeSummary {
    /// `<namespace>_latency_ms_count`: one per read/write and one per TLS
    /// handshake.
    pub observations: Option<f64>,
    /// `<namespace>_latency_ms_sum`, in milliseconds.
    pub sum_ms: Option<f64>,
    /// Cumulative buckets `(le in ms, count)`, ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    /// `<namespace>_errors_total`: failures to open idle connections.
    pub open_failures: Option<f64>,
}

/// Finds the pool's families by suffix, since the pool's namespace
/// (`secure_channel` by default) is configurable.
pub fn summarize(parsed: &ParsedExposition) -> NativeSummary {
    let mut out = NativeSummary::default();
    let histogram = parsed
        .families
        .iter()
        .find(|f| f.kind == MetricType::Histogram && f.name.ends_with("_latency_ms"));
    if let Some(family) = histogram {
        let count_name = format!("{}_count", family.name);
        let sum_name = format!("{}_sum", family.name);
        let bucket_name = format!("{}_bucket", family.name);
        for sample in &family.samples {
            if sample.name == count_name {
                *out.observations.get_or_insert(0.0) += sample.value;
            } else if sample.name == sum_name {
                *out.sum_ms.get_or_insert(0.0) += sample.value;
            } else if sample.name == bucket_name {
                let Some(le) = sample
                    .labels
                    .iter()
                    .find(|(name, _)| name == "le")
                    .and_then(|(_, v)| parse_le(v))
                else {
                    continue;
                };
                match out.buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, count)) => *count += sample.value,
                    None => out.buckets.push((le, sample.value)),
                }
            }
        }
        out.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out.open_failures = parsed
        .families
        .iter()
        .find(|f| {
            f.kind == MetricType::Counter
                && f.name.ends_with("_errors_total")
                && !crate::exposition::catalogue::is_reserved(&f.name)
        })
        .map(|f| f.samples.iter().map(|s| s.value).sum());
    out
}

fn parse_le(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => v.parse().ok().filter(|x: &f64| !x.is_nan()),
    }
}

/// The `q` quantile of cumulative `buckets`, interpolated linearly within
/// a bucket as Prometheus' `histogram_quantile` does; `None` without
/// observations or without a `+Inf` bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(last_le, total) = buckets.last()?;
    if last_le != f64::INFINITY || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (i, &(le, count)) in buckets.iter().enumerate() {
        if count >= rank {
            if le == f64::INFINITY {
                // Above the highest finite bound: that bound is all we know.
                return Some(if i == 0 { 0.0 } else { buckets[i - 1].0 });
            }
            if i == 0 && le <= 0.0 {
                return Some(le);
            }
            let within = count - below;
            if within <= 0.0 {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / within);
        }
        lower = le;
        below = count;
    }
    None
}

/// `newest - oldest` bucket by bucket: the observations between two
/// expositions. `None` when the bounds differ or a count went down (the
/// pool restarted in between).
pub fn bucket_increase(oldest: &[(f64, f64)], newest: &[(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    if oldest.len() != newest.len() {
        return None;
    }
    oldest
        .iter()
        .zip(newest)
        .map(|(&(a_le, a), &(b_le, b))| (a_le == b_le && b >= a).then_some((b_le, b - a)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    const TEXT: &str = "\
# HELP secure_channel_errors_total Total number of connection errors across the pool
# TYPE secure_channel_errors_total counter
secure_channel_errors_total{endpoint=\"relay.example.net:443\"} 3
# HELP secure_channel_latency_ms Connection latency distribution in milliseconds
# TYPE secure_channel_latency_ms histogram
secure_channel_latency_ms_bucket{endpoint=\"relay.example.net:443\",le=\"0.1\"} 50
secure_channel_latency_ms_bucket{endpoint=\"relay.example.net:443\",le=\"10\"} 90
secure_channel_latency_ms_bucket{endpoint=\"relay.example.net:443\",le=\"100\"} 100
secure_channel_latency_ms_bucket{endpoint=\"relay.example.net:443\",le=\"+Inf\"} 100
secure_channel_latency_ms_sum{endpoint=\"relay.example.net:443\"} 700
secure_channel_latency_ms_count{endpoint=\"relay.example.net:443\"} 100
";

    #[test]
    fn reads_the_histogram_and_open_failures() {
        let s = summarize(&parse(TEXT));
        assert_eq!(s.observations, Some(100.0));
        assert_eq!(s.sum_ms, Some(700.0));
        assert_eq!(s.open_failures, Some(3.0));
        assert_eq!(s.buckets.len(), 4);
        assert_eq!(s.buckets[3], (f64::INFINITY, 100.0));
        // Half the observations are in the first bucket: the median is
        // its upper bound; p95 lies halfway into the 10-100 ms bucket.
        assert_eq!(quantile(0.5, &s.buckets), Some(0.1));
        assert_eq!(quantile(0.95, &s.buckets), Some(55.0));
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // Everything above the highest bound: report that bound.
        assert_eq!(
            quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 5.0)]),
            Some(1.0)
        );
    }

    #[test]
    fn no_histogram_no_numbers() {
        let s = summarize(&parse("# TYPE other gauge\nother 1\n"));
        assert_eq!(s, NativeSummary::default());
    }

    #[test]
    fn increases_need_matching_bounds_and_no_reset() {
        let a = [(1.0, 5.0), (f64::INFINITY, 10.0)];
        let b = [(1.0, 7.0), (f64::INFINITY, 20.0)];
        assert_eq!(
            bucket_increase(&a, &b),
            Some(vec![(1.0, 2.0), (f64::INFINITY, 10.0)])
        );
        assert_eq!(bucket_increase(&b, &a), None);
        assert_eq!(bucket_increase(&a, &b[..1]), None);
    }
}
