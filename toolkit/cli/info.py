"""``toolkit info``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="summarise a cache: stages, metric, accuracy, FLOPs (LLM token caches: "
                                    "per-layer agreement and ECE)")
    p.add_argument("cache")
    p.add_argument("--meta", action="store_true", help="also print the metadata")
    p.set_defaults(fn=run)


def _llm_info(a) -> int:
    from ..analysis.llm import layer_reliability
    from ..analysis.llm_cache import load_llm_cache

    c = load_llm_cache(a.cache)
    print(c)
    print(f"model: {c.model.get('origin')}")
    print(f"quality: {c.meta.get('quality')}; data verified against source files: {c.meta.get('data_verified')}")
    rel = [layer_reliability(c, f).set_index("layer") for f in c.family_names]
    print("layer " + "".join(f"{f + ' agree':>14}{f + ' ECE':>12}" for f in c.family_names))
    for layer in rel[0].index:
        print(f"{layer:5d} " + "".join(f"{r.agreement[layer]:>14.3f}{r.ece[layer]:>12.3f}" for r in rel))
    if a.meta:
        print(json.dumps(c.meta, indent=1, default=str))
    return 0


def _kind(path) -> str | None:
    import pyarrow.parquet as pq

    from ..analysis.cache import META_KEY

    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    except OSError:
        return None
    return json.loads(raw).get("kind") if raw else None


def run(a) -> int:
    import numpy as np

    from ..analysis.cache import load_cache
    from ..analysis.metrics import task_metric

    if _kind(a.cache) == "llm_tokens":
        return _llm_info(a)
    c = load_cache(a.cache)
    print(c)
    metric = c.meta.get("metric", "accuracy")
    print(f"data verified against source files: {c.meta.get('data_verified')}")
    print(f"{'stage':<24}{metric if metric != 'accuracy' else 'metric':>10}{'accuracy':>10}{'GFLOPs':>10}")
    for e, s in enumerate(c.stages):
        m = task_metric(c.labels, c.predictions[:, e], metric, c.n_classes)
        print(f"{s:<24}{m:>10.4f}{c.correct[:, e].mean():>10.4f}{c.flops[:, e].mean() / 1e9:>10.3f}")
    if a.meta:
        print(json.dumps({k: v for k, v in c.meta.items()}, indent=1, default=str))
    return int(not np.isfinite(c.logits).all())
