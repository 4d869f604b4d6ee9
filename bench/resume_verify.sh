#!/usr/bin/env bash
# A finished N-example `mcq` session (see BENCHMARKS.md): wall time and peak
# RSS of `w2c resume <FP>` (nothing left to do), `w2c verify <FP>
# --local-only` and `w2c run --config` on it, then which session files a
# resume rewrote.
#   bench/resume_verify.sh                        # N=100000 RUNS=7, this tree's release build
#   OLD=/path/to/older/w2c bench/resume_verify.sh # the same, runs alternating with an older binary
# The session is created by OLD when given (so the new binary also reads an
# older session), else by this tree's binary. Needs: cargo, python3, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
RUNS=${RUNS:-7}
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
new=$PWD/target/release/w2c
old=${OLD:-}

python3 bench/gen_dataset.py "$N" "$work/data.jsonl"
cat > "$work/eval.toml" <<TOML
[run]
runs_dir = "$work/runs"
[dataset]
path = "$work/data.jsonl"
[models]
target = "bench-model"
target_provider = "bench"
[providers.bench]
kind = "mock"
max_concurrency = 64
[methods]
enabled = ["mcq"]
TOML
"${old:-$new}" run --config "$work/eval.toml" --run-key bench --no-tracking > /dev/null 2>&1
fp=$(basename "$(ls -d "$work"/runs/bench/sessions/*)")
session="$work/runs/bench/sessions/$fp"

timed() { # args: label binary command... ; appends "label seconds kb" to $work/times
  local label=$1 bin=$2
  shift 2
  /usr/bin/time -f "$label %e %M" -o "$work/t" "$bin" "$@" > /dev/null 2>&1 || {
    echo "$label failed: $bin $*" >&2
    exit 1
  }
  cat "$work/t" >> "$work/times"
}

bins=("new:$new")
[ -n "$old" ] && bins+=("old:$old")
for _ in $(seq "$RUNS"); do
  for b in "${bins[@]}"; do
    name=${b%%:*} bin=${b#*:}
    timed "$name resume" "$bin" resume "$fp" --runs-dir "$work/runs" --no-tracking
    timed "$name verify" "$bin" verify "$fp" --runs-dir "$work/runs" --local-only
    timed "$name run" "$bin" run --config "$work/eval.toml" --run-key bench --no-tracking
  done
done

snapshot() { (cd "$session" && find . -type f ! -name .lock -printf '%p %i %T@ ' -exec sha256sum {} \; | sort); }
snapshot > "$work/before"
"$new" resume "$fp" --runs-dir "$work/runs" --no-tracking > /dev/null 2>&1
snapshot > "$work/after"
rewritten=$(diff "$work/before" "$work/after" | sed -n 's/^> \.\/\([^ ]*\) .*/\1/p' | tr '\n' ' ')

python3 - "$work/times" "$N" "$RUNS" "${rewritten:-none}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    binary, command, secs, kb = line.split()
    rows.setdefault((command, binary), []).append((float(secs), int(kb) / 1024))
print(f"{sys.argv[2]} examples, {sys.argv[3]} runs each (min / median / max)")
print()
print("| command | binary | wall s | peak MiB |")
print("|---|---|---|---|")
for (command, binary), v in sorted(rows.items()):
    s = sorted(x[0] for x in v)
    m = sorted(x[1] for x in v)
    print(f"| {command} | {binary} | {s[0]:.3f} / {statistics.median(s):.3f} / {s[-1]:.3f} "
          f"| {m[0]:.0f} / {statistics.median(m):.0f} / {m[-1]:.0f} |")
print()
print(f"files a resume of the finished session rewrote (new binary; .lock holds the PID): {sys.argv[4]}")
PY
