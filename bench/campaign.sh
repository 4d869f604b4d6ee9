#!/usr/bin/env bash
# A campaign of TARGETS models on one endpoint (see BENCHMARKS.md): does the
# endpoint stay busy across the targets (no drain between sessions)?
#   bench/campaign.sh              # 3 targets x 2000 examples, 200 ms, concurrency 64
#   TARGETS=3 N=2000 LAT=200 CONC=64 bench/campaign.sh
# The ideal is CONC / latency requests per second for the whole campaign; the
# script prints the campaign's wall time and its share of that ideal, and the
# same for one target alone (for the start-up and tail every run has).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=${TARGETS:-3}
N=${N:-2000}
LAT=${LAT:-200}
CONC=${CONC:-64}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
bin=target/release/w2c
"$bin" mock-server --port 0 --latency-ms "$LAT" > "$work/server.out" &
for _ in $(seq 100); do
  url=$(sed -n 's/^listening on //p' "$work/server.out")
  [ -n "$url" ] && break
  sleep 0.05
done
python3 bench/gen_dataset.py "$N" "$work/data.jsonl"

config() { # args: number of targets -> prints the config path
  local cfg="$work/campaign-$1.toml"
  {
    cat <<TOML
[run]
runs_dir = "$work/runs-$1"
[dataset]
path = "$work/data.jsonl"
[providers.bench]
kind = "openai"
base_url = "$url/v1"
max_concurrency = $CONC
timeout_secs = 30
[methods]
enabled = ["mcq"]
TOML
    for i in $(seq "$1"); do
      printf '[[targets]]\nmodel = "bench-model-%s"\nprovider = "bench"\n' "$i"
    done
  } > "$cfg"
  echo "$cfg"
}

timed() { # args: config -> prints seconds
  local t0 t1
  t0=$(date +%s.%N)
  W2C_PROGRESS=off "$bin" run --config "$1" > "$work/run.out" 2>&1 || { cat "$work/run.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

curl -s -X POST "$url/stats/reset" > /dev/null
one=$(timed "$(config 1)")
curl -s -X POST "$url/stats/reset" > /dev/null
all=$(timed "$(config "$TARGETS")")
max=$(curl -s "$url/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_in_flight"])')
python3 - "$one" "$all" <<PY
import sys
one, alln = map(float, sys.argv[1:])
ideal = $CONC / ($LAT / 1000)
for name, targets, wall in (("1 target", 1, one), ("$TARGETS targets", $TARGETS, alln)):
    req = targets * $N
    print(f"| {name} | {req} | {wall:.2f} | {req / wall:.1f} | {req / wall / ideal * 100:.1f}% |")
PY
echo "most requests in flight at once during the campaign: $max (limit $CONC)"
