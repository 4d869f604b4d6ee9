#!/usr/bin/env bash
# w2c's trace delivery beside MLflow's own Python client, against the same
# `mlflow server` in one run (see BENCHMARKS.md): N traces each way, into a
# fresh experiment, at 1 and at 4 server workers.
#  - w2c: an offline `mcq` + `llm_judge` session of N/3 examples (3 traces
#    an example: mcq, the judge's target stream, the judge) is made first,
#    then `w2c sync` is timed (what a run's end and `w2c sync` do).
#  - MLflow: bench/mlflow_client_traces.py, `mlflow.start_span` with async
#    export, 3 spans a trace, timed to the end of its flush.
#   bench/traces_vs_mlflow.sh            # N=600 WORKERS="1 4"
#   bench/traces.sh with MODE=compare runs this script.
# Needs: cargo, python3 with mlflow (pip install -r requirements-test.txt), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-600}
WORKERS=${WORKERS:-"1 4"}
PORT=${PORT:-5079}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT

# W2C_BIN: a w2c binary to use as is (else a release build).
if [ -n "${W2C_BIN:-}" ]; then
  bin=$(realpath "$W2C_BIN")
else
  cargo build --release --quiet
  bin=$PWD/target/release/w2c
fi
per=$(( N / 3 ))
python3 bench/gen_dataset.py "$per" "$work/data.jsonl"
cat > "$work/eval.toml" <<TOML
[run]
runs_dir = "$work/runs"
[dataset]
path = "$work/data.jsonl"
[models]
target = "bench-model"
target_provider = "bench"
judge = "bench-judge"
judge_provider = "bench"
[providers.bench]
kind = "mock"
latency_ms = 1
max_concurrency = 64
[methods]
enabled = ["mcq", "llm_judge"]
TOML
now() { date +%s.%N; }
echo "| server workers | traces | MLflow Python client: s (traces/s) | \`w2c sync\`: s (traces/s) |"
echo "|---|---|---|---|"
for w in $WORKERS; do
  dir="$work/server-$w"; mkdir -p "$dir"
  python3 tests/support/mlflow_guard.py mlflow server \
    --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
    --host 127.0.0.1 --port "$PORT" --workers "$w" > "$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 240); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.5; done
  export MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT
  # Warm-up (a fresh server's first requests are slow): a few traces each way.
  python3 bench/mlflow_client_traces.py 20 "warm-$w" > /dev/null
  # (MLflow prints the run's address on stdout too: the JSON is the last line.)
  py=$(python3 bench/mlflow_client_traces.py "$N" "python-$w" 2> /dev/null | tail -1)
  # The w2c session, made offline, then synced and timed.
  rm -rf "$work/runs"
  MLFLOW_TRACKING_URI= "$bin" run --no-tracking --config "$work/eval.toml" --run-key "w$w" > /dev/null 2>&1
  fp=$(ls "$work/runs/w$w/sessions")
  t0=$(now)
  MLFLOW_EXPERIMENT_NAME="w2c-$w" "$bin" sync "${fp:0:8}" --run-key "w$w" --runs-dir "$work/runs" > "$work/sync.out" 2> "$work/sync.err" || { cat "$work/sync.err" >&2; exit 1; }
  t1=$(now)
  sent=$(awk '/traces sent/ {print $3}' "$work/sync.out")
  python3 - "$w" "$py" "$t0" "$t1" "$sent" <<'PY'
import json, sys
w, py, t0, t1, sent = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = t1 - t0
print(f"| {w} | {py['traces']} / {sent} | {py['total_s']:.1f} ({py['traces_per_s']:.1f}) | {s:.1f} ({sent / s:.1f}) |")
PY
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
