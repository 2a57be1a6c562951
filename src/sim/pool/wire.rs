//! What the simulated pool writes: its three documents in the pool's wire
//! format (the JSON as the Rust pool's serde writes it, the native
//! exposition as its Prometheus registry does) and the `/sim/state` summary.

use std::fmt::Write;

use super::{SimPool, TimeFormat, BUCKETS};
use crate::pool::Document;

impl SimPool {
    fn write_time(&self, out: &mut String, t: f64) {
        match self.config.time_format {
            TimeFormat::SystemTime => {
                let secs = t.floor();
                let nanos = ((t - secs) * 1e9).round().min(999_999_999.0);
                let _ = write!(
                    out,
                    r#"{{"secs_since_epoch":{},"nanos_since_epoch":{}}}"#,
                    secs as i64, nanos as u32
                );
            }
            TimeFormat::Rfc3339 => {
                let nanos = (t * 1e9) as i128;
                let text = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .ok()
                    .and_then(|d| {
                        d.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
                let _ = write!(out, "\"{text}\"");
            }
            TimeFormat::Unix => {
                let _ = write!(out, "{t:.3}");
            }
        }
    }

    /// `/status/connections`, as the Rust pool's serde writes it.
    pub fn status_json(&self) -> String {
        let mut out = String::with_capacity(256 + self.conns.len() * 160);
        let total_reconnects: u64 = self.conns.iter().map(|c| c.reconnects).sum();
        let total_errors: u64 = self.conns.iter().map(|c| c.errors).sum();
        let pool_p95 = self
            .conns
            .iter()
            .map(|c| c.p95_ms.round() as u64)
            .max()
            .unwrap_or(0);
        out.push_str("{\"endpoint\":");
        out.push_str(&json_string(&self.config.endpoint));
        if let Some(backend) = &self.config.backend {
            out.push_str(",\"backend\":");
            out.push_str(&json_string(backend));
        }
        let _ = write!(
            out,
            ",\"active_connections\":{},\"total_reconnects\":{total_reconnects},\"total_errors\":{total_errors},\"pool_p95_latency_ms\":{pool_p95},\"connections\":[",
            self.conns.len()
        );
        for (i, c) in self.conns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"connection_id\":{},\"last_activity\":", c.id);
            self.write_time(&mut out, c.last_activity);
            let _ = write!(
                out,
                ",\"reconnects\":{},\"errors\":{},\"p95_latency_ms\":{}",
                c.reconnects,
                c.errors,
                c.p95_ms.round() as u64
            );
            if self.config.extended {
                let _ = write!(
                    out,
                    ",\"is_healthy\":{},\"remote_addr\":\"192.0.2.10:{}\"",
                    c.p95_ms <= 500.0,
                    c.remote_port
                );
            }
            out.push('}');
        }
        out.push(']');
        if self.config.extended {
            out.push_str(",\"last_updated\":");
            self.write_time(&mut out, self.now);
        }
        out.push('}');
        out
    }

    /// `/healthz`: the HTTP status and body (503 whenever the idle list is
    /// empty, however busy and well the pool is).
    pub fn health(&self) -> (u16, String) {
        let healthy = !self.conns.is_empty();
        let mut out = String::with_capacity(160);
        let _ = write!(
            out,
            "{{\"status\":\"{}\",\"timestamp\":",
            if healthy { "healthy" } else { "unhealthy" }
        );
        self.write_time(&mut out, self.now);
        let _ = write!(
            out,
            ",\"pool_healthy\":{healthy},\"active_connections\":{}",
            self.conns.len()
        );
        if self.config.extended {
            let ops: u64 = self.bucket_counts.iter().sum();
            let errors: u64 = self.conns.iter().map(|c| c.errors).sum();
            let rate = if ops > 0 {
                100.0 * errors as f64 / ops as f64
            } else {
                0.0
            };
            let avg = if ops > 0 {
                self.latency_sum as f64 / ops as f64
            } else {
                0.0
            };
            let _ = write!(out, ",\"error_rate\":{rate:.3},\"avg_latency_ms\":{avg:.3}");
        }
        out.push('}');
        (if healthy { 200 } else { 503 }, out)
    }

    /// `/metrics`: the pool's native families as its Prometheus registry
    /// writes them: HELP texts, alphabetical family order, whole-ms sum.
    pub fn metrics_text(&self) -> String {
        let ep = format!("endpoint=\"{}\"", escape_label(&self.config.endpoint));
        let mut out = String::with_capacity(2048);
        let _ = write!(
            out,
            "# HELP secure_channel_active_connections Current number of active connections in the pool\n\
             # TYPE secure_channel_active_connections gauge\n\
             secure_channel_active_connections{{{ep}}} {}\n\
             # HELP secure_channel_errors_total Total number of connection errors across the pool\n\
             # TYPE secure_channel_errors_total counter\n\
             secure_channel_errors_total{{{ep}}} {}\n\
             # HELP secure_channel_latency_ms Connection latency distribution in milliseconds\n\
             # TYPE secure_channel_latency_ms histogram\n",
            self.native_active, self.native_open_errors,
        );
        let mut cumulative = 0;
        for (i, (_, label)) in BUCKETS.iter().enumerate() {
            cumulative += self.bucket_counts[i];
            let _ = writeln!(
                out,
                "secure_channel_latency_ms_bucket{{{ep},le=\"{label}\"}} {cumulative}"
            );
        }
        let count: u64 = self.bucket_counts.iter().sum();
        let _ = write!(
            out,
            "secure_channel_latency_ms_bucket{{{ep},le=\"+Inf\"}} {count}\n\
             secure_channel_latency_ms_sum{{{ep}}} {}\n\
             secure_channel_latency_ms_count{{{ep}}} {count}\n\
             # HELP secure_channel_reconnects_total Total number of connection reconnects across the pool\n\
             # TYPE secure_channel_reconnects_total counter\n\
             secure_channel_reconnects_total{{{ep}}} {}\n",
            self.latency_sum, self.native_reconnects,
        );
        out
    }

    /// A summary for `GET /sim/state`.
    pub fn state_json(&self) -> serde_json::Value {
        let faults: serde_json::Map<String, serde_json::Value> = self
            .faults
            .iter()
            .map(|(f, spec)| (f.name().to_owned(), serde_json::json!(spec)))
            .collect();
        serde_json::json!({
            "model": self.config.model,
            "endpoint": self.config.endpoint,
            "connections": self.conns.len(),
            "idle": self.conns.len(),
            "held": self.callers.iter().filter(|c| c.held.is_some()).count(),
            "opened": self.next_id - 1,
            "native_active": self.native_active,
            "native_open_errors": self.native_open_errors,
            "operation_errors": self.operation_errors,
            "breaker_open": self.now < self.breaker_open_until,
            "load": self.config.load,
            "cleanup_interval_seconds": self.config.cleanup_interval.as_secs_f64(),
            "target_connections": self.config.connections,
            "next_connection_id": self.next_id,
            "steady": self.config.steady,
            "operations": self.operations,
            "observations": self.bucket_counts.iter().sum::<u64>(),
            "faults": faults,
            "requests": {
                "status": self.requests[Document::Status as usize],
                "health": self.requests[Document::Health as usize],
                "metrics": self.requests[Document::Metrics as usize],
            },
        })
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
