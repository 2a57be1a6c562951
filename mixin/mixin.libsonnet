// Monitoring mixin for secure-channel-exporter: Prometheus recording rules, alerts and a
// Grafana dashboard, configured through _config (config.libsonnet).
(import 'config.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
