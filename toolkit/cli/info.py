"""``toolkit info``: what a cache holds, stage by stage (or model by model, or layer by layer), with units."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("info", help="summarise a cache: stages, metric, accuracy, GFLOPs or the cache's cost unit "
                                    "(LLM token caches: "
                                    "per-layer agreement with the full model and ECE)")
    p.add_argument("cache")
    p.add_argument("--meta", action="store_true", help="also print the metadata")
    p.add_argument("--json", action="store_true", help="print JSON (no NaN: missing values are null)")
    p.set_defaults(fn=run)


def _llm_rows(c):
    """Per layer: each exit family's agreement with the full model's token and the ECE of its max-probability."""
    from toolkit.analysis.llm.exits import layer_reliability

    rel = {f: layer_reliability(c, f).set_index("layer") for f in c.family_names}
    layers = next(iter(rel.values())).index
    rows = [{"layer": int(layer), **{f"{f} {k}": float(r[k][layer]) for f, r in rel.items()
                                     for k in ("agreement", "ece")}} for layer in layers]
    return c, rows


def _rows(path):
    from toolkit.analysis.metrics.task import task_metric
    from toolkit.caches.inputs import cost_scale, cost_unit
    from toolkit.caches.kinds import kind_of

    kind = kind_of(path)  # a FIFO or device refused unread, a malformed header named
    c = kind.loader()(path)
    if kind.name == "llm_tokens":
        return _llm_rows(c)
    if kind.name == "generation":
        summ = c.summary()
        rows = [{"model": name, **{k: float(v) for k, v in r.items()}} for name, r in summ.iterrows()]
        return c, rows
    metric = c.meta.get("metric", "accuracy")
    unit = cost_unit(c)  # FLOPs unless the cache names another unit (imported runs: parameters x tokens, dollars ...)
    key = "cumulative_gflops" if unit == "FLOPs" else "cumulative_cost"
    rows = [{"stage": s, **({metric: task_metric(c.predictions[:, e], c.labels, metric=metric, n_classes=c.n_classes)}
                            if metric != "accuracy" else {}),
             "accuracy": float(c.correct[:, e].mean()), key: float(c.flops[:, e].mean() / cost_scale(unit)[0]),
             **({"cost_unit": unit} if unit != "FLOPs" else {})}
            for e, s in enumerate(c.stages)]
    return c, rows


def data_check(cache) -> str:
    """What ``meta["data_verified"]`` means for this cache, in words: whether its examples were checked against the
    source files of a data folder, and if not, why (none named, none found, or rows of no registered task)."""
    from toolkit.caches.classification import verify_fingerprint

    verified = cache.meta.get("data_verified")
    data = cache.meta.get("data") if isinstance(cache.meta.get("data"), dict) else {}
    if verified is None:
        return "not checked (loaded with verify_data=False)"
    if verified:
        return ("yes (the source files' sha256 match, and every example id is a row of its split in them, with the "
                "file's label wherever the cache holds labels)")
    if data.get("source") != "local" or not data.get("files"):
        return ("no (the cache names no source files: built from arrays, imported runs or a hub dataset; "
                "nothing to check, not a failure)")
    if not verify_fingerprint(cache):
        return (f"no (no data folder holding its {len(data['files'])} source file(s) was found: set "
                f"TOOLKIT_DATA_DIR to the folder to check them)")
    return "no (its source files match, but the example ids are not rows of a shipped task: nothing to check)"


def run(a) -> int:
    import pandas as pd

    from toolkit.cli._common import print_json

    c, rows = _rows(a.cache)
    if a.json:
        print_json({"cache": a.cache, "repr": repr(c), "data_verified": c.meta.get("data_verified"),
                    "data_check": data_check(c), "rows": rows,
                    **({"meta": c.meta} if a.meta else {})})
        return 0
    print(c)
    if isinstance(getattr(c, "model", None), dict):  # LLM token cache: which weights, and the full model's quality
        print(f"model: {c.model.get('origin')}")
        print(f"quality of the full model's answers: {c.meta.get('quality')}")
    print(f"examples checked against the data folder: {data_check(c)}")
    for name, keys in (c.meta.get("random_heads") or {}).items():
        print(f"WARNING: model {name!r} was collected with randomly initialised {', '.join(keys)} (untrained heads)")
    if "cost_unit" in (rows[0] if rows else {}):
        print(f"cost unit: {rows[0]['cost_unit']} ({c.meta.get('cost_rule', 'as recorded')})")
        rows = [{k: v for k, v in r.items() if k != "cost_unit"} for r in rows]
    df = pd.DataFrame(rows).rename(columns={"cumulative_gflops": "GFLOPs (cumulative)",
                                            "cumulative_cost": "cost per example (cumulative)", "gflops": "GFLOPs (model alone)",
                                      "tokens": "tokens generated"})
    print(df.round(4).to_string(index=False))
    if a.meta:
        import json

        print(json.dumps(c.meta, indent=1, default=str))
    return 0
