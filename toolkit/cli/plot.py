"""``toolkit plot``: the trade-off curve of a test cache with bootstrap bands and the operating point chosen on
its cal cache, written as PNG, SVG or PDF."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from toolkit.cli._common import bounded_int, engine_args, positive_float, probability, profile_args

FORMATS = (".png", ".svg", ".pdf")


def register(sub) -> None:
    from toolkit.analysis.engine import RULES
    from toolkit.analysis.scores.classification import SCORES
    from toolkit.analysis.scores.tokens import AGGREGATIONS

    p = sub.add_parser("plot", help="write the trade-off curve (bands, chosen operating point) as PNG/SVG/PDF",
                       description="Sweep a test cache, draw its metric against speed-up with percentile bootstrap "
                                   "bands, and mark the operating point chosen on the cal cache by --rule and "
                                   "evaluated on test (with its interval). The cal cache defaults to the test "
                                   "cache's sibling named *-cal.parquet.")
    p.add_argument("cache", help="the test cache")
    p.add_argument("--out", required=True, help="figure file: .png, .svg or .pdf")
    p.add_argument("--cal", help="cal cache of the same models (default: the *-cal.parquet sibling; 'none': no "
                                 "operating point)")
    p.add_argument("--score", choices=list(SCORES))
    p.add_argument("--how", choices=list(AGGREGATIONS), help="generation caches: aggregation (default mean)")
    p.add_argument("--temperature", type=positive_float)
    p.add_argument("--metric", help="headline metric drawn (default: the cache's task metric)")
    p.add_argument("--rule", default="risk", choices=list(RULES), help="how the operating point is chosen on cal")
    p.add_argument("--rule-metric", help="metric of the drop and budget rules (default accuracy where the cache has "
                                         "it, else its headline metric, e.g. agreement for LLM token caches)")
    p.add_argument("--max-drop", type=positive_float, default=0.01)
    p.add_argument("--delta", type=probability, default=0.01)
    p.add_argument("--epsilon", type=probability, default=0.05)
    p.add_argument("--budget", type=positive_float, help="rule budget: speed-up to reach on cal (x)")
    p.add_argument("--x", default="speedup", choices=["speedup", "flops"])
    p.add_argument("--n-boot", type=bounded_int(2, 100_000, "bootstrap resamples"), default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dpi", type=bounded_int(10, 600, "dots per inch"), default=150)
    profile_args(p, what="draw the cost")
    p.add_argument("--transfer", action="store_true",
                   help="the cal cache is of another task or other models on purpose (a transfer): apply its "
                        "operating point anyway (refused otherwise)")
    engine_args(p, rows=False)
    p.set_defaults(fn=run)


def _cal_path(a) -> Path | None:
    if a.cal == "none":
        return None
    if a.cal:
        return Path(a.cal)
    sib = Path(str(a.cache).replace("-test.parquet", "-cal.parquet"))
    return sib if sib != Path(a.cache) and sib.exists() else None


def figure(a):
    """Compute (engine), then draw (plots): returns the figure and what it shows."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    import toolkit.analysis.plots.curves as plots
    from toolkit.analysis.engine import bootstrap_bands, choose, evaluation, threshold_grid
    from toolkit.cli.sweep import timed, view_of

    cache, view = view_of(a)
    view, timing, exact = timed(a, cache, view)
    bands = bootstrap_bands(view, threshold_grid(view, n=100), n_boot=a.n_boot, seed=a.seed)
    unit = (exact.meta if exact is not None else view.meta).get("cost_unit", "FLOPs")
    reference = exact.reference if exact is not None else view.reference
    points, shown = {}, {"reference": reference, "n_boot": a.n_boot, "cost_unit": unit, **timing}
    cal = _cal_path(a)
    if cal is not None:
        b = argparse_copy(a, cache=str(cal))
        cal_cache, cal_view = view_of(b)
        cal_view, _, cal_exact = timed(b, cal_cache, cal_view)
        metric = a.rule_metric or ("accuracy" if "accuracy" in cal_view.metric_names else cal_view.metric)
        if exact is not None and a.rule in ("drop", "budget"):  # cost rules: on the runtime's batches, not FLOPs
            op = on_exact(cal_view, cal_exact, rule=a.rule, metric=metric, max_drop=a.max_drop, budget=a.budget)
        else:
            op = choose(cal_view, rule=a.rule, metric=metric, max_drop=a.max_drop, delta=a.delta,
                        epsilon=a.epsilon, budget=a.budget)
        ev = op.evaluate(view, n_boot=a.n_boot, seed=a.seed, transfer=a.transfer)
        if exact is not None:
            op = replace(op, cal=at_exact(evaluation(cal_view, op.threshold), cal_exact), reference=cal_exact.reference)
            ev = at_exact(ev, exact)
        settings = ", ".join(f"{k}={v:g}" for k, v in op.settings.items())
        points[f"chosen on cal ({a.rule}: {settings}), on {view.split}"] = ev
        shown["operating_point"] = {**op.to_dict(), **{f"test_{k}": v for k, v in ev.to_dict().items()},
                                    "test_rule_metric_drop": ev.drop(op.metric)}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if exact is not None:  # the exact curve of the runtime's batches, the metric's band at its speed-ups
        plots.plot_curve(band_at_exact(bands, exact), x=a.x, ax=ax, lw=0, color="C0")  # the band only
        curves = {f"{view.meta.get('score')}, the runtime's batches (exact), 95% bootstrap band": exact}
    else:
        label = f"{view.meta.get('score')}" + (f" ({view.meta['how']})" if view.meta.get("kind") == "generation"
                                                else "")
        curves = {f"{label}, 95% bootstrap band": bands}
    task, split = view.meta.get("task"), view.split
    plots.plot_tradeoff(curves, x=a.x, ax=ax, points=points, ylabel=f"{task} {split} {view.metric}",
                        reference=reference, color="C0")
    ax.set_title(f"{Path(a.cache).name}: {', '.join(view.stage_names)}", fontsize=9)
    fig.tight_layout()
    return fig, shown


def on_exact(cal_view, cal_exact, *, rule: str, metric: str, max_drop: float, budget: float | None):
    """The operating point the engine's ``drop`` or ``budget`` rule picks on the exact cal curve of the runtime's
    batches (:func:`toolkit.analysis.engine.threshold_on_sweep`), its cal evaluation at that curve's cost."""
    from toolkit.analysis.engine import evaluation, threshold_on_sweep
    from toolkit.analysis.engine.choose import VIEW_KEYS, OperatingPoint

    thr = threshold_on_sweep(cal_exact, rule=rule, metric=metric, max_drop=max_drop, budget=budget)
    settings = {"max_drop": float(max_drop)} if rule == "drop" else {"budget": float(budget)}
    meta = {k: cal_view.meta[k] for k in (*VIEW_KEYS, "identity") if k in cal_view.meta}
    return OperatingPoint(thr, rule, metric, settings, evaluation(cal_view, thr), tuple(cal_view.stage_names),
                          cal_view.reference, meta)


def _rows(curve, thresholds):
    """Rows of an exact sweep (most conservative first) that ``thresholds`` select: distinct thresholds >= each."""
    import numpy as np

    neg = -curve.frame["threshold"].to_numpy()[1:]
    return np.searchsorted(neg, -np.asarray(thresholds, dtype=np.float64), side="right")


def at_exact(ev, curve):
    """An evaluation with its cost and speed-up from the exact curve at its threshold (their intervals dropped: a
    resample forms other batches); its metrics and their intervals unchanged."""
    r = int(_rows(curve, [ev.threshold])[0])
    return replace(ev, flops=float(curve.frame["flops"].iloc[r]), speedup=float(curve.frame["speedup"].iloc[r]),
                   reference=curve.reference, cost_unit=curve.meta.get("cost_unit", ev.cost_unit),
                   intervals={k: v for k, v in ev.intervals.items() if k not in ("flops", "speedup")})


def band_at_exact(bands, curve):
    """Bootstrap bands of the metrics placed at the exact curve's cost and speed-up (no band on either)."""
    f = bands.frame.drop(columns=["flops_lo", "flops_hi", "speedup_lo", "speedup_hi"], errors="ignore")
    rows = _rows(curve, f["threshold"])
    f = f.assign(flops=curve.frame["flops"].to_numpy()[rows], speedup=curve.frame["speedup"].to_numpy()[rows])
    return replace(bands, frame=f, reference=curve.reference, meta={**bands.meta, **curve.meta})


def argparse_copy(a, **changes):
    import argparse

    return argparse.Namespace(**{**vars(a), **changes})


def run(a) -> int:
    import io

    from toolkit.caches.io import CacheError, write_atomic
    from toolkit.cli._common import input_file, output_file, print_json

    out = Path(a.out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"--out {a.out}: write .png, .svg or .pdf")
    output_file(out, "--out figure")  # a link or read-only file is refused now, not after the bootstrap
    if getattr(a, "profile", None):
        input_file(a.profile, "latency profile")
    fig, shown = figure(a)
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lower()[1:], dpi=a.dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue(), error=CacheError)  # savefig(out) wrote through a link and a read-only file

    if a.json:
        print_json({"figure": str(out), **shown})
    else:
        print(f"wrote {out} (speed-ups against {shown['reference']}, bands from {shown['n_boot']} resamples)")
        if "latency profile" in shown:
            print(f"cost in {shown['cost_unit']}; latency profile: {shown['latency profile']}")
        if "operating_point" in shown:
            op = shown["operating_point"]
            print(f"operating point chosen on cal by {op['rule']}: threshold {op['threshold']:.4f}; on "
                  f"{op['test_split']}: {op['test_speedup']:.2f}x, {op['metric']} drop "
                  f"{100 * op['test_rule_metric_drop']:.2f} points")
    return 0
