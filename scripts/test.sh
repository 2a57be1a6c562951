#!/usr/bin/env bash
# The whole test suite: unit and black-box tests of the real binaries, then
# the dashboards and alert rules proven against a real Prometheus and
# Alertmanager. Installs what it needs when missing (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (Debian)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "==> cargo test (unit tests and black-box tests of the binaries)"
cargo test --locked

echo "==> deployment examples and README flags against the binary"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 tests/deploy_check.py "${CARGO_TARGET_DIR:-target}/debug/secure-channel-exporter"

echo "==> soak (short): exporter RSS and fds level off under churn and faults"
python3 scripts/soak.py --scrapes 1000 --bin-dir "${CARGO_TARGET_DIR:-target}/debug"

if [ -x scripts/test-dashboards-alerts.sh ]; then
  echo "==> dashboards and alerts against real Prometheus and Alertmanager"
  scripts/test-dashboards-alerts.sh
fi
