"""MLflow's own Python client sending traces shaped like w2c's (a root span
for the example and 2 child LLM spans: 3 spans a trace), with MLflow's
asynchronous export, into a run of a fresh experiment. Prints the
traces/second from the first span to the end of the flush, as JSON.

    python3 bench/mlflow_client_traces.py N EXPERIMENT   # MLFLOW_TRACKING_URI set
"""

import json
import os
import sys
import time

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")

import mlflow  # noqa: E402


def main() -> None:
    n = int(sys.argv[1])
    mlflow.set_experiment(sys.argv[2])
    with mlflow.start_run(run_name="python-client"):
        t0 = time.monotonic()
        for i in range(n):
            with mlflow.start_span(name="mcq", span_type="CHAIN") as root:
                root.set_inputs({"example": f"ex-{i}", "question": "q" * 200})
                for role in ("target", "judge"):
                    with mlflow.start_span(name=f"{role} bench-model", span_type="CHAT_MODEL") as s:
                        s.set_inputs({"messages": [{"role": "user", "content": "x" * 400}]})
                        s.set_outputs({"choices": [{"message": {"content": "B"}}]})
                        s.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 100, "output_tokens": 2, "total_tokens": 102})
                root.set_outputs({"prediction": "tool_call", "correct": True})
        queued = time.monotonic() - t0
        mlflow.flush_trace_async_logging(terminate=False)
        total = time.monotonic() - t0
    print(json.dumps({"traces": n, "queued_s": round(queued, 2), "total_s": round(total, 2),
                      "traces_per_s": round(n / total, 1)}))


if __name__ == "__main__":
    main()
