#!/usr/bin/env bash
# mcq_logprob with the official templates against lm-evaluation-harness on
# the whole shared When2Call file (see BENCHMARKS.md): llama-cpp-python
# serving the shared tiny GGUF, lm-eval 0.4.13 `local-completions` and w2c on
# the same server, every choice compared (within 1e-3; end-of-generation
# choices against the in-process reference), then predictions and the
# paper's metric set. CI runs the same comparison on a handful of rows
# (tests/lmeval_parity.rs).
#   bench/lmeval_parity.sh                            # task when2call, n_ctx 8192
#   TASKS=when2call,when2call-hermes bench/lmeval_parity.sh
# Needs: cargo, and the venvs of .ci/llama_venv.sh and .ci/lmeval_venv.sh.
# Takes a while (two passes over 1,200 scoring calls per task on a 2-core
# machine): run it once per change that matters.
set -euo pipefail
cd "$(dirname "$0")/.."
export W2C_LMEVAL_TASKS=${TASKS:-when2call}
export W2C_LMEVAL_N_CTX=${N_CTX:-8192}
cargo test --locked --quiet --test lmeval_parity -- --ignored --exact \
  whole_file_parity_with_lm_eval --nocapture
