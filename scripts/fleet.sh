#!/usr/bin/env bash
# A fleet on Prometheus' own machinery (docs/scale.md):
#
#   secure-channel-sim --pools N        N simulated pools, one per port
#   2 exporters, /probe                 one with --collector.connections=all, one with used
#   2 Prometheus shards                 file SD of the N pools, hashmod 2 on the pool address,
#                                       both jobs; each remote-writes to
#   1 central Prometheus                --web.enable-remote-write-receiver, evaluates the
#                                       shipped rules (alerts/secure-channel.rules.yml)
#
# Asserts: every pool scraped by exactly one shard; the central server holds every pool's
# series; a fault injected into one pool fires its alert at the central server for that pool
# only; and measures the per-connection series churn per pool per hour for both
# --collector.connections modes. Ends with "N passed, M failed"; exit 1 if any failed.
#
# Usage: scripts/fleet.sh [--bin-dir target/debug]
# Environment: FLEET_POOLS (default 100), FLEET_BASE_PORT (default 21000; uses BASE..BASE+N-1
# for pools and BASE+N.. for the exporters and Prometheus servers), FLEET_CHURN_MINUTES
# (churn window, default 4), FLEET_KEEP=1 keeps the work directory.
set -u -o pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BIN_DIR=target/debug
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR=$2; shift 2 ;;
        *) echo "usage: $0 [--bin-dir DIR]" >&2; exit 2 ;;
    esac
done
N=${FLEET_POOLS:-100}
BASE=${FLEET_BASE_PORT:-21000}
CHURN_MINUTES=${FLEET_CHURN_MINUTES:-4}
EXP_ALL=$((BASE + N))
EXP_USED=$((BASE + N + 1))
SHARD0=$((BASE + N + 2))
SHARD1=$((BASE + N + 3))
CENTRAL=$((BASE + N + 4))
FAULTED=$((N / 2))
FAULTED_URL="http://127.0.0.1:$((BASE + FAULTED))"

for tool in prometheus python3 curl; do
    command -v "$tool" >/dev/null || { echo "fleet: $tool is needed (apt-get install prometheus)" >&2; exit 2; }
done
if [ "$BIN_DIR" = target/debug ]; then
    cargo build --locked --bins -q || exit 2
fi
for bin in secure-channel-sim secure-channel-exporter; do
    [ -x "$BIN_DIR/$bin" ] || { echo "fleet: $BIN_DIR/$bin missing" >&2; exit 2; }
done

for port in $(seq "$BASE" "$CENTRAL"); do
    if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "fleet: port $port is in use (a previous run still stopping?); set FLEET_BASE_PORT" >&2
        exit 2
    fi
done

WORK=$(mktemp -d /tmp/sce-fleet.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ "${FLEET_KEEP:-0}" = 1 ]; then echo "fleet: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS  $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $*"; }
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }

# query PORT PROMQL [TIME]: the result vector as JSON lines {"metric":..,"value":..}
query() {
    local args=(--data-urlencode "query=$2")
    [ -n "${3:-}" ] && args+=(--data-urlencode "time=$3")
    curl -s --max-time 20 "http://127.0.0.1:$1/api/v1/query" "${args[@]}" |
        python3 -c 'import json,sys
try: d=json.load(sys.stdin)
except Exception: sys.exit(0)
for r in d.get("data",{}).get("result",[]): print(json.dumps(r))'
}
# scalar PORT PROMQL [TIME]: the first value of the result, or empty
scalar() { query "$@" | head -1 | python3 -c 'import json,sys
l=sys.stdin.read().strip()
print(json.loads(l)["value"][1] if l else "")'; }
# wait_until SECONDS COMMAND...: retries COMMAND every 2 s until it succeeds
wait_until() {
    local limit=$(($(date +%s) + $1)); shift
    until "$@"; do
        [ "$(date +%s)" -ge "$limit" ] && return 1
        sleep 2
    done
}
ready() { curl -sf --max-time 2 "http://127.0.0.1:$1$2" >/dev/null; }

echo "fleet: $N pools on 127.0.0.1:$BASE-$((BASE + N - 1)), work directory $WORK"

# --- the pools: a busy published pool each, with the fast churn of docs/scale.md ---
"$BIN_DIR/secure-channel-sim" --web.listen-address "127.0.0.1:$BASE" --pools "$N" \
    --callers 4 --ops-per-second 50 --ops-per-checkout 50 --cleanup-interval 30s \
    --connections 10 >"$WORK/sim.log" 2>&1 &
PIDS+=($!)

# --- two exporters in /probe mode ---
for mode in all used; do
    port=$EXP_ALL; [ "$mode" = used ] && port=$EXP_USED
    "$BIN_DIR/secure-channel-exporter" --web.listen-address "127.0.0.1:$port" \
        --probe.allowed-targets 'http://127.0.0.1:*' --collector.connections "$mode" \
        --log.level warn >"$WORK/exporter-$mode.log" 2>&1 &
    PIDS+=($!)
done

# --- file SD: every pool as host:port ---
python3 - "$WORK/pools.json" "$BASE" "$N" <<'EOF'
import json, sys
path, base, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
json.dump([{"targets": [f"127.0.0.1:{base + i}" for i in range(n)], "labels": {}}],
          open(path, "w"))
EOF

# --- two shards, hashmod on the pool address, both jobs, remote write to central ---
for shard in 0 1; do
    {
        cat <<EOF
global:
  # Not 5 s: the simulator (like many servers) closes a kept-alive connection idle for 5 s,
  # and a scrape every 5 s would race that close (docs/scale.md).
  scrape_interval: 10s
  scrape_timeout: 8s
  external_labels:
    shard: "$shard"
scrape_configs:
EOF
        for job in secure-channel-exporter:$EXP_ALL secure-channel-exporter-used:$EXP_USED; do
            cat <<EOF
  - job_name: ${job%%:*}
    metrics_path: /probe
    file_sd_configs:
      - files: ['$WORK/pools.json']
    relabel_configs:
      - source_labels: [__address__]
        modulus: 2
        target_label: __tmp_hash
        action: hashmod
      - source_labels: [__tmp_hash]
        regex: "$shard"
        action: keep
      - source_labels: [__address__]
        target_label: __param_target
        replacement: http://\$1
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:${job##*:}
EOF
        done
        cat <<EOF
remote_write:
  - url: http://127.0.0.1:$CENTRAL/api/v1/write
    queue_config:
      batch_send_deadline: 1s
EOF
    } >"$WORK/shard$shard.yml"
done
cat >"$WORK/central.yml" <<EOF
global:
  evaluation_interval: 5s
rule_files:
  - $REPO/alerts/secure-channel.rules.yml
EOF

start_prometheus() { # NAME PORT [FLAGS...]
    local name=$1 port=$2; shift 2
    prometheus --config.file "$WORK/$name.yml" --storage.tsdb.path "$WORK/$name-data" \
        --web.listen-address "127.0.0.1:$port" --storage.tsdb.retention.time 1h "$@" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}
start_prometheus central "$CENTRAL" --web.enable-remote-write-receiver
start_prometheus shard0 "$SHARD0"
start_prometheus shard1 "$SHARD1"

all_ready() {
    ready "$((BASE + N - 1))" /healthz && ready "$EXP_ALL" /health && ready "$EXP_USED" /health &&
        ready "$SHARD0" /-/ready && ready "$SHARD1" /-/ready && ready "$CENTRAL" /-/ready
}
if wait_until 60 all_ready; then
    pass "sim ($N pools), 2 exporters, 2 shards and central started ($(elapsed) s)"
else
    fail "processes did not start; logs in $WORK"; FLEET_KEEP=1; exit 1
fi

# --- every pool scraped by exactly one shard ---
# targets PORT JOB: the pool URLs this shard scrapes with up == 1
targets() { query "$1" "up{job=\"$2\"} == 1" | python3 -c 'import json,sys
for l in sys.stdin: print(json.loads(l)["metric"]["instance"])' | sort; }
shards_cover() {
    local job=$1
    [ "$(cat <(targets "$SHARD0" "$job") <(targets "$SHARD1" "$job") | wc -l)" -eq "$N" ]
}
for job in secure-channel-exporter secure-channel-exporter-used; do
    wait_until 90 shards_cover "$job"
    s0=$(targets "$SHARD0" "$job"); s1=$(targets "$SHARD1" "$job")
    n0=$(printf '%s\n' "$s0" | grep -c .); n1=$(printf '%s\n' "$s1" | grep -c .)
    both=$(comm -12 <(printf '%s\n' "$s0") <(printf '%s\n' "$s1") | grep -c .)
    union=$(sort -u <(printf '%s\n' "$s0") <(printf '%s\n' "$s1") | grep -c .)
    if [ "$both" -eq 0 ] && [ "$union" -eq "$N" ] && [ "$n0" -gt 0 ] && [ "$n1" -gt 0 ]; then
        pass "job $job: every pool scraped (up 1) by exactly one shard: shard0 $n0, shard1 $n1, on both 0 ($(elapsed) s)"
    else
        fail "job $job: shard0 $n0, shard1 $n1, on both $both, union $union of $N"
    fi
done

# --- the central server holds every pool's series ---
# A busy published pool lists nothing most of the time, so per-connection series come and go;
# these are there at every scrape.
FAMILIES="secure_channel_up secure_channel_latency_ms_count secure_channel_errors_total
    secure_channel_pool_connections_opened_total secure_channel_pool_connection_errors_seen_total"
central_count() { scalar "$CENTRAL" "count(count by (instance) ($1{job=\"secure-channel-exporter\"}))"; }
central_complete() {
    for family in $FAMILIES; do
        [ "$(central_count "$family")" = "$N" ] || return 1
    done
}
if wait_until 90 central_complete; then
    pass "central holds every pool's series ($(echo $FAMILIES)) for all $N pools ($(elapsed) s)"
else
    for family in $FAMILIES; do
        echo "      $family: $(central_count "$family") pools"
    done
    fail "central lacks some pools' series"
fi
one_shard=$(scalar "$CENTRAL" 'max(count by (instance, job) (count by (instance, job, shard) (up)))')
if [ "$one_shard" = 1 ]; then
    pass "at central, every pool's series come from one shard (max shards per pool and job: 1)"
else
    fail "at central, a pool's series come from $one_shard shards"
fi
churn_start=$(date +%s)

# --- a fault in one pool fires its alert at central for that pool only ---
curl -sf -X PUT "http://127.0.0.1:$((BASE + FAULTED))/sim/faults/down" >/dev/null
fault_at=$(date +%s)
echo "fleet: pool $FAULTED ($FAULTED_URL) made to drop every request; waiting for SecureChannelPoolDown (for: 2m)"
firing() { query "$CENTRAL" "ALERTS{alertstate=\"firing\"$1}" | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)["metric"]; print(m["alertname"], m.get("instance",""), m.get("job",""))' | sort; }
# The shipped rules select job="secure-channel-exporter": the used job is there for churn.
pool_down_fired() {
    firing ',alertname="SecureChannelPoolDown"' |
        grep -q "^SecureChannelPoolDown $FAULTED_URL secure-channel-exporter$"
}
if wait_until 300 pool_down_fired; then
    after=$(($(date +%s) - fault_at))
    alerts=$(firing "")
    others=$(printf '%s\n' "$alerts" | grep . | grep -vc " $FAULTED_URL ")
    pool_down=$(printf '%s\n' "$alerts" | grep -c "^SecureChannelPoolDown $FAULTED_URL ")
    if [ "$others" -eq 0 ] && [ "$pool_down" -eq 1 ]; then
        pass "SecureChannelPoolDown fired at central for $FAULTED_URL only, ${after} s after the fault; no alert fires for any other pool"
    else
        fail "firing alerts at central after the fault:"; printf '      %s\n' "$alerts"
    fi
else
    fail "SecureChannelPoolDown did not fire at central within 300 s"
fi

# --- series churn per pool per hour, both collector modes ---
wait_for=$((churn_start + CHURN_MINUTES * 60 - $(date +%s)))
[ "$wait_for" -gt 0 ] && { echo "fleet: measuring churn until ${CHURN_MINUTES} min after the fleet was complete (${wait_for} s more)"; sleep "$wait_for"; }
churn_end=$(date +%s)
window=$((churn_end - churn_start))
healthy="instance!=\"$FAULTED_URL\""
# series PORT MATCH START END: how many series matching MATCH have samples between START and END
series() {
    curl -s --max-time 30 "http://127.0.0.1:$1/api/v1/series" --data-urlencode "match[]=$2" \
        --data-urlencode "start=$3" --data-urlencode "end=$4" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("data") or []))'
}
for job in secure-channel-exporter secure-channel-exporter-used; do
    sel="{__name__=~\"secure_channel_connection_.+\",job=\"$job\",$healthy}"
    at_start=$(series "$CENTRAL" "$sel" "$((churn_start - 15))" "$churn_start")
    seen=$(series "$CENTRAL" "$sel" "$churn_start" "$churn_end")
    per_pool=$(series "$CENTRAL" "{job=\"$job\",$healthy}" "$((churn_end - 15))" "$churn_end")
    read -r new per_hour per_pool <<<"$(python3 -c "
n=$N-1; new=$seen-$at_start
print(new, round(new/n*3600/$window), round($per_pool/n))")"
    mode=all; [ "$job" = secure-channel-exporter-used ] && mode=used
    echo "CHURN mode=$mode window=${window}s pools=$((N - 1)) per-connection series: at start $at_start, seen in window $seen, new $new, new per pool per hour $per_hour; series per pool now $per_pool"
    eval "CHURN_$mode=$per_hour"
done
if [ "${CHURN_all:-0}" -gt 0 ] && [ "${CHURN_used:-1}" -eq 0 ]; then
    pass "churn measured: ${CHURN_all} new series per pool per hour with --collector.connections=all, ${CHURN_used} with used"
else
    fail "churn: all ${CHURN_all:-?}, used ${CHURN_used:-?} new series per pool per hour (expected > 0 and 0 for published pools)"
fi

# --- every fetch from a healthy pool succeeded ---
failures=$(scalar "$CENTRAL" "sum(increase(secure_channel_exporter_source_failures_total{$healthy}[${window}s]))" "$churn_end")
requests=$(scalar "$CENTRAL" "sum(increase(secure_channel_exporter_source_requests_total{$healthy}[${window}s]))" "$churn_end")
if [ -n "$failures" ] && python3 -c "import sys; sys.exit(0 if round(float('$failures')) == 0 else 1)"; then
    pass "no failed fetch from the $((N - 1)) healthy pools in the churn window (about ${requests%.*} document fetches)"
else
    fail "fetches from healthy pools failed: ${failures:-?} of ${requests:-?} in the churn window"
fi

# --- what it cost ---
for p in "shard0:$SHARD0" "shard1:$SHARD1" "central:$CENTRAL"; do
    port=${p##*:}
    m=$(curl -s "http://127.0.0.1:$port/metrics")
    heads=$(printf '%s\n' "$m" | awk '/^prometheus_tsdb_head_series /{print $2}')
    rss=$(printf '%s\n' "$m" | awk '/^process_resident_memory_bytes /{printf "%.0f", $2/1048576}')
    echo "COST ${p%%:*}: head series $heads, RSS ${rss} MiB"
done
for pid_name in "${PIDS[0]}:sim" "${PIDS[1]}:exporter-all" "${PIDS[2]}:exporter-used"; do
    pid=${pid_name%%:*}
    awk -v n="${pid_name##*:}" '/VmHWM/{printf "COST %s: peak RSS %d MiB\n", n, $2/1024}' "/proc/$pid/status" 2>/dev/null
done
echo "fleet: $(elapsed) s in all"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
