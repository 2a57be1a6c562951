#!/usr/bin/env bash
# The exporter's layers (docs/architecture.md): the features scrape/, rest/
# and ui/ stand on the pool layer (src/pool), the exposition layer
# (src/exposition) and, for rest/ and ui/, the views (src/view), never on
# each other's code, and pool documents are fetched in one place, the
# pool's observer. Exits 1 naming each breach.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
breach() {
  echo "layering: $1" >&2
  status=1
}

# Modules a layer may not use: `crate::<module>` or `super::<module>` from
# one of its files (comments excluded).
forbid() {
  local dir=$1
  shift
  for module in "$@"; do
    hits=$(grep -rnE "(crate|super)::${module}\b" "src/$dir" --include='*.rs' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
    [ -z "$hits" ] || breach "src/$dir uses $module:
$hits"
  done
}

forbid scrape rest ui view
forbid rest scrape ui
forbid ui scrape rest
# The views under the API and the status page know neither.
forbid view scrape rest ui app
# The layers under the features know none of them.
forbid pool scrape rest ui app
forbid exposition scrape rest ui app pool
forbid http scrape rest ui app pool

# Pool documents are fetched by the observer only: no other file calls the
# client crate's fetching methods. The exception is `check` (src/check/), a
# one-shot diagnosis of the pool's raw answers that serves nothing.
fetchers=$(grep -rnE '\.(fetch|status_until|health_until|metrics_text_until|connection_until)\(|\.(status|health|metrics_text)\(\)\.await|Monitor::builder' src --include='*.rs' \
  | grep -vE '^src/(pool/observer\.rs|sim/|check/)' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
[ -z "$fetchers" ] || breach "pool documents fetched outside src/pool/observer.rs:
$fetchers"
observer_fetches=$(grep -c 'api_client()' src/pool/observer.rs)
[ "$observer_fetches" -ge 1 ] || breach "src/pool/observer.rs no longer fetches: update this check"

if [ "$status" -eq 0 ]; then
  echo "layers ok: scrape/, rest/ and ui/ do not use each other; pool documents are fetched in src/pool/observer.rs"
fi
exit "$status"
