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
(average="macro" over the labels present in gold or predictions), the
official ToolHall rate (cannot_answer rows without tools; 0.0 when none
qualifies), AnswerHall (predicted direct where gold is not, over every row)
and ParamHall (request_for_info rows predicted tool_call).

Then: their percentile bootstrap intervals with random.Random(seed).randrange
(a resample where a rate has no qualifying row gives it no value and is
skipped; the value at index round(q * (B - 1)) of the sorted values, Python's
round: half to even), paired differences, McNemar's exact p-value with
scipy.stats.binomtest, and Holm's adjustment. Beside them: each bootstrap standard error
(statistics.stdev of the bootstrap values), each difference's paired bootstrap
p-value (2 (1 + min(#<=0, #>=0)) / (m + 1), capped at 1) and the Monte-Carlo
error of the interval ends; each rate's k/n with statsmodels' Wilson interval
(proportion_confint(method="wilson")) and binomial SE; per gold label each
model's accuracy (Wilson), each pair's paired bootstrap difference and
McNemar's test, Holm over every label and pair; the other metrics' bootstrap
p-values Holm-adjusted over every metric and pair; the MDE at 80% power
with scipy.stats.norm.ppf. Prints JSON.

With --dataset FILE: accuracy's and each accuracy difference's standard
error clustered by the file's source_id, from statsmodels' OLS on a constant
with cov_type="cluster" (None with fewer than two clusters).

With --stratified: each resample draws, gold label by gold label (in the
order direct, tool_call, request_for_info, cannot_answer), as many of that
label's rows as it has.

usage: compare_reference.py [--stratified] [--dataset FILE] SEED RESAMPLES LABEL=PREDICTIONS.jsonl ...
"""
import json
import math
import random
import statistics
import sys

from scipy.stats import binomtest, norm
from statsmodels.stats.proportion import proportion_confint
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


def answer_hall(rows):
    """Predicted direct where gold is not, over every row."""
    return sum(r["prediction"] == "direct" and r["gold"] != "direct" for r in rows) / len(rows) if rows else None


def param_hall(rows):
    rfi = [r for r in rows if r["gold"] == "request_for_info"]
    return sum(r["prediction"] == "tool_call" for r in rfi) / len(rfi) if rfi else None


MC = {"accuracy": accuracy, "macro_f1_official": macro_f1,
      "tool_hallucination_rate_official": tool_hall,
      "answer_hallucination_rate": answer_hall, "parameter_hallucination_rate": param_hall}

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


def bootstrap_se(values):
    return statistics.stdev(values) if len(values) >= 2 else None


def bootstrap_p(values):
    if not values:
        return None
    below = sum(v <= 0 for v in values)
    above = sum(v >= 0 for v in values)
    return min(1.0, 2 * (1 + min(below, above)) / (len(values) + 1))


def mc_error(values):
    if not values:
        return None
    values = sorted(values)
    m = len(values)

    def at(q):
        i = min(round(q * (m - 1)), m - 1)
        w = math.ceil(math.sqrt(m * q * (1 - q)))
        return (values[min(i + w, m - 1)] - values[max(i - w, 0)]) / 2

    return max(at(0.025), at(0.975))


def rate(k, n):
    """k, n, value, se, Wilson lo, hi."""
    if n == 0:
        return [k, n, None, None, None, None]
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    p = k / n
    return [k, n, p, math.sqrt(p * (1 - p) / n), lo, hi]


def mde(n, discordant):
    if n == 0 or discordant == 0:
        return None
    return (norm.ppf(0.975) + norm.ppf(0.8)) * math.sqrt(discordant / n / n)


def correct(r):
    return r["prediction"] == r["gold"]


def label_accuracy(rows, label):
    of = [r for r in rows if r["gold"] == label]
    return rate(sum(correct(r) for r in of), len(of))


def rates(judge, rows):
    """The rate metrics' counts (the F1s are not rates)."""
    acc = rate(sum(correct(r) for r in rows), len(rows))
    if judge:
        ca = [r for r in rows if r["gold"] == "cannot_answer"]
        return {"judge_table_acc": acc,
                "judge_table_tool_hall": rate(sum(r["prediction"] == "tool_call" for r in ca), len(ca))}
    th = [r for r in rows if r["gold"] == "cannot_answer" and r["n_tools"] == 0]
    rfi = [r for r in rows if r["gold"] == "request_for_info"]
    return {"accuracy": acc,
            "tool_hallucination_rate_official": rate(sum(r["prediction"] == "tool_call" for r in th), len(th)),
            "answer_hallucination_rate": rate(sum(r["prediction"] == "direct" and r["gold"] != "direct"
                                                  for r in rows), len(rows)),
            "parameter_hallucination_rate": rate(sum(r["prediction"] == "tool_call" for r in rfi), len(rfi))}


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


def clustered_se(x, groups):
    import numpy as np
    import statsmodels.api as sm
    if len(set(groups)) < 2:
        return None
    fit = sm.OLS(np.asarray(x, dtype=float), np.ones((len(x), 1))).fit(
        cov_type="cluster", cov_kwds={"groups": np.asarray(groups)})
    return float(fit.bse[0])


def main():
    args = sys.argv[1:]
    stratified = args[0] == "--stratified"
    if stratified:
        args = args[1:]
    sources = None
    if args[0] == "--dataset":
        sources = {}
        for line in open(args[1], encoding="utf-8"):
            r = json.loads(line)
            sources[r["uuid"]] = r["source_id"]
        args = args[2:]
    seed, resamples = int(args[0]), int(args[1])
    models = []
    for arg in args[2:]:
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
    golds = [l for l in ["direct", "tool_call", "request_for_info", "cannot_answer"]
             if any(r["gold"] == l for r in table[0])]
    label_diffs = {l: [[] for _ in pairs] for l in golds}
    strata = ([[i for i in range(n) if table[0][i]["gold"] == l] for l in golds]
              if stratified else [list(range(n))])
    for _ in range(resamples):
        idx = [s[rng.randrange(len(s))] for s in strata for _ in range(len(s))]
        values = [{k: f([rows[i] for i in idx]) for k, f in metrics.items()} for rows in table]
        for l in golds:
            acc = [label_accuracy([rows[i] for i in idx], l)[2] for rows in table]
            for p, (a, b) in enumerate(pairs):
                if acc[a] is not None and acc[b] is not None:
                    label_diffs[l][p].append(acc[a] - acc[b])
        for m, v in enumerate(values):
            for k in metrics:
                if v[k] is not None:
                    samples[m][k].append(v[k])
        for p, (a, b) in enumerate(pairs):
            for k in metrics:
                if values[a][k] is not None and values[b][k] is not None:
                    diffs[p][k].append(values[a][k] - values[b][k])
    out = {"n": n, "models": {}, "pairs": [], "rates": {}, "by_label": []}
    for m, (label, _) in enumerate(models):
        out["models"][label] = {
            k: [full(k, f, table[m]), *percentiles(samples[m][k]), bootstrap_se(samples[m][k]),
                mc_error(samples[m][k])]
            for k, f in metrics.items()
        }
        out["rates"][label] = rates(judge, table[m])
        out.setdefault("clustered_se", {})[label] = (
            clustered_se([float(correct(r)) for r in table[m]], [sources[r["uuid"]] for r in table[m]])
            if sources else None)
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
            "mde": mde(n, only_a + only_b),
            "clustered_se": clustered_se(
                [float(correct(x)) - float(correct(y)) for x, y in zip(table[a], table[b])],
                [sources[x["uuid"]] for x in table[a]]) if sources else None,
            "differences": {
                k: [difference(full(k, f, table[a]), full(k, f, table[b])),
                    *percentiles(diffs[p][k]), bootstrap_se(diffs[p][k]), bootstrap_p(diffs[p][k]),
                    mc_error(diffs[p][k])]
                for k, f in metrics.items()
            },
        })
    for pair, adjusted in zip(out["pairs"], holm(raw)):
        pair["adjusted_p"] = adjusted
    # The other metrics' bootstrap p-values: one Holm family.
    secondary = [(p, k) for p in range(len(pairs)) for k in list(metrics)[1:]
                 if out["pairs"][p]["differences"][k][4] is not None]
    for (p, k), adjusted in zip(secondary, holm([out["pairs"][p]["differences"][k][4] for p, k in secondary])):
        out["pairs"][p].setdefault("adjusted_difference_p", {})[k] = adjusted
    # Per gold label: one Holm family over every label and pair.
    label_raw = []
    for l in golds:
        of = [[r for r in rows if r["gold"] == l] for rows in table]
        entry = {"gold": l, "n": len(of[0]),
                 "models": {models[m][0]: label_accuracy(table[m], l) for m in range(len(models))},
                 "pairs": []}
        for p, (a, b) in enumerate(pairs):
            only_a = sum(correct(x) and not correct(y) for x, y in zip(of[a], of[b]))
            only_b = sum(correct(y) and not correct(x) for x, y in zip(of[a], of[b]))
            pvalue = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
            label_raw.append(pvalue)
            va, vb = entry["models"][models[a][0]][2], entry["models"][models[b][0]][2]
            entry["pairs"].append({"only_a": only_a, "only_b": only_b, "mcnemar_p": pvalue,
                                   "difference": [difference(va, vb), *percentiles(label_diffs[l][p]),
                                                  bootstrap_se(label_diffs[l][p])]})
        out["by_label"].append(entry)
    adjusted = iter(holm(label_raw))
    for entry in out["by_label"]:
        for pair in entry["pairs"]:
            pair["adjusted_p"] = next(adjusted)
    json.dump(out, sys.stdout)


main()
