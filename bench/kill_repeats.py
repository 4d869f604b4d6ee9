#!/usr/bin/env python3
"""How many requests a `kill -9` makes w2c repeat (see BENCHMARKS.md).

Runs `mcq_logprob` (four /completions calls per example) against
`w2c mock-server` at concurrency 4, kills the run with SIGKILL at random
points, and after each kill counts the requests the server received from that
process that left nothing on disk: requests received, minus four per new
result line, minus the capability probe, minus the choices the process stored
for examples still unfinished (`.steps.jsonl`, when the binary writes one).
Those are the requests the next process sends again. Finally the session is
resumed to the end and its predictions compared with an uninterrupted run.

    python3 bench/kill_repeats.py                      # this tree's debug build, 20 kills
    W2C=/path/to/w2c TRIALS=40 python3 bench/kill_repeats.py

Needs: python3, the shared When2Call file (../shared or W2C_SHARED_DIR).
"""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
W2C = os.environ.get("W2C", str(ROOT / "target/debug/w2c"))
TRIALS = int(os.environ.get("TRIALS", "20"))
CONCURRENCY = 4
SHARED = pathlib.Path(os.environ.get("W2C_SHARED_DIR", ROOT.parent / "shared"))
DATASET = SHARED / "data/when2call/when2call_test_llm_judge.jsonl"


def stats(url):
    with urllib.request.urlopen(f"{url}/stats") as r:
        return json.load(r)


def lines(path):
    try:
        return sum(1 for line in path.read_bytes().split(b"\n")[:-1] if line.strip())
    except FileNotFoundError:
        return 0


def pending_steps(path, done_keys):
    """Choices stored in .steps.jsonl per example without a result yet."""
    per_key = {}
    try:
        raw = path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return per_key
    for line in raw:
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if v.get("step", {}).get("kind") == "choice":
            per_key[v["key"]] = per_key.get(v["key"], 0) + 1
    return {k: n for k, n in per_key.items() if k not in done_keys}


def result_keys(path):
    keys = set()
    try:
        raw = path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return keys
    for line in raw:
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError):
            pass
    return keys


def config(work, url):
    text = f"""[run]
runs_dir = "{work}/runs"
[dataset]
path = "{DATASET}"
n_per_label = 60
[models]
target = "bench-model"
target_provider = "local"
[providers.local]
kind = "openai"
base_url = "{url}/v1"
max_concurrency = {CONCURRENCY}
[methods]
enabled = ["mcq_logprob"]
"""
    p = pathlib.Path(work) / "eval.toml"
    p.write_text(text)
    return p


def predictions(work):
    (session,) = (pathlib.Path(work) / "runs/k/sessions").iterdir()
    rows = [json.loads(l) for l in (session / "artifacts_local/mcq_logprob/predictions.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: r["uuid"])


def main():
    if not DATASET.exists():
        sys.exit(f"missing {DATASET}: set W2C_SHARED_DIR")
    server = subprocess.Popen(
        [W2C, "mock-server", "--latency-ms", "60", "--jitter-ms", "40", "--seed", "7"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip().removeprefix("listening on ")
        with tempfile.TemporaryDirectory() as ref, tempfile.TemporaryDirectory() as work:
            subprocess.run([W2C, "run", "--run-key", "k", "--no-tracking", "--config", config(ref, url)],
                           check=True, capture_output=True)
            cfg = config(work, url)
            rng = random.Random(19)
            lost = []
            for _ in range(TRIALS):
                sessions = pathlib.Path(work) / "runs/k/sessions"
                ns = next(sessions.iterdir()) / "checkpoints/mcq_logprob" if sessions.exists() else None
                if ns is not None and (ns / "_DONE.json").exists():
                    break
                done_before = result_keys(ns / "results.jsonl") if ns else set()
                steps_before = pending_steps(ns / ".steps.jsonl", done_before) if ns else {}
                before = stats(url)["completions"]
                child = subprocess.Popen([W2C, "run", "--run-key", "k", "--no-tracking", "--config", cfg],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                target = len(done_before) + rng.randint(1, 8)
                deadline = time.time() + 60
                while time.time() < deadline and child.poll() is None:
                    sessions_now = pathlib.Path(work) / "runs/k/sessions"
                    if sessions_now.exists():
                        ns = next(sessions_now.iterdir()) / "checkpoints/mcq_logprob"
                        if lines(ns / "results.jsonl") >= target:
                            break
                    time.sleep(0.005)
                # A random moment inside the next examples' calls.
                time.sleep(rng.uniform(0, 0.12))
                if child.poll() is not None:
                    break
                child.send_signal(signal.SIGKILL)
                child.wait()
                sent = stats(url)["completions"] - before
                done_after = result_keys(ns / "results.jsonl")
                finished = done_after - done_before
                steps_after = pending_steps(ns / ".steps.jsonl", done_after)
                # Choices stored before this process and used by it.
                reused = sum(n for k, n in steps_before.items() if k in finished)
                # Choices this process stored for examples still unfinished.
                stored = sum(steps_after.values()) - sum(n for k, n in steps_before.items() if k not in finished)
                lost.append(sent - 1 - (4 * len(finished) - reused) - stored)
            subprocess.run([W2C, "run", "--run-key", "k", "--no-tracking", "--config", cfg],
                           check=True, capture_output=True)
            same = predictions(ref) == predictions(work)
    finally:
        server.kill()
        server.wait()
    print(f"binary: {W2C}")
    print(f"kills: {len(lost)} (mcq_logprob, 4 calls per example, concurrency {CONCURRENCY})")
    print(f"requests repeated per kill: {lost}")
    print(f"max {max(lost)}, mean {sum(lost) / len(lost):.1f}")
    print(f"resumed predictions identical to an uninterrupted run: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
