"""Dumps what the real MLflow Python client sees of an experiment's traces,
run inputs and logged models as JSON: per run, its dataset and model inputs
and the traces linked to it (id, tags, token usage, spans with their type,
parent and token usage, assessments)."""
import json
import sys

import mlflow
from mlflow import MlflowClient

uri, experiment = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
client = MlflowClient()
out = {"runs": {}, "models": []}
exp = client.get_experiment_by_name(experiment)
if exp is not None:
    for run in client.search_runs([exp.experiment_id], max_results=50000):
        full = client.get_run(run.info.run_id)
        inputs = full.inputs
        entry = {
            "name": run.info.run_name,
            "datasets": [
                {
                    "name": d.dataset.name,
                    "digest": d.dataset.digest,
                    "profile": d.dataset.profile,
                    "source": d.dataset.source,
                    "tags": {t.key: t.value for t in d.tags},
                }
                for d in inputs.dataset_inputs
            ],
            "models": [m.model_id for m in (inputs.model_inputs or [])],
            "traces": [],
        }
        traces = mlflow.search_traces(
            locations=[exp.experiment_id], run_id=run.info.run_id, return_type="list"
        )
        for t in traces:
            entry["traces"].append(
                {
                    "trace_id": t.info.trace_id,
                    "tags": dict(t.info.tags),
                    "token_usage": t.info.token_usage,
                    "request_preview": t.info.request_preview,
                    "spans": [
                        {
                            "name": s.name,
                            "span_type": s.span_type,
                            "parent_id": s.parent_id,
                            "start_ns": s.start_time_ns,
                            "end_ns": s.end_time_ns,
                            "token_usage": s.attributes.get("mlflow.chat.tokenUsage"),
                            "inputs": s.inputs,
                            "outputs": s.outputs,
                        }
                        for s in t.data.spans
                    ],
                    "assessments": [
                        {
                            "name": a.name,
                            "value": a.value,
                            "source_type": a.source.source_type,
                            "rationale": getattr(a, "rationale", None),
                            "expectation": a.expectation is not None
                            if hasattr(a, "expectation")
                            else None,
                        }
                        for a in t.info.assessments
                    ],
                }
            )
        out["runs"][run.info.run_id] = entry
    for m in client.search_logged_models(experiment_ids=[exp.experiment_id]):
        out["models"].append(
            {
                "model_id": m.model_id,
                "name": m.name,
                "status": str(m.status),
                "metrics": len(m.metrics or []),
            }
        )
print(json.dumps(out, default=str))
