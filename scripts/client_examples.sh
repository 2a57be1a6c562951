#!/usr/bin/env bash
# The client crate as a publisher would check it: documentation without
# warnings, the package's file list, and both examples run against the
# simulated pool (with a token, so the authenticated path is exercised).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

RUSTDOCFLAGS="-D warnings" cargo doc --locked -p secure-channel-client --no-deps
files=$(cargo package --locked -p secure-channel-client --list --allow-dirty)
for f in README.md CHANGELOG.md LICENSE src/lib.rs examples/fetch_status.rs; do
  grep -qx "$f" <<<"$files" || { echo "package lacks $f" >&2; exit 1; }
done
if grep -Eq '^(target/|.*\.orig\.rs$|.*~$)' <<<"$files"; then
  echo "package holds stray files:" >&2; echo "$files" >&2; exit 1
fi

# --workspace: the same feature set as the test build, so nothing is rebuilt.
cargo build --locked --workspace --bins --examples
work=$(mktemp -d)
sim_pid=""
trap '[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"' EXIT
echo "example-token-123" >"$work/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$target/debug/secure-channel-sim" --web-listen-address "127.0.0.1:$port" \
  --token-file "$work/token" --model returning >"$work/sim.log" 2>&1 &
sim_pid=$!
# Wait until it listens (no curl on a fresh machine: Python).
python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the simulator did not start")
PY

out=$(POOL_TOKEN_FILE="$work/token" "$target/debug/examples/fetch_status" "http://127.0.0.1:$port" 2>&1)
echo "$out" | head -3
grep -q 'relay.example.net:443: ' <<<"$out" || { echo "fetch_status printed no status: $out" >&2; exit 1; }
grep -q 'health: ' <<<"$out" || { echo "fetch_status printed no health: $out" >&2; exit 1; }

out=$(WATCH_SECONDS=3 "$target/debug/examples/watch_health" "http://127.0.0.1:$port" 2>&1)
echo "$out"
grep -q '^(start) -> ' <<<"$out" || { echo "watch_health printed no transition: $out" >&2; exit 1; }
grep -q '^after [0-9]* polls: ' <<<"$out" || { echo "watch_health printed no snapshot: $out" >&2; exit 1; }
echo "client crate: docs clean, package complete, examples ran"
