#!/usr/bin/env bash
# Render the monitoring mixin (mixin/) into the shipped rule files and dashboards:
#
#   scripts/generate-mixin.sh            # rewrite alerts/secure-channel.rules.yml,
#                                        # alerts/prometheusrule.yaml and dashboards/*.json
#   scripts/generate-mixin.sh --check    # exit 1 (with a diff) if a shipped file has drifted
#   scripts/generate-mixin.sh --config '{ showMultiCluster: true }' --output-dir /tmp/out
#   scripts/generate-mixin.sh --config '{ prometheusRuleLabels+: { release: "kube-prometheus-stack" } }' \
#     --print alerts/prometheusrule.yaml | kubectl apply -f -
#
# Needs jsonnet (Debian: apt-get install jsonnet) and PyYAML.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/mixin_render.py "$@"
