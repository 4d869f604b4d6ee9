#!/usr/bin/env bash
# Plans a w2c session split into N shards and submits it to Slurm: a job
# array of N tasks (deploy/slurm/w2c-shard.sbatch) and a finalize job that
# runs after it (afterany, so it reports shards that failed).
#
#   deploy/slurm/submit.sh eval.toml 4 [extra sbatch arguments for the array...]
#
# The extra arguments (a GPU, a time limit, CPUs, memory: `--gres=gpu:1
# --time=04:00:00`) go to the array only: the finalize job loads no model
# and needs none of them. What both jobs need (an account, a partition, a
# QOS) goes in sbatch's own variables, which both submissions read:
# SBATCH_ACCOUNT, SBATCH_PARTITION, SBATCH_QOS.
#
# Prints `session=RUN_KEY/FINGERPRINT array_job=... finalize_job=...` on
# stdout: the jobs name the session by that address (the run key is
# W2C_RUN_KEY's, the config's `run.run_key`, or the one `w2c plan`
# generated), so the same config under another run key in the runs
# directory is never taken for it. The environment (W2C_RUNS_DIR,
# MLFLOW_TRACKING_URI, W2C_SERVER_CMD, ...) is exported to the jobs, as
# sbatch does by default. W2C_BIN is the w2c binary the jobs and this
# script run (default: `w2c` on the PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=${1:?usage: submit.sh CONFIG SHARDS [sbatch args...]}
shards=${2:?usage: submit.sh CONFIG SHARDS [sbatch args...]}
shift 2
W2C=${W2C_BIN:-w2c}
session=$("$W2C" plan --config "$config" --shards "$shards")
array=$(sbatch --parsable --array=0-$((shards - 1)) "$@" "$here/w2c-shard.sbatch" "$session")
array=${array%%;*}
final=$(sbatch --parsable --dependency=afterany:"$array" "$here/w2c-finalize.sbatch" "$session")
final=${final%%;*}
echo "session=$session array_job=$array finalize_job=$final"
