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
``m/flops``            float64                           generation FLOPs (:mod:`toolkit.analysis.generation_cost`)
``m/q/<metric>``       float64                           per-example quality (exact match, sentence BLEU...)
``m/s/<metric>``       fixed_size_list<float64>[Q]       corpus-metric statistics (BLEU, chrF)
=====================  ================================  ==================================================

Step statistics (not the vocabulary logits): the largest and second-largest logit, then ``logsumexp(z / T)`` and
the entropy of ``softmax(z / T)`` at each temperature of the header's ``temperatures``; that is all that max-prob,
margin, energy and entropy need at those temperatures. The schema metadata key ``toolkit`` holds JSON:
``schema_version``, ``kind`` "generation", ``models`` (name, path, cost dims), ``temperatures``, ``metrics`` and
``meta`` (task, split, data fingerprint, decoding settings, versions, cost definition). No source or reference text
is stored; model outputs are. numpy and pyarrow only (no torch).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import META_KEY, CacheError, _json_default, verify_fingerprint, write_table_atomic

GEN_SCHEMA_VERSION = 1


def stat_names(temperatures) -> list[str]:
    return ["max_logit", "second_logit", *[f"lse@{t:g}" for t in temperatures],
            *[f"entropy@{t:g}" for t in temperatures]]


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
        self.temperatures = tuple(float(t) for t in self.temperatures)
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

        from .quality import corpus_score

        rows = []
        for name, g in self.models.items():
            row = {"model": name, "tokens": g.n_steps.mean(), "gflops": g.flops.mean() / 1e9}
            for m in g.quality:
                row[m] = float(corpus_score(m, g.quality[m], g.qstats.get(m, np.zeros(0)).sum(0)))
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")


def validate_generation_cache(c: GenCache) -> None:
    """Raise :class:`~toolkit.analysis.cache.CacheError` on inconsistent shapes, ids, values or metrics."""
    N = len(c.example_ids)
    if N == 0 or not c.models:
        raise CacheError("a generation cache needs at least one example and one model")
    if len(np.unique(c.example_ids)) != N:
        raise CacheError("example_ids are not unique")
    if np.shape(c.labels) != (N,):
        raise CacheError(f"labels have shape {np.shape(c.labels)}, expected ({N},)")
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
        cols[f"{name}/text"] = pa.array([str(t) for t in g.text])
        cols[f"{name}/n_src"] = pa.array(np.asarray(g.n_src, np.int32))
        cols[f"{name}/flops"] = pa.array(np.asarray(g.flops, np.float64))
        for m, q in g.quality.items():
            cols[f"{name}/q/{m}"] = pa.array(np.asarray(q, np.float64))
        for m, s in g.qstats.items():
            cols[f"{name}/s/{m}"] = pa.FixedSizeListArray.from_arrays(pa.array(s.reshape(-1).astype(np.float64)),
                                                                     s.shape[1])
        models.append({"name": name, **g.info})
    head = {"schema_version": GEN_SCHEMA_VERSION, "kind": "generation", "models": models,
            "temperatures": list(c.temperatures), "stat_names": stat_names(c.temperatures),
            "meta": {k: v for k, v in c.meta.items() if k not in ("schema_version", "path", "data_verified")}}
    return pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(head, default=_json_default).encode()})


def save_generation_cache(cache: GenCache, path: str | os.PathLike) -> Path:
    """Write atomically (temporary file, then rename): never a half-written cache."""
    return write_table_atomic(_table(cache), path)


def load_generation_cache(path: str | os.PathLike, *, data_dir=None, verify_data: bool = True) -> GenCache:
    """Load and validate a generation cache (re-hashing its source files where they can be found)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: no such cache file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise CacheError(f"{path}: not a readable Parquet cache ({e}); it may be truncated or corrupt: "
                         f"regenerate it with toolkit.nn.generate.collect_generation") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    head = json.loads(raw) if raw else {}
    if head.get("kind") != "generation":
        raise CacheError(f"{path}: not a generation cache (load classification caches with toolkit.load_cache)")
    if head.get("schema_version") != GEN_SCHEMA_VERSION:
        raise CacheError(f"{path}: generation cache schema {head.get('schema_version')!r} is not supported (this "
                         f"toolkit reads {GEN_SCHEMA_VERSION}); upgrade the toolkit or regenerate the cache")
    temps = head["temperatures"]
    F = len(stat_names(temps))
    models = {}
    for info in head["models"]:
        name = info["name"]
        try:
            tok = table.column(f"{name}/tokens").combine_chunks()
            st = table.column(f"{name}/stats").combine_chunks()
            offsets = tok.offsets.to_numpy().astype(np.int64)
            quality = {c.split("/q/", 1)[1]: table.column(c).to_numpy().astype(np.float64)
                       for c in table.column_names if c.startswith(f"{name}/q/")}
            qstats = {}
            for c in table.column_names:
                if c.startswith(f"{name}/s/"):
                    arr = table.column(c).combine_chunks()
                    qstats[c.split("/s/", 1)[1]] = arr.flatten().to_numpy().reshape(len(arr), -1).astype(np.float64)
            models[name] = Generation(
                tokens=tok.flatten().to_numpy().astype(np.int32), offsets=offsets,
                stats=st.flatten().to_numpy().astype(np.float32).reshape(-1, F),
                text=np.asarray(table.column(f"{name}/text").to_pylist(), dtype=object),
                n_src=table.column(f"{name}/n_src").to_numpy(), flops=table.column(f"{name}/flops").to_numpy(),
                quality=quality, qstats=qstats, info={k: v for k, v in info.items() if k != "name"})
        except (KeyError, ValueError) as e:
            raise CacheError(f"{path}: columns of model {name!r} are missing or malformed ({e})") from None
    cache = GenCache(example_ids=np.asarray(table.column("example_id").to_pylist(), dtype=str),
                     labels=table.column("label").to_numpy().astype(np.int64), models=models, temperatures=temps,
                     meta={"schema_version": GEN_SCHEMA_VERSION, **head["meta"], "path": str(path)})
    if verify_data:
        cache.meta["data_verified"] = verify_fingerprint(cache, data_dir)
    return cache
