"""The When2Call paper's MCQ metric set from an lm-evaluation-harness samples
file (`--log_samples`), computed the official way, for comparison with w2c.

usage: lmeval_official_metrics.py REFERENCE_DIR SAMPLES.jsonl CORRECTIONS.json

Runs in the lm-eval venv (numpy, scikit-learn and pandas come with lm-eval).
CORRECTIONS maps "uuid/choice_index" to a log-likelihood that replaces
lm-eval's for that choice (where lm-eval is known to be wrong); `{}` for none.

Per sample, as lm-eval's multiple_choice task does: pred = np.argmax(lls),
pred_norm = np.argmax(lls / character length of the choice); acc and
acc_norm are their means. lm-eval 0.4.13 has no `macro_f1` metric, so the
per-sample (gold, pred) pair that NVIDIA's harness logged under `macro_f1`
is added here, and then:
  - macro_f1 = sklearn.metrics.f1_score(golds, preds, average="macro")
    (the convention of lm-eval's macro-F1 aggregations);
  - tool_hallucination_rate = additional_metrics.calculate_hallucination_rate
    imported from REFERENCE_DIR and run on the augmented samples.
Prints one JSON object: {n, acc, acc_norm, macro_f1, tool_hallucination_rate,
per_doc: {uuid: {lls, pred, pred_norm, lmeval_acc, lmeval_acc_norm}}}.
"""
import json
import os
import sys
import tempfile

import numpy as np
from sklearn.metrics import f1_score


def main():
    reference_dir, samples_path, corrections_path = sys.argv[1:4]
    sys.path.insert(0, reference_dir)
    import additional_metrics  # noqa: E402  (the official file, imported in place)

    with open(corrections_path, encoding="utf-8") as f:
        corrections = json.load(f)
    with open(samples_path, encoding="utf-8") as f:
        samples = [json.loads(line) for line in f if line.strip()]
    golds, preds, accs, acc_norms = [], [], [], []
    per_doc = {}
    augmented = []
    for s in samples:
        uuid = s["doc"]["uuid"]
        lls = [float(r[0]) for r in s["filtered_resps"]]
        for i in range(len(lls)):
            key = f"{uuid}/{i}"
            if key in corrections:
                lls[i] = float(corrections[key])
        choices = [s["arguments"][f"gen_args_{i}"]["arg_1"] for i in range(len(lls))]
        lengths = np.array([float(len(c)) for c in choices])
        pred = int(np.argmax(lls))
        pred_norm = int(np.argmax(np.array(lls) / lengths))
        gold = int(s["target"])
        golds.append(gold)
        preds.append(pred)
        accs.append(1.0 if pred == gold else 0.0)
        acc_norms.append(1.0 if pred_norm == gold else 0.0)
        per_doc[uuid] = {
            "lls": lls,
            "pred": pred,
            "pred_norm": pred_norm,
            "lmeval_acc": s["acc"],
            "lmeval_acc_norm": s["acc_norm"],
        }
        augmented.append(dict(s, macro_f1=[gold, pred]))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "samples.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for s in augmented:
                f.write(json.dumps(s) + "\n")
        rate = additional_metrics.calculate_hallucination_rate(path, print_rate=False)
    out = {
        "n": len(samples),
        "acc": float(np.mean(accs)),
        "acc_norm": float(np.mean(acc_norms)),
        "macro_f1": float(f1_score(golds, preds, average="macro")),
        "tool_hallucination_rate": float(rate),
        "per_doc": per_doc,
    }
    sys.stdout.write(json.dumps(out) + "\n")


main()
