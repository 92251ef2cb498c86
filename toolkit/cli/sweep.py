"""``toolkit sweep``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("sweep", help="exact early-exit sweep of a cache: summary and Pareto frontier")
    p.add_argument("cache")
    p.add_argument("--score", default="max_prob", choices=["max_prob", "margin", "entropy", "energy", "elang"])
    p.add_argument("--rows", type=int, default=15, help="frontier rows to print")
    p.add_argument("--csv", help="write the whole sweep to this CSV file")
    p.set_defaults(fn=run)


def run(a) -> int:
    import pandas as pd

    from ..analysis.cache import load_cache
    from ..analysis.sweep import pareto_front, summarize, sweep

    c = load_cache(a.cache)
    df = sweep(c, a.score)
    print(json.dumps(summarize(df), indent=1))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(pareto_front(df).iloc[:: max(1, len(pareto_front(df)) // a.rows)].to_string(index=False))
    if a.csv:
        df.to_csv(a.csv, index=False)
    return 0
