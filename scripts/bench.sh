#!/usr/bin/env bash
# The performance benchmark, in one command: builds the release binaries,
# runs the criterion micro-benchmarks of the pure parts and the end-to-end
# load test (exporter against the limit, 64 concurrent scrapers, resources),
# and writes a Markdown report to target/bench/report-<UTC date>.md.
#
#   scripts/bench.sh            # the full run (about 6 minutes on 2 cores)
#   scripts/bench.sh --quick    # a short smoke run of the same steps
#
# See docs/performance.md for the figures and how to read them. Other
# processes on the machine skew the numbers: the load test interleaves the
# exporter and the limit so both suffer alike, and reports ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
criterion_args=(--warm-up-time 1 --measurement-time 3)
if [ "${1:-}" = "--quick" ]; then
  quick="--quick"
  criterion_args=(--warm-up-time 0.2 --measurement-time 0.5)
fi

mkdir -p target/bench
report="target/bench/report-$(date -u +%Y-%m-%dT%H%M%SZ).md"

echo "==> building release binaries and benchmarks"
cargo build --release --locked --bins
cargo bench --locked --no-run

{
  echo "# secure-channel-exporter benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- revision: $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr)"
  echo "- rustc: $(rustc --version)"
  echo "- command: scripts/bench.sh ${quick}"
  echo
  echo "## Micro-benchmarks (criterion point estimates; the interval is in target/criterion)"
  echo
  echo "| benchmark | time | throughput |"
  echo "| --- | ---: | ---: |"
} >"$report"

echo "==> criterion: decode, translate + encode, text parser"
# Keeps each benchmark's own estimate (the middle of "[low estimate high]")
# and drops criterion's comparison with an earlier run (the % lines).
cargo bench --locked --bench pipeline -- "${criterion_args[@]}" 2>/dev/null \
  | tee target/bench/criterion.log \
  | awk '
      /^(pipeline|parse|per_connection_families|derived)\// { name = $1 }
      /time:/ && !/%/ {
        split($0, a, "["); split(a[2], t, " "); time = t[3] " " t[4]
        # Groups without a throughput end at their time line.
        if (name ~ /^(per_connection_families|derived)\//) print "| " name " | " time " | |"
      }
      /thrpt:/ && !/%/ { split($0, a, "["); split(a[2], t, " "); print "| " name " | " time " | " t[3] " " t[4] " |" }
    ' | tee -a "$report"

echo "==> end to end: the exporter against the limit"
{
  echo
  echo "## End to end"
  echo
} >>"$report"
cargo bench --locked --bench scrape_load -- $quick | tee -a "$report"

echo "==> against nginx serving the pool's documents, and a Python peer: wrk, compressed and not"
{
  echo
  echo "## Against the limit and the Python peer (wrk, one connection)"
  echo
} >>"$report"
if [ -n "$quick" ]; then wrk_secs=1 wrk_rounds=1; else wrk_secs=3 wrk_rounds=3; fi
scripts/bench-wrk.sh "$wrk_secs" "$wrk_rounds" | tee -a "$report"

echo "==> report written to $report"
