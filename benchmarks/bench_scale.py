"""The engine at the sizes researchers have: each row of issue 27's table before and after, in one run.

Every measurement runs in a fresh subprocess (``--one``) on random caches of the zoo's shape (seed 0, max-prob
score from logits, unit-step cumulative FLOPs), once with this checkout's engine ("after") and once with the code of
``--old`` (a ``git worktree add /tmp/old 28afd11``: "before"), so the ratios come from one run on one machine:

- ``N x E x C``: building the engine view (scoring the logits) plus the exact sweep, against a stable argsort of the
  N x E confidences (the floor any exact sweep pays), and the peak memory growth of the two steps (tracemalloc:
  numpy's allocations, the peak above what was held before the view was built);
- ``llm S``: the same on a token cache of S generated tokens (tuned family, 9 checked layers of 30);
- ``evaluate N``: ``OperatingPoint.evaluate(test, n_boot=1000)`` of a cal-chosen threshold at N examples;
- ``llm-pipeline S`` (after only): a random S-token cache of 30 layers x 2 families written and loaded, swept,
  the CALM threshold chosen on cal, evaluated on test with 1,000 resamples of prompts, and a threshold moved in
  the explorer; each step timed.

Run: python benchmarks/bench_scale.py [--old /tmp/old] [--rows ...] [--skip-old ROW ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = ["cls:100000:12:3", "cls:1000000:12:3", "cls:200000:12:20", "llm:382500", "evaluate:200000",
        "evaluate:1000000", "llm-pipeline:1000000"]


def _synthetic():
    """:mod:`toolkit.testing` (this checkout's generators; with the old code, loaded onto its classes)."""
    try:
        import toolkit.testing as synthetic
    except ImportError:  # the code before had no generators: the same ones, on its Cache and LLMTokenCache
        import importlib.util

        spec = importlib.util.spec_from_file_location("toolkit.testing",
                                                      ROOT / "toolkit" / "analysis" / "synthetic.py")
        synthetic = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(synthetic)
    return synthetic


def _measure(fn):
    """(seconds, peak MB of numpy allocations above what was held when fn started, result)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return dt, peak / 2 ** 20, out


def _argsort_seconds(conf):
    t0 = time.perf_counter()
    np.argsort(-np.asarray(conf, dtype=np.float64).ravel(), kind="stable")
    return time.perf_counter() - t0


def one(row: str) -> dict:
    """One measurement in this process (the engine on sys.path: this checkout or --old)."""
    from toolkit.analysis import engine as en

    kind, *args = row.split(":")
    if kind in ("cls", "llm"):
        if kind == "cls":
            cache = _synthetic().random_classification_cache(*(int(a) for a in args))
            build = lambda: en.staged(cache)  # noqa: E731
        else:
            cache = _synthetic().random_token_cache(int(args[0]), families=("tuned",))
            build = lambda: en.staged(cache, family="tuned", checked_layers=np.arange(3, 30, 3))  # noqa: E731
        dt, peak, (view, curve) = _measure(lambda: (lambda v: (v, en.sweep(v)))(build()))
        return {"engine_s": dt, "argsort_s": _argsort_seconds(view.confidence), "peak_mb": peak, "rows": len(curve),
                "shape": list(view.confidence.shape)}
    if kind == "evaluate":
        N = int(args[0])
        gen = _synthetic().random_classification_cache
        op = en.choose(en.staged(gen(20_000, 12, 2, seed=1, split="cal")), rule="drop", max_drop=0.01)
        test = en.staged(gen(N, 12, 2, seed=2))
        dt, peak, ev = _measure(lambda: op.evaluate(test, n_boot=1000))
        return {"engine_s": dt, "peak_mb": peak, "accuracy": ev.intervals["accuracy"]}
    if kind == "llm-pipeline":
        return llm_pipeline(int(args[0]))
    raise ValueError(row)


def llm_pipeline(S: int) -> dict:
    from dataclasses import replace

    from toolkit.analysis import engine as en
    from toolkit.caches.tokens import LLMCacheWriter, load_llm_cache, prompt_range

    out, steps = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for split, seed in (("cal", 1), ("test", 2)):
            c = _synthetic().random_token_cache(S, seed=seed, split=split)
            t0 = time.perf_counter()
            with LLMCacheWriter(Path(d) / f"{split}.parquet") as w:  # as llm-collect writes: chunks of prompts
                for a in range(0, c.n_examples, 1000):
                    w.write(prompt_range(c, a, a + 1000))
            steps[f"write {split} (chunks of 1,000 prompts)"] = time.perf_counter() - t0
            del c
        t0 = time.perf_counter()
        cal = load_llm_cache(Path(d) / "cal.parquet", verify_data=False)
        test = load_llm_cache(Path(d) / "test.parquet", verify_data=False)
        steps["load cal + test"] = time.perf_counter() - t0
        out["tokens"], out["prompts"], out["layers"] = cal.n_tokens, cal.n_examples, cal.n_layers
        out["families"] = cal.family_names
        t0 = time.perf_counter()
        vc = en.staged(cal, family="tuned", checked_layers=np.arange(3, 30, 3))
        curve = en.sweep(vc)
        steps["view + sweep (cal, 9 checked layers of 30)"] = time.perf_counter() - t0
        out["sweep_rows"] = len(curve)
        t0 = time.perf_counter()
        op = en.choose(vc, rule="drop", metric="agreement", max_drop=0.05)
        steps["CALM threshold chosen on cal (agreement drop <= 0.05)"] = time.perf_counter() - t0
        vt = en.staged(test, family="tuned", checked_layers=np.arange(3, 30, 3))
        if vt.clusters is None:  # token views carry their prompts (clusters) once llm.from_llm_tokens sets them
            vt = replace(vt, clusters=test.example_index)
        t0 = time.perf_counter()
        ev = op.evaluate(vt, n_boot=1000)
        steps["evaluated on test, 1,000 resamples of prompts"] = time.perf_counter() - t0
        out["test"] = {k: ev.to_dict()[k] for k in ("agreement", "agreement_lo", "agreement_hi", "speedup",
                                                   "speedup_lo", "speedup_hi", "agreement_drop_lo",
                                                   "agreement_drop_hi")}
        try:
            from toolkit.analysis.explore.app import explore

            t0 = time.perf_counter()
            ex = explore(cal, test, family="tuned")
            steps["explorer opened"] = time.perf_counter() - t0
            pos = ex.controls["position"]
            moves = []
            for r in np.random.default_rng(0).integers(1, pos.max, 10):
                t0 = time.perf_counter()
                pos.value = int(r)
                moves.append(time.perf_counter() - t0)
            steps["explorer threshold move (median of 10)"] = float(np.median(moves))
        except Exception as e:  # report, not hide: the explorer's own limits at this size
            out["explorer_error"] = f"{type(e).__name__}: {e}"
    out["steps_s"] = steps
    import resource

    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(row: str, code: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, __file__, "--one", row]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code)
    if p.returncode:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", type=Path, default=Path("/tmp/old"), help="checkout of the code before (28afd11)")
    ap.add_argument("--rows", nargs="*", default=ROWS)
    ap.add_argument("--skip-old", nargs="*", default=["cls:200000:12:20", "evaluate:1000000",
                                                      "llm-pipeline:1000000"],
                    help="rows not run with the old code (it needs 13.8 GB at 200k x 12 x 20; 8 GB of resample "
                         "weights at a million examples)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one)))
        return
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}; "
          f"{os.cpu_count()} cores", flush=True)
    for row in a.rows:
        new = run(row, ROOT)
        old = run(row, a.old) if row not in a.skip_old and a.old.exists() else None
        print(row, "after:", json.dumps(new), flush=True)
        if old is not None:
            print(row, "before:", json.dumps(old), flush=True)
            if "engine_s" in old and "engine_s" in new:
                print(f"{row}: after/before time {new['engine_s'] / old['engine_s']:.2f}x", flush=True)
        if "argsort_s" in new:
            print(f"{row}: after {new['engine_s']:.2f} s = {new['engine_s'] / new['argsort_s']:.1f}x its argsort "
                  f"({new['argsort_s']:.2f} s), peak +{new['peak_mb']:.0f} MB", flush=True)
        print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
