#!/usr/bin/env bash
# Orchestrator throughput against `w2c mock-server` (see BENCHMARKS.md).
#   bench/throughput.sh            # default sizes
#   N0=20000 N200=6400 bench/throughput.sh
# Prints a markdown table. Needs: cargo, python3, curl; wrk (optional) for the
# server's own capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
N0=${N0:-20000}      # examples at 0 ms latency
N200=${N200:-6400}   # examples at 200 ms latency
CONC=${CONC:-64}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
bin=target/release/w2c

start_server() { # args: extra flags; sets $url
  "$bin" mock-server --port 0 "$@" > "$work/server.out" &
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$url" ] && return 0
    sleep 0.05
  done
  echo "mock-server did not start" >&2; exit 1
}

config() { # args: dataset, concurrency, url -> prints config path
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
kind = "openai"
base_url = "$3/v1"
max_concurrency = $2
timeout_secs = 30
[methods]
enabled = ["mcq"]
TOML
  echo "$cfg"
}

timed_run() { # args: config -> prints seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" run --run-key "bench$RANDOM" --config "$1" > /dev/null 2>&1
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

python3 bench/gen_dataset.py "$N0" "$work/d0.jsonl"
python3 bench/gen_dataset.py "$N200" "$work/d200.jsonl"

echo "| scenario | requests | concurrency | wall s | req/s | reference |"
echo "|---|---|---|---|---|---|"

# 1. 0 ms latency: orchestrator overhead.
start_server
srv0=$url
s0=$(timed_run "$(config "$work/d0.jsonl" "$CONC" "$srv0")")
r0=$(python3 -c "print(f'{$N0 / $s0:.0f}')")
ref="-"
if command -v wrk >/dev/null; then
  body=$(python3 - <<'PY'
import json
print(json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "A) x\nB) y\nC) z\nD) w"}], "temperature": 0, "max_tokens": 32, "seed": 42}))
PY
)
  cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$body]]
LUA
  wrk_rps=$(wrk -t2 -c"$CONC" -d5s -s "$work/post.lua" "$srv0/v1/chat/completions" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  ref="server alone (wrk -t2 -c$CONC): $wrk_rps req/s"
fi
echo "| 0 ms latency | $N0 | $CONC | $s0 | $r0 | $ref |"

# 2. 200 ms latency: efficiency vs the ideal concurrency / latency.
start_server --latency-ms 200
s200=$(timed_run "$(config "$work/d200.jsonl" "$CONC" "$url")")
r200=$(python3 -c "print(f'{$N200 / $s200:.1f}')")
ideal=$(python3 -c "print(f'{$CONC / 0.2:.0f}')")
eff=$(python3 -c "print(f'{100 * $N200 / $s200 / ($CONC / 0.2):.1f}')")
echo "| 200 ms latency | $N200 | $CONC | $s200 | $r200 | ideal $ideal req/s: $eff% |"
