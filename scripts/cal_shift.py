"""Calibration shift (issue 17): is the split that thresholds are fitted on exchangeable with the one they are
reported on? Compares the train-carve ``cal`` with ``test`` (the GLUE dev set), and the two seeded halves of ``test``
(:func:`toolkit.data.dev_halves`, stratified by label) with each other, per task, on the shipped caches: mean tokens
(all-MiniLM-L6-v2 tokenizer), label balance, and the accuracy of each shipped model's last stage.

The ``sd`` columns put each gap in context: the standard deviation of the same half-A minus half-B difference over
1,000 random halvings of test (seeds 0..999), i.e. how large a gap pure sampling gives between exchangeable halves.

    python scripts/cal_shift.py --data data > runs/cal_shift.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("sst2", "mrpc", "rte", "cola", "agnews")
# (cache set, stage) whose accuracy is compared: each shipped model's last stage
MODELS = (("minilm6_me", "L6", "MiniLM-L6 me"), ("mpnet_me", "L12", "MPNet me"), ("cascade", "minilm-l2:L2", "L2"),
          ("cascade", "minilm-l6:L6", "L6"), ("cascade", "mpnet:L12", "MPNet"))


def _split_stats(tokens, labels, correct) -> dict:
    return {"n": len(labels), "tokens": float(tokens.mean()), "pos": float(labels.mean()),
            **{name: float(c.mean()) for name, c in correct.items()}}


def task_rows(data: Path, task: str, seed: int, n_halvings: int, stratify: bool = True):
    from toolkit.analysis.cache import load_cache
    from toolkit.data import dev_halves

    caches = {(s, split): load_cache(data / task / f"{s}-{split}.parquet", verify_data=False)
              for s in {m[0] for m in MODELS} for split in ("cal", "test")}
    ref = {split: caches[("minilm6_me", split)] for split in ("cal", "test")}
    for (s, split), c in caches.items():  # every cache of a split holds the same examples in the same order
        assert (c.example_ids == ref[split].example_ids).all(), (task, s, split)

    def correct(split, rows=slice(None)):
        return {name: caches[(s, split)].correct[rows, caches[(s, split)].stages.index(stage)]
                for s, stage, name in MODELS}

    test = ref["test"]
    pos = (test.labels == test.labels.max()).astype(float) if test.n_classes == 2 else (test.labels == 0).astype(float)
    cal_pos = (ref["cal"].labels == ref["cal"].labels.max()).astype(float) if test.n_classes == 2 else \
        (ref["cal"].labels == 0).astype(float)
    labels = test.labels if stratify else None
    half = dev_halves(test.example_ids, labels, seed=seed)
    rows = {"cal (train carve)": _split_stats(ref["cal"].n_tokens, cal_pos, correct("cal")),
            "test": _split_stats(test.n_tokens, pos, correct("test")),
            "test half A": _split_stats(test.n_tokens[half == 0], pos[half == 0], correct("test", half == 0)),
            "test half B": _split_stats(test.n_tokens[half == 1], pos[half == 1], correct("test", half == 1))}
    # spread of the half-A minus half-B gap over random halvings: what exchangeable halves differ by
    halves = np.stack([dev_halves(test.example_ids, labels, seed=s) for s in range(n_halvings)])  # [S, N]
    values = {"tokens": test.n_tokens.astype(float), "pos": pos, **{k: v.astype(float) for k, v in
                                                                      correct("test").items()}}
    a = halves == 0
    sd = {k: float(np.std((a * v).sum(1) / a.sum(1) - (~a * v).sum(1) / (~a).sum(1))) for k, v in values.items()}
    return rows, sd


def markdown(data: Path, seed: int, n_halvings: int) -> str:
    names = [m[2] for m in MODELS]
    head = ("| task | split | n | mean tokens | label share | " + " | ".join(f"acc {n}" for n in names) + " |\n"
            + "|---" * (5 + len(names)) + "|")
    out = [head]
    for task in TASKS:
        rows, sd = task_rows(data, task, seed, n_halvings)
        for split, r in rows.items():
            out.append(f"| {task} | {split} | {r['n']} | {r['tokens']:.1f} | {r['pos']:.3f} | "
                       + " | ".join(f"{r[n]:.3f}" for n in names) + " |")
        c, t, a, b = rows.values()
        out.append(f"| {task} | **cal - test** | | {c['tokens'] - t['tokens']:+.1f} | {c['pos'] - t['pos']:+.3f} | "
                   + " | ".join(f"{c[n] - t[n]:+.3f}" for n in names) + " |")
        out.append(f"| {task} | **A - B** (sd over halvings) | | {a['tokens'] - b['tokens']:+.1f} ({sd['tokens']:.1f}) "
                   f"| {a['pos'] - b['pos']:+.3f} ({sd['pos']:.3f}) | "
                   + " | ".join(f"{a[n] - b[n]:+.3f} ({sd[n]:.3f})" for n in names) + " |")
    return "\n".join(out)


def label_balance_note(data: Path, n_halvings: int) -> str:
    """sd of the half-A minus half-B label share, stratified vs plain permutation (why the halving is stratified)."""
    from toolkit.analysis.cache import load_cache
    from toolkit.data import dev_halves

    parts = []
    for task in TASKS:
        t = load_cache(data / task / "minilm6_me-test.parquet", verify_data=False)
        y = (t.labels == (t.labels.max() if t.n_classes == 2 else 0)).astype(float)
        res = []
        for labels in (t.labels, None):
            a = np.stack([dev_halves(t.example_ids, labels, seed=s) for s in range(n_halvings)]) == 0
            res.append(float(np.std((a * y).sum(1) / a.sum(1) - (~a * y).sum(1) / (~a).sum(1))))
        parts.append(f"{task} {res[0]:.3f} vs {res[1]:.3f}")
    return "sd of the A - B label share over halvings, stratified vs unstratified: " + "; ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data")
    p.add_argument("--seed", type=int, default=0, help="halving seed of the A/B rows")
    p.add_argument("--halvings", type=int, default=1000)
    a = p.parse_args()
    print(markdown(Path(a.data), a.seed, a.halvings))
    print()
    print(label_balance_note(Path(a.data), a.halvings))


if __name__ == "__main__":
    main()
