"""lm-eval logs written as ``lm_eval --log_samples`` writes them (lm-eval 0.4's format; the slow test in
tests/test_imports_lmeval.py checks that format against the real harness)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

STAMP = "2026-01-01T00-00-0{}.000000"


def write_run(folder: Path, lls, targets, *, task="toy", run=0, params=1000, model="tiny", choices=("bad", "good"),
              docs=None, n_shot=0, results=True) -> Path:
    """A samples/results pair as ``lm_eval --log_samples`` writes them (values as strings, requests per choice)."""
    folder.mkdir(parents=True, exist_ok=True)
    lls = np.asarray(lls, dtype=np.float64)
    lines = []
    for i, (row, t) in enumerate(zip(lls, targets)):
        doc = (docs or {}).get(i, {"sentence": f"sentence {i}", "label": int(t), "idx": f"ex{i}"})
        prompt = f"{doc['sentence']} Answer:"
        lines.append(json.dumps({
            "doc_id": i, "doc": doc, "target": str(t),
            "arguments": {f"gen_args_{c}": {"arg_0": prompt, "arg_1": f" {w}"} for c, w in enumerate(choices)},
            "resps": [[[repr(float(v)), "False"]] for v in row],
            "filtered_resps": [[repr(float(v)), "False"] for v in row], "filter": "none", "metrics": ["acc"],
            "doc_hash": hashlib.sha256(json.dumps(doc, indent=2).encode()).hexdigest(),
            "prompt_hash": "p", "target_hash": "t", "acc": float(np.argmax(row) == t)}))
    samples = folder / f"samples_{task}_{STAMP.format(run)}.jsonl"
    samples.write_text("\n".join(lines) + "\n")
    if results:
        (folder / f"results_{STAMP.format(run)}.json").write_text(json.dumps({
            "config": {"model": "hf", "model_args": {"pretrained": model, "dtype": "float32"},
                       "model_num_parameters": params, "model_dtype": "torch.float32", "model_revision": "main"},
            "n-shot": {task: n_shot}, "task_hashes": {task: "h" * 64}, "lm_eval_version": "0.4.13",
            "chat_template": None}))
    return samples
