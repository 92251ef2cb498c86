"""``toolkit plot``: the trade-off curve of a test cache with bootstrap bands and the operating point chosen on
its cal cache, written as PNG, SVG or PDF."""

from __future__ import annotations

from pathlib import Path

from toolkit.cli._common import bounded_int, engine_args, positive_float, positive_int, probability

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
    p.add_argument("--profile", help="cost in predicted ms from this latency profile (`toolkit profile`) instead of "
                                     "FLOPs, as `toolkit sweep --profile` does; the axis and title name it")
    p.add_argument("--profile-model", nargs="+", help="--profile: the profile's model for the cache's model (one "
                                                      "per cascade member; default: by the cache's model names)")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="--profile: predicted time per example as its share of a batch of this size (default 1)")
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
    from toolkit.analysis.engine import bootstrap_bands, choose, threshold_grid
    from toolkit.cli.sweep import view_of

    cache, view = view_of(a)
    view, timing = _timed(a, cache, view)
    bands = bootstrap_bands(view, threshold_grid(view, n=100), n_boot=a.n_boot, seed=a.seed)
    points, shown = {}, {"reference": view.reference, "n_boot": a.n_boot, "cost_unit": view.meta.get("cost_unit", "FLOPs"), **timing}
    cal = _cal_path(a)
    if cal is not None:
        b = argparse_copy(a, cache=str(cal))
        cal_cache, cal_view = view_of(b)
        cal_view, _ = _timed(b, cal_cache, cal_view)
        metric = a.rule_metric or ("accuracy" if "accuracy" in cal_view.metric_names else cal_view.metric)
        op = choose(cal_view, rule=a.rule, metric=metric, max_drop=a.max_drop, delta=a.delta,
                    epsilon=a.epsilon, budget=a.budget)
        ev = op.evaluate(view, n_boot=a.n_boot, seed=a.seed, transfer=a.transfer)
        settings = ", ".join(f"{k}={v:g}" for k, v in op.settings.items())
        points[f"chosen on cal ({a.rule}: {settings}), on {view.split}"] = ev
        shown["operating_point"] = {**op.to_dict(), **{f"test_{k}": v for k, v in ev.to_dict().items()},
                                    "test_rule_metric_drop": ev.drop(op.metric)}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    task, split = view.meta.get("task"), view.split
    label = f"{view.meta.get('score')}" + (f" ({view.meta['how']})" if view.meta.get("kind") == "generation" else "")
    plots.plot_tradeoff({f"{label}, 95% bootstrap band": bands}, x=a.x, ax=ax, points=points,
                        ylabel=f"{task} {split} {view.metric}")
    ax.set_title(f"{Path(a.cache).name}: {', '.join(view.stage_names)}", fontsize=9)
    fig.tight_layout()
    return fig, shown


def _timed(a, cache, view):
    """The view costed in predicted ms, and the line naming the profile: as ``toolkit sweep --profile`` costs it at
    batch 1; at ``--batch`` > 1 an encoder or cascade cache by each row's share of a full batch (per-example costs,
    so the bootstrap band exists; ``toolkit sweep`` prices the runtime's batches instead)."""
    from toolkit.cli.sweep import timed

    out = timed(a, cache, view)
    if len(out) > 2 and out[2] is not None:
        if view.meta.get("kind") == "llm_tokens":
            raise ValueError(f"{a.cache}: an LLM token cache at --batch {a.batch} has no per-token cost to draw (a "
                             f"batch runs to its deepest exit): plot at --batch 1, or sweep it with toolkit sweep")
        from toolkit.analysis.cost.latency import load_profile, models_for, with_predicted_time

        prof = load_profile(a.profile)
        names = a.profile_model or models_for(cache.meta, prof)
        return with_predicted_time(view, prof, cache.n_tokens, models=names, batch=a.batch), out[1]
    return out[0], out[1]


def argparse_copy(a, **changes):
    import argparse

    return argparse.Namespace(**{**vars(a), **changes})


def run(a) -> int:
    out = Path(a.out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"--out {a.out}: write .png, .svg or .pdf")
    if getattr(a, "profile", None):
        from toolkit.cli._common import input_file

        input_file(a.profile, "latency profile")
    fig, shown = figure(a)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=a.dpi)
    from toolkit.cli._common import print_json

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
