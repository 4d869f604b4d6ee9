"""Renders the official When2Call lm-eval prompts of a JSONL file with NVIDIA's
own utils.py, for byte-for-byte comparison with w2c.

usage: official_prompts.py REFERENCE_DIR DATASET.jsonl

REFERENCE_DIR holds the official task files (utils.py and the task YAMLs); they
are imported from there, never copied. utils.py imports `datasets.Dataset` only
to call `.map`; a stand-in module provides that, so the `datasets` package is
not needed. Each row is rendered on its own, so one failing row does not hide
the others.

Prints one JSON line per (row, variant), rows in file order (blank lines
skipped), variants in the order of the task files below:
  {"row", "uuid", "variant", "answer_keys", "prompt", "choices", "target_index",
   "context_chars"}
where context_chars is the length (in code points) of the context lm-eval's
`_encode_pair` keeps: the prompt without its trailing whitespace
(`prompt.rstrip()`), which moves to the front of each continuation.
or, when utils.py raises for that row, {"row", "uuid", "variant", "answer_keys", "error"}.
A rendering that holds a lone surrogate (which no UTF-8 text can) has
"unencodable": true and its surrogates written as backslash escapes.
Then a last line {"unidata_version", "non_printable", "space"}: Python's
Unicode database version, the code points for which str.isprintable() is
false, and those for which str.isspace() is true, each as [first, last] ranges.
"""
import copy
import json
import os
import sys
import types
import unicodedata


class _StandInDataset:
    """The part of datasets.Dataset that utils.py uses: map over rows."""

    def __init__(self, rows):
        self.rows = rows

    def map(self, fn):
        return _StandInDataset([fn(row) for row in self.rows])


def _load_utils(reference_dir):
    stand_in = types.ModuleType("datasets")
    stand_in.Dataset = _StandInDataset
    sys.modules["datasets"] = stand_in
    sys.path.insert(0, reference_dir)
    import utils  # noqa: E402  (the official file, after the stand-in is in place)

    return utils


def _variants(reference_dir):
    """(task name, process_docs function name) from the task YAMLs."""
    out = []
    for name in sorted(os.listdir(reference_dir)):
        if not name.endswith(".yaml"):
            continue
        task = fn = None
        with open(os.path.join(reference_dir, name), encoding="utf-8") as f:
            for line in f:
                if line.startswith("task:"):
                    task = line.split(":", 1)[1].strip()
                if line.startswith("process_docs:"):
                    fn = line.rsplit("utils.", 1)[1].strip()
        if task is None or fn is None:
            sys.exit(f"{name}: no task or process_docs line")
        out.append((task, fn))
    return out


def _ranges(predicate):
    ranges = []
    start = None
    for cp in range(sys.maxunicode + 2):
        hit = cp <= sys.maxunicode and predicate(chr(cp))
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            ranges.append([start, cp - 1])
            start = None
    return ranges


def _has_surrogate(s):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def _printable(s):
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def main():
    reference_dir, dataset = sys.argv[1], sys.argv[2]
    utils = _load_utils(reference_dir)
    variants = _variants(reference_dir)
    out = sys.stdout
    with open(dataset, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for i, row in enumerate(rows):
        for task, fn_name in variants:
            rec = {"row": i, "uuid": row.get("uuid"), "variant": task}
            rec["answer_keys"] = list(row["answers"].keys())
            try:
                (item,) = getattr(utils, fn_name)(_StandInDataset([copy.deepcopy(row)])).rows
                rec["prompt"] = item["prompt"]
                rec["choices"] = item["choices"]
                rec["target_index"] = item["target_index"]
                rec["context_chars"] = len(item["prompt"].rstrip())
                if any(_has_surrogate(t) for t in [rec["prompt"], *rec["choices"]]):
                    rec["unencodable"] = True
                    rec["prompt"] = _printable(rec["prompt"])
                    rec["choices"] = [_printable(c) for c in rec["choices"]]
            except Exception as e:  # the row's own failure, reported per row
                rec["error"] = f"{type(e).__name__}: {e}"
            out.write(json.dumps(rec, ensure_ascii=True) + "\n")
    out.write(
        json.dumps(
            {
                "unidata_version": unicodedata.unidata_version,
                "non_printable": _ranges(lambda c: not c.isprintable()),
                "space": _ranges(str.isspace),
            }
        )
        + "\n"
    )


main()
