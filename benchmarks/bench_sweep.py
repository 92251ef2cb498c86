"""Exact sweep vs evaluating the same thresholds one at a time (each vectorised over examples).

Prints wall times and their ratio, measured side by side in one run. The sweep's time includes building the
engine view (confidences and O(C) outcome statistics) from the cache. The one-at-a-time time is measured on a random
sample of the sweep's thresholds and scaled to all of them (reported as such).
Run: python benchmarks/bench_sweep.py [N] [E]
"""

import sys
import time

import numpy as np

from toolkit.analysis.engine import exit_stage, staged, sweep
from toolkit.analysis.scores.classification import stage_confidence
from toolkit.caches.classification import from_arrays


def one_threshold(conf, logits_pred, labels, flops, t):
    st = exit_stage(conf, t)
    rows = np.arange(len(labels))
    return (logits_pred[rows, st] == labels).mean(), flops[rows, st].mean()


def main(N=100_000, E=12, C=2, sample=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    lg = rng.normal(size=(N, E, C)).astype(np.float32)
    lg[np.arange(N), :, y] += np.linspace(0.2, 2.5, E, dtype=np.float32)
    cache = from_arrays(lg, y, np.cumsum(np.ones((N, E)), 1))
    sweep(staged(cache))  # warm-up
    t0 = time.perf_counter()
    df = sweep(staged(cache)).frame
    t_sweep = time.perf_counter() - t0
    thr = df["threshold"].to_numpy()
    pick = rng.choice(len(thr), min(sample, len(thr)), replace=False)
    conf = stage_confidence(cache.logits, score="max_prob")  # shared by both; not timed for either
    pred = cache.predictions
    t0 = time.perf_counter()
    for t in thr[pick]:  # the loop over thresholds this toolkit avoids
        one_threshold(conf, pred, cache.labels, cache.flops, t)
    t_each = (time.perf_counter() - t0) / len(pick)
    # check the sampled thresholds agree with the sweep
    for i in pick[:20]:
        acc, fl = one_threshold(conf, pred, cache.labels, cache.flops, thr[i])
        assert abs(acc - df["accuracy"].iloc[i]) < 1e-12 and abs(fl - df["flops"].iloc[i]) < 1e-9
    t_loop = t_each * len(thr)
    print(f"N={N} E={E}: {len(thr)} distinct thresholds")
    print(f"exact sweep (all thresholds):             {t_sweep:8.3f} s")
    print(f"one at a time ({len(pick)} timed, scaled to all): {t_loop:8.1f} s  ({t_each * 1e3:.2f} ms per threshold)")
    print(f"ratio one-at-a-time / sweep:              {t_loop / t_sweep:8.0f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
