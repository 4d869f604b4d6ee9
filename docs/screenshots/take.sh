#!/usr/bin/env bash
# Takes the screenshots in this directory: two demo sessions (the `mock`
# target under two model names, `mcq` and `llm_judge`) tracked in a fresh
# local `mlflow server`, then headless Chromium on the experiment's runs
# table, its Traces view and one trace's detail.
#   docs/screenshots/take.sh
# Needs: cargo, python3 with mlflow (pip install -r requirements-test.txt),
# curl, chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$PWD/docs/screenshots
PORT=${PORT:-5079}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
command -v chromium > /dev/null || { echo "chromium is missing: apt-get install -y chromium" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/w2c
. bench/mlflow_server.sh
start_mlflow_server "$work" "$PORT"
export MLFLOW_EXPERIMENT_NAME=when2call-demo

for model in mock-model mock-model-b; do
  sed -e "s#\.\./data#$PWD/data#; s#\"\.\./runs\"#\"$work/runs\"#; s#target = \"mock-model\"#target = \"$model\"#" \
    configs/demo.toml > "$work/$model.toml"
  "$bin" run --config "$work/$model.toml" --run-key demo > /dev/null 2>&1
done

read -r exp trace < <(python3 - <<PY
import mlflow
mlflow.set_tracking_uri("http://127.0.0.1:$PORT")
c = mlflow.MlflowClient()
exp = c.get_experiment_by_name("when2call-demo").experiment_id
run = [r for r in c.search_runs([exp], filter_string="tags.\`w2c.method\` = 'llm_judge'")][0]
traces = mlflow.search_traces(locations=[exp], run_id=run.info.run_id, return_type="list")
wrong = [t for t in traces if t.info.tags.get("w2c.correct") == "false"] or traces
print(exp, wrong[0].info.trace_id)
PY
)

shot() { # args: file url
  local profile
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1600,1000 --virtual-time-budget=20000 \
    --screenshot="$out/$1" "$2" > /dev/null 2>&1
  rm -rf "$profile"
}
base="http://127.0.0.1:$PORT/#/experiments/$exp"
shot runs.png "$base/runs"
shot traces.png "$base/traces"
shot trace.png "$base/traces?selectedEvaluationId=$trace"
ls -l "$out"/*.png
