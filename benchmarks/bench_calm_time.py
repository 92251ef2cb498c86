"""CALM operating points in predicted time on the shipped SmolLM2 token caches (issue 31), beside the measured
speed-ups of ``benchmarks/bench_latency.json`` (no model runs here: numpy only, a few seconds).

For each shipped token cache (``data/llm/smollm2_<set>-{cal,test}.parquet``, logit-lens exits, max_prob), each set
of checked layers of bench_latency's CALM cases and each batch size:

- **bench thresholds**: the predicted-time speed-up over greedy decoding (``latency.calm_time_sweep``: the
  CalmDecoder's schedule on batches of prompts sorted by prompt length, as bench_latency batches them; a step runs
  to its deepest exit) at bench_latency's thresholds, on this cache's prompts, beside what bench_latency measured
  (its own 4 AG News test prompts, 16 tokens, same profile, same thresholds), what it predicted from those prompts'
  offline exits and what the latency model gives on the exits its real decode took;
- **operating points chosen on cal** (``engine.threshold_on_sweep`` on the cal time curve): the cheapest threshold
  whose cal agreement reaches a target, and the most agreeing threshold within a time budget (the greedy step's
  predicted ms per token: no slower than greedy decoding); each evaluated on test (agreement with a 95% interval
  resampling prompts, predicted-time and FLOPs speed-ups).

Run:    python benchmarks/bench_calm_time.py --out benchmarks/bench_calm_time.json
Table:  python benchmarks/bench_calm_time.py --table benchmarks/bench_calm_time.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_setup import write_rows_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "SmolLM2-135M-Instruct"


def at_threshold(curve, threshold: float):
    """The curve's row deciding as ``threshold`` does (the smallest swept threshold at or above it)."""
    t = curve.frame["threshold"].to_numpy()
    return curve.frame.iloc[int(np.flatnonzero(t >= threshold)[-1])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--table", help="print the markdown table of this results JSON and exit")
    ap.add_argument("--profile", default=str(REPO / "benchmarks/latency_profile_cpu.json"))
    ap.add_argument("--measured", default=str(REPO / "benchmarks/bench_latency.json"))
    ap.add_argument("--sets", nargs="+", default=["agnews_headline", "sst2_sentiment"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args(argv)
    if a.table:
        print(markdown_table(a.table))
        return 0

    from toolkit.analysis.cost import latency as lat
    from toolkit.analysis.engine import evaluation, staged, threshold_on_sweep
    from toolkit.caches.tokens import load_llm_cache

    prof = lat.load_profile(a.profile)
    bench = json.loads(Path(a.measured).read_text())
    measured = {(r["operating_point"], r["batch_size"]): r for r in bench["rows"] if r["method"] == "calm"}
    cases = sorted({op for op, _ in measured})
    rows = []
    for name in a.sets:
        caches = {s: load_llm_cache(REPO / "data/llm" / f"smollm2_{name}-{s}.parquet") for s in ("cal", "test")}
        for op in cases:
            checked = [int(x) for x in op.split(":")[0].split(",")]
            bench_thr = float(op.split(":")[1])
            views = {s: staged(c, family="lens", checked_layers=checked) for s, c in caches.items()}
            for b in a.batch_sizes:
                curves = {s: lat.calm_time_sweep(views[s], prof, model=SMOLLM2, batch_size=b,
                                                 prompt_lengths=caches[s].n_prompt) for s in caches}
                base = dict(cache=name, checked=",".join(map(str, checked)), batch_size=b,
                            reference_ms_per_token={s: curves[s].meta["reference_ms"] for s in curves})
                m = measured.get((op, b))
                for s in ("cal", "test"):
                    r = at_threshold(curves[s], bench_thr)
                    flops = evaluation(views[s], bench_thr)
                    rows.append(dict(base, kind="bench threshold", split=s, threshold=bench_thr,
                                     agreement=float(r["agreement"]), predicted_ms_per_token=float(r["flops"]),
                                     predicted_speedup=float(r["speedup"]), flops_speedup=float(flops.speedup),
                                     mean_exit_layer=float(r["mean_layers"]),
                                     bench_measured_speedup=None if m is None else m["measured_speedup"],
                                     bench_predicted_speedup=None if m is None else m["predicted_speedup"],
                                     bench_realized_predicted_speedup=None if m is None else
                                     m.get("realized_predicted_speedup")))
                rules = [(dict(rule="target", target=t), f"agreement >= {t:g}") for t in a.targets]
                budget_ms = curves["cal"].meta["reference_ms"]
                rules.append((dict(rule="budget", budget=lat.time_budget_speedup(curves["cal"], budget_ms)),
                              f"<= {budget_ms:.1f} ms/token (greedy's)"))
                for kw, label in rules:
                    try:
                        thr = threshold_on_sweep(curves["cal"], metric="agreement", **kw)
                    except ValueError as e:
                        rows.append(dict(base, kind=f"chosen on cal: {label}", split="test", threshold=None,
                                         note=str(e)))
                        continue
                    cal_row, test_row = at_threshold(curves["cal"], thr), at_threshold(curves["test"], thr)
                    ev = evaluation(views["test"], thr, n_boot=a.n_boot, seed=0)
                    lo, hi = ev.intervals["agreement"]
                    rows.append(dict(base, kind=f"chosen on cal: {label}", split="test", threshold=float(thr),
                                     cal_agreement=float(cal_row["agreement"]),
                                     cal_predicted_speedup=float(cal_row["speedup"]),
                                     agreement=float(test_row["agreement"]), agreement_ci=[float(lo), float(hi)],
                                     predicted_ms_per_token=float(test_row["flops"]),
                                     predicted_speedup=float(test_row["speedup"]), flops_speedup=float(ev.speedup),
                                     mean_exit_layer=float(test_row["mean_layers"])))
    meta = dict(profile=a.profile, profile_label=prof.label, measured=a.measured,
                measured_prompts=bench["meta"].get("llm_prompts"),
                measured_max_new_tokens=bench["meta"].get("max_new_tokens"), family="lens", score="max_prob",
                batches="prompts sorted by prompt length, consecutive groups (as bench_latency)", n_boot=a.n_boot,
                ci=0.95, bootstrap_seed=0, reference="greedy decoding of the same batches (predicted)")
    if a.out:
        write_rows_json(Path(a.out), meta, rows)
    print(markdown_table_of(meta, rows))
    return 0


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def markdown_table_of(meta, rows) -> str:
    out = [f"Profile {meta['profile_label']}; lens exits, max_prob; {meta['batches']}.", "",
           "| cache | checked | batch | case | split | threshold | agreement | predicted ms/token | predicted "
           "speed-up | FLOPs speed-up | bench measured (predicted on its prompts; on the exits its run took) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("threshold") is None:
            out.append(f"| {r['cache']} | {r['checked']} | {r['batch_size']} | {r['kind']} | {r['split']} | "
                       f"none: {r['note']} | | | | | |")
            continue
        agr = _f(r["agreement"], "{:.3f}")
        if "agreement_ci" in r:
            agr += f" [{r['agreement_ci'][0]:.3f}, {r['agreement_ci'][1]:.3f}] (cal {r['cal_agreement']:.3f})"
        bench = "-" if r.get("bench_measured_speedup") is None else \
            f"{r['bench_measured_speedup']:.2f}x ({r['bench_predicted_speedup']:.2f}x; " \
            f"{_f(r.get('bench_realized_predicted_speedup'))}x)"
        out.append(f"| {r['cache']} | {r['checked']} | {r['batch_size']} | {r['kind']} | {r['split']} | "
                   f"{r['threshold']:.4f} | {agr} | {r['predicted_ms_per_token']:.1f} | "
                   f"{r['predicted_speedup']:.2f}x | {r['flops_speedup']:.2f}x | {bench} |")
    return "\n".join(out)


def markdown_table(path) -> str:
    d = json.loads(Path(path).read_text())
    return markdown_table_of(d["meta"], d["rows"])


if __name__ == "__main__":
    raise SystemExit(main())
