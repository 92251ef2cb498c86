"""The staged-prediction cache: every stage's logits for every example of one split, self-described.

Format: one Parquet file (readable by pandas, pyarrow and ``datasets``), one row per example:

===============  ==============================  =================================================
column           type                            meaning
===============  ==============================  =================================================
``example_id``   string                          stable id into the source data (``task:split:row``)
``label``        int64                           gold class
``n_tokens``     int32                           tokens of the example (first model's tokenizer)
``logits``       fixed_size_list<float32>[E*C]   stage-major logits, reshape to ``[E, C]``
``flops``        fixed_size_list<float64>[E]     cumulative FLOPs when stage e has predicted
===============  ==============================  =================================================

The schema metadata key ``toolkit`` holds JSON: ``schema_version``, ``shape`` [N, E, C], ``stages`` (one dict per
stage: ``name``, ``kind`` "exit" or "model", ``model``, ``layer``, ``model_index``) and ``meta`` (task, split,
models and revisions, dataset fingerprint and file hashes, command, seed, package versions, cost definition).
No raw text is stored. This module imports numpy and pyarrow only (no torch).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
META_KEY = b"toolkit"


class CacheError(ValueError):
    """A cache file is missing, corrupt, inconsistent, or no longer matches its data; the message says which."""


@dataclass
class Cache:
    """Staged predictions of one split. ``flops[n, e]``: cumulative FLOPs of example n once stage e has predicted."""

    logits: np.ndarray  # [N, E, C] float32
    labels: np.ndarray  # [N] int64
    flops: np.ndarray  # [N, E] float64, non-decreasing along stages
    example_ids: np.ndarray  # [N] str
    n_tokens: np.ndarray  # [N] int
    stage_info: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        validate(self)

    # ---------------------------------------------------------------- shape and names
    @property
    def stages(self) -> list[str]:
        return [s["name"] for s in self.stage_info]

    @property
    def n_examples(self) -> int:
        return self.logits.shape[0]

    @property
    def n_stages(self) -> int:
        return self.logits.shape[1]

    @property
    def n_classes(self) -> int:
        return self.logits.shape[2]

    @property
    def task(self) -> str | None:
        return self.meta.get("task")

    @property
    def split(self) -> str | None:
        return self.meta.get("split")

    def __repr__(self) -> str:
        return (f"Cache(task={self.task!r}, split={self.split!r}, N={self.n_examples}, stages={self.stages}, "
                f"C={self.n_classes})")

    # ---------------------------------------------------------------- derived views
    @property
    def predictions(self) -> np.ndarray:
        """Argmax class per example and stage, ``[N, E]``."""
        return self.logits.argmax(-1)

    @property
    def correct(self) -> np.ndarray:
        """Whether each stage is right, ``[N, E]`` bool."""
        return self.predictions == self.labels[:, None]

    def _derived(self, **changes) -> Cache:
        # slices of a validated cache stay valid (bootstrap resamples may repeat ids): skip re-validation
        new = object.__new__(Cache)
        new.__dict__.update({**self.__dict__, **changes})
        return new

    def subset(self, rows) -> Cache:
        """The same cache restricted to some examples (index array, possibly with repeats, or boolean mask)."""
        rows = np.asarray(rows)
        return self._derived(logits=self.logits[rows], labels=self.labels[rows], flops=self.flops[rows],
                             example_ids=self.example_ids[rows], n_tokens=self.n_tokens[rows])

    def select_stages(self, stages) -> Cache:
        """Keep some stages (names or indices), re-deriving cumulative FLOPs.

        Within one model, the layers between kept exits still run, so their cost moves to the next kept exit; a
        model's stages after its last kept one, and models with no kept stage, are not run at all. (Heads of
        dropped exits are still counted: a few thousand FLOPs, conservative.)
        """
        idx = [self.stages.index(s) if isinstance(s, str) else int(s) for s in stages]
        if not idx or sorted(set(idx)) != idx:
            raise ValueError(f"stages must be a non-empty increasing selection, got {stages}")
        inc = np.diff(self.flops, axis=1, prepend=0.0)
        model_of = np.array([s.get("model_index", 0) for s in self.stage_info])
        new_inc, prev = [], -1
        for k in idx:
            same = [j for j in range(prev + 1, k + 1) if model_of[j] == model_of[k]]
            new_inc.append(inc[:, same].sum(1))
            prev = k
        flops = np.cumsum(np.stack(new_inc, 1), axis=1)
        info = [dict(self.stage_info[k]) for k in idx]
        return replace(self, logits=self.logits[:, idx], flops=flops, stage_info=info)

    def to_frame(self):
        """A tidy pandas frame: one row per example and stage (id, stage, label, prediction, flops, logits...)."""
        import pandas as pd

        N, E, C = self.logits.shape
        df = pd.DataFrame({"example_id": np.repeat(self.example_ids, E), "stage": np.tile(self.stages, N),
                           "label": np.repeat(self.labels, E), "prediction": self.predictions.ravel(),
                           "flops": self.flops.ravel()})
        for c in range(C):
            df[f"logit_{c}"] = self.logits[:, :, c].ravel()
        return df


def validate(c: Cache) -> None:
    """Raise :class:`CacheError` if shapes, ids, values or stage descriptions are inconsistent."""
    if not isinstance(c.logits, np.ndarray) or c.logits.ndim != 3:
        raise CacheError(f"logits must be a 3-d array [N, E, C], got shape {np.shape(c.logits)}")
    N, E, C = c.logits.shape
    if N == 0 or E == 0 or C < 2:
        raise CacheError(f"logits shape {c.logits.shape}: need N >= 1 examples, E >= 1 stages, C >= 2 classes")
    for name, arr, shape in (("labels", c.labels, (N,)), ("flops", c.flops, (N, E)),
                             ("example_ids", c.example_ids, (N,)), ("n_tokens", c.n_tokens, (N,))):
        if np.shape(arr) != shape:
            raise CacheError(f"{name} has shape {np.shape(arr)}, expected {shape} to match logits {c.logits.shape}")
    if not np.isfinite(c.logits).all():
        bad = np.argwhere(~np.isfinite(c.logits))[0]
        raise CacheError(f"logits contain NaN or inf (first at example {bad[0]}, stage {bad[1]}); "
                         f"recollect the cache (fp16 overflow? use fp32 or bf16)")
    if not np.isfinite(c.flops).all() or (c.flops < 0).any():
        raise CacheError("flops must be finite and non-negative")
    if E > 1 and (np.diff(c.flops, axis=1) < 0).any():
        raise CacheError("flops must be cumulative (non-decreasing along stages)")
    if not np.issubdtype(c.labels.dtype, np.integer) or c.labels.min() < 0 or c.labels.max() >= C:
        raise CacheError(f"labels must be integers in 0..{C - 1}, got range "
                         f"[{c.labels.min()}, {c.labels.max()}] dtype {c.labels.dtype}")
    if len(np.unique(c.example_ids)) != N:
        raise CacheError("example_ids are not unique")
    if len(c.stage_info) != E or any("name" not in s for s in c.stage_info):
        raise CacheError(f"stage_info must describe each of the {E} stages with at least a name")
    if len({s["name"] for s in c.stage_info}) != E:
        raise CacheError(f"stage names must be unique, got {[s['name'] for s in c.stage_info]}")


def from_arrays(logits, labels, flops, stages=None, example_ids=None, n_tokens=None, meta: dict | None = None,
                stage_info: list[dict] | None = None) -> Cache:
    """Build a cache from plain arrays (per-layer outputs from any source: DeeBERT, PABEE, an LLM's layers ...).

    ``flops``: ``[N, E]`` cumulative FLOPs per example, or ``[E]`` cumulative cost of each stage for every example.
    ``stages``: E names (default ``stage0..``). ``example_ids`` default to ``0..N-1``; ``n_tokens`` to zeros.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3:
        raise CacheError(f"logits must be [N, E, C], got shape {logits.shape}")
    N, E, _ = logits.shape
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
        labels = labels.astype(np.int64)
    flops = np.asarray(flops, dtype=np.float64)
    if flops.shape == (E,):
        flops = np.broadcast_to(flops, (N, E)).copy()
    if stage_info is None:
        names = list(stages) if stages is not None else [f"stage{e}" for e in range(E)]
        stage_info = [{"name": str(n), "kind": "exit", "model_index": 0} for n in names]
    ids = np.asarray(example_ids if example_ids is not None else np.arange(N)).astype(str)
    ntok = np.asarray(n_tokens if n_tokens is not None else np.zeros(N, dtype=np.int32))
    m = {"schema_version": SCHEMA_VERSION, **(meta or {})}
    return Cache(logits, labels.astype(np.int64) if labels.dtype.kind in "iu" else labels, flops, ids, ntok,
                 stage_info, m)


# ------------------------------------------------------------------------------------------------- I/O
def _table(c: Cache):
    import pyarrow as pa

    N, E, C = c.logits.shape
    logits = pa.FixedSizeListArray.from_arrays(pa.array(c.logits.reshape(-1).astype(np.float32)), E * C)
    flops = pa.FixedSizeListArray.from_arrays(pa.array(c.flops.reshape(-1).astype(np.float64)), E)
    meta = {"schema_version": SCHEMA_VERSION, "shape": [N, E, C], "stages": c.stage_info,
            "meta": {k: v for k, v in c.meta.items() if k != "schema_version"}}
    table = pa.table({"example_id": pa.array(c.example_ids.astype(str)), "label": pa.array(c.labels.astype(np.int64)),
                      "n_tokens": pa.array(np.asarray(c.n_tokens).astype(np.int32)), "logits": logits,
                      "flops": flops})
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, default=_json_default).encode()})


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_table_atomic(table, path: str | os.PathLike) -> Path:
    """Write a Parquet table atomically (temporary file in the same folder, then rename): never a half-written file."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is a shareable artifact
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_cache(cache: Cache, path: str | os.PathLike) -> Path:
    """Write atomically: never a half-written cache."""
    return write_table_atomic(_table(cache), path)


def load_cache(path: str | os.PathLike, *, data_dir: str | os.PathLike | None = None, verify_data: bool = True) -> Cache:
    """Load and validate a cache. With ``verify_data``, the source files it names are re-hashed when they can be
    found (``data_dir``, else the folder recorded in the cache, else ``TOOLKIT_DATA_DIR``/``../shared/data``) and a
    mismatch is an error; where they cannot be found (a notebook without the data), loading goes on."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: no such cache file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise CacheError(f"{path}: not a readable Parquet cache ({e}); it may be truncated or corrupt: "
                         f"recollect it with `toolkit collect`") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise CacheError(f"{path}: Parquet file without toolkit metadata; build caches with toolkit.nn.collect or "
                         f"toolkit.analysis.cache.from_arrays + save_cache")
    head = json.loads(raw)
    if head.get("kind") == "generation":
        raise CacheError(f"{path}: a generation cache (seq2seq); load it with toolkit.load_generation_cache")
    if head.get("kind") == "llm_tokens":
        raise CacheError(f"{path}: a per-token LLM exit cache; load it with toolkit.analysis.llm_cache.load_llm_cache")
    version = head.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CacheError(f"{path}: cache schema version {version!r} is not supported (this toolkit reads "
                         f"{SCHEMA_VERSION}); upgrade the toolkit or recollect the cache")
    N, E, C = head["shape"]
    if table.num_rows != N:
        raise CacheError(f"{path}: {table.num_rows} rows but the header says {N} examples; the file is incomplete")
    try:
        logits = table.column("logits").combine_chunks().flatten().to_numpy().reshape(N, E, C)
        flops = table.column("flops").combine_chunks().flatten().to_numpy().reshape(N, E)
    except (ValueError, KeyError) as e:
        raise CacheError(f"{path}: logits/flops do not match the shape {N}x{E}x{C} in the header ({e})") from None
    cache = Cache(logits=np.ascontiguousarray(logits, dtype=np.float32),
                  labels=table.column("label").to_numpy().astype(np.int64),
                  flops=np.ascontiguousarray(flops, dtype=np.float64),
                  example_ids=np.asarray(table.column("example_id").to_pylist(), dtype=str),
                  n_tokens=table.column("n_tokens").to_numpy(),
                  stage_info=head["stages"], meta={"schema_version": version, **head["meta"], "path": str(path)})
    if verify_data:
        cache.meta["data_verified"] = verify_fingerprint(cache, data_dir)
    return cache


def verify_fingerprint(cache: Cache, data_dir=None) -> bool:
    """Re-hash the source files the cache names; True if they match, False if absent; raise on mismatch."""
    data = cache.meta.get("data") or {}
    files = data.get("files") or {}
    if data.get("source") != "local" or not files:
        return False
    from ..data import default_data_dir, sha256_file  # data.py imports no torch

    # an explicit data_dir is the only place looked at; otherwise the recorded folder, then the default one
    candidates = [data_dir] if data_dir is not None else [data.get("data_dir"), default_data_dir()]
    for d in candidates:
        if d is None or not all((Path(d) / rel).exists() for rel in files):
            continue
        for rel, want in files.items():
            got = sha256_file(Path(d) / rel)
            if got != want:
                raise CacheError(f"{Path(d) / rel}: sha256 {got[:12]}... differs from {want[:12]}... recorded in "
                                 f"the cache: the data changed since collection; recollect the cache or restore the "
                                 f"original file (see PROVENANCE.md / SHA256SUMS)")
        return True
    return False
