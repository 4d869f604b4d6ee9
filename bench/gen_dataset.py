#!/usr/bin/env python3
"""Writes a synthetic When2Call-shaped JSONL file for benchmarks.

usage: gen_dataset.py N OUT.jsonl
Rows are made up (no real data), labels cycle through tool_call,
request_for_info and cannot_answer, uuids are deterministic.
"""
import json
import sys
import uuid

LABELS = ["tool_call", "request_for_info", "cannot_answer"]


def row(i):
    tool = {
        "name": f"lookup_{i % 17}",
        "description": "Look something up in a synthetic service.",
        "parameters": {"type": "dict", "required": ["query"], "properties": {"query": {"type": "string", "description": "What to look up."}}},
    }
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"w2c-bench-{i}")),
        "source": "w2c-bench",
        "source_id": f"bench-{i}",
        "question": f"Synthetic question number {i}: please look up item {i * 7 % 1000}.",
        "correct_answer": LABELS[i % 3],
        "answers": {
            "direct": f"Item {i} is probably fine.",
            "tool_call": json.dumps({"name": tool["name"], "arguments": {"query": f"item {i}"}}),
            "request_for_info": "Which item do you mean exactly?",
            "cannot_answer": "Sorry, I cannot look that up.",
        },
        "target_tool": None,
        "tools": [json.dumps(tool)] if i % 5 else [],
        "orig_tools": [],
        "held_out_param": None,
        "orig_question": None,
    }


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(row(i)) + "\n")


if __name__ == "__main__":
    main()
