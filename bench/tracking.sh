#!/usr/bin/env bash
# MLflow tracking cost (see BENCHMARKS.md): the same `mcq` run offline and
# tracked against a local `mlflow server`, at two dataset sizes. The REST call
# count per run comes from the server's access log.
#   bench/tracking.sh                  # N_SMALL=2000 N_LARGE=16000
# Needs: cargo, python3 with mlflow (pip install -r requirements-test.txt), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
N_SMALL=${N_SMALL:-2000}
N_LARGE=${N_LARGE:-16000}
PORT=${PORT:-5077}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT

cargo build --release --quiet
bin=$PWD/target/release/w2c

. bench/mlflow_server.sh
start_mlflow_server "$work" "$PORT"

config() { # args: dataset -> prints config path
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
max_concurrency = 64
[methods]
enabled = ["mcq"]
TOML
  echo "$cfg"
}

calls() { grep -c '"\(GET\|POST\|PUT\) /api' "$work/server.log" || true; }

echo "| examples | offline s | tracked s | overhead s | REST calls | uploaded MiB |"
echo "|---|---|---|---|---|---|"
for n in "$N_SMALL" "$N_LARGE"; do
  python3 bench/gen_dataset.py "$n" "$work/data-$n.jsonl"
  cfg=$(config "$work/data-$n.jsonl")
  t0=$(date +%s.%N)
  "$bin" run --config "$cfg" --run-key "off-$n" --no-tracking > /dev/null 2>&1
  t1=$(date +%s.%N)
  before=$(calls)
  MLFLOW_EXPERIMENT_NAME="bench-$n" "$bin" run --config "$cfg" --run-key "on-$n" > /dev/null 2>&1
  t2=$(date +%s.%N)
  after=$(calls)
  mib=$(du -sm "$work/artifacts" | cut -f1)
  awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" -v k=$((after - before)) -v m="$mib" \
    'BEGIN { printf "| %d | %.2f | %.2f | %.2f | %d | %d (cumulative) |\n", n, b-a, c-b, (c-b)-(b-a), k, m }'
done
