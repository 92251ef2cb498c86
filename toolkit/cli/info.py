"""``toolkit info``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="summarise a cache: stages, metric, accuracy, FLOPs")
    p.add_argument("cache")
    p.add_argument("--meta", action="store_true", help="also print the metadata")
    p.set_defaults(fn=run)


def run(a) -> int:
    import numpy as np

    from ..analysis.cache import load_cache
    from ..analysis.metrics import task_metric

    c = load_cache(a.cache)
    print(c)
    metric = c.meta.get("metric", "accuracy")
    print(f"data verified against source files: {c.meta.get('data_verified')}")
    for name, keys in (c.meta.get("random_heads") or {}).items():
        print(f"WARNING: model {name!r} was collected with randomly initialised {', '.join(keys)} (untrained heads)")
    print(f"{'stage':<24}{metric if metric != 'accuracy' else 'metric':>10}{'accuracy':>10}{'GFLOPs':>10}")
    for e, s in enumerate(c.stages):
        m = task_metric(c.labels, c.predictions[:, e], metric, c.n_classes)
        print(f"{s:<24}{m:>10.4f}{c.correct[:, e].mean():>10.4f}{c.flops[:, e].mean() / 1e9:>10.3f}")
    if a.meta:
        print(json.dumps({k: v for k, v in c.meta.items()}, indent=1, default=str))
    return int(not np.isfinite(c.logits).all())
