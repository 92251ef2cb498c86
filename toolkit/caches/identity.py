"""What a cache is about, so that two caches meet only when they are about the same thing.

:func:`cache_identity` reads, from any cache kind's header, the task, the split role, the label set (class count
and names) and the models' weight fingerprints (a sha256 of what the header records of the weights: path, source,
training seed, revision, origin and size; for LLM token caches also the exit families' training records). Engine
views carry it in ``meta["identity"]`` (every adapter puts it there); example ids and gold labels travel in the view
itself (``example_ids``, ``strata``).

The checks:

- :func:`check_same_data`: two views (or caches) of one task, split, label set and example set (policies compared
  with :func:`toolkit.analysis.engine.compare` and its siblings; their models may differ). A subset is accepted
  only when asked for (``subset=True``). Gold labels must agree example by example.
- :func:`check_transfer`: a threshold chosen on ``cal`` applied to ``test`` needs the same task, label set and
  models, unless the caller says it is a deliberate transfer (``transfer=True``).

Every error names both sides (their files where known). numpy only.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

# what a header records of a model's weights (the same in its cal and test caches; file names and hashes of the
# caches or logs themselves are not weights)
_MODEL_KEYS = ("name", "path", "model", "source_model", "revision", "model_sha", "train_seed", "objective", "origin",
               "parameters", "num_parameters", "dtype", "dims", "weights_sha256", "weight_hash", "signature")


def _digest(obj) -> str | None:
    if obj in (None, [], {}):
        return None
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_record(m) -> dict:
    return {k: m[k] for k in _MODEL_KEYS if isinstance(m, dict) and k in m}


def cache_identity(cache) -> dict:
    """``{"task", "split", "classes", "label_names", "models", "model_names", "path"}`` of any cache kind (None where
    the header does not say)."""
    meta = getattr(cache, "meta", None) or {}
    names: list[str] = []
    if hasattr(cache, "top1"):  # LLM token cache: one model, exit families
        model = cache.model if isinstance(cache.model, dict) else {}
        record = {"model": _model_record(model),
                  "families": {f: {k: v for k, v in (d or {}).items() if k in ("kind", "form", "training")}
                               for f, d in (cache.families or {}).items()}}
        names = [str(model.get("path", "model"))]
        classes, label_names = None, None
    elif hasattr(cache, "models") and isinstance(cache.models, dict):  # generation cache
        record = [{"name": n, **_model_record(g.info)} for n, g in cache.models.items()]
        names = list(cache.models)
        words = meta.get("label_words")
        classes, label_names = (len(words), None) if isinstance(words, list) and words else (None, None)
    else:  # classification cache
        models = meta.get("models")
        if isinstance(models, list) and models:
            record = [_model_record(m) for m in models]
            names = [str(m.get("name", m.get("path", "?"))) for m in models if isinstance(m, dict)]
        elif meta.get("composed_from"):  # members without model records: their names and stages
            record = [{"name": c.get("name"), "stages": c.get("stages")} for c in meta["composed_from"]]
            names = [str(c.get("name")) for c in meta["composed_from"]]
        else:
            record = None
        classes = getattr(cache, "n_classes", None)
        label_names = meta.get("label_names")
    return {"task": meta.get("task") or _concatenated_tasks(meta), "split": meta.get("split"), "classes": classes,
            "label_names": list(label_names) if isinstance(label_names, list) else None,
            "models": _digest(record), "model_names": names, "path": meta.get("path")}


def _concatenated_tasks(meta) -> str | None:
    """The tasks of a concatenation of token caches (``meta["concatenated"]``: their prompt sets), e.g.
    ``"agnews+sst2"``; None when a part's task is unknown."""
    from toolkit.data.prompts import PROMPT_SETS

    parts = meta.get("concatenated")
    if not isinstance(parts, list) or not parts:
        return None
    sets = [PROMPT_SETS.get(p.get("prompt_set")) if isinstance(p, dict) else None for p in parts]
    return None if None in sets else "+".join(sorted({ps.task for ps in sets}))


def _identity(x) -> dict:
    meta = getattr(x, "meta", None) or {}
    if "identity" in meta:
        return meta["identity"]
    if hasattr(x, "confidence"):  # a view built without an identity (a hand-made Staged)
        return {"task": meta.get("task"), "split": meta.get("split"), "path": meta.get("path")}
    return cache_identity(x)


def describe(x, name: str) -> str:
    """``name`` with the file, task and split of a view or cache, for messages."""
    i = _identity(x)
    where = f" ({i['path']})" if i.get("path") else ""
    return f"{name}{where}: task {i.get('task')!r}, split {i.get('split')!r}"


def _differ(a, b, key) -> bool:
    va, vb = _identity(a).get(key), _identity(b).get(key)
    return va is not None and vb is not None and va != vb


def check_same_data(a, b, *, names=("a", "b"), subset: bool = False, what: str = "compare") -> None:
    """Refuse two views (or caches) of different tasks, splits, label sets or example sets (``subset``: ``a``'s
    examples may be a subset of ``b``'s), or whose gold labels differ on a shared example."""
    da, db = describe(a, names[0]), describe(b, names[1])
    ia, ib = _identity(a), _identity(b)
    for key, label in (("task", "tasks"), ("split", "splits"), ("classes", "class counts"),
                       ("label_names", "label names")):
        if _differ(a, b, key):  # None: the header does not say (a hand-made cache)
            raise ValueError(f"{what}: different {label} ({ia.get(key)!r} vs {ib.get(key)!r}): {da}; {db}. Two "
                             f"sides must be about the same examples of one task and split")
    ids_a, ids_b = np.asarray(a.example_ids), np.asarray(b.example_ids)
    only_a = ids_a[~np.isin(ids_a, ids_b)]
    only_b = np.unique(ids_b[~np.isin(ids_b, ids_a)])
    if len(only_a) or (len(only_b) and not subset):
        first = only_a[0] if len(only_a) else only_b[0]
        raise ValueError(f"{what}: different examples: {names[0]} holds {len(np.unique(ids_a))} and {names[1]} "
                         f"{len(np.unique(ids_b))}; {len(only_a)} only in {names[0]}, {len(only_b)} only in "
                         f"{names[1]} (first {str(first)!r}): {da}; {db}"
                         + (". Compare a subset only deliberately (subset=True)" if not len(only_a) or not
                            len(only_b) else ""))
    la, lb = _labels(a), _labels(b)
    if la is not None and lb is not None:
        pos = {k: i for i, k in enumerate(ids_b.tolist())}
        other = lb[np.fromiter((pos[k] for k in ids_a.tolist()), dtype=np.int64, count=len(ids_a))]
        if not np.array_equal(la, other):
            first = ids_a[np.flatnonzero(la != other)[0]]
            raise ValueError(f"{what}: gold labels differ (first at example {first!r}): {da}; {db}; not the same "
                             f"data")


def _labels(x):
    v = getattr(x, "strata", None) if hasattr(x, "confidence") else getattr(x, "labels", None)
    return None if v is None else np.asarray(v)


def check_transfer(cal, test, *, transfer: bool = False, what: str = "evaluate") -> None:
    """Refuse applying what was chosen on ``cal`` (an identity dict, a view or a cache) to ``test`` when their
    task, label set or models differ, unless ``transfer`` (a deliberate transfer, e.g. to another task)."""
    if transfer:
        return
    ia = cal if isinstance(cal, dict) else _identity(cal)
    ib = _identity(test)
    where = f" ({ia['path']})" if ia.get("path") else ""
    dc = f"cal{where}: task {ia.get('task')!r}"
    dt = describe(test, "test")
    for key, label in (("task", "task"), ("classes", "class count"), ("label_names", "label names"),
                       ("models", "models")):
        va, vb = ia.get(key), ib.get(key)
        if va is not None and vb is not None and va != vb:
            extra = (f" (weights {ia.get('model_names')} vs {ib.get('model_names')})" if key == "models" else "")
            raise ValueError(f"{what}: cal and test differ in {label}{extra} ({va!r} vs {vb!r}): {dc}; {dt}. A "
                             f"threshold moves only between caches of one task and the same models; for a "
                             f"deliberate transfer pass transfer=True (CLI: --transfer)")
