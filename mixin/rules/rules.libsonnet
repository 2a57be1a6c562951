// Recording rules. Conventions:
//  * Aggregations keep the cluster label, job, instance and endpoint: one series per pool.
//  * Operations = the pool's native histogram count (secure_channel_latency_ms_count): one
//    observation per read/write and one per TLS handshake.
//  * Errors = errors reported by listed connections, as counted by the exporter
//    (secure_channel_pool_connection_errors_seen_total: each connection's errors once, from
//    its first sighting, including errors it had before its first scrape). A published pool
//    never lists a used connection, so its error ratio is always 0 (docs/pool-signals.md).
//  * Latency uses the native histogram only. Its 500 ms bucket is matched as
//    le=~"500|500\\.0": Prometheus 2.x keeps le="500" as exposed, 3.x normalises it to
//    le="500.0".
//  * Record names follow level:metric:operation; the alerts use them by name.
local u = import '../lib/utils.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,
    local sel = c.exporterSelector,
    local pool = u.list([c.clusterLabel, 'job', 'instance', 'endpoint']),
    local source = u.list([c.clusterLabel, 'job', 'instance', 'source']),
    local windows = ['5m', '30m', '1h', '6h'],

    groups+: [
      {
        name: 'secure-channel-exporter.rules',
        rules:
          // Operations per second.
          [
            {
              record: 'endpoint:secure_channel_operations:rate%s' % w,
              expr: 'sum by (%s) (rate(secure_channel_latency_ms_count{%s}[%s]))' % [pool, sel, w],
            }
            for w in windows
          ]
          // Errors per second reported by listed connections, counted once per connection
          // from its first sighting, so a connection that lives shorter than a scrape
          // interval, or is dropped between scrapes, does not lose its errors to rate().
          + [
            {
              record: 'endpoint:secure_channel_pool_connection_errors_seen:rate%s' % w,
              expr: 'sum by (%s) (rate(secure_channel_pool_connection_errors_seen_total{%s}[%s]))' % [pool, sel, w],
            }
            for w in windows
          ]
          // Error ratio: errors reported by listed connections / operations.
          + [
            {
              record: 'endpoint:secure_channel_error_ratio:rate%s' % w,
              expr: 'endpoint:secure_channel_pool_connection_errors_seen:rate%s / endpoint:secure_channel_operations:rate%s' % [w, w],
            }
            for w in windows
          ]
          + [
            // Share of operations that finished within 500 ms (the pool's slow-connection
            // threshold). Below 0.95 means the operations' p95 is above 500 ms.
            {
              record: 'endpoint:secure_channel_operations_within_500ms:ratio_rate5m',
              expr: |||
                sum by (%s) (rate(secure_channel_latency_ms_bucket{%s, le=~"500|500\\.0"}[5m]))
                /
                endpoint:secure_channel_operations:rate5m
              ||| % [pool, sel],
            },
            // Failures to open connections (the pool's own counter, which steps at each
            // cleanup) seen in the last openFailureWindow: longer than one cleanup_interval.
            {
              record: 'endpoint:secure_channel_errors:increase%s' % c.openFailureWindow,
              expr: 'sum by (%s) (increase(secure_channel_errors_total{%s}[%s]))' % [pool, sel, c.openFailureWindow],
            },
            // Reconnects per second reported by listed connections, counted by the exporter
            // once per connection from its first sighting.
            {
              record: 'endpoint:secure_channel_pool_connection_reconnects_seen:rate5m',
              expr: 'sum by (%s) (rate(secure_channel_pool_connection_reconnects_seen_total{%s}[5m]))' % [pool, sel],
            },
            // Share of the exporter's fetches of one pool document (status, health,
            // metrics) that failed.
            {
              record: 'source:secure_channel_exporter_source_failures:ratio_rate10m',
              expr: |||
                sum by (%s) (rate(secure_channel_exporter_source_failures_total{%s}[10m]))
                /
                sum by (%s) (rate(secure_channel_exporter_source_requests_total{%s}[10m]))
              ||| % [source, sel, source, sel],
            },
          ],
      },
    ],
  },
}
