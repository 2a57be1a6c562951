#!/usr/bin/env bash
# Dashboards and alerts: static checks, then the end-to-end proof against a real Prometheus and
# Alertmanager. Single entry point, called by the project's test script.
#
#   scripts/test-dashboards-alerts.sh            # everything
#   SKIP_E2E=1 scripts/test-dashboards-alerts.sh # static checks only (no binaries needed)
#
# Installs what is missing: Debian's prometheus, prometheus-alertmanager and jsonnet (apt-get, as root
# or with sudo; the packaged services are kept from starting) and PyYAML (pip).
# Expects secure-channel-exporter and secure-channel-sim in ${CARGO_TARGET_DIR:-target}/debug/
# (build them first: cargo build --locked --bins). The end-to-end proof runs both pool models
# (published and returning simulators) side by side. Every process it starts binds 127.0.0.1,
# uses a temporary directory and is stopped at the end.
#
# Ends with one line `N passed, M failed`; exits non-zero when anything failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
BIN_DIR="$TARGET_DIR/debug"
PYTHON=${PYTHON:-python3}

passed=0
failed=0
summary=()
LOG=$(mktemp -t secure-channel-dash-alerts.XXXXXX)
POLICY_RC_D=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  rm -f "$LOG"
  if [ "$created_policy" = 1 ]; then $SUDO rm -f "$POLICY_RC_D"; fi
}
trap cleanup EXIT

SUDO=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# record NAME STATUS PASSED FAILED SECONDS
record() {
  passed=$((passed + $3))
  failed=$((failed + $4))
  summary+=("$(printf '%-4s %-58s %3d passed %3d failed %4ss' "$2" "$1" "$3" "$4" "$5")")
}

# step NAME CMD...: run CMD, show its output; a tool that prints `RESULT passed=N failed=M`
# contributes its own counts, any other command counts as one check.
step() {
  local name=$1
  shift
  echo
  echo "=== $name"
  local start=$SECONDS rc
  "$@" 2>&1 | tee "$LOG"
  rc=${PIPESTATUS[0]}
  local line p f
  line=$(grep -E '^RESULT passed=[0-9]+ failed=[0-9]+$' "$LOG" | tail -1)
  if [ -n "$line" ]; then
    p=$(sed -E 's/^RESULT passed=([0-9]+) failed=([0-9]+)$/\1/' <<<"$line")
    f=$(sed -E 's/^RESULT passed=([0-9]+) failed=([0-9]+)$/\2/' <<<"$line")
    # a non-zero exit with no failure counted is still a failure
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  elif [ "$rc" = 0 ]; then
    p=1 f=0
  else
    p=0 f=1
  fi
  local status=ok
  [ "$f" = 0 ] || status=FAIL
  record "$name" "$status" "$p" "$f" "$((SECONDS - start))"
  return 0
}

# ------------------------------------------------------------------ install what is missing
install_tools() {
  local pkgs=()
  { command -v prometheus && command -v promtool; } >/dev/null || pkgs+=(prometheus)
  { command -v prometheus-alertmanager && command -v amtool; } >/dev/null || pkgs+=(prometheus-alertmanager)
  command -v jsonnet >/dev/null || pkgs+=(jsonnet)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "installing ${pkgs[*]} from Debian"
    # Keep the packages' services from starting (they would listen on all interfaces).
    if [ ! -e "$POLICY_RC_D" ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC_D" >/dev/null && $SUDO chmod 755 "$POLICY_RC_D" && created_policy=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" || return 1
    if [ "$created_policy" = 1 ]; then $SUDO rm -f "$POLICY_RC_D"; created_policy=0; fi
  fi
  if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
    echo "installing PyYAML with pip"
    "$PYTHON" -m pip install --quiet pyyaml || return 1
  fi
  prometheus --version 2>&1 | head -1
  prometheus-alertmanager --version 2>&1 | head -1
  jsonnet --version 2>&1 | head -1
  "$PYTHON" -c 'import sys, yaml; print("python", sys.version.split()[0], "PyYAML", yaml.__version__)'
}

amtool_route() { # SEVERITY EXPECTED_RECEIVER
  local got
  got=$(amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
    "severity=$1" alertname=SecureChannelPoolDown job=secure-channel-exporter 2>/dev/null)
  echo "severity=$1 -> $got (expected $2)"
  [ "$got" = "$2" ]
}

run_e2e() {
  local missing=0 b
  for b in secure-channel-exporter secure-channel-sim; do
    if [ ! -x "$BIN_DIR/$b" ]; then
      echo "missing $BIN_DIR/$b: build it first with 'cargo build --locked --bins'"
      missing=1
    fi
  done
  [ "$missing" = 0 ] || return 1
  "$PYTHON" tests/e2e/e2e.py --bin-dir "$BIN_DIR"
}

total_start=$SECONDS
step "install Prometheus, Alertmanager, jsonnet and PyYAML if missing" install_tools
step "promtool check rules alerts/secure-channel.rules.yml" promtool check rules alerts/secure-channel.rules.yml
step "promtool test rules alerts/tests/*.yml" promtool test rules alerts/tests/*.yml
step "rule files and dashboards are what the mixin renders" scripts/generate-mixin.sh --check
step "rule conventions, runbook, coverage, mutations" "$PYTHON" alerts/check_rules.py
step "dashboard lint" "$PYTHON" tests/e2e/lint_dashboards.py
step "dashboard lint catches every rule (self-test)" "$PYTHON" tests/e2e/test_lint_dashboards.py
step "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
step "amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config deploy/alertmanager/alertmanager.yml
step "example Alertmanager routes critical to pager" amtool_route critical pager
step "example Alertmanager routes warning to ticket" amtool_route warning ticket
if [ "${SKIP_E2E:-0}" = 1 ]; then
  echo
  echo "=== end-to-end proof skipped (SKIP_E2E=1)"
else
  step "end-to-end: 2 pool models -> exporters -> Prometheus -> Alertmanager" run_e2e
fi

echo
echo "=== dashboards and alerts summary ($((SECONDS - total_start))s)"
printf '%s\n' "${summary[@]}"
echo "${passed} passed, ${failed} failed"
[ "$failed" = 0 ]
