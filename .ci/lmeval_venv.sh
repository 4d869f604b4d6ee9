#!/usr/bin/env bash
# The lm-evaluation-harness of tests/lmeval_parity.rs and bench/lmeval_parity.sh,
# once per machine: lm-eval 0.4.13 with its API extras (no torch) and the
# transformers its huggingface tokenizer backend needs, in a venv cached
# under ~/.cache/w2c-ci (W2C_CI_CACHE overrides). Reused when present; the
# first run takes about a minute. The tests find the venv's python there (or
# through W2C_LMEVAL_PYTHON).
set -euo pipefail
LM_EVAL=0.4.13
TRANSFORMERS=5.23.0
CACHE=${W2C_CI_CACHE:-$HOME/.cache/w2c-ci}
VENV=$CACHE/lmeval-venv
mkdir -p "$CACHE"
# One builder at a time on a machine (the same lock as .ci/llama_venv.sh).
exec 9> "$CACHE/.lock"
command -v flock > /dev/null && flock 9

ready() {
  "$VENV/bin/python" - <<PY 2> /dev/null
import importlib.metadata as md
assert md.version("lm_eval") == "$LM_EVAL", md.version("lm_eval")
assert md.version("transformers") == "$TRANSFORMERS", md.version("transformers")
import lm_eval.models.openai_completions, transformers, sklearn, pandas
PY
}
ready && exit 0

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# The tiny model's tokenizer folder names transformers 5's TokenizersBackend:
# transformers 4.x cannot load it.
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "lm-eval[api]==$LM_EVAL" "transformers==$TRANSFORMERS"
ready || { echo "lm-eval $LM_EVAL with transformers $TRANSFORMERS did not install into $VENV" >&2; exit 1; }
