"""CALM operating points chosen on cal for a time budget, checked by a real run (issue 31).

Reads the points ``benchmarks/bench_calm_time.py`` chose on the shipped cal token cache for the budget "no slower
than greedy decoding" (rows ``chosen on cal: <= ... ms/token``), decodes the first ``--prompts`` prompts of the test
cache with the real :class:`toolkit.nn.causal.decode.CalmDecoder` at each and with greedy decoding (the same layer
stepping: ``SelfSpeculativeDecoder(model, 1, 0)``, bench_latency's baseline), interleaved ``--repeats`` times in
batches sorted by prompt length, and prints the measured speed-up per generated token beside the predicted ones:
from the cache (``latency.calm_time_sweep`` on the same prompts: teacher-forced exits) and from the exits the real
decode took (``latency.calm_run_ms``, the latency model alone).

Run (CPU, one thread, as the profile):
    PYTHONPATH=. python benchmarks/bench_calm_time_real.py --threads 1 --out benchmarks/bench_calm_time_real.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_calm_time import at_threshold  # noqa: E402
from bench_llm_runtime import batches, load_model, run_batched  # noqa: E402
from llm_setup import shipped_token_caches, write_rows_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "SmolLM2-135M-Instruct"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--chosen", default=str(REPO / "benchmarks/bench_calm_time.json"))
    ap.add_argument("--profile", default=str(REPO / "benchmarks/latency_profile_cpu.json"))
    ap.add_argument("--set", default="agnews_headline")
    ap.add_argument("--prompts", type=int, default=8, help="first N prompts of the test cache")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    import torch

    from toolkit.analysis.cost import latency as lat
    from toolkit.analysis.engine import staged
    from toolkit.caches.tokens import prompt_range
    from toolkit.nn.causal.decode import CalmDecoder, SelfSpeculativeDecoder

    torch.set_num_threads(a.threads)
    prof = lat.load_profile(a.profile)
    pm = prof.model(SMOLLM2)
    chosen = [r for r in json.loads(Path(a.chosen).read_text())["rows"]
              if r["cache"] == a.set and r["kind"].startswith("chosen on cal: <=") and r.get("threshold") is not None]
    model, tok, origin = load_model(None, "cpu", "float32")
    name = f"smollm2_{a.set}"
    cache, prompts, _, _ = shipped_token_caches(SimpleNamespace(tokenizer=tok), [name], "test")[name]
    sub = prompt_range(cache, 0, a.prompts)
    prompts = prompts[: sub.n_examples]
    max_new = int(sub.max_new_tokens.max())
    greedy = SelfSpeculativeDecoder(model, 1, 0)
    meta = dict(model=origin, threads=a.threads, profile=prof.label, set=a.set, split="test",
                prompts=sub.n_examples, max_new_tokens=max_new, repeats=a.repeats, chosen=a.chosen,
                loadavg_start=[round(x, 2) for x in os.getloadavg()], torch=torch.__version__)
    rows = []
    t_start = time.perf_counter()
    for r in chosen:
        checked = [int(x) for x in r["checked"].split(",")]
        b, thr = int(r["batch_size"]), float(r["threshold"])
        groups = batches(prompts, b)
        view = staged(sub, family="lens", checked_layers=checked)
        cached = at_threshold(lat.calm_time_sweep(view, prof, model=SMOLLM2, batch_size=b,
                                                  prompt_lengths=sub.n_prompt), thr)
        dec = CalmDecoder(model, checked, thr)
        out = {}

        def run_calm():
            t, s, _, x = run_batched(dec, prompts, groups, max_new)
            out["tokens"], out["exits"] = t, x
            return s

        def run_greedy():
            t, s, _, _ = run_batched(greedy, prompts, groups, max_new)
            out["greedy"] = t
            return s

        g_s, c_s = [], []
        for _ in range(a.repeats):  # interleaved: both see the same machine state
            g_s.append(run_greedy())
            c_s.append(run_calm())
        n_g = sum(len(x) for x in out["greedy"])
        n_c = sum(len(x) for x in out["tokens"])
        measured = (statistics.median(g_s) / n_g) / (statistics.median(c_s) / n_c)
        pred_g = sum(lat.greedy_run_ms(pm, [len(out["greedy"][i]) for i in g]) for g in groups)
        pred_c = sum(lat.calm_run_ms(pm, [out["exits"][i] for i in g], checked) for g in groups)
        row = dict(checked=r["checked"], batch_size=b, threshold=thr, budget=r["kind"],
                   cal_predicted_speedup=r["cal_predicted_speedup"],
                   cache_predicted_speedup=float(cached["speedup"]),
                   realized_predicted_speedup=float((pred_g / n_g) / (pred_c / n_c)), measured_speedup=measured,
                   measured_greedy_ms_per_token=1e3 * statistics.median(g_s) / n_g,
                   measured_calm_ms_per_token=1e3 * statistics.median(c_s) / n_c,
                   predicted_greedy_ms_per_token=pred_g / n_g, predicted_calm_ms_per_token=pred_c / n_c,
                   cache_mean_exit_layer=float(cached["mean_layers"]),
                   real_mean_exit_layer=float(np.mean(np.concatenate(out["exits"]))),
                   greedy_equals_cache=float(np.mean([np.array_equal(x, sub.tokens[sub.offsets[i]:sub.offsets[i + 1]])
                                                      for i, x in enumerate(out["greedy"])])),
                   greedy_s_all=g_s, calm_s_all=c_s, calm_tokens=n_c, greedy_tokens=n_g,
                   loadavg=[round(x, 2) for x in os.getloadavg()])
        rows.append(row)
        print(f"layers {r['checked']:<11} b{b} thr {thr:.4f}: measured {measured:.2f}x, predicted on the cache "
              f"{row['cache_predicted_speedup']:.2f}x (cal {row['cal_predicted_speedup']:.2f}x), on the real exits "
              f"{row['realized_predicted_speedup']:.2f}x; ms/token greedy {row['measured_greedy_ms_per_token']:.0f} "
              f"(pred {row['predicted_greedy_ms_per_token']:.0f}), load {row['loadavg'][0]}", flush=True)
        if a.out:
            write_rows_json(Path(a.out), {**meta, "seconds": time.perf_counter() - t_start}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
