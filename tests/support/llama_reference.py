"""Independent reference for `mcq_logprob` scores: the GGUF loaded in-process
with llama-cpp-python (`logits_all=True`), continuation tokens split the way
lm-evaluation-harness does (whole = tok(context + continuation), ctx_len =
len(tok(context)), continuation = whole[ctx_len:]), each token scored by the
log-softmax of the logits at the position before it. Consecutive requests
that share a token prefix (the four choices of an example) evaluate it once.

Usage: python llama_reference.py MODEL.gguf [N_CTX] < requests.jsonl
Each input line: {"id": ..., "prompt": "...", "context_chars": N}.
Each output line: {"id": ..., "logprob": sum, "n_tokens": n, "prompt_tokens": m,
"last_logprob": the prompt's last token's log-probability}
(prompt_tokens counts BOS, as the server's usage does).
"""
import json
import sys

import numpy as np
from llama_cpp import Llama


def main():
    model = sys.argv[1]
    n_ctx = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    llm = Llama(model_path=model, logits_all=True, n_ctx=n_ctx, n_threads=2,
                n_threads_batch=2, verbose=False)
    previous = []
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        prompt = req["prompt"]
        context = prompt[: req["context_chars"]]
        whole = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        ctx_len = len(llm.tokenize(context.encode("utf-8"), add_bos=True, special=True))
        # Keep the evaluated prefix shared with the previous prompt (the
        # four choices of an example share their context); eval() drops the
        # KV cache from n_tokens on and fills the logits of the new positions.
        common = 0
        for a, b in zip(previous, whole):
            if a != b:
                break
            common += 1
        llm.n_tokens = min(common, len(whole) - 1)
        llm.eval(whole[llm.n_tokens:])
        previous = whole
        logits = np.asarray(llm.scores[: len(whole)], dtype=np.float64)
        def token_logprob(i):
            row = logits[i - 1]
            peak = row.max()
            log_z = peak + np.log(np.exp(row - peak).sum())
            return float(row[whole[i]] - log_z)

        total = 0.0
        for i in range(ctx_len, len(whole)):
            total += token_logprob(i)
        out = {"id": req["id"], "logprob": total, "n_tokens": len(whole) - ctx_len,
               "prompt_tokens": len(whole), "last_logprob": token_logprob(len(whole) - 1)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
