"""The generation cache: what a Swift and a Super encoder-decoder generated for every example, self-described.

One Parquet file per (task, model pair, split), one row per example. Columns ``example_id`` and ``label`` (gold
class for text-to-text classification, -1 for translation), then for each model ``m``:

=====================  ================================  ==================================================
column                 type                              meaning
=====================  ================================  ==================================================
``m/tokens``           list<int32>                       generated token ids, end-of-sequence included
``m/stats``            list<float32>                     per step, F statistics of the raw next-token logits
``m/text``             string                            decoded output
``m/n_src``            int32                             source tokens (this model's tokenizer)
``m/flops``            float64                           generation FLOPs (:mod:`toolkit.analysis.cost.seq2seq`)
``m/q/<metric>``       float64                           per-example quality (exact match, sentence BLEU...)
``m/s/<metric>``       fixed_size_list<float64>[Q]       corpus-metric statistics (BLEU, chrF)
=====================  ================================  ==================================================

Step statistics (not the vocabulary logits): the largest and second-largest logit, then ``logsumexp(z / T)`` and
the entropy of ``softmax(z / T)`` at each temperature of the header's ``temperatures``; that is all that max-prob,
margin, energy and entropy need at those temperatures. The schema metadata key ``toolkit`` holds JSON:
``schema_version`` 2, ``kind`` "generation", ``models`` (name, path, cost dims, weight hash), ``temperatures``,
``metrics``, ``meta`` (task, split, data fingerprint, decoding settings, versions, cost definition) and
``integrity``; files go through :mod:`.cache_io` (page checksums and a content hash, verified on every load). No
source or reference text is stored; model outputs are. numpy and pyarrow only (no torch).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.caches.classification import verify_fingerprint
from toolkit.caches.io import (
    CacheError,
    column,
    header_value,
    read_cache_table,
    string_ids,
    write_cache_table,
)

KIND = "generation"
GEN_SCHEMA_VERSION = 2  # 2: page checksums and a content hash (cache_io); 1 had neither (toolkit upgrade-cache)


def stat_names(temperatures) -> list[str]:
    return ["max_logit", "second_logit", *[f"lse@{t:g}" for t in temperatures],
            *[f"entropy@{t:g}" for t in temperatures]]


def check_temperatures(temps, where: str = "temperatures") -> tuple[float, ...]:
    """The temperatures of step statistics: a non-empty list of distinct finite numbers > 0 (else CacheError)."""
    ok = isinstance(temps, (list, tuple)) and len(temps) > 0 and all(
        isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool) and math.isfinite(t)
        and t > 0 for t in temps)
    if not ok or len(set(float(t) for t in temps)) != len(temps):
        raise CacheError(f"{where} must be a non-empty list of distinct finite numbers > 0, got {temps!r}")
    return tuple(float(t) for t in temps)


def check_step_stats(stats: np.ndarray, temperatures, *, stored: str, where: str) -> None:
    """Refuse step statistics ``[..., F]`` (:func:`stat_names`) that no logits can have: a second logit above the
    first, ``logsumexp(z / T) < max(z) / T`` or a negative entropy. Tolerance: the
    rounding of the stored dtype (``stored``: "float16" or "float32") on both sides of each inequality."""
    st = np.asarray(stats, dtype=np.float64)
    K = len(temperatures)
    rtol, atol = (2e-3, 2e-3) if stored == "float16" else (1e-5, 1e-5)
    top, second = st[..., 0], st[..., 1]
    bad = second > top + rtol * np.abs(top) + atol
    if bad.any():
        raise CacheError(f"{where}: second_logit above max_logit at {int(np.flatnonzero(bad.ravel())[0])} "
                         f"(flat index); the statistics are not of any logits: recollect the cache")
    for k, t in enumerate(temperatures):
        lse, ent = st[..., 2 + k], st[..., 2 + K + k]
        bad = lse * t < top - rtol * (np.abs(top) + np.abs(lse * t)) - atol
        if bad.any():
            raise CacheError(f"{where}: lse@{t:g} below max_logit/T at {int(np.flatnonzero(bad.ravel())[0])} "
                             f"(flat index): probabilities above 1; recollect the cache")
        bad = ent < -atol
        if bad.any():
            raise CacheError(f"{where}: entropy@{t:g} negative at "
                             f"{int(np.flatnonzero(bad.ravel())[0])} (flat index); recollect the cache")


@dataclass
class Generation:
    """One model's greedy generations over N examples; step arrays are flat with ``offsets`` [N + 1]."""

    tokens: np.ndarray  # [S] int32, all examples' steps back to back
    offsets: np.ndarray  # [N + 1] int64, example i owns steps offsets[i]:offsets[i+1]
    stats: np.ndarray  # [S, F] float32, see stat_names
    text: np.ndarray  # [N] str
    n_src: np.ndarray  # [N] int32
    flops: np.ndarray  # [N] float64
    quality: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> [N]
    qstats: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> [N, Q]
    info: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> np.ndarray:
        """Generated tokens per example, end-of-sequence included."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass
class GenCache:
    """Generations of several models on one split (models in cost order: Swift first)."""

    example_ids: np.ndarray
    labels: np.ndarray
    models: dict[str, Generation]
    temperatures: tuple[float, ...]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.temperatures = check_temperatures(self.temperatures)
        validate_generation_cache(self)

    @property
    def n_examples(self) -> int:
        return len(self.example_ids)

    @property
    def metrics(self) -> list[str]:
        first = next(iter(self.models.values()))
        return list(first.quality)

    def __repr__(self) -> str:
        return (f"GenCache(task={self.meta.get('task')!r}, split={self.meta.get('split')!r}, N={self.n_examples}, "
                f"models={list(self.models)}, metrics={self.metrics})")

    def summary(self):
        """One row per model: corpus quality, mean generated tokens and mean GFLOPs."""
        import pandas as pd

        from toolkit.analysis.metrics.generation import corpus_score

        rows = []
        for name, g in self.models.items():
            row = {"model": name, "tokens": g.n_steps.mean(), "gflops": g.flops.mean() / 1e9}
            for m in g.quality:
                row[m] = float(corpus_score(m, per_example=g.quality[m], stats=g.qstats.get(m, np.zeros(0)).sum(0)))
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")


def validate_generation_cache(c: GenCache) -> None:
    """Raise :class:`~toolkit.caches.classification.CacheError` on inconsistent shapes, ids, values or metrics."""
    N = len(c.example_ids)
    if N == 0 or not c.models:
        raise CacheError("a generation cache needs at least one example and one model")
    if len(np.unique(c.example_ids)) != N:
        raise CacheError("example_ids are not unique")
    if np.shape(c.labels) != (N,):
        raise CacheError(f"labels have shape {np.shape(c.labels)}, expected ({N},)")
    y = np.asarray(c.labels)
    words = c.meta.get("label_words") if isinstance(c.meta, dict) else None
    hi = len(words) if isinstance(words, list) and words else None
    if y.dtype.kind not in "iu" or (y < -1).any() or (hi is not None and (y >= hi).any()):
        raise CacheError(f"labels must be integer class indices (-1: no label){f' below {hi}' if hi else ''}, got "
                         f"dtype {y.dtype}, values {np.unique(y)[:5]}")
    F = len(stat_names(c.temperatures))
    metrics = None
    for name, g in c.models.items():
        where = f"model {name!r}"
        off = np.asarray(g.offsets)
        if off.shape != (N + 1,) or off[0] != 0 or (np.diff(off) < 1).any():
            raise CacheError(f"{where}: offsets must be [N+1] from 0 with at least one step per example")
        S = int(off[-1])
        if np.shape(g.tokens) != (S,) or np.shape(g.stats) != (S, F):
            raise CacheError(f"{where}: tokens {np.shape(g.tokens)} / stats {np.shape(g.stats)} do not match "
                             f"{S} steps x {F} statistics ({stat_names(c.temperatures)})")
        if not np.isfinite(g.stats).all():
            raise CacheError(f"{where}: step statistics contain NaN or inf; regenerate in fp32 or bf16")
        check_step_stats(g.stats, c.temperatures, stored="float32", where=where)
        if np.asarray(g.tokens).dtype.kind not in "iu" or (np.asarray(g.tokens) < 0).any():
            raise CacheError(f"{where}: token ids must be non-negative integers")
        if np.asarray(g.n_src).dtype.kind not in "iu" or (np.asarray(g.n_src) < 0).any():
            raise CacheError(f"{where}: n_src must be non-negative integers")
        for arr, label in ((g.text, "text"), (g.n_src, "n_src"), (g.flops, "flops")):
            if np.shape(arr) != (N,):
                raise CacheError(f"{where}: {label} has shape {np.shape(arr)}, expected ({N},)")
        if not np.isfinite(g.flops).all() or (g.flops < 0).any():
            raise CacheError(f"{where}: flops must be finite and non-negative")
        if not g.quality:
            raise CacheError(f"{where}: no quality metric")
        if metrics is not None and set(g.quality) != metrics:
            raise CacheError(f"{where}: metrics {sorted(g.quality)} differ from the other models' {sorted(metrics)}")
        metrics = set(g.quality)
        for m, q in g.quality.items():
            if np.shape(q) != (N,) or not np.isfinite(q).all():
                raise CacheError(f"{where}: quality {m!r} must be N finite values")
        for m, s in g.qstats.items():
            if np.ndim(s) != 2 or len(s) != N or not np.isfinite(s).all():
                raise CacheError(f"{where}: statistics {m!r} must be finite [N, Q]")


# ------------------------------------------------------------------------------------------------- I/O
def _table(c: GenCache):
    import pyarrow as pa

    cols = {"example_id": pa.array(c.example_ids.astype(str)), "label": pa.array(np.asarray(c.labels, np.int64))}
    models = []
    for name, g in c.models.items():
        off = pa.array(np.asarray(g.offsets, dtype=np.int32))
        cols[f"{name}/tokens"] = pa.ListArray.from_arrays(off, pa.array(np.asarray(g.tokens, np.int32)))
        F = g.stats.shape[1]
        cols[f"{name}/stats"] = pa.ListArray.from_arrays(pa.array(np.asarray(g.offsets * F, np.int32)),
                                                         pa.array(g.stats.reshape(-1).astype(np.float32)))
        cols[f"{name}/text"] = pa.array([str(t) for t in g.text], type=pa.string())
        cols[f"{name}/n_src"] = pa.array(np.asarray(g.n_src, np.int32))
        cols[f"{name}/flops"] = pa.array(np.asarray(g.flops, np.float64))
        for m, q in g.quality.items():
            cols[f"{name}/q/{m}"] = pa.array(np.asarray(q, np.float64))
        for m, s in g.qstats.items():
            cols[f"{name}/s/{m}"] = pa.FixedSizeListArray.from_arrays(pa.array(s.reshape(-1).astype(np.float64)),
                                                                     s.shape[1])
        models.append({"name": name, **g.info})
    head = {"kind": KIND, "schema_version": GEN_SCHEMA_VERSION, "models": models,
            "temperatures": list(c.temperatures), "stat_names": stat_names(c.temperatures),
            "meta": {k: v for k, v in c.meta.items() if k not in ("schema_version", "path", "data_verified")}}
    return pa.table(cols), head


def save_generation_cache(cache: GenCache, path: str | os.PathLike) -> Path:
    """Write atomically, with page checksums and a content hash (:mod:`.cache_io`): never a half-written cache."""
    validate_generation_cache(cache)
    table, head = _table(cache)
    return write_cache_table(table, path, head)


def load_generation_cache(path: str | os.PathLike, *, data_dir=None, verify_data: bool = True) -> GenCache:
    """Load, verify (page checksums, content hash, header, columns) and validate a generation cache, re-hashing
    its source files where they can be found (see :func:`toolkit.caches.classification.verify_fingerprint`)."""
    import pyarrow as pa

    table, head = read_cache_table(path, kind=KIND, schema_version=GEN_SCHEMA_VERSION)
    path = Path(path)
    temps = check_temperatures(header_value(head, "temperatures", list, path), f"{path}: header key 'temperatures'")
    F = len(stat_names(temps))
    infos = header_value(head, "models", list, path)
    meta = header_value(head, "meta", dict, path)
    if not infos:
        raise CacheError(f"{path}: header key 'models' is empty")
    names = [header_value(info if isinstance(info, dict) else {}, "name", str, path, where=f"header 'models'[{i}]")
             for i, info in enumerate(infos)]
    if len(set(names)) != len(names) or any("/" in n for n in names):
        raise CacheError(f"{path}: header key 'models' names {names}: they must be unique and hold no '/'")
    expected = {"example_id", "label"} | {f"{n}/{c}" for n in names for c in ("tokens", "stats", "text", "n_src",
                                                                             "flops")}
    extra = [c for c in table.column_names
             if c not in expected and not any(c.startswith(f"{n}/q/") or c.startswith(f"{n}/s/") for n in names)]
    missing = sorted(expected - set(table.column_names))
    if extra or missing:
        raise CacheError(f"{path}: columns missing {missing} / unexpected {extra} for models {names}")
    is_list_of = lambda vt: lambda t: pa.types.is_list(t) and t.value_type == vt  # noqa: E731
    models = {}
    for info, name in zip(infos, names):
        tok = column(table, f"{name}/tokens", path, is_list_of(pa.int32()))
        st = column(table, f"{name}/stats", path, is_list_of(pa.float32()))
        offsets = np.asarray(tok.offsets, dtype=np.int64)
        offsets -= offsets[0]
        st_off = np.asarray(st.offsets, dtype=np.int64)
        if not np.array_equal(st_off - st_off[0], offsets * F):
            raise CacheError(f"{path}: column {name + '/stats'!r} does not hold {F} statistics per generated token "
                             f"({stat_names(temps)})")
        quality = {c.split("/q/", 1)[1]: column(table, c, path, pa.float64()).to_numpy()
                   for c in table.column_names if c.startswith(f"{name}/q/")}
        qstats = {}
        for c in table.column_names:
            if c.startswith(f"{name}/s/"):
                arr = column(table, c, path, lambda t: pa.types.is_fixed_size_list(t) and t.value_type == pa.float64())
                qstats[c.split("/s/", 1)[1]] = arr.flatten().to_numpy().reshape(len(arr), -1)
        models[name] = Generation(
            tokens=tok.flatten().to_numpy(), offsets=offsets,
            stats=st.flatten().to_numpy().reshape(-1, F),
            text=np.asarray(column(table, f"{name}/text", path, pa.string()).to_pylist(), dtype=object),
            n_src=column(table, f"{name}/n_src", path, pa.int32()).to_numpy(),
            flops=column(table, f"{name}/flops", path, pa.float64()).to_numpy(),
            quality=quality, qstats=qstats, info={k: v for k, v in info.items() if k != "name"})
    try:
        cache = GenCache(example_ids=string_ids(column(table, "example_id", path, pa.string()), path),
                         labels=column(table, "label", path, pa.int64()).to_numpy(), models=models,
                         temperatures=temps, meta={"schema_version": GEN_SCHEMA_VERSION, **meta, "path": str(path)})
    except CacheError as e:
        raise CacheError(f"{path}: {e}") from None
    if verify_data:
        cache.meta["data_verified"] = verify_fingerprint(cache, data_dir=data_dir)
    return cache
