#!/usr/bin/env bash
# Runs the benchmarks and records their results with the machine they ran on.
#
#   bash bench/run.sh [BUILD_DIR]        (what `make bench` runs)
#
# Writes bench/results/store_bench.json (Google Benchmark JSON) and
# bench/results/store_bench.md (tables, ratios, targets, machine; the
# hand-written findings at its end are kept across runs). Extra arguments for
# store_bench can be passed in STORE_BENCH_ARGS, e.g.
#   STORE_BENCH_ARGS="--max-size=64M --benchmark_filter=Small" bash bench/run.sh
# Then runs bench/python_bench.py if it exists (SKIP_PYTHON_BENCH=1 skips it;
# it needs the Python extension built in BUILD_DIR/python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
RESULTS="$ROOT/bench/results"
PY=/usr/bin/python3
mkdir -p "$RESULTS"

BIN="$BUILD/bin/store_bench"
if [ ! -x "$BIN" ]; then
  echo "bench/run.sh: $BIN not found; build first (make build)" >&2
  exit 1
fi

REPS=${BENCH_REPETITIONS:-3}
# shellcheck disable=SC2206
EXTRA=(${STORE_BENCH_ARGS:-})
CMD=("$BIN" --trellisd="$BUILD/bin/trellisd" --arena=3G
     --benchmark_repetitions="$REPS" --benchmark_display_aggregates_only=true
     --benchmark_min_time=0.3
     --benchmark_out="$RESULTS/store_bench.json" --benchmark_out_format=json
     "${EXTRA[@]}")

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench/run.sh: ${CMD[*]}"
echo "bench/run.sh: load average before: $LOAD_BEFORE"
"${CMD[@]}"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" "$ROOT/bench/store_bench_report.py" \
  --json "$RESULTS/store_bench.json" --out "$RESULTS/store_bench.md" \
  --command "${CMD[*]//$ROOT\//}" \
  --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER"
echo "bench/run.sh: wrote $RESULTS/store_bench.json and store_bench.md"

status=0
if [ -f "$ROOT/bench/python_bench.py" ] && [ -z "${SKIP_PYTHON_BENCH:-}" ]; then
  echo "bench/run.sh: running bench/python_bench.py"
  PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}" \
    TRELLISD="$BUILD/bin/trellisd" "$PY" "$ROOT/bench/python_bench.py" ||
    status=$?
  if [ "$status" -ne 0 ]; then
    echo "bench/run.sh: bench/python_bench.py failed with status $status" >&2
  fi
fi

# Spilling (issue 4): spill/reload throughput vs dd on the same disk, put
# latency with a full arena. SPILL_BENCH_DIR picks the disk directory (default
# a fresh one under /var/tmp); SPILL_BENCH_ARGS adds flags (--count=, --reps=);
# SKIP_SPILL_BENCH=1 skips it. Cold-cache figures need root (drop_caches).
if [ -z "${SKIP_SPILL_BENCH:-}" ]; then
  SPILL_BIN="$BUILD/bin/spill_bench"
  if [ -x "$SPILL_BIN" ]; then
    # shellcheck disable=SC2206
    SPILL_CMD=("$SPILL_BIN" --trellisd="$BUILD/bin/trellisd"
               --json="$RESULTS/spill_bench.json" --md="$RESULTS/spill_bench.md"
               ${SPILL_BENCH_DIR:+--dir="$SPILL_BENCH_DIR"} ${SPILL_BENCH_ARGS:-})
    echo "bench/run.sh: ${SPILL_CMD[*]}"
    "${SPILL_CMD[@]}" || {
      echo "bench/run.sh: spill_bench failed" >&2
      status=1
    }
  else
    echo "bench/run.sh: $SPILL_BIN not found; spill_bench skipped" >&2
  fi
fi
exit "$status"
