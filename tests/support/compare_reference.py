"""An independent computation of `w2c compare` for tests/compare.rs.

Reads each model's predictions.jsonl (one namespace), lines the examples up
by uuid in sorted order (as w2c does), and computes with Python's own tools:
accuracy, the official macro-F1 with scikit-learn's f1_score (average="macro"
over the labels present in gold or predictions), the official ToolHall rate,
their percentile bootstrap intervals with random.Random(seed).randrange (the
value at index round(q * (B - 1)) of the sorted resample values), paired
differences, McNemar's exact p-value with scipy.stats.binomtest, and Holm's
adjustment. Prints JSON.

usage: compare_reference.py SEED RESAMPLES LABEL=PREDICTIONS.jsonl ...
"""
import json
import random
import sys

from scipy.stats import binomtest
from sklearn.metrics import f1_score

LABELS = ["tool_call", "request_for_info", "cannot_answer", "direct"]


def accuracy(rows):
    return sum(r["prediction"] == r["gold"] for r in rows) / len(rows)


def macro_f1(rows):
    gold = [r["gold"] for r in rows]
    pred = [r["prediction"] for r in rows]
    present = [l for l in LABELS if l in gold or l in pred]
    return f1_score(gold, pred, labels=present, average="macro", zero_division=0.0)


def tool_hall(rows):
    qual = [r for r in rows if r["gold"] == "cannot_answer" and r["n_tools"] == 0]
    if not qual:
        return 0.0
    return sum(r["prediction"] == "tool_call" for r in qual) / len(qual)


METRICS = {"accuracy": accuracy, "macro_f1_official": macro_f1,
           "tool_hallucination_rate_official": tool_hall}


def percentiles(values):
    values = sorted(values)
    at = lambda q: values[min(round(q * (len(values) - 1)), len(values) - 1)]
    return at(0.025), at(0.975)


def holm(ps):
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def main():
    seed, resamples = int(sys.argv[1]), int(sys.argv[2])
    models = []
    for arg in sys.argv[3:]:
        label, path = arg.split("=", 1)
        rows = {}
        for line in open(path, encoding="utf-8"):
            r = json.loads(line)
            rows[r["uuid"]] = r
        models.append((label, rows))
    uuids = sorted(models[0][1])
    table = [[rows[u] for u in uuids] for _, rows in models]
    n = len(uuids)
    rng = random.Random(seed)
    samples = [{k: [] for k in METRICS} for _ in models]
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    diffs = [{k: [] for k in METRICS} for _ in pairs]
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        values = [{k: f([rows[i] for i in idx]) for k, f in METRICS.items()} for rows in table]
        for m, v in enumerate(values):
            for k in METRICS:
                samples[m][k].append(v[k])
        for p, (a, b) in enumerate(pairs):
            for k in METRICS:
                diffs[p][k].append(values[a][k] - values[b][k])
    out = {"models": {}, "pairs": []}
    for m, (label, _) in enumerate(models):
        out["models"][label] = {
            k: [f(table[m]), *percentiles(samples[m][k])] for k, f in METRICS.items()
        }
    raw = []
    for p, (a, b) in enumerate(pairs):
        only_a = sum(x["prediction"] == x["gold"] and y["prediction"] != y["gold"]
                     for x, y in zip(table[a], table[b]))
        only_b = sum(x["prediction"] != x["gold"] and y["prediction"] == y["gold"]
                     for x, y in zip(table[a], table[b]))
        pvalue = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
        raw.append(pvalue)
        out["pairs"].append({
            "a": models[a][0], "b": models[b][0], "only_a": only_a, "only_b": only_b,
            "mcnemar_p": pvalue,
            "differences": {
                k: [f(table[a]) - f(table[b]), *percentiles(diffs[p][k])]
                for k, f in METRICS.items()
            },
        })
    for pair, adjusted in zip(out["pairs"], holm(raw)):
        pair["adjusted_p"] = adjusted
    json.dump(out, sys.stdout)


main()
