#!/usr/bin/env bash
# Peak memory of `w2c run` against a server whose reply body never ends
# (`w2c mock-server --endless-body`), see BENCHMARKS.md. One request, one
# attempt, `timeout_secs = TIMEOUT`: without a body cap the client buffers
# until the timeout; with it, the attempt fails at `max_response_bytes`.
#   bench/endless_body.sh                         # release build of this tree
#   CLIENT=/path/to/old/w2c bench/endless_body.sh # another client binary
# Prints a markdown row: client, peak RSS (MiB), wall s, exit code, error.
# Needs: cargo, GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEOUT=${TIMEOUT:-5}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }

if [ -z "${SERVER:-}" ] || [ -z "${CLIENT:-}" ]; then
  cargo build --release --quiet
fi
server=${SERVER:-target/release/w2c}   # must have --endless-body
client=${CLIENT:-target/release/w2c}

"$server" mock-server --port 0 --endless-body > "$work/server.out" &
for _ in $(seq 100); do
  url=$(sed -n 's/^listening on //p' "$work/server.out")
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "mock-server did not start" >&2; exit 1; }

head -n 1 data/sample_when2call.jsonl > "$work/one.jsonl"
cat > "$work/eval.toml" <<TOML
[run]
runs_dir = "$work/runs"
[dataset]
path = "$work/one.jsonl"
[models]
target = "bench-model"
target_provider = "bench"
[providers.bench]
kind = "openai"
base_url = "$url/v1"
timeout_secs = $TIMEOUT
max_attempts = 1
max_concurrency = 1
[methods]
enabled = ["mcq"]
TOML

set +e
/usr/bin/time -f "%M %e" -o "$work/time" "$client" run --run-key bench --config "$work/eval.toml" \
  > /dev/null 2> "$work/stderr"
code=$?
set -e
read -r rss_kb wall < <(tail -n 1 "$work/time")
err=$(grep -ho '"error":"[^"]*' "$work"/runs/bench/sessions/*/checkpoints/mcq/errors.jsonl 2>/dev/null \
  | head -n 1 | sed 's/"error":"//; s/ (gave up.*//; s/^POST [^ ]* //' | cut -c1-90)
echo "| $client | $((rss_kb / 1024)) | $wall | $code | ${err:-?} |"
