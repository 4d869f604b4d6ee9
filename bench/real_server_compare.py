"""Second half of bench/real_server.sh: compares a finished `mcq_logprob`
session with the in-process reference (tests/support/llama_reference.py) and
measures the server's own capacity for a sample of the same calls.

Usage: real_server_compare.py SESSION_DIR LLAMA_PYTHON MODEL URL W2C_WALL_SECS SAMPLE_EVERY
Prints a markdown summary. It reads the checkpoint (results.jsonl), so it also
works on a copy of an unfinished session; the capacity sample is at most 60
calls.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

LABELS = ["direct", "tool_call", "request_for_info", "cannot_answer"]


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    session, py, model, url, wall, every = sys.argv[1:7]
    wall, every = float(wall), int(every)
    art = os.path.join(session, "artifacts_local", "mcq_logprob")
    calls = jsonl(os.path.join(art, "llm_calls.jsonl"))
    records = {}
    for r in jsonl(os.path.join(session, "checkpoints", "mcq_logprob", "results.jsonl")):
        records[r["key"]] = r
    preds = list(records.values())
    debug = [{"uuid": r["uuid"], "choice": c} for r in preds for c in r["choices"]]
    metrics_path = os.path.join(art, "metrics.json")
    metrics = json.load(open(metrics_path)) if os.path.exists(metrics_path) else None
    ok = [c for c in calls if c["status"] == "ok"]
    by_uuid = {}
    for c in ok:
        by_uuid.setdefault(c["uuid"], []).append(c)

    # 1. Agreement with the in-process reference.
    reqs = []
    for d in debug:
        i = LABELS.index(d["choice"]["label"])
        reqs.append({"id": f'{d["uuid"]}/{d["choice"]["label"]}',
                     "prompt": by_uuid[d["uuid"]][i]["request"]["prompt"],
                     "context_chars": d["choice"]["context_chars"]})
    ref_path = os.path.join(os.path.dirname(__file__), "..", "tests", "support",
                            "llama_reference.py")
    t0 = time.time()
    out = subprocess.run([py, ref_path, model, "8192"],
                         input="".join(json.dumps(r) + "\n" for r in reqs),
                         capture_output=True, text=True, check=True)
    ref_secs = time.time() - t0
    ref = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(ref) == len(debug)
    diffs = [abs(d["choice"]["logprob"] - r["logprob"]) for d, r in zip(debug, ref)]
    tok_mismatch = sum(d["choice"]["n_tokens"] != r["n_tokens"] for d, r in zip(debug, ref))
    straddles = sum(bool(d["choice"]["straddles_boundary"]) for d in debug)
    scores = {}
    for d, r in zip(debug, ref):
        c = d["choice"]
        t = r["logprob"]
        scores.setdefault(d["uuid"], []).append(
            [t, t / c["n_chars"], t / c["n_bytes"], t / max(r["n_tokens"], 1)])
    pred_diff = 0
    scored = [p for p in preds if p.get("unscored") is None]
    for p in scored:
        s = scores[p["uuid"]]
        for v in range(4):
            best = 0
            for i in range(4):
                if s[i][v] > s[best][v]:
                    best = i
            pred_diff += LABELS[best] != p["predictions"][v]
    unscored = [p for p in preds if p.get("unscored") is not None]
    reasons = {}
    for p in unscored:
        reasons[p["unscored"]["reason"]] = reasons.get(p["unscored"]["reason"], 0) + 1

    # 2. The server's own capacity for a sample of the same calls, sent
    # sequentially by this minimal loop.
    # URL "-" skips this (e.g. for a copy of a session whose server is gone).
    sample = ok[:: max(every, len(ok) // 60)] if url != "-" else []
    t0 = time.time()
    for c in sample:
        req = urllib.request.Request(f"{url}/v1/completions",
                                     data=json.dumps(c["request"]).encode(),
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=600).read()
    loop_secs = time.time() - t0
    w2c_sample_secs = max(sum(c["latency_ms"] for c in sample) / 1000.0, 1e-9)
    loop_secs = max(loop_secs, 1e-9)

    print(f"| session | {os.path.basename(session)} |")
    print("|---|---|")
    print(f"| examples | {len(preds)} ({len(scored)} scored, {len(unscored)} unscored: {reasons or 'none'}) |")
    print(f"| scored choices compared | {len(debug)} |")
    print(f"| max abs diff (nats) | {max(diffs):.3g} |")
    print(f"| within 1e-3 | {sum(x <= 1e-3 for x in diffs)} of {len(diffs)} |")
    print(f"| token-count mismatches | {tok_mismatch} |")
    print(f"| boundary straddles flagged | {straddles} |")
    print(f"| prediction differences (4 variants) | {pred_diff} |")
    if metrics:
        print(f"| accuracy (acc) | {metrics['metrics']['accuracy']:.4f} over {metrics['metrics']['n_total']} |")
    print(f"| prompt tokens scored | {sum(c['usage']['prompt_tokens'] for c in ok)} |")
    print(f"| w2c wall, whole run | {wall:.1f} s for {len(calls)} calls + probe: {len(calls) / wall:.3f} calls/s |")
    print(f"| capacity sample (every {max(every, len(ok) // 60)}th call) | {len(sample)} calls |")
    print(f"| sample through w2c (sum of call latencies) | {w2c_sample_secs:.1f} s: {len(sample) / w2c_sample_secs:.3f} calls/s |")
    print(f"| sample by a sequential Python loop | {loop_secs:.1f} s: {len(sample) / loop_secs:.3f} calls/s |")
    print(f"| in-process reference | {ref_secs:.1f} s for {len(reqs)} choices |")


if __name__ == "__main__":
    main()
