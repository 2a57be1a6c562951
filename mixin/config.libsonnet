// Everything a user may want to change without forking the mixin. Override with
//   (import 'mixin.libsonnet') + { _config+:: { exporterSelector: 'job="sce"' } }
{
  _config+:: {
    // Series selector of the exporter's targets. Every series selector of the rules, alerts
    // and dashboards carries it, so it must match how you scrape secure-channel-exporter.
    exporterSelector: 'job="secure-channel-exporter"',

    // The label that tells clusters apart when one Prometheus, Thanos or Mimir holds several.
    // Recording rules and alerts always keep it (a missing label costs nothing), so rules
    // evaluated centrally never mix two clusters' pools.
    clusterLabel: 'cluster',
    // Dashboards get a cluster variable and filter every query on it; alert descriptions
    // name the cluster.
    showMultiCluster: false,

    // Where each alert's runbook_url points; %s is the alert name in lower case. The default
    // is the runbook in this repository, relative to its root.
    runbookURLPattern: 'docs/runbook.md#%s',

    // Dashboards.
    dashboardUID: 'secure-channel-pool',
    dashboardTitle: 'SecureChannelPool',
    dashboardTags: ['secure-channel', 'prometheus'],
    dashboardRefresh: '30s',
    dashboardTimezone: '',
    // Regex that limits the data sources the dashboard's datasource variable offers
    // (Grafana's "instance name filter"), e.g. '/^prometheus-.*/'. Empty: every Prometheus.
    datasourceFilterRegex: '',

    // Error-ratio objective: 99.9 % of operations succeed. The fast burn pages at 14.4 times
    // the budget (1h and 5m windows), the slow burn opens a ticket at 6 times (6h and 30m).
    errorBudget: 0.001,
    fastBurnFactor: 14.4,
    slowBurnFactor: 6,
    // Burn and latency alerts need this many operations per second, so that a handful of
    // failures on an idle pool cannot page anyone.
    minOperationsPerSecond: 1,
    // SecureChannelOperationsP95LatencyHigh fires when fewer than this share of operations
    // finish within the pool's 500 ms slow-connection threshold (i.e. p95 above 500 ms).
    latencyWithin500msRatio: 0.95,
    // Window over which failures to open connections are counted. The pool opens them in its
    // cleanup task, so the window must stay longer than the pool's cleanup_interval (default
    // 300 s) and shorter than the alert's 10-minute `for:`.
    openFailureWindow: '8m',
    // Reconnects per second of listed connections above which they are flapping.
    flappingReconnectsPerSecond: 0.1,
    // Share of failed fetches of one pool document above which the exporter is failing.
    sourceFailureRatio: 0.1,

    // The prometheus-operator PrometheusRule the render script writes next to the rule file.
    // Most operator installations select rules by a label (kube-prometheus-stack:
    // release: <helm release>); add it here.
    prometheusRuleName: 'secure-channel-exporter',
    prometheusRuleLabels: {
      'app.kubernetes.io/name': 'secure-channel-exporter',
      'app.kubernetes.io/component': 'alerting-rules',
    },
  },
}
