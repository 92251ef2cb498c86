"""Compose classification caches of different models on the same split into one cascade cache.

:func:`cascade_caches` checks that the caches are of one task, split, label set and example set with the same gold
labels (:func:`toolkit.caches.identity.check_same_data`), aligns them by ``example_id`` (the first cache's
order) and concatenates their stages: model ``m``'s cumulative FLOPs are offset by the full cost of the models
before it (an example escalated past a model paid all of it, as in
:func:`toolkit.nn.encoder.collect.collect`). An encoder zoo cache followed by an LLM cache (zero-shot or probe exits, costed
with the causal-LM model) is an ordinary cascade on one FLOPs axis: sweep it, route it, plot it.

>>> from toolkit.caches.classification import from_arrays
>>> a = from_arrays(np.zeros((2, 1, 2)), [0, 1], [1.0], stages=["small"], example_ids=["x", "y"])
>>> b = from_arrays(np.zeros((2, 1, 2)), [1, 0], [5.0], stages=["big"], example_ids=["y", "x"])
>>> cascade_caches([a, b], names=["enc", "llm"]).flops.tolist()
[[1.0, 6.0], [1.0, 6.0]]
"""

from __future__ import annotations

import numpy as np

from toolkit.caches.classification import SCHEMA_VERSION, Cache, CacheError
from toolkit.caches.identity import check_same_data, describe


def cascade_caches(caches: list[Cache], *, names: list[str] | None = None, stages: list | None = None,
                   subset: bool = False) -> Cache:
    """One cascade cache from ``caches`` (cheapest first) on the same task, split and examples.

    ``names``: a short name per cache for stage names (``name:stage``); ``stages``: per cache, the stages to keep
    (names or indices, as :meth:`Cache.select_stages`), None for all; ``subset``: keep the examples every cache
    holds when their example sets differ (default: refuse).
    """
    if len(caches) < 2:
        raise ValueError("a cascade needs at least two caches")
    names = list(names) if names is not None else [f"m{i}" for i in range(len(caches))]
    if len(names) != len(caches) or len(set(names)) != len(names):
        raise ValueError(f"need one unique name per cache, got {names}")
    stages = list(stages) if stages is not None else [None] * len(caches)
    caches = [c if s is None else c.select_stages(s) for c, s in zip(caches, stages)]
    ids = caches[0].example_ids
    if subset:
        for c in caches[1:]:
            ids = ids[np.isin(ids, c.example_ids)]
        if not len(ids):
            raise CacheError(f"cascade_caches: the caches share no example_id ({describe(caches[0], names[0])})")
    for c, name in zip(caches[1:], names[1:]):
        if c.n_classes != caches[0].n_classes:
            raise CacheError(f"cascade_caches: {describe(c, name)} has {c.n_classes} classes, "
                             f"{describe(caches[0], names[0])} {caches[0].n_classes}")
        try:  # one task, split, label set and example set, gold labels alike (models differ by design)
            shared = [x.subset(np.flatnonzero(np.isin(x.example_ids, ids))) if subset else x for x in (c, caches[0])]
            check_same_data(*shared, names=(name, names[0]), what="cascade_caches")
        except ValueError as e:
            raise CacheError(str(e)) from None
    rows = []
    for c in caches:
        pos = {e: i for i, e in enumerate(c.example_ids)}
        rows.append(np.array([pos[e] for e in ids]))
    labels = [c.labels[r] for c, r in zip(caches, rows)]
    logits, flops, info, offset = [], [], [], np.zeros(len(ids))
    for m, (c, r, name) in enumerate(zip(caches, rows, names)):
        logits.append(c.logits[r])
        f = c.flops[r] + offset[:, None]
        flops.append(f)
        offset = f[:, -1]
        info += [{**s, "name": f"{name}:{s['name']}", "model_index": m, "model_name": name,
                  "kind": s.get("kind", "exit")} for s in c.stage_info]
    meta = {"schema_version": SCHEMA_VERSION, "task": caches[0].task, "split": caches[0].split,
            "metric": caches[0].meta.get("metric", "accuracy"), "num_labels": caches[0].n_classes,
            "label_names": caches[0].meta.get("label_names"),
            "composed_from": [{"name": n, "path": c.meta.get("path"), "stages": c.stages,
                               "cost_definition": c.meta.get("cost_definition"), "n_examples": c.n_examples}
                              for n, c in zip(names, caches)],
            "data": caches[0].meta.get("data", {}),
            "models": [m for c in caches for m in (c.meta.get("models") or [])]}
    return Cache(logits=np.concatenate(logits, 1).astype(np.float32), labels=labels[0], flops=np.concatenate(flops, 1),
                 example_ids=ids, n_tokens=caches[0].n_tokens[rows[0]], stage_info=info, meta=meta)
