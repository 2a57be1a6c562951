// The files scripts/generate-mixin.sh writes, by path from the repository root. The
// top-level argument `config` is merged into _config, so the same script renders a copy
// with your settings: scripts/generate-mixin.sh --config '{ exporterSelector: "job=\"sce\"" }'
function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  local groups = mixin.prometheusRules.groups + mixin.prometheusAlerts.groups;
  {
    'alerts/secure-channel.rules.yml': { groups: groups },
    'alerts/prometheusrule.yaml': {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: {
        name: mixin._config.prometheusRuleName,
        labels: mixin._config.prometheusRuleLabels,
      },
      spec: { groups: groups },
    },
  } + {
    ['dashboards/' + name]: mixin.grafanaDashboards[name]
    for name in std.objectFields(mixin.grafanaDashboards)
  }
