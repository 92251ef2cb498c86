"""Real early exit and cascade on SST-2 test: fidelity to the shipped caches and measured vs predicted speed-up.

Needs the trained zoo checkpoints (runs/sst2/...; `bash scripts/build_zoo.sh`) and data/sst2 caches made from them.
For several thresholds (chosen on the test cache by their FLOPs-predicted speed-up), runs the real policy at batch
sizes 1 and 32, checks exit stages and predictions example by example against the offline simulation, and compares
the measured wall-clock speed-up (full model on every example / policy, both timed in this run, median of `repeats`)
with the FLOPs prediction. Run: python benchmarks/bench_runtime.py [--repeats 3] [--threads 2]
"""

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

import toolkit
from toolkit.analysis.engine import staged, sweep
from toolkit.analysis.policies import early_exit
from toolkit.analysis.scores.classification import stage_confidence
from toolkit.data.tasks import load_split
from toolkit.nn.encoder.models import load_model
from toolkit.nn.encoder.runtime import CascadeRunner, EarlyExitRunner, midpoint_threshold

REPO = Path(__file__).resolve().parents[1]


def thresholds_for(cache, targets, reference):
    df = sweep(staged(cache)).frame
    speedup = reference / df["flops"]
    conf = stage_confidence(cache.logits, score="max_prob")
    return [midpoint_threshold(conf, df["threshold"].iloc[(speedup - t).abs().argmin()]) for t in targets]


def bench(name, runner_fn, cache, texts, targets, batch_sizes, repeats, reference=None):
    """``reference``: mean FLOPs of what ``runner.run_full`` runs (the last model alone for a cascade)."""
    reference = float(cache.flops[:, -1].mean()) if reference is None else reference
    rows = []
    for thr in thresholds_for(cache, targets, reference):
        offline = early_exit(cache, thr)
        predicted = float(reference / offline.flops.mean())
        for bs in batch_sizes:
            runner = runner_fn(thr)
            res = runner.run(texts, batch_size=bs)
            same = (res.exit_stage == offline.exit_stage).mean()
            same_pred = (res.prediction == offline.prediction).mean()
            full, pol = [], []
            for _ in range(repeats):  # interleaved: the two timings see the same machine state
                full.append(runner.run_full(texts, batch_size=bs))
                pol.append(runner.run(texts, batch_size=bs).seconds)
            measured = statistics.median(full) / statistics.median(pol)
            rows.append((name, thr, bs, predicted, measured, same, same_pred, statistics.median(full),
                         statistics.median(pol)))
            print(f"{name:<22} thr={thr:.4f} batch={bs:<3} predicted {predicted:5.2f}x measured {measured:5.2f}x "
                  f"(ratio {measured / predicted:4.2f})  exits equal {same:.4f} predictions equal {same_pred:.4f}  "
                  f"full {statistics.median(full):6.2f}s policy {statistics.median(pol):6.2f}s", flush=True)
    return rows


COLUMNS = ["policy", "threshold", "batch_size", "predicted_speedup", "measured_speedup", "exits_equal",
           "predictions_equal", "full_s", "policy_s"]


def save_rows(rows, path=REPO / "benchmarks/runtime_results.csv"):
    """Append measured rows (one per policy, threshold and batch size) to the CSV the runtime notebook plots."""
    import pandas as pd

    new = pd.DataFrame(rows, columns=COLUMNS)
    if path.exists():
        old = pd.read_csv(path)
        old = old[~old["policy"].isin(new["policy"].unique())]
        new = pd.concat([old, new])
    new.to_csv(path, index=False, float_format="%.4f")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--targets", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--what", nargs="+", default=["early_exit", "cascade"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    frame = load_split("sst2", "test").frame
    texts = list(frame["text_a"])
    print(f"SST-2 test ({len(texts)} sentences), torch threads {torch.get_num_threads()}, median of {a.repeats}")
    if "early_exit" in a.what:
        path = REPO / "runs/sst2/minilm6_me/final"
        cache = toolkit.load_cache(REPO / "data/sst2/minilm6_me-test.parquet")
        model, tok = load_model(path), AutoTokenizer.from_pretrained(path)
        save_rows(bench("MiniLM-L6 early exit", lambda t: EarlyExitRunner(model, tok, t), cache, texts, a.targets,
                        a.batch_sizes, a.repeats))
    if "cascade" in a.what:
        cache = toolkit.load_cache(REPO / "data/sst2/cascade-test.parquet")
        paths = [REPO / f"runs/sst2/{m}/final" for m in ("minilm2", "minilm6", "mpnet")]
        models = [load_model(p) for p in paths]
        toks = [AutoTokenizer.from_pretrained(p) for p in paths]
        mpnet_alone = float((cache.flops[:, -1] - cache.flops[:, -2]).mean())
        save_rows(bench("cascade L2->L6->MPNet", lambda t: CascadeRunner(models, toks, [t, t]), cache, texts,
                        a.targets, a.batch_sizes, a.repeats, reference=mpnet_alone))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
