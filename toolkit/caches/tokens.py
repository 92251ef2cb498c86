"""The per-token exit cache of a decoder-only LLM (INTERFACES section 2): one Parquet file per (model, prompt set,
split), one row per prompt.

=====================  ===========================  =================================================================
column                 type                         meaning
=====================  ===========================  =================================================================
``example_id``         string                       id into the source data (``task:split:row``); no text is stored
``label``              int64                        gold class, -1 if the prompt set has none
``n_prompt``           int32                        prompt tokens (chat template included)
``tokens``             list<int32>                  the full model's greedy continuation (T_i tokens, EOS included)
``<f>/top1``           list<int32>                  flattened [T_i, L]: top-1 id of exit family f at layer 1..L
``<f>/stats``          list<float16 or float32>     flattened [T_i, L, F]: statistics of that exit's logits
``q/<metric>``         float64                      per-prompt quality of the continuation (optional)
=====================  ===========================  =================================================================

Exit families: ``lens`` (final norm + LM head on layer l's state) and ``tuned`` (a trained affine translator per
layer first). Layer L is the model itself in every family, so ``top1[:, L-1] == tokens``. Position ``t`` of a
prompt's continuation is predicted by the state whose input is the previous token; it attends to
``n_prompt + t`` positions (:attr:`LLMTokenCache.positions`). The F statistics are
:func:`~toolkit.caches.generation.stat_names` of the header's temperatures (top-2 logits, logsumexp and
entropy at each temperature). The schema metadata key ``toolkit`` holds JSON: ``kind`` "llm_tokens",
``schema_version``, ``model`` (path, origin such as "... Q4_1 GGUF ... dequantized to float32", ``dims`` for
:class:`~toolkit.analysis.cost.causal.CausalLMDims`), ``families`` (per family: layers, training record),
``temperatures``, ``stat_names``, ``stats_dtype``, ``prompt_set``, ``decoding``, ``quality``, ``meta`` (task,
split, data fingerprint, command, versions). numpy and pyarrow only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.caches.classification import CacheError, _verified_data_root, verify_labels
from toolkit.caches.dims import CausalLMDims
from toolkit.caches.generation import check_step_stats, check_temperatures, stat_names
from toolkit.caches.io import (
    column,
    header_value,
    json_default,
    read_cache_table,
    string_ids,
    write_cache_table,
)

LLM_SCHEMA_VERSION = 2  # 2: page checksums and a content hash (cache_io)
STATS_DTYPES = ("float16", "float32")


@dataclass
class LLMTokenCache:
    """Greedy continuations of N prompts with every layer's exit statistics at each of the S generated tokens."""

    example_ids: np.ndarray  # [N] str
    labels: np.ndarray  # [N] int64, -1 = none
    n_prompt: np.ndarray  # [N] int32
    tokens: np.ndarray  # [S] int32, all prompts' continuations back to back
    offsets: np.ndarray  # [N + 1] int64, prompt i owns tokens offsets[i]:offsets[i+1]
    top1: dict[str, np.ndarray]  # family -> [S, L] int32
    stats: dict[str, np.ndarray]  # family -> [S, L, F] float32 (as stored: float16 values widen exactly)
    temperatures: tuple[float, ...]
    model: dict  # path, origin, dims
    families: dict[str, dict] = field(default_factory=dict)  # family -> layers, training record
    quality: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> [N]
    stats_dtype: str = "float16"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.temperatures = check_temperatures(self.temperatures)
        self.example_ids = np.asarray(self.example_ids).astype(str)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        validate_llm_cache(self)

    # ------------------------------------------------------------------------------------- shape and names
    @property
    def n_examples(self) -> int:
        return len(self.example_ids)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_layers(self) -> int:
        return next(iter(self.top1.values())).shape[1]

    @property
    def family_names(self) -> list[str]:
        return list(self.top1)

    @property
    def stat_names(self) -> list[str]:
        return stat_names(self.temperatures)

    @property
    def dims(self) -> CausalLMDims:
        return CausalLMDims(**self.model["dims"])

    @property
    def lengths(self) -> np.ndarray:
        """Generated tokens per prompt, ``[N]``."""
        return np.diff(self.offsets)

    @property
    def example_index(self) -> np.ndarray:
        """The prompt each generated token belongs to, ``[S]``."""
        return np.repeat(np.arange(self.n_examples), self.lengths)

    @property
    def steps(self) -> np.ndarray:
        """Each token's index ``t`` within its continuation, ``[S]``."""
        return np.arange(self.n_tokens) - np.repeat(self.offsets[:-1], self.lengths)

    @property
    def max_new_tokens(self) -> np.ndarray:
        """The decoding budget of each prompt, ``[N]`` (header ``decoding.max_new_tokens``: one value or one per
        prompt; the longest continuation if the header has none)."""
        m = (self.meta.get("decoding") or {}).get("max_new_tokens")
        if m is None:
            return np.full(self.n_examples, int(self.lengths.max()))
        return np.broadcast_to(np.asarray(m, dtype=np.int64), (self.n_examples,)).copy()

    @property
    def positions(self) -> np.ndarray:
        """Positions attended when each token is predicted (prompt and earlier continuation), ``[S]``."""
        return np.repeat(self.n_prompt.astype(np.int64), self.lengths) + self.steps

    def __repr__(self) -> str:
        return (f"LLMTokenCache(prompt_set={self.meta.get('prompt_set')!r}, split={self.meta.get('split')!r}, "
                f"N={self.n_examples}, tokens={self.n_tokens}, layers={self.n_layers}, "
                f"families={self.family_names})")

    def family(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(top1 [S, L], stats [S, L, F])`` of one exit family, with a clear error for an unknown name."""
        if name not in self.top1:
            raise KeyError(f"exit family {name!r} is not in this cache; it holds {self.family_names}")
        return self.top1[name], self.stats[name]

    def agreement(self, family: str) -> np.ndarray:
        """Whether each layer's top-1 equals the full model's token, ``[S, L]`` bool (last column all True)."""
        return self.family(family)[0] == self.tokens[:, None]


def check_model_dims(model) -> CausalLMDims:
    """``model["dims"]`` as :class:`CausalLMDims` (a CacheError naming the key ``model.dims`` otherwise)."""
    dims = model.get("dims") if isinstance(model, dict) else None
    if not isinstance(dims, dict) or not dims:
        raise CacheError("header key 'model.dims' must be an object with the cost-model dims (layers, hidden, "
                         f"heads, kv_heads, head_dim, intermediate, vocab), got {type(dims).__name__}")
    try:
        return CausalLMDims(**dims)
    except (TypeError, ValueError) as e:
        raise CacheError(f"header key 'model.dims' is malformed ({e})") from None


def check_llm_header(c: LLMTokenCache) -> None:
    """Header structures of a token cache: ``families`` (family -> object), ``meta.decoding`` (an object whose
    ``max_new_tokens`` is one positive integer or one per prompt)."""
    if not isinstance(c.families, dict) or not all(isinstance(v, dict) for v in c.families.values()):
        raise CacheError(f"header key 'families' must map each exit family to an object, got "
                         f"{str(c.families)[:60]!r}")
    if not isinstance(c.meta, dict):
        raise CacheError(f"header key 'meta' must be an object, got {type(c.meta).__name__}")
    decoding = c.meta.get("decoding")
    if decoding is None:
        return
    if not isinstance(decoding, dict):
        raise CacheError(f"header key 'meta.decoding' must be an object, got {type(decoding).__name__}")
    m = decoding.get("max_new_tokens")
    flat = m if isinstance(m, list) else [m]
    if m is not None and not (flat and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1
                                           for x in flat)):
        raise CacheError(f"header key 'meta.decoding.max_new_tokens' must be a positive integer or a list of them, "
                         f"got {str(m)[:60]!r}")


def _integers(arr, name: str) -> None:
    if np.asarray(arr).dtype.kind not in "iu":
        raise CacheError(f"{name} must be integers, got dtype {np.asarray(arr).dtype}; values are not truncated")


def validate_llm_cache(c: LLMTokenCache) -> None:
    """Raise :class:`~toolkit.caches.classification.CacheError` on inconsistent shapes, ids or values, or statistics no
    logits can have (:func:`~toolkit.caches.generation.check_step_stats`)."""
    N = len(c.example_ids)
    if N == 0 or not c.top1:
        raise CacheError("an LLM token cache needs at least one prompt and one exit family")
    if len(np.unique(c.example_ids)) != N:
        raise CacheError("example_ids are not unique")
    check_llm_header(c)
    for name, arr in (("labels", c.labels), ("n_prompt", c.n_prompt)):
        if np.shape(arr) != (N,):
            raise CacheError(f"{name} has shape {np.shape(arr)}, expected ({N},)")
        _integers(arr, name)
    if (np.asarray(c.labels) < -1).any():
        raise CacheError("labels must be class indices >= 0, or -1 for none")
    if (np.asarray(c.n_prompt) < 1).any():
        raise CacheError("n_prompt must be >= 1 for every prompt")
    off = c.offsets
    if off.shape != (N + 1,) or off[0] != 0 or (np.diff(off) < 1).any():
        raise CacheError("offsets must be [N+1] from 0 with at least one generated token per prompt")
    S = int(off[-1])
    if np.shape(c.tokens) != (S,):
        raise CacheError(f"tokens have shape {np.shape(c.tokens)}, expected ({S},) from the offsets")
    _integers(c.tokens, "tokens")
    dims = check_model_dims(c.model)
    V = dims.vocab
    if S and (c.tokens.min() < 0 or c.tokens.max() >= V):
        raise CacheError(f"token ids must lie in [0, {V}) (header key 'model.dims.vocab' = {V}), got "
                         f"{c.tokens.min()}..{c.tokens.max()}")
    if set(c.top1) != set(c.stats):
        raise CacheError(f"families of top1 {sorted(c.top1)} and stats {sorted(c.stats)} differ")
    if c.stats_dtype not in STATS_DTYPES:
        raise CacheError(f"stats_dtype must be one of {STATS_DTYPES}, got {c.stats_dtype!r}")
    F = len(stat_names(c.temperatures))
    L = None
    for f in c.top1:
        if "/" in f or not f:
            raise CacheError(f"family name {f!r} must be non-empty without '/'")
        t1, st = np.asarray(c.top1[f]), np.asarray(c.stats[f])
        if t1.ndim != 2 or t1.shape[0] != S or (L is not None and t1.shape[1] != L):
            raise CacheError(f"family {f!r}: top1 has shape {t1.shape}, expected ({S}, L) with one L for all")
        L = t1.shape[1]
        if st.shape != (S, L, F):
            raise CacheError(f"family {f!r}: stats have shape {st.shape}, expected ({S}, {L}, {F}) "
                             f"({stat_names(c.temperatures)})")
        if not np.isfinite(st).all():
            raise CacheError(f"family {f!r}: statistics contain NaN or inf; recollect (float16 overflow? store "
                             f"float32)")
        _integers(t1, f"family {f!r}: top1")
        if t1.size and (t1.min() < 0 or t1.max() >= V):
            raise CacheError(f"family {f!r}: top-1 ids must lie in [0, {V}) (header key 'model.dims.vocab'), got "
                             f"{t1.min()}..{t1.max()}")
        check_step_stats(st, c.temperatures, stored=c.stats_dtype, where=f"family {f!r}")
        if not (t1[:, -1] == c.tokens).all():
            bad = int(np.flatnonzero(t1[:, -1] != c.tokens)[0])
            raise CacheError(f"family {f!r}: the last layer's top-1 differs from the generated token at token {bad}; "
                             f"the last layer must be the model itself")
    if dims.layers != L:
        raise CacheError(f"header key 'model.dims.layers' is {dims.layers} but the exits have {L} layers")
    budget = (c.meta.get("decoding") or {}).get("max_new_tokens")
    if budget is not None and np.ndim(budget) not in (0,) and np.shape(budget) != (N,):
        raise CacheError(f"meta key decoding.max_new_tokens must be one budget or one per prompt ({N}), got "
                         f"{np.shape(budget)[0] if np.ndim(budget) == 1 else np.shape(budget)} values")
    if budget is not None and (np.diff(off) > np.asarray(budget)).any():
        raise CacheError("a continuation is longer than decoding.max_new_tokens in the header")
    for m, q in c.quality.items():
        if np.shape(q) != (N,):
            raise CacheError(f"quality {m!r} has shape {np.shape(q)}, expected ({N},)")


# ------------------------------------------------------------------------------------------------- I/O
def _list_column(pa, flat: np.ndarray, offsets: np.ndarray, width: int, dtype):
    return pa.ListArray.from_arrays(pa.array((offsets * width).astype(np.int32)),
                                    pa.array(np.ascontiguousarray(flat).reshape(-1).astype(dtype)))


def _table(c: LLMTokenCache):
    import pyarrow as pa

    L, F = c.n_layers, len(c.stat_names)
    cols = {"example_id": pa.array(c.example_ids), "label": pa.array(np.asarray(c.labels, np.int64)),
            "n_prompt": pa.array(np.asarray(c.n_prompt, np.int32)),
            "tokens": _list_column(pa, c.tokens, c.offsets, 1, np.int32)}
    for f in c.top1:
        cols[f"{f}/top1"] = _list_column(pa, c.top1[f], c.offsets, L, np.int32)
        cols[f"{f}/stats"] = _list_column(pa, c.stats[f], c.offsets, L * F, np.dtype(c.stats_dtype))
    for m, q in c.quality.items():
        cols[f"q/{m}"] = pa.array(np.asarray(q, np.float64))
    head = {"kind": "llm_tokens", "schema_version": LLM_SCHEMA_VERSION, "model": c.model, "families": c.families,
            "temperatures": list(c.temperatures), "stat_names": c.stat_names, "stats_dtype": c.stats_dtype,
            "layers": L, "meta": {k: v for k, v in c.meta.items() if k not in ("path", "data_verified")}}
    return pa.table(cols), head


def save_llm_cache(cache: LLMTokenCache, path: str | os.PathLike) -> Path:
    """Write atomically (temporary file, then rename) with page checksums and a content hash: never a half-written
    cache, and any later change to a byte is refused on load."""
    table, head = _table(cache)
    return write_cache_table(table, path, head)


def _plain(v) -> str:
    return json.dumps(v, sort_keys=True, default=json_default)


class LLMCacheWriter:
    """Write a token cache one chunk of prompts at a time, never holding the whole table in memory.

    Each :meth:`write` takes a chunk (a valid :class:`LLMTokenCache` of some prompts: the same model, exit
    families, temperatures, statistics dtype and meta in every chunk, example ids never repeated) and appends it as
    a record batch to an Arrow IPC spool beside ``path``; :meth:`close` memory-maps the spool and writes the cache
    atomically from it (:func:`save_llm_cache`'s format, content hash and checksums: the same file as saving the
    chunks concatenated), then deletes the spool. Use as a context manager: an exception leaves no file behind.

    >>> import tempfile
    >>> from toolkit.caches.tokens import LLMCacheWriter  # doctest: +SKIP
    >>> with LLMCacheWriter(out) as w:  # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.write(chunk)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spool = self.path.with_name(f".{self.path.name}.{os.getpid()}.spool.arrow")
        self._writer, self._sink, self._head, self._ids = None, None, None, set()
        self.n_prompts = self.n_tokens = 0

    def write(self, chunk: LLMTokenCache) -> None:
        """Append one chunk of prompts (validated on construction; checked against the first chunk here)."""
        import pyarrow as pa

        table, head = _table(chunk)
        if self._head is None:
            self._head, self._schema = head, table.schema
            self._sink = pa.OSFile(str(self._spool), "wb")
            self._writer = pa.ipc.new_file(self._sink, table.schema)
        elif _plain(head) != _plain(self._head) or table.schema != self._schema:
            diff = sorted(k for k in set(head) | set(self._head) if _plain(head.get(k)) != _plain(self._head.get(k)))
            raise CacheError(f"{self.path}: chunk {self.n_chunks} differs from the first in {diff or 'its columns'}; "
                             f"every chunk of one cache has the same model, families, temperatures and meta")
        ids = set(chunk.example_ids.tolist())
        if len(ids & self._ids):
            raise CacheError(f"{self.path}: example id {sorted(ids & self._ids)[0]!r} is in two chunks")
        self._ids |= ids
        self._writer.write_table(table)
        self.n_prompts += chunk.n_examples
        self.n_tokens += chunk.n_tokens

    @property
    def n_chunks(self) -> int:
        return 0 if self._writer is None else self._writer.stats.num_record_batches

    def close(self) -> Path:
        """Write the cache from the spool (memory-mapped: its columns are read one at a time) and return its path."""
        import pyarrow as pa

        if self._writer is None:
            raise CacheError(f"{self.path}: no chunk was written; a token cache needs at least one prompt")
        self._writer.close()
        self._sink.close()
        try:
            with pa.memory_map(str(self._spool)) as source:
                table = pa.ipc.open_file(source).read_all()
                write_cache_table(table, self.path, self._head)
                del table
        finally:
            self._spool.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Discard what was written (nothing is left at ``path``)."""
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        self._spool.unlink(missing_ok=True)

    def __enter__(self) -> LLMCacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_llm_table(table, head: dict, path) -> None:
    """Before decoding a token cache: header structures (``temperatures``, ``layers``, ``stats_dtype``,
    ``model.dims``) and column types (integer labels, prompt lengths and ids; stats of the header's dtype), and
    every row's list boundaries agreeing across columns (T tokens, T*L top-1 ids, T*L*F statistics)."""
    import pyarrow as pa

    def bad(msg):
        return CacheError(f"{path}: {msg}")

    layers = header_value(head, "layers", int, path)
    temps = check_temperatures(header_value(head, "temperatures", list, path), f"{path}: header key 'temperatures'")
    for key, kind in (("model", dict), ("meta", dict), ("stats_dtype", str), ("families", dict)):
        header_value(head, key, kind, path)
    if head["stats_dtype"] not in STATS_DTYPES:
        raise bad(f"header key 'stats_dtype' must be one of {STATS_DTYPES}, got {head['stats_dtype']!r}")
    try:
        check_model_dims(head["model"])
    except CacheError as e:
        raise bad(str(e)) from None
    sha = head["model"].get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= set("0123456789abcdef")):
        raise bad(f"header key 'model.weights_sha256' must be null or 64 lowercase hex digits (the sha256 of the "
                  f"model's weights), got {str(sha)[:70]!r}")
    L, F = layers, len(stat_names(temps))
    want = {"example_id": pa.types.is_string, "label": lambda t: t == pa.int64(),
            "n_prompt": lambda t: t == pa.int32(), "tokens": lambda t: t == pa.list_(pa.int32())}
    for name, ok in want.items():
        column(table, name, path, ok, want="see the column table of toolkit.caches.tokens")
    tok_off = np.asarray(table.column("tokens").combine_chunks().offsets, dtype=np.int64)
    tok_off = tok_off - tok_off[0]
    sdtype = pa.float16() if head["stats_dtype"] == "float16" else pa.float32()
    families = [c.split("/")[0] for c in table.column_names if c.endswith("/top1")]
    for f in families:
        for suffix, vt, width in (("top1", pa.int32(), L), ("stats", sdtype, L * F)):
            col = column(table, f"{f}/{suffix}", path, lambda t, vt=vt: t == pa.list_(vt),
                         want=f"expected list<{vt}> (header key 'stats_dtype' is {head['stats_dtype']!r})")
            off = np.asarray(col.offsets, dtype=np.int64)
            if not np.array_equal(off - off[0], tok_off * width):
                row = int(np.flatnonzero((off - off[0]) != tok_off * width)[0])
                raise bad(f"column {f + '/' + suffix!r}: row {max(row - 1, 0)} does not hold {width} values per "
                          f"generated token ({L} layers{f' x {F} statistics' if suffix == 'stats' else ''}); the "
                          f"per-row list boundaries disagree with column 'tokens'")


def _flat_values(table, name: str, dtype) -> np.ndarray:
    """The values of list column ``name``, all rows back to back, as one writable numpy array of ``dtype``, built
    chunk by chunk (row groups) into place: no second copy of the column."""
    col = table.column(name)
    n = sum(len(c.flatten()) for c in col.chunks)
    out = np.empty(n, dtype=dtype)
    a = 0
    for c in col.chunks:
        v = c.flatten().to_numpy(zero_copy_only=False)
        out[a:a + len(v)] = v
        a += len(v)
    return out


def load_llm_cache(path: str | os.PathLike, *, data_dir=None, verify_data: bool = True) -> LLMTokenCache:
    """Load and validate an LLM token cache (re-hashing its source files where they can be found)."""
    table, head = read_cache_table(path, kind="llm_tokens", schema_version=LLM_SCHEMA_VERSION)
    path = Path(path)
    check_llm_table(table, head, path)
    layers = header_value(head, "layers", int, path)
    temperatures = header_value(head, "temperatures", list, path)
    for key, kind in (("model", dict), ("meta", dict), ("stats_dtype", str)):
        header_value(head, key, kind, path)
    L, F = layers, len(stat_names(temperatures))
    families = [c.split("/")[0] for c in table.column_names if c.endswith("/top1")]
    try:
        tok = table.column("tokens").combine_chunks()
        offsets = tok.offsets.to_numpy().astype(np.int64)
        top1, stats = {}, {}
        for f in families:  # each exit column freed once copied out: the peak is the table plus one column
            top1[f] = _flat_values(table, f"{f}/top1", np.int32).reshape(-1, L)
            stats[f] = _flat_values(table, f"{f}/stats", np.float32).reshape(-1, L, F)
            table = table.drop_columns([f"{f}/top1", f"{f}/stats"])
        quality = {c[2:]: table.column(c).to_numpy().astype(np.float64) for c in table.column_names
                   if c.startswith("q/")}
        cache = LLMTokenCache(
            example_ids=string_ids(table.column("example_id"), path),
            labels=table.column("label").to_numpy().astype(np.int64),
            n_prompt=table.column("n_prompt").to_numpy().astype(np.int32),
            tokens=tok.flatten().to_numpy().astype(np.int32), offsets=offsets, top1=top1, stats=stats,
            temperatures=temperatures, model=head["model"], families=head.get("families", {}),
            quality=quality, stats_dtype=head["stats_dtype"],
            meta={"schema_version": LLM_SCHEMA_VERSION, **head["meta"], "path": str(path)})
    except CacheError as e:
        raise CacheError(f"{path}: {e}") from None
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CacheError(f"{path}: token, exit or prompt columns are missing or malformed ({type(e).__name__}: "
                         f"{e}); recollect it with `toolkit llm-collect`") from None
    if verify_data:
        try:
            root = _verified_data_root(cache, data_dir)
            # a prompt set without label words stores -1 for every row: its ids and split are checked, not its
            # labels; one with any label is checked in full (a -1 among labels differs from the data)
            cache.meta["data_verified"] = root is not None and verify_labels(
                cache, root, labels=bool((cache.labels >= 0).any()))
        except CacheError as e:
            raise CacheError(f"{path}: {e}") from None
    return cache


def prompt_range(cache: LLMTokenCache, start: int, stop: int) -> LLMTokenCache:
    """Prompts ``start:stop`` of a token cache as a cache of their own (a chunk for :class:`LLMCacheWriter`)."""
    c = cache
    stop = min(stop, c.n_examples)
    s0, s1 = c.offsets[start], c.offsets[stop]
    return LLMTokenCache(example_ids=c.example_ids[start:stop], labels=c.labels[start:stop],
                         n_prompt=c.n_prompt[start:stop], tokens=c.tokens[s0:s1],
                         offsets=c.offsets[start:stop + 1] - s0, top1={f: v[s0:s1] for f, v in c.top1.items()},
                         stats={f: v[s0:s1] for f, v in c.stats.items()}, temperatures=c.temperatures, model=c.model,
                         families=c.families, quality={m: q[start:stop] for m, q in c.quality.items()},
                         stats_dtype=c.stats_dtype, meta=c.meta)


def concat_token_caches(caches: list[LLMTokenCache]) -> LLMTokenCache:
    """Several token caches of one model (e.g. different prompt sets of one split) as one, prompts back to back.

    The exit families, temperatures and model must match; example ids must not repeat.
    """
    if not caches:
        raise ValueError("nothing to concatenate")
    first = caches[0]
    for c in caches[1:]:
        if c.model.get("dims") != first.model.get("dims") or c.model.get("origin") != first.model.get("origin"):
            raise CacheError("caches come from different models; concatenate caches of one model only")
        if set(c.top1) != set(first.top1) or c.temperatures != first.temperatures:
            raise CacheError(f"caches hold different exit families or temperatures ({sorted(c.top1)} at "
                             f"{c.temperatures} vs {sorted(first.top1)} at {first.temperatures})")
    lengths = np.concatenate([c.lengths for c in caches])
    return LLMTokenCache(
        example_ids=np.concatenate([c.example_ids for c in caches]),
        labels=np.concatenate([c.labels for c in caches]), n_prompt=np.concatenate([c.n_prompt for c in caches]),
        tokens=np.concatenate([c.tokens for c in caches]), offsets=np.concatenate([[0], np.cumsum(lengths)]),
        top1={f: np.concatenate([c.top1[f] for c in caches]) for f in first.top1},
        stats={f: np.concatenate([c.stats[f] for c in caches]) for f in first.top1},
        temperatures=first.temperatures, model=first.model, families=first.families,
        stats_dtype="float32" if any(c.stats_dtype == "float32" for c in caches) else "float16",
        meta={"concatenated": [{k: c.meta.get(k) for k in ("prompt_set", "split", "path")} for c in caches],
              "split": first.meta.get("split"),
              "decoding": {"strategy": "greedy",
                           "max_new_tokens": np.concatenate([c.max_new_tokens for c in caches]).tolist()}})
