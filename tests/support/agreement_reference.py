"""An independent computation of `w2c compare`'s agreement rows for
tests/compare.rs.

  agreement_reference.py SEED RESAMPLES cohen A.jsonl B.jsonl
  agreement_reference.py SEED RESAMPLES fleiss SWEEP.jsonl

Cohen: the examples both predictions.jsonl scored (prediction not null), in
sorted uuid order; scikit-learn's cohen_kappa_score over the categories
(the four labels and invalid). Fleiss: the sweep's examples whose `runs`
are all scored, at least two, as many as the first such example; statsmodels'
fleiss_kappa of the per-example category counts. Each with the observed
agreement, a percentile bootstrap interval drawn with random.Random(seed)
.randrange(n) (a resample where kappa is undefined, i.e. every rating in one
category, is skipped; the value at index round(q * (m - 1)) of the sorted
kappas), the bootstrap standard deviation (statistics.stdev) and the
examples on which the raters do not all agree. Prints JSON.
"""
import json
import random
import statistics
import sys
import warnings

from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

CATS = ["direct", "tool_call", "request_for_info", "cannot_answer", "invalid"]


def rows(path):
    return {r["uuid"]: r for r in map(json.loads, open(path, encoding="utf-8"))}


def defined(k):
    return None if k != k else float(k)  # nan -> None


def cohen(a, b):
    if len(set(a) | set(b)) < 2:
        return None  # every rating in one category
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return defined(cohen_kappa_score(a, b, labels=CATS))


def fleiss(counts):
    total = [sum(c[k] for c in counts) for k in range(len(CATS))]
    if sum(t > 0 for t in total) < 2:
        return None
    return defined(fleiss_kappa(counts, method="fleiss"))


def bootstrap(n, seed, resamples, stat):
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        k = stat(idx)
        if k is not None:
            values.append(k)
    values.sort()
    at = lambda q: values[min(round(q * (len(values) - 1)), len(values) - 1)] if values else None
    se = statistics.stdev(values) if len(values) >= 2 else None
    return at(0.025), at(0.975), se


def main():
    seed, resamples, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if kind == "cohen":
        ra, rb = rows(sys.argv[4]), rows(sys.argv[5])
        uuids = sorted(u for u in ra if ra[u]["prediction"] is not None
                       and u in rb and rb[u]["prediction"] is not None)
        a = [ra[u]["prediction"] for u in uuids]
        b = [rb[u]["prediction"] for u in uuids]
        kappa = cohen(a, b)
        observed = sum(x == y for x, y in zip(a, b)) / len(a) if a else None
        lo, hi, se = bootstrap(len(a), seed, resamples,
                               lambda idx: cohen([a[i] for i in idx], [b[i] for i in idx]))
        disagreeing = [u for u, x, y in zip(uuids, a, b) if x != y]
    else:
        r = rows(sys.argv[4])
        counts, kept, raters = [], [], 0
        for u in sorted(r):
            runs = r[u].get("runs")
            if not isinstance(runs, list) or any(not isinstance(x, str) for x in runs):
                continue
            if len(runs) < 2 or (raters and len(runs) != raters):
                continue
            raters = len(runs)
            counts.append([runs.count(c) for c in CATS])
            kept.append(u)
        kappa = fleiss(counts)
        observed = sum((sum(x * x for x in c) - raters) / (raters * (raters - 1))
                       for c in counts) / len(counts)
        lo, hi, se = bootstrap(len(counts), seed, resamples,
                               lambda idx: fleiss([counts[i] for i in idx]))
        disagreeing = [u for u, c in zip(kept, counts) if raters not in c]
    json.dump({"n": len(a) if kind == "cohen" else len(counts),
               "kappa": kappa, "observed": observed, "lo": lo, "hi": hi, "se": se,
               "disagreeing": disagreeing}, sys.stdout)


main()
