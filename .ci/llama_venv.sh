#!/usr/bin/env bash
# Builds the real LLM server of tests/real_server.rs and bench/real_server.sh
# once per machine: llama-cpp-python (its OpenAI-compatible server) compiled
# from the PyPI source distribution into a cached wheel, installed into a
# cached venv. Both live under ~/.cache/w2c-ci (W2C_CI_CACHE overrides) and
# are reused when present: the first run takes about 3-5 minutes at -j2,
# later runs a second. The tests find the venv's python there (or through
# W2C_LLAMA_PYTHON).
set -euo pipefail
VERSION=0.3.36
CACHE=${W2C_CI_CACHE:-$HOME/.cache/w2c-ci}
VENV=$CACHE/llama-venv
WHEELS=$CACHE/wheels
mkdir -p "$CACHE"
# One builder at a time on a machine.
exec 9> "$CACHE/.lock"
command -v flock > /dev/null && flock 9

ready() {
  "$VENV/bin/python" - <<PY 2> /dev/null
import llama_cpp, llama_cpp.server
assert llama_cpp.__version__ == "$VERSION", llama_cpp.__version__
PY
}
ready && exit 0

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl > /dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION (once per machine, about 3-5 minutes)" >&2
  mkdir -p "$WHEELS"
  # --no-binary for this one package only (`:all:` would compile cmake too);
  # --no-cache-dir so pip's cache never hands back a wheel built with other flags.
  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF" \
    "$VENV/bin/pip" wheel --quiet --disable-pip-version-check --no-cache-dir \
    "llama-cpp-python==$VERSION" --no-binary llama-cpp-python --no-deps -w "$WHEELS"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check --find-links "$WHEELS" \
  "llama-cpp-python[server]==$VERSION"
ready || { echo "llama-cpp-python $VERSION did not install into $VENV" >&2; exit 1; }
