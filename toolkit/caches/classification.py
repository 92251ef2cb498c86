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

The schema metadata key ``toolkit`` holds JSON: ``kind`` "classification", ``schema_version`` 2, ``shape``
[N, E, C], ``stages`` (one dict per stage: ``name``, ``kind`` "exit" or "model", ``model``, ``layer``,
``model_index``), ``meta`` (task, split, models with weight hashes and revisions, dataset fingerprint and file
hashes, command, seed, package versions, cost definition) and ``integrity`` (the content hash). Files are written
and read through :mod:`.cache_io`: page checksums and the content hash are verified on every load, so a corrupted
file is refused instead of giving other numbers. No raw text is stored. numpy and pyarrow only (no torch).
"""

from __future__ import annotations

import functools
import os
import stat
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from toolkit._api import keyword_options
from toolkit.caches.io import (
    META_KEY,
    CacheError,
    column,
    header_value,
    read_cache_table,
    string_ids,
    write_cache_table,
)

KIND = "classification"
SCHEMA_VERSION = 2  # 2: page checksums and a content hash (cache_io); 1 had neither (upgrade: toolkit upgrade-cache)
COLUMNS = ["example_id", "label", "n_tokens", "logits", "flops"]
_LOAD_ONLY_META = ("schema_version", "path", "data_verified")  # added when loading, never stored
__all__ = ["Cache", "CacheError", "META_KEY", "from_arrays", "load_cache", "save_cache", "validate",
           "verify_fingerprint", "verify_labels"]


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
        idx = [self._stage_index(s) for s in ([stages] if isinstance(stages, (str, int)) else stages)]
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

    def select_members(self, members) -> Cache:
        """The cascade of some of this cache's models (names from ``meta["models"]``, or indices, cheapest first):
        every stage of each (:meth:`select_stages`; dropped members cost nothing), the models renumbered, and a
        header recording only them, so the identity of the selection and a policy chosen on it name these models and
        their weight fingerprints. ``meta["path"]`` names the file and the members (a point chosen on the selection
        is not taken for one chosen on the whole file); ``meta["selected_from"]`` records both."""
        models = (self.meta or {}).get("models")
        if not isinstance(models, list) or not models:
            raise ValueError(f"{self.meta.get('path') or 'this cache'} records no models (meta 'models'): its members "
                             f"cannot be selected by name; select its stages with select_stages")
        names = [m.get("name") if isinstance(m, dict) else None for m in models]
        idx = []
        for m in [members] if isinstance(members, (str, int)) else list(members):
            if isinstance(m, str) and m in names:
                idx.append(names.index(m))
            elif isinstance(m, (int, np.integer)) and not isinstance(m, bool) and 0 <= int(m) < len(models):
                idx.append(int(m))
            else:
                raise ValueError(f"no member {m!r}: the cache's members are {names} (names or indices 0.."
                                 f"{len(models) - 1})")
        if not idx or sorted(set(idx)) != idx:
            raise ValueError(f"members must be a non-empty increasing selection (cheapest first), got {members}")
        model_of = [s.get("model_index", 0) for s in self.stage_info]
        out = self.select_stages([e for e, k in enumerate(model_of) if k in idx])
        info = [{**s, "model_index": idx.index(s.get("model_index", 0))} for s in out.stage_info]
        kept = [names[i] if names[i] is not None else i for i in idx]
        path = self.meta.get("path")
        meta = {**self.meta, "models": [models[i] for i in idx], "selected_from": {"path": path, "members": kept},
                "path": f"{path or 'cache'} (members {', '.join(map(str, kept))})"}
        return replace(out, stage_info=info, meta=meta)

    def _stage_index(self, s) -> int:
        """A stage name or an integer index (negative from the end) as an index in ``0..E-1``."""
        E = len(self.stages)
        if isinstance(s, str):
            if s not in self.stages:
                raise ValueError(f"no stage {s!r}; stages are {list(self.stages)}")
            return self.stages.index(s)
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise ValueError(f"stages are names or integer indices, got {s!r} of type {type(s).__name__}")
        if not -E <= int(s) < E:
            raise ValueError(f"stage index {int(s)} is out of range for {E} stages")
        return int(s) % E


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
    check_labels(c.labels, C)
    if not np.issubdtype(np.asarray(c.n_tokens).dtype, np.integer) or (np.asarray(c.n_tokens) < 0).any():
        raise CacheError("n_tokens must be non-negative integers")
    if len(np.unique(c.example_ids)) != N:
        raise CacheError("example_ids are not unique")
    if (not isinstance(c.stage_info, list) or len(c.stage_info) != E
            or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in c.stage_info)):
        raise CacheError(f"stage_info must describe each of the {E} stages with at least a name (a string)")
    if len({s["name"] for s in c.stage_info}) != E:
        raise CacheError(f"stage names must be unique, got {[s['name'] for s in c.stage_info]}")
    _check_descriptions(c.stage_info, c.meta)
    _check_invariants(c)


def _check_invariants(c: Cache) -> None:
    """What the header says must agree with the arrays: class count and names, each exit's layer within its model's
    depth, and costs small enough that sums over examples (and speed-ups) stay finite."""
    N, E, C = c.logits.shape
    meta = c.meta or {}
    unit = meta.get("cost_unit")
    if unit is not None and (not isinstance(unit, str) or not unit.strip()):
        raise CacheError(f"meta key 'cost_unit' must be a non-empty string (FLOPs, seconds, dollars ...), got "
                         f"{unit!r}")
    if meta.get("num_labels") is not None and meta["num_labels"] != C:
        raise CacheError(f"meta key 'num_labels' is {meta['num_labels']}, but the logits have {C} classes")
    if meta.get("label_names") is not None and len(meta["label_names"]) != C:
        raise CacheError(f"meta key 'label_names' names {len(meta['label_names'])} classes "
                         f"{meta['label_names'][:5]}, but the logits have {C}")
    for e, s in enumerate(c.stage_info):
        layer, depth = s.get("layer"), s.get("num_layers")
        if layer is not None and depth is not None and layer > depth:
            raise CacheError(f"stages[{e}] ({s['name']!r}) key 'layer' is {layer}, beyond its model's {depth} layers "
                             f"(key 'num_layers')")
    if C and not np.isfinite(float(np.max(c.flops)) * N * 16):
        raise CacheError(f"flops up to {float(np.max(c.flops)):.3g} overflow when summed over {N} examples; "
                         f"count the cost in a larger unit (meta 'cost_unit')")


_STAGE_TYPES = {"model_index": int, "layer": int, "hidden_size": int, "num_layers": int, "kind": str, "model": str,
                "model_name": str}
_META_TYPES = {"task": str, "split": str, "metric": str, "num_labels": int, "data": dict, "models": list,
               "random_heads": dict, "label_names": list}


def _check_descriptions(stage_info: list[dict], meta: dict) -> None:
    """Types of the stage and meta keys the analysis reads (a crafted header gets an error naming the key)."""
    from toolkit.analysis.metrics.task import METRICS

    def wrong(v, kind) -> bool:
        return v is not None and (not isinstance(v, kind) or kind is int and (isinstance(v, bool) or v < 0))

    for e, s in enumerate(stage_info):
        for key, kind in _STAGE_TYPES.items():
            if wrong(s.get(key), kind):
                raise CacheError(f"stages[{e}] key {key!r} must be {'a non-negative integer' if kind is int else 'a string'}"
                                 f", got {s[key]!r}")
    index = [s.get("model_index") or 0 for s in stage_info]
    if any(b < a for a, b in zip(index, index[1:])):
        raise CacheError(f"stages: key 'model_index' must not decrease along the stages, got {index}")
    if not isinstance(meta, dict):
        raise CacheError(f"meta must be a dict, got {type(meta).__name__}")
    for key, kind in _META_TYPES.items():
        if wrong(meta.get(key), kind):
            raise CacheError(f"meta key {key!r} must be {'a non-negative integer' if kind is int else kind.__name__}, "
                             f"got {type(meta[key]).__name__} {str(meta[key])[:40]!r}")
    if meta.get("metric") is not None and meta["metric"] not in METRICS:
        raise CacheError(f"meta key 'metric' is {meta['metric']!r}; known metrics are {METRICS}")


def check_labels(labels, n_classes: int) -> None:
    """Refuse labels that are not integer class indices in ``0..n_classes-1`` (floats, strings, None, booleans)."""
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise CacheError(f"labels must be integer class indices, got dtype {y.dtype} (first value {y.flat[0]!r}); "
                         f"floats are not truncated and strings or None are not labels")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = int(np.flatnonzero((y < 0) | (y >= n_classes))[0])
        raise CacheError(f"labels must be integers in 0..{n_classes - 1}; example {bad} has {y[bad]}")


@keyword_options
def from_arrays(logits, labels, flops, *, stages=None, example_ids=None, n_tokens=None, meta: dict | None = None,
                stage_info: list[dict] | None = None) -> Cache:
    """Build a cache from plain arrays (per-layer outputs from any source: DeeBERT, PABEE, an LLM's layers ...).

    ``flops``: ``[N, E]`` cumulative FLOPs per example, or ``[E]`` cumulative cost of each stage for every example.
    ``stages``: E names (default ``stage1..stageE``, counted from 1 like every other stage number).
    ``example_ids`` default to ``0..N-1``; ``n_tokens`` to zeros.

    Logits stay logits: real (integer or float) arrays only, stored as float32, and a cast that changes a
    prediction is refused; arrays that look like probabilities (every row in [0, 1] summing to 1) are refused with
    a pointer to :func:`toolkit.caches.inputs.from_probabilities` (and ``from_log_probs``). A stage that costs
    nothing (an infinite speed-up) is refused.
    """
    raw = _real(logits, "logits")
    if raw.ndim != 3:
        raise CacheError(f"logits must be [N, E, C], got shape {raw.shape}")
    N, E, _ = raw.shape
    logits = _lossless_logits(raw)
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and np.isfinite(labels).all() and np.all(np.mod(labels, 1) == 0):
        labels = labels.astype(np.int64)  # 0.0/1.0 are class indices; 0.5 stays float and is refused
    flops = _real(flops, "flops").astype(np.float64)
    if flops.shape == (E,):
        flops = np.broadcast_to(flops, (N, E)).copy()
    if flops.shape == (N, E) and np.isfinite(flops).all() and (flops < 0).any():
        n, e = np.argwhere(flops < 0)[0]
        raise CacheError(f"flops must be non-negative cumulative costs, got {flops[n, e]:g} at example {n}, stage {e}")
    if flops.shape == (N, E) and np.isfinite(flops).all() and (flops[:, -1] <= 0).any() | (flops[:, 0].mean() <= 0):
        raise CacheError("a stage costs nothing (flops 0 at the last stage of an example, or at the first stage on "
                         "average): every speed-up would divide by zero; give each stage's real cumulative cost")
    if stage_info is None:
        names = list(stages) if stages is not None else [f"stage{e + 1}" for e in range(E)]
        stage_info = [{"name": str(n), "kind": "exit", "model_index": 0} for n in names]
    if example_ids is None:
        ids = np.arange(N).astype(str)
    else:  # refuse ids that would change or collide when stored (trailing NUL, 1 and "1" ...)
        raw = np.asarray(example_ids, dtype=object).ravel()
        ids = string_ids([x if isinstance(x, str) else str(x) if isinstance(x, (int, np.integer)) else x
                          for x in raw], None)
    ntok = np.asarray(n_tokens if n_tokens is not None else np.zeros(N, dtype=np.int32))
    m = {"schema_version": SCHEMA_VERSION, **(meta or {})}
    return Cache(logits, labels.astype(np.int64) if labels.dtype.kind in "iu" else labels, flops, ids, ntok,
                 stage_info, m)


_PROBABILITY_EVIDENCE = 10  # rows that must all look like probabilities before from_arrays refuses them


def _real(a, what: str) -> np.ndarray:
    """``a`` as an array of real numbers: complex, boolean, string, object and date arrays are refused (numpy would
    cast "1.5" or True to a number without a word)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise CacheError(f"{what} must be real numbers (integers or floats), got dtype {arr.dtype}"
                         + (" (complex: pass the real part deliberately)" if arr.dtype.kind == "c" else
                            " (strings and objects are not converted)" if arr.dtype.kind in "USOV" else ""))
    return arr


def _lossless_logits(raw: np.ndarray) -> np.ndarray:
    """float32 logits, refusing -inf (a log of zero: a probability path's job) and a cast that flips a prediction
    (float64 values closer than float32 resolves, e.g. [1e8, 1e8 + 3])."""
    if np.isneginf(raw).any():
        n, e, k = np.argwhere(np.isneginf(raw))[0]
        raise CacheError(f"logits hold -inf (first at example {n}, stage {e}, class {k}); logits are finite. For "
                         f"log-probabilities with zeros use toolkit.caches.inputs.from_log_probs")
    if not np.isfinite(raw).all():
        n, e, k = np.argwhere(~np.isfinite(raw))[0]
        raise CacheError(f"logits contain NaN or inf (first at example {n}, stage {e}, class {k})")
    with np.errstate(over="ignore"):
        z = raw.astype(np.float32)
    if not np.isfinite(z).all():
        raise CacheError(f"logits beyond the float32 range (largest |value| {np.abs(raw).max():g}); subtract each "
                         f"row's maximum first (softmax does not change)")
    if raw.dtype != np.float32 and raw.size:
        flip = raw.argmax(-1) != z.argmax(-1)
        if flip.any():
            n, e = np.argwhere(flip)[0]
            raise CacheError(f"storing the logits as float32 changes the prediction at example {n}, stage {e} "
                             f"({raw[n, e].tolist()} -> {z[n, e].tolist()}); subtract each row's maximum (or "
                             f"centre them) before passing them")
    if raw.size and raw.min() >= 0 and raw.max() <= 1 and np.allclose(raw.sum(-1), 1.0, atol=1e-4):
        msg = ("these look like probabilities (every row in [0, 1] summing to 1), not logits: pass them to "
               "toolkit.caches.inputs.from_probabilities (log-probabilities: from_log_probs); as logits every "
               "softmax confidence and threshold would be wrong")
        if raw.shape[0] * raw.shape[1] >= _PROBABILITY_EVIDENCE:
            raise CacheError(msg)
        # the caller of from_arrays: past this helper, from_arrays and keyword_options' wrapper
        warnings.warn(f"{msg} (only {raw.shape[0] * raw.shape[1]} rows: a warning, not an error)", stacklevel=4)
    return z


# ------------------------------------------------------------------------------------------------- I/O
def _table(c: Cache):
    import pyarrow as pa

    N, E, C = c.logits.shape
    logits = pa.FixedSizeListArray.from_arrays(pa.array(c.logits.reshape(-1).astype(np.float32)), E * C)
    flops = pa.FixedSizeListArray.from_arrays(pa.array(c.flops.reshape(-1).astype(np.float64)), E)
    head = {"kind": KIND, "schema_version": SCHEMA_VERSION, "shape": [N, E, C], "stages": c.stage_info,
            "meta": {k: v for k, v in c.meta.items() if k not in _LOAD_ONLY_META}}
    table = pa.table({"example_id": pa.array(c.example_ids.astype(str)), "label": pa.array(c.labels.astype(np.int64)),
                      "n_tokens": pa.array(np.asarray(c.n_tokens).astype(np.int32)), "logits": logits,
                      "flops": flops})
    return table, head


def save_cache(cache: Cache, path: str | os.PathLike) -> Path:
    """Write atomically, with page checksums and a content hash (:mod:`.cache_io`): never a half-written cache."""
    validate(cache)
    table, head = _table(cache)
    return write_cache_table(table, path, head)


def load_cache(path: str | os.PathLike, *, data_dir: str | os.PathLike | None = None, verify_data: bool = True) -> Cache:
    """Load, verify (page checksums, content hash, header, columns) and validate a cache.

    With ``verify_data``, the source files it names are re-hashed when they can be found (``data_dir``, else the
    folder recorded in the cache if it is a data folder, else ``TOOLKIT_DATA_DIR``/``../shared/data``) and a
    mismatch is an error; where they cannot be found (a notebook without the data), loading goes on with
    ``meta["data_verified"] = False``. See :func:`verify_fingerprint` for what is read.
    """
    import pyarrow as pa

    table, head = read_cache_table(path, kind=KIND, schema_version=SCHEMA_VERSION)
    path = Path(path)
    shape = header_value(head, "shape", list, path)
    if len(shape) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in shape):
        raise CacheError(f"{path}: header key 'shape' must be [N, E, C] positive integers, got {shape!r}")
    N, E, C = shape
    stages = header_value(head, "stages", list, path)
    for e, s in enumerate(stages):
        header_value(s if isinstance(s, dict) else {}, "name", str, path, where=f"header 'stages'[{e}]")
    meta = header_value(head, "meta", dict, path)
    if table.column_names != COLUMNS:
        raise CacheError(f"{path}: columns {table.column_names}, expected {COLUMNS}")
    if table.num_rows != N:
        raise CacheError(f"{path}: {table.num_rows} rows but header key 'shape' says {N} examples")
    ids = string_ids(column(table, "example_id", path, pa.types.is_string), path)
    labels = column(table, "label", path, pa.int64()).to_numpy()
    n_tokens = column(table, "n_tokens", path, pa.int32()).to_numpy()
    logits = column(table, "logits", path, lambda t: pa.types.is_fixed_size_list(t) and t.list_size == E * C
                    and t.value_type == pa.float32(), want=f"expected float32 x {E * C} to match header key 'shape' "
                    f"{shape} (E*C logits per row)")
    flops = column(table, "flops", path, lambda t: pa.types.is_fixed_size_list(t) and t.list_size == E
                   and t.value_type == pa.float64(), want=f"expected float64 x {E} to match header key 'shape' "
                   f"{shape} (E stages)")
    try:
        cache = Cache(logits=np.ascontiguousarray(logits.flatten().to_numpy().reshape(N, E, C)),
                      labels=labels.astype(np.int64), flops=np.ascontiguousarray(flops.flatten().to_numpy().reshape(N, E)),
                      example_ids=ids, n_tokens=n_tokens, stage_info=stages,
                      meta={"schema_version": SCHEMA_VERSION, **meta, "path": str(path)})
    except CacheError as e:
        raise CacheError(f"{path}: {e}") from None
    if verify_data:
        try:
            root = _verified_data_root(cache, data_dir)
            cache.meta["data_verified"] = root is not None and verify_labels(cache, root)
        except CacheError as e:
            raise CacheError(f"{path}: {e}") from None
    return cache


# ------------------------------------------------------------------------------------------ fingerprints
@keyword_options
def verify_fingerprint(cache, *, data_dir=None) -> bool:
    """Re-hash the source files a cache names; True if they match, False if they are absent; raise on mismatch.

    Only regular files inside a data folder are read, by the relative paths recorded in ``meta["data"]["files"]``:
    a path that is absolute, contains ``..``, is empty or holds a NUL is refused before anything is looked up,
    and one that resolves outside the folder (a symlink) or is not a regular file (directory, FIFO, device) is
    refused before it is opened. Refusals do not say whether or what the path is. Folders looked at: ``data_dir``
    alone when given; otherwise the folder recorded at collection (only when every path is a task file toolkit
    reads, :func:`known_data_files`: a crafted cache cannot point it at other files), then
    :func:`toolkit.data.tasks.default_data_dir`.

    The hashes say the files are unchanged, not that the cache's rows are theirs: :func:`verify_labels` checks
    that (a classification cache is "data verified" only when both hold).
    """
    return _verified_data_root(cache, data_dir) is not None


def _verified_data_root(cache, data_dir=None) -> Path | None:
    """The data folder whose files match the hashes a cache records; None where they are absent (see
    :func:`verify_fingerprint`); a mismatch or an unsafe path is a :class:`CacheError`."""
    data = cache.meta.get("data") or {}
    if not isinstance(data, dict):
        raise CacheError("meta key 'data' must be an object")
    files = data.get("files") or {}
    if data.get("source") != "local" or not files:
        return None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise CacheError("meta key 'data.files' must map relative paths to sha256 strings")
    rels = [_safe_relative(rel, i) for i, rel in enumerate(files)]
    from toolkit.data.tasks import default_data_dir, sha256_file  # data.py imports no torch

    if data_dir is not None:
        candidates = [Path(data_dir)]
    else:  # the recorded folder comes from the file itself: trusted only for the data files toolkit reads
        recorded = data.get("data_dir")
        trusted = (isinstance(recorded, str) and recorded and "\x00" not in recorded
                   and {str(r) for r in rels} <= known_data_files())
        candidates = [d for d in (Path(recorded) if trusted else None, default_data_dir()) if d is not None]
    for root in candidates:
        if not root.is_dir():
            continue
        real_root = root.resolve()
        found = [_inside(real_root, root / rel, i) for i, rel in enumerate(rels)]
        if not all(p is not None for p in found):
            continue
        for i, ((rel, want), p) in enumerate(zip(files.items(), found)):
            try:
                got = sha256_file(p, regular_only=True)
            except (OSError, ValueError):  # swapped for a symlink, FIFO or device since it was examined
                raise CacheError(f"meta key 'data.files' entry {i} is not a regular file; refused") from None
            if got != want:
                raise CacheError(f"{rel}: its sha256 differs from {want[:12]}... recorded in the cache (data folder "
                                 f"{root}): the data changed since collection; recollect the cache or restore the "
                                 f"original file (see PROVENANCE.md / SHA256SUMS)")
        return root
    return None


def verify_labels(cache, root: str | os.PathLike, *, labels: bool = True) -> bool:
    """Check a classification cache's rows against the source files of data folder ``root`` (whose hashes
    :func:`verify_fingerprint` has checked): every example id is a row ``task:source_split:row`` of a file the
    cache names, the rows are those of the cache's ``split`` (with its ``split_seed``), and every label is the
    file's label for that row. True when all hold; False when the ids are not of that form or their task is not
    registered (nothing to check them against). Labels or rows that differ are a :class:`CacheError`: the cache
    was changed after collection (e.g. labels edited and saved again), and its file hashes alone would not say so.
    ``labels=False``: the ids and split only (a cache whose labels are not the task's, e.g. -1 for none).
    """
    from toolkit.data.tasks import DEFAULT_SPLIT_SEED, SPLITS, _source_of, get_task, split_indices

    data = cache.meta.get("data") or {}
    named = set(data.get("files") or {})
    ids = np.asarray(cache.example_ids).astype(str)
    y_all = np.asarray(cache.labels)
    prefix, _, row = np.char.rpartition(ids, ":").T
    if not len(ids) or not np.char.isdigit(row).all():
        return False
    rows = row.astype(np.int64)
    split, seed = cache.meta.get("split"), data.get("split_seed", DEFAULT_SPLIT_SEED)
    for pre in np.unique(prefix):
        task, _, src = str(pre).partition(":")
        try:
            spec = get_task(task)
        except (KeyError, ValueError):
            return False
        rel = spec.files.get(src)
        if rel not in named:
            raise CacheError(f"key 'example_id': ids {pre}:* are rows of {rel or f'no file of task {task!r}'}, "
                             f"which the cache's meta key 'data.files' does not name ({sorted(named)}): the rows are "
                             f"not from the data it was collected from; recollect it")
        truth = _source_labels(task, os.path.join(os.fspath(root), rel), src, data["files"][rel])
        at = prefix == pre
        r, y = rows[at], y_all[at]
        if (r >= len(truth)).any():
            raise CacheError(f"key 'example_id': {pre}:{int(r.max())} is beyond the {len(truth)} rows of {rel} (data "
                             f"folder {root}); the ids are not this file's: recollect the cache")
        if split in SPLITS:
            try:
                want = _source_of(spec, split)
            except ValueError:
                want = None
            outside = (np.ones(len(r), bool) if src != want else
                       np.zeros(len(r), bool) if src == "validation" else
                       ~np.isin(r, split_indices(len(truth), task, seed)[split]))
            if outside.any():
                raise CacheError(f"key 'example_id': {int(outside.sum())} of {len(r)} rows of {rel} are not in split "
                                 f"{split!r} (split_seed {seed}; first: {pre}:{int(r[outside][0])}): the cache's meta "
                                 f"key 'split' does not describe its rows; recollect it")
        bad = np.flatnonzero(truth[r] != y) if labels else []
        if len(bad):
            i = bad[0]
            raise CacheError(f"key 'label': {len(bad)} of {len(r)} labels differ from {rel} in data folder {root} "
                             f"(first: {pre}:{int(r[i])} is {int(y[i])} here, {int(truth[r[i]])} in the data): the "
                             f"cache was changed after collection (labels edited and saved again?), though its data "
                             f"files are unchanged. Recollect it, or load it with verify_data=False to use it "
                             f"unverified")
    return True


@functools.lru_cache(maxsize=16)
def _source_labels(task: str, path: str, source_split: str, sha256: str) -> np.ndarray:
    """The labels of one source file, read once per file content (``sha256``, already checked, keys the cache)."""
    from toolkit.data.tasks import get_task, read_source

    labels = read_source(get_task(task), Path(path), source_split)["label"].to_numpy(dtype=np.int64)
    labels.setflags(write=False)
    return labels


def known_data_files() -> set[str]:
    """Relative paths of every source file a registered task reads (GLUE-format tasks, WMT21 test sets)."""
    from toolkit.data.tasks import TASKS
    from toolkit.data.text2text import TRANSLATION

    return {rel for spec in TASKS.values() for rel in spec.files.values()} | {v[0] for v in TRANSLATION.values()}


def _safe_relative(rel, i: int) -> Path:
    if (not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith(("/", "\\"))
            or Path(rel).is_absolute() or ".." in Path(rel).parts or ".." in rel.replace("\\", "/").split("/")):
        raise CacheError(f"meta key 'data.files' entry {i} is not a plain relative path inside the data folder "
                         f"(absolute, '..', empty or NUL); refused without reading anything")
    return Path(rel)


def _inside(real_root: Path, path: Path, i: int) -> Path | None:
    """The resolved path if it is a regular file inside ``real_root``; None if nothing is there; refuse the rest."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(real_root):
        raise CacheError(f"meta key 'data.files' entry {i} leads outside the data folder (a symlink); refused "
                         f"without reading it")
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return None
    except OSError:
        raise CacheError(f"meta key 'data.files' entry {i} cannot be examined; refused") from None
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"meta key 'data.files' entry {i} is not a regular file (directory, FIFO or device); "
                         f"refused without reading it")
    return real
