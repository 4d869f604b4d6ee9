#!/usr/bin/env bash
# The Python of tests/official_judge.rs: NVIDIA's official When2Call
# LLM-as-judge scripts (../shared/reference/when2call_llm_judge/) run
# unchanged, so the venv holds exactly what they import: openai at the
# upstream pin (1.75.0), tqdm and requests. Cached under ~/.cache/w2c-ci
# (W2C_CI_CACHE overrides) and reused when present: the first run takes
# about 13 seconds (53 MB installed), later runs a second. The tests find
# the venv's python there (or through W2C_JUDGE_PYTHON).
set -euo pipefail
OPENAI=1.75.0
CACHE=${W2C_CI_CACHE:-$HOME/.cache/w2c-ci}
VENV=$CACHE/judge-venv
mkdir -p "$CACHE"
# One builder at a time on a machine (the same lock as the other venvs).
exec 9> "$CACHE/.lock"
command -v flock > /dev/null && flock 9

ready() {
  "$VENV/bin/python" - <<PY 2> /dev/null
import importlib.metadata as md
assert md.version("openai") == "$OPENAI", md.version("openai")
import openai, tqdm, requests
PY
}
ready && exit 0

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "openai==$OPENAI" tqdm requests
ready || { echo "openai $OPENAI, tqdm and requests did not install into $VENV" >&2; exit 1; }
