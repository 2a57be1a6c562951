#!/usr/bin/env bash
# The exporter against a C-class limit: wrk (Debian's) fetching the pool's
# status document, and the same wrk scraping the exporter's /metrics,
# uncompressed and with gzip and zstd, at 1,000 and 10,000 connections of a
# steady simulated pool; plus the bytes each answer puts on the wire.
#
#   scripts/bench-wrk.sh [SECONDS_PER_RUN]   # default 10; release binaries
#
# One connection, one thread: sequential requests, so the latencies are
# those of one scrape, not of a queue. The limit fetches only the status
# document (by far the largest; the exporter also fetches /healthz and
# /metrics, concurrently), so it is a little under the true floor and the
# ratios are conservative. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin="${CARGO_TARGET_DIR:-target}/release"
if ! command -v wrk >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
[ -x "$bin/secure-channel-exporter" ] || cargo build --release --locked --bins

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME ARGS...: starts a binary on a free loopback port, waits for its
# "listening" log line, and prints the address.
start() {
  local name=$1
  shift
  "$bin/$name" --web.listen-address 127.0.0.1:0 "$@" 2>"$tmp/$name.log" >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    addr=$(grep -o 'address=[0-9.:]*' "$tmp/$name.log" | head -1 | cut -d= -f2 || true)
    [ -n "$addr" ] && { echo "$addr"; return; }
    sleep 0.1
  done
  echo "$name did not start" >&2
  exit 1
}

# p50 in ms of `wrk` against URL with optional header.
p50() {
  local url=$1 header=${2:-}
  local args=(-t1 -c1 -d"${secs}s" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  wrk "${args[@]}" "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { print ms($2) }'
}

bytes() {
  curl -s -o /dev/null -w '%{size_download}' ${2:+-H "$2"} "$1"
}

echo "| connections | limit (wrk, status document) p50 ms | moving the identity answer (wrk, same size) p50 ms | exporter identity p50 ms (× limit) | gzip p50 ms (× limit) | zstd p50 ms (× limit) | bytes identity / gzip / zstd | fewer bytes gzip / zstd |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in 1000 10000; do
  sim=$(start secure-channel-sim --steady --connections "$n")
  exp=$(start secure-channel-exporter --pool.url "http://$sim" --collector.max-connections 100000)
  curl -s -o /dev/null "http://$exp/metrics"
  limit=$(p50 "http://$sim/status/connections")
  ident=$(p50 "http://$exp/metrics")
  gz=$(p50 "http://$exp/metrics" "Accept-Encoding: gzip")
  zs=$(p50 "http://$exp/metrics" "Accept-Encoding: zstd")
  b_id=$(bytes "http://$exp/metrics")
  b_gz=$(bytes "http://$exp/metrics" "Accept-Encoding: gzip")
  b_zs=$(bytes "http://$exp/metrics" "Accept-Encoding: zstd")
  transfer=$(p50 "http://$sim/sim/blob?bytes=$b_id")
  awk -v n="$n" -v l="$limit" -v t="$transfer" -v i="$ident" -v g="$gz" -v z="$zs" -v bi="$b_id" -v bg="$b_gz" -v bz="$b_zs" 'BEGIN {
    printf "| %d | %.3f | %.3f | %.2f (**%.1f×**) | %.2f (**%.1f×**) | %.2f (**%.1f×**) | %d / %d / %d | %.0f× / %.0f× |\n",
      n, l, t, i, i / l, g, g / l, z, z / l, bi, bg, bz, bi / bg, bi / bz }'
  kill "${pids[@]}" 2>/dev/null || true
  pids=()
done
