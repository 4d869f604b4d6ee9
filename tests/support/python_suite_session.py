"""Writes a session directory the way the Python suite lays it out
(../shared/docs/reference_spec.md §2-§3), with metrics computed by its rules
(§6.1: an invalid prediction is coerced to cannot_answer), so that
`w2c verify` can be tested on it. Usage: python_suite_session.py RUNS_DIR"""
import json
import os
import random
import sys
from hashlib import sha256

LABELS = ["direct", "tool_call", "request_for_info", "cannot_answer"]
runs = sys.argv[1]
config = {
    "eval_data_path": "When2Call/data/test/when2call_test_mcq.jsonl",
    "use_full_dataset": False,
    "n_per_label": 4,
    "subsample_seed": 11,
    "target_model": "some-model",
    "judge_model": "some-judge",
    "do_llm_judge": False,
    "do_mcq": True,
    "do_mcq_logprob": True,
    "mcq_stability_temperatures": [0.0, 0.3, 0.7],
    "retry_sleep_seconds": 10.0,
    "base_delay_seconds": 1e-05,
    "forced_target_delimiter": "''",
    "reasoning_models": "a,b",
    "api_seed": 25,
}
canonical = json.dumps(config, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
fp = sha256(canonical.encode("utf-8")).hexdigest()[:16]
session = os.path.join(runs, "pyrun", "sessions", fp)
now = "2026-02-22T14:09:27+00:00"


def pretty(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False))


def jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def metrics(golds, preds):
    cm = {g: {p: 0 for p in LABELS} for g in LABELS}
    correct = 0
    for g, p in zip(golds, preds):
        if p not in LABELS:
            p = "cannot_answer"
        cm[g][p] += 1
        correct += g == p
    f1 = {}
    for c in LABELS:
        tp = cm[c][c]
        fp_ = sum(cm[g][c] for g in LABELS) - tp
        fn = sum(cm[c].values()) - tp
        p = tp / (tp + fp_) if tp + fp_ else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1[c] = 2 * p * r / (p + r) if p + r else 0.0
    n = len(golds)
    return {
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(f1.values()) / 4,
        "macro_f1_no_direct": (f1["tool_call"] + f1["request_for_info"] + f1["cannot_answer"]) / 3,
        "n_total": n,
    }


pretty(os.path.join(session, "manifest.json"), {
    "schema_version": 1, "fingerprint": fp, "created_at": now, "updated_at": now, "config": config,
})
pretty(os.path.join(session, "mlflow_ids.json"), {
    "parent_run_id": "0" * 32, "child_run_ids": {"mcq": "1" * 32}, "parent_initialized": True,
})
os.makedirs(os.path.join(session, "checkpoints", "llm_judge"), exist_ok=True)

rng = random.Random(7)
uuids = [f"u{i:03d}" for i in range(16)]
golds = [LABELS[1 + i % 3] for i in range(16)]
choices = LABELS + ["invalid"]
mcq_preds = [rng.choice(choices) for _ in uuids]
rows = []
for u, g, p in zip(uuids, golds, mcq_preds):
    rows.append({
        "uuid": u, "gold_label": g, "gold_index": LABELS.index(g), "answer_names": LABELS,
        "predicted_index": LABELS.index(p) if p in LABELS else -1, "predicted_label": p,
        "raw_mcq_output": str(LABELS.index(p)) if p in LABELS else "", "target_model": "some-model",
        "temperature": 0.0, "api_seed": 25,
    })
jsonl(os.path.join(session, "checkpoints", "mcq", "mcq_predictions.jsonl"), rows)
m = metrics(golds, mcq_preds)
pretty(os.path.join(session, "checkpoints", "mcq", "_DONE.json"), {
    "exp_name": "mcq", "done_at": now, "session_fingerprint": fp,
    "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n_total": m["n_total"],
})
pretty(os.path.join(session, "artifacts_local", "mcq", "outputs", "mcq", "metrics_mcq.json"), {
    "header": {"method": "mcq"}, "metrics": m,
})

variants = {k: [rng.choice(LABELS) for _ in uuids] for k in ["raw", "norm_bytes", "norm_tokens", "norm_chars"]}
rows = []
for i, (u, g) in enumerate(zip(uuids, golds)):
    rows.append({
        "uuid": u, "gold_label": g,
        "predicted_label_norm_bytes": variants["norm_bytes"][i], "predicted_label_raw": variants["raw"][i],
        "predicted_label_norm_tokens": variants["norm_tokens"][i], "predicted_label_norm_chars": variants["norm_chars"][i],
        "mode": "llama_scoring", "target_model": "some-model", "forced_delimiter": "''", "effective_delimiter": "' '",
        "scores_raw": [-1.5, -2.0, float("-inf"), -3.25], "gold_index": LABELS.index(g),
    })
jsonl(os.path.join(session, "checkpoints", "mcq_logprob", "mcq_logprob_predictions.jsonl"), rows)
pretty(os.path.join(session, "checkpoints", "mcq_logprob", "_DONE.json"), {
    "exp_name": "mcq_logprob", "done_at": now, "session_fingerprint": fp,
    "raw_accuracy": metrics(golds, variants["raw"])["accuracy"],
    "byte_accuracy": metrics(golds, variants["norm_bytes"])["accuracy"],
    "tok_accuracy": metrics(golds, variants["norm_tokens"])["accuracy"],
    "char_accuracy": metrics(golds, variants["norm_chars"])["accuracy"],
    "mode_counts": {"llama_scoring": 16, "string_fallback": 0, "UNKNOWN": 0}, "n_total": 16,
})
print(session)
