#!/usr/bin/env bash
# Instructions per scrape of two exporter builds, counted by callgrind: the
# A/B that a shared, noisy machine cannot spoil (wall-clock comparisons
# there move by ±25 %; instruction counts repeat within about 1 %).
#
#   scripts/callgrind-ab.sh BEFORE_BINARY AFTER_BINARY [CONNECTIONS] [MAX_CONNECTIONS...]
#   ROUNDS=5 scripts/callgrind-ab.sh ...     # rounds per build (default 3)
#
# For each --collector.max-connections value (default: 1000000, every
# connection exported, and 1000, the default cap), ROUNDS times for each
# build in turn, it starts a steady simulated pool of CONNECTIONS (default
# 10,000) connections and the exporter under valgrind with instrumentation
# off, makes 3 scrapes unmeasured and counts the instructions of the next 10
# (user space, exporter process, every thread). Printed: the median per
# scrape over the rounds and the range. Counts move between processes by up
# to ~15 % (idle runtime threads, hash seeds, when the history prunes), so
# compare medians, and ranges that do not overlap. Kernel work (page faults,
# socket copies) is not counted: see docs/performance.md for that. Needs
# valgrind and curl; builds the simulator if missing.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,/^set/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
before=$1
after=$2
connections=${3:-10000}
shift $(( $# >= 3 ? 3 : 2 ))
caps=("$@")
[ ${#caps[@]} -gt 0 ] || caps=(1000000 1000)

cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control curl; do
    command -v "$tool" >/dev/null || { echo "need $tool (Debian: valgrind, curl)" >&2; exit 2; }
done
sim=target/release/secure-channel-sim
[ -x "$sim" ] || cargo build --release --locked --bin secure-channel-sim

work=$(mktemp -d /tmp/callgrind-ab.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {
    for _ in $(seq 1 400); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.25
    done
    echo "$1 did not answer" >&2
    exit 1
}

count() { # BINARY CAP -> instructions per scrape
    local bin=$1 cap=$2 sim_port exp_port out
    sim_port=$(free_port)
    "$sim" --web.listen-address "127.0.0.1:$sim_port" --steady --connections "$connections" \
        >/dev/null 2>&1 &
    pids+=($!)
    local sim_pid=$!
    wait_for "http://127.0.0.1:$sim_port/status/connections"
    exp_port=$(free_port)
    out="$work/callgrind.$$.$RANDOM"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
        "$bin" --web.listen-address "127.0.0.1:$exp_port" --pool.url "http://127.0.0.1:$sim_port" \
        --collector.max-connections "$cap" >/dev/null 2>"$work/valgrind.log" &
    pids+=($!)
    local vg_pid=$!
    wait_for "http://127.0.0.1:$exp_port/health"
    for _ in 1 2 3; do curl -sf -o /dev/null "http://127.0.0.1:$exp_port/metrics"; done
    callgrind_control -i on "$vg_pid" >/dev/null
    for _ in $(seq 1 10); do curl -sf -o /dev/null "http://127.0.0.1:$exp_port/metrics"; done
    callgrind_control -i off "$vg_pid" >/dev/null
    callgrind_control -d "$vg_pid" >/dev/null
    kill "$vg_pid" "$sim_pid"
    wait "$vg_pid" "$sim_pid" 2>/dev/null || true
    cat "$out"* | awk '/^totals:/ { s += $2 } END { printf "%d\n", s / 10 }'
}

rounds=${ROUNDS:-3}
echo "| max connections | build | instructions per scrape, median ($connections connections) | range over $rounds rounds |"
echo "| ---: | --- | ---: | ---: |"
for cap in "${caps[@]}"; do
    b=() a=()
    for _ in $(seq 1 "$rounds"); do
        b+=("$(count "$before" "$cap")")
        a+=("$(count "$after" "$cap")")
    done
    python3 - "$cap" "${b[*]}" "${a[*]}" <<'PY'
import statistics, sys
cap, before, after = sys.argv[1], [int(x) for x in sys.argv[2].split()], [int(x) for x in sys.argv[3].split()]
mb, ma = statistics.median(before), statistics.median(after)
print(f"| {cap} | before | {mb / 1e6:.2f} M | {min(before) / 1e6:.2f}–{max(before) / 1e6:.2f} M |")
print(f"| {cap} | after | {ma / 1e6:.2f} M ({(ma - mb) / mb * 100:+.1f} %) | {min(after) / 1e6:.2f}–{max(after) / 1e6:.2f} M |")
PY
done
