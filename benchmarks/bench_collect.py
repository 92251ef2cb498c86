"""Collection overhead and padding, measured side by side on SST-2 test (872 sentences) with all-MiniLM-L6-v2.

1. all exits (hidden states + 6 heads) vs a plain forward of the same encoder, both length-sorted + dynamic padding;
2. length-sorted dynamic padding vs fixed padding to 128 tokens (the GLUE scripts' default), both collecting all exits.
Each variant is timed `repeats` times, interleaved, and the median reported. Run: python benchmarks/bench_collect.py
"""

import statistics
import sys
import time

import numpy as np
import torch
from transformers import AutoTokenizer

from toolkit.data.tasks import load_split
from toolkit.nn.encoder.models import MultiExitModel, resolve_model


def batches(tok, texts, bs, fixed):
    enc = tok(texts, truncation=True, max_length=128)
    order = np.arange(len(texts)) if fixed else np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    for s in range(0, len(order), bs):
        feats = [{k: enc[k][i] for k in enc.keys()} for i in order[s:s + bs]]
        yield tok.pad(feats, padding="max_length" if fixed else True, max_length=128 if fixed else None,
                      return_tensors="pt")


def run(model, tok, texts, bs, fixed, plain):
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches(tok, texts, bs, fixed):
            if plain:
                model.backbone(**b)
            else:
                model(**b)
    return time.perf_counter() - t0


def main(repeats=5, bs=32):
    torch.manual_seed(0)
    path = resolve_model("all-MiniLM-L6-v2")
    model = MultiExitModel.from_backbone(path, num_labels=2).eval()
    tok = AutoTokenizer.from_pretrained(path)
    texts = list(load_split("sst2", "test").frame["text_a"])
    variants = {"plain forward, dynamic": (False, True), "all exits, dynamic": (False, False),
                "all exits, fixed 128": (True, False)}
    run(model, tok, texts[:64], bs, False, False)  # warm-up
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, (fixed, plain) in variants.items():
            times[k].append(run(model, tok, texts, bs, fixed, plain))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"SST-2 test, {len(texts)} sentences, batch {bs}, torch threads {torch.get_num_threads()}, "
          f"median of {repeats}")
    for k, v in med.items():
        print(f"  {k:<26} {v:7.2f} s  ({len(texts) / v:6.0f} sentences/s)")
    print(f"all exits / plain forward:            {med['all exits, dynamic'] / med['plain forward, dynamic']:.3f}x "
          f"(target <= 1.10)")
    print(f"fixed-128 / length-sorted dynamic:    {med['all exits, fixed 128'] / med['all exits, dynamic']:.2f}x "
          f"(target >= 2)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
