#!/usr/bin/env bash
# mcq_logprob on a real server (see BENCHMARKS.md): the whole shared
# When2Call file through llama-cpp-python serving the shared tiny GGUF, every
# scored choice compared with the in-process reference, and the scoring
# throughput next to the server's own capacity for the same calls.
#   bench/real_server.sh                 # template "default", n_ctx 8192
#   TEMPLATE=hermes N_CTX=2048 TRUNCATE=1 bench/real_server.sh
# Needs: cargo, python3, curl, and the venv `.ci/llama_venv.sh` builds
# (W2C_LLAMA_PYTHON overrides its python). Takes a long time (about an hour
# on a busy 2-core machine): run it once per change that matters.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${W2C_SHARED_DIR:-../shared}
PY=${W2C_LLAMA_PYTHON:-$HOME/.cache/w2c-ci/llama-venv/bin/python}
TEMPLATE=${TEMPLATE:-default}
N_CTX=${N_CTX:-8192}
TRUNCATE=${TRUNCATE:-0}
SAMPLE_EVERY=${SAMPLE_EVERY:-6}   # capacity loop: every 6th scoring call
DATASET=${DATASET:-$SHARED/data/when2call/when2call_test_llm_judge.jsonl}
"$PY" -c "import llama_cpp.server" 2>/dev/null || {
  echo "llama-cpp-python missing at $PY: run .ci/llama_venv.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --locked --quiet
bin="$work/w2c"   # a copy: rebuilding during the run must not touch it
cp target/debug/w2c "$bin"   # debug build: the client's share is measured below

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m llama_cpp.server --model "$SHARED/models/tiny-llama-local-f32.gguf" \
  --model_alias tiny-llama-local --host 127.0.0.1 --port "$port" --n_ctx "$N_CTX" \
  --n_threads 2 --n_threads_batch 2 --logits_all true --use_mlock false \
  --verbose false > "$work/server.log" 2>&1 &
url="http://127.0.0.1:$port"
for _ in $(seq 600); do
  curl -sf "$url/v1/models" > /dev/null && break
  sleep 0.2
done

truncation=""
if [ "$TRUNCATE" = 1 ]; then
  truncation=$'truncation = "left"\nmax_context_tokens = '"$N_CTX"
fi
cat > "$work/eval.toml" <<TOML
[run]
runs_dir = "$work/runs"
seed = 7
[dataset]
path = "$(realpath "$DATASET")"
[models]
target = "tiny-llama-local"
target_provider = "llama"
[providers.llama]
kind = "openai"
base_url = "$url/v1"
max_concurrency = 1
timeout_secs = 600
max_attempts = 3
[methods]
enabled = ["mcq_logprob"]
[methods.mcq_logprob]
template = "$TEMPLATE"
$truncation
TOML

t0=$(date +%s.%N)
"$bin" run --run-key bench --config "$work/eval.toml" --no-tracking > "$work/run.out" 2>&1 || {
  cat "$work/run.out" >&2; exit 1; }
t1=$(date +%s.%N)
session=$(ls -d "$work"/runs/bench/sessions/*)
grep -h "^note" "$work/run.out" || true

python3 bench/real_server_compare.py "$session" "$PY" \
  "$SHARED/models/tiny-llama-local-f32.gguf" "$url" "$(python3 -c "print($t1 - $t0)")" \
  "$SAMPLE_EVERY"
