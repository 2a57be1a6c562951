// Alerts, written for both behaviours of the pool (docs/pool-signals.md):
//  * "published" pools list only idle connections and never get a used connection back, so a
//    busy healthy pool lists nothing, /healthz answers 503 and active_connections is 0, and
//    no document carries the errors of operations;
//  * "returning" builds give used connections back, so the status lists them, with their
//    errors, reconnects and p95, between checkouts.
// No alert may fire on a healthy busy or quiet pool of either kind. That is why there is no
// alert on /healthz, on active_connections == 0, on the JSON p95 gauge (the pool drops a
// connection as soon as its p95 passes 500 ms, so the gauge never stays above it) or on
// last_activity (on a quiet pool it is the creation time of an idle connection).
//
// `severity: critical` pages, `severity: warning` is a ticket. Every alert has a runbook
// section (docs/runbook.md) whose anchor is the alert name in lower case.
//
// The pool's own secure_channel_errors_total counts failures to open connections. The pool
// opens them in its cleanup task (every cleanup_interval, default 300 s), so the counter moves
// in steps at most once per cleanup. SecureChannelPoolCannotOpenConnections needs a step in
// every openFailureWindow (8 minutes) for 10 minutes: one failing cleanup (a step visible for
// 8 minutes) never pages, failures in two or more consecutive cleanups do.
local u = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local pool = u.list([c.clusterLabel, 'job', 'instance', 'endpoint']),
    local budget = u.num(c.errorBudget),
    local budgetPercent = u.num(c.errorBudget * 100),
    local minOps = u.num(c.minOperationsPerSecond),
    // "job X" or, with several clusters, "job X in cluster Y".
    local where = 'job {{ $labels.job }}' + (if c.showMultiCluster then ' in cluster {{ $labels.%s }}' % c.clusterLabel else ''),

    local alert(name, expr, forDuration, severity, summary, description) = {
      alert: name,
      expr: expr,
      'for': forDuration,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: u.oneLine(description),
        runbook_url: c.runbookURLPattern % std.asciiLower(name),
      },
    },

    local burn(name, factor, long, short, forDuration, severity, summary, description) = alert(
      name,
      |||
        (
          endpoint:secure_channel_error_ratio:rate%(long)s > (%(factor)s * %(budget)s)
        and
          endpoint:secure_channel_error_ratio:rate%(short)s > (%(factor)s * %(budget)s)
        )
        and on (%(pool)s)
          endpoint:secure_channel_operations:rate%(short)s >= %(minOps)s
      ||| % { long: long, short: short, factor: u.num(factor), budget: budget, pool: pool, minOps: minOps },
      forDuration,
      severity,
      summary,
      description,
    ),

    groups+: [
      {
        name: 'secure-channel-exporter.alerts',
        rules: [
          alert(
            'SecureChannelExporterDown',
            'up{%s} == 0' % c.exporterSelector,
            '5m',
            'critical',
            'secure-channel-exporter target is down; the pool behind it is unobserved.',
            |||
              Prometheus has failed to scrape {{ $labels.instance }} (%s) for 5 minutes
              (up = {{ $value }}). Every other alert for this pool is blind until the
              exporter answers again.
            ||| % where,
          ),
          alert(
            'SecureChannelPoolDown',
            'secure_channel_up{%s} == 0' % c.exporterSelector,
            '2m',
            'critical',
            'The SecureChannelPool behind {{ $labels.instance }} does not answer its status document.',
            |||
              secure-channel-exporter {{ $labels.instance }} (%s) has not fetched and decoded
              the pool's status document for 2 minutes (secure_channel_up = {{ $value }}): the
              pool is down or unreachable, answers something unusable, or is blocked by a relay
              outage (the pool holds its lock while it retries opening connections, so
              /status/connections and /healthz hang for up to 30 s).
            ||| % where,
          ),
          alert(
            'SecureChannelPoolCannotOpenConnections',
            'endpoint:secure_channel_errors:increase%s > 0' % c.openFailureWindow,
            '10m',
            'critical',
            'SecureChannelPool {{ $labels.endpoint }} keeps failing to open connections to its relay.',
            |||
              The pool for {{ $labels.endpoint }} behind {{ $labels.instance }} (%s) has failed
              to open connections in every cleanup for 10 minutes (secure_channel_errors_total
              rose by {{ $value | printf "%%.0f" }} in the last %s): the relay is unreachable or
              refuses the TLS handshake, so callers cannot get new connections.
            ||| % [where, u.words(c.openFailureWindow)],
          ),
          burn(
            'SecureChannelErrorBudgetFastBurn',
            c.fastBurnFactor,
            '1h',
            '5m',
            '2m',
            'critical',
            'SecureChannelPool {{ $labels.endpoint }} is failing operations fast.',
            |||
              {{ $value | humanizePercentage }} of operations on {{ $labels.endpoint }}
              (instance {{ $labels.instance }}, %s) failed over the last hour, as reported by
              the connections the pool lists, and the last 5 minutes are as bad: more than %s
              times the %s %% error budget. At this rate %s %% of a 30-day budget burns every
              hour.
            ||| % [where, u.num(c.fastBurnFactor), budgetPercent, u.num(c.fastBurnFactor * 100 / 720)],
          ),
          burn(
            'SecureChannelErrorBudgetSlowBurn',
            c.slowBurnFactor,
            '6h',
            '30m',
            '15m',
            'warning',
            'SecureChannelPool {{ $labels.endpoint }} fails more operations than budgeted.',
            |||
              {{ $value | humanizePercentage }} of operations on {{ $labels.endpoint }}
              (instance {{ $labels.instance }}, %s) failed over the last 6 hours, as reported
              by the connections the pool lists, and the last 30 minutes are as bad: more than
              %s times the %s %% error budget.
            ||| % [where, u.num(c.slowBurnFactor), budgetPercent],
          ),
          alert(
            'SecureChannelOperationsP95LatencyHigh',
            |||
              endpoint:secure_channel_operations_within_500ms:ratio_rate5m < %s
              and on (%s)
                endpoint:secure_channel_operations:rate5m >= %s
            ||| % [u.num(c.latencyWithin500msRatio), pool, minOps],
            '10m',
            'critical',
            'SecureChannelPool {{ $labels.endpoint }} operations are slower than 500 ms at p%s.' % u.num(c.latencyWithin500msRatio * 100),
            |||
              Only {{ $value | humanizePercentage }} of the operations on {{ $labels.endpoint }}
              (instance {{ $labels.instance }}, %s) finished within 500 ms over the last 5
              minutes (native latency histogram, which also counts TLS handshakes); p%s is
              above the pool's 500 ms slow-connection threshold.
            ||| % [where, u.num(c.latencyWithin500msRatio * 100)],
          ),
          alert(
            'SecureChannelConnectionFlapping',
            'endpoint:secure_channel_pool_connection_reconnects_seen:rate5m > %s' % u.num(c.flappingReconnectsPerSecond),
            '10m',
            'warning',
            'Connections of SecureChannelPool {{ $labels.endpoint }} are flapping.',
            |||
              The connections listed by {{ $labels.endpoint }} (instance {{ $labels.instance }},
              %s) reconnect {{ printf "%%.2f" $value }} times per second (threshold %s/s, i.e.
              %s per minute) and have for 10 minutes.
            ||| % [where, u.num(c.flappingReconnectsPerSecond), u.num(c.flappingReconnectsPerSecond * 60)],
          ),
          alert(
            'SecureChannelExporterSourceFailing',
            'source:secure_channel_exporter_source_failures:ratio_rate10m > %s' % u.num(c.sourceFailureRatio),
            '10m',
            'warning',
            "secure-channel-exporter {{ $labels.instance }} cannot fetch the pool's {{ $labels.source }} document.",
            |||
              {{ $value | humanizePercentage }} of the fetches of the pool's {{ $labels.source }}
              document by {{ $labels.instance }} (%s) failed over the last 10 minutes
              (threshold %s %%); see secure_channel_exporter_source_failures_total for the
              reason.
            ||| % [where, u.num(c.sourceFailureRatio * 100)],
          ),
          alert(
            'SecureChannelConnectionsOmitted',
            'secure_channel_exporter_connections_omitted{%s} > 0' % c.exporterSelector,
            '30m',
            'warning',
            'secure-channel-exporter {{ $labels.instance }} leaves connections out of its metrics.',
            |||
              {{ $labels.instance }} (%s) has omitted {{ $value }} connections from its
              per-connection metrics for 30 minutes because the pool has more connections than
              the exporter's cardinality cap.
            ||| % where,
          ),
        ],
      },
    ],
  },
}
