"""An independent computation of `w2c compare` for tests/compare.rs.

Reads each model's predictions.jsonl (one namespace), lines the examples up
by uuid in sorted order (as w2c does), and computes with Python's own tools.

When every row of every model carries NVIDIA's official judgement (a judge
under protocol `when2call`), the metrics are the paper's LLM-as-judge
columns over the rows NVIDIA's aggregate counts for every model (gold not
`direct`, a classification, no script raising): Acc, F1 with scikit-learn's
f1_score (average="macro" over the gold categories present, the judged
classification as the prediction) and Tool Hall (cannot_answer rows judged
tool_call over all cannot_answer rows); a row is correct when its
classification equals its gold label.

Otherwise: accuracy, the official macro-F1 with scikit-learn's f1_score
(average="macro" over the labels present in gold or predictions) and the
official ToolHall rate (cannot_answer rows without tools; 0.0 when none
qualifies).

Then: their percentile bootstrap intervals with random.Random(seed).randrange
(a resample where a rate has no qualifying row gives it no value and is
skipped; the value at index round(q * (B - 1)) of the sorted values, Python's
round: half to even), paired differences, McNemar's exact p-value with
scipy.stats.binomtest, and Holm's adjustment. Prints JSON.

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
    """None when no row qualifies (a resample skips it)."""
    qual = [r for r in rows if r["gold"] == "cannot_answer" and r["n_tools"] == 0]
    if not qual:
        return None
    return sum(r["prediction"] == "tool_call" for r in qual) / len(qual)


MC = {"accuracy": accuracy, "macro_f1_official": macro_f1,
      "tool_hallucination_rate_official": tool_hall}

CATEGORIES = ["tool_call", "request_for_info", "cannot_answer"]


def judge_acc(rows):
    return sum(r["prediction"] == r["gold"] for r in rows) / len(rows) if rows else None


def judge_f1(rows):
    gold = [r["gold"] for r in rows]
    present = [c for c in CATEGORIES if c in gold]
    if not present:
        return None
    pred = [r["prediction"] for r in rows]
    return f1_score(gold, pred, labels=present, average="macro", zero_division=0.0)


def judge_tool_hall(rows):
    ca = [r for r in rows if r["gold"] == "cannot_answer"]
    if not ca:
        return None
    return sum(r["prediction"] == "tool_call" for r in ca) / len(ca)


JUDGE = {"judge_table_acc": judge_acc, "judge_table_f1": judge_f1,
         "judge_table_tool_hall": judge_tool_hall}


def percentiles(values):
    if not values:
        return None, None
    values = sorted(values)
    at = lambda q: values[min(round(q * (len(values) - 1)), len(values) - 1)]
    return at(0.025), at(0.975)


def difference(x, y):
    return None if x is None or y is None else x - y


def classified(row):
    official = row.get("official") or {}
    if official.get("outcome") != "classified" or row["gold"] == "direct":
        return None
    return official["classification"]


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
    judge = all("official" in rows[u] for _, rows in models for u in uuids)
    if judge:
        metrics = JUDGE
        uuids = [u for u in uuids if all(classified(rows[u]) is not None for _, rows in models)]
        table = [[dict(rows[u], prediction=classified(rows[u])) for u in uuids] for _, rows in models]
    else:
        metrics = MC
        table = [[rows[u] for u in uuids] for _, rows in models]
    # On all the rows, the MC table's ToolHall is 0.0 when none qualifies.
    full = lambda k, f, rows: 0.0 if (v := f(rows)) is None and k == "tool_hallucination_rate_official" else v
    n = len(uuids)
    rng = random.Random(seed)
    samples = [{k: [] for k in metrics} for _ in models]
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    diffs = [{k: [] for k in metrics} for _ in pairs]
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        values = [{k: f([rows[i] for i in idx]) for k, f in metrics.items()} for rows in table]
        for m, v in enumerate(values):
            for k in metrics:
                if v[k] is not None:
                    samples[m][k].append(v[k])
        for p, (a, b) in enumerate(pairs):
            for k in metrics:
                if values[a][k] is not None and values[b][k] is not None:
                    diffs[p][k].append(values[a][k] - values[b][k])
    out = {"n": n, "models": {}, "pairs": []}
    for m, (label, _) in enumerate(models):
        out["models"][label] = {
            k: [full(k, f, table[m]), *percentiles(samples[m][k])] for k, f in metrics.items()
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
                k: [difference(full(k, f, table[a]), full(k, f, table[b])),
                    *percentiles(diffs[p][k])]
                for k, f in metrics.items()
            },
        })
    for pair, adjusted in zip(out["pairs"], holm(raw)):
        pair["adjusted_p"] = adjusted
    json.dump(out, sys.stdout)


main()
