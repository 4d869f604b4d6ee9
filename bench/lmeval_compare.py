"""Compares an lm-evaluation-harness samples file (`--log_samples`, an official
When2Call task) with a w2c `mcq_logprob` session that used the same official
template on the same server, and both with the in-process reference
(tests/support/llama_reference.py, run in the llama venv).

Usage: lmeval_compare.py SAMPLES.jsonl SESSION_DIR LLAMA_PYTHON MODEL [N_CTX]

The session may be unfinished (it reads checkpoints/mcq_logprob/results.jsonl):
w2c is compared with lm-eval on the rows it has; lm-eval is compared with the
reference on every row. A choice where lm-eval differs from the reference by
exactly the prompt's last token is lm-eval's `token_logprobs[ctxlen:-1]` slice
on a reply with no generated token (end-of-generation). Prints a markdown table.
"""
import json
import os
import subprocess
import sys

LABELS = ["direct", "tool_call", "request_for_info", "cannot_answer"]
TOL = 1e-3


def python_rstrip_len(text):
    """Characters left after Python's str.rstrip() (lm-eval's context split)."""
    return len(text.rstrip())


def main():
    samples_path, session, py, model = sys.argv[1:5]
    n_ctx = sys.argv[5] if len(sys.argv) > 5 else "8192"
    samples = [json.loads(line) for line in open(samples_path, encoding="utf-8") if line.strip()]
    ours = {}
    results = os.path.join(session, "checkpoints", "mcq_logprob", "results.jsonl")
    for line in open(results, encoding="utf-8"):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a running session
        for c in rec.get("choices", []):
            ours[(rec["uuid"], LABELS.index(c["label"]))] = c

    reqs, theirs = [], []
    for s in samples:
        uuid = s["doc"]["uuid"]
        for i in range(4):
            arg = s["arguments"][f"gen_args_{i}"]
            ctx, cont = arg["arg_0"], arg["arg_1"]
            reqs.append({"id": f"{uuid}/{i}", "prompt": ctx + cont,
                         "context_chars": python_rstrip_len(ctx)})
            theirs.append((uuid, i, float(s["filtered_resps"][i][0])))
    ref_py = os.path.join(os.path.dirname(__file__), "..", "tests", "support", "llama_reference.py")
    out = subprocess.run([py, ref_py, model, n_ctx],
                         input="".join(json.dumps(r) + "\n" for r in reqs),
                         capture_output=True, text=True, check=True)
    ref = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(ref) == len(reqs), (len(ref), len(reqs))

    lm_ok = lm_eog = lm_other = 0
    lm_max = 0.0
    w2c_n = w2c_lm_ok = w2c_ref_ok = split_diff = 0
    w2c_lm_max = w2c_ref_max = 0.0
    w2c_rows = set()
    for (uuid, i, lm), r, q in zip(theirs, ref, reqs):
        truth, last = r["logprob"], r["last_logprob"]
        d = abs(lm - truth)
        if d <= TOL:
            lm_ok += 1
            lm_max = max(lm_max, d)
        elif abs(lm - (truth - last)) <= TOL:
            lm_eog += 1
        else:
            lm_other += 1
        o = ours.get((uuid, i))
        if o is None:
            continue
        w2c_n += 1
        w2c_rows.add(uuid)
        split_diff += o["context_chars"] != q["context_chars"]
        dr = abs(o["logprob"] - truth)
        w2c_ref_ok += dr <= TOL
        w2c_ref_max = max(w2c_ref_max, dr)
        if d <= TOL:  # where lm-eval itself is right
            dl = abs(o["logprob"] - lm)
            w2c_lm_ok += dl <= TOL
            w2c_lm_max = max(w2c_lm_max, dl)

    print("| | |")
    print("|---|---|")
    print(f"| lm-eval samples | {len(samples)} rows, {len(theirs)} choices |")
    print(f"| lm-eval within 1e-3 of in-process | {lm_ok} (max abs diff {lm_max:.2e}) |")
    print(f"| lm-eval off by exactly the last prompt token (end-of-generation slice) | {lm_eog} |")
    print(f"| lm-eval otherwise different | {lm_other} |")
    print(f"| w2c choices compared (rows) | {w2c_n} ({len(w2c_rows)}) |")
    print(f"| w2c continuation start differs from lm-eval's rstrip split | {split_diff} |")
    print(f"| w2c within 1e-3 of in-process | {w2c_ref_ok} of {w2c_n} (max abs diff {w2c_ref_max:.2e}) |")
    print(f"| w2c within 1e-3 of lm-eval where lm-eval is right | {w2c_lm_ok} (max abs diff {w2c_lm_max:.2e}) |")


if __name__ == "__main__":
    main()
