"""``toolkit route``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("route", help="exact Swift/Super routing sweep of a generation cache",
                       description="Route an example to Super when Swift's aggregated token score says it is "
                                   "unsure; prints Swift/Super/oracle references and the quality-FLOPs frontier.")
    p.add_argument("cache")
    p.add_argument("--swift", help="default: the cache's first model")
    p.add_argument("--super", help="default: the cache's last model")
    p.add_argument("--score", default="energy", choices=["energy", "max_prob", "margin", "entropy"])
    p.add_argument("--how", default="mean", choices=["mean", "max", "min", "sum", "first"],
                   help="aggregation of token scores over the generated sequence")
    p.add_argument("--temperature", type=float, default=1.0, help="one of the cache's temperatures")
    p.add_argument("--metric", help="exact_match, bleu or chrf (default: the cache's first)")
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--csv", help="write the whole sweep to this CSV file")
    p.add_argument("--compare", action="store_true", help="also compare every score x aggregation")
    p.set_defaults(fn=run)


def run(a) -> int:
    import pandas as pd

    from ..analysis.generation_cache import load_generation_cache
    from ..analysis.routing import compare_routers, references, route_sweep
    from ..analysis.sweep import pareto_front

    cache = load_generation_cache(a.cache)
    names = list(cache.models)
    swift, super_ = a.swift or names[0], a.super or names[-1]
    print(cache)
    print(references(cache, swift, super_, a.metric).to_string())
    curve = route_sweep(cache, swift, super_, a.score, a.how, a.temperature, a.metric)
    if a.csv:
        curve.to_csv(a.csv, index=False)
    with pd.option_context("display.width", 160):
        print(f"\nPareto frontier ({a.score}, {a.how} over tokens, T={a.temperature:g}):")
        front = pareto_front(curve)
        print(front.iloc[:: max(1, len(front) // a.rows)].to_string(index=False))
        if a.compare:
            print("\nrouters compared:")
            print(compare_routers(cache, swift, super_, temperature=a.temperature, metric=a.metric).to_string())
    return 0
