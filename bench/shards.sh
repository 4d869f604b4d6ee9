#!/usr/bin/env bash
# Scaling past one endpoint (see BENCHMARKS.md, issue 23):
#  1. one session split into 1, 2 and 4 shards, each shard a process with its
#     own endpoint of fixed capacity (`w2c mock-server --max-concurrency C
#     --latency-ms 200`: at most C/0.2 requests per second), as each node of
#     a job array serves its own model;
#  2. one process over 3 such endpoints behind one provider (base_urls) vs 1.
#   bench/shards.sh                  # N=1600 examples, C=8
#   N=3200 C=16 bench/shards.sh
# Prints markdown tables. Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1600}
C=${C:-8}
LAT=${LAT:-200}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
bin=$PWD/target/release/w2c
python3 bench/gen_dataset.py "$N" "$work/d.jsonl"

urls=()
for i in 0 1 2 3; do
  : > "$work/s$i.out"
  "$bin" mock-server --port 0 --latency-ms "$LAT" --max-concurrency "$C" > "$work/s$i.out" &
  u=""
  for _ in $(seq 100); do
    u=$(sed -n 's/^listening on //p' "$work/s$i.out")
    [ -n "$u" ] && break
    sleep 0.05
  done
  [ -n "$u" ] || { echo "mock-server $i did not start" >&2; exit 1; }
  urls+=("$u")
done

config() { # args: name, base_urls TOML value, client concurrency -> path
  cat > "$work/$1.toml" <<TOML
[run]
runs_dir = "$work/runs"
[dataset]
path = "$work/d.jsonl"
[models]
target = "bench-model"
target_provider = "bench"
[providers.bench]
kind = "openai"
base_urls = $2
max_concurrency = $3
timeout_secs = 60
[methods]
enabled = ["mcq"]
TOML
  echo "$work/$1.toml"
}

now() { python3 -c 'import time; print(time.time())'; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "### $N examples, endpoints of $C slots × ${LAT} ms (at most $(( C * 1000 / LAT )) req/s each)"
echo
echo "| shards (processes, one endpoint each) | wall s | req/s | speed-up |"
echo "| --- | --- | --- | --- |"
cfg=$(config shards "[\"${urls[0]}/v1\"]" "$C")
base=""
for n in 1 2 4; do
  fp=$("$bin" plan --config "$cfg" --run-key "shards$n" --shards "$n" --no-tracking 2>/dev/null)
  t0=$(now)
  pids=()
  for ((i = 0; i < n; i++)); do
    W2C_BASE_URLS_BENCH="${urls[$i]}/v1" "$bin" resume "$fp" --runs-dir "$work/runs" \
      --run-key "shards$n" --shard "$i/$n" --no-tracking > /dev/null 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now)
  wall=$(secs "$t0" "$t1")
  [ -z "$base" ] && base=$wall
  echo "| $n | $wall | $(python3 -c "print(f'{$N / $wall:.0f}')") | $(python3 -c "print(f'{$base / $wall:.2f}x')") |"
done

echo
echo "| one process, endpoints behind one provider | wall s | req/s | speed-up |"
echo "| --- | --- | --- | --- |"
base=""
for n in 1 3; do
  list=$(python3 -c "import sys; print('[' + ', '.join('\"%s/v1\"' % u for u in sys.argv[1:]) + ']')" "${urls[@]:0:$n}")
  cfg=$(config "endpoints$n" "$list" "$C")
  t0=$(now)
  "$bin" run --config "$cfg" --run-key "endpoints$n" --no-tracking > /dev/null 2>&1
  t1=$(now)
  wall=$(secs "$t0" "$t1")
  [ -z "$base" ] && base=$wall
  echo "| $n | $wall | $(python3 -c "print(f'{$N / $wall:.0f}')") | $(python3 -c "print(f'{$base / $wall:.2f}x')") |"
done
