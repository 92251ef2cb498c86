"""``toolkit route``: Swift/Super routing of a generation cache: references, the exact sweep, routers compared."""

from __future__ import annotations

from toolkit.cli._common import engine_args, positive_float


def register(sub) -> None:
    from toolkit.analysis.scores.tokens import AGGREGATIONS, TOKEN_SCORES

    p = sub.add_parser("route", help="exact Swift/Super routing sweep of a generation cache",
                       description="Route an example to Super when Swift's aggregated token score says it is "
                                   "unsure; prints Swift/Super/oracle references and the quality-FLOPs frontier, "
                                   "speed-ups against Super alone unless --reference says otherwise.")
    p.add_argument("cache")
    p.add_argument("--swift", help="default: the cache's first model")
    p.add_argument("--super", help="default: the cache's last model")
    p.add_argument("--score", default="energy", choices=list(TOKEN_SCORES))
    p.add_argument("--how", default="mean", choices=list(AGGREGATIONS),
                   help="aggregation of token scores over the generated sequence")
    p.add_argument("--temperature", type=positive_float, default=1.0, help="one of the cache's temperatures")
    p.add_argument("--metric", help="exact_match, bleu or chrf (default: the cache's first)")
    p.add_argument("--drop-metric", help="metric of the summary's drop (default: the headline metric)")
    p.add_argument("--max-drop", type=positive_float, default=0.005,
                   help="tolerated absolute quality drop against Super (metric units; default 0.005)")
    p.add_argument("--compare", action="store_true", help="also compare every score x aggregation")
    engine_args(p)
    p.set_defaults(fn=run)


def run(a) -> int:
    import pandas as pd

    from toolkit.analysis.routing import compare_routers, references
    from toolkit.cli._common import cache_kind, output_file, readable
    from toolkit.cli.sweep import report, view_of

    if a.csv:
        output_file(a.csv, "--csv file")  # refused now, not after the sweep
    kind = cache_kind(a.cache)
    if kind != "generation":
        raise ValueError(f"{a.cache}: a {kind} cache; route reads generation caches (use toolkit sweep)")
    cache, first = view_of(a)
    models = (a.swift or first.stage_names[0], a.super or first.stage_names[-1])
    _, view = view_of(a, models=models)
    refs = references(view)
    table = compare_routers(cache, models=models, temperature=a.temperature, metric=a.metric,
                            max_drop=a.max_drop) if a.compare else None
    if a.json:
        extra = {"how": a.how, "references": refs.to_dict("index")}
        if table is not None:
            extra["routers"] = table.to_dict("records")
        return report(a, cache, view, extra)
    report(a, cache, view)
    with pd.option_context("display.width", 200):
        print("\nreferences:")
        print(readable(refs.rename_axis("policy").reset_index(), view.metric_names).to_string(index=False))
        if table is not None:
            print("\nrouters compared (on this split: optima are upper bounds):")
            print(table.round(3).to_string(index=False))
    return 0
