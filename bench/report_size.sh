#!/usr/bin/env bash
# Size and load time of the HTML report (see BENCHMARKS.md): MODELS mock
# targets x N synthetic examples, `mcq` and `llm_judge`, one campaign; the
# page is opened in headless Chromium with ?selftest=1 (which renders the
# explorer and checks the chart labels), timed against an empty page.
#   bench/report_size.sh                 # N=3000 MODELS=5
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}
MODELS=${MODELS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
bin=$(realpath target/release/w2c)
python3 bench/gen_dataset.py "$N" "$work/data.jsonl"
{
  cat <<TOML
[run]
runs_dir = "$work/runs"
campaign = "size"
[dataset]
path = "$work/data.jsonl"
[models]
judge = "judge"
judge_provider = "mock"
[providers.mock]
kind = "mock"
max_concurrency = 64
[methods]
enabled = ["mcq", "llm_judge"]
TOML
  for i in $(seq "$MODELS"); do printf '[[targets]]\nmodel = "model-%s"\nprovider = "mock"\n' "$i"; done
} > "$work/campaign.toml"
W2C_PROGRESS=off "$bin" run --config "$work/campaign.toml" > /dev/null
fps=$(ls "$work/runs/size/sessions")
t0=$(date +%s.%N)
"$bin" report $fps --runs-dir "$work/runs" --format html --out "$work/report.html" 2> /dev/null
t1=$(date +%s.%N)
echo '<!doctype html><title>empty</title>' > "$work/empty.html"
open_page() { # file -> seconds to load, run the scripts and dump the DOM
  local s e
  s=$(date +%s.%N)
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile-$RANDOM" --window-size=1440,1000 \
    --dump-dom "file://$1?selftest=1" > "$work/dom.html" 2> /dev/null
  e=$(date +%s.%N)
  python3 -c "print(f'{$e - $s:.2f}')"
}
empty=$(open_page "$work/empty.html")
page=$(open_page "$work/report.html")
python3 - "$work/report.html" "$work/dom.html" "$t0" "$t1" "$empty" "$page" <<'PY'
import json, os, re, sys
path, dom, t0, t1, empty, page = sys.argv[1:]
m = re.search(r'<pre id="selftest">(.*?)</pre>', open(dom).read(), re.S)
st = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")) if m else {}
print(f"| examples x models | page MiB | w2c report s | Chromium open s (empty page) | rows shown | errors | label overlaps |")
print(f"|---|---|---|---|---|---|---|")
print(f"| {os.environ.get('N', '3000')} x {os.environ.get('MODELS', '5')} | {os.path.getsize(path) / 2**20:.1f} | {float(t1) - float(t0):.2f} | {page} ({empty}) | {st.get('shown')} of {st.get('total')} | {len(st.get('errors', []))} | {len(st.get('overlaps', []))} |")
PY
