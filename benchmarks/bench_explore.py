"""Update latency of the cache explorer (toolkit.analysis.explore.app), per kind of update, in milliseconds.

Caches: a synthetic 100,000 x 12 exits x 2 classes cal/test pair (seed 0; the bench_sweep generator) and a shipped
one (SST-2, MiniLM-L6 multi-exit: cal 2,000, test 872). Each update is a control value set from Python, the way
the browser's message arrives in the kernel; its time covers everything the kernel does before the new numbers,
figure (PNG) and example table are in the widgets (not the browser's own rendering, which the browser test sees).
- threshold move: the slider moved to a random row of cal's sweep (repeats, median and 90th percentile);
- target speed-up: the speed-up slider set to a random target (the engine's budget rule on the kept cal sweep);
- stage change: the reliability diagram and the examples at another stage;
- new setting, first time: a score/temperature not seen before (two exact sweeps and their confidences);
- new setting, seen before: back to a setting already computed (kept, so no sweep).
A threshold move is also split into its parts: the numbers (row lookup and exit stages on both splits), the
figure (blitted redraw and PNG encoding), and the example table.
The shipped cache is also explored in predicted time (the CPU latency profile, benchmarks/latency_profile_cpu.json)
at batch 1 (per example) and batch 32 (the exact curve of the runtime's batches, latency.time_sweep, computed once
per setting: it weighs on opening and on a new setting, not on moves).
Run: python benchmarks/bench_explore.py [N] [E] [repeats]   (N = 0: the shipped cache only)
"""

import sys
import time
from pathlib import Path

import numpy as np

from toolkit.analysis.explore.app import explore
from toolkit.analysis.explore.views import Point
from toolkit.caches.classification import from_arrays, load_cache

ROOT = Path(__file__).resolve().parents[1]


def synthetic(N, E, C, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    lg = rng.normal(size=(N, E, C)).astype(np.float32)
    lg[np.arange(N), :, y] += np.linspace(0.2, 2.5, E, dtype=np.float32)
    return from_arrays(lg, y, np.cumsum(np.ones((N, E)), 1) * 1e9, meta={"split": "x"})


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def stats(ms):
    ms = np.asarray(ms)
    return f"median {np.median(ms):7.1f} ms   p90 {np.quantile(ms, 0.9):7.1f} ms   (n={len(ms)})"


def run(name, cal, test, repeats, seed=0, **options):
    rng = np.random.default_rng(seed)
    t_init = timed(lambda: globals().__setitem__("_ex", explore(cal, test, temperature="none", **options)))
    ex = globals().pop("_ex")
    c = ex.controls
    n_rows = c["position"].max
    rows = rng.integers(1, n_rows, repeats)
    moves = [timed(lambda r=r: setattr(c["position"], "value", int(r))) for r in rows]
    thr = ex.pre("cal").columns["threshold"][rows]
    numbers = [timed(lambda t=t: [Point.at(ex.pre(s), s, t) for s in ("cal", "test")]) for t in thr]
    figure = [timed(lambda: (ex._figure.draw_point(), ex._figure.png())) for _ in rows]
    table = [timed(ex._examples_table_html) for _ in rows]
    top = c["speedup"].max
    budgets = [timed(lambda s=s: setattr(c["speedup"], "value", float(s)))
               for s in np.round(rng.uniform(1.05, top, repeats), 2)]
    stages = [timed(lambda e=e: setattr(c["stage"], "value", ex.view.stage_names[e]))
              for e in rng.permutation(np.resize(np.arange(len(ex.view.stage_names)), max(repeats // 4, 4)))]
    first = [timed(lambda s=s: setattr(c["score"], "value", s)) for s in ("margin", "entropy", "energy")]
    again = [timed(lambda s=s: setattr(c["score"], "value", s)) for s in ("margin", "entropy", "energy") * 3]
    fit = timed(lambda: setattr(c["temperature"], "value", "cal"))
    print(f"{name}: cal N={cal.n_examples:,}, test N={test.n_examples:,}, E={cal.n_stages}, C={cal.n_classes}; "
          f"cal sweep rows {n_rows + 1:,}")
    print(f"  open (max_prob, T=1: two sweeps, drop rule, figure) {t_init:7.1f} ms")
    print(f"  threshold move (slider)                  {stats(moves)}")
    print(f"    of which numbers (lookup, exit stages)  {stats(numbers)}")
    print(f"    of which figure (blit, PNG)             {stats(figure)}")
    print(f"    of which example table                  {stats(table)}")
    print(f"  target speed-up (slider)                 {stats(budgets)}")
    print(f"  stage change                             {stats(stages)}")
    print(f"  new setting, first time (score)          {stats(first)}")
    print(f"  new setting, seen before (score)         {stats(again)}")
    print(f"  temperatures fitted on cal, first time   {fit:8.1f} ms")
    return ex


def main(N=100_000, E=12, repeats=40):
    if N:
        run(f"synthetic {N:,} x {E} x 2 (seed 0 cal, seed 1 test)", synthetic(N, E, 2, 0), synthetic(N, E, 2, 1),
            repeats)
    d = ROOT / "data" / "sst2"
    if (d / "minilm6_me-test.parquet").exists():
        pair = load_cache(d / "minilm6_me-cal.parquet"), load_cache(d / "minilm6_me-test.parquet")
        run("shipped: sst2 minilm6_me", *pair, repeats)
        profile = ROOT / "benchmarks" / "latency_profile_cpu.json"
        if profile.exists():
            for b in (1, 32):
                run(f"shipped: sst2 minilm6_me, predicted time at batch {b}", *pair, repeats, profile=profile, batch=b)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
