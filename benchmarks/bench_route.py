"""Seq2seq routing: exact sweep over every threshold vs evaluating thresholds one at a time, with corpus BLEU.

A synthetic generation cache (N examples, 1-30 generated tokens each, random BLEU segment statistics) stands in for
a translation run; both methods compute corpus BLEU of the routed mix from summed statistics. Prints wall times and
their ratio measured side by side in one run; the one-at-a-time time is measured on a random sample of thresholds
and scaled to all of them (reported as such). Run: python benchmarks/bench_route.py [N]
"""

import sys
import time

import numpy as np

from toolkit.analysis.engine import evaluation_at_stages, staged, sweep
from toolkit.caches.generation import GenCache, Generation, stat_names


def synthetic(N: int, seed: int = 0) -> GenCache:
    rng = np.random.default_rng(seed)
    temps = (1.0,)
    gens = {}
    for k, name in enumerate(("swift", "super")):
        steps = rng.integers(1, 31, N)
        off = np.concatenate([[0], np.cumsum(steps)])
        S = int(off[-1])
        top = rng.normal(5, 2, S)
        lse = top + rng.gamma(1.0, 0.5, S)
        stats = np.stack([top, top - rng.gamma(1, 1, S), lse, rng.gamma(1, 1, S)], 1).astype(np.float32)
        assert stats.shape[1] == len(stat_names(temps))
        ref_len = rng.integers(5, 40, N)
        sys_len = np.maximum(1, ref_len + rng.integers(-5, 6, N))
        total = np.stack([np.maximum(sys_len - n, 0) for n in range(4)], 1)
        correct = (total * rng.uniform(0.2 + 0.2 * k, 0.7 + 0.2 * k, (N, 1)) ** np.arange(1, 5)).astype(int)
        bleu = np.concatenate([sys_len[:, None], ref_len[:, None], correct, total], 1).astype(np.float64)
        gens[name] = Generation(tokens=np.zeros(S, np.int32), offsets=off, stats=stats,
                                text=np.array([""] * N, dtype=object), n_src=rng.integers(5, 60, N),
                                flops=rng.uniform(1, 2, N) * 1e9 * (1 + 4 * k),
                                quality={"bleu": rng.uniform(0, 100, N)}, qstats={"bleu": bleu})
    return GenCache(np.arange(N).astype(str), -np.ones(N, np.int64), gens, temps)


def main(N: int = 100_000, sample: int = 200, seed: int = 0):
    cache = synthetic(N, seed)
    sweep(staged(cache, score="energy", how="mean"))  # warm-up
    t0 = time.perf_counter()
    view = staged(cache, score="energy", how="mean")
    df = sweep(view).frame
    t_sweep = time.perf_counter() - t0
    conf = view.confidence[:, 0]  # shared by both; the one-at-a-time loop does not pay for it
    thr = df["threshold"].to_numpy()
    pick = np.random.default_rng(seed).choice(len(thr), min(sample, len(thr)), replace=False)
    t0 = time.perf_counter()
    for t in thr[pick]:  # the loop over thresholds the sweep avoids
        evaluation_at_stages(view, (conf < t).astype(int))
    t_each = (time.perf_counter() - t0) / len(pick)
    for i in pick[:20]:
        r = evaluation_at_stages(view, (conf < thr[i]).astype(int))
        assert abs(r["bleu"] - df["bleu"].iloc[i]) < 1e-9 and abs(r.flops - df["flops"].iloc[i]) < 1e-3
    t_loop = t_each * len(thr)
    print(f"N={N}, corpus BLEU, energy (mean over tokens): {len(thr)} distinct thresholds")
    print(f"exact routing sweep (view + all thresholds): {t_sweep:8.3f} s")
    print(f"one at a time ({len(pick)} timed, scaled to all): {t_loop:8.1f} s  ({t_each * 1e3:.2f} ms per threshold)")
    print(f"ratio one-at-a-time / sweep:                {t_loop / t_sweep:8.0f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
