"""Dumps what the real MLflow Python client sees of one experiment as JSON:
runs (info, params, metrics, tags) and, for each run, every artifact with its
size and the sha256 of the bytes `download_artifacts` returns."""
import hashlib
import json
import os
import sys
import tempfile

import mlflow
from mlflow import MlflowClient

uri, experiment = sys.argv[1], sys.argv[2]
with_artifacts = len(sys.argv) > 3 and sys.argv[3] == "artifacts"
mlflow.set_tracking_uri(uri)
client = MlflowClient()
out = {"runs": []}
exp = client.get_experiment_by_name(experiment)
if exp is not None:
    df = mlflow.search_runs(experiment_names=[experiment])
    out["search_runs_columns"] = list(df.columns)
    for run in client.search_runs([exp.experiment_id], max_results=50000):
        entry = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "lifecycle_stage": run.info.lifecycle_stage,
            "params": run.data.params,
            "metrics": run.data.metrics,
            "tags": run.data.tags,
            "parent": run.data.tags.get("mlflow.parentRunId"),
        }
        if with_artifacts:
            files = {}
            with tempfile.TemporaryDirectory() as tmp:
                local = client.download_artifacts(run.info.run_id, "", tmp)
                stack = [""]
                while stack:
                    path = stack.pop()
                    for f in client.list_artifacts(run.info.run_id, path or None):
                        if f.is_dir:
                            stack.append(f.path)
                        else:
                            with open(os.path.join(local, f.path), "rb") as fh:
                                data = fh.read()
                            files[f.path] = {
                                "size": f.file_size or 0,
                                "sha256": hashlib.sha256(data).hexdigest(),
                            }
            entry["artifacts"] = files
        out["runs"].append(entry)
print(json.dumps(out))
