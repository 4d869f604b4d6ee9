#!/usr/bin/env bash
# Screenshots of the HTML report (headless Chromium): two mock models over
# 90 rows of the shared When2Call file, `mcq` and `llm_judge`; writes
# docs/screens/report-compare.png (1440 px, the comparison) and
# docs/screens/report-example.png (900 px, one example's detail).
# Needs chromium and a built w2c (W2C=path, default target/release/w2c).
set -euo pipefail
cd "$(dirname "$0")/../.."
W2C=$(realpath "${W2C:-target/release/w2c}")
DATA=$(realpath "${W2C_SHARED_DIR:-../shared}/data/when2call/when2call_test_llm_judge.jsonl")
OUT=$(pwd)/docs/screens
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for m in acme-small acme-large; do
  cat > "$m.toml" <<TOML
[run]
run_key = "report"
[dataset]
path = "$DATA"
n_per_label = 30
[models]
target = "$m"
target_provider = "mock"
judge = "acme-judge"
judge_provider = "mock"
[providers.mock]
kind = "mock"
[methods]
enabled = ["mcq", "llm_judge"]
TOML
  W2C_PROGRESS=off "$W2C" run --config "$m.toml" > /dev/null
done
fps=$(ls runs/report/sessions)
"$W2C" report $fps --format html --out report.html 2> /dev/null
first=$(ls runs/report/sessions | head -n1)
uuid=$(python3 - "runs/report/sessions/$first/artifacts_local/llm_judge/predictions.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(next(r["uuid"] for r in rows if r["gold"] == "cannot_answer" and r["prediction"] == "tool_call"))
PY
)
shot() { # width, height, file, query
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$work/profile-$3" --window-size="$1,$2" --virtual-time-budget=3000 \
    --screenshot="$OUT/$3" "file://$work/report.html?$4" 2> /dev/null
}
shot 1440 1100 report-compare.png "only=compare"
shot 900 1400 report-example.png "only=examples&method=llm_judge&disagree=1&example=$uuid"
echo "wrote $OUT/report-compare.png $OUT/report-example.png"
