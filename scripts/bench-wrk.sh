#!/usr/bin/env bash
# The exporter against the physical limit and against a Python peer, timed
# with one instrument (wrk) in one interleaved run.
#
#   scripts/bench-wrk.sh [SECONDS_PER_RUN] [ROUNDS]   # defaults 3 and 3
#   BASELINE=path/to/other/secure-channel-exporter scripts/bench-wrk.sh
#                                        # adds that build as a column (A/B)
#   PEER=0 scripts/bench-wrk.sh          # without the Python peer
#
# For each pool size (100, 1,000 and 10,000 connections of a steady
# simulated pool, every connection exported) it starts the simulator,
# nginx serving a copy of the pool's three documents, the exporter (and
# the baseline build) and the Python prometheus_client peer
# (benches/python_peer.py, in a virtualenv under target/bench/). Then,
# round after round, each kind of request takes its turn, the order
# rotating every round so no kind always runs first or last:
#
# * limit: wrk fetching each of the three documents from nginx; the limit
#   is the sum of the three p50s (reading the pool's documents one after
#   another, doing nothing with them);
# * the exporter's /metrics with no Accept-Encoding, with gzip and zstd;
# * the same for the baseline build, if given;
# * the Python peer's /metrics, identity and gzip.
#
# wrk runs one thread and one connection: sequential scrapes, so the
# latencies are those of one scrape, not of a queue. Reported: medians over
# the rounds of each run's p50 and p99, the ratio to the limit, and the
# exporter's CPU seconds per scrape (utime + stime from /proc/PID/stat
# around the run, divided by the requests wrk made). Then 64 concurrent
# scrapers (wrk -t2 -c64, gzip, as Prometheus sends) at 10,000 connections
# for each build, and RSS from /proc/PID/status: idle (started, /ready
# answered, no scrape yet), peak (VmHWM) and after 15 s idle. Prints
# Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
rounds=${2:-3}
sizes=${SIZES:-100 1000 10000}
bin="${CARGO_TARGET_DIR:-target}/release"
baseline=${BASELINE:-}
peer=${PEER:-1}

need() {
  command -v "$1" >/dev/null && return
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need wrk wrk
need nginx nginx-light
[ -x "$bin/secure-channel-exporter" ] && [ -x "$bin/secure-channel-sim" ] || cargo build --release --locked --bins
venv=target/bench/venv
if [ "$peer" = 1 ] && ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q prometheus_client
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start LOG CMD...: starts a server, waits for an "address=" log line and
# prints the address and the pid (run in a subshell: the caller records
# the pid for the clean-up).
start() {
  local log=$1
  shift
  "$@" 2>"$log" >/dev/null &
  local pid=$!
  for _ in $(seq 200); do
    addr=$(grep -o 'address=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$addr" ] && { echo "$addr $pid"; return; }
    sleep 0.05
  done
  echo "$* did not start: $(cat "$log")" >&2
  exit 1
}

# wait_ready URL: until it answers 200.
wait_ready() {
  for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return
    sleep 0.05
  done
  echo "$1 never answered 200" >&2
  exit 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# run URL HEADER PID: one wrk run; prints "p50_ms p99_ms cpu_s_per_request"
# (cpu is "-" without a pid).
run() {
  local url=$1 header=$2 pid=${3:-}
  local args=(-t1 -c1 -d"${secs}s" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  local before=0
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local out
  out=$(wrk "${args[@]}" "$url")
  local after=0
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  awk -v hz="$hz" -v t="$((after - before))" -v pid="$pid" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    / requests in / { n = $1 }
    END { printf "%.4f %.4f %s\n", p50, p99, (pid == "" || n == 0) ? "-" : sprintf("%.6f", t / hz / n) }' <<<"$out"
}

declare -A url pidof idle
kinds=()
for n in $sizes; do
  read -r sim spid < <(start "$tmp/sim-$n.log" "$bin/secure-channel-sim" --web.listen-address 127.0.0.1:0 --steady --connections "$n")
  pids+=("$spid")
  docs="$tmp/docs-$n"
  mkdir -p "$docs/status"
  curl -sf -o "$docs/status/connections" "http://$sim/status/connections"
  curl -sf -o "$docs/healthz" "http://$sim/healthz"
  curl -sf -o "$docs/metrics" "http://$sim/metrics"
  port=$(free_port)
  cat >"$tmp/nginx-$n.conf" <<EOF
$([ "$(id -u)" -eq 0 ] && echo "user root;")
worker_processes 1;
pid $tmp/nginx-$n.pid;
error_log $tmp/nginx-$n.err;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  default_type application/json;
  server { listen 127.0.0.1:$port; root $docs; }
}
EOF
  nginx -c "$tmp/nginx-$n.conf" -p "$tmp" -g 'daemon off;' 2>>"$tmp/nginx-$n.err" &
  pids+=($!)
  wait_ready "http://127.0.0.1:$port/healthz"
  for doc in status/connections healthz metrics; do
    url["limit-$doc-$n"]="http://127.0.0.1:$port/$doc"
  done
  read -r exp epid < <(start "$tmp/exp-$n.log" "$bin/secure-channel-exporter" --web.listen-address 127.0.0.1:0 --pool.url "http://$sim" --collector.max-connections 1000000)
  pids+=("$epid")
  url["exp-$n"]="http://$exp/metrics"
  pidof["exp-$n"]=$epid
  wait_ready "http://$exp/ready"
  idle["exp-$n"]=$(rss_kib "$epid" VmRSS)
  if [ -n "$baseline" ]; then
    read -r base bpid < <(start "$tmp/base-$n.log" "$baseline" --web.listen-address 127.0.0.1:0 --pool.url "http://$sim" --collector.max-connections 1000000)
    pids+=("$bpid")
    url["base-$n"]="http://$base/metrics"
    pidof["base-$n"]=$bpid
    wait_ready "http://$base/ready"
    idle["base-$n"]=$(rss_kib "$bpid" VmRSS)
  fi
  if [ "$peer" = 1 ]; then
    port=$(free_port)
    read -r py ppid < <(start "$tmp/py-$n.log" "$venv/bin/python" benches/python_peer.py "http://$sim" "$port")
    pids+=("$ppid")
    url["py-$n"]="http://$py/metrics"
    pidof["py-$n"]=$ppid
    wait_ready "http://$py/metrics"
  fi
done

kinds=(limit exp-identity exp-gzip exp-zstd)
[ -n "$baseline" ] && kinds+=(base-identity base-gzip base-zstd)
[ "$peer" = 1 ] && kinds+=(py-identity py-gzip)
declare -A results
for r in $(seq "$rounds"); do
  for n in $sizes; do
    k=${#kinds[@]}
    for i in $(seq 0 $((k - 1))); do
      kind=${kinds[$(((i + r) % k))]}
      case $kind in
        limit)
          sum=$(for doc in status/connections healthz metrics; do run "${url[limit-$doc-$n]}" ""; done |
            awk '{ p50 += $1; p99 += $2 } END { printf "%.4f %.4f -\n", p50, p99 }')
          results["limit-$n"]+="$sum;"
          ;;
        *)
          who=${kind%-*} coding=${kind#*-}
          header=""
          [ "$coding" != identity ] && header="Accept-Encoding: $coding"
          results["$kind-$n"]+="$(run "${url[$who-$n]}" "$header" "${pidof[$who-$n]}");"
          ;;
      esac
    done
  done
done

# median FIELD VALUES...: the median of one field over the rounds.
median() {
  local field=$1
  tr ';' '\n' <<<"$2" | awk -v f="$field" 'NF { print $f }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0 || v[1] == "-") { print "-"; exit } print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() {
  tr ';' '\n' <<<"$1" | awk 'NF { print $1 }' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f–%.2f", lo, hi }'
}

echo "Rounds: $rounds, ${secs} s per wrk run, medians over rounds (p50 range over rounds in brackets)."
echo
echo "| connections | kind | p50 ms | p99 ms | p50 ÷ limit | CPU ms per scrape |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for n in $sizes; do
  limit=$(median 1 "${results[limit-$n]}")
  printf '| %s | limit (nginx, three documents) | %.3f (%s) | %.3f | 1 | - |\n' "$n" "$limit" "$(spread "${results[limit-$n]}")" "$(median 2 "${results[limit-$n]}")"
  for kind in "${kinds[@]}"; do
    [ "$kind" = limit ] && continue
    res=${results[$kind-$n]}
    p50=$(median 1 "$res")
    p99=$(median 2 "$res")
    cpu=$(median 3 "$res")
    awk -v n="$n" -v k="$kind" -v a="$p50" -v b="$p99" -v l="$limit" -v c="$cpu" -v s="$(spread "$res")" 'BEGIN {
      printf "| %s | %s | %.3f (%s) | %.3f | **%.2f×** | %s |\n", n, k, a, s, b, a / l, (c == "-") ? "-" : sprintf("%.3f", c * 1000) }'
  done
done

echo
echo "| connections | kind | bytes identity / gzip / zstd |"
echo "| ---: | --- | ---: |"
for n in $sizes; do
  for who in exp base py; do
    [ -n "${url[$who-$n]:-}" ] || continue
    bi=$(curl -s -o /dev/null -w '%{size_download}' "${url[$who-$n]}")
    bg=$(curl -s -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: gzip' "${url[$who-$n]}")
    bz=$(curl -s -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: zstd' "${url[$who-$n]}")
    echo "| $n | $who | $bi / $bg / $bz |"
  done
done

# Memory: 64 concurrent gzip scrapers at the largest size, per build.
big=${sizes##* }
echo
echo "| build | idle RSS MiB | peak RSS MiB (64 scrapers, $big connections, gzip) | scrapes/s | RSS 15 s after MiB |"
echo "| --- | ---: | ---: | ---: | ---: |"
declare -A rate
for who in exp base; do
  [ -n "${url[$who-$big]:-}" ] || continue
  rate[$who]=$(wrk -t2 -c64 -d"$((secs * 2))s" -H 'Accept-Encoding: gzip' "${url[$who-$big]}" | awk '/Requests\/sec/ { print $2 }')
done
sleep 15
for who in exp base; do
  [ -n "${url[$who-$big]:-}" ] || continue
  p=${pidof[$who-$big]}
  awk -v w="$who" -v i="${idle[$who-$big]}" -v h="$(rss_kib "$p" VmHWM)" -v r="${rate[$who]}" -v a="$(rss_kib "$p" VmRSS)" 'BEGIN {
    printf "| %s | %.1f | %.1f | %.0f | %.1f |\n", w, i / 1024, h / 1024, r, a / 1024 }'
done
