//! What one pool may make the exporter hold, whatever it answers, and the
//! settings every reader of a pool shares (the scrape path, `/probe`
//! targets and the REST API read one pool through one set of bounds).

use std::time::Duration;

use super::Connection;

/// Bounds on what one document of a pool may make the exporter hold and
/// send: without them memory follows the size of the pool's documents (a
/// 16 MiB native exposition parsed into 440 MiB; a 200 KB `endpoint`
/// repeated on every series became a 600 MB answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Native series read and passed through (`--collector.max-native-series`).
    pub max_native_series: usize,
    /// Bytes of a label value or HELP text from the pool
    /// (`--collector.max-label-value-length`).
    pub max_label_value_len: usize,
}

impl Limits {
    /// The pool's own exposition is a few dozen series and its label
    /// values are host:port pairs and small numbers: these leave plenty of
    /// room.
    pub const DEFAULT: Limits = Limits {
        max_native_series: 10_000,
        max_label_value_len: 1024,
    };

    /// What the native-exposition parser may keep.
    pub fn parse(self) -> crate::exposition::ParseLimits {
        crate::exposition::ParseLimits {
            max_samples: self.max_native_series,
            max_value_len: self.max_label_value_len,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How one pool is read, shared by the collector of `--pool.url`, the
/// collectors of `/probe` targets and the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections shown per answer (`--collector.max-connections`): the
    /// worst are kept.
    pub max_connections: usize,
    pub limits: Limits,
    /// Deadline of a fetch nobody gave a shorter one (`--pool.timeout`).
    pub timeout: Duration,
}

impl PoolSettings {
    pub fn new(max_connections: usize, timeout: Duration) -> Self {
        Self {
            max_connections,
            limits: Limits::DEFAULT,
            timeout,
        }
    }
}

/// How bad a connection looks: most errors, then highest p95, then most
/// reconnects (so every connection with something to say ranks above the
/// idle ones). A value that is not a number counts as nothing.
pub fn badness(c: &Connection) -> [f64; 3] {
    let n = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    [
        n(c.errors),
        n(c.p95_latency_ms.unwrap_or(0.0)),
        n(c.reconnects),
    ]
}

/// The order in which connections are kept: the worst first. A total
/// order (so sorting and selecting never see an inconsistent comparison);
/// equal connections compare equal.
pub fn worse_first(a: &Connection, b: &Connection) -> std::cmp::Ordering {
    worse_badness_first(&badness(a), &badness(b))
}

/// [`worse_first`] of two connections' [`badness`].
pub fn worse_badness_first(a: &[f64; 3], b: &[f64; 3]) -> std::cmp::Ordering {
    b[0].total_cmp(&a[0])
        .then(b[1].total_cmp(&a[1]))
        .then(b[2].total_cmp(&a[2]))
}

/// Keeps at most `max` connections, preferring the worst (see [`badness`];
/// ties go to the one listed first) so a flood of healthy connections
/// cannot push a failing one out of view; list order is kept. O(n)
/// (`select_nth_unstable`). Returns the kept ones and how many were left
/// out.
pub fn keep_worst<'a, C>(connections: Vec<C>, max: usize) -> (Vec<C>, usize)
where
    C: std::ops::Deref<Target = Connection> + Copy + 'a,
{
    if connections.len() <= max {
        return (connections, 0);
    }
    let mut order: Vec<usize> = (0..connections.len()).collect();
    if max > 0 {
        order.select_nth_unstable_by(max - 1, |&a, &b| {
            worse_first(&connections[a], &connections[b]).then(a.cmp(&b))
        });
    }
    order.truncate(max);
    order.sort_unstable();
    let omitted = connections.len() - max;
    let kept = order.into_iter().map(|i| connections[i]).collect();
    (kept, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64, errors: f64) -> Connection {
        serde_json::from_str(&format!(r#"{{"connection_id":{id},"errors":{errors}}}"#)).unwrap()
    }

    #[test]
    fn keeps_the_worst_in_pool_order() {
        let all: Vec<Connection> = (1..=6)
            .map(|i| conn(i, [0., 5., 0., 9., 1., 0.][i as usize - 1]))
            .collect();
        let refs: Vec<&Connection> = all.iter().collect();
        let (kept, omitted) = keep_worst(refs, 3);
        let ids: Vec<String> = kept.iter().map(|c| c.connection_id.to_string()).collect();
        assert_eq!(ids, ["2", "4", "5"]);
        assert_eq!(omitted, 3);
        let (none, omitted) = keep_worst(all.iter().collect::<Vec<_>>(), 0);
        assert!(none.is_empty());
        assert_eq!(omitted, 6);
    }
}
