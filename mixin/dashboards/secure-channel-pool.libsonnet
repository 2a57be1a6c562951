// The SecureChannelPool dashboard: pool overview, listed connections, exporter. Written for
// both pool models (docs/pool-signals.md): what a panel shows for a published pool is said
// in its description.
local g = import '../lib/dashboard.libsonnet';
local u = import '../lib/utils.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local multi = c.showMultiCluster,
    local cl = c.clusterLabel,

    // Matchers of each level: the exporter's own series, a pool's series, one connection's.
    // With several clusters, a variable named after the cluster label filters every query.
    local clusterMatcher = if multi then '%s=~"$%s"' % [cl, cl] else '',
    local exporter = u.list([c.exporterSelector, clusterMatcher, 'job=~"$job"', 'instance=~"$instance"']),
    local pool = exporter + ', endpoint=~"$endpoint"',
    local connection = pool + ', connection_id=~"$connection_id"',
    // Aggregation labels; the cluster label comes first when there are several clusters.
    local by(labels) = u.list([if multi then cl else ''] + labels),
    local byExporter = by(['job', 'instance']),
    local byPool = by(['job', 'instance', 'endpoint']),
    local byConnection = by(['job', 'instance', 'endpoint', 'connection_id']),
    local bySource = by(['job', 'instance', 'source']),
    local legend(text) = if multi then '%s {{%s}}' % [text, cl] else text,
    local poolLegend = legend('{{instance}} {{endpoint}}'),
    local connectionLegend = legend('{{connection_id}} {{instance}}'),

    local q = { exporter: exporter, pool: pool, connection: connection, byExporter: byExporter, byPool: byPool, byConnection: byConnection, bySource: bySource },
    local rate(metric) = 'sum by (%s) (rate(%s{%s}[$__rate_interval]))' % [byPool, metric, pool],
    local quantile(p) = |||
      histogram_quantile(%s, sum by (%s, le) (rate(secure_channel_latency_ms_bucket{%s}[$__rate_interval])))
      / 1000
    ||| % [u.num(p), byPool, pool],
    local errorRatio = |||
      %s
      /
      %s
    ||| % [rate('secure_channel_pool_connection_errors_seen_total'), rate('secure_channel_latency_ms_count')],

    local slowBurn = c.slowBurnFactor * c.errorBudget,
    local fastBurn = c.fastBurnFactor * c.errorBudget,
    local percent(ratio) = u.num(ratio * 100) + ' %',
    local burnThresholds = [['green', null], ['orange', u.round(slowBurn)], ['red', u.round(fastBurn)]],
    local upMapping = g.valueMapping({ '0': ['DOWN', 'red'], '1': ['UP', 'green'] }),

    local overview = [
      g.row(1, 'Pool overview', 0),
      g.stat(
        2,
        'Pools up',
        "secure_channel_up per exporter: UP when the exporter fetched and decoded the pool's status document on its last scrape. DOWN pages as SecureChannelPoolDown after 2 minutes.",
        g.grid(0, 1, 3, 4),
        'none',
        [g.target('min by (%(byExporter)s) (secure_channel_up{%(exporter)s})' % q, legend('{{instance}}'))],
        mappings=upMapping,
      ),
      g.stat(
        3,
        'Idle connections available (/healthz)',
        u.oneLine(|||
          secure_channel_pool_healthy: the pool's own /healthz verdict. The pool answers 503
          'unhealthy' whenever its idle list is empty, which is normal on a busy pool whose
          callers hold every connection (published pools never get a used connection back), so
          'none idle' is not an outage and pages nobody. A relay outage shows as Failures to
          open connections, and as this panel going empty (the health document hangs).
        |||),
        g.grid(3, 1, 3, 4),
        'none',
        [g.target('min by (%(byPool)s) (secure_channel_pool_healthy{%(pool)s})' % q, poolLegend)],
        mappings=g.valueMapping({ '0': ['None idle (503)', 'blue'], '1': ['Idle available', 'green'] }),
      ),
      g.stat(
        4,
        'Idle connections listed',
        u.oneLine(|||
          secure_channel_pool_active_connections: the connections the status document lists,
          which are the idle ones (published pools list only idle connections; builds that
          return connections also list used ones between checkouts). 0 is normal on a busy
          pool and alerts nobody; the in-use count is not reported by the pool.
        |||),
        g.grid(6, 1, 3, 4),
        'none',
        [g.target('sum by (%(byPool)s) (secure_channel_pool_active_connections{%(pool)s})' % q, poolLegend)],
        decimals=0,
      ),
      g.stat(
        7,
        'Operations',
        u.oneLine(|||
          Reads, writes and TLS handshakes per second across the pool: rate of the native
          histogram's observation count (one observation per read/write and one per
          handshake). The busy-pool signal: a pool that serves operations is working, whatever
          /healthz says.
        |||),
        g.grid(9, 1, 3, 4),
        'ops',
        [g.target(rate('secure_channel_latency_ms_count'), poolLegend)],
        colorMode='none',
      ),
      g.stat(
        6,
        'p95 latency (native histogram)',
        u.oneLine(|||
          95th percentile of all operations (TLS handshakes included) from the pool's native
          latency histogram (whole-ms buckets, shown in seconds), over $__rate_interval. Red
          above the pool's 500 ms slow-connection threshold, where
          SecureChannelOperationsP95LatencyHigh pages after 10 minutes (5-minute window).
        |||),
        g.grid(12, 1, 3, 4),
        's',
        [g.target(std.rstripChars(quantile(0.95), '\n'), poolLegend)],
        thresholds=[['green', null], ['orange', 0.5]],
      ),
      g.stat(
        25,
        'Connections opened',
        u.oneLine(|||
          Connections the pool opened per second (secure_channel_pool_connections_opened_total,
          derived by the exporter from the growth of the highest connection_id listed; it lags
          while the pool lists nothing and survives pool restarts). On a busy published pool
          most checkouts open a new connection, so this follows operations divided by
          operations per checkout.
        |||),
        g.grid(15, 1, 3, 4),
        'cps',
        [g.target(rate('secure_channel_pool_connections_opened_total'), poolLegend)],
        colorMode='none',
      ),
      g.stat(
        26,
        'Failures to open connections',
        u.oneLine(|||
          Failures of the pool to open a connection to its relay in the selected time range
          (increase of the native secure_channel_errors_total, which steps at each cleanup,
          every cleanup_interval). Red from 1: failures in consecutive cleanups page as
          SecureChannelPoolCannotOpenConnections.
        |||),
        g.grid(18, 1, 3, 4),
        'none',
        [g.target('sum by (%(byPool)s) (increase(secure_channel_errors_total{%(pool)s}[$__range]))' % q, poolLegend, instant=true)],
        thresholds=[['green', null], ['red', 1]],
      ),
      g.stat(
        5,
        'Error ratio (returning builds)',
        u.oneLine(|||
          Errors reported by listed connections (secure_channel_pool_connection_errors_seen_total:
          each connection's errors counted once from its first sighting) over operations
          (native histogram count), over $__rate_interval. Only builds that return connections
          report errors: on a published pool this is always 0 because used connections are
          never listed again (see docs/pool-signals.md). Orange from %s (slow-burn ticket), red
          from %s (fast-burn page) of the %s objective.
        ||| % [percent(slowBurn), percent(fastBurn), percent(1 - c.errorBudget)]),
        g.grid(21, 1, 3, 4),
        'percentunit',
        [g.target(std.rstripChars(errorRatio, '\n'), poolLegend)],
        thresholds=burnThresholds,
        decimals=2,
      ),
      g.timeseries(
        8,
        'Error ratio (errors reported by listed connections; returning builds)',
        u.oneLine(|||
          Errors reported by listed connections / operations per pool. Numerator: rate of
          secure_channel_pool_connection_errors_seen_total (the exporter counts each listed
          connection's errors once, from its first sighting, including those before its first
          scrape). Denominator: rate of the native secure_channel_latency_ms_count (handshakes
          included). A published pool never lists a used connection, so its ratio stays 0
          whatever the callers see. Lines: %s slow-burn and %s fast-burn thresholds.
        ||| % [percent(slowBurn), percent(fastBurn)]),
        g.grid(0, 5, 12, 8),
        'percentunit',
        [g.target(std.rstripChars(errorRatio, '\n'), poolLegend)],
        thresholds=burnThresholds,
        thresholdsStyle='line+area',
      ),
      g.timeseries(
        9,
        'Operation latency (native histogram) and slowest listed connection',
        u.oneLine(|||
          p50, p95 and p99 of all operations from the pool's native latency histogram over
          $__rate_interval (one observation per read/write and per TLS handshake, whole ms,
          interpolated inside buckets). The JSON gauge secure_channel_pool_p95_latency_seconds
          is the slowest listed connection's p95: 0 on a published pool (listed connections are
          unused), and never above 500 ms for long because the pool drops such connections.
          The line is the pool's 500 ms slow-connection threshold.
        |||),
        g.grid(12, 5, 12, 8),
        's',
        [
          g.target(std.rstripChars(quantile(p), '\n'), 'p%s %s' % [u.num(p * 100), poolLegend])
          for p in [0.5, 0.95, 0.99]
        ] + [
          g.target('max by (%(byPool)s) (secure_channel_pool_p95_latency_seconds{%(pool)s})' % q, 'slowest listed connection p95 (JSON) ' + poolLegend),
        ],
        thresholds=[['green', null], ['red', 0.5]],
        thresholdsStyle='line+area',
      ),
      g.timeseries(
        10,
        'Idle connections: listed and native gauge',
        u.oneLine(|||
          Idle connections listed in the status document (secure_channel_pool_active_connections)
          and the pool's native gauge secure_channel_active_connections, which the pool sets to
          idle+1 at each checkout and to idle at cleanup, so the two disagree between cleanups.
          Neither counts connections in use; both are 0 or 1 on a busy published pool.
        |||),
        g.grid(0, 13, 8, 8),
        'none',
        [
          g.target('sum by (%(byPool)s) (secure_channel_pool_active_connections{%(pool)s})' % q, 'listed (JSON) ' + poolLegend),
          g.target('sum by (%(byPool)s) (secure_channel_active_connections{%(pool)s})' % q, 'native gauge ' + poolLegend),
        ],
        decimals=0,
      ),
      g.timeseries(
        27,
        'Connections opened and failures to open',
        u.oneLine(|||
          Connections opened per second (exporter-derived from the growth of the highest
          connection_id listed; it catches up when the pool lists a connection again) and
          failures to open a connection per second (native secure_channel_errors_total, counted
          at each cleanup). Opened tracks checkouts on a busy published pool; failures mean the
          relay cannot be reached (SecureChannelPoolCannotOpenConnections).
        |||),
        g.grid(8, 13, 8, 8),
        'cps',
        [
          g.target(rate('secure_channel_pool_connections_opened_total'), 'opened ' + poolLegend),
          g.target(rate('secure_channel_errors_total'), 'failed to open ' + poolLegend),
        ],
      ),
      g.timeseries(
        12,
        'Operations and errors reported',
        u.oneLine(|||
          Operations per second (native histogram count: reads, writes and TLS handshakes) and
          errors per second reported by listed connections
          (secure_channel_pool_connection_errors_seen_total; always 0 on a published pool,
          which hides the errors of checked-out connections).
        |||),
        g.grid(16, 13, 8, 8),
        'ops',
        [
          g.target(rate('secure_channel_latency_ms_count'), 'operations ' + poolLegend),
          g.target(rate('secure_channel_pool_connection_errors_seen_total'), 'errors reported ' + poolLegend),
        ],
      ),
      g.timeseries(
        11,
        'Reconnect rate',
        u.oneLine(|||
          Reconnects per second: reported by listed connections and counted by the exporter
          once per connection (secure_channel_pool_connection_reconnects_seen_total; what
          SecureChannelConnectionFlapping alerts on above %s/s), and the pool's native
          secure_channel_reconnects_total. Listed connections of a published pool are unused
          idle ones whose reconnects stay 0.
        ||| % u.num(c.flappingReconnectsPerSecond)),
        g.grid(0, 21, 12, 8),
        'cps',
        [
          g.target(rate('secure_channel_pool_connection_reconnects_seen_total'), 'listed connections ' + poolLegend),
          g.target(rate('secure_channel_reconnects_total'), 'native ' + poolLegend),
        ],
        thresholds=[['green', null], ['red', c.flappingReconnectsPerSecond]],
        thresholdsStyle='line+area',
      ),
      g.timeseries(
        28,
        'Operations within 500 ms',
        u.oneLine(|||
          Share of operations (TLS handshakes included) that finished within 500 ms, from the
          native histogram's le="500" bucket (le="500.0" on Prometheus 3). Below the %s line
          the operations' p%s is above 500 ms: SecureChannelOperationsP95LatencyHigh pages when
          that lasts 10 minutes (5-minute window, at least %s operation/s).
        ||| % [percent(c.latencyWithin500msRatio), u.num(c.latencyWithin500msRatio * 100), u.num(c.minOperationsPerSecond)]),
        g.grid(12, 21, 12, 8),
        'percentunit',
        [g.target(|||
          sum by (%(byPool)s) (rate(secure_channel_latency_ms_bucket{%(pool)s, le=~"500|500\\.0"}[$__rate_interval]))
          /
          sum by (%(byPool)s) (rate(secure_channel_latency_ms_count{%(pool)s}[$__rate_interval]))
        ||| % q, poolLegend)],
        thresholds=[['red', null], ['green', c.latencyWithin500msRatio]],
        thresholdsStyle='line+area',
      ),
    ],

    local connections = [
      g.row(
        13,
        'Listed connections',
        29,
        u.oneLine(|||
          Per-connection series of the status document. Published pools list only idle
          connections (never-used, all-zero stats, last_activity = creation time); a busy
          published pool lists none. Builds that return connections list used ones between
          checkouts, with their errors, reconnects and p95.
        |||),
      ),
      g.table(
        14,
        'Listed connections',
        u.oneLine(|||
          One row per connection listed at the end of the time range: time since its last
          activity (its creation time if never used), its p95 latency (JSON, HDR histogram;
          0 = no samples), and the errors and reconnects it reported inside the selected time
          range. A busy published pool lists no connection, so the table is empty then. Click a
          column header to sort.
        |||),
        g.grid(0, 30, 24, 9),
        [
          g.target('time() - max by (%(byConnection)s) (secure_channel_connection_last_activity_timestamp_seconds{%(connection)s})' % q, instant=true, table=true),
          g.target('max by (%(byConnection)s) (secure_channel_connection_p95_latency_seconds{%(connection)s})' % q, instant=true, table=true),
          g.target('sum by (%(byConnection)s) (increase(secure_channel_connection_errors_total{%(connection)s}[$__range]))' % q, instant=true, table=true),
          g.target('sum by (%(byConnection)s) (increase(secure_channel_connection_reconnects_total{%(connection)s}[$__range]))' % q, instant=true, table=true),
        ],
        overrides=[
          {
            matcher: { id: 'byName', options: 'Idle for' },
            properties: [
              { id: 'unit', value: 's' },
              { id: 'decimals', value: 1 },
              { id: 'custom.cellOptions', value: { type: 'color-text' } },
              { id: 'thresholds', value: g.thresholds([['green', null]]) },
            ],
          },
          {
            matcher: { id: 'byName', options: 'p95 latency' },
            properties: [
              { id: 'unit', value: 's' },
              { id: 'custom.cellOptions', value: { type: 'color-text' } },
              { id: 'thresholds', value: g.thresholds([['green', null], ['red', 0.5]]) },
            ],
          },
          {
            matcher: { id: 'byName', options: 'Errors in range' },
            properties: [{ id: 'unit', value: 'none' }, { id: 'decimals', value: 0 }],
          },
          {
            matcher: { id: 'byName', options: 'Reconnects in range' },
            properties: [{ id: 'unit', value: 'none' }, { id: 'decimals', value: 0 }],
          },
        ],
        transformations=[
          { id: 'merge', options: {} },
          {
            id: 'convertFieldType',
            options: { fields: {}, conversions: [{ targetField: 'connection_id', destinationType: 'number' }] },
          },
          {
            id: 'organize',
            options: {
              excludeByName: { Time: true, job: true },
              local columns = (if multi then [cl] else []) + ['instance', 'endpoint', 'connection_id', 'Value #A', 'Value #B', 'Value #C', 'Value #D'],
              indexByName: { [columns[i]]: i for i in std.range(0, std.length(columns) - 1) },
              renameByName: {
                connection_id: 'Connection',
                'Value #A': 'Idle for',
                'Value #B': 'p95 latency',
                'Value #C': 'Errors in range',
                'Value #D': 'Reconnects in range',
              },
            },
          },
        ],
        sortBy=[{ displayName: 'p95 latency', desc: true }],
      ),
      g.timeseries(
        15,
        'p95 latency per listed connection',
        u.oneLine(|||
          Each listed connection's p95 latency from the JSON status (HDR histogram; 0 = no
          samples, the case of every connection a published pool lists). The pool drops
          connections above the 500 ms line at checkout and cleanup, so slow operations show in
          the native histogram, not here.
        |||),
        g.grid(0, 39, 12, 8),
        's',
        [g.target('max by (%(byConnection)s) (secure_channel_connection_p95_latency_seconds{%(connection)s})' % q, connectionLegend)],
        thresholds=[['green', null], ['red', 0.5]],
        thresholdsStyle='line+area',
      ),
      g.timeseries(
        16,
        'Errors per listed connection',
        u.oneLine(|||
          Errors per second reported by each listed connection (rate of the per-connection
          errors counter from the JSON status). Only builds that return connections list used
          ones; a connection that errs between two scrapes and is dropped is counted by
          secure_channel_pool_connection_errors_seen_total, not here.
        |||),
        g.grid(12, 39, 12, 8),
        'cps',
        [g.target('sum by (%(byConnection)s) (rate(secure_channel_connection_errors_total{%(connection)s}[$__rate_interval]))' % q, connectionLegend)],
      ),
      g.timeseries(
        17,
        'Reconnects per listed connection',
        u.oneLine(|||
          Reconnects per second on each listed connection (rate of the per-connection
          reconnects counter from the JSON status). Flapping connections of builds that return
          connections stand out here.
        |||),
        g.grid(0, 47, 12, 8),
        'cps',
        [g.target('sum by (%(byConnection)s) (rate(secure_channel_connection_reconnects_total{%(connection)s}[$__rate_interval]))' % q, connectionLegend)],
      ),
      g.timeseries(
        18,
        'Time since last activity per listed connection',
        u.oneLine(|||
          Seconds since each listed connection's last activity (Prometheus time minus the
          pool's last_activity; clock skew between the two hosts shows up here). For an idle
          connection that was never used this is the time since it was created, which grows on
          a quiet pool until the connection is closed at 30 minutes: not a fault.
        |||),
        g.grid(12, 47, 12, 8),
        's',
        [g.target('time() - max by (%(byConnection)s) (secure_channel_connection_last_activity_timestamp_seconds{%(connection)s})' % q, connectionLegend)],
      ),
    ],

    local exporterRow = [
      g.row(19, 'Exporter', 55),
      g.stateTimeline(
        20,
        'Source up',
        u.oneLine(|||
          secure_channel_exporter_source_up per pool document (status, health, metrics): ok
          when the exporter fetched it successfully on that scrape. A failing source never
          hides the others.
        |||),
        g.grid(0, 56, 12, 7),
        [g.target('min by (%(bySource)s) (secure_channel_exporter_source_up{%(exporter)s})' % q, legend('{{source}} {{instance}}'))],
        mappings=g.valueMapping({ '0': ['failing', 'red'], '1': ['ok', 'green'] }),
        thresholds=[['red', null], ['green', 1]],
      ),
      g.timeseries(
        21,
        'Source fetch duration',
        u.oneLine(|||
          How long the exporter's last fetch of each pool document took
          (secure_channel_exporter_source_duration_seconds). The fetches run concurrently
          inside the scrape deadline.
        |||),
        g.grid(12, 56, 12, 7),
        's',
        [g.target('max by (%(bySource)s) (secure_channel_exporter_source_duration_seconds{%(exporter)s})' % q, legend('{{source}} {{instance}}'))],
      ),
      g.timeseries(
        22,
        'Source failures by reason',
        u.oneLine(|||
          Failed fetches per second by pool document and reason (connect, timeout, status,
          unauthorized, too_large, decode). SecureChannelExporterSourceFailing fires when more
          than %s of a document's fetches fail for 10 minutes.
        ||| % percent(c.sourceFailureRatio)),
        g.grid(0, 63, 12, 7),
        'reqps',
        [g.target(
          'sum by (%s) (rate(secure_channel_exporter_source_failures_total{%s}[$__rate_interval]))' % [by(['job', 'instance', 'source', 'reason']), exporter],
          legend('{{source}} {{reason}} {{instance}}'),
        )],
      ),
      g.timeseries(
        23,
        'Connections omitted',
        u.oneLine(|||
          Connections the exporter left out of its per-connection series on the last scrape
          because of its cardinality cap (secure_channel_exporter_connections_omitted). Should
          be 0.
        |||),
        g.grid(12, 63, 6, 7),
        'none',
        [g.target('max by (%(byExporter)s) (secure_channel_exporter_connections_omitted{%(exporter)s})' % q, legend('{{instance}}'))],
        thresholds=[['green', null], ['orange', 1]],
        thresholdsStyle='line+area',
        decimals=0,
      ),
      g.stat(
        24,
        'Exporter target up',
        u.oneLine(|||
          Prometheus' own up series for the exporter target: DOWN when the scrape itself
          failed (then every panel above is blind). SecureChannelExporterDown pages after 5
          minutes.
        |||),
        g.grid(18, 63, 6, 7),
        'none',
        [g.target('min by (%(byExporter)s) (up{%(exporter)s})' % q, legend('{{instance}}'))],
        mappings=upMapping,
      ),
    ],

    // Each variable narrows the ones after it: cluster -> job -> instance -> endpoint ->
    // connection. job lists the jobs among the exporter's targets (exporterSelector).
    local variables =
      [g.datasourceVariable(c.datasourceFilterRegex)]
      + (if multi then [g.queryVariable(cl, 'Cluster', 'label_values(secure_channel_up{%s}, %s)' % [c.exporterSelector, cl])] else [])
      + [
        g.queryVariable('job', 'Job', 'label_values(secure_channel_up{%s}, job)' % u.list([c.exporterSelector, clusterMatcher])),
        g.queryVariable('instance', 'Instance', 'label_values(secure_channel_up{%s}, instance)' % u.list([c.exporterSelector, clusterMatcher, 'job=~"$job"'])),
        g.queryVariable('endpoint', 'Endpoint', 'label_values(secure_channel_pool_info{%s}, endpoint)' % exporter),
        g.queryVariable('connection_id', 'Connection', 'label_values(secure_channel_connection_last_activity_timestamp_seconds{%s}, connection_id)' % pool, sort=3),
      ],

    'secure-channel-pool.json': {
      uid: c.dashboardUID,
      title: c.dashboardTitle,
      description: "SecureChannelPool fleet, per-connection and exporter view from secure-channel-exporter. Alerts and runbook: alerts/ and docs/runbook.md in the exporter's repository.",
      tags: c.dashboardTags,
      editable: false,
      graphTooltip: 1,
      schemaVersion: 39,
      version: 1,
      id: null,
      fiscalYearStartMonth: 0,
      liveNow: false,
      refresh: c.dashboardRefresh,
      time: { from: 'now-1h', to: 'now' },
      timepicker: {},
      timezone: c.dashboardTimezone,
      weekStart: '',
      links: [],
      annotations: {
        list: [{
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }],
      },
      templating: { list: variables },
      panels: overview + connections + exporterRow,
    },
  },
}
