#!/usr/bin/env bash
# Build and test times of the workspace as a developer meets them (issue 32:
# measured before and after the split into crates), on this machine:
#   1. a clean debug build of everything `cargo test` builds
#      (`cargo build --all-targets`) in an empty target directory;
#   2. the incremental rebuild of the same after a one-line change in the HTML
#      report (src/html_report.rs) and, separately, in the store
#      (src/store/jsonl.rs) — a comment line appended, then removed;
#   3. the whole `cargo test --locked` (every test binary, run as README's
#      test command runs them, without the venv set-up), unless TESTS=0.
# Prints one line per measurement (seconds). TARGET (default: a fresh
# temporary directory) is the target directory used for all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${TARGET:-$(mktemp -d "${TMPDIR:-/tmp}/w2c-build-times.XXXXXX")}
export CARGO_TARGET_DIR=$target
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

t0=$(now)
cargo build --locked --all-targets --quiet
echo "clean build (--all-targets): $(secs "$t0" "$(now)") s"

for file in src/html_report.rs src/store/jsonl.rs; do
  cp "$file" "$target/saved.rs"
  trap 'cp "$target/saved.rs" "$file"' EXIT
  echo "// build-times probe" >> "$file"
  t0=$(now)
  cargo build --locked --all-targets --quiet
  echo "incremental rebuild after a one-line change in $file: $(secs "$t0" "$(now)") s"
  cp "$target/saved.rs" "$file"
  trap - EXIT
done
# Back to the committed sources' build before timing the tests.
cargo build --locked --all-targets --quiet

if [ "${TESTS:-1}" != 0 ]; then
  t0=$(now)
  cargo test --locked --quiet > "$target/test.log" 2>&1 || {
    tail -30 "$target/test.log"
    exit 1
  }
  echo "whole cargo test: $(secs "$t0" "$(now)") s"
fi
