#!/usr/bin/env bash
# The cost of MLflow traces (see BENCHMARKS.md): the same tracked `mcq` run
# with `[tracking] traces = false` and `= true`, against a local `mlflow
# server`, at 200 ms endpoint latency and concurrency 64, at two sizes. OTLP
# requests and trace-info requests (one per trace, carrying its
# assessments) are counted from the server's access log.
#   bench/traces.sh                  # N_SMALL=300 N_LARGE=3000 REPS=3 (medians)
# Needs: cargo, python3 with mlflow (pip install -r requirements-test.txt), curl.
# MODE=compare: w2c's trace rate beside MLflow's own Python client on the
# same server instead (bench/traces_vs_mlflow.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${MODE:-}" = compare ]; then
  exec bench/traces_vs_mlflow.sh
fi
N_SMALL=${N_SMALL:-300}
N_LARGE=${N_LARGE:-3000}
PORT=${PORT:-5078}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT

cargo build --release --quiet
bin=$PWD/target/release/w2c

. bench/mlflow_server.sh
start_mlflow_server "$work" "$PORT"

config() { # args: dataset traces -> prints config path
  local cfg="$work/eval-$RANDOM.toml"
  cat > "$cfg" <<TOML
[run]
runs_dir = "$work/runs"
[dataset]
path = "$1"
[models]
target = "bench-model"
target_provider = "bench"
[providers.bench]
kind = "mock"
latency_ms = 200
max_concurrency = 64
[methods]
enabled = ["mcq"]
[tracking]
traces = $2
TOML
  echo "$cfg"
}

count() { grep -c "$1" "$work/server.log" || true; }

# A fresh server spends its first minute warming up (workers, job runner):
# one unmeasured tracked run with traces first.
python3 bench/gen_dataset.py 100 "$work/warm.jsonl"
MLFLOW_EXPERIMENT_NAME=warm-up "$bin" run --config "$(config "$work/warm.jsonl" true)" --run-key warm > /dev/null 2>&1

echo "| examples | no traces s | traces, wait 0 s: run s (extra %) | then \`w2c sync\` s | traces, default wait: run s (extra %) | left for sync | OTLP requests | trace-info requests | per 1,000 examples: OTLP + trace-info |"
echo "|---|---|---|---|---|---|---|---|---|"
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Each configuration REPS times (fresh sessions and experiments); medians.
REPS=${REPS:-3}
for n in "$N_SMALL" "$N_LARGE"; do
  python3 bench/gen_dataset.py "$n" "$work/data-$n.jsonl"
  off=$(config "$work/data-$n.jsonl" false)
  on=$(config "$work/data-$n.jsonl" true)
  : > "$work/t-off"; : > "$work/t-on0"; : > "$work/t-sync"; : > "$work/t-on"; : > "$work/left"
  otlp=0; ass=0
  for r in $(seq "$REPS"); do
    k="$n-$r"
    t0=$(now)
    MLFLOW_EXPERIMENT_NAME="bench-off-$k" "$bin" run --config "$off" --run-key "off-$k" > /dev/null 2>&1
    t1=$(now)
    otlp0=$(count '"POST /v1/traces'); ass0=$(count '"POST /api/3.0/mlflow/traces HTTP')
    # Traces with no wait at the end: the run ends with its records sent and
    # its traces pending; `w2c sync` sends them.
    W2C_TRACKING_TRACE_WAIT_SECS=0 MLFLOW_EXPERIMENT_NAME="bench-on0-$k" "$bin" run --config "$on" --run-key "on0-$k" > /dev/null 2>&1
    t2=$(now)
    fp=$(ls "$work/runs/on0-$k/sessions")
    MLFLOW_EXPERIMENT_NAME="bench-on0-$k" "$bin" sync "${fp:0:8}" --run-key "on0-$k" --runs-dir "$work/runs" > "$work/sync.out" 2>&1 || { cat "$work/sync.out" >&2; exit 1; }
    t3=$(now)
    otlp=$(( otlp + $(count '"POST /v1/traces') - otlp0 )); ass=$(( ass + $(count '"POST /api/3.0/mlflow/traces HTTP') - ass0 ))
    # The default: at most 3% of the run's time (60 s at most) for its
    # traces after its records.
    MLFLOW_EXPERIMENT_NAME="bench-on-$k" "$bin" run --config "$on" --run-key "on-$k" > /dev/null 2>&1
    t4=$(now)
    fp=$(ls "$work/runs/on-$k/sessions")
    python3 -c "import json,re,sys; p=json.load(open(sys.argv[1]))['pending']; m=[re.match(r'traces: (\d+)', x) for x in p]; print(sum(int(x.group(1)) for x in m if x))" "$work/runs/on-$k/sessions/$fp/mlflow_ids.json" >> "$work/left"
    echo "$t1 - $t0" | bc >> "$work/t-off"
    echo "$t2 - $t1" | bc >> "$work/t-on0"
    echo "$t3 - $t2" | bc >> "$work/t-sync"
    echo "$t4 - $t3" | bc >> "$work/t-on"
  done
  # Requests per session: one wait-0 run and its sync.
  otlp=$(( otlp / REPS )); ass=$(( ass / REPS ))
  awk -v n="$n" -v off="$(median < "$work/t-off")" -v on0="$(median < "$work/t-on0")" -v sync="$(median < "$work/t-sync")" \
    -v on="$(median < "$work/t-on")" -v l="$(median < "$work/left")" -v o="$otlp" -v s="$ass" \
    'BEGIN { printf "| %d | %.2f | %.2f (%+.1f%%) | %.2f | %.2f (%+.1f%%) | %d | %d | %d | %.0f + %.0f |\n", n, off, on0, 100*(on0-off)/off, sync, on, 100*(on-off)/off, l, o, s, 1000*o/n, 1000*s/n }'
done
