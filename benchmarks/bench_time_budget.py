"""An operating point chosen on cal for a time budget, checked by a real run (issue 31).

In one run, library calls only:

1. **Caches**: the cal and test caches of a cascade restricted to the members whose checkpoints are here
   (:meth:`Cache.select_members`: the header, identity and weight fingerprints of the smaller cascade).
2. **Identity**: each checkpoint's weight fingerprint equals the one its cache records (the policy below refuses
   other weights anyway), and its logits on the first ``--check`` cal examples equal the cached ones.
3. **Profile** the members on this machine (``toolkit profile``'s :func:`profile_models`), or read ``--profile``.
4. **Choose on cal** in predicted time: the cal cache costed in predicted ms per example at each batch size, at
   batch 1 per example (:func:`latency.with_predicted_time`), above it at the runtime's batches at every threshold
   (:func:`latency.encoder_time_sweep`: the cascade re-batches the escalated examples); budget: ``--budget`` times
   the last member alone's predicted mean ms per example on cal, at every batch size;
   :func:`latency.choose_time_budget` (every threshold within all budgets on cal, best cal metric).
5. **Run for real** on the test split's text (``toolkit.data.join_text``, by example id): the policy made from the
   operating point (:meth:`Policy.from_operating_point`, with the members' weight fingerprints) runs in the
   cascade runtime (:func:`runner_from_policy`), interleaved ``--repeats`` times with the last member alone
   (``run_full``) at each batch size.
6. **Report**: predicted (the runtime's schedule, :func:`latency.cascade_run_ms`, and each row's share of a full
   batch, the approximation the choice used before) and
   measured ms per example and speed-ups; whether the budget held on test (predicted, and measured relative to the
   last member in the same run); the real run's test metric against the cache's at that point, and whether the
   runtime's exits and predictions equal the cache's decisions; the load average.

Run (CPU, this machine; the MRPC cascade of seed 42, its two MiniLM members):
    PYTHONPATH=. python benchmarks/bench_time_budget.py --threads 1 \\
        --cal data/mrpc/cascade-s42-cal.parquet --test data/mrpc/cascade-s42-test.parquet \\
        --members minilm-l2=/tmp/tb_members/minilm2-s42 minilm-l6=/tmp/tb_members/minilm6-s42 \\
        --out benchmarks/bench_time_budget.json --profile-out benchmarks/time_budget_profile_cpu.json
Table for RESULTS.md:  python benchmarks/bench_time_budget.py --table benchmarks/bench_time_budget.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import interleaved, loadavg  # noqa: E402
from llm_setup import write_rows_json  # noqa: E402


def texts_of(cache, data_dir):
    """(text_a, text_b) of a cache's examples in its row order, from the local data folder by example id."""
    from toolkit.data import join_text

    frame = join_text(cache.example_ids, cache.task, data_dir)
    if frame is None or frame["text_a"].isna().any():
        raise SystemExit(f"{cache.meta.get('path')}: the text of its examples is not in the data folder "
                         f"({data_dir or 'default'}); pass --data-dir")
    b = frame.get("text_b")
    return list(frame["text_a"]), (None if b is None or b.isna().all() else list(b))


def check_members(cache, folders, data_dir, n_check):
    """Each member's checkpoint against the cache: weight fingerprint and logits on the first ``n_check``
    examples (max absolute difference per member). Stops the run on a mismatch."""
    import pandas as pd
    import torch
    from transformers import AutoTokenizer

    from toolkit.nn.common.inference import predict_logits
    from toolkit.nn.common.parts import weights_sha256
    from toolkit.nn.encoder.models import load_model

    sub = cache.subset(np.arange(min(n_check, cache.n_examples)))
    a, b = texts_of(sub, data_dir)
    frame = pd.DataFrame({"text_a": a, "text_b": b if b is not None else [None] * len(a)})
    model_of = np.array([s.get("model_index", 0) for s in cache.stage_info])
    out, loaded = [], {}
    for i, (rec, folder) in enumerate(zip(cache.meta["models"], folders)):
        model = load_model(folder).eval()
        tok = AutoTokenizer.from_pretrained(folder)
        fp = weights_sha256(model)
        if fp != rec.get("weights_sha256"):
            raise SystemExit(f"{folder}: weights sha256 {fp[:12]}... but the cache records "
                             f"{str(rec.get('weights_sha256'))[:12]}... for member {rec.get('name')!r}: not the "
                             f"weights the cache was collected with")
        with torch.inference_mode():
            lg, _ = predict_logits(model, tok, frame, 8, int(cache.meta.get("max_length", 128)), "cpu")
        cached = sub.logits[:, model_of == i]
        if lg.shape[1] != cached.shape[1]:  # a multi-exit member whose cache kept some of its exits
            lg = lg[:, -cached.shape[1]:]
        diff = float(np.abs(lg - cached).max())
        if diff > 1e-3:
            raise SystemExit(f"{folder}: logits on the first {len(a)} cal examples differ from the cache's by up to "
                             f"{diff:.3g}: not the model (or the data) the cache was collected with")
        out.append({"member": rec.get("name"), "folder": str(folder), "weights_sha256": fp,
                    "weights_equal_cache": True, "examples_checked": len(a), "max_abs_logit_diff": diff})
        loaded[rec.get("name")] = (model, tok)
    return out, loaded


def paired(baseline_s, method_s) -> dict:
    """Each repeat's method time over its baseline's, run back to back (the drift of a shared machine's load
    cancels within a pair): their median as the measured share of the baseline's time, its speed-up, and the range
    of the speed-up over the repeats."""
    r = np.asarray(method_s, dtype=np.float64) / np.asarray(baseline_s, dtype=np.float64)
    return {"measured_share_paired": float(np.median(r)), "measured_speedup_paired": float(1 / np.median(r)),
            "measured_speedup_range": [float(1 / r.max()), float(1 / r.min())]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cal", help="the cascade's cal cache")
    ap.add_argument("--test", help="the cascade's test cache")
    ap.add_argument("--members", nargs="+", metavar="NAME=FOLDER",
                    help="the members to run (cache model names, cheapest first) and their checkpoints")
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--budget", type=float, default=0.6,
                    help="the time budget: this fraction of the last member alone's predicted mean ms per example "
                         "on cal, at every batch size (default 0.6)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--metric", help="what the budget rule maximises (default: the cache's metric)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check", type=int, default=16, help="cal examples whose logits are checked per member")
    ap.add_argument("--profile", help="read this latency profile instead of profiling here (same machine, threads)")
    ap.add_argument("--profile-out", default="runs/time_budget_profile.json", help="where this run's profile goes")
    ap.add_argument("--quick-profile", action="store_true", help="profile on the --quick grid (a smoke test)")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the test metric's drop")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--table", metavar="RESULTS_JSON")
    a = ap.parse_args(argv)
    if a.table:
        print(markdown_table(a.table))
        return 0
    if not (a.cal and a.test and a.members and a.out):
        ap.error("--cal, --test, --members and --out are required")
    import torch

    from toolkit import Policy, load_cache
    from toolkit.analysis.cost import latency as lat
    from toolkit.analysis.engine import staged
    from toolkit.analysis.metrics.task import task_metric
    from toolkit.nn.common.profile import machine_info, profile_models
    from toolkit.nn.encoder.runtime import runner_from_policy

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    names, folders = zip(*(m.split("=", 1) for m in a.members))
    cal = load_cache(a.cal, data_dir=a.data_dir).select_members(list(names))
    test = load_cache(a.test, data_dir=a.data_dir).select_members(list(names))
    metric = a.metric or cal.meta.get("metric") or "accuracy"
    meta = dict(**machine_info(), threads=torch.get_num_threads(), repeats=a.repeats, cal=a.cal, test=a.test,
                members=dict(zip(names, folders)), budget_fraction=a.budget, metric=metric,
                loadavg_start=loadavg(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    identity, loaded = check_members(cal, folders, a.data_dir, a.check)
    meta["identity"] = identity
    print("identity:", [(r["member"], r["max_abs_logit_diff"]) for r in identity], flush=True)

    if a.profile:
        prof = lat.load_profile(a.profile)
        meta["profile"] = a.profile
    else:
        p = profile_models(loaded, quick=a.quick_profile, progress=lambda s: print(s, flush=True))
        Path(a.profile_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.profile_out).write_text(json.dumps(p, indent=1))
        prof = lat.load_profile(a.profile_out)
        meta.update(profile=a.profile_out, profile_seconds=p["seconds"])
    members = lat.models_for(cal.meta, prof)
    mp = [prof.model(m) for m in members]

    def timed(cache, b):
        return lat.with_predicted_time(staged(cache), prof, cache.n_tokens, models=members, batch=b)

    def share_ms(cache, stage, b):
        """Mean of each row's share of a full batch at its stops (the comparison the runtime's batches correct;
        with_predicted_time refuses it above batch 1)."""
        return float(lat.cascade_example_ms(mp, cache.n_tokens, batch=b)[np.arange(cache.n_examples), stage].mean())

    # batch 1: each example's own schedule (exact); above: the runtime's batches at every threshold (exact)
    cal_views = [timed(cal, 1) if b == 1 else lat.encoder_time_sweep(cal, prof, models=members, batch_size=b)
                 for b in a.batch_sizes]
    budgets = [a.budget * float(v.meta["reference_ms"] if hasattr(v, "frame") else v.reference_cost.mean())
               for v in cal_views]
    choice = lat.choose_time_budget(cal_views, budgets, metric=metric, names=[f"batch {b}" for b in a.batch_sizes],
                                    cal=timed(cal, 1))
    op = choice.point
    print(choice.to_frame().to_string(), flush=True)
    meta.update(choice=choice.to_dict(), threshold=op.threshold)

    policy = Policy.from_operating_point(op, models=list(folders), weights=cal)
    runner = runner_from_policy(policy)  # refuses weights other than those recorded
    cal_stage = staged(cal).stage_of(op.threshold)  # the runtime's schedule on cal (the choice used row shares)
    cal_schedule = {b: (lat.cascade_run_ms(mp, cal.n_tokens, cal_stage, batch_size=b) / cal.n_examples,
                        lat.encoder_full_ms(mp[-1], cal.n_tokens, batch_size=b) / cal.n_examples)
                    for b in a.batch_sizes}
    for b, ms in zip(a.batch_sizes, choice.cal_ms):  # the choice priced the runtime's schedule itself
        if not np.isclose(ms, cal_schedule[b][0], rtol=1e-9):
            raise AssertionError(f"batch {b}: the choice's cal ms {ms} differ from the schedule's {cal_schedule[b][0]}")
    ta, tb = texts_of(test, a.data_dir)
    N = test.n_examples
    stage_off = staged(test).stage_of(op.threshold)
    pred_off = test.predictions[np.arange(N), stage_off]
    rows = []
    test_view = timed(test, 1)  # metrics and their intervals (no cost of a batch enters them)
    for b in a.batch_sizes:
        ev = op.evaluate(test_view, n_boot=a.n_boot, seed=0)
        test_share = share_ms(test, stage_off, b)
        res = runner.run(ta, tb, batch_size=b)  # the decisions (and a warm-up)
        runner.run_full(ta[: 2 * b], tb[: 2 * b] if tb else None, batch_size=b)  # warm-up of the baseline
        full_s, pol_s, fa, pa = interleaved(lambda: runner.run_full(ta, tb, batch_size=b),
                                            lambda: runner.run(ta, tb, batch_size=b).seconds, a.repeats)
        budget = budgets[a.batch_sizes.index(b)]
        pred_base = lat.encoder_full_ms(mp[-1], test.n_tokens, batch_size=b) / N
        pred_pol = lat.cascade_run_ms(mp, test.n_tokens, stage_off, batch_size=b) / N
        meas_base, meas_pol = 1e3 * full_s / N, 1e3 * pol_s / N
        row = dict(batch_size=b, threshold=op.threshold, budget_ms=budget,
                   predicted_baseline_ms=pred_base, predicted_method_ms=pred_pol,
                   predicted_share_ms=test_share,
                   predicted_share_baseline_ms=float((lat.forward_ms(mp[-1], b, test.n_tokens) / b).mean()),
                   measured_baseline_ms=meas_base, measured_method_ms=meas_pol,
                   predicted_speedup=pred_base / pred_pol, measured_speedup=meas_base / meas_pol,
                   **paired(fa, pa),
                   cal_share_ms=share_ms(cal, cal_stage, b),
                   cal_chosen_ms=choice.cal_ms[a.batch_sizes.index(b)], cal_schedule_ms=cal_schedule[b][0],
                   cal_schedule_baseline_ms=cal_schedule[b][1],
                   budget_held_cal_schedule=bool(cal_schedule[b][0] <= budget),
                   budget_held_test_share=bool(test_share <= budget),
                   budget_held_test_schedule=bool(pred_pol <= budget),
                   budget_held_test_measured_relative=bool(meas_pol <= a.budget * meas_base),
                   budget_held_test_measured_paired=bool(paired(fa, pa)["measured_share_paired"] <= a.budget),
                   budget_held_test_measured_absolute=bool(meas_pol <= budget),
                   escalated=float((stage_off > 0).mean()),
                   exits_equal_cache=float((res.exit_stage == stage_off).mean()),
                   predictions_equal_cache=float((res.prediction == pred_off).mean()),
                   metric=metric, real_metric=task_metric(labels=test.labels, preds=res.prediction, metric=metric),
                   cache_metric=ev.metrics[metric], cache_metric_last=ev.final[metric],
                   cache_metric_drop_interval=list(ev.drop_interval(metric)) if a.n_boot else None,
                   real_accuracy=task_metric(labels=test.labels, preds=res.prediction, metric="accuracy"),
                   cache_accuracy=ev.metrics["accuracy"],
                   baseline_s_all=fa, method_s_all=pa, loadavg=loadavg())
        row["relative_error"] = abs(row["predicted_speedup"] - row["measured_speedup_paired"]) / \
            row["measured_speedup_paired"]
        rows.append(row)
        print(f"batch {b:>3}: predicted {pred_pol:7.2f} ms/ex (L-last {pred_base:7.2f}, {row['predicted_speedup']:.2f}x)"
              f"  measured {meas_pol:7.2f} ms/ex (L-last {meas_base:7.2f}, paired {row['measured_speedup_paired']:.2f}x)  budget "
              f"{budget:.2f}  {metric} real {row['real_metric']:.4f} cache {row['cache_metric']:.4f}  exits equal "
              f"{row['exits_equal_cache']:.3f}  load {row['loadavg'][0]}", flush=True)
        write_rows_json(Path(a.out), meta, rows)
    meta.update(loadavg_end=loadavg(), seconds=time.perf_counter() - t0, test_n=N,
                policy=policy.to_dict())
    write_rows_json(Path(a.out), meta, rows)
    return 0


def markdown_table(path) -> str:
    d = json.loads(Path(path).read_text())
    m, c = d["meta"], d["meta"]["choice"]
    lines = ["| batch | budget (ms/ex) | cal: row shares / schedule (ms/ex) | test predicted ms/ex (last alone) | "
             "test measured ms/ex (last alone) | predicted speed-up | measured speed-up: paired median (range; "
             "median/median) | budget held on test: predicted schedule / measured (paired) | "
             f"{m['metric']} real run / cache | exits = cache | load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        pm = paired(r["baseline_s_all"], r["method_s_all"])  # the run's own numbers where it recorded them
        lo, hi = pm["measured_speedup_range"]
        cal = (f"{r['cal_share_ms']:.2f} / {r['cal_schedule_ms']:.2f}" if "cal_schedule_ms" in r else "-")
        held = (r.get("budget_held_test_schedule", r.get("budget_held_predicted")),
                pm["measured_share_paired"] <= m["budget_fraction"])
        lines.append(f"| {r['batch_size']} | {r['budget_ms']:.2f} | {cal} | {r['predicted_method_ms']:.2f} "
                     f"({r['predicted_baseline_ms']:.2f}) | {r['measured_method_ms']:.2f} "
                     f"({r['measured_baseline_ms']:.2f}) | {r['predicted_speedup']:.2f}x | "
                     f"{pm['measured_speedup_paired']:.2f}x ({lo:.2f}-{hi:.2f}; {r['measured_speedup']:.2f}x) | "
                     f"{'yes' if held[0] else 'no'} / {'yes' if held[1] else 'no'} | "
                     f"{r['real_metric']:.4f} / {r['cache_metric']:.4f} | {r['exits_equal_cache']:.3f} | "
                     f"{r['loadavg'][0]} |")
    lines.append(f"\nThreshold {m['threshold']:.4f} chosen on cal ({c['cal_n']} examples) by {c['rule']}; "
                 f"budget {m['budget_fraction']:.0%} of the last member alone's predicted time per example on cal "
                 f"at every batch size; binding: {c['binding']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
