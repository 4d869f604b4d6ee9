#!/usr/bin/env bash
# Captures what a person sees in a 110x32 terminal (tmux): a run of all
# five methods against `w2c mock-server` over 90 rows of the shared When2Call
# file, interrupted and resumed; `w2c status`; `w2c verify` after a
# prediction is edited. Writes docs/screens/*.txt. Needs tmux and a built w2c
# (W2C=path, default target/release/w2c).
set -euo pipefail
cd "$(dirname "$0")/../.."
W2C=$(realpath "${W2C:-target/release/w2c}")
DATA=$(realpath "${W2C_SHARED_DIR:-../shared}/data/when2call/when2call_test_llm_judge.jsonl")
OUT=$(pwd)/docs/screens
work=$(mktemp -d)
trap 'tmux kill-session -t w2c-screens 2>/dev/null; kill $server 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"

"$W2C" mock-server --port 0 --latency-ms 120 --jitter-ms 60 > server.out &
server=$!
until grep -q listening server.out; do sleep 0.1; done
url=$(sed -n 's/^listening on //p' server.out)

cat > eval.toml <<TOML
[run]
run_key = "tour"
seed = 42
[dataset]
path = "$DATA"
n_per_label = 30
[models]
target = "acme-small"
target_provider = "local"
judge = "acme-judge"
judge_provider = "local"
[providers.local]
kind = "openai"
base_url = "$url/v1"
max_concurrency = 16
[methods]
enabled = ["mcq", "mcq_logprob", "llm_judge", "stability_mcq", "stability_llm_judge"]
[methods.stability]
k = 3
temperatures = [0.7]
TOML

tmux new-session -d -s w2c-screens -x 110 -y 32
send() { tmux send-keys -t w2c-screens "$1" Enter; }
capture() {
  tmux capture-pane -p -t w2c-screens | sed -e 's/[[:space:]]*$//' -e '/^\$$/d' -e "s|$work/||g" | cat -s > "$OUT/$1"
}
wait_for() { until tmux capture-pane -p -t w2c-screens | grep -q "$1"; do sleep 0.1; done; }

send "PS1='\$ '; w2c() { \"$W2C\" \"\$@\"; }"
send "clear; w2c run --config eval.toml"
wait_for "stability_mcq_k=3_T=0.7 "
sleep 1
capture run-progress.txt
tmux send-keys -t w2c-screens C-c
wait_for "continue with"
capture run-interrupted.txt
send "clear; w2c status"
sleep 1
capture status-interrupted.txt
fp=$(ls runs/tour/sessions | head -n1)
send "clear; w2c resume tour/${fp:0:8} 2>/dev/null"
wait_for "^complete"
capture run-summary.txt
# Edit one stored prediction, as a careless script would.
pred=runs/tour/sessions/$fp/artifacts_local/mcq/predictions.jsonl
python3 - "$pred" <<'PY'
import json, sys
p = sys.argv[1]
rows = [json.loads(l) for l in open(p)]
rows[0]["prediction"] = "cannot_answer" if rows[0]["prediction"] != "cannot_answer" else "tool_call"
open(p, "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
send "clear; w2c verify tour/${fp:0:8} --local-only"
wait_for "checks failed"
capture verify-tampered.txt
